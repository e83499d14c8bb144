//! The one place that names the broker's shape: streams and the kinds of event each keeps,
//! durable consumers and what they take, KV buckets, service-API subjects, and the identities
//! allowed to touch each ([`identity`]). Every subject is derived from these tables (an event's
//! step is its kind's, in `oms-domain`), and [`ensure`] creates or updates all of them
//! idempotently (as the provisioner only: see [`provision`]).

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use oms_domain::OrderId;

use oms_config::{ConsumersConfig, StreamsConfig};

pub mod identity;
pub mod provision;

use oms_domain::EventKind::{self, *};

pub const ORDERS: &str = "ORDERS";
pub const CUSTOMERS: &str = "CUSTOMERS";
pub const INVENTORY: &str = "INVENTORY";
pub const PAYMENTS: &str = "PAYMENTS";
pub const DLQ: &str = "DLQ";

/// Every stream of events with the kinds of event it keeps: its subjects are `<step>.*` of each.
pub const EVENT_STREAMS: [(&str, &[EventKind]); 4] = [
    (
        ORDERS,
        &[
            OrderPlaced,
            OrderConfirmed,
            OrderRejected,
            OrderCancelRequested,
            OrderShipRequested,
            OrderDeliverRequested,
            OrderCancelled,
            OrderShipped,
            OrderDelivered,
        ],
    ),
    (CUSTOMERS, &[CustomerValidated, CustomerRejected]),
    (
        INVENTORY,
        &[InventoryReserved, InventoryRejected, InventoryReleased],
    ),
    (
        PAYMENTS,
        &[PaymentProcessed, PaymentFailed, PaymentRefunded],
    ),
];

/// The subjects of the DLQ stream: `dlq.<service>.<original subject>`.
pub const DLQ_SUBJECTS: &str = "dlq.>";
const DLQ_PREFIX: &str = "dlq";

/// Every stream with the subjects it owns, as the provisioner creates them.
pub fn streams() -> Vec<(&'static str, Vec<String>)> {
    EVENT_STREAMS
        .iter()
        .map(|(name, kinds)| (*name, kinds.iter().map(|k| all_of(*k)).collect()))
        .chain([(DLQ, vec![DLQ_SUBJECTS.to_string()])])
        .collect()
}

/// The stream that keeps events of `kind`.
pub fn stream_of(kind: EventKind) -> &'static str {
    EVENT_STREAMS
        .iter()
        .find(|(_, kinds)| kinds.contains(&kind))
        .map(|(name, _)| *name)
        .expect("every kind of event has its stream")
}

/// The subjects of every order's events of `kind`: `<step>.*`.
pub fn all_of(kind: EventKind) -> String {
    format!("{}.*", kind.step())
}

/// The steps of the saga, by name: an event of a step is published on `<step>.<orderId>`.
pub mod step {
    use oms_domain::EventKind::*;

    pub const ORDERS_PLACED: &str = OrderPlaced.step();
    pub const ORDERS_CONFIRMED: &str = OrderConfirmed.step();
    pub const ORDERS_REJECTED: &str = OrderRejected.step();
    pub const CUSTOMERS_VALIDATED: &str = CustomerValidated.step();
    pub const CUSTOMERS_REJECTED: &str = CustomerRejected.step();
    pub const INVENTORY_RESERVED: &str = InventoryReserved.step();
    pub const INVENTORY_REJECTED: &str = InventoryRejected.step();
    pub const INVENTORY_RELEASED: &str = InventoryReleased.step();
    pub const PAYMENTS_PROCESSED: &str = PaymentProcessed.step();
    pub const PAYMENTS_FAILED: &str = PaymentFailed.step();
    pub const ORDERS_CANCEL: &str = OrderCancelRequested.step();
    pub const ORDERS_SHIP: &str = OrderShipRequested.step();
    pub const ORDERS_DELIVER: &str = OrderDeliverRequested.step();
    pub const ORDERS_CANCELLED: &str = OrderCancelled.step();
    pub const ORDERS_SHIPPED: &str = OrderShipped.step();
    pub const ORDERS_DELIVERED: &str = OrderDelivered.step();
    pub const PAYMENTS_REFUNDED: &str = PaymentRefunded.step();
}

