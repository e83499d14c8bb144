//! The OMS on NATS JetStream, with the delivery rules every service shares: connect as an
//! identity ([`connect`]), publish with the server's ack and a retry under the same
//! `Nats-Msg-Id` ([`publish`]), consume a durable consumer acking only after the effects are
//! durable ([`consume`]), run a service's steps the same way for every service ([`Pipeline`]), feed
//! several consumers into one handler ([`Funnel`]), park what cannot be handled ([`dlq`]), and
//! answer or call the read API ([`api`]).

pub mod api;
mod backoff;
mod connect;
mod consume;
pub mod direct;
pub mod dlq;
mod error;
mod funnel;
pub mod metrics;
mod pipeline;
pub mod provision;
mod publish;
pub mod trace;

pub use backoff::backoff;
pub use connect::{Bus, connect, jetstream, seeds};
pub use consume::{Handler, consume};
pub use error::{BusError, HandleError};
pub use funnel::Funnel;
pub use pipeline::{Incoming, Input, Pipeline, Step};
pub use publish::{publish, publish_all, publish_in};

pub const HEADER_EVENT_TYPE: &str = "Oms-Event-Type";
pub const HEADER_TRACEPARENT: &str = "traceparent";
pub const HEADER_DLQ_SERVICE: &str = "Oms-Dlq-Service";
pub const HEADER_DLQ_ERROR: &str = "Oms-Dlq-Error";
pub const HEADER_DLQ_STREAM: &str = "Oms-Dlq-Stream";
pub const HEADER_DLQ_SUBJECT: &str = "Oms-Dlq-Subject";
pub const HEADER_DLQ_SEQUENCE: &str = "Oms-Dlq-Sequence";
