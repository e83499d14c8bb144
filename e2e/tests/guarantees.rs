//! Delivery guarantees, proven by racing and killing real processes: every accepted order ends
//! CONFIRMED or REJECTED exactly once, no order is charged twice, stock is never oversold or
//! leaked.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use oms_e2e::procs::Processes;
use oms_e2e::testing::eventually;
use oms_e2e::{DEADLINE, ORDERS, PAYMENTS, Stack, items_body, original_body};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

/// POSTs `body` with `key` until it is accepted (the edge or NATS may be down for a while);
/// returns the order id. Retrying with the same key is what makes a lost answer harmless.
async fn place_until_accepted(
    http: &reqwest::Client,
    edge: &str,
    body: &Value,
    key: &str,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let answer = http
            .post(format!("{edge}/orders"))
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await;
        if let Ok(r) = answer {
            let status = r.status().as_u16();
            let answer: Value = r.json().await.unwrap_or(Value::Null);
            match status {
                202 => return answer["orderId"].as_str().unwrap().to_string(),
                409 | 503 => {}
                other => panic!("unexpected {other}: {answer}"),
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "order {key} never accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn open(dir: &std::path::Path, service: &str) -> SqlitePool {
    let options = SqliteConnectOptions::new()
        .filename(dir.join(format!("{service}.db")))
        .read_only(true);
    SqlitePool::connect_with(options)
        .await
        .expect("opening a service database")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_racing_orders_for_five_items_confirm_exactly_five() {
    let procs = Processes::start(&[]).await;
    let edge = procs.edge();
    let body = items_body("OMS-Cust-001", json!(10), &[("item4", 1)]);
    let ids: Vec<String> = futures::stream::iter(0..100)
        .map(|i| {
            let (http, edge, body) = (procs.http.clone(), edge.clone(), body.clone());
            async move { place_until_accepted(&http, &edge, &body, &format!("race-{i}")).await }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 100);
    let mut outcomes: HashMap<String, usize> = HashMap::new();
    for id in &ids {
        let order = terminal(&procs.http, &edge, id).await;
        let outcome = order["reason"].as_str().unwrap_or("CONFIRMED").to_string();
        *outcomes.entry(outcome).or_default() += 1;
    }
    assert_eq!(outcomes.get("CONFIRMED"), Some(&5), "{outcomes:?}");
    assert_eq!(outcomes.get("OUT_OF_STOCK"), Some(&95), "{outcomes:?}");
    let product: Value = procs
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

async fn terminal(http: &reqwest::Client, edge: &str, id: &str) -> Value {
    eventually(DEADLINE, &format!("order {id} to end"), || async move {
        let r = http.get(format!("{edge}/orders/{id}")).send().await.ok()?;
        let order: Value = r.json().await.ok()?;
        (order["status"] == "CONFIRMED" || order["status"] == "REJECTED").then_some(order)
    })
    .await
}

/// The order mix: confirmed, declined, blocked, and a product that runs out.
fn mixed_order(i: usize) -> Value {
    match i % 10 {
        7 => items_body("OMS-Cust-002", json!(150), &[("item3", 1)]),
        8 => items_body("OMS-Cust-003", json!(20), &[("item2", 1)]),
        9 => items_body("OMS-Cust-001", json!(30), &[("item4", 1)]),
        _ => items_body("OMS-Cust-001", json!(10.5), &[("item1", 1), ("item2", 1)]),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_orders_survive_killed_services_and_a_broker_restart() {
    const ORDERS_PLACED: usize = 1_000;
    let mut procs = Processes::start(&[("OMS_CONSUMERS__ACK_WAIT", "2s")]).await;
    let edge = procs.edge();
    let http = procs.http.clone();
    let accepted = Arc::new(AtomicUsize::new(0));

    let placing = {
        let (edge, http, accepted) = (edge.clone(), http.clone(), accepted.clone());
        tokio::spawn(async move {
            futures::stream::iter(0..ORDERS_PLACED)
                .map(|i| {
                    let (edge, http, accepted) = (edge.clone(), http.clone(), accepted.clone());
                    async move {
                        let id =
                            place_until_accepted(&http, &edge, &mixed_order(i), &format!("k{i}"))
                                .await;
                        accepted.fetch_add(1, Ordering::Relaxed);
                        (i, id)
                    }
                })
                .buffer_unordered(16)
                .collect::<Vec<_>>()
                .await
        })
    };

    // Kill each service in turn with SIGKILL while orders flow, and restart the broker once.
    let mut kills = Vec::new();
    let schedule: [(usize, &str); 6] = [
        (100, "customer"),
        (250, "inventory"),
        (400, "payment"),
        (500, "nats-server"),
        (600, "order"),
        (800, "edge"),
    ];
    for (at, victim) in schedule {
        eventually(
            Duration::from_secs(120),
            &format!("{at} orders accepted"),
            || {
                let accepted = accepted.clone();
                async move { (accepted.load(Ordering::Relaxed) >= at).then_some(()) }
            },
        )
        .await;
        if victim == "nats-server" {
            tokio::task::block_in_place(|| procs.nats.restart());
        } else {
            procs.kill(victim);
            let victim: &'static str = oms_e2e::SERVICES
                .into_iter()
                .find(|s| *s == victim)
                .unwrap();
            procs.start_service(victim).await;
        }
        kills.push(victim);
    }
    let placed = placing.await.unwrap();
    assert_eq!(placed.len(), ORDERS_PLACED);
    let ids: HashSet<&str> = placed.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.len(), ORDERS_PLACED, "one order id per idempotency key");

    // Every accepted order ends within 30 s, exactly once.
    let orders = open(procs.data_dir(), "order").await;
    let ended = std::time::Instant::now();
    eventually(
        Duration::from_secs(30),
        "every order to be terminal",
        || {
            let orders = orders.clone();
            async move {
                let row = sqlx::query("SELECT COUNT(*) AS n FROM orders WHERE status <> 'PENDING'")
                    .fetch_one(&orders)
                    .await
                    .ok()?;
                (row.get::<i64, _>("n") as usize == ORDERS_PLACED).then_some(())
            }
        },
    )
    .await;
    let settle = ended.elapsed();
    let rows = sqlx::query("SELECT order_id, status, reason FROM orders")
        .fetch_all(&orders)
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        ORDERS_PLACED,
        "no phantom and no duplicate orders"
    );
    let status: HashMap<String, (String, Option<String>)> = rows
        .iter()
        .map(|r| (r.get("order_id"), (r.get("status"), r.get("reason"))))
        .collect();
    for id in &ids {
        assert!(status.contains_key(*id), "order {id} lost");
    }
    let history: i64 = sqlx::query("SELECT COUNT(*) AS n FROM order_history")
        .fetch_one(&orders)
        .await
        .unwrap()
        .get("n");
    assert_eq!(
        history as usize,
        2 * ORDERS_PLACED,
        "PENDING then one final status each"
    );
    let js = {
        let client = async_nats::connect(procs.nats.url()).await.unwrap();
        async_nats::jetstream::new(client)
    };
    let placed_events = count(&js, ORDERS, "orders.placed.*").await;
    assert_eq!(
        placed_events, ORDERS_PLACED as u64,
        "one orders.placed per order"
    );

    // Expected outcomes per kind of order.
    let confirmed: HashSet<&str> = status
        .iter()
        .filter(|(_, (s, _))| s == "CONFIRMED")
        .map(|(id, _)| id.as_str())
        .collect();
    for (i, id) in &placed {
        let (s, reason) = &status[id];
        let expected = match i % 10 {
            7 => Some("PAYMENT_DECLINED"),
            8 => Some("CUSTOMER_BLOCKED"),
            9 => None, // item4: 5 confirmed, the rest out of stock
            _ => Some("CONFIRMED"),
        };
        match expected {
            Some("CONFIRMED") => assert_eq!(s, "CONFIRMED", "order {i}"),
            Some(reason_code) => assert_eq!(reason.as_deref(), Some(reason_code), "order {i}"),
            None => assert!(
                s == "CONFIRMED" || reason.as_deref() == Some("OUT_OF_STOCK"),
                "order {i}: {s} {reason:?}"
            ),
        }
    }
    let item4_confirmed = placed
        .iter()
        .filter(|(i, id)| i % 10 == 9 && confirmed.contains(id.as_str()))
        .count();
    assert_eq!(item4_confirmed, 5, "item4 sold out exactly");

    // The ledger holds exactly one charge per confirmed order, none for rejected ones.
    let ledger = js.get_key_value("payment-ledger").await.unwrap();
    let mut charged = HashSet::new();
    let mut keys = ledger.keys().await.unwrap();
    while let Some(key) = keys.next().await {
        charged.insert(key.unwrap());
    }
    let confirmed_owned: HashSet<String> = confirmed.iter().map(|s| s.to_string()).collect();
    assert_eq!(charged, confirmed_owned, "charged = confirmed, each once");
    assert!(count(&js, PAYMENTS, "payments.processed.*").await >= confirmed.len() as u64);

    // Stock: initial = available + reserved by confirmed orders, once every release is done.
    let inventory = open(procs.data_dir(), "inventory").await;
    let initial: HashMap<&str, i64> = [
        ("item1", 1000),
        ("item2", 1000),
        ("item3", 1000),
        ("item4", 5),
        ("item5", 0),
    ]
    .into();
    eventually(DEADLINE, "stock to balance", || {
        let (inventory, confirmed, initial) = (inventory.clone(), &confirmed, &initial);
        async move {
            let mut reserved: HashMap<String, i64> = HashMap::new();
            let rows = sqlx::query(
                "SELECT r.order_id, r.status, i.product_id, i.quantity FROM reservations r \
                 JOIN reservation_items i ON i.order_id = r.order_id WHERE r.status = 'RESERVED'",
            )
            .fetch_all(&inventory)
            .await
            .ok()?;
            for row in &rows {
                let order: String = row.get("order_id");
                if !confirmed.contains(order.as_str()) {
                    return None; // a rejected order's release has not run yet
                }
                *reserved.entry(row.get("product_id")).or_default() +=
                    row.get::<i64, _>("quantity");
            }
            for row in sqlx::query("SELECT product_id, available FROM products")
                .fetch_all(&inventory)
                .await
                .ok()?
            {
                let product: String = row.get("product_id");
                let available: i64 = row.get("available");
                assert!(available >= 0, "{product} oversold");
                let held = reserved.get(&product).copied().unwrap_or(0);
                if initial[product.as_str()] != available + held {
                    return None;
                }
            }
            Some(())
        }
    })
    .await;
    println!(
        "placed {ORDERS_PLACED}, killed {kills:?}, confirmed {}, rejected {}, terminal {settle:?} after the last 202; lost 0, doubled 0, charged twice 0, stock drift 0",
        confirmed.len(),
        ORDERS_PLACED - confirmed.len()
    );
}

async fn count(js: &async_nats::jetstream::Context, stream: &str, subject: &str) -> u64 {
    use futures::TryStreamExt;
    let stream = js.get_stream(stream).await.unwrap();
    let mut subjects = stream.info_with_subjects(subject).await.unwrap();
    let mut total = 0;
    while let Some((_, n)) = subjects.try_next().await.unwrap() {
        total += n as u64;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_in_time_and_loses_nothing() {
    let mut procs = Processes::start(&[]).await;
    let edge = procs.edge();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            place_until_accepted(&procs.http, &edge, &original_body(), &format!("t{i}")).await,
        );
    }
    for service in ["customer", "inventory", "payment", "order"] {
        let (code, took) = procs.terminate(service).await;
        assert_eq!(code, Some(0), "{service} exits 0");
        assert!(took < Duration::from_secs(10), "{service} took {took:?}");
        procs.start_service(service).await;
    }
    for id in &ids {
        assert_eq!(
            terminal(&procs.http, &edge, id).await["status"],
            "CONFIRMED"
        );
    }
    let (code, _) = procs.terminate("edge").await;
    assert_eq!(code, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_event_twice_has_one_effect() {
    use oms_shared::Envelope;
    let stack = Stack::start().await;
    let id = stack
        .place_ok(&items_body("OMS-Cust-001", json!(42), &[("item4", 2)]))
        .await;
    assert_eq!(stack.terminal(&id).await["status"], "CONFIRMED");
    let js = stack.jetstream().await;
    // Every event of the order again: once with its own Nats-Msg-Id (the server drops it), once
    // with a new one (it is stored, and every consumer sees it a second time).
    for (stream, subject) in [
        (ORDERS, format!("orders.placed.{id}")),
        ("CUSTOMERS", format!("customers.validated.{id}")),
        ("INVENTORY", format!("inventory.reserved.{id}")),
        (PAYMENTS, format!("payments.processed.{id}")),
    ] {
        let (event, _) = stack.event(stream, &subject).await;
        let envelope: Envelope = serde_json::from_value(event).unwrap();
        let ack = oms_shared::bus::publish(&js, &envelope).await.unwrap();
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
    let ledger = js.get_key_value("payment-ledger").await.unwrap();
    let mut keys: Vec<String> = ledger
        .keys()
        .await
        .unwrap()
        .map(|k| k.unwrap())
        .collect()
        .await;
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
            let (http, edge, body) = (stack.http.clone(), stack.edge().to_string(), body.clone());
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
        &place_until_accepted(&stack.http, stack.edge(), &body, "same-key").await,
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
        &place_until_accepted(&stack.http, stack.edge(), &same, "same-key").await,
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
    assert_eq!(stack.count(ORDERS, "orders.placed.*").await, 1);
}
