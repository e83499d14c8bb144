//! Who may do what on the broker: one identity per service and per tool, each allowed exactly
//! the subjects its part needs. This table is the one source: [`crate::provision`] renders it
//! into the nats-server's `authorization` block, services connect with it, and the permission
//! tests walk it asking the server, cell by cell, what it allows and refuses.
//!
//! Nobody but the provisioner may create, update, delete or purge a stream, a bucket or a
//! consumer. Replies go to a per-identity inbox prefix, so no identity can read another's.

use oms_domain::EventKind;

use crate as topology;
use crate::{ConsumerSpec, api, step};

/// A party on the broker. Its credentials live in `<creds_dir>/<name>.nk` (an nkey seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Identity {
    /// Creates and updates streams, buckets and durable consumers; nothing else.
    Provisioner,
    Edge,
    Customer,
    Inventory,
    Payment,
    Order,
    /// A person with `oms-dlq`: reads the DLQ, republishes a dead letter, removes it.
    Operator,
    /// A person with the nats CLI: reads everything, changes nothing.
    Observer,
    /// The benchmark: watches the saga's events and measures JetStream on a scratch stream.
    Loadgen,
}

/// What one identity may publish and subscribe to (NATS subjects, wildcards allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub publish: Vec<String>,
    pub subscribe: Vec<String>,
    /// May answer requests it received (the services behind `oms.api.>`).
    pub allow_responses: bool,
}

/// The events that move an order to a status (the rest of ORDERS are requests): what the
/// edge's event streams carry.
pub const STATUS_EVENTS: [EventKind; 6] = [
    EventKind::OrderPlaced,
    EventKind::OrderConfirmed,
    EventKind::OrderRejected,
    EventKind::OrderCancelled,
    EventKind::OrderShipped,
    EventKind::OrderDelivered,
];

/// The scratch stream of loadgen's one-hop baseline, and the subjects it holds.
pub const LOADGEN_STREAM: &str = "LOADGEN_HOP";
pub const LOADGEN_SUBJECTS: &str = "loadgen.>";

