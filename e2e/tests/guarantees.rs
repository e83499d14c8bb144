//! Delivery guarantees, proven by racing and killing real processes: every accepted order ends
//! CONFIRMED or REJECTED exactly once, no order is charged twice, stock is never oversold or
//! leaked.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use oms_e2e::{Mode, ORDERS, PAYMENTS, Stack, items_body, original_body, place_until_accepted};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_racing_orders_for_five_items_confirm_exactly_five() {
    let stack = Stack::builder(Mode::Processes).start().await;
    let edge = stack.edge();
    let body = items_body("OMS-Cust-001", json!(25), &[("item4", 1)]);
    let ids: Vec<String> = futures::stream::iter(0..100)
        .map(|i| {
            let (http, edge, body) = (stack.http.clone(), edge.clone(), body.clone());
            async move { place_until_accepted(&http, &edge, &body, &format!("race-{i}")).await }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 100);
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for id in &ids {
        let order = stack.terminal(id).await;
        let outcome = order["reason"].as_str().unwrap_or("CONFIRMED").to_string();
        *outcomes.entry(outcome).or_default() += 1;
    }
    assert_eq!(outcomes.get("CONFIRMED"), Some(&5), "{outcomes:?}");
    assert_eq!(outcomes.get("OUT_OF_STOCK"), Some(&95), "{outcomes:?}");
    let product: Value = stack
        .http
        .get(format!("{edge}/products/item4"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(product["available"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_in_time_and_loses_nothing() {
    // A short ack wait: what was in flight to a stopping service comes back quickly.
    let mut stack = Stack::builder(Mode::Processes)
        .configure(|config| config.consumers.ack_wait = Duration::from_secs(2))
        .start()
        .await;
    let edge = stack.edge();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            place_until_accepted(&stack.http, &edge, &original_body(), &format!("t{i}")).await,
        );
    }
    for service in ["customer", "inventory", "payment", "order"] {
        let (exit, took) = stack.stop_service(service).await;
        assert_eq!(exit, Ok(()), "{service} exits 0\n{}", stack.log_tails(15));
        assert!(took < Duration::from_secs(10), "{service} took {took:?}");
        stack.start_service(service).await;
    }
    for id in &ids {
        assert_eq!(stack.terminal(id).await["status"], "CONFIRMED");
    }
    let (exit, _) = stack.stop_service("edge").await;
    assert_eq!(exit, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_event_twice_has_one_effect() {
    use oms_domain::Envelope;
    let stack = Stack::start().await;
    let id = stack
        .place_ok(&items_body("OMS-Cust-001", json!(50), &[("item4", 2)]))
        .await;
    assert_eq!(stack.terminal(&id).await["status"], "CONFIRMED");
    use oms_topology::identity::Identity;
    // Every event of the order again, by the service that owns its subject: once with its own
    // Nats-Msg-Id (the server drops it), once with a new one (it is stored, and every consumer
    // sees it a second time).
    for (stream, subject, owner) in [
        (ORDERS, format!("orders.placed.{id}"), Identity::Edge),
        (
            "CUSTOMERS",
            format!("customers.validated.{id}"),
            Identity::Customer,
        ),
        (
            "INVENTORY",
            format!("inventory.reserved.{id}"),
            Identity::Inventory,
        ),
        (
            PAYMENTS,
            format!("payments.processed.{id}"),
            Identity::Payment,
        ),
    ] {
        let js = stack.jetstream_as(owner).await;
        let (event, _) = stack.event(stream, &subject).await;
        let envelope: Envelope = serde_json::from_value(event).unwrap();
        let ack = oms_bus::publish(&js, &envelope).await.unwrap();
        assert!(ack.duplicate, "same Nats-Msg-Id is dropped");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("{subject}.again").as_str());
        let ack = js
            .publish_with_headers(subject.clone(), headers, envelope.encode())
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(!ack.duplicate, "a new id is stored");
    }
    for (stream, durable) in [
        (ORDERS, "customer"),
        (ORDERS, "inventory"),
        (ORDERS, "order-orders"),
        ("CUSTOMERS", "payment-customers"),
        ("INVENTORY", "payment-inventory"),
        (PAYMENTS, "order-payments"),
    ] {
        stack.drained(stream, durable).await;
    }
    assert_eq!(stack.available("item4").await, 3, "stock taken once");
    let order = stack.get_json(&format!("/orders/{id}")).await;
    assert_eq!(order["status"], "CONFIRMED");
    let mut keys: Vec<String> = stack.charged().await.into_iter().collect();
    keys.sort();
    assert_eq!(keys, vec![id.clone()], "charged once");
    // Each step announced once: the duplicates published nothing new.
    for (stream, subject) in [
        ("CUSTOMERS", format!("customers.*.{id}")),
        ("INVENTORY", format!("inventory.*.{id}")),
        (PAYMENTS, format!("payments.*.{id}")),
        (ORDERS, format!("orders.confirmed.{id}")),
    ] {
        let expected = if stream == ORDERS { 1 } else { 2 }; // the original + our copy
        assert_eq!(stack.count(stream, &subject).await, expected, "{subject}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_idempotency_key_makes_one_order() {
    let stack = Stack::start().await;
    let body = original_body();
    // Twenty racing requests with one key: one order id, one event.
    let ids: Vec<String> = futures::stream::iter(0..20)
        .map(|_| {
            let (http, edge, body) = (stack.http.clone(), stack.edge(), body.clone());
            async move { place_until_accepted(&http, &edge, &body, "same-key").await }
        })
        .buffer_unordered(20)
        .collect()
        .await;
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 1, "{distinct:?}");
    let id = &ids[0];
    assert_eq!(stack.terminal(id).await["status"], "CONFIRMED");
    assert_eq!(stack.count(ORDERS, "orders.placed.*").await, 1);
    assert_eq!(stack.available("item1").await, 999);

    // A later retry answers the same; the same key with another order is refused.
    assert_eq!(
        &place_until_accepted(&stack.http, &stack.edge(), &body, "same-key").await,
        id
    );
    let other = items_body("OMS-Cust-001", json!(1), &[("item3", 1)]);
    let r = stack
        .http
        .post(format!("{}/orders", stack.edge()))
        .header("idempotency-key", "same-key")
        .json(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 422);
    let problem: Value = r.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("different order")
    );
    // A reordered but equal body is the same order ("same body" = same parsed order).
    let same = json!({"productIds": ["item1", "item2"], "totalAmount": 2599.990, "customerId": "OMS-Cust-001"});
    assert_eq!(
        &place_until_accepted(&stack.http, &stack.edge(), &same, "same-key").await,
        id
    );
    // Bad keys are refused before anything is accepted.
    let r = stack
        .http
        .post(format!("{}/orders", stack.edge()))
        .header("idempotency-key", "k".repeat(256))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // Bytes that are not text are the same 400 (not another route's 405).
    for path in ["/orders", "/products/item1/stock"] {
        let r = stack
            .http
            .post(format!("{}{path}", stack.edge()))
            .header(
                "idempotency-key",
                reqwest::header::HeaderValue::from_bytes(b"k\xff").unwrap(),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 400, "{path}");
        let problem: serde_json::Value = r.json().await.unwrap();
        assert_eq!(problem["type"], "/problems/bad-idempotency-key", "{path}");
    }
    assert_eq!(stack.count(ORDERS, "orders.placed.*").await, 1);
}