/// Where `orders.placed` of one order is kept, for the edge's read-your-writes fallback.
pub fn order_placed_subject(order_id: OrderId) -> String {
    OrderPlaced.subject(order_id)
}

/// Where a service parks a message it gave up on.
pub fn dlq_subject(service: &str, original_subject: &str) -> String {
    format!("{DLQ_PREFIX}.{service}.{original_subject}")
}

/// Every dead letter of `service`.
pub fn dlq_subjects(service: &str) -> String {
    format!("{DLQ_PREFIX}.{service}.>")
}

/// A durable pull consumer: who reads what.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerSpec {
    /// The service that owns it (named in DLQ subjects and headers).
    pub service: &'static str,
    pub durable: &'static str,
    pub stream: &'static str,
    /// The kinds of event it takes, all from `stream`.
    pub events: &'static [EventKind],
}

impl ConsumerSpec {
    /// Its filter subjects: `<step>.*` of each kind it takes.
    pub fn filters(&self) -> Vec<String> {
        self.events.iter().map(|k| all_of(*k)).collect()
    }
}

pub const CUSTOMER: ConsumerSpec = ConsumerSpec {
    service: "customer",
    durable: "customer",
    stream: ORDERS,
    events: &[OrderPlaced],
};
pub const INVENTORY_ORDERS: ConsumerSpec = ConsumerSpec {
    service: "inventory",
    durable: "inventory",
    stream: ORDERS,
    events: &[OrderPlaced, OrderRejected, OrderCancelled],
};
pub const PAYMENT_CUSTOMERS: ConsumerSpec = ConsumerSpec {
    service: "payment",
    durable: "payment-customers",
    stream: CUSTOMERS,
    events: &[CustomerValidated, CustomerRejected],
};
pub const PAYMENT_INVENTORY: ConsumerSpec = ConsumerSpec {
    service: "payment",
    durable: "payment-inventory",
    stream: INVENTORY,
    events: &[InventoryReserved, InventoryRejected],
};
/// Orders that ended without being fulfilled: no charge from now on, and a charge refunded.
pub const PAYMENT_ORDERS: ConsumerSpec = ConsumerSpec {
    service: "payment",
    durable: "payment-orders",
    stream: ORDERS,
    events: &[OrderRejected, OrderCancelled],
};
pub const ORDER_ORDERS: ConsumerSpec = ConsumerSpec {
    service: "order",
    durable: "order-orders",
    stream: ORDERS,
    events: &[OrderPlaced],
};
pub const ORDER_CUSTOMERS: ConsumerSpec = ConsumerSpec {
    service: "order",
    durable: "order-customers",
    stream: CUSTOMERS,
    events: &[CustomerRejected],
};
pub const ORDER_INVENTORY: ConsumerSpec = ConsumerSpec {
    service: "order",
    durable: "order-inventory",
    stream: INVENTORY,
    events: &[InventoryRejected],
};
pub const ORDER_PAYMENTS: ConsumerSpec = ConsumerSpec {
    service: "order",
    durable: "order-payments",
    stream: PAYMENTS,
    events: &[PaymentProcessed, PaymentFailed],
};
/// What people ask of an order after the saga (through the edge).
pub const ORDER_LIFECYCLE: ConsumerSpec = ConsumerSpec {
    service: "order",
    durable: "order-lifecycle",
    stream: ORDERS,
    events: &[
        OrderCancelRequested,
        OrderShipRequested,
        OrderDeliverRequested,
    ],
};

