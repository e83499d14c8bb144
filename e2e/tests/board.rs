//! The live board in a real headless Chromium (its form places orders, the event stream moves
//! them to their status, a click shows the history), and the event streams as API clients see
//! them: in order, resumable, only for who may read them, and ending with the edge.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use oms_e2e::browser::Browser;
use oms_e2e::testing::eventually;
use oms_e2e::{DEADLINE, Stack, items_body, original_body};
use serde_json::{Value, json};

/// Runs in the page: every row of the board as `{id, status, reason, stages}`.
const ROWS: &str = "return Array.from(document.querySelectorAll('#orders tbody tr')).map(tr => ({
    id: tr.dataset.orderId,
    status: tr.dataset.status || '',
    reason: tr.querySelector('td.reason').textContent,
    stages: Array.from(tr.querySelectorAll('td.stage')).map(td => td.textContent),
    took: tr.querySelector('td.took').textContent,
}));";

async fn rows(browser: &Browser) -> Vec<Value> {
    browser
        .run(ROWS, json!([]))
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits until the board's row of `order` satisfies `check`; returns the row.
async fn until_row(
    browser: &Browser,
    order: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(
        DEADLINE,
        &format!("the board to show {order} {what}"),
        || async {
            rows(browser)
                .await
                .into_iter()
                .find(|row| row["id"] == order && check(row))
        },
    )
    .await
}

/// Waits until `css`'s text satisfies `check`; returns it.
async fn until_text(browser: &Browser, css: &str, check: impl Fn(&str) -> bool) -> String {
    eventually(DEADLINE, &format!("{css} to read as expected"), || async {
        let text = browser.text(css).await;
        check(&text).then_some(text)
    })
    .await
}

/// Places an order through the page's form; returns the id the page reports.
async fn place_through_the_form(
    browser: &Browser,
    customer: &str,
    items: &str,
    amount: &str,
) -> String {
    let before = browser
        .run(
            "return document.getElementById('placed').dataset.orderId || '';",
            json!([]),
        )
        .await;
    browser.fill("#customer", customer).await;
    browser.fill("#items", items).await;
    browser.fill("#amount", amount).await;
    browser.click("#place-order").await;
    eventually(DEADLINE, "the page to report the order placed", || async {
        let placed = browser
            .run(
                "return document.getElementById('placed').dataset.orderId || '';",
                json!([]),
            )
            .await;
        let placed = placed.as_str().unwrap_or_default().to_string();
        (!placed.is_empty() && placed != before).then_some(placed)
    })
    .await
}

async fn sign_in(browser: &Browser, token: &str) {
    browser.fill("#token", token).await;
    browser.click("#sign-in").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_board_follows_orders_placed_through_its_form() {
    let stack = Stack::start().await;
    let browser = Browser::start(1440, 900).await;
    browser.goto(&format!("{}/", stack.edge())).await;
    assert_eq!(
        browser.run("return document.title;", json!([])).await,
        "OMS · live board"
    );

    sign_in(&browser, &stack.operator_token()).await;
    until_text(&browser, "#connection", |t| t == "live").await;

    // The original order: CONFIRMED on the board, moved there by the event stream alone (the
    // page read the list once, before it was placed).
    let confirmed =
        place_through_the_form(&browser, "OMS-Cust-001", "item1:1, item2:1", "2599.99").await;
    until_row(&browser, &confirmed, "CONFIRMED", |r| {
        r["status"] == "CONFIRMED"
    })
    .await;
    assert_eq!(
        stack.until_status(&confirmed, "CONFIRMED").await["totalAmount"],
        2599.99
    );

    // Rejections show their reason: a blocked customer, an amount that is not the price.
    let blocked = place_through_the_form(&browser, "OMS-Cust-003", "item3:1", "").await;
    let row = until_row(&browser, &blocked, "REJECTED", |r| {
        r["status"] == "REJECTED"
    })
    .await;
    assert_eq!(row["reason"], "CUSTOMER_BLOCKED", "{row}");
    let mismatch = place_through_the_form(&browser, "OMS-Cust-001", "item3:2", "25").await;
    let row = until_row(&browser, &mismatch, "REJECTED", |r| {
        r["status"] == "REJECTED"
    })
    .await;
    assert_eq!(row["reason"], "PRICE_MISMATCH", "{row}");

    // A finished order's stages fill in from its history: each passed, with its time.
    let row = until_row(&browser, &confirmed, "with its stages", |r| {
        r["stages"].as_array().is_some_and(|s| {
            s.iter()
                .all(|s| s.as_str().is_some_and(|s| s.starts_with('✓')))
        })
    })
    .await;
    assert!(
        row["stages"][3].as_str().unwrap().contains(" ms")
            || row["stages"][3].as_str().unwrap().contains(" s"),
        "{row}"
    );
    let row = until_row(&browser, &blocked, "refused at the customer stage", |r| {
        r["stages"][0].as_str().is_some_and(|s| s.starts_with('✗'))
    })
    .await;
    assert!(
        row["stages"][1].as_str().unwrap().starts_with('✓'),
        "inventory reserved: {row}"
    );

    // A click shows the order's history, every step in order.
    browser
        .click(&format!("tr[data-order-id='{confirmed}']"))
        .await;
    until_text(&browser, "#detail-id", |t| t == confirmed).await;
    let steps = eventually(DEADLINE, "the history to show", || async {
        let types = browser
            .run(
                "return Array.from(document.querySelectorAll('#history li')).map(li => li.dataset.type);",
                json!([]),
            )
            .await;
        let types: Vec<String> = serde_json::from_value(types).ok()?;
        (types.len() >= 5).then_some(types)
    })
    .await;
    // Customer and inventory decide at the same time: either may come first.
    let mut checks = steps[1..3].to_vec();
    checks.sort();
    assert_eq!(
        checks,
        ["CustomerValidated", "InventoryReserved"],
        "{steps:?}"
    );
    assert_eq!(
        [&steps[0], &steps[3], &steps[4]],
        ["OrderPlaced", "PaymentProcessed", "OrderConfirmed"],
        "{steps:?}"
    );
    let history = browser.text("#history").await;
    assert!(
        history.contains("CONFIRMED") && history.contains("2599.99"),
        "{history}"
    );

    // The counters: orders per status (the order service counts them), no dead letters.
    until_text(&browser, "#count-CONFIRMED", |t| t == "1").await;
    until_text(&browser, "#count-REJECTED", |t| t == "2").await;
    assert_eq!(browser.text("#dead-letters").await, "0");
    until_text(&browser, "#lag", |t| t == "0").await;

    // The token is kept for the tab: a reload follows again without asking.
    browser.refresh().await;
    until_text(&browser, "#connection", |t| t == "live").await;
    until_row(&browser, &confirmed, "CONFIRMED after a reload", |r| {
        r["status"] == "CONFIRMED"
    })
    .await;

    // Nothing was refused by the page's policy, nothing failed to load.
    let problems: Vec<(String, String)> = browser
        .console()
        .await
        .into_iter()
        .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
        .collect();
    assert!(problems.is_empty(), "the browser complained: {problems:?}");

    // A customer's token places orders but cannot watch everybody's.
    browser.click("#sign-out").await;
    sign_in(&browser, &stack.customer_token("OMS-Cust-001")).await;
    until_text(&browser, "#connection", |t| {
        t.contains("operator token is needed")
    })
    .await;
}

/// Many orders at once, then what happens to some of them after the saga: the board shows
/// each one's status and reason, and the counters add up. The README's screenshot is taken
/// here (`OMS_BOARD_SCREENSHOT=$PWD/docs/board.png`, an absolute path: tests run in `e2e/`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_board_keeps_up_with_many_orders() {
    const ORDERS: usize = 240;
    let stack = Stack::start().await;
    let browser = Browser::start(1440, 900).await;
    browser.goto(&format!("{}/", stack.edge())).await;
    sign_in(&browser, &stack.operator_token()).await;
    until_text(&browser, "#connection", |t| t == "live").await;

    // Mostly good orders, some for the blocked customer, some with the wrong amount.
    let body = |i: usize| match i % 10 {
        7 => items_body("OMS-Cust-003", Value::Null, &[("item3", 1)]),
        9 => items_body("OMS-Cust-002", json!(99.0), &[("item3", 2)]),
        _ => original_body(),
    };
    let placed: Vec<(String, bool)> = futures::future::join_all((0..ORDERS).map(|i| {
        let stack = &stack;
        async move { (stack.place_ok(&body(i)).await, !matches!(i % 10, 7 | 9)) }
    }))
    .await;
    let mut expected: HashMap<String, (&str, &str)> = placed
        .iter()
        .map(|(id, ok)| match ok {
            true => (id.clone(), ("CONFIRMED", "")),
            false => (id.clone(), ("REJECTED", "?")),
        })
        .collect();
    let confirmed: Vec<&String> = placed
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(id, _)| id)
        .collect();
    until_text(&browser, "#count-CONFIRMED", |t| {
        t == confirmed.len().to_string()
    })
    .await;

    // After the saga: two delivered, two shipped, three cancelled.
    for id in &confirmed[..4] {
        let ship = json!({"trackingNumber": "1Z999AA10123456784"});
        let (code, _) = stack
            .post_as(None, &format!("/orders/{id}/ship"), Some(&ship))
            .await;
        assert_eq!(code, 202);
        stack.until_status(id, "SHIPPED").await;
        expected.insert(id.to_string(), ("SHIPPED", ""));
    }
    for id in &confirmed[..2] {
        let (code, _) = stack
            .post_as(None, &format!("/orders/{id}/deliver"), None)
            .await;
        assert_eq!(code, 202);
        expected.insert(id.to_string(), ("DELIVERED", ""));
    }
    for id in &confirmed[4..7] {
        let (code, _) = stack
            .post_as(None, &format!("/orders/{id}/cancel"), None)
            .await;
        assert_eq!(code, 202);
        expected.insert(id.to_string(), ("CANCELLED", "CANCELLED_BY_OPERATOR"));
    }

    // And a last few, each rejected for its own reason (or not).
    let last = [
        (
            items_body("OMS-Cust-999", Value::Null, &[("item3", 1)]),
            "REJECTED",
            "CUSTOMER_UNKNOWN",
        ),
        (
            items_body("OMS-Cust-001", Value::Null, &[("item5", 1)]),
            "REJECTED",
            "OUT_OF_STOCK",
        ),
        (original_body(), "CONFIRMED", ""),
        (
            items_body("OMS-Cust-002", Value::Null, &[("item1", 1)]),
            "REJECTED",
            "PAYMENT_DECLINED",
        ),
        (
            items_body("OMS-Cust-001", Value::Null, &[("no-such-item", 1)]),
            "REJECTED",
            "UNKNOWN_PRODUCT",
        ),
        (
            items_body("OMS-Cust-003", Value::Null, &[("item4", 1)]),
            "REJECTED",
            "CUSTOMER_BLOCKED",
        ),
        (original_body(), "CONFIRMED", ""),
        (
            items_body(
                "OMS-Cust-001",
                json!(2599.98),
                &[("item1", 1), ("item2", 1)],
            ),
            "REJECTED",
            "PRICE_MISMATCH",
        ),
    ];
    for (body, status, reason) in last {
        expected.insert(stack.place_ok(&body).await, (status, reason));
    }

    // The counters: every order in its status.
    for status in [
        "PENDING",
        "CONFIRMED",
        "REJECTED",
        "SHIPPED",
        "DELIVERED",
        "CANCELLED",
    ] {
        let count = expected.values().filter(|(s, _)| *s == status).count();
        until_text(&browser, &format!("#count-{status}"), |t| {
            t == count.to_string()
        })
        .await;
    }
    // The board keeps the hundred orders that changed last, each in its status with its
    // reason and the time it took.
    let shown = eventually(DEADLINE, "the board to settle", || async {
        let rows = rows(&browser).await;
        let settled = rows.len() == 100
            && rows.iter().all(|r| {
                let (status, _) = expected[r["id"].as_str().unwrap_or_default()];
                r["status"] == status && r["took"] != "" && r["stages"][3] != ""
            });
        settled.then_some(rows)
    })
    .await;
    for row in &shown {
        let took = row["took"].as_str().unwrap();
        assert!(took.ends_with(" ms") || took.ends_with(" s"), "{row}");
        match expected[row["id"].as_str().unwrap()] {
            (_, "") => assert_eq!(row["reason"], "", "{row}"),
            (_, "?") => assert!(
                row["reason"] == "CUSTOMER_BLOCKED" || row["reason"] == "PRICE_MISMATCH",
                "{row}"
            ),
            (_, reason) => assert_eq!(row["reason"], reason, "{row}"),
        }
    }
    if let Ok(path) = std::env::var("OMS_BOARD_SCREENSHOT") {
        std::fs::write(&path, browser.screenshot().await).expect("writing the screenshot");
    }
}