impl Identity {
    pub const ALL: [Identity; 9] = [
        Identity::Provisioner,
        Identity::Edge,
        Identity::Customer,
        Identity::Inventory,
        Identity::Payment,
        Identity::Order,
        Identity::Operator,
        Identity::Observer,
        Identity::Loadgen,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Identity::Provisioner => "provisioner",
            Identity::Edge => "edge",
            Identity::Customer => "customer",
            Identity::Inventory => "inventory",
            Identity::Payment => "payment",
            Identity::Order => "order",
            Identity::Operator => "operator",
            Identity::Observer => "observer",
            Identity::Loadgen => "loadgen",
        }
    }

    /// The identity called `name` (a service's name is its identity's).
    pub fn from_name(name: &str) -> Option<Identity> {
        Self::ALL.into_iter().find(|i| i.name() == name)
    }

    /// The service that writes events of `kind` (each kind has exactly one writer).
    pub fn writer(kind: oms_domain::EventKind) -> &'static str {
        let step = kind.step();
        Self::ALL
            .into_iter()
            .find(|i| i.writes().contains(&step))
            .map_or("unknown", Identity::name)
    }

    /// Where this identity's replies (PubAcks, pulled messages, service answers) arrive.
    pub fn inbox_prefix(self) -> String {
        format!("_INBOX_{}", self.name())
    }

    /// The durable consumers this identity reads.
    pub fn consumers(self) -> &'static [ConsumerSpec] {
        match self {
            Identity::Customer => &[topology::CUSTOMER],
            Identity::Inventory => &[topology::INVENTORY_ORDERS],
            Identity::Payment => &[
                topology::PAYMENT_CUSTOMERS,
                topology::PAYMENT_INVENTORY,
                topology::PAYMENT_ORDERS,
            ],
            Identity::Order => &[
                topology::ORDER_ORDERS,
                topology::ORDER_CUSTOMERS,
                topology::ORDER_INVENTORY,
                topology::ORDER_PAYMENTS,
                topology::ORDER_LIFECYCLE,
            ],
            _ => &[],
        }
    }

    /// The key-value buckets this identity reads and writes.
    pub fn buckets(self) -> &'static [&'static str] {
        match self {
            Identity::Edge => &[topology::IDEMPOTENCY],
            Identity::Payment => &[topology::PAYMENT_JOIN, topology::PAYMENT_LEDGER],
            _ => &[],
        }
    }

    /// Streams this identity reads directly (not through a consumer).
    pub fn streams(self) -> &'static [&'static str] {
        match self {
            Identity::Edge => &[topology::ORDERS],
            Identity::Operator => &[topology::DLQ],
            _ => &[],
        }
    }

    /// The steps whose events this identity writes (`<step>.<orderId>`).
    pub fn writes(self) -> &'static [&'static str] {
        match self {
            Identity::Edge => &[
                step::ORDERS_PLACED,
                step::ORDERS_CANCEL,
                step::ORDERS_SHIP,
                step::ORDERS_DELIVER,
            ],
            Identity::Customer => &[step::CUSTOMERS_VALIDATED, step::CUSTOMERS_REJECTED],
            Identity::Inventory => &[
                step::INVENTORY_RESERVED,
                step::INVENTORY_REJECTED,
                step::INVENTORY_RELEASED,
            ],
            Identity::Payment => &[
                step::PAYMENTS_PROCESSED,
                step::PAYMENTS_FAILED,
                step::PAYMENTS_REFUNDED,
            ],
            Identity::Order => &[
                step::ORDERS_CONFIRMED,
                step::ORDERS_REJECTED,
                step::ORDERS_CANCELLED,
                step::ORDERS_SHIPPED,
                step::ORDERS_DELIVERED,
            ],
            _ => &[],
        }
    }

    /// The service-API endpoints this identity serves, and the micro service's name.
    fn serves(self) -> Option<(&'static str, &'static [&'static str])> {
        match self {
            Identity::Customer => Some((
                api::CUSTOMERS_SERVICE,
                &[
                    api::CUSTOMERS_GET,
                    api::CUSTOMERS_CREATE,
                    api::CUSTOMERS_BLOCK,
                ],
            )),
            Identity::Inventory => Some((
                api::INVENTORY_SERVICE,
                &[
                    api::PRODUCTS_GET,
                    api::PRODUCTS_CREATE,
                    api::PRODUCTS_PRICE,
                    api::PRODUCTS_RESTOCK,
                ],
            )),
            Identity::Order => Some((
                api::ORDERS_SERVICE,
                &[
                    api::ORDERS_GET,
                    api::ORDERS_LIST,
                    api::ORDERS_HISTORY,
                    api::ORDERS_STATS,
                ],
            )),
            _ => None,
        }
    }

    /// Everything this identity may do on the broker.
    pub fn permissions(self) -> Permissions {
        let mut publish: Vec<String> = Vec::new();
        let mut subscribe = vec![format!("{}.>", self.inbox_prefix())];
        for step in self.writes() {
            publish.push(format!("{step}.*"));
        }
        if !self.consumers().is_empty() {
            publish.push(topology::dlq_subjects(self.name()));
            // How many of its dead letters wait (a metric): the DLQ's state, not its messages.
            publish.push(format!("$JS.API.STREAM.INFO.{}", topology::DLQ));
        }
        for spec in self.consumers() {
            publish.extend(consumer_rights(spec.stream, spec.durable));
        }
        for bucket in self.buckets() {
            publish.extend(bucket_rights(bucket));
        }
        let mut allow_responses = false;
        if let Some((name, endpoints)) = self.serves() {
            allow_responses = true;
            subscribe.extend(endpoints.iter().map(|e| e.to_string()));
            // Discovery: `nats micro ls` pings every service, then each by name and id.
            subscribe.extend([
                "$SRV.*".to_string(),
                format!("$SRV.*.{name}"),
                format!("$SRV.*.{name}.*"),
            ]);
        }
        match self {
            Identity::Provisioner => {
                publish.extend(
                    [
                        "$JS.API.INFO",
                        "$JS.API.STREAM.NAMES",
                        "$JS.API.STREAM.LIST",
                        "$JS.API.STREAM.INFO.*",
                        "$JS.API.STREAM.CREATE.*",
                        "$JS.API.STREAM.UPDATE.*",
                        "$JS.API.STREAM.DELETE.*",
                        "$JS.API.STREAM.PURGE.*",
                        "$JS.API.CONSUMER.INFO.*.*",
                        "$JS.API.CONSUMER.NAMES.*",
                        "$JS.API.CONSUMER.LIST.*",
                        "$JS.API.CONSUMER.CREATE.>",
                        "$JS.API.CONSUMER.DURABLE.CREATE.*.*",
                        "$JS.API.CONSUMER.DELETE.*.*",
                    ]
                    .map(String::from),
                );
            }
            Identity::Edge => {
                publish.push(format!("{}.>", api::PREFIX));
                publish.push(format!("$JS.API.STREAM.INFO.{}", topology::ORDERS));
                // Read your writes: the `orders.placed` of one order, by subject.
                publish.push(format!(
                    "$JS.API.DIRECT.GET.{}.{}.*",
                    topology::ORDERS,
                    step::ORDERS_PLACED
                ));
                // The event streams and the live board read ORDERS in order, by sequence
                // (direct gets, which change nothing), and are woken by the status events as
                // they are published. No consumer: creating even an ephemeral one would let the
                // edge rewrite a durable of the same name.
                publish.push(format!("$JS.API.DIRECT.GET.{}", topology::ORDERS));
                subscribe.extend(STATUS_EVENTS.iter().map(|kind| topology::all_of(*kind)));
                // The board's counters, read only: the dead letters, and how far behind each
                // durable consumer is.
                publish.push(format!("$JS.API.STREAM.INFO.{}", topology::DLQ));
                publish.extend(
                    topology::CONSUMERS.iter().map(|spec| {
                        format!("$JS.API.CONSUMER.INFO.{}.{}", spec.stream, spec.durable)
                    }),
                );
            }
            Identity::Order => {
                // An order's history: the last event of each step of one order, by subject.
                for (stream, kinds) in topology::EVENT_STREAMS {
                    publish.extend(
                        kinds.iter().map(|k| {
                            format!("$JS.API.DIRECT.GET.{stream}.{}", topology::all_of(*k))
                        }),
                    );
                }
            }
            Identity::Operator => {
                let dlq = topology::DLQ;
                publish.extend([
                    format!("$JS.API.STREAM.INFO.{dlq}"),
                    format!("$JS.API.DIRECT.GET.{dlq}"),
                    format!("$JS.API.DIRECT.GET.{dlq}.>"),
                    format!("$JS.API.STREAM.MSG.GET.{dlq}"),
                    format!("$JS.API.STREAM.MSG.DELETE.{dlq}"),
                ]);
                // A replay goes back to the subject the dead letter came from.
                for (_, kinds) in topology::EVENT_STREAMS {
                    publish.extend(kinds.iter().map(|k| topology::all_of(*k)));
                }
            }
            Identity::Observer => {
                publish.extend(
                    [
                        "$JS.API.INFO",
                        "$JS.API.STREAM.NAMES",
                        "$JS.API.STREAM.LIST",
                        "$JS.API.STREAM.INFO.*",
                        "$JS.API.STREAM.MSG.GET.*",
                        "$JS.API.DIRECT.GET.>",
                        "$JS.API.CONSUMER.NAMES.*",
                        "$JS.API.CONSUMER.LIST.*",
                        "$JS.API.CONSUMER.INFO.*.*",
                        // No consumer, not even an "ephemeral" one: its create may name a
                        // durable in the body and rewrite it. Streams are paged by direct gets.
                        "$SRV.>",
                    ]
                    .map(String::from),
                );
                subscribe.extend(
                    [
                        "orders.>",
                        "customers.>",
                        "inventory.>",
                        "payments.>",
                        "dlq.>",
                    ]
                    .map(String::from),
                );
            }
            Identity::Loadgen => {
                let s = LOADGEN_STREAM;
                publish.extend([
                    format!("$JS.API.STREAM.CREATE.{s}"),
                    format!("$JS.API.STREAM.INFO.{s}"),
                    format!("$JS.API.STREAM.DELETE.{s}"),
                    format!("$JS.API.CONSUMER.CREATE.{s}.>"),
                    format!("$JS.API.CONSUMER.DURABLE.CREATE.{s}.*"),
                    format!("$JS.API.CONSUMER.INFO.{s}.*"),
                    format!("$JS.API.CONSUMER.MSG.NEXT.{s}.*"),
                    format!("$JS.ACK.{s}.>"),
                    LOADGEN_SUBJECTS.to_string(),
                ]);
                // The saga's events, to learn when each order ends and how long each stage took.
                subscribe.extend([
                    format!("{}.*", step::ORDERS_CONFIRMED),
                    format!("{}.*", step::ORDERS_REJECTED),
                    "customers.>".to_string(),
                    "inventory.>".to_string(),
                    "payments.>".to_string(),
                ]);
            }
            _ => {}
        }
        Permissions {
            publish,
            subscribe,
            allow_responses,
        }
    }
}

