//! The one place that names the topology: streams, subjects, durable consumers, KV buckets and
//! service-API endpoints, plus [`ensure`], which creates or updates all of them idempotently.
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

/// The subject an event is published on; also its `Nats-Msg-Id`, unique per order and step.
pub fn event_subject(event: &Event, order_id: Uuid) -> String {
    let step = match event {
        Event::OrderPlaced(_) => "orders.placed",
        Event::OrderConfirmed(_) => "orders.confirmed",
        Event::OrderRejected(_) => "orders.rejected",
        Event::CustomerValidated(_) => "customers.validated",
        Event::CustomerRejected(_) => "customers.rejected",
        Event::InventoryReserved(_) => "inventory.reserved",
        Event::InventoryRejected(_) => "inventory.rejected",
        Event::InventoryReleased(_) => "inventory.released",
        Event::PaymentProcessed(_) => "payments.processed",
        Event::PaymentFailed(_) => "payments.failed",
    };
    format!("{step}.{order_id}")
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
            storage: stream::StorageType::File,
            num_replicas: cfg.replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| TopologyError::Bucket(bucket, e))?;
    }
    Ok(())
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
