//! The one place that names the topology: streams, subjects, durable consumers, KV buckets and
//! service-API endpoints, plus [`ensure`], which creates or updates all of them idempotently
//! (called by the provisioner only: see `provision`).
//! No other module writes a subject literal.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use uuid::Uuid;

use crate::config::{ConsumersConfig, StreamsConfig};
use crate::events::Event;

pub const ORDERS: &str = "ORDERS";
pub const CUSTOMERS: &str = "CUSTOMERS";
pub const INVENTORY: &str = "INVENTORY";
pub const PAYMENTS: &str = "PAYMENTS";
pub const DLQ: &str = "DLQ";

/// Every stream with the subjects it owns.
pub const STREAMS: [(&str, &[&str]); 5] = [
    (
        ORDERS,
        &["orders.placed.*", "orders.confirmed.*", "orders.rejected.*"],
    ),
    (
        CUSTOMERS,
        &["customers.validated.*", "customers.rejected.*"],
    ),
    (
        INVENTORY,
        &[
            "inventory.reserved.*",
            "inventory.rejected.*",
            "inventory.released.*",
        ],
    ),
    (PAYMENTS, &["payments.processed.*", "payments.failed.*"]),
    (DLQ, &["dlq.>"]),
];

/// The steps of the saga: an event of a step is published on `<step>.<orderId>`.
pub mod step {
    pub const ORDERS_PLACED: &str = "orders.placed";
    pub const ORDERS_CONFIRMED: &str = "orders.confirmed";
    pub const ORDERS_REJECTED: &str = "orders.rejected";
    pub const CUSTOMERS_VALIDATED: &str = "customers.validated";
    pub const CUSTOMERS_REJECTED: &str = "customers.rejected";
    pub const INVENTORY_RESERVED: &str = "inventory.reserved";
    pub const INVENTORY_REJECTED: &str = "inventory.rejected";
    pub const INVENTORY_RELEASED: &str = "inventory.released";
    pub const PAYMENTS_PROCESSED: &str = "payments.processed";
    pub const PAYMENTS_FAILED: &str = "payments.failed";
}

/// The step an event belongs to.
pub fn event_step(event: &Event) -> &'static str {
    match event {
        Event::OrderPlaced(_) => step::ORDERS_PLACED,
        Event::OrderConfirmed(_) => step::ORDERS_CONFIRMED,
        Event::OrderRejected(_) => step::ORDERS_REJECTED,
        Event::CustomerValidated(_) => step::CUSTOMERS_VALIDATED,
        Event::CustomerRejected(_) => step::CUSTOMERS_REJECTED,
        Event::InventoryReserved(_) => step::INVENTORY_RESERVED,
        Event::InventoryRejected(_) => step::INVENTORY_REJECTED,
        Event::InventoryReleased(_) => step::INVENTORY_RELEASED,
        Event::PaymentProcessed(_) => step::PAYMENTS_PROCESSED,
        Event::PaymentFailed(_) => step::PAYMENTS_FAILED,
    }
}

/// The subject an event is published on; also its `Nats-Msg-Id`, unique per order and step.
pub fn event_subject(event: &Event, order_id: Uuid) -> String {
    format!("{}.{order_id}", event_step(event))
}

/// Where `orders.placed` of one order is kept, for the edge's read-your-writes fallback.
pub fn order_placed_subject(order_id: Uuid) -> String {
    format!("orders.placed.{order_id}")
}

/// Every order's final announcement, for watchers such as the load generator.
pub const ORDERS_CONFIRMED_ALL: &str = "orders.confirmed.*";
pub const ORDERS_REJECTED_ALL: &str = "orders.rejected.*";
pub const ORDERS_CONFIRMED_PREFIX: &str = "orders.confirmed.";

/// Where a service parks a message it gave up on.
pub fn dlq_subject(service: &str, original_subject: &str) -> String {
    format!("dlq.{service}.{original_subject}")
}

/// Every dead letter of `service`.
pub fn dlq_subjects(service: &str) -> String {
    format!("dlq.{service}.>")
}

/// A durable pull consumer: who reads what.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerSpec {
    /// The service that owns it (named in DLQ subjects and headers).
    pub service: &'static str,
    pub durable: &'static str,
    pub stream: &'static str,
    pub filters: &'static [&'static str],
}

pub const CUSTOMER: ConsumerSpec = ConsumerSpec {
    service: "customer",
    durable: "customer",
    stream: ORDERS,
    filters: &["orders.placed.*"],
};
pub const INVENTORY_ORDERS: ConsumerSpec = ConsumerSpec {
    service: "inventory",
    durable: "inventory",
    stream: ORDERS,
    filters: &["orders.placed.*", "orders.rejected.*"],
};
pub const PAYMENT_CUSTOMERS: ConsumerSpec = ConsumerSpec {
    service: "payment",
    durable: "payment-customers",
    stream: CUSTOMERS,
    filters: &["customers.>"],
};
pub const PAYMENT_INVENTORY: ConsumerSpec = ConsumerSpec {
    service: "payment",
    durable: "payment-inventory",
    stream: INVENTORY,
    filters: &["inventory.reserved.*", "inventory.rejected.*"],
};
pub const ORDER_ORDERS: ConsumerSpec = ConsumerSpec {
    service: "order",
    durable: "order-orders",
    stream: ORDERS,
    filters: &["orders.placed.*"],
};
pub const ORDER_CUSTOMERS: ConsumerSpec = ConsumerSpec {
    service: "order",
    durable: "order-customers",
    stream: CUSTOMERS,
    filters: &["customers.rejected.*"],
};
pub const ORDER_INVENTORY: ConsumerSpec = ConsumerSpec {
    service: "order",
    durable: "order-inventory",
    stream: INVENTORY,
    filters: &["inventory.rejected.*"],
};
pub const ORDER_PAYMENTS: ConsumerSpec = ConsumerSpec {
    service: "order",
    durable: "order-payments",
    stream: PAYMENTS,
    filters: &["payments.>"],
};

