//! The OMS's domain, as data: the events of the saga and their envelope, exact money, the
//! reasons an order is rejected, and the read API's requests and answers. Pure: no I/O, no
//! broker, no database, so every rule here is tested on its own, and every other crate builds
//! on it.

pub mod api;
pub mod events;
pub mod ids;
pub mod ledger;
pub mod money;

pub use events::{Envelope, Event, EventKind, Item, OrderSnapshot, PricedItem, Reason};
pub use ids::{CustomerId, EventId, OrderId, ProductId};
pub use money::Money;
