//! The domain events of the saga: typed, past tense, versioned, JSON on the streams.
//!
//! Every event travels in an [`Envelope`] `{eventId, version, orderId, occurredAt, type, data}`.
//! Everything after `orders.placed` carries the order snapshot, so each consumer can act on an
//! event alone, whatever order the streams deliver them in.

use serde::de::{self, DeserializeSeed};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::ids::{CustomerId, EventId, OrderId, ProductId};
use crate::money::Money;

/// Schema version written into every envelope; readers accept this version or older.
///
/// 2: `totalAmount` of an order may be `null` (the client left pricing to inventory), and
/// `InventoryReserved` and `PaymentProcessed` carry the priced lines.
pub const EVENT_VERSION: u32 = 2;

/// One product line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub product_id: ProductId,
    pub quantity: u32,
}

/// One line of an order as inventory priced it when it reserved the stock: the price then,
/// whatever the product costs later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PricedItem {
    pub product_id: ProductId,
    pub quantity: u32,
    pub unit_price: Money,
    /// `unitPrice × quantity`.
    pub line_total: Money,
}

/// The order as the edge accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderSnapshot {
    pub customer_id: CustomerId,
    pub items: Vec<Item>,
    /// What the client said the order costs, if it said: inventory's priced total must equal
    /// it, else the order is rejected with `PRICE_MISMATCH`. (Written as `null` when absent,
    /// so the payment join's binary form stays positional.)
    pub total_amount: Option<Money>,
    #[serde(with = "time::serde::rfc3339")]
    pub placed_at: OffsetDateTime,
}

/// Why an order was rejected. The first reason an order meets is the one it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[derive(strum::IntoStaticStr, strum::EnumString, strum::EnumIter)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    CustomerUnknown,
    CustomerBlocked,
    UnknownProduct,
    OutOfStock,
    PaymentDeclined,
    /// The client's `totalAmount` is not what inventory's prices add up to.
    PriceMismatch,
    /// Still PENDING `orders.deadline` after it was placed.
    TimedOut,
    /// Cancelled by the customer it belongs to.
    CancelledByCustomer,
    /// Cancelled by an operator.
    CancelledByOperator,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(s: &str) -> Option<Reason> {
        s.parse().ok()
    }
}

/// A rejection with the reason code and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejection {
    pub order: OrderSnapshot,
    pub reason: Reason,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerValidated {
    pub order: OrderSnapshot,
    pub credit_limit: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub order: OrderSnapshot,
}

/// Stock reserved, and the order priced: its lines at inventory's prices and their sum, which
/// is what payment charges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Priced {
    pub order: OrderSnapshot,
    /// The order's lines, in its order, each priced.
    pub items: Vec<PricedItem>,
    /// The sum of the lines' totals.
    pub total_amount: Money,
}

/// What went back to stock when a reservation was released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Released {
    /// The products and quantities given back (empty in events of version 1, which carried the
    /// order instead).
    #[serde(default)]
    pub items: Vec<Item>,
}

/// Someone asked to cancel an order (the edge, for its customer or an operator); the order
/// service decides whether it may be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelRequest {
    /// `CANCELLED_BY_CUSTOMER` or `CANCELLED_BY_OPERATOR`.
    pub reason: Reason,
}

/// An operator shipped the order, or asked to: the parcel's tracking number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shipment {
    pub tracking_number: String,
}

/// An event with nothing to say but its type and order (`{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nothing {}

/// The order was cancelled: its stock goes back and a charge is refunded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cancellation {
    /// `CANCELLED_BY_CUSTOMER` or `CANCELLED_BY_OPERATOR`.
    pub reason: Reason,
}

/// A charge given back, once, because its order ended cancelled or rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefunded {
    pub amount: Money,
    /// The charge refunded, as kept in the ledger.
    pub charge_id: String,
    pub refund_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentProcessed {
    pub order: OrderSnapshot,
    /// The priced total, charged.
    pub amount: Money,
    /// The gateway's charge id, as kept in the ledger.
    pub charge_id: String,
    /// The lines charged for, as inventory priced them (empty in events of version 1).
    #[serde(default)]
    pub items: Vec<PricedItem>,
}

/// The event itself: `type` names the variant, `data` holds its payload (read through
/// [`Payload`], like an [`Envelope`]'s).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, strum::EnumDiscriminants)]
#[serde(tag = "type", content = "data")]
#[strum_discriminants(
    name(EventKind),
    derive(
        Hash,
        strum::EnumIter,
        strum::EnumString,
        strum::IntoStaticStr,
        Serialize,
        Deserialize,
        utoipa::ToSchema
    ),
    doc = "The kind of an [`Event`], without its payload; its name is the `type` field."
)]
pub enum Event {
    OrderPlaced(OrderSnapshot),
    OrderConfirmed(Snapshot),
    OrderRejected(Rejection),
    CustomerValidated(CustomerValidated),
    CustomerRejected(Rejection),
    InventoryReserved(Priced),
    InventoryRejected(Rejection),
    InventoryReleased(Released),
    PaymentProcessed(PaymentProcessed),
    PaymentFailed(Rejection),
    /// A request (from the edge): cancel the order.
    OrderCancelRequested(CancelRequest),
    /// A request (from the edge, for an operator): the order was handed to the carrier.
    OrderShipRequested(Shipment),
    /// A request (from the edge, for an operator): the order reached its customer.
    OrderDeliverRequested(Nothing),
    OrderCancelled(Cancellation),
    OrderShipped(Shipment),
    OrderDelivered(Nothing),
    PaymentRefunded(PaymentRefunded),
}

impl Event {
    pub fn kind(&self) -> EventKind {
        EventKind::from(self)
    }

