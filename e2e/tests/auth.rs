//! Trying to get into the edge: without a token, with bad ones, as another customer, too
//! often, too slowly, with too many connections; and what the edge then answers.

use std::time::{Duration, Instant};

use oms_e2e::{
    DEADLINE, Mode, ORDERS, Role, Stack, items_body, original_body, testing::eventually,
};
use oms_edge::auth::{Claims, sign};
use oms_edge::testkeys;
use reqwest::header::HeaderMap;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// `sub` `ops`, operator, `iss`/`aud` `oms`, expires in 2100, with `alg: none` and no signature.
const NONE_TOKEN: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJvcHMiLCJyb2xlIjoib3BlcmF0b3IiLCJpc3MiOiJvbXMiLCJhdWQiOiJvbXMiLCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6NDEwMjQ0NDgwMH0.";

const ADA: &str = "OMS-Cust-001";
const ALAN: &str = "OMS-Cust-002";

/// Every service but the edge, whose config a test changes before starting it.
const BEHIND_THE_EDGE: [&str; 4] = ["customer", "inventory", "payment", "order"];

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

/// A request with `token` (or none), from a client that adds nothing of its own.
async fn call(
    stack: &Stack,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", stack.edge());
    let mut request = match method {
        "GET" => client.get(url),
        "POST" => client.post(url),
        other => panic!("no {other} here"),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let r = request.send().await.expect("the edge answers");
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let body = r.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

fn header<'a>(answer: &'a Answer, name: &str) -> &'a str {
    answer
        .headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .expect("a text header")
}

/// A problem+json answer with `status` whose detail mentions `needle`.
fn assert_problem(answer: &Answer, status: u16, needle: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(header(answer, "content-type"), "application/problem+json");
    assert_eq!(answer.body["status"], status);
    let detail = answer.body["detail"].as_str().expect("a detail");
    assert!(
        detail.contains(needle),
        "{detail:?} should mention {needle:?}"
    );
}

/// A 401 whose challenge says `invalid_token` and why.
fn assert_invalid_token(answer: &Answer, needle: &str) {
    assert_problem(answer, 401, needle);
    let challenge = header(answer, "www-authenticate");
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
}

fn expired(stack: &Stack) -> String {
    let mut claims = Claims::new(&stack.config.auth, ADA, Role::Customer, Duration::ZERO);
    // Past the edge's clock-skew allowance.
    claims.exp -= oms_edge::auth::LEEWAY_SECS + 60;
    sign(&claims, stack.config.auth.hs256_secret.as_bytes())
}

/// An operator token signed RS256 with the test RSA key (kid `rsa-1`), the public half of which
/// is in the test JWKS.
fn rs256(stack: &Stack) -> String {
    testkeys::rs256(&Claims::new(
        &stack.config.auth,
        "ops",
        Role::Operator,
        Duration::from_secs(600),
    ))
}

