//! The order flow end to end: a real nats-server, the five services, HTTP in and out.

use oms_e2e::{CUSTOMERS, INVENTORY, Mode, ORDERS, PAYMENTS, Stack, items_body, original_body};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_original_order_is_confirmed_with_its_exact_amount() {
    let stack = Stack::start().await;
    let r = stack
        .http
        .post(format!("{}/orders", stack.edge()))
        .header("content-type", "application/json")
        .body(
            r#"{"customerId":"OMS-Cust-001","totalAmount":2599.99,"productIds":["item1","item2"]}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let accepted: serde_json::Value = r.json().await.unwrap();
    let id = accepted["orderId"].as_str().unwrap();
    assert_eq!(accepted["status"], "PENDING");
    assert_eq!(location, format!("/orders/{id}"));

    let order = stack.terminal(id).await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    assert!(order.get("reason").is_none());
    assert_eq!(order["customerId"], "OMS-Cust-001");
    // Priced by inventory at the demo prices, which add up to what the client said.
    assert_eq!(
        order["items"],
        json!([{"productId": "item1", "quantity": 1, "unitPrice": 1299.99, "lineTotal": 1299.99},
               {"productId": "item2", "quantity": 1, "unitPrice": 1300.00, "lineTotal": 1300.00}])
    );
    // The exact decimal text, not 2599.9899999.
    let (_, text) = stack.get(&location).await;
    assert!(text.contains(r#""totalAmount":2599.99,"#), "{text}");
    assert!(text.contains(r#""unitPrice":1300.00,"#), "{text}");
    assert!(order["createdAt"].as_str().unwrap().ends_with('Z'));

    assert_eq!(stack.available("item1").await, 999);
    assert_eq!(stack.available("item2").await, 999);

    // Every step left readable JSON on its stream, keyed for dedupe by subject.
    for (stream, subject, kind) in [
        (ORDERS, format!("orders.placed.{id}"), "OrderPlaced"),
        (
            CUSTOMERS,
            format!("customers.validated.{id}"),
            "CustomerValidated",
        ),
        (
            INVENTORY,
            format!("inventory.reserved.{id}"),
            "InventoryReserved",
        ),
        (
            PAYMENTS,
            format!("payments.processed.{id}"),
            "PaymentProcessed",
        ),
        (ORDERS, format!("orders.confirmed.{id}"), "OrderConfirmed"),
    ] {
        let (event, headers) = stack.event(stream, &subject).await;
        assert_eq!(event["type"], kind);
        assert_eq!(event["orderId"], id);
        assert_eq!(event["version"], 2);
        let headers = headers;
        assert_eq!(headers.get("Nats-Msg-Id").unwrap().as_str(), subject);
        assert_eq!(headers.get("Oms-Event-Type").unwrap().as_str(), kind);
        let trace = headers.get("traceparent").unwrap().as_str().to_string();
        assert_eq!(&trace[3..35], id.replace('-', ""), "one trace per order");
    }
    // The ledger charged it once, with the exact amount.
    let js = stack.jetstream().await;
    let ledger = js.get_key_value("payment-ledger").await.unwrap();
    let charge: serde_json::Value =
        serde_json::from_slice(&ledger.get(id).await.unwrap().unwrap()).unwrap();
    assert_eq!(charge["amount"].to_string(), "2599.99");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_without_an_amount_is_priced_by_inventory_and_charged_that() {
    let stack = Stack::start().await;
    let body = json!({"customerId": "OMS-Cust-001", "items": [
        {"productId": "item4", "quantity": 3}, {"productId": "item3", "quantity": 2}]});
    let id = stack.place_ok(&body).await;
    // Before it is priced the order has no total (the client gave none).
    let (placed, _) = stack.event(ORDERS, &format!("orders.placed.{id}")).await;
    assert_eq!(placed["data"]["totalAmount"], Value::Null);

    let order = stack.terminal(&id).await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    let (_, text) = stack.get(&format!("/orders/{id}")).await;
    assert!(
        text.contains(r#""totalAmount":95.00"#),
        "exact text: {text}"
    );
    assert_eq!(
        order["items"],
        json!([{"productId": "item4", "quantity": 3, "unitPrice": 25.00, "lineTotal": 75.00},
               {"productId": "item3", "quantity": 2, "unitPrice": 10.00, "lineTotal": 20.00}])
    );
    let (reserved, _) = stack
        .event(INVENTORY, &format!("inventory.reserved.{id}"))
        .await;
    assert_eq!(reserved["data"]["totalAmount"], json!(95.0));
    assert_eq!(reserved["data"]["items"], order["items"]);
    let (paid, _) = stack
        .event(PAYMENTS, &format!("payments.processed.{id}"))
        .await;
    assert_eq!(paid["data"]["amount"], json!(95.0));
    let js = stack.jetstream().await;
    let ledger = js.get_key_value("payment-ledger").await.unwrap();
    let charge = ledger.get(&id).await.unwrap().unwrap();
    let charge = String::from_utf8_lossy(&charge);
    assert!(
        charge.contains(r#""amount":95.00"#),
        "charged the priced total: {charge}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_rejection_reason_end_to_end() {
    let stack = Stack::start().await;
    let cases = [
        (
            items_body("OMS-Cust-404", Value::Null, &[("item1", 1)]),
            "CUSTOMER_UNKNOWN",
        ),
        (
            items_body("OMS-Cust-003", Value::Null, &[("item1", 1)]),
            "CUSTOMER_BLOCKED",
        ),
        (
            items_body(
                "OMS-Cust-001",
                Value::Null,
                &[("item1", 1), ("no-such-item", 1)],
            ),
            "UNKNOWN_PRODUCT",
        ),
        (
            items_body("OMS-Cust-001", Value::Null, &[("item5", 1)]),
            "OUT_OF_STOCK",
        ),
        (
            // item1 costs 1299.99.
            items_body("OMS-Cust-001", json!(1299.98), &[("item1", 1)]),
            "PRICE_MISMATCH",
        ),
        (
            // Priced at 1299.99, above Alan's 100.00.
            items_body("OMS-Cust-002", Value::Null, &[("item1", 1)]),
            "PAYMENT_DECLINED",
        ),
    ];
    let mut placed = Vec::new();
    for (body, reason) in &cases {
        placed.push((stack.place_ok(body).await, *reason));
    }
    for (id, reason) in placed {
        let order = stack.terminal(&id).await;
        assert_eq!(order["status"], "REJECTED", "{order}");
        assert_eq!(order["reason"], reason, "{order}");
        let (event, _) = stack.event(ORDERS, &format!("orders.rejected.{id}")).await;
        assert_eq!(event["data"]["reason"], reason);
    }
    // At the limit is fine: ten of item3 at 10.00 for a 100.00 credit limit.
    let id = stack
        .place_ok(&items_body("OMS-Cust-002", json!(100.00), &[("item3", 10)]))
        .await;
    assert_eq!(stack.terminal(&id).await["status"], "CONFIRMED");
    // Blocked customer and declined payment had reserved item1: both were given back; the
    // mismatched price took nothing.
    stack.expect_available("item1", 1000).await;
    assert_eq!(stack.available("item3").await, 990);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn out_of_stock_takes_nothing_from_any_product() {
    let stack = Stack::start().await;
    let id = stack
        .place_ok(&items_body(
            "OMS-Cust-001",
            Value::Null,
            &[("item1", 3), ("item2", 2), ("item4", 6)],
        ))
        .await;
    let order = stack.terminal(&id).await;
    assert_eq!(order["reason"], "OUT_OF_STOCK");
    stack.drained(ORDERS, "inventory").await;
    for (product, stock) in [("item1", 1000), ("item2", 1000), ("item4", 5)] {
        assert_eq!(stack.available(product).await, stock, "{product}");
    }
    // A repeated product id adds up: 3 + 3 of item4 is more than its 5.
    let id = stack
        .place_ok(&json!({"customerId": "OMS-Cust-001",
            "items": [{"productId": "item4", "quantity": 3}, {"productId": "item4", "quantity": 3}]}))
        .await;
    assert_eq!(stack.terminal(&id).await["reason"], "OUT_OF_STOCK");
    assert_eq!(stack.available("item4").await, 5);
    // Exactly the stock is fine, and leaves zero: 5 of item4 at 25.00.
    let id = stack
        .place_ok(&items_body("OMS-Cust-001", json!(125), &[("item4", 5)]))
        .await;
    assert_eq!(stack.terminal(&id).await["status"], "CONFIRMED");
    assert_eq!(stack.available("item4").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declined_payment_gives_the_stock_back_and_charges_nothing() {
    let stack = Stack::start().await;
    let id = stack
        // 5 of item4 at 25.00 is 125.00, above Alan's 100.00.
        .place_ok(&items_body("OMS-Cust-002", json!(125), &[("item4", 5)]))
        .await;
    let order = stack.terminal(&id).await;
    assert_eq!(order["status"], "REJECTED");
    assert_eq!(order["reason"], "PAYMENT_DECLINED");
    let (released, _) = stack
        .event(INVENTORY, &format!("inventory.released.{id}"))
        .await;
    assert_eq!(released["type"], "InventoryReleased");
    stack.expect_available("item4", 5).await;
    // No charge; once the order is rejected the ledger voids it, so none can come.
    stack.drained(ORDERS, "payment-orders").await;
    let ledger = stack.ledger().await;
    assert_eq!(ledger[&id].charged, None, "no charge");
    assert!(ledger[&id].voided, "{:?}", ledger[&id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verdicts_join_whichever_comes_first() {
    // Inventory's verdict first: customer starts only once it is on the stream.
    let mut stack = Stack::builder(Mode::InProcess)
        .services(&["edge", "inventory", "payment", "order"])
        .start()
        .await;
    let first = stack.place_ok(&original_body()).await;
    stack
        .event(INVENTORY, &format!("inventory.reserved.{first}"))
        .await;
    stack.drained(INVENTORY, "payment-inventory").await;
    stack.start_service("customer").await;
    assert_eq!(stack.terminal(&first).await["status"], "CONFIRMED");

    // Customer's verdict first: inventory stops, and starts again once it is on the stream.
    let (stopped, _) = stack.stop_service("inventory").await;
    assert_eq!(stopped, Ok(()), "inventory stops cleanly");
    let second = stack.place_ok(&original_body()).await;
    stack
        .event(CUSTOMERS, &format!("customers.validated.{second}"))
        .await;
    stack.drained(CUSTOMERS, "payment-customers").await;
    let (status, body) = stack.get(&format!("/orders/{second}")).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("PENDING"),
        "waits for the other verdict: {body}"
    );
    stack.start_service("inventory").await;
    assert_eq!(stack.terminal(&second).await["status"], "CONFIRMED");
    assert_eq!(stack.available("item1").await, 998);

    // Each order charged exactly once.
    let js = stack.jetstream().await;
    let ledger = js.get_key_value("payment-ledger").await.unwrap();
    for id in [&first, &second] {
        assert!(ledger.get(id).await.unwrap().is_some());
    }
    assert_eq!(stack.count(PAYMENTS, "payments.processed.*").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_started_late_processes_what_waited() {
    let mut stack = Stack::builder(Mode::InProcess)
        .services(&["edge"])
        .start()
        .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(stack.place_ok(&original_body()).await);
    }
    // Read your writes: accepted orders are readable even with nothing but the edge running...
    stack.start_service("order").await;
    for id in &ids {
        let order = stack.get_json(&format!("/orders/{id}")).await;
        assert_eq!(order["status"], "PENDING");
        assert_eq!(order["totalAmount"].to_string(), "2599.99");
    }
    // ...and the rest of the saga catches up once its services come.
    for service in ["payment", "inventory", "customer"] {
        stack.start_service(service).await;
    }
    for id in &ids {
        assert_eq!(stack.terminal(id).await["status"], "CONFIRMED");
    }
    assert_eq!(stack.available("item2").await, 995);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejection_that_overtakes_the_order_reserves_nothing() {
    use oms_domain::events::Rejection;
    use oms_domain::{Envelope, Event, Item, Money, OrderSnapshot, Reason};
    use oms_topology::identity::Identity;
    let stack = Stack::builder(Mode::InProcess)
        .services(&["inventory"])
        .start()
        .await;
    // Each event by the service whose part it is: the order service rejects, the edge places.
    let (order_service, edge) = (
        stack.jetstream_as(Identity::Order).await,
        stack.jetstream_as(Identity::Edge).await,
    );
    let order_id = oms_domain::OrderId::new();
    let order = OrderSnapshot {
        customer_id: "OMS-Cust-003".into(),
        items: vec![Item {
            product_id: "item4".into(),
            quantity: 2,
        }],
        total_amount: Some(Money::from_cents(1_000)),
        placed_at: time::OffsetDateTime::now_utc(),
    };
    let rejected = Envelope::new(
        order_id,
        Event::OrderRejected(Rejection {
            order: order.clone(),
            reason: Reason::CustomerBlocked,
            detail: "blocked".into(),
        }),
    );
    oms_bus::publish(&order_service, &rejected).await.unwrap();
    stack.drained(ORDERS, "inventory").await;
    let placed = Envelope::new(order_id, Event::OrderPlaced(order));
    oms_bus::publish(&edge, &placed).await.unwrap();
    stack.drained(ORDERS, "inventory").await;
    assert_eq!(
        stack
            .count(INVENTORY, &format!("inventory.*.{order_id}"))
            .await,
        0
    );
    // Nothing taken: read the product over the service API (no edge runs here).
    let product: oms_domain::api::ProductView = oms_bus::api::call(
        &edge.client(),
        oms_topology::api::PRODUCTS_GET,
        &oms_domain::api::GetProduct {
            product_id: "item4".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(product.available, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_consumer_is_put_back_by_the_provisioner_and_orders_keep_flowing() {
    let stack = Stack::start().await;
    let first = stack.place_ok(&original_body()).await;
    assert_eq!(stack.terminal(&first).await["status"], "CONFIRMED");
    // Only the provisioner may delete a consumer, and only it makes one again: the services
    // wait for it (and say so) instead of recreating what is not theirs to create.
    let js = stack
        .jetstream_as(oms_topology::identity::Identity::Provisioner)
        .await;
    for (durable, stream) in [("customer", ORDERS), ("order-payments", PAYMENTS)] {
        js.delete_consumer_from_stream(durable, stream)
            .await
            .unwrap();
    }
    let second = stack.place_ok(&original_body()).await;
    stack.provision().await;
    assert_eq!(stack.terminal(&second).await["status"], "CONFIRMED");
    // The recreated durables start over from the first event; idempotency keeps it one effect.
    stack.drained(ORDERS, "customer").await;
    stack.drained(PAYMENTS, "order-payments").await;
    assert_eq!(stack.available("item1").await, 998);
    assert_eq!(stack.count(ORDERS, "orders.confirmed.*").await, 2);
}