    /// The `type` field, repeated in the `Oms-Event-Type` header.
    pub fn type_name(&self) -> &'static str {
        self.kind().into()
    }

    /// The order as it was placed, which every event of the saga carries (the lifecycle's
    /// requests and answers after it do not: they name the order by id only).
    pub fn order(&self) -> Option<&OrderSnapshot> {
        match self {
            Event::OrderPlaced(o) => Some(o),
            Event::OrderConfirmed(s) => Some(&s.order),
            Event::InventoryReserved(p) => Some(&p.order),
            Event::OrderRejected(r)
            | Event::CustomerRejected(r)
            | Event::InventoryRejected(r)
            | Event::PaymentFailed(r) => Some(&r.order),
            Event::CustomerValidated(v) => Some(&v.order),
            Event::PaymentProcessed(p) => Some(&p.order),
            Event::InventoryReleased(_)
            | Event::OrderCancelRequested(_)
            | Event::OrderShipRequested(_)
            | Event::OrderDeliverRequested(_)
            | Event::OrderCancelled(_)
            | Event::OrderShipped(_)
            | Event::OrderDelivered(_)
            | Event::PaymentRefunded(_) => None,
        }
    }

    /// The rejection this event carries, if it is one.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            Event::OrderRejected(r)
            | Event::CustomerRejected(r)
            | Event::InventoryRejected(r)
            | Event::PaymentFailed(r) => Some(r),
            _ => None,
        }
    }
}

impl EventKind {
    /// The saga step an event of this kind announces: it is published on `<step>.<orderId>`
    /// (the streams and consumers that carry each step are in `oms-topology`).
    pub const fn step(self) -> &'static str {
        match self {
            EventKind::OrderPlaced => "orders.placed",
            EventKind::OrderConfirmed => "orders.confirmed",
            EventKind::OrderRejected => "orders.rejected",
            EventKind::CustomerValidated => "customers.validated",
            EventKind::CustomerRejected => "customers.rejected",
            EventKind::InventoryReserved => "inventory.reserved",
            EventKind::InventoryRejected => "inventory.rejected",
            EventKind::InventoryReleased => "inventory.released",
            EventKind::PaymentProcessed => "payments.processed",
            EventKind::PaymentFailed => "payments.failed",
            EventKind::OrderCancelRequested => "orders.cancel",
            EventKind::OrderShipRequested => "orders.ship",
            EventKind::OrderDeliverRequested => "orders.deliver",
            EventKind::OrderCancelled => "orders.cancelled",
            EventKind::OrderShipped => "orders.shipped",
            EventKind::OrderDelivered => "orders.delivered",
            EventKind::PaymentRefunded => "payments.refunded",
        }
    }

    /// `<step>.<orderId>`: the subject of this kind of event of one order, also its
    /// `Nats-Msg-Id` (unique per order and step).
    pub fn subject(self, order_id: OrderId) -> String {
        format!("{}.{order_id}", self.step())
    }
}

/// What goes on the wire: `{eventId, version, orderId, occurredAt, type, data}`, in that order
/// (see `Wire`). Readers accept the fields in any order and ignore fields they do not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub event_id: EventId,
    pub version: u32,
    pub order_id: OrderId,
    pub occurred_at: OffsetDateTime,
    pub event: Event,
}

/// The payload of an event alone: what `data` holds.
struct Data<'a>(&'a Event);

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Event::OrderPlaced(p) => p.serialize(serializer),
            Event::OrderConfirmed(p) => p.serialize(serializer),
            Event::InventoryReleased(p) => p.serialize(serializer),
            Event::OrderCancelRequested(p) => p.serialize(serializer),
            Event::OrderShipRequested(p) | Event::OrderShipped(p) => p.serialize(serializer),
            Event::OrderDeliverRequested(p) | Event::OrderDelivered(p) => p.serialize(serializer),
            Event::OrderCancelled(p) => p.serialize(serializer),
            Event::PaymentRefunded(p) => p.serialize(serializer),
            Event::InventoryReserved(p) => p.serialize(serializer),
            Event::OrderRejected(p)
            | Event::CustomerRejected(p)
            | Event::InventoryRejected(p)
            | Event::PaymentFailed(p) => p.serialize(serializer),
            Event::CustomerValidated(p) => p.serialize(serializer),
            Event::PaymentProcessed(p) => p.serialize(serializer),
        }
    }
}

/// The envelope as it travels, fields in this order; `data` is what [`Data`] writes, and is
/// read as raw JSON text, then as the payload `type` names ([`Payload`]). Read in any field
/// order; unknown fields are skipped.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire<D> {
    event_id: EventId,
    version: u32,
    order_id: OrderId,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
    #[serde(rename = "type")]
    kind: EventKind,
    data: D,
}

impl Serialize for Envelope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Wire {
            event_id: self.event_id,
            version: self.version,
            order_id: self.order_id,
            occurred_at: self.occurred_at,
            kind: self.event.kind(),
            data: Data(&self.event),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = Wire::<Box<RawValue>>::deserialize(deserializer)?;
        Ok(Envelope {
            event_id: wire.event_id,
            version: wire.version,
            order_id: wire.order_id,
            occurred_at: wire.occurred_at,
            event: Payload(wire.kind).read(&wire.data)?,
        })
    }
}

/// An event alone: `{type, data}`, read like an envelope's.
#[derive(Deserialize)]
struct Tagged {
    #[serde(rename = "type")]
    kind: EventKind,
    data: Box<RawValue>,
}

impl<'de> Deserialize<'de> for Event {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let tagged = Tagged::deserialize(deserializer)?;
        Payload(tagged.kind).read(&tagged.data)
    }
}

/// Reads the payload of one kind of event.
///
/// Not serde's `flatten` or adjacently tagged enums: when `data` comes before `type` they
/// buffer it in serde's private form, where numbers are already `f64`, so money could not be
/// read from its exact text; the raw text keeps it exact in any field order.
struct Payload(EventKind);

impl Payload {
    fn read<E: de::Error>(self, data: &RawValue) -> Result<Event, E> {
        self.deserialize(data)
            .map_err(|e| E::custom(format_args!("data: {e}")))
    }
}