fn with_claims(stack: &Stack, change: impl FnOnce(&mut Claims)) -> String {
    let mut claims = Claims::new(
        &stack.config.auth,
        ADA,
        Role::Customer,
        Duration::from_secs(600),
    );
    change(&mut claims);
    sign(&claims, stack.config.auth.hs256_secret.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_api_call_needs_a_valid_token_and_the_probes_do_not() {
    let stack = Stack::start().await;
    let order = original_body();
    let calls: [(&str, String, Option<&Value>); 5] = [
        ("POST", "/orders".into(), Some(&order)),
        ("GET", format!("/orders/{}", uuid::Uuid::now_v7()), None),
        ("GET", format!("/orders?customerId={ADA}"), None),
        ("GET", format!("/customers/{ADA}"), None),
        ("GET", "/products/item1".into(), None),
    ];
    for (method, path, body) in &calls {
        let answer = call(&stack, method, path, None, *body).await;
        assert_problem(&answer, 401, "Bearer");
        assert_eq!(
            header(&answer, "www-authenticate"),
            r#"Bearer realm="oms""#,
            "{method} {path}: no error code without a token (RFC 6750)"
        );
    }

    let other_secret = oms_e2e::random_secret();
    let bad: Vec<(&str, String, &str)> = vec![
        ("expired", expired(&stack), "expired"),
        (
            "signed with another secret",
            oms_edge::auth::mint(
                &stack.config.auth,
                other_secret.as_bytes(),
                ADA,
                Role::Customer,
                Duration::from_secs(600),
            ),
            "signature",
        ),
        (
            "another audience",
            with_claims(&stack, |c| c.aud = "another-api".into()),
            "audience",
        ),
        (
            "another issuer",
            with_claims(&stack, |c| c.iss = "someone-else".into()),
            "issuer",
        ),
        ("alg none", NONE_TOKEN.into(), "well-formed"),
        // Algorithm confusion: this edge has an HS256 secret and no RSA key.
        ("RS256", rs256(&stack), "RS256"),
        ("not a JWT", "abc".into(), "well-formed"),
    ];
    for (what, token, needle) in &bad {
        for (method, path, body) in &calls {
            let answer = call(&stack, method, path, Some(token), *body).await;
            assert_eq!(answer.status, 401, "{what}: {method} {path}");
        }
        let answer = call(&stack, "POST", "/orders", Some(token), Some(&order)).await;
        assert_invalid_token(&answer, needle);
    }
    // A valid token of the same customer gets in (so the refusals above were the tokens').
    let ada = stack.customer_token(ADA);
    assert_eq!(
        call(&stack, "GET", "/products/item1", Some(&ada), None)
            .await
            .status,
        200
    );

    for probe in ["/healthz", "/readyz"] {
        assert_eq!(
            call(&stack, "GET", probe, None, None).await.status,
            200,
            "{probe}"
        );
    }
    assert_eq!(
        stack.count(ORDERS, "orders.placed.*").await,
        0,
        "no refused request placed anything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customers_place_and_read_only_their_own_and_operators_everything() {
    let stack = Stack::start().await;
    let (ada, alan, ops) = (
        stack.customer_token(ADA),
        stack.customer_token(ALAN),
        stack.operator_token(),
    );
    let adas_order = items_body(ADA, Value::Null, &[("item1", 1)]);
    let alans_order = items_body(ALAN, Value::Null, &[("item2", 1)]);

    let placed = call(&stack, "POST", "/orders", Some(&ada), Some(&adas_order)).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    let ada_id = placed.body["orderId"].as_str().unwrap().to_string();
    let as_alan = call(&stack, "POST", "/orders", Some(&ada), Some(&alans_order)).await;
    assert_problem(&as_alan, 403, "only for itself");
    // The call centre: an operator places for any customer.
    let placed = call(&stack, "POST", "/orders", Some(&ops), Some(&alans_order)).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    let alan_id = placed.body["orderId"].as_str().unwrap().to_string();

    // Own orders readable at once (read your writes); another's does not exist for Ada.
    let own = call(
        &stack,
        "GET",
        &format!("/orders/{ada_id}"),
        Some(&ada),
        None,
    )
    .await;
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.body["customerId"], ADA);
    let theirs = call(
        &stack,
        "GET",
        &format!("/orders/{alan_id}"),
        Some(&ada),
        None,
    )
    .await;
    assert_problem(&theirs, 404, "does not exist");
    let gone = format!("/orders/{}", uuid::Uuid::now_v7());
    let missing = call(&stack, "GET", &gone, Some(&ada), None).await;
    assert_eq!(
        missing.body["detail"]
            .as_str()
            .unwrap()
            .replace(&gone[8..], ""),
        theirs.body["detail"]
            .as_str()
            .unwrap()
            .replace(&alan_id, ""),
        "another's order reads exactly like no order"
    );
    for id in [&ada_id, &alan_id] {
        stack.terminal(id).await;
        let r = call(&stack, "GET", &format!("/orders/{id}"), Some(&alan), None).await;
        assert_eq!(r.status, if *id == alan_id { 200 } else { 404 });
    }

    // Listing: forced to her own, another's filter refused; the operator sees both.
    let ids = |answer: &Answer| -> Vec<String> {
        answer.body["orders"]
            .as_array()
            .unwrap_or_else(|| panic!("a page: {}", answer.body))
            .iter()
            .map(|o| o["orderId"].as_str().unwrap().to_string())
            .collect()
    };
    let mine = call(&stack, "GET", "/orders", Some(&ada), None).await;
    assert_eq!(ids(&mine), std::slice::from_ref(&ada_id));
    let mine = call(
        &stack,
        "GET",
        &format!("/orders?customerId={ADA}"),
        Some(&ada),
        None,
    )
    .await;
    assert_eq!(ids(&mine), std::slice::from_ref(&ada_id));
    let confirmed = call(&stack, "GET", "/orders?status=CONFIRMED", Some(&ada), None).await;
    assert_eq!(ids(&confirmed), std::slice::from_ref(&ada_id));
    let theirs = call(
        &stack,
        "GET",
        &format!("/orders?customerId={ALAN}"),
        Some(&ada),
        None,
    )
    .await;
    assert_problem(&theirs, 403, "only its own orders");
    let all = call(&stack, "GET", "/orders", Some(&ops), None).await;
    assert_eq!(ids(&all), [alan_id.clone(), ada_id.clone()]);

    // Customer records: her own only; products: anyone's.
    let record = call(
        &stack,
        "GET",
        &format!("/customers/{ADA}"),
        Some(&ada),
        None,
    )
    .await;
    assert_eq!(record.status, 200);
    assert_eq!(record.body["name"], "Ada Lovelace");
    let other = call(
        &stack,
        "GET",
        &format!("/customers/{ALAN}"),
        Some(&ada),
        None,
    )
    .await;
    assert_problem(&other, 403, "own customer record");
    let by_ops = call(
        &stack,
        "GET",
        &format!("/customers/{ALAN}"),
        Some(&ops),
        None,
    )
    .await;
    assert_eq!(by_ops.status, 200);
    let product = call(&stack, "GET", "/products/item4", Some(&ada), None).await;
    assert_eq!(product.status, 200);
    assert_eq!(product.body["productId"], "item4");

    assert_eq!(
        stack.count(ORDERS, "orders.placed.*").await,
        2,
        "the 403 placed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_keys_belong_to_their_caller() {
    let stack = Stack::start().await;
    let (ada, alan, ops) = (
        stack.customer_token(ADA),
        stack.customer_token(ALAN),
        stack.operator_token(),
    );
    let place = |token: String, body: Value| {
        let edge = stack.edge();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{edge}/orders"))
                .bearer_auth(token)
                .header("idempotency-key", "shared-key")
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            assert_eq!(status, 202, "{body}");
            body["orderId"].as_str().unwrap().to_string()
        }
    };
    let adas = items_body(ADA, Value::Null, &[("item1", 1)]);
    let first = place(ada.clone(), adas.clone()).await;
    // The same key with other orders, by others: new orders, not 422 and not Ada's.
    let by_ops = place(ops, items_body(ALAN, Value::Null, &[("item3", 2)])).await;
    let by_alan = place(alan, items_body(ALAN, Value::Null, &[("item2", 1)])).await;
    assert_ne!(by_ops, first);
    assert_ne!(by_alan, first);
    assert_ne!(by_alan, by_ops);
    // Ada's retry is still her one order.
    assert_eq!(place(ada, adas).await, first);
    assert_eq!(stack.count(ORDERS, "orders.placed.*").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let mut stack = Stack::builder(Mode::InProcess)
        .services(&BEHIND_THE_EDGE)
        .start()
        .await;
    stack.config.http.rate_per_second = 1;
    stack.config.http.rate_burst = 3;
    stack.start_service("edge").await;
    let (ada, alan) = (stack.customer_token(ADA), stack.customer_token(ALAN));

    // Until refused: the burst gets through first (a slow machine may refill one more).
    let until_429 = |token: Option<String>, expected: u16| {
        let stack = &stack;
        async move {
            for sent in 1..=20 {
                let r = call(stack, "GET", "/products/item1", token.as_deref(), None).await;
                if r.status == 429 {
                    return (sent - 1, r);
                }
                assert_eq!(r.status, expected, "{}", r.body);
            }
            panic!("never limited");
        }
    };
    let (passed, limited) = until_429(Some(ada.clone()), 200).await;
    assert!(passed >= 3, "the burst of 3 passed first, got {passed}");
    assert_problem(&limited, 429, "too many requests");
    let retry: u64 = header(&limited, "retry-after").parse().expect("seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");

    // Another identity has its own bucket; a client without a valid token counts by address.
    assert_eq!(
        call(&stack, "GET", "/products/item1", Some(&alan), None)
            .await
            .status,
        200
    );
    let (passed, limited) = until_429(None, 401).await;
    assert!(passed >= 3, "{passed}");
    assert_problem(&limited, 429, "retry in");
    assert!(limited.headers.contains_key("retry-after"));
    // Each refusal is counted, by route; /metrics itself is not limited (scrapes come on time).
    let metrics = reqwest::get(format!("{}/metrics", stack.edge()))
        .await
        .expect("the edge answers");
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    let counted = |series: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    assert!(
        counted(r#"oms_http_rate_limited_total{service="edge"}"#) >= 2.0,
        "{metrics}"
    );
    let by_route = r#"oms_http_requests_total{service="edge",route="/products/{id}",method="GET",status="429"}"#;
    assert!(counted(by_route) >= 2.0, "{metrics}");
    // Probes are never limited.
    assert_eq!(
        call(&stack, "GET", "/healthz", None, None).await.status,
        200
    );
    // After the wait, Ada gets in again.
    eventually(DEADLINE, "Ada's bucket to refill", || {
        let (stack, ada) = (&stack, &ada);
        async move {
            let r = call(stack, "GET", "/products/item1", Some(ada), None).await;
            (r.status == 200).then_some(())
        }
    })
    .await;
}

/// `request` on a new connection to `addr`; returns it with the whole answer read.
async fn roundtrip(addr: &str, request: &str) -> (TcpStream, String) {
    let mut conn = TcpStream::connect(addr).await.expect("connecting");
    conn.write_all(request.as_bytes()).await.unwrap();
    let answer = read_answer(&mut conn).await;
    (conn, answer)
}

/// One HTTP answer (head and a Content-Length body) from `conn`.
async fn read_answer(conn: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(DEADLINE, conn.read(&mut chunk))
            .await
            .expect("an answer in time")
            .expect("reading");
        assert!(
            n > 0,
            "closed before the answer: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

/// Waits until the peer closes `conn` (EOF or reset); returns how long that took.
async fn closed_by_peer(conn: &mut TcpStream, since: Instant) -> Duration {
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(DEADLINE, conn.read(&mut chunk)).await {
            Err(_) => panic!("the edge kept the connection open for {DEADLINE:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => {} // an error answer before closing is fine
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_header_clients_are_cut_off_while_others_are_served() {
    let mut stack = Stack::builder(Mode::InProcess)
        .services(&BEHIND_THE_EDGE)
        .start()
        .await;
    let timeout = Duration::from_secs(1);
    stack.config.http.header_read_timeout = timeout;
    stack.start_service("edge").await;
    let addr = stack.edge().trim_start_matches("http://").to_string();
    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut conn = TcpStream::connect(&addr).await.unwrap();
        conn.write_all(b"GET /products/item1 HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer ")
            .await
            .unwrap();
        slow.push(conn);
    }
    // Meanwhile everyone else is served.
    assert_eq!(stack.get("/products/item1").await.0, 200);
    for conn in &mut slow {
        let after = closed_by_peer(conn, started).await;
        assert!(
            after >= timeout - Duration::from_millis(100),
            "closed after {after:?}: by the timeout, not at once"
        );
    }
    assert_eq!(stack.get("/products/item1").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let mut stack = Stack::builder(Mode::InProcess)
        .services(&BEHIND_THE_EDGE)
        .start()
        .await;
    stack.config.http.header_read_timeout = Duration::from_secs(30);
    stack.config.http.idle_timeout = Duration::from_secs(1);
    stack.start_service("edge").await;
    let addr = stack.edge().trim_start_matches("http://").to_string();
    let (mut conn, answer) = roundtrip(&addr, "GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let answered = Instant::now();
    // Still usable while not idle for long: a second request on the same connection.
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n")
        .await
        .unwrap();
    assert!(read_answer(&mut conn).await.starts_with("HTTP/1.1 200"));
    let after = closed_by_peer(&mut conn, answered).await;
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(20),
        "closed {after:?} after the answer: the idle timeout, not the 30 s header timeout"
    );
}

/// An edge on its own listener with `tweak`ed settings; readiness checked on connections that
/// close at once, so none stays open.
async fn spawn_edge(
    stack: &Stack,
    tweak: impl FnOnce(&mut oms_config::Config),
) -> (
    String,
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let mut config = stack.config.clone();
    tweak(&mut config);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(oms_edge::run(config, listener, shutdown.clone()));
    eventually(DEADLINE, "the edge to answer", || {
        let addr = addr.clone();
        async move {
            let mut conn = TcpStream::connect(&addr).await.ok()?;
            conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut answer = String::new();
            conn.read_to_string(&mut answer).await.ok()?;
            answer.starts_with("HTTP/1.1 200").then_some(())
        }
    })
    .await;
    (addr, shutdown, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_connections_are_capped_and_the_next_waits_its_turn() {
    let stack = Stack::builder(Mode::InProcess).services(&[]).start().await;
    let (addr, shutdown, task) = spawn_edge(&stack, |c| c.http.max_connections = 1).await;
    let probe = "GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n";
    // A takes the only slot and keeps it (keep-alive).
    let (holder, answer) = roundtrip(&addr, probe).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // B gets through TCP (the kernel queues it) but no answer while A is open.
    let mut waiting = TcpStream::connect(&addr).await.unwrap();
    waiting.write_all(probe.as_bytes()).await.unwrap();
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), waiting.read(&mut byte)).await;
    assert!(early.is_err(), "B was answered while A held the only slot");
    // A leaves: B's turn.
    drop(holder);
    let answer = read_answer(&mut waiting).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Shutdown does not wait for B's idle keep-alive connection.
    shutdown.cancel();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("the edge stops in time")
        .expect("no panic")
        .expect("no error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_ids_are_echoed_when_sane_and_made_otherwise() {
    let stack = Stack::start().await;
    let ops = stack.operator_token();
    let with_id = |id: Option<String>, token: Option<String>, path: &'static str| {
        let edge = stack.edge();
        async move {
            let mut r = reqwest::Client::new().get(format!("{edge}{path}"));
            if let Some(id) = id {
                r = r.header("x-request-id", id);
            }
            if let Some(token) = token {
                r = r.bearer_auth(token);
            }
            let r = r.send().await.unwrap();
            let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
            (r.status().as_u16(), id)
        }
    };
    let sane = "trace-2024/abc:123";
    assert_eq!(
        with_id(Some(sane.into()), Some(ops.clone()), "/products/item1").await,
        (200, sane.to_string())
    );
    let (status, made) = with_id(None, Some(ops.clone()), "/products/item1").await;
    assert_eq!(status, 200);
    assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
    let (_, another) = with_id(None, Some(ops.clone()), "/products/item1").await;
    assert_ne!(made, another, "a fresh id per request");
    for insane in ["x".repeat(129), "two words".into()] {
        let (_, id) = with_id(Some(insane.clone()), Some(ops.clone()), "/products/item1").await;
        assert!(
            uuid::Uuid::parse_str(&id).is_ok(),
            "{insane:?} replaced, got {id}"
        );
    }
    // Refusals, unknown paths and probes carry one too.
    assert_eq!(
        with_id(Some("r-1".into()), None, "/orders").await,
        (401, "r-1".into())
    );
    assert_eq!(
        with_id(Some("r-2".into()), Some(ops), "/nothing/here").await,
        (404, "r-2".into())
    );
    assert_eq!(
        with_id(Some("r-3".into()), None, "/readyz").await,
        (200, "r-3".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_refuses_to_start_without_auth_outside_dev_or_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let base = oms_config::Config {
        data_dir: dir.path().to_path_buf(),
        ..oms_config::Config::default()
    };
    let refusal = |config: oms_config::Config, bind: &'static str| async move {
        let listener = TcpListener::bind(bind).await.unwrap();
        let run = oms_edge::run(config, listener, CancellationToken::new());
        let result = tokio::time::timeout(DEADLINE, run)
            .await
            .expect("refused at once, without waiting for NATS");
        format!("{:#}", result.expect_err("the edge must not start"))
    };

    let mut off = base.clone();
    off.auth.enabled = false;
    off.profile = "default".into();
    let why = refusal(off.clone(), "127.0.0.1:0").await;
    assert!(
        why.contains("dev profile") && why.contains("\"default\""),
        "{why}"
    );
    off.profile = "docker".into();
    assert!(
        refusal(off.clone(), "127.0.0.1:0")
            .await
            .contains("dev profile")
    );
    off.profile = "dev".into();
    let why = refusal(off, "0.0.0.0:0").await;
    assert!(why.contains("loopback") && why.contains("0.0.0.0"), "{why}");

    // Auth on but nothing to check tokens with: say how to fix it.
    let mut keyless = base.clone();
    keyless.auth.hs256_secret.clear();
    keyless.auth.jwks.clear();
    let why = refusal(keyless.clone(), "127.0.0.1:0").await;
    assert!(
        why.contains("OMS_AUTH__HS256_SECRET") && why.contains("edge-jwt.secret"),
        "{why}"
    );
    keyless.auth.hs256_secret = "too-short".into();
    assert!(
        refusal(keyless, "127.0.0.1:0")
            .await
            .contains("at least 32")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_auth_off_in_dev_on_loopback_requests_need_no_token() {
    let mut stack = Stack::builder(Mode::InProcess)
        .services(&BEHIND_THE_EDGE)
        .start()
        .await;
    stack.config.auth.enabled = false;
    stack.config.profile = "dev".into();
    stack.start_service("edge").await;
    let placed = call(&stack, "POST", "/orders", None, Some(&original_body())).await;
    assert_eq!(placed.status, 202, "{}", placed.body);
    let id = placed.body["orderId"].as_str().unwrap();
    let read = call(&stack, "GET", &format!("/orders/{id}"), None, None).await;
    assert_eq!(read.status, 200);
    assert_eq!(call(&stack, "GET", "/orders", None, None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jwks_edge_takes_rs256_and_refuses_hs256_made_with_its_public_key() {
    let mut stack = Stack::builder(Mode::InProcess)
        .services(&BEHIND_THE_EDGE)
        .start()
        .await;
    // In the stack's temporary folder, gone with it.
    let jwks = stack.config.data_dir.join("jwks.json");
    std::fs::write(&jwks, &testkeys::keys().jwks).unwrap();
    stack.config.auth.jwks = jwks.to_str().unwrap().into();
    stack.config.auth.hs256_secret = oms_e2e::random_secret();
    stack.start_service("edge").await;
    let ok = call(&stack, "GET", "/orders", Some(&rs256(&stack)), None).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let public = testkeys::keys().rsa_public_pem.as_bytes();
    let confused = sign(
        &Claims::new(
            &stack.config.auth,
            "ops",
            Role::Operator,
            Duration::from_secs(600),
        ),
        public,
    );
    assert_invalid_token(
        &call(&stack, "GET", "/orders", Some(&confused), None).await,
        "signature",
    );
    assert_invalid_token(
        &call(&stack, "GET", "/orders", Some(NONE_TOKEN), None).await,
        "well-formed",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreadable_event_on_an_order_subject_is_no_order() {
    use oms_topology::identity::Identity;
    let stack = Stack::start().await;
    let id = oms_domain::OrderId::new();
    stack
        .jetstream_as(Identity::Edge)
        .await
        .publish(
            oms_topology::order_placed_subject(id),
            "not an event".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let path = format!("/orders/{id}");
    let (status, body) = stack.get(&path).await;
    assert_eq!(status, 404, "{body}");
    // Still none once the order service has given up on it.
    stack.drained(ORDERS, "order-orders").await;
    let (status, body) = stack.get(&path).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("does not exist"), "{body}");
}