/// Every durable consumer, as the provisioner creates them.
pub const CONSUMERS: [ConsumerSpec; 8] = [
    CUSTOMER,
    INVENTORY_ORDERS,
    PAYMENT_CUSTOMERS,
    PAYMENT_INVENTORY,
    ORDER_ORDERS,
    ORDER_CUSTOMERS,
    ORDER_INVENTORY,
    ORDER_PAYMENTS,
];

/// KV bucket joining the two verdicts per order (payment).
pub const PAYMENT_JOIN: &str = "payment-join";
/// KV bucket of the simulated gateway's charges, create-only per order (payment).
pub const PAYMENT_LEDGER: &str = "payment-ledger";
/// KV bucket of `Idempotency-Key`s (edge).
pub const IDEMPOTENCY: &str = "idempotency";
/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// Service-API (NATS micro) names and endpoint subjects; outside every stream's subjects, so the
/// reply comes from the service and never from JetStream.
pub mod api {
    /// Every endpoint's subject starts with it.
    pub const PREFIX: &str = "oms.api";
    pub const ORDERS_SERVICE: &str = "oms-orders";
    pub const CUSTOMERS_SERVICE: &str = "oms-customers";
    pub const INVENTORY_SERVICE: &str = "oms-inventory";
    pub const ORDERS_GET: &str = "oms.api.orders.get";
    pub const ORDERS_LIST: &str = "oms.api.orders.list";
    pub const CUSTOMERS_GET: &str = "oms.api.customers.get";
    pub const PRODUCTS_GET: &str = "oms.api.products.get";
}

/// Failure to create or update the topology.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("stream {0}: {1}")]
    Stream(
        &'static str,
        #[source] jetstream::context::CreateStreamError,
    ),
    #[error("bucket {0}: {1}")]
    Bucket(
        &'static str,
        #[source] jetstream::context::CreateKeyValueError,
    ),
    #[error("consumer {0}: {1}")]
    Consumer(&'static str, #[source] async_nats::Error),
}

/// Creates or updates every stream and bucket (idempotent; safe from many processes at once).
pub async fn ensure(js: &jetstream::Context, cfg: &StreamsConfig) -> Result<(), TopologyError> {
    for (name, subjects) in STREAMS {
        js.create_or_update_stream(stream::Config {
            name: name.to_string(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            max_age: cfg.max_age,
            duplicate_window: cfg.duplicate_window,
            num_replicas: cfg.replicas,
            allow_direct: true,
            // A full stream refuses new events (the edge answers 503) and keeps every old one.
            max_bytes: cfg.max_bytes,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .map_err(|e| TopologyError::Stream(name, e))?;
    }
    let buckets = [
        (PAYMENT_JOIN, cfg.max_age),
        (PAYMENT_LEDGER, Duration::ZERO),
        (IDEMPOTENCY, IDEMPOTENCY_TTL),
    ];
    for (bucket, max_age) in buckets {
        js.create_or_update_key_value(kv::Config {
            bucket: bucket.to_string(),
            history: 1,
            max_age,
            max_bytes: cfg.bucket_max_bytes,
            storage: stream::StorageType::File,
            num_replicas: cfg.replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| TopologyError::Bucket(bucket, e))?;
    }
    Ok(())
}

/// Looks up the durable consumer `spec`, which the provisioner made (a service never creates
/// or changes one).
pub async fn get_consumer(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
) -> Result<consumer::PullConsumer, TopologyError> {
    js.get_consumer_from_stream(spec.durable, spec.stream)
        .await
        .map_err(|e| TopologyError::Consumer(spec.durable, e.into()))
}

/// Creates or updates the durable consumer `spec` (the server keeps its position).
pub async fn ensure_consumer(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    cfg: &ConsumersConfig,
) -> Result<consumer::PullConsumer, TopologyError> {
    let config = consumer::pull::Config {
        durable_name: Some(spec.durable.to_string()),
        filter_subjects: spec.filters.iter().map(|s| s.to_string()).collect(),
        deliver_policy: consumer::DeliverPolicy::All,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: cfg.ack_wait,
        max_deliver: cfg.max_deliver,
        max_ack_pending: cfg.max_ack_pending,
        ..Default::default()
    };
    let stream = js
        .get_stream_no_info(spec.stream)
        .await
        .map_err(|e| TopologyError::Consumer(spec.durable, e.into()))?;
    stream
        .create_consumer(config)
        .await
        .map_err(|e| TopologyError::Consumer(spec.durable, e.into()))
}