/// One server-sent event, or a comment (`:`).
#[derive(Debug, Clone, Default)]
struct Frame {
    event: String,
    id: String,
    data: String,
    comment: bool,
}

/// An open event stream, read frame by frame.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(
        stack: &Stack,
        path: &str,
        token: Option<&str>,
        last_id: Option<&str>,
    ) -> reqwest::Response {
        let mut request = reqwest::Client::new().get(format!("{}{path}", stack.edge()));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(id) = last_id {
            request = request.header("last-event-id", id);
        }
        request.send().await.expect("edge answers")
    }

    fn of(response: reqwest::Response) -> Events {
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Events {
            response,
            buffer: String::new(),
        }
    }

    /// The next frame; `None` once the stream has ended cleanly.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut frame = Frame::default();
                for line in block.lines() {
                    match line.split_once(':') {
                        Some(("", _)) => frame.comment = true,
                        Some((field, value)) => {
                            let value = value.strip_prefix(' ').unwrap_or(value).to_string();
                            match field {
                                "event" => frame.event = value,
                                "id" => frame.id = value,
                                "data" => frame.data = value,
                                _ => {}
                            }
                        }
                        None => {}
                    }
                }
                return Some(frame);
            }
            let chunk = tokio::time::timeout(DEADLINE, self.response.chunk())
                .await
                .expect("the stream goes on (keep-alives at least)")
                .expect("the stream does not break");
            match chunk {
                Some(bytes) => self
                    .buffer
                    .push_str(std::str::from_utf8(&bytes).expect("UTF-8")),
                None => return None,
            }
        }
    }

    /// The next `status` event's data (comments and counters skipped).
    async fn status(&mut self) -> (u64, Value) {
        loop {
            let frame = self.next().await.expect("more events");
            if frame.event == "status" {
                let data: Value = serde_json::from_str(&frame.data).expect("JSON");
                let id: u64 = frame.id.parse().expect("the id is the stream sequence");
                assert_eq!(data["sequence"], id);
                return (id, data);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_orders_events_arrive_in_order_and_resume_after_the_last_id() {
    let stack = Stack::start().await;
    let ada = stack.customer_token("OMS-Cust-001");
    let id = stack.place_ok(&original_body()).await;
    stack.until_status(&id, "CONFIRMED").await;
    let path = format!("/orders/{id}/events");

    // Its customer reads its whole story so far, in order.
    let mut events = Events::of(Events::open(&stack, &path, Some(&ada), None).await);
    let (placed_at, placed) = events.status().await;
    assert_eq!(placed["type"], "OrderPlaced");
    assert_eq!(placed["status"], "PENDING");
    assert_eq!(placed["orderId"], id.as_str());
    assert_eq!(placed["customerId"], "OMS-Cust-001");
    let (confirmed_at, confirmed) = events.status().await;
    assert!(confirmed_at > placed_at);
    assert_eq!(confirmed["status"], "CONFIRMED");
    assert_eq!(confirmed["customerId"], "OMS-Cust-001");
    assert!(confirmed["at"].as_str().unwrap().ends_with('Z'));

    // What happens next arrives live: shipped, then delivered (no customer id in those events:
    // the edge names it all the same).
    stack
        .post_as(
            None,
            &format!("/orders/{id}/ship"),
            Some(&json!({"trackingNumber": "1Z999"})),
        )
        .await;
    let (shipped_at, shipped) = events.status().await;
    assert!(shipped_at > confirmed_at);
    assert_eq!(shipped["status"], "SHIPPED");
    assert_eq!(shipped["trackingNumber"], "1Z999");
    assert_eq!(shipped["customerId"], "OMS-Cust-001");

    // Reconnecting with Last-Event-ID resumes right after it.
    let resumed = Events::open(&stack, &path, Some(&ada), Some(&placed_at.to_string())).await;
    let mut resumed = Events::of(resumed);
    assert_eq!(resumed.status().await, (confirmed_at, confirmed));
    assert_eq!(resumed.status().await.0, shipped_at);

    // Every order's changes, for an operator: only what happens after it opened, in stream
    // order, each order placed before it ends, and the counters every few seconds.
    let mut all =
        Events::of(Events::open(&stack, "/events", Some(&stack.operator_token()), None).await);
    let ids: Vec<String> = futures::future::join_all((0..5).map(|i| {
        let stack = &stack;
        async move {
            match i {
                3 => {
                    stack
                        .place_ok(&items_body("OMS-Cust-003", Value::Null, &[("item3", 1)]))
                        .await
                }
                _ => stack.place_ok(&original_body()).await,
            }
        }
    }))
    .await;
    let mut last = 0;
    let mut open: std::collections::HashSet<&String> = ids.iter().collect();
    let mut placed_seen = std::collections::HashSet::new();
    let mut stats = None;
    while !open.is_empty() || stats.is_none() {
        let frame = all.next().await.expect("more events");
        match frame.event.as_str() {
            "status" => {
                let event: Value = serde_json::from_str(&frame.data).unwrap();
                let sequence: u64 = frame.id.parse().unwrap();
                assert!(sequence > last, "in stream order: {sequence} after {last}");
                last = sequence;
                let order = event["orderId"].as_str().unwrap().to_string();
                assert!(
                    ids.contains(&order),
                    "only orders placed after it opened: {event}"
                );
                match event["status"].as_str().unwrap() {
                    "PENDING" => assert!(placed_seen.insert(order.clone())),
                    "CONFIRMED" | "REJECTED" => {
                        assert!(
                            placed_seen.contains(&order),
                            "placed before it ended: {event}"
                        );
                        open.remove(&order);
                        if order == ids[3] {
                            assert_eq!(event["reason"], "CUSTOMER_BLOCKED");
                            assert_eq!(event["customerId"], "OMS-Cust-003");
                        }
                    }
                    other => panic!("unexpected status {other}: {event}"),
                }
            }
            "stats" => stats = Some(serde_json::from_str::<Value>(&frame.data).unwrap()),
            _ => assert!(frame.comment, "{frame:?}"),
        }
    }
    // An order placed before it opened: its delivery names no customer, the edge finds it.
    let (code, _) = stack
        .post_as(None, &format!("/orders/{id}/deliver"), None)
        .await;
    assert_eq!(code, 202);
    let delivered = loop {
        let frame = all.next().await.expect("more events");
        if frame.event == "status" {
            let event: Value = serde_json::from_str(&frame.data).unwrap();
            assert!(frame.id.parse::<u64>().unwrap() > last);
            break event;
        }
    };
    assert_eq!(delivered["orderId"], id.as_str());
    assert_eq!(delivered["status"], "DELIVERED");
    assert_eq!(delivered["customerId"], "OMS-Cust-001");
    let stats = stats.unwrap();
    assert!(stats["orders"]["CONFIRMED"].as_u64().is_some(), "{stats}");
    assert_eq!(stats["deadLetters"], 0, "{stats}");
    assert_eq!(stats["consumers"].as_array().unwrap().len(), 10, "{stats}");

    // The same through the query token, as a browser's EventSource sends it.
    let r = reqwest::Client::new()
        .get(format!(
            "{}/events?access_token={}",
            stack.edge(),
            stack.operator_token()
        ))
        .send()
        .await
        .unwrap();
    Events::of(r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_who_may_read_an_order_follows_it() {
    let stack = Stack::start().await;
    let id = stack.place_ok(&original_body()).await;
    let (ada, alan) = (
        stack.customer_token("OMS-Cust-001"),
        stack.customer_token("OMS-Cust-002"),
    );
    let ops = stack.operator_token();
    let one = format!("/orders/{id}/events");
    let status = |r: &reqwest::Response| r.status().as_u16();

    // Another customer's order does not exist for it, as with GET /orders/{id}.
    let r = Events::open(&stack, &one, Some(&alan), None).await;
    assert_eq!(status(&r), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(
        status(&Events::open(&stack, &one, Some(&ada), None).await),
        200
    );
    assert_eq!(
        status(&Events::open(&stack, &one, Some(&ops), None).await),
        200
    );
    let unknown = format!("/orders/{}/events", uuid::Uuid::now_v7());
    assert_eq!(
        status(&Events::open(&stack, &unknown, Some(&ops), None).await),
        404
    );
    assert_eq!(
        status(&Events::open(&stack, "/orders/nonsense/events", Some(&ops), None).await),
        404
    );

    // Every order's events and the counters are an operator's.
    let r = Events::open(&stack, "/events", Some(&ada), None).await;
    assert_eq!(status(&r), 403);
    let problem: Value = r.json().await.unwrap();
    assert!(
        problem["detail"].as_str().unwrap().contains("operator"),
        "{problem}"
    );
    assert_eq!(stack.get_as(&ada, "/stats").await.0, 403);
    let (code, stats) = stack.get_as(&ops, "/stats").await;
    assert_eq!(code, 200);
    assert!(stats["orders"]["PENDING"].is_u64(), "{stats}");

    // No token, or a bad one: 401 with the challenge, on both routes and in both places.
    for path in ["/events", one.as_str()] {
        let r = Events::open(&stack, path, None, None).await;
        assert_eq!(status(&r), 401, "{path}");
        assert!(r.headers().contains_key("www-authenticate"));
        let r = reqwest::get(format!("{}{path}?access_token=not.a.token", stack.edge()))
            .await
            .unwrap();
        assert_eq!(status(&r), 401, "{path}");
    }
    // The query token is for the event streams only.
    let r = reqwest::get(format!("{}/orders/{id}?access_token={ops}", stack.edge()))
        .await
        .unwrap();
    assert_eq!(status(&r), 401);
    let r = reqwest::get(format!("{}/stats?access_token={ops}", stack.edge()))
        .await
        .unwrap();
    assert_eq!(status(&r), 401);
    // A Last-Event-ID that is no sequence is the client's mistake.
    let r = Events::open(&stack, "/events", Some(&ops), Some("yesterday")).await;
    assert_eq!(status(&r), 400);

    // The page itself is open, and strict about what it loads.
    let page = reqwest::get(format!("{}/", stack.edge())).await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        policy.contains("default-src 'none'") && policy.contains("script-src 'self'"),
        "{policy}"
    );
    for (asset, kind) in [
        ("board.js", "text/javascript"),
        ("board.css", "text/css"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let r = reqwest::get(format!("{}/assets/{asset}", stack.edge()))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{asset}"
        );
    }
    let r = reqwest::get(format!("{}/assets/nothing.js", stack.edge()))
        .await
        .unwrap();
    assert_eq!(status(&r), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streams_outlive_the_idle_timeout_and_end_with_the_edge() {
    let idle = Duration::from_secs(1);
    let mut stack = Stack::builder(oms_e2e::Mode::InProcess)
        .configure(|config| config.http.idle_timeout = idle)
        .start()
        .await;
    let id = stack.place_ok(&original_body()).await;
    let ops = stack.operator_token();
    let mut all = Events::of(Events::open(&stack, "/events", Some(&ops), None).await);
    let mut one =
        Events::of(Events::open(&stack, &format!("/orders/{id}/events"), Some(&ops), None).await);

    // Quiet for three idle timeouts, yet open: the comments keep it alive.
    let opened = Instant::now();
    let mut comments = 0;
    while opened.elapsed() < 3 * idle {
        let frame = one.next().await.expect("the stream stays open");
        comments += usize::from(frame.comment);
    }
    assert!(
        comments >= 3,
        "{comments} keep-alives in {:?}",
        opened.elapsed()
    );

    // Shutdown ends both streams cleanly, and the edge does not wait for them.
    let (ended, took) = stack.stop_service("edge").await;
    assert_eq!(ended, Ok(()));
    assert!(
        took < Duration::from_secs(3),
        "the edge took {took:?} to stop"
    );
    // `next` fails the test on a broken stream or one still open after the deadline.
    for events in [&mut all, &mut one] {
        while events.next().await.is_some() {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edge_serves_at_most_its_number_of_event_streams() {
    // Keep-alives every few hundred milliseconds: a stream whose client went is noticed soon.
    let stack = Stack::builder(oms_e2e::Mode::InProcess)
        .configure(|config| {
            config.http.max_event_streams = 2;
            config.http.idle_timeout = Duration::from_secs(1);
        })
        .start()
        .await;
    let ops = stack.operator_token();
    let first = Events::of(Events::open(&stack, "/events", Some(&ops), None).await);
    let id = stack.place_ok(&original_body()).await;
    let _second =
        Events::of(Events::open(&stack, &format!("/orders/{id}/events"), Some(&ops), None).await);

    let third = Events::open(&stack, "/events", Some(&ops), None).await;
    assert_eq!(third.status(), 503);
    assert_eq!(third.headers()["content-type"], "application/problem+json");
    let problem: Value = third.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("already serves 2 event streams"),
        "{problem}"
    );
    // Other calls are not held back by the streams.
    let (status, _) = stack.get_as(&ops, &format!("/orders/{id}")).await;
    assert_eq!(status, 200);

    // A client goes; its slot comes back.
    drop(first);
    let reopened = eventually(DEADLINE, "a slot for a new stream", || async {
        let r = Events::open(&stack, "/events", Some(&ops), None).await;
        (r.status() == 200).then_some(r)
    })
    .await;
    Events::of(reopened);
}
