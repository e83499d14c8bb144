//! Every metric the services export, named in one place (Prometheus conventions: `oms_` prefix,
//! base units, `_total` for counters). Each series carries the `service` that recorded it, so
//! that services sharing one process (the in-process tests) stay apart. The README's "Metrics"
//! table lists them for people, dashboards and alert rules; a test checks a running system
//! exports each of them.
//!
//! Recording goes through the `metrics` facade: without an installed recorder (a tool, a unit
//! test) it costs a branch.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Events handled, per consumer, event type and outcome ([`Outcome`]).
pub const EVENTS_HANDLED: &str = "oms_events_handled_total";
/// From a message taken in hand to settled (acked, NAKed or dead-lettered).
pub const EVENT_HANDLE_DURATION: &str = "oms_event_handle_duration_seconds";
/// Messages delivered more than once.
pub const EVENT_REDELIVERIES: &str = "oms_event_redeliveries_total";
/// Messages in the stream that the consumer has not been delivered yet.
pub const CONSUMER_PENDING: &str = "oms_consumer_pending_messages";
/// Messages delivered to the consumer and not acked yet.
pub const CONSUMER_ACK_PENDING: &str = "oms_consumer_ack_pending_messages";
/// How long the consumer's ack floor has not moved while messages wait: its lag in time.
pub const CONSUMER_ACK_FLOOR_AGE: &str = "oms_consumer_ack_floor_age_seconds";
/// Messages the service has dead-lettered that are still in the DLQ.
pub const DLQ_MESSAGES: &str = "oms_dlq_messages";
/// Events published, per type.
pub const EVENTS_PUBLISHED: &str = "oms_events_published_total";
/// Compare-and-set writes to the payment join that lost to another writer.
pub const PAYMENT_KV_CONFLICTS: &str = "oms_payment_kv_conflicts_total";
/// Orders per status.
pub const ORDERS: &str = "oms_orders";
/// Age of the oldest PENDING order.
pub const ORDERS_OLDEST_PENDING: &str = "oms_orders_oldest_pending_seconds";
/// From an order's placement to its final status (CONFIRMED or REJECTED).
pub const SAGA_DURATION: &str = "oms_saga_duration_seconds";
/// HTTP requests per route template, method and status.
pub const HTTP_REQUESTS: &str = "oms_http_requests_total";
/// HTTP request latency per route template and method.
pub const HTTP_REQUEST_DURATION: &str = "oms_http_request_duration_seconds";
/// Requests refused by the edge's rate limit (429).
pub const HTTP_RATE_LIMITED: &str = "oms_http_rate_limited_total";

/// What became of a handled message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    Acked,
    Naked,
    DeadLettered,
}

/// Every metric's help text and unit, for the exposition's `# HELP` lines.
pub fn describe() {
    use Unit::{Count, Seconds};
    describe_counter!(
        EVENTS_HANDLED,
        Count,
        "Events handled, per consumer, type and outcome"
    );
    describe_histogram!(
        EVENT_HANDLE_DURATION,
        Seconds,
        "From a message taken to settled"
    );
    describe_counter!(
        EVENT_REDELIVERIES,
        Count,
        "Messages delivered more than once"
    );
    describe_gauge!(
        CONSUMER_PENDING,
        Count,
        "Messages not yet delivered to the consumer"
    );
    describe_gauge!(
        CONSUMER_ACK_PENDING,
        Count,
        "Messages delivered and not yet acked"
    );
    describe_gauge!(
        CONSUMER_ACK_FLOOR_AGE,
        Seconds,
        "How long the ack floor has not moved while messages wait (0: nothing waits)"
    );
    describe_gauge!(
        DLQ_MESSAGES,
        Count,
        "Dead letters of the service in the DLQ"
    );
    describe_counter!(EVENTS_PUBLISHED, Count, "Events published, per type");
    describe_counter!(
        PAYMENT_KV_CONFLICTS,
        Count,
        "Compare-and-set writes to the payment join that lost to another writer"
    );
    describe_gauge!(ORDERS, Count, "Orders per status");
    describe_gauge!(
        ORDERS_OLDEST_PENDING,
        Seconds,
        "Age of the oldest PENDING order"
    );
    describe_histogram!(SAGA_DURATION, Seconds, "From placement to final status");
    describe_counter!(
        HTTP_REQUESTS,
        Count,
        "HTTP requests per route, method and status"
    );
    describe_histogram!(HTTP_REQUEST_DURATION, Seconds, "HTTP request latency");
    describe_counter!(
        HTTP_RATE_LIMITED,
        Count,
        "Requests refused by the rate limit"
    );
}