impl<'de> DeserializeSeed<'de> for Payload {
    type Value = Event;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Event, D::Error> {
        Ok(match self.0 {
            EventKind::OrderPlaced => Event::OrderPlaced(Deserialize::deserialize(d)?),
            EventKind::OrderConfirmed => Event::OrderConfirmed(Deserialize::deserialize(d)?),
            EventKind::OrderRejected => Event::OrderRejected(Deserialize::deserialize(d)?),
            EventKind::CustomerValidated => Event::CustomerValidated(Deserialize::deserialize(d)?),
            EventKind::CustomerRejected => Event::CustomerRejected(Deserialize::deserialize(d)?),
            EventKind::InventoryReserved => Event::InventoryReserved(Deserialize::deserialize(d)?),
            EventKind::InventoryRejected => Event::InventoryRejected(Deserialize::deserialize(d)?),
            EventKind::InventoryReleased => Event::InventoryReleased(Deserialize::deserialize(d)?),
            EventKind::PaymentProcessed => Event::PaymentProcessed(Deserialize::deserialize(d)?),
            EventKind::PaymentFailed => Event::PaymentFailed(Deserialize::deserialize(d)?),
            EventKind::OrderCancelRequested => {
                Event::OrderCancelRequested(Deserialize::deserialize(d)?)
            }
            EventKind::OrderShipRequested => {
                Event::OrderShipRequested(Deserialize::deserialize(d)?)
            }
            EventKind::OrderDeliverRequested => {
                Event::OrderDeliverRequested(Deserialize::deserialize(d)?)
            }
            EventKind::OrderCancelled => Event::OrderCancelled(Deserialize::deserialize(d)?),
            EventKind::OrderShipped => Event::OrderShipped(Deserialize::deserialize(d)?),
            EventKind::OrderDelivered => Event::OrderDelivered(Deserialize::deserialize(d)?),
            EventKind::PaymentRefunded => Event::PaymentRefunded(Deserialize::deserialize(d)?),
        })
    }
}

/// An event that cannot be read: it can never be processed, so it goes to the DLQ.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not an event envelope: {0}")]
    Json(#[from] serde_json::Error),
    #[error("event version {0} is newer than this service understands ({EVENT_VERSION})")]
    Version(u32),
    #[error("invalid event: {0}")]
    Invalid(#[from] Invalid),
}

/// Most lines an order has (DESIGN "Precise contract": 1–100 entries).
pub const MAX_ITEMS: usize = 100;
/// Most of one product a request may ask for in one entry.
pub const MAX_QUANTITY: u64 = 1000;
/// Most of one product an event's line may hold: the edge adds repeated product ids up into one
/// line, so 100 entries of 1000 of the same product are one line of 100,000.
pub const MAX_LINE_QUANTITY: u64 = MAX_ITEMS as u64 * MAX_QUANTITY;
/// Longest id (customer, product, charge).
pub const MAX_ID_LEN: usize = 64;

/// Whether `text` is an id: 1–64 characters of `A-Z a-z 0-9 . _ -`.
pub fn is_id(text: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why an event that arrived must not be acted on. Consumers check every message (see
/// [`Envelope::check`]): an event that breaks a rule was not written by our services as they
/// are, and acting on it could move stock or money for the wrong order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("subject {subject:?} is not <family>.<step>.<orderId>")]
    Subject { subject: String },
    #[error(
        "subject {subject} does not match the envelope's type {event_type}, \
         which is published on {expected}"
    )]
    Type {
        subject: String,
        event_type: &'static str,
        expected: String,
    },
    #[error("subject {subject} names another order than the envelope's orderId {order_id}")]
    Order { subject: String, order_id: OrderId },
    #[error(
        "{field} is {value}: must be more than 0.00 and at most {}",
        Money::MAX_AMOUNT
    )]
    Amount { field: String, value: Money },
    #[error("{field} is {value}: must not be negative")]
    Negative { field: String, value: Money },
    #[error("{field} {problem}")]
    Field { field: String, problem: String },
    #[error("{field} is {value}: must be a whole number from 1 to {max}")]
    Quantity { field: String, value: u64, max: u64 },
    #[error("{field} has {count} entries: must have 1 to {MAX_ITEMS}")]
    Items { field: String, count: usize },
    #[error("{field} names product {product} twice: the edge adds repeated products up")]
    Repeated { field: String, product: ProductId },
    #[error(
        "{field} is {value:?}: must be 1 to {MAX_ID_LEN} characters of letters, digits, \
         '.', '_' or '-'"
    )]
    Id { field: String, value: String },
}

impl Invalid {
    fn id(field: String, value: &str) -> Self {
        // The header that carries the reason has a limit; an absurd id is shown in part.
        let value = match value.char_indices().nth(MAX_ID_LEN + 1) {
            Some((end, _)) => format!("{}…", &value[..end]),
            None => value.to_string(),
        };
        Invalid::Id { field, value }
    }
}

fn check_id(field: impl FnOnce() -> String, value: &str) -> Result<(), Invalid> {
    match is_id(value) {
        true => Ok(()),
        false => Err(Invalid::id(field(), value)),
    }
}

fn check_amount(field: impl FnOnce() -> String, value: Money) -> Result<(), Invalid> {
    match value.is_order_amount() {
        true => Ok(()),
        false => Err(Invalid::Amount {
            field: field(),
            value,
        }),
    }
}

impl OrderSnapshot {
    /// The rules of DESIGN "Precise contract", as the edge enforced them when it accepted the
    /// order; `at` is where the snapshot sits in the event (`data` or `data.order`).
    pub fn check(&self, at: &str) -> Result<(), Invalid> {
        check_id(|| format!("{at}.customerId"), self.customer_id.as_str())?;
        if let Some(amount) = self.total_amount {
            check_amount(|| format!("{at}.totalAmount"), amount)?;
        }
        let count = self.items.len();
        if !(1..=MAX_ITEMS).contains(&count) {
            return Err(Invalid::Items {
                field: format!("{at}.items"),
                count,
            });
        }
        let mut total: u64 = 0;
        for (i, item) in self.items.iter().enumerate() {
            let field = || format!("{at}.items[{i}]");
            check_id(
                || format!("{}.productId", field()),
                item.product_id.as_str(),
            )?;
            let quantity = u64::from(item.quantity);
            if !(1..=MAX_LINE_QUANTITY).contains(&quantity) {
                return Err(Invalid::Quantity {
                    field: format!("{}.quantity", field()),
                    value: quantity,
                    max: MAX_LINE_QUANTITY,
                });
            }
            if self.items[..i]
                .iter()
                .any(|seen| seen.product_id == item.product_id)
            {
                return Err(Invalid::Repeated {
                    field: format!("{at}.items"),
                    product: item.product_id.clone(),
                });
            }
            total += quantity;
        }
        // Each of at most 100 entries asked for at most 1000: that bounds the sum as well.
        if total > MAX_LINE_QUANTITY {
            return Err(Invalid::Quantity {
                field: format!("the sum of {at}.items[].quantity"),
                value: total,
                max: MAX_LINE_QUANTITY,
            });
        }
        Ok(())
    }
}