/// Pull, look up and ack one durable consumer (not create or change it).
fn consumer_rights(stream: &str, durable: &str) -> [String; 3] {
    [
        format!("$JS.API.CONSUMER.INFO.{stream}.{durable}"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"),
        format!("$JS.ACK.{stream}.{durable}.>"),
    ]
}

/// Read and write the keys of one bucket (not create, purge or delete it).
fn bucket_rights(bucket: &str) -> [String; 5] {
    let stream = format!("KV_{bucket}");
    [
        format!("$KV.{bucket}.>"),
        format!("$JS.API.STREAM.INFO.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}"),
        format!("$JS.API.DIRECT.GET.{stream}.>"),
        format!("$JS.API.STREAM.MSG.GET.{stream}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_inboxes_are_distinct() {
        let mut prefixes = std::collections::HashSet::new();
        for identity in Identity::ALL {
            assert_eq!(Identity::from_name(identity.name()), Some(identity));
            assert!(prefixes.insert(identity.inbox_prefix()));
        }
        assert_eq!(Identity::from_name("nobody"), None);
    }

    #[test]
    fn only_the_provisioner_may_change_the_topology() {
        let changes = [
            "STREAM.CREATE",
            "STREAM.UPDATE",
            "STREAM.DELETE",
            "STREAM.PURGE",
            "CONSUMER.DURABLE.CREATE",
            "CONSUMER.DELETE",
        ];
        for identity in Identity::ALL {
            let p = identity.permissions();
            let may_change = p.publish.iter().any(|s| {
                changes
                    .iter()
                    .any(|c| s.starts_with(&format!("$JS.API.{c}.")))
                    && !s.contains(LOADGEN_STREAM)
            });
            assert_eq!(
                may_change,
                identity == Identity::Provisioner,
                "{identity:?}: {:?}",
                p.publish
            );
        }
    }

    #[test]
    fn every_kind_of_event_has_exactly_one_writer() {
        use strum::IntoEnumIterator;
        for kind in oms_domain::EventKind::iter() {
            let writers: Vec<_> = Identity::ALL
                .into_iter()
                .filter(|i| i.writes().contains(&kind.step()))
                .collect();
            assert_eq!(writers.len(), 1, "{kind:?} is written by {writers:?}");
            assert_eq!(Identity::writer(kind), writers[0].name());
        }
    }

    #[test]
    fn each_service_writes_its_own_events_and_dead_letters() {
        let p = Identity::Customer.permissions();
        assert!(p.publish.contains(&"customers.validated.*".to_string()));
        assert!(p.publish.contains(&"dlq.customer.>".to_string()));
        assert!(!p.publish.iter().any(|s| s.starts_with("payments.")));
        assert!(p.allow_responses, "customer answers oms.api.customers.get");
        let p = Identity::Edge.permissions();
        assert!(p.publish.contains(&"orders.placed.*".to_string()));
        assert!(!p.publish.iter().any(|s| s.starts_with("dlq.")));
        assert!(!p.allow_responses);
    }

    /// The edge reads ORDERS (its event streams) and nothing else, and sees the DLQ and the
    /// durables only through their info: no consumer of its own, no pull, no ack, no change.
    #[test]
    fn the_edge_reads_orders_and_only_counts_the_rest() {
        let p = Identity::Edge.permissions();
        // Its own bucket aside (`bucket_rights`).
        let own_bucket = format!("KV_{}", topology::IDEMPOTENCY);
        let calls: Vec<&String> = p
            .publish
            .iter()
            .filter(|s| s.starts_with("$JS.") && !s.contains(&own_bucket))
            .collect();
        let mut expected = vec![
            format!("$JS.API.STREAM.INFO.{}", topology::ORDERS),
            format!(
                "$JS.API.DIRECT.GET.{}.{}.*",
                topology::ORDERS,
                step::ORDERS_PLACED
            ),
            format!("$JS.API.DIRECT.GET.{}", topology::ORDERS),
            format!("$JS.API.STREAM.INFO.{}", topology::DLQ),
        ];
        expected.extend(
            topology::CONSUMERS
                .iter()
                .map(|c| format!("$JS.API.CONSUMER.INFO.{}.{}", c.stream, c.durable)),
        );
        assert_eq!(calls, expected.iter().collect::<Vec<_>>());
        // Raw events: the status changes on ORDERS, nothing of another stream.
        let mut subscribe = p.subscribe.clone();
        subscribe.sort();
        assert_eq!(
            subscribe,
            [
                "_INBOX_edge.>",
                "orders.cancelled.*",
                "orders.confirmed.*",
                "orders.delivered.*",
                "orders.placed.*",
                "orders.rejected.*",
                "orders.shipped.*",
            ]
        );
        for kind in STATUS_EVENTS {
            assert_eq!(topology::stream_of(kind), topology::ORDERS, "{kind:?}");
        }
    }
}
