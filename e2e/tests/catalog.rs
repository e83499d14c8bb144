//! Operators' catalog and customers, end to end: each change is made by its owning service,
//! validated like an order, and a price change never reprices an order already priced.

use oms_e2e::{Stack, items_body};
use serde_json::{Value, json};

const ADA: &str = "OMS-Cust-001";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_add_products_and_customers_and_block_them() {
    let stack = Stack::start().await;
    let ada = stack.customer_token(ADA);
    let product = json!({"productId": "item9", "name": "Zuse Z3", "price": 199.90, "available": 2});
    // Customers may not.
    let (status, answer) = stack.post_as(Some(&ada), "/products", Some(&product)).await;
    assert_eq!(status, 403, "{answer}");

    let (status, answer) = stack.post_as(None, "/products", Some(&product)).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        answer,
        json!({"productId": "item9", "name": "Zuse Z3", "price": 199.9, "available": 2})
    );
    let (_, text) = stack.get("/products/item9").await;
    assert!(text.contains(r#""price":199.90,"#), "exact: {text}");
    // The same id again: 409, and nothing changed.
    let other = json!({"productId": "item9", "name": "Other", "price": 1, "available": 99});
    let (status, answer) = stack.post_as(None, "/products", Some(&other)).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(stack.get_json("/products/item9").await["name"], "Zuse Z3");
    // Broken rules: 422 with what is wrong, nothing made.
    for (body, needle) in [
        (
            json!({"productId": "bad id", "name": "x", "price": 1, "available": 1}),
            "productId",
        ),
        (
            json!({"productId": "item10", "name": "x", "price": 0, "available": 1}),
            "price",
        ),
        (
            json!({"productId": "item10", "name": "x", "price": 1.001, "available": 1}),
            "price",
        ),
        (
            json!({"productId": "item10", "name": "x", "price": 1, "available": -3}),
            "available",
        ),
    ] {
        let (status, answer) = stack.post_as(None, "/products", Some(&body)).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert!(
            answer["detail"].as_str().unwrap().contains(needle),
            "{answer}"
        );
    }
    assert_eq!(stack.get("/products/item10").await.0, 404);

    // Stock delivered, once per Idempotency-Key.
    let stack = &stack;
    let deliver = |key: &'static str| async move {
        let r = stack
            .http
            .post(format!("{}/products/item9/stock", stack.edge()))
            .header("idempotency-key", key)
            .json(&json!({"add": 3}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(deliver("d1").await.1["available"], 5);
    assert_eq!(
        deliver("d1").await.1["available"],
        5,
        "a retry adds nothing"
    );
    assert_eq!(deliver("d2").await.1["available"], 8);

    // The new product sells at its price.
    let id = stack
        .place_ok(&items_body(ADA, json!(399.80), &[("item9", 2)]))
        .await;
    let order = stack.terminal(&id).await;
    assert_eq!(order["status"], "CONFIRMED", "{order}");
    stack.expect_available("item9", 6).await;

    // A new customer orders; blocked, its orders are rejected; unblocked, accepted again.
    let kay = json!({"customerId": "OMS-Cust-009", "name": "Kay", "creditLimit": 50});
    let (status, answer) = stack.post_as(None, "/customers", Some(&kay)).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["status"], "ACTIVE");
    assert_eq!(stack.post_as(None, "/customers", Some(&kay)).await.0, 409);
    let body = items_body("OMS-Cust-009", Value::Null, &[("item3", 2)]);
    assert_eq!(
        stack.terminal(&stack.place_ok(&body).await).await["status"],
        "CONFIRMED"
    );
    let (status, answer) = stack
        .post_as(None, "/customers/OMS-Cust-009/block", None)
        .await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("BLOCKED")));
    assert_eq!(
        stack
            .post_as(None, "/customers/OMS-Cust-009/block", None)
            .await
            .0,
        200
    );
    let order = stack.terminal(&stack.place_ok(&body).await).await;
    assert_eq!(order["reason"], "CUSTOMER_BLOCKED");
    let (status, answer) = stack
        .post_as(None, "/customers/OMS-Cust-009/unblock", None)
        .await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("ACTIVE")));
    assert_eq!(
        stack.terminal(&stack.place_ok(&body).await).await["status"],
        "CONFIRMED"
    );
    assert_eq!(
        stack
            .post_as(None, "/customers/OMS-Cust-404/block", None)
            .await
            .0,
        404
    );
    assert_eq!(
        stack
            .post_as(Some(&ada), "/customers/OMS-Cust-009/block", None)
            .await
            .0,
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn price_changes_during_load_never_change_a_priced_order() {
    let stack = Stack::start().await;
    let body = items_body(ADA, Value::Null, &[("item3", 3)]);
    let price = |cents: u32| json!({"price": f64::from(cents) / 100.0});
    // Orders flow while the price of item3 changes under them.
    let orders = async {
        let mut ids = Vec::new();
        for _ in 0..40 {
            ids.push(stack.place_ok(&body).await);
        }
        ids
    };
    let changes = async {
        for cents in (1_000..1_400).step_by(20) {
            let (status, _) = stack.patch("/products/item3", &price(cents)).await;
            assert_eq!(status, 200);
        }
    };
    let (ids, ()) = tokio::join!(orders, changes);
    let mut seen = Vec::new();
    for id in &ids {
        let order = stack.terminal(id).await;
        assert_eq!(order["status"], "CONFIRMED", "{order}");
        let line = &order["items"][0];
        let unit = line["unitPrice"].as_f64().expect("priced");
        // Priced once, consistently: three at the unit price, and that is the total charged.
        assert_eq!(
            line["lineTotal"].as_f64().unwrap(),
            (unit * 3.0 * 100.0).round() / 100.0
        );
        assert_eq!(order["totalAmount"], line["lineTotal"]);
        seen.push(order);
    }
    // Change the price again: not one priced order moves, nor what was charged.
    assert_eq!(stack.patch("/products/item3", &price(99_900)).await.0, 200);
    let ledger = stack.ledger().await;
    for before in &seen {
        let id = before["orderId"].as_str().unwrap();
        let after = stack.get_json(&format!("/orders/{id}")).await;
        assert_eq!(after["items"], before["items"], "{id}");
        assert_eq!(after["totalAmount"], before["totalAmount"], "{id}");
        let charged = ledger[id].charged.expect("charged").to_string();
        assert_eq!(
            charged.parse::<f64>().unwrap(),
            before["totalAmount"].as_f64().unwrap()
        );
    }
    let prices: std::collections::HashSet<String> = seen
        .iter()
        .map(|o| o["items"][0]["unitPrice"].to_string())
        .collect();
    assert!(
        prices.len() > 1,
        "the load saw the price change: {prices:?}"
    );
    // A new order pays the new price.
    let late = stack.place_ok(&body).await;
    assert_eq!(
        stack.terminal(&late).await["items"][0]["unitPrice"],
        json!(999.0)
    );
}
