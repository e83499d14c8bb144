//! The HTTP contract of the edge: status codes, problem+json, reads and pages.

use std::time::Duration;

use oms_e2e::{DEADLINE, Mode, ORDERS, Stack, items_body, original_body, testing::eventually};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends a raw body with a content type; returns status, content type and parsed body.
async fn post_raw(stack: &Stack, content_type: Option<&str>, body: &str) -> (u16, String, Value) {
    let mut request = stack
        .http
        .post(format!("{}/orders", stack.edge()))
        .body(body.to_string());
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.json().await.unwrap_or(Value::Null))
}

fn assert_problem(status: u16, ct: &str, body: &Value, expected: u16, needle: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(ct, "application/problem+json");
    assert_eq!(body["status"], expected);
    assert!(body["type"].as_str().unwrap().starts_with("/problems/"));
    assert!(body["title"].is_string());
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(needle),
        "{detail:?} should mention {needle:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_get_clear_problems_and_accept_nothing() {
    let stack = Stack::start().await;
    let good = original_body().to_string();
    let cases: Vec<(Option<&str>, String, u16, &str)> = vec![
        (None, good.clone(), 415, "application/json"),
        (Some("text/plain"), good.clone(), 415, "application/json"),
        (Some("application/json"), "{\"customerId\":".into(), 400, "not valid JSON"),
        (Some("application/json"), "[]".into(), 422, "JSON object"),
        (
            Some("application/json"),
            r#"{"customerId":"OMS-Cust-001","totalAmount":"2599.99","productIds":["item1"]}"#.into(),
            422,
            "not a string",
        ),
        (
            Some("application/json"),
            r#"{"customerId":"OMS-Cust-001","totalAmount":2599.999,"productIds":["item1"]}"#.into(),
            422,
            "2 decimal",
        ),
        (
            Some("application/json"),
            r#"{"customerId":"OMS-Cust-001","totalAmount":0,"productIds":["item1"]}"#.into(),
            422,
            "greater than 0",
        ),
        (
            Some("application/json"),
            r#"{"customerId":"OMS-Cust-001","totalAmount":1,"items":[]}"#.into(),
            422,
            "1 to 100",
        ),
        (
            Some("application/json; charset=utf-8"),
            r#"{"customerId":"OMS-Cust-001","totalAmount":1,"items":[{"productId":"item1","quantity":0}]}"#.into(),
            422,
            "quantity",
        ),
        (
            Some("application/json"),
            r#"{"customerId":"OMS-Cust-001","totalAmount":1,"productIds":["item1"],"items":[{"productId":"item1","quantity":1}]}"#.into(),
            422,
            "not both",
        ),
        (
            Some("application/json"),
            format!(r#"{{"customerId":"{}","totalAmount":1,"productIds":["a"]}}"#, "x".repeat(70 * 1024)),
            413,
            "64 KiB",
        ),
    ];
    for (ct, body, expected, needle) in cases {
        let (status, rct, answer) = post_raw(&stack, ct, &body).await;
        assert_problem(status, &rct, &answer, expected, needle);
    }
    // None of them reached the stream.
    assert_eq!(stack.count(ORDERS, "orders.placed.*").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunked_body_over_the_limit_is_413() {
    let stack = Stack::start().await;
    let addr = stack.edge().trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /orders HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        stack.operator_token()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let chunk = "x".repeat(16 * 1024);
    for _ in 0..5 {
        let piece = format!("{:x}\r\n{chunk}\r\n", chunk.len());
        if conn.write_all(piece.as_bytes()).await.is_err() {
            break; // the server may answer and close before reading it all
        }
    }
    let _ = conn.write_all(b"0\r\n\r\n").await;
    let mut answer = String::new();
    let _ = tokio::time::timeout(DEADLINE, conn.read_to_string(&mut answer)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    // A small chunked body is fine.
    let small = original_body().to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    conn.write_all(format!("{head}{:x}\r\n{small}\r\n0\r\n\r\n", small.len()).as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(DEADLINE, conn.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_things_are_404_problems() {
    let stack = Stack::start().await;
    for path in [
        format!("/orders/{}", uuid::Uuid::now_v7()),
        "/orders/not-a-uuid".to_string(),
        "/customers/OMS-Cust-404".to_string(),
        "/products/item404".to_string(),
        "/nothing/here".to_string(),
    ] {
        let r = stack
            .http
            .get(format!("{}{path}", stack.edge()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customers_products_and_health_are_readable() {
    let stack = Stack::start().await;
    let ada = stack.get_json("/customers/OMS-Cust-001").await;
    assert_eq!(
        ada,
        json!({"customerId": "OMS-Cust-001", "name": "Ada Lovelace", "status": "ACTIVE", "creditLimit": 10000.0})
    );
    // Money's exact text: two decimals, never through a float (`10000.0`).
    let (_, text) = stack.get("/customers/OMS-Cust-001").await;
    assert!(text.contains(r#""creditLimit":10000.00"#), "{text}");
    let grace = stack.get_json("/customers/OMS-Cust-003").await;
    assert_eq!(grace["status"], "BLOCKED");
    let item4 = stack.get_json("/products/item4").await;
    assert_eq!(item4["productId"], "item4");
    assert_eq!(item4["available"], 5);
    // Inventory owns the prices (DESIGN's demo prices), exact on the wire.
    let (_, text) = stack.get("/products/item4").await;
    assert!(text.contains(r#""price":25.00"#), "{text}");
    let (_, text) = stack.get("/products/item1").await;
    assert!(text.contains(r#""price":1299.99"#), "{text}");
    assert!(item4["name"].is_string());
    assert_eq!(stack.get("/healthz").await.0, 200);
    assert_eq!(stack.get("/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orders_are_listed_newest_first_in_pages() {
    let stack = Stack::start().await;
    let mut ada = Vec::new();
    for _ in 0..3 {
        ada.push(stack.place_ok(&original_body()).await);
    }
    let alan = stack
        .place_ok(&items_body("OMS-Cust-002", Value::Null, &[("item3", 11)]))
        .await;
    for id in ada.iter().chain([&alan]) {
        stack.terminal(id).await;
    }
    let page = stack
        .get_json("/orders?customerId=OMS-Cust-001&limit=2")
        .await;
    let ids: Vec<&str> = page["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["orderId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [ada[2].as_str(), ada[1].as_str()], "newest first");
    let next = page["next"].as_str().expect("a next cursor");
    let rest = stack
        .get_json(&format!(
            "/orders?customerId=OMS-Cust-001&limit=2&after={next}"
        ))
        .await;
    assert_eq!(rest["orders"].as_array().unwrap().len(), 1);
    assert_eq!(rest["orders"][0]["orderId"], ada[0].as_str());
    assert!(rest["next"].is_null());

    let rejected = stack.get_json("/orders?status=REJECTED").await;
    assert_eq!(rejected["orders"].as_array().unwrap().len(), 1);
    assert_eq!(rejected["orders"][0]["orderId"], alan.as_str());
    assert_eq!(rejected["orders"][0]["reason"], "PAYMENT_DECLINED");
    let all = stack.get_json("/orders").await;
    assert_eq!(all["orders"].as_array().unwrap().len(), 4);

    let (status, body) = stack.get("/orders?status=LOST").await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = stack.get("/orders?limit=many").await;
    assert_eq!(status, 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_nats_down_orders_get_503_and_nothing_is_half_accepted() {
    // The broker dies right after the first order: a message it had delivered and not yet seen
    // acked comes back after the ack wait (30 s by default), shortened here as for the kills.
    let mut stack = Stack::builder(Mode::InProcess)
        .configure(|c| c.consumers.ack_wait = Duration::from_secs(2))
        .start()
        .await;
    let before = stack.place_ok(&original_body()).await;
    stack.nats.server().kill();
    // Once the edge has noticed (its readiness says so), it refuses without publishing. A request
    // racing the very moment of the failure is what Idempotency-Key is for (see the README).
    eventually(DEADLINE, "the edge to notice NATS is gone", || async {
        (stack.get("/readyz").await.0 == 503).then_some(())
    })
    .await;
    let (status, answer) = stack.place(&original_body()).await;
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .unwrap()
            .contains("nothing was accepted")
    );
    stack.nats.server().restart();
    // The services reconnect by themselves; the edge takes orders again.
    eventually(DEADLINE, "the edge to accept orders again", || async {
        let (status, _) = stack.place(&original_body()).await;
        (status == 202).then_some(())
    })
    .await;
    assert_eq!(stack.terminal(&before).await["status"], "CONFIRMED");
    // Only 202s became orders: the one before, and the one that got through after.
    assert_eq!(stack.count(ORDERS, "orders.placed.*").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_message_goes_to_the_dlq_and_orders_behind_it_flow() {
    use oms_topology::identity::Identity;
    let stack = Stack::start().await;
    let js = stack.jetstream().await;
    stack
        .jetstream_as(Identity::Edge)
        .await
        .publish("orders.placed.poison", "this is not an event".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let id = stack.place_ok(&original_body()).await;
    assert_eq!(stack.terminal(&id).await["status"], "CONFIRMED");
    let (_, headers) = eventually(DEADLINE, "the poison message in the DLQ", || {
        let js = js.clone();
        async move {
            let s = js.get_stream("DLQ").await.ok()?;
            let m = s
                .get_last_raw_message_by_subject("dlq.customer.orders.placed.poison")
                .await
                .ok()?;
            Some((m.payload, m.headers))
        }
    })
    .await;
    assert_eq!(headers.get("Oms-Dlq-Service").unwrap().as_str(), "customer");
    assert_eq!(headers.get("Oms-Dlq-Stream").unwrap().as_str(), "ORDERS");
    assert_eq!(
        headers.get("Oms-Dlq-Subject").unwrap().as_str(),
        "orders.placed.poison"
    );
    assert!(
        headers
            .get("Oms-Dlq-Sequence")
            .unwrap()
            .as_str()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert!(!headers.get("Oms-Dlq-Error").unwrap().as_str().is_empty());

    // All three readers of ORDERS parked it; replaying one (the operator's part) puts it back
    // on its subject.
    let js = stack.jetstream_as(Identity::Operator).await;
    let letters = eventually(DEADLINE, "three dead letters", || {
        let js = js.clone();
        async move {
            let letters = oms_bus::dlq::list(&js, 1, 100).await.ok()?;
            (letters.len() == 3).then_some(letters)
        }
    })
    .await;
    let services: std::collections::HashSet<&str> =
        letters.iter().map(|l| l.service.as_str()).collect();
    assert_eq!(services, ["customer", "inventory", "order"].into());
    assert!(letters.iter().all(|l| l.payload == "this is not an event"));
    let first = letters[0].sequence;
    let subject = oms_bus::dlq::replay(&js, first).await.unwrap();
    assert_eq!(subject, "orders.placed.poison");
    assert_eq!(stack.count(ORDERS, "orders.placed.poison").await, 2);
    let after = oms_bus::dlq::list(&js, 1, 100).await.unwrap();
    assert!(
        after.iter().all(|l| l.sequence != first),
        "replayed letter removed"
    );
    assert!(matches!(
        oms_bus::dlq::replay(&js, first).await,
        Err(oms_bus::dlq::DlqError::NotFound(_))
    ));
}

/// `GET /openapi.json` needs no token and serves docs/openapi.json as it is checked in (which
/// `oms-edge`'s own test keeps equal to what the code describes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_description_is_the_checked_in_one() {
    let stack = Stack::builder(oms_e2e::Mode::InProcess)
        .services(&["edge"])
        .start()
        .await;
    let r = reqwest::Client::new()
        .get(format!("{}/openapi.json", stack.edge()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let served = r.text().await.unwrap();
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json"))
            .expect("docs/openapi.json");
    assert!(
        served == checked_in,
        "GET /openapi.json differs from docs/openapi.json"
    );
    let described: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(described["openapi"], "3.1.0");
}
