//! What people may ask of an order after placing it (cancel, ship, deliver), as pure functions:
//! whether the order's status allows it, and what the request says.
//!
//! The edge answers from the status it reads: a move the graph does not allow is 409 and
//! nothing is published; one already made is the same 202 again. A request it accepts goes to
//! the order service as an event, which decides again with the order in hand (a ship racing a
//! cancel, say): the 202 means accepted, and `GET /orders/{id}` says what came of it.

use oms_domain::api::OrderStatus;
use oms_domain::events::{CancelRequest, Nothing, Shipment, is_id};
use oms_domain::{Event, Reason};
use serde::Deserialize;
use serde_json::value::RawValue;
use warp::http::StatusCode;

use crate::auth::{Caller, Role};
use crate::problem::Problem;

/// A request about one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Cancel,
    Ship { tracking_number: String },
    Deliver,
}

/// What the edge does with a request, given the order's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Publish it.
    Accept,
    /// Done already: answer as the first time, publish nothing.
    Done,
    /// 409 with this detail.
    Conflict(String),
}

impl Request {
    /// The status it takes an order to.
    pub fn target(&self) -> OrderStatus {
        match self {
            Request::Cancel => OrderStatus::Cancelled,
            Request::Ship { .. } => OrderStatus::Shipped,
            Request::Deliver => OrderStatus::Delivered,
        }
    }

    /// Its route, as traces name it.
    pub fn route(&self) -> &'static str {
        match self {
            Request::Cancel => "POST /orders/{id}/cancel",
            Request::Ship { .. } => "POST /orders/{id}/ship",
            Request::Deliver => "POST /orders/{id}/deliver",
        }
    }

    fn verb(&self) -> &'static str {
        match self {
            Request::Cancel => "cancelled",
            Request::Ship { .. } => "shipped",
            Request::Deliver => "delivered",
        }
    }

    /// For an order in `status` (shipped with `tracking`, if it was).
    pub fn verdict(&self, status: OrderStatus, tracking: Option<&str>) -> Verdict {
        let target = self.target();
        if status == target {
            return match self {
                Request::Ship { tracking_number } if Some(tracking_number.as_str()) != tracking => {
                    Verdict::Conflict(format!(
                        "the order was already shipped with tracking number {}",
                        tracking.unwrap_or("(none)")
                    ))
                }
                _ => Verdict::Done,
            };
        }
        if status.may_become(target) {
            return Verdict::Accept;
        }
        let allowed: Vec<&str> = [
            OrderStatus::Pending,
            OrderStatus::Confirmed,
            OrderStatus::Shipped,
        ]
        .into_iter()
        .filter(|from| from.may_become(target))
        .map(OrderStatus::as_str)
        .collect();
        Verdict::Conflict(format!(
            "the order is {}: only an order that is {} can be {}",
            status.as_str(),
            allowed.join(" or "),
            self.verb()
        ))
    }

    /// The event that carries the request to the order service.
    pub fn event(&self, caller: &Caller) -> Event {
        match self {
            Request::Cancel => Event::OrderCancelRequested(CancelRequest {
                reason: match caller.role {
                    Role::Customer => Reason::CancelledByCustomer,
                    Role::Operator => Reason::CancelledByOperator,
                },
            }),
            Request::Ship { tracking_number } => Event::OrderShipRequested(Shipment {
                tracking_number: tracking_number.clone(),
            }),
            Request::Deliver => Event::OrderDeliverRequested(Nothing {}),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawShipment<'a> {
    #[serde(borrow)]
    tracking_number: Option<&'a RawValue>,
}

/// `{"trackingNumber"}`: 400 if not JSON, 422 if it breaks a rule.
pub fn parse_shipment(body: &[u8]) -> Result<Request, Problem> {
    let raw: RawShipment = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            Problem::invalid("the body must be a JSON object with trackingNumber")
        }
        _ => Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            format!("the body is not valid JSON: {e}"),
        ),
    })?;
    let raw = raw
        .tracking_number
        .ok_or_else(|| Problem::invalid("trackingNumber is required"))?;
    let tracking_number: String = serde_json::from_str(raw.get())
        .map_err(|_| Problem::invalid("trackingNumber must be a string"))?;
    if !is_id(&tracking_number) {
        return Err(Problem::invalid(
            "trackingNumber must be 1 to 64 characters of letters, digits, '.', '_' or '-'",
        ));
    }
    Ok(Request::Ship { tracking_number })
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    fn ship(t: &str) -> Request {
        Request::Ship {
            tracking_number: t.into(),
        }
    }

    #[test]
    fn each_request_is_accepted_exactly_where_the_graph_allows_it() {
        for status in OrderStatus::iter() {
            for request in [Request::Cancel, ship("1Z999"), Request::Deliver] {
                let verdict = request.verdict(status, Some("1Z999"));
                let expected = if status == request.target() {
                    Verdict::Done
                } else if status.may_become(request.target()) {
                    Verdict::Accept
                } else {
                    match &verdict {
                        Verdict::Conflict(_) => verdict.clone(),
                        other => panic!("{request:?} on {status:?}: {other:?}"),
                    }
                };
                assert_eq!(verdict, expected, "{request:?} on {status:?}");
            }
        }
        assert_eq!(
            Request::Cancel.verdict(OrderStatus::Shipped, None),
            Verdict::Conflict(
                "the order is SHIPPED: only an order that is PENDING or CONFIRMED can be cancelled"
                    .into()
            )
        );
        assert_eq!(
            Request::Deliver.verdict(OrderStatus::Confirmed, None),
            Verdict::Conflict(
                "the order is CONFIRMED: only an order that is SHIPPED can be delivered".into()
            )
        );
    }

    #[test]
    fn shipping_again_is_the_same_only_with_the_same_tracking_number() {
        assert_eq!(
            ship("A1").verdict(OrderStatus::Shipped, Some("A1")),
            Verdict::Done
        );
        assert!(matches!(
            ship("B2").verdict(OrderStatus::Shipped, Some("A1")),
            Verdict::Conflict(_)
        ));
    }

    #[test]
    fn who_cancels_is_the_reason() {
        let by = |caller: Caller| match Request::Cancel.event(&caller) {
            Event::OrderCancelRequested(c) => c.reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            by(Caller::customer("OMS-Cust-001")),
            Reason::CancelledByCustomer
        );
        assert_eq!(by(Caller::operator("ops")), Reason::CancelledByOperator);
    }

    #[test]
    fn shipments_are_checked() {
        assert_eq!(
            parse_shipment(br#"{"trackingNumber":"1Z-999.A"}"#),
            Ok(ship("1Z-999.A"))
        );
        for (body, status, needle) in [
            (&b"{nope"[..], 400, "not valid JSON"),
            (b"{}", 422, "trackingNumber is required"),
            (br#"{"trackingNumber":7}"#, 422, "must be a string"),
            (br#"{"trackingNumber":""}"#, 422, "1 to 64"),
            (br#"{"trackingNumber":"a b"}"#, 422, "1 to 64"),
            (b"[]", 422, "JSON object"),
        ] {
            let p = parse_shipment(body).unwrap_err();
            assert_eq!(p.status.as_u16(), status, "{body:?}");
            assert!(p.detail.contains(needle), "{body:?}: {}", p.detail);
        }
    }
}