/// Every durable consumer, as the provisioner creates them.
pub const CONSUMERS: [ConsumerSpec; 10] = [
    CUSTOMER,
    INVENTORY_ORDERS,
    PAYMENT_CUSTOMERS,
    PAYMENT_INVENTORY,
    PAYMENT_ORDERS,
    ORDER_ORDERS,
    ORDER_CUSTOMERS,
    ORDER_INVENTORY,
    ORDER_PAYMENTS,
    ORDER_LIFECYCLE,
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
    pub const ORDERS_HISTORY: &str = "oms.api.orders.history";
    pub const PRODUCTS_CREATE: &str = "oms.api.products.create";
    pub const PRODUCTS_PRICE: &str = "oms.api.products.price";
    pub const PRODUCTS_RESTOCK: &str = "oms.api.products.restock";
    pub const CUSTOMERS_CREATE: &str = "oms.api.customers.create";
    pub const CUSTOMERS_BLOCK: &str = "oms.api.customers.block";
    /// How many orders are in each status (the edge's board and `GET /stats`).
    pub const ORDERS_STATS: &str = "oms.api.orders.stats";
}

/// The README's table of streams, rendered from [`EVENT_STREAMS`] and [`Identity::writes`]
/// (a test keeps the README's copy the same).
///
/// [`Identity::writes`]: identity::Identity::writes
pub fn streams_table() -> String {
    let mut table = String::from("| stream | subjects | written by |\n|---|---|---|\n");
    for (stream, kinds) in EVENT_STREAMS {
        let subjects: Vec<String> = kinds
            .iter()
            .map(|k| format!("`{}.<orderId>`", k.step()))
            .collect();
        let writers: Vec<(identity::Identity, Vec<&str>)> = identity::Identity::ALL
            .into_iter()
            .map(|who| {
                let verbs = kinds
                    .iter()
                    .filter(|k| who.writes().contains(&k.step()))
                    .map(|k| k.step().rsplit('.').next().unwrap_or_default())
                    .collect::<Vec<_>>();
                (who, verbs)
            })
            .filter(|(_, verbs)| !verbs.is_empty())
            .collect();
        let written_by = match writers.as_slice() {
            [(only, _)] => only.name().to_string(),
            many => many
                .iter()
                .map(|(who, verbs)| format!("{} ({})", who.name(), verbs.join(", ")))
                .collect::<Vec<_>>()
                .join(", "),
        };
        table += &format!("| {stream} | {} | {written_by} |\n", subjects.join(", "));
    }
    table += &format!(
        "| {DLQ} | `{DLQ_PREFIX}.<service>.<original subject>` | any service: messages it gave up on |\n"
    );
    table
}

/// The README's table of durable consumers, rendered from [`CONSUMERS`].
pub fn consumers_table() -> String {
    let mut table = String::from("| service | durable | stream | filter |\n|---|---|---|---|\n");
    for spec in CONSUMERS {
        let filters: Vec<String> = spec.filters().iter().map(|f| format!("`{f}`")).collect();
        table += &format!(
            "| {} | `{}` | {} | {} |\n",
            spec.service,
            spec.durable,
            spec.stream,
            filters.join(", ")
        );
    }
    table
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
    for (name, subjects) in streams() {
        js.create_or_update_stream(stream::Config {
            name: name.to_string(),
            subjects,
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
        filter_subjects: spec.filters(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The README shows the topology; it must show this one.
    #[test]
    fn the_readme_tables_are_the_topology() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
                .expect("README.md at the workspace root");
        for (what, table) in [
            ("streams", streams_table()),
            ("consumers", consumers_table()),
        ] {
            assert!(
                readme.contains(&table),
                "README.md's table of {what} differs from the topology; it should read:\n\n{table}"
            );
        }
    }

    #[test]
    fn every_kind_of_event_has_one_stream_and_every_consumer_takes_from_its_own() {
        use strum::IntoEnumIterator;
        for kind in EventKind::iter() {
            let holders = EVENT_STREAMS
                .iter()
                .filter(|(_, k)| k.contains(&kind))
                .count();
            assert_eq!(holders, 1, "{kind:?} is kept by {holders} streams");
        }
        for spec in CONSUMERS {
            for kind in spec.events {
                assert_eq!(
                    stream_of(*kind),
                    spec.stream,
                    "{} takes {kind:?}",
                    spec.durable
                );
            }
        }
    }
}