impl Event {
    /// Whether the payload keeps the rules: the order snapshot every event carries, and what
    /// the event adds (a credit limit, a charge).
    pub fn check(&self) -> Result<(), Invalid> {
        let at = match self {
            Event::OrderPlaced(_) => "data",
            _ => "data.order",
        };
        if let Some(order) = self.order() {
            order.check(at)?;
        }
        match self {
            Event::CustomerValidated(v) if v.credit_limit < Money::ZERO => Err(Invalid::Negative {
                field: "data.creditLimit".into(),
                value: v.credit_limit,
            }),
            Event::InventoryReserved(p) => check_priced(&p.order, &p.items, p.total_amount),
            Event::InventoryReleased(r) => r.items.iter().enumerate().try_for_each(|(i, item)| {
                check_id(
                    || format!("data.items[{i}].productId"),
                    item.product_id.as_str(),
                )
            }),
            Event::OrderCancelRequested(c) => match c.reason {
                Reason::CancelledByCustomer | Reason::CancelledByOperator => Ok(()),
                other => Err(Invalid::Field {
                    field: "data.reason".into(),
                    problem: format!(
                        "is {}: a cancellation is by the customer or by an operator",
                        other.as_str()
                    ),
                }),
            },
            Event::OrderShipRequested(s) | Event::OrderShipped(s) => {
                check_id(|| "data.trackingNumber".into(), &s.tracking_number)
            }
            Event::PaymentRefunded(r) => {
                check_amount(|| "data.amount".into(), r.amount)?;
                check_id(|| "data.chargeId".into(), &r.charge_id)?;
                check_id(|| "data.refundId".into(), &r.refund_id)
            }
            Event::PaymentProcessed(p) => {
                check_amount(|| "data.amount".into(), p.amount)?;
                check_id(|| "data.chargeId".into(), &p.charge_id)?;
                match p.items.is_empty() {
                    true => Ok(()),
                    false => check_priced(&p.order, &p.items, p.amount),
                }
            }
            _ => Ok(()),
        }
    }
}

/// Priced lines are the order's lines, in its order, each `unitPrice × quantity`, adding up
/// to `total`.
fn check_priced(order: &OrderSnapshot, items: &[PricedItem], total: Money) -> Result<(), Invalid> {
    let wrong = |field: String, problem: String| Err(Invalid::Field { field, problem });
    if items.len() != order.items.len() {
        return wrong(
            "data.items".into(),
            format!(
                "has {} lines: the order has {}",
                items.len(),
                order.items.len()
            ),
        );
    }
    let mut sum = Money::ZERO;
    for (i, (priced, line)) in items.iter().zip(&order.items).enumerate() {
        let field = |name: &str| format!("data.items[{i}].{name}");
        if priced.product_id != line.product_id || priced.quantity != line.quantity {
            return wrong(
                field("productId"),
                format!(
                    "is {} × {}: the order's line {i} is {} × {}",
                    priced.quantity, priced.product_id, line.quantity, line.product_id
                ),
            );
        }
        if priced.unit_price < Money::ZERO {
            return Err(Invalid::Negative {
                field: field("unitPrice"),
                value: priced.unit_price,
            });
        }
        if priced.unit_price.times(priced.quantity) != Some(priced.line_total) {
            return wrong(
                field("lineTotal"),
                format!(
                    "is {}: {} × {} is not that",
                    priced.line_total, priced.unit_price, priced.quantity
                ),
            );
        }
        sum = sum
            .checked_add(priced.line_total)
            .ok_or_else(|| Invalid::Field {
                field: "data.items".into(),
                problem: "add up beyond any amount".into(),
            })?;
    }
    if sum != total {
        return wrong(
            "data.totalAmount".into(),
            format!("is {total}: the lines add up to {sum}"),
        );
    }
    Ok(())
}

impl Envelope {
    /// Wraps `event` for `order_id`, stamped now with a fresh event id.
    pub fn new(order_id: OrderId, event: Event) -> Self {
        Envelope {
            event_id: EventId::new(),
            version: EVENT_VERSION,
            order_id,
            occurred_at: OffsetDateTime::now_utc(),
            event,
        }
    }

