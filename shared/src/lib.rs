//! Common models of the OMS services: events, the topology, config, the bus helpers, exact money,
//! the read API, SQL pools and the runtime around each service.

pub mod api;
pub mod bus;
pub mod config;
pub mod db;
pub mod dlq;
pub mod events;
pub mod identity;
pub mod money;
pub mod provision;
pub mod runtime;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topology;

pub use config::Config;
pub use events::{Envelope, Event, Item, OrderSnapshot, Reason};
pub use money::Money;
