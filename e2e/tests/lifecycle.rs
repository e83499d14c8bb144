//! The order's life after the saga, end to end: cancel (and refund), ship, deliver, the
//! deadline, the history, and every move the graph refuses.

use std::time::Duration;

use oms_domain::Money;
use oms_e2e::testing::eventually;
use oms_e2e::{Mode, ORDERS, PAYMENTS, Stack, original_body};
use serde_json::{Value, json};

const ADA: &str = "OMS-Cust-001";
const ALAN: &str = "OMS-Cust-002";

fn types(history: &Value) -> Vec<String> {
    history["history"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|e| e["type"].as_str().expect("a type").to_string())
        .collect()
}

/// Waits until the ledger settled `order`: charged − refunded is `kept`, and nothing is in
/// between (a charge of an ended order not yet refunded).
async fn settled(stack: &Stack, order: &str, kept: Money) {
    let seen = std::sync::Mutex::new(None);
    let settled = tokio::time::timeout(
        Duration::from_secs(20),
        eventually(Duration::from_secs(3600), "", || async {
            let entry = stack.ledger().await.remove(order);
            let done = entry.as_ref().is_some_and(|e| e.kept() == kept);
            *seen.lock().unwrap() = entry;
            done.then_some(())
        }),
    )
    .await;
    let payments = stack.consumer_state(ORDERS, "payment-orders").await;
    assert!(
        settled.is_ok(),
        "{order} did not come to keep {kept}: the ledger has {:?}; payment's consumer of the \
         orders' ends: {payments}",
        seen.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_is_shipped_then_delivered_and_its_history_shows_every_step() {
    let stack = Stack::start().await;
    let ada = stack.customer_token(ADA);
    let id = stack.place_ok(&original_body()).await;
    assert_eq!(stack.terminal(&id).await["status"], "CONFIRMED");

    let ship = |n: &str| json!({"trackingNumber": n});
    let path = |what: &str| format!("/orders/{id}/{what}");
    // Only an operator ships or delivers.
    let (status, answer) = stack
        .post_as(Some(&ada), &path("ship"), Some(&ship("1Z9")))
        .await;
    assert_eq!(status, 403, "{answer}");
    let (status, answer) = stack.post_as(None, &path("deliver"), None).await;
    assert_eq!(status, 409, "not shipped yet: {answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("only an order that is SHIPPED can be delivered"),
        "{answer}"
    );

    let (status, answer) = stack.post_as(None, &path("ship"), Some(&ship("1Z9"))).await;
    assert_eq!(
        (status, &answer),
        (202, &json!({"orderId": id, "status": "SHIPPED"}))
    );
    let order = stack.until_status(&id, "SHIPPED").await;
    assert_eq!(order["trackingNumber"], "1Z9");
    // The same again is the same answer; another tracking number is a conflict.
    assert_eq!(
        stack
            .post_as(None, &path("ship"), Some(&ship("1Z9")))
            .await
            .0,
        202
    );
    assert_eq!(
        stack
            .post_as(None, &path("ship"), Some(&ship("2X")))
            .await
            .0,
        409
    );
    // Shipped: too late to cancel, for anyone.
    let (status, answer) = stack.post_as(Some(&ada), &path("cancel"), None).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        answer["type"].as_str().unwrap().rsplit('/').next(),
        Some("illegal-transition")
    );

    let (status, answer) = stack.post_as(None, &path("deliver"), None).await;
    assert_eq!(
        (status, &answer),
        (202, &json!({"orderId": id, "status": "DELIVERED"}))
    );
    stack.until_status(&id, "DELIVERED").await;
    assert_eq!(
        stack.post_as(None, &path("deliver"), None).await.0,
        202,
        "again: the same"
    );
    assert_eq!(stack.post_as(None, &path("cancel"), None).await.0, 409);
    assert_eq!(
        stack
            .post_as(None, &path("ship"), Some(&ship("1Z9")))
            .await
            .0,
        409,
        "delivered is the end"
    );

    // Its history, for its customer: every step, in order, each with its time.
    let (status, history) = stack.get_as(&ada, &path("history")).await;
    assert_eq!(status, 200, "{history}");
    let steps = types(&history);
    let at = |t: &str| {
        steps
            .iter()
            .position(|s| s == t)
            .unwrap_or_else(|| panic!("{t} in {steps:?}"))
    };
    assert_eq!(steps[0], "OrderPlaced");
    for (before, after) in [
        ("OrderPlaced", "CustomerValidated"),
        ("OrderPlaced", "InventoryReserved"),
        ("CustomerValidated", "PaymentProcessed"),
        ("InventoryReserved", "PaymentProcessed"),
        ("PaymentProcessed", "OrderConfirmed"),
        ("OrderConfirmed", "OrderShipRequested"),
        ("OrderShipRequested", "OrderShipped"),
        ("OrderShipped", "OrderDeliverRequested"),
        ("OrderDeliverRequested", "OrderDelivered"),
    ] {
        assert!(at(before) < at(after), "{before} before {after}: {steps:?}");
    }
    assert_eq!(steps.len(), 9, "nothing else happened: {steps:?}");
    let entries = history["history"].as_array().unwrap();
    let times: Vec<&str> = entries.iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert!(times.iter().all(|t| t.ends_with('Z')), "{times:?}");
    let reserved = &entries[at("InventoryReserved")];
    assert_eq!(
        reserved["items"][0]["unitPrice"],
        json!(1299.99),
        "reserved with prices"
    );
    assert_eq!(reserved["amount"], json!(2599.99));
    assert_eq!(entries[at("OrderShipped")]["status"], "SHIPPED");
    assert_eq!(entries[at("OrderShipped")]["trackingNumber"], "1Z9");
    assert_eq!(entries[at("OrderDelivered")]["status"], "DELIVERED");

    // Another customer learns nothing of it.
    let alan = stack.customer_token(ALAN);
    assert_eq!(stack.get_as(&alan, &path("history")).await.0, 404);
    assert_eq!(
        stack.post_as(Some(&alan), &path("cancel"), None).await.0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_confirmed_order_cancelled_is_refunded_once_and_its_stock_comes_back() {
    let stack = Stack::start().await;
    let ada = stack.customer_token(ADA);
    let id = stack.place_ok(&original_body()).await;
    assert_eq!(stack.terminal(&id).await["status"], "CONFIRMED");
    stack.expect_available("item1", 999).await;
    settled(&stack, &id, Money::from_cents(259_999)).await;

    let cancel = format!("/orders/{id}/cancel");
    let (status, answer) = stack.post_as(Some(&ada), &cancel, None).await;
    assert_eq!(
        (status, &answer),
        (202, &json!({"orderId": id, "status": "CANCELLED"}))
    );
    let order = stack.until_status(&id, "CANCELLED").await;
    assert_eq!(order["reason"], "CANCELLED_BY_CUSTOMER");
    // Refunded exactly once, the whole charge; the stock is back.
    let (refund, _) = stack
        .event(PAYMENTS, &format!("payments.refunded.{id}"))
        .await;
    assert_eq!(refund["data"]["amount"], json!(2599.99));
    settled(&stack, &id, Money::ZERO).await;
    stack.expect_available("item1", 1000).await;
    stack.expect_available("item2", 1000).await;
    // Cancelling again is the same answer and changes nothing.
    assert_eq!(
        stack.post_as(Some(&ada), &cancel, None).await,
        (status, answer)
    );
    assert_eq!(stack.post_as(None, &cancel, None).await.0, 202);
    stack.drained(ORDERS, "order-lifecycle").await;
    stack.drained(ORDERS, "payment-orders").await;
    assert_eq!(stack.count(PAYMENTS, "payments.refunded.*").await, 1);
    assert_eq!(stack.count(ORDERS, "orders.cancelled.*").await, 1);
    // Cancelled is the end.
    let ship = json!({"trackingNumber": "1Z9"});
    let (status, _) = stack
        .post_as(None, &format!("/orders/{id}/ship"), Some(&ship))
        .await;
    assert_eq!(status, 409);
    let (_, history) = stack.get_as(&ada, &format!("/orders/{id}/history")).await;
    let steps = types(&history);
    let at = |t: &str| {
        steps
            .iter()
            .position(|s| s == t)
            .unwrap_or_else(|| panic!("{t} in {steps:?}"))
    };
    for (before, after) in [
        ("OrderConfirmed", "OrderCancelRequested"),
        ("OrderCancelRequested", "OrderCancelled"),
        ("OrderCancelled", "InventoryReleased"),
        ("OrderCancelled", "PaymentRefunded"),
    ] {
        assert!(at(before) < at(after), "{before} before {after}: {steps:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancels_racing_payment_never_leave_a_charge_and_never_refund_without_one() {
    // Payment is stopped while cancellations reach it. It hands back what it fetched, but one
    // the server sent just before it saw the unsubscribe is dropped on arrival and comes back
    // only after the ack wait (30 s by default): shortened here, as for the kill tests.
    let mut stack = Stack::builder(Mode::InProcess)
        .configure(|c| c.consumers.ack_wait = Duration::from_secs(3))
        .start()
        .await;
    let ada = stack.customer_token(ADA);
    let place_and_cancel = async |stack: &Stack| {
        let id = stack.place_ok(&original_body()).await;
        let (status, _) = stack
            .post_as(Some(&ada), &format!("/orders/{id}/cancel"), None)
            .await;
        assert_eq!(status, 202);
        id
    };
    // Each cancel goes out the moment its order is accepted, while the saga runs: mostly after
    // the charge.
    let mut ids = Vec::new();
    for _ in 0..15 {
        ids.push(place_and_cancel(&stack).await);
    }
    // With payment away, the orders are cancelled while PENDING; when it comes back, the end
    // of each order and its two verdicts reach it together, in no set order.
    let (stopped, _) = stack.stop_service("payment").await;
    assert_eq!(stopped, Ok(()));
    let mut late = Vec::new();
    for _ in 0..15 {
        late.push(place_and_cancel(&stack).await);
    }
    for id in &late {
        stack.until_status(id, "CANCELLED").await;
    }
    stack.start_service("payment").await;
    ids.extend(late);
    for id in &ids {
        let order = stack.until_status(id, "CANCELLED").await;
        assert_eq!(order["reason"], "CANCELLED_BY_CUSTOMER");
    }
    // Settled: each either never charged (voided) or charged and refunded, once.
    for id in &ids {
        settled(&stack, id, Money::ZERO).await;
    }
    let ledger = stack.ledger().await;
    let (mut prevented, mut refunded) = (0, 0);
    for id in &ids {
        let entry = &ledger[id];
        match (entry.charged, entry.refunded, entry.voided) {
            (None, None, true) => prevented += 1,
            (Some(c), Some(r), false) if c == r => refunded += 1,
            other => panic!("{id}: {other:?}"),
        }
    }
    assert_eq!(prevented + refunded, ids.len());
    stack.drained(PAYMENTS, "order-payments").await;
    assert_eq!(
        stack.count(PAYMENTS, "payments.refunded.*").await,
        refunded as u64,
        "a refund event per refund"
    );
    stack.expect_available("item1", 1000).await;
    stack.expect_available("item2", 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_order_times_out_and_what_comes_late_is_undone() {
    // Inventory is down: the saga stalls; the deadline (2 s here) rejects the order.
    let mut stack = Stack::builder(Mode::InProcess)
        .services(&["edge", "customer", "payment", "order"])
        .configure(|c| c.orders.deadline = Duration::from_secs(2))
        .start()
        .await;
    let id = stack.place_ok(&original_body()).await;
    let order = stack.terminal(&id).await;
    assert_eq!(order["status"], "REJECTED", "{order}");
    assert_eq!(order["reason"], "TIMED_OUT");
    let (rejected, _) = stack.event(ORDERS, &format!("orders.rejected.{id}")).await;
    assert_eq!(rejected["data"]["reason"], "TIMED_OUT");

    // Inventory comes back with the old events: it reserves, then releases; payment, which
    // voided the order on its rejection, never charges it.
    stack.start_service("inventory").await;
    stack
        .event("INVENTORY", &format!("inventory.released.{id}"))
        .await;
    stack.expect_available("item1", 1000).await;
    stack.drained("INVENTORY", "payment-inventory").await;
    stack.drained(ORDERS, "payment-orders").await;
    let ledger = stack.ledger().await;
    assert_eq!(ledger[&id].kept(), Money::ZERO, "{:?}", ledger[&id]);
    assert!(ledger[&id].voided, "{:?}", ledger[&id]);
    assert_eq!(
        stack
            .count(PAYMENTS, &format!("payments.processed.{id}"))
            .await,
        0
    );
    // It stays rejected: the late verdicts move nothing.
    assert_eq!(
        stack.get_json(&format!("/orders/{id}")).await["status"],
        "REJECTED"
    );
    // A cancel now is refused like any move from REJECTED.
    assert_eq!(
        stack
            .post_as(None, &format!("/orders/{id}/cancel"), None)
            .await
            .0,
        409
    );

    // An order that completes in time is not touched by its deadline: by the time one placed
    // after it has timed out, its own deadline has passed too.
    let fine = stack.place_ok(&original_body()).await;
    assert_eq!(stack.terminal(&fine).await["status"], "CONFIRMED");
    let (stopped, _) = stack.stop_service("inventory").await;
    assert_eq!(stopped, Ok(()));
    let after = stack.place_ok(&original_body()).await;
    assert_eq!(stack.terminal(&after).await["reason"], "TIMED_OUT");
    assert_eq!(
        stack.get_json(&format!("/orders/{fine}")).await["status"],
        "CONFIRMED"
    );
    assert_eq!(
        stack
            .count(ORDERS, &format!("orders.rejected.{fine}"))
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_that_break_the_rules_are_refused_and_change_nothing() {
    let stack = Stack::start().await;
    let ada = stack.customer_token(ADA);
    let rejected = stack
        .place_ok(&json!({"customerId": "OMS-Cust-003", "productIds": ["item3"]}))
        .await;
    assert_eq!(stack.terminal(&rejected).await["status"], "REJECTED");
    for (path, body) in [
        ("cancel", None),
        ("ship", Some(json!({"trackingNumber": "1Z9"}))),
        ("deliver", None),
    ] {
        let (status, answer) = stack
            .post_as(None, &format!("/orders/{rejected}/{path}"), body.as_ref())
            .await;
        assert_eq!(status, 409, "{path} a rejected order: {answer}");
        assert!(
            answer["detail"]
                .as_str()
                .unwrap()
                .contains("the order is REJECTED")
        );
    }
    let confirmed = stack.place_ok(&original_body()).await;
    assert_eq!(stack.terminal(&confirmed).await["status"], "CONFIRMED");
    let ship = format!("/orders/{confirmed}/ship");
    for (body, status) in [
        (json!({}), 422),
        (json!({"trackingNumber": ""}), 422),
        (json!({"trackingNumber": "has space"}), 422),
        (json!({"trackingNumber": 42}), 422),
    ] {
        assert_eq!(
            stack.post_as(None, &ship, Some(&body)).await.0,
            status,
            "{body}"
        );
    }
    let unknown = oms_domain::OrderId::new();
    assert_eq!(
        stack
            .post_as(None, &format!("/orders/{unknown}/cancel"), None)
            .await
            .0,
        404
    );
    assert_eq!(
        stack
            .post_as(None, "/orders/not-an-id/cancel", None)
            .await
            .0,
        404
    );
    assert_eq!(
        stack
            .get_as(&ada, &format!("/orders/{unknown}/history"))
            .await
            .0,
        404
    );
    // None of it moved anything.
    stack.drained(ORDERS, "order-lifecycle").await;
    assert_eq!(
        stack.get_json(&format!("/orders/{confirmed}")).await["status"],
        "CONFIRMED"
    );
    assert_eq!(stack.count(ORDERS, "orders.ship.*").await, 0);
    assert_eq!(stack.count(ORDERS, "orders.cancel.*").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_audit_finds_an_order_whose_money_is_wrong() {
    use oms_topology::identity::Identity;
    let stack = Stack::start().await;
    let kept = stack.place_ok(&original_body()).await;
    let cancelled = stack.place_ok(&original_body()).await;
    assert_eq!(stack.terminal(&kept).await["status"], "CONFIRMED");
    assert_eq!(stack.terminal(&cancelled).await["status"], "CONFIRMED");
    stack
        .post_as(None, &format!("/orders/{cancelled}/cancel"), None)
        .await;
    stack.until_status(&cancelled, "CANCELLED").await;
    settled(&stack, &cancelled, Money::ZERO).await;
    stack.expect_available("item1", 999).await;
    let report = stack.audit().await;
    assert_eq!(report.orders, 2);
    assert_eq!(report.findings, [], "{report:?}");
    assert_eq!(report.by_status.get("CANCELLED"), Some(&1));

    // A refund nobody asked for, written straight into the ledger by the one identity that may.
    let payment = stack.jetstream_as(Identity::Payment).await;
    let ledger = payment.get_key_value("payment-ledger").await.unwrap();
    let refund = json!({"refundId": "re_forged", "chargeId": "ch_x", "orderId": kept,
        "amount": 2599.99, "refundedAt": "2026-01-01T00:00:00Z"});
    ledger
        .put(
            format!("{kept}.refund"),
            serde_json::to_vec(&refund).unwrap().into(),
        )
        .await
        .unwrap();
    let report = stack.audit().await;
    let found: Vec<(String, String)> = report
        .findings
        .iter()
        .map(|f| (f.order_id.to_string(), f.problem.clone()))
        .collect();
    assert_eq!(
        found,
        [(
            kept.clone(),
            "CONFIRMED: charged 2599.99, refunded 2599.99, so keeps 0.00; it should keep 2599.99"
                .to_string()
        )]
    );
}