    pub fn encode(&self) -> bytes::Bytes {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec(self)
            .expect("an envelope always serializes")
            .into()
    }

    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let envelope: Envelope = serde_json::from_slice(payload)?;
        if envelope.version > EVENT_VERSION {
            return Err(DecodeError::Version(envelope.version));
        }
        Ok(envelope)
    }

    /// What every consumer asks of a message before acting on it: it arrived on the subject its
    /// type and order id give ([`Envelope::subject`]), and its payload keeps the rules
    /// ([`Event::check`]). Pure, so it is tested without a broker.
    pub fn check(&self, subject: &str) -> Result<(), Invalid> {
        let expected = self.subject();
        if subject != expected {
            let unparsable = || Invalid::Subject {
                subject: subject.to_string(),
            };
            let (step, id) = subject.rsplit_once('.').ok_or_else(unparsable)?;
            // Only the form we write (lowercase, hyphenated) names an order.
            let canonical = Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id);
            if !canonical || step.is_empty() {
                return Err(unparsable());
            }
            if step != self.event.kind().step() {
                return Err(Invalid::Type {
                    subject: subject.to_string(),
                    event_type: self.event.type_name(),
                    expected,
                });
            }
            return Err(Invalid::Order {
                subject: subject.to_string(),
                order_id: self.order_id,
            });
        }
        self.event.check()
    }

    /// The subject this event is published on: `<family>.<step>.<orderId>`.
    pub fn subject(&self) -> String {
        self.event.kind().subject(self.order_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> OrderSnapshot {
        OrderSnapshot {
            customer_id: "OMS-Cust-001".into(),
            items: vec![Item {
                product_id: "item1".into(),
                quantity: 2,
            }],
            total_amount: Some(Money::from_cents(259_999)),
            placed_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn envelope_is_readable_camel_case_json() {
        let env = Envelope::new(
            OrderId::from_uuid(Uuid::nil()),
            Event::CustomerRejected(Rejection {
                order: snapshot(),
                reason: Reason::CustomerBlocked,
                detail: "blocked".into(),
            }),
        );
        let json: serde_json::Value = serde_json::from_slice(&env.encode()).unwrap();
        assert_eq!(json["type"], "CustomerRejected");
        assert_eq!(json["version"], EVENT_VERSION);
        assert_eq!(json["orderId"], OrderId::from_uuid(Uuid::nil()).to_string());
        assert_eq!(json["data"]["reason"], "CUSTOMER_BLOCKED");
        assert_eq!(json["data"]["order"]["totalAmount"].to_string(), "2599.99");
        assert_eq!(json["data"]["order"]["items"][0]["productId"], "item1");
        assert!(json["occurredAt"].as_str().unwrap().ends_with('Z'));
        assert_eq!(Envelope::decode(&env.encode()).unwrap(), env);
    }

    /// The envelope as `#[derive(Serialize)]` with `#[serde(flatten)]` wrote it before it was
    /// written by hand: the shape readers already know.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct FlattenedEnvelope<'a> {
        event_id: EventId,
        version: u32,
        order_id: OrderId,
        #[serde(with = "time::serde::rfc3339")]
        occurred_at: OffsetDateTime,
        #[serde(flatten)]
        event: &'a Event,
    }

    fn flattened(env: &Envelope) -> Vec<u8> {
        serde_json::to_vec(&FlattenedEnvelope {
            event_id: env.event_id,
            version: env.version,
            order_id: env.order_id,
            occurred_at: env.occurred_at,
            event: &env.event,
        })
        .unwrap()
    }

    #[test]
    fn envelope_json_is_what_the_flattened_derive_wrote() {
        for env in envelopes(&snapshot()) {
            let text = env.encode();
            assert_eq!(
                String::from_utf8_lossy(&text),
                String::from_utf8_lossy(&flattened(&env))
            );
            let keys = [
                "eventId",
                "version",
                "orderId",
                "occurredAt",
                "type",
                "data",
            ];
            let at: Vec<usize> = keys
                .iter()
                .map(|k| find(&text, &format!("\"{k}\":")).expect(k))
                .collect();
            assert!(at.is_sorted(), "{keys:?} at {at:?}");
            assert_eq!(Envelope::decode(&text).unwrap(), env);
        }
    }

    fn find(haystack: &[u8], needle: &str) -> Option<usize> {
        haystack
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
    }

    #[test]
    fn money_in_an_envelope_is_exact_text_both_ways() {
        let order = changed(|o| o.total_amount = Some(Money::from_cents(15_000)));
        let env = Envelope::new(
            OrderId::new(),
            Event::CustomerValidated(CustomerValidated {
                order,
                // More digits than an f64 holds exactly.
                credit_limit: Money::from_cents(99_999_999_999_999_999),
            }),
        );
        let text = String::from_utf8(env.encode().to_vec()).unwrap();
        assert!(text.contains(r#""totalAmount":150.00,"#), "{text}");
        assert!(
            text.contains(r#""creditLimit":999999999999999.99}"#),
            "{text}"
        );
        assert_eq!(Envelope::decode(text.as_bytes()).unwrap(), env);
    }

    /// The six fields of `env`'s JSON, each with its exact text.
    fn members(env: &Envelope) -> Vec<(String, Box<RawValue>)> {
        let map: std::collections::BTreeMap<String, Box<RawValue>> =
            serde_json::from_slice(&env.encode()).unwrap();
        map.into_iter().collect()
    }

    fn object<'a>(members: impl IntoIterator<Item = &'a (String, Box<RawValue>)>) -> String {
        let members: Vec<String> = members
            .into_iter()
            .map(|(k, v)| format!("{k:?}:{}", v.get()))
            .collect();
        format!("{{{}}}", members.join(","))
    }

    #[test]
    fn any_field_order_decodes_exactly() {
        let env = Envelope::new(
            OrderId::new(),
            Event::PaymentProcessed(PaymentProcessed {
                order: snapshot(),
                amount: Money::from_cents(99_999_999_999_999_999),
                charge_id: "ch_1".into(),
                items: vec![],
            }),
        );
        let fields = members(&env);
        assert_eq!(fields.len(), 6);
        // Every one of the 720 orders of the six fields.
        let mut order: Vec<usize> = (0..6).collect();
        let mut seen = 0;
        permutations(&mut order, 0, &mut |order| {
            let text = object(order.iter().map(|&i| &fields[i]));
            assert_eq!(Envelope::decode(text.as_bytes()).unwrap(), env, "{text}");
            seen += 1;
        });
        assert_eq!(seen, 720);
    }

    fn permutations(items: &mut [usize], k: usize, each: &mut impl FnMut(&[usize])) {
        if k == items.len() {
            return each(items);
        }
        for i in k..items.len() {
            items.swap(k, i);
            permutations(items, k + 1, each);
            items.swap(k, i);
        }
    }

    #[test]
    fn a_third_decimal_is_refused_whether_data_comes_before_type_or_after() {
        let env = Envelope::new(OrderId::new(), Event::OrderPlaced(snapshot()));
        let text = String::from_utf8(env.encode().to_vec()).unwrap();
        let bad = text.replace("2599.99", "2599.995");
        assert_ne!(bad, text);
        let mut fields = members(&env);
        for (k, v) in &mut fields {
            if k == "data" {
                *v = RawValue::from_string(v.get().replace("2599.99", "2599.995")).unwrap();
            }
        }
        fields.sort_by_key(|(k, _)| k != "data");
        let data_first = object(&fields);
        assert!(data_first.starts_with(r#"{"data":"#), "{data_first}");
        for text in [bad, data_first] {
            let e = Envelope::decode(text.as_bytes()).unwrap_err();
            assert!(matches!(e, DecodeError::Json(_)), "{e}");
            assert!(
                e.to_string()
                    .contains("amount 2599.995 has more than 2 decimal places"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_json_value_decodes_too() {
        // As the e2e tests read what they fetched from a stream: a `Value` keeps keys sorted,
        // so `data` comes before `type`.
        for env in envelopes(&snapshot()) {
            let value: serde_json::Value = serde_json::from_slice(&env.encode()).unwrap();
            assert_eq!(
                serde_json::from_value::<Envelope>(value.clone()).unwrap(),
                env
            );
            assert_eq!(Envelope::deserialize(&value).unwrap(), env);
            assert_eq!(serde_json::from_value::<Event>(value).unwrap(), env.event);
        }
    }

    #[test]
    fn an_event_alone_reads_in_either_order() {
        let event = Event::OrderPlaced(snapshot());
        let data = serde_json::to_string(&Data(&event)).unwrap();
        for text in [
            format!(r#"{{"type":"OrderPlaced","data":{data}}}"#),
            format!(r#"{{"data":{data},"type":"OrderPlaced","extra":1}}"#),
        ] {
            assert_eq!(
                serde_json::from_str::<Event>(&text).unwrap(),
                event,
                "{text}"
            );
        }
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            format!(r#"{{"type":"OrderPlaced","data":{data}}}"#)
        );
    }

    #[test]
    fn envelopes_missing_doubled_or_unknown_are_refused_by_name() {
        let env = Envelope::new(OrderId::new(), Event::OrderPlaced(snapshot()));
        let fields = members(&env);
        let error = |text: String| Envelope::decode(text.as_bytes()).unwrap_err().to_string();
        for (i, (name, _)) in fields.iter().enumerate() {
            let without = object(fields.iter().take(i).chain(fields.iter().skip(i + 1)));
            let e = error(without);
            assert!(e.contains(&format!("missing field `{name}`")), "{e}");
            let twice = object(fields.iter().chain([&fields[i]]));
            let e = error(twice);
            assert!(e.contains(&format!("duplicate field `{name}`")), "{e}");
        }
        let text = String::from_utf8(env.encode().to_vec()).unwrap();
        let e = error(text.replace(r#""type":"OrderPlaced""#, r#""type":"OrderLost""#));
        assert!(e.contains("unknown variant `OrderLost`"), "{e}");
        // A field a later version may add is skipped.
        let newer = text.replacen('{', r#"{"traceState":{"a":[1,2.5]},"#, 1);
        assert_eq!(Envelope::decode(newer.as_bytes()).unwrap(), env);
        assert!(error("[]".into()).contains("an event envelope"));
    }

    #[test]
    fn newer_versions_and_garbage_are_refused() {
        let mut env = Envelope::new(
            OrderId::from_uuid(Uuid::nil()),
            Event::OrderPlaced(snapshot()),
        );
        env.version = EVENT_VERSION + 1;
        assert!(matches!(
            Envelope::decode(&env.encode()),
            Err(DecodeError::Version(_))
        ));
        assert!(Envelope::decode(b"{not json").is_err());
        assert!(Envelope::decode(br#"{"type":"Nope"}"#).is_err());
    }

    /// `order` priced at 1.00 a piece.
    fn priced(order: &OrderSnapshot) -> Priced {
        let items: Vec<PricedItem> = order
            .items
            .iter()
            .map(|i| PricedItem {
                product_id: i.product_id.clone(),
                quantity: i.quantity,
                unit_price: Money::from_cents(100),
                line_total: Money::from_cents(100 * i64::from(i.quantity)),
            })
            .collect();
        let total = items.iter().map(|i| i.line_total.cents()).sum();
        Priced {
            order: order.clone(),
            items,
            total_amount: Money::from_cents(total),
        }
    }

    /// One event of every type, each carrying `order`.
    fn every_event(order: &OrderSnapshot) -> Vec<Event> {
        let rejection = || Rejection {
            order: order.clone(),
            reason: Reason::OutOfStock,
            detail: "item1: 2 wanted, 1 available".into(),
        };
        let snapshot = || Snapshot {
            order: order.clone(),
        };
        vec![
            Event::OrderPlaced(order.clone()),
            Event::OrderConfirmed(snapshot()),
            Event::OrderRejected(rejection()),
            Event::CustomerValidated(CustomerValidated {
                order: order.clone(),
                credit_limit: Money::from_cents(1_000_000),
            }),
            Event::CustomerRejected(rejection()),
            Event::InventoryReserved(priced(order)),
            Event::InventoryRejected(rejection()),
            Event::InventoryReleased(Released {
                items: order.items.clone(),
            }),
            Event::PaymentProcessed(PaymentProcessed {
                order: order.clone(),
                amount: priced(order).total_amount,
                charge_id: "ch_0123456789abcdef0123456789abcdef".into(),
                items: priced(order).items,
            }),
            Event::PaymentFailed(rejection()),
            Event::OrderCancelRequested(CancelRequest {
                reason: Reason::CancelledByCustomer,
            }),
            Event::OrderShipRequested(Shipment {
                tracking_number: "1Z999AA10123456784".into(),
            }),
            Event::OrderDeliverRequested(Nothing {}),
            Event::OrderCancelled(Cancellation {
                reason: Reason::CancelledByOperator,
            }),
            Event::OrderShipped(Shipment {
                tracking_number: "1Z999AA10123456784".into(),
            }),
            Event::OrderDelivered(Nothing {}),
            Event::PaymentRefunded(PaymentRefunded {
                amount: Money::from_cents(2_500),
                charge_id: "ch_0123456789abcdef0123456789abcdef".into(),
                refund_id: "re_0123456789abcdef0123456789abcdef".into(),
            }),
        ]
    }

    fn envelopes(order: &OrderSnapshot) -> Vec<Envelope> {
        let id = OrderId::new();
        every_event(order)
            .into_iter()
            .map(|e| Envelope::new(id, e))
            .collect()
    }

    #[test]
    fn every_event_type_on_its_own_subject_passes() {
        let all = envelopes(&snapshot());
        use strum::IntoEnumIterator;
        assert_eq!(all.len(), EventKind::iter().count(), "one of each type");
        for env in &all {
            assert_eq!(
                env.check(&env.subject()),
                Ok(()),
                "{}",
                env.event.type_name()
            );
        }
    }

    #[test]
    fn a_subject_of_another_step_is_refused_naming_the_type() {
        let all = envelopes(&snapshot());
        for env in &all {
            for other in &all {
                if other.event.type_name() == env.event.type_name() {
                    continue;
                }
                // `other`'s subject: another step, the same order.
                let subject = other.subject();
                let refused = env.check(&subject).expect_err(&subject);
                assert_eq!(
                    refused,
                    Invalid::Type {
                        subject: subject.clone(),
                        event_type: env.event.type_name(),
                        expected: env.subject(),
                    }
                );
                let reason = refused.to_string();
                assert!(
                    reason.contains(env.event.type_name()) && reason.contains(&subject),
                    "{reason}"
                );
            }
        }
    }

    #[test]
    fn a_subject_of_another_order_is_refused_naming_both() {
        let other = OrderId::new();
        for env in envelopes(&snapshot()) {
            let subject = env.event.kind().subject(other);
            let refused = env.check(&subject).expect_err(&subject);
            assert_eq!(
                refused,
                Invalid::Order {
                    subject: subject.clone(),
                    order_id: env.order_id,
                }
            );
            let reason = refused.to_string();
            assert!(reason.contains(&other.to_string()), "{reason}");
            assert!(reason.contains(&env.order_id.to_string()), "{reason}");
            assert!(reason.contains("orderId"), "{reason}");
        }
    }

    #[test]
    fn a_subject_that_names_no_order_is_unparsable() {
        let env = Envelope::new(OrderId::new(), Event::OrderPlaced(snapshot()));
        let id = env.order_id;
        for subject in [
            String::new(),
            "orders".into(),
            "orders.placed".into(),
            "orders.placed.".into(),
            "orders.placed.not-an-order".into(),
            format!("orders.placed.{id}.more"),
            format!(".{id}"),
            format!("{id}"),
            // Our services write the lowercase hyphenated form only.
            format!("orders.placed.{}", id.uuid().simple()),
            format!("orders.placed.{}", id.to_string().to_uppercase()),
            format!("orders.placed.{{{id}}}"),
        ] {
            assert_eq!(
                env.check(&subject),
                Err(Invalid::Subject {
                    subject: subject.clone()
                }),
                "{subject:?}"
            );
        }
        assert!(
            env.check("orders.placed.x")
                .unwrap_err()
                .to_string()
                .contains("<family>.<step>.<orderId>")
        );
    }

    /// A snapshot changed by `change`.
    fn changed(change: impl FnOnce(&mut OrderSnapshot)) -> OrderSnapshot {
        let mut order = snapshot();
        change(&mut order);
        order
    }

    fn items(lines: &[(&str, u32)]) -> Vec<Item> {
        lines
            .iter()
            .map(|(p, q)| Item {
                product_id: (*p).into(),
                quantity: *q,
            })
            .collect()
    }

    #[test]
    fn an_order_out_of_range_is_refused_in_every_event_type_with_its_field() {
        let many: Vec<(String, u32)> = (0..101).map(|i| (format!("p{i}"), 1)).collect();
        let many: Vec<(&str, u32)> = many.iter().map(|(p, q)| (p.as_str(), *q)).collect();
        let cases: Vec<(&str, OrderSnapshot, &str)> = vec![
            (
                "quantity 0",
                changed(|o| o.items = items(&[("item1", 0)])),
                "items[0].quantity is 0: must be a whole number from 1 to 100000",
            ),
            (
                "quantity beyond 100 entries of 1000",
                changed(|o| o.items = items(&[("item1", 1), ("item2", 100_001)])),
                "items[1].quantity is 100001",
            ),
            (
                "a sum beyond 100 entries of 1000",
                changed(|o| o.items = items(&[("item1", 60_000), ("item2", 60_000)])),
                "the sum of",
            ),
            (
                "amount 0",
                changed(|o| o.total_amount = Some(Money::ZERO)),
                "totalAmount is 0.00: must be more than 0.00 and at most 1000000.00",
            ),
            (
                "a negative amount",
                changed(|o| o.total_amount = Some(Money::from_cents(-1))),
                "totalAmount is -0.01",
            ),
            (
                "an absurd amount",
                changed(|o| o.total_amount = Some(Money::from_cents(100_000_001))),
                "totalAmount is 1000000.01",
            ),
            (
                "no items",
                changed(|o| o.items.clear()),
                "items has 0 entries: must have 1 to 100",
            ),
            (
                "101 items",
                changed(|o| o.items = items(&many)),
                "items has 101 entries",
            ),
            (
                "a repeated product",
                changed(|o| o.items = items(&[("item1", 1), ("item2", 1), ("item1", 2)])),
                "names product item1 twice",
            ),
            (
                "an empty customer id",
                changed(|o| o.customer_id = "".into()),
                "customerId is \"\": must be 1 to 64 characters",
            ),
            (
                "a 65-character customer id",
                changed(|o| o.customer_id = "c".repeat(65).into()),
                "customerId is \"ccccc",
            ),
            (
                "a customer id with a space",
                changed(|o| o.customer_id = "OMS Cust".into()),
                "customerId is \"OMS Cust\"",
            ),
            (
                "a product id that is not ASCII",
                changed(|o| o.items = items(&[("itém", 1)])),
                "items[0].productId is \"itém\"",
            ),
            (
                "a product id that is a subject wildcard",
                changed(|o| o.items = items(&[("item1", 1), ("*", 1)])),
                "items[1].productId is \"*\"",
            ),
        ];
        for (what, order, reason) in cases {
            // Every event that carries the order (the lifecycle's name it by id only).
            let carrying = envelopes(&order)
                .into_iter()
                .filter(|e| e.event.order().is_some());
            for env in carrying {
                let kind = env.event.type_name();
                let refused = env.check(&env.subject()).expect_err(what);
                let text = refused.to_string();
                assert!(text.contains(reason), "{kind}, {what}: {text}");
                // The field is named where it sits in the event's JSON.
                let at = match kind {
                    "OrderPlaced" => "data.",
                    _ => "data.order.",
                };
                assert!(text.contains(at), "{kind}, {what}: {text}");
            }
        }
    }

    #[test]
    fn an_absurd_id_is_shown_in_part() {
        let order = changed(|o| o.customer_id = "x".repeat(10_000).into());
        let env = Envelope::new(OrderId::new(), Event::OrderPlaced(order));
        let text = env.check(&env.subject()).unwrap_err().to_string();
        assert!(text.len() < 300, "{text}");
        assert!(text.contains('…'), "{text}");
    }

    #[test]
    fn the_limits_themselves_pass() {
        let hundred: Vec<(String, u32)> = (0..100).map(|i| (format!("p{i}"), 1000)).collect();
        let hundred: Vec<(&str, u32)> = hundred.iter().map(|(p, q)| (p.as_str(), *q)).collect();
        let id64 = "A-z.0_9".repeat(9) + "a";
        assert_eq!(id64.len(), 64);
        for order in [
            changed(|o| o.total_amount = Some(Money::from_cents(1))),
            changed(|o| o.total_amount = Some(Money::MAX_AMOUNT)),
            changed(|o| o.items = items(&[("item1", 1)])),
            // 100 entries of 1000 of one product, added up by the edge.
            changed(|o| o.items = items(&[("item1", 100_000)])),
            changed(|o| o.items = items(&hundred)),
            changed(|o| {
                o.customer_id = id64.clone().into();
                o.items = items(&[(id64.as_str(), 1)]);
            }),
        ] {
            for env in envelopes(&order) {
                assert_eq!(env.check(&env.subject()), Ok(()), "{order:?}");
            }
        }
    }

    #[test]
    fn what_an_event_adds_to_the_order_is_checked_too() {
        let id = OrderId::new();
        let validated = |cents| {
            Envelope::new(
                id,
                Event::CustomerValidated(CustomerValidated {
                    order: snapshot(),
                    credit_limit: Money::from_cents(cents),
                }),
            )
        };
        let ok = validated(0);
        assert_eq!(ok.check(&ok.subject()), Ok(()), "a credit limit of 0");
        let bad = validated(-1);
        assert_eq!(
            bad.check(&bad.subject()).unwrap_err().to_string(),
            "data.creditLimit is -0.01: must not be negative"
        );

        let processed = |cents, charge: &str| {
            Envelope::new(
                id,
                Event::PaymentProcessed(PaymentProcessed {
                    order: snapshot(),
                    amount: Money::from_cents(cents),
                    charge_id: charge.into(),
                    items: vec![],
                }),
            )
        };
        for (env, reason) in [
            (processed(0, "ch_1"), "data.amount is 0.00"),
            (processed(100_000_001, "ch_1"), "data.amount is 1000000.01"),
            (processed(100, ""), "data.chargeId is \"\""),
            (processed(100, "ch 1"), "data.chargeId is \"ch 1\""),
        ] {
            let text = env.check(&env.subject()).unwrap_err().to_string();
            assert!(text.contains(reason), "{text}");
        }
    }

    #[test]
    fn the_subject_is_checked_before_the_payload() {
        let order = changed(|o| o.items = items(&[("item1", 0)]));
        let env = Envelope::new(OrderId::new(), Event::OrderPlaced(order));
        let subject = env.event.kind().subject(OrderId::new());
        assert!(matches!(env.check(&subject), Err(Invalid::Order { .. })));
    }

    #[test]
    fn an_invalid_event_reads_as_such() {
        let e = DecodeError::from(Invalid::Subject {
            subject: "x".into(),
        });
        assert_eq!(
            e.to_string(),
            "invalid event: subject \"x\" is not <family>.<step>.<orderId>"
        );
        // A third decimal in JSON does not decode (see `Money`'s `Deserialize`).
        let env = Envelope::new(OrderId::new(), Event::OrderPlaced(snapshot()));
        let mut json: serde_json::Value = serde_json::from_slice(&env.encode()).unwrap();
        json["data"]["totalAmount"] = serde_json::json!(10.005);
        let e = Envelope::decode(&serde_json::to_vec(&json).unwrap()).unwrap_err();
        assert!(e.to_string().contains("more than 2 decimal places"), "{e}");
    }

    #[test]
    fn ids_are_1_to_64_of_the_allowed_characters() {
        for ok in ["a", "OMS-Cust-001", "item_1.v2", &"z".repeat(64)] {
            assert!(is_id(ok), "{ok}");
        }
        for bad in ["", &"z".repeat(65), "a b", "a*", "a>", "ä", "a\n", "a/b"] {
            assert!(!is_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn reasons_round_trip_as_codes() {
        for r in [
            Reason::CustomerUnknown,
            Reason::CustomerBlocked,
            Reason::UnknownProduct,
            Reason::OutOfStock,
            Reason::PaymentDeclined,
        ] {
            assert_eq!(Reason::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
    }

    /// The strings in the database and the strings on the wire are the same for every reason.
    #[test]
    fn reason_strings_are_their_json_and_read_back() {
        use strum::IntoEnumIterator;
        for reason in Reason::iter() {
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
            assert_eq!(Reason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(Reason::parse("out_of_stock"), None, "exact case only");
    }

    #[test]
    fn priced_lines_must_be_the_orders_and_add_up() {
        let id = OrderId::new();
        let order = changed(|o| o.items = items(&[("item1", 2), ("item3", 1)]));
        let check = |p: Priced| {
            let env = Envelope::new(id, Event::InventoryReserved(p));
            env.check(&env.subject()).map_err(|e| e.to_string())
        };
        assert_eq!(check(priced(&order)), Ok(()));
        type Breaking = fn(&mut Priced);
        let broken: [(Breaking, &str); 5] = [
            (
                |p| p.total_amount = Money::from_cents(1),
                "data.totalAmount is 0.01: the lines add up to 3.00",
            ),
            (
                |p| p.items[1].line_total = Money::from_cents(99),
                "data.items[1].lineTotal is 0.99: 1.00 × 1 is not that",
            ),
            (
                |p| p.items[0].quantity = 3,
                "data.items[0].productId is 3 × item1: the order's line 0 is 2 × item1",
            ),
            (
                |p| {
                    p.items.pop();
                },
                "data.items has 1 lines: the order has 2",
            ),
            (
                |p| p.items[0].unit_price = Money::from_cents(-100),
                "data.items[0].unitPrice is -1.00: must not be negative",
            ),
        ];
        for (breaking, reason) in broken {
            let mut p = priced(&order);
            breaking(&mut p);
            assert_eq!(check(p).unwrap_err(), reason);
        }
    }

    #[test]
    fn an_order_without_a_client_amount_travels_as_null() {
        let order = changed(|o| o.total_amount = None);
        let env = Envelope::new(OrderId::new(), Event::OrderPlaced(order));
        let text = String::from_utf8(env.encode().to_vec()).unwrap();
        assert!(text.contains(r#""totalAmount":null"#), "{text}");
        assert_eq!(Envelope::decode(text.as_bytes()).unwrap(), env);
        assert_eq!(env.check(&env.subject()), Ok(()));
    }
}
