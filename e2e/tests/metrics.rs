//! `GET /metrics` on every service: who may read it, and the figures moving as orders flow,
//! events are dead-lettered and callers are turned away by the rate limit. The names are
//! `oms_bus::metrics`'s; the README's table lists each of them, and the last test checks a
//! running system exports every one.

use std::collections::BTreeSet;
use std::time::Duration;

use oms_e2e::{Mode, Stack, items_body, original_body};
use oms_topology::identity::Identity;
use serde_json::json;

const SERVICES: [&str; 5] = ["edge", "customer", "inventory", "payment", "order"];

/// One sample of the exposition: `name{labels} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("name value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|l| !l.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().expect("a number"),
            }
        })
        .collect()
}

/// The sum of the samples of `name` with all of `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples(text)
        .into_iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

async fn scrape(stack: &Stack, service: &str, token: Option<&str>) -> (u16, String, String) {
    let client = reqwest::Client::new();
    let mut request = client.get(format!("{}/metrics", stack.url(service)));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the service answers");
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, response.text().await.unwrap())
}

/// Scrapes `service` as an operator until `ready` holds of the exposition (the gauges read
/// from JetStream and the tables refresh every few seconds).
async fn until(stack: &Stack, service: &str, what: &str, ready: impl Fn(&str) -> bool) -> String {
    let token = stack.operator_token();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _, text) = scrape(stack, service, Some(&token)).await;
        assert_eq!(status, 200, "{text}");
        if ready(&text) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{service}: {what} never showed:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The services of one process share one recorder, so one test (one stack) per binary: its
/// gauges are its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_see_the_figures_move_as_orders_flow() {
    let stack = Stack::builder(Mode::InProcess)
        .configure(|c| c.telemetry.metrics_loopback = false)
        .start()
        .await;
    only_operators_read_metrics(&stack).await;
    the_figures_move_as_orders_flow_and_events_are_dead_lettered(&stack).await;
    the_readme_lists_every_metric_the_services_export(&stack).await;
}

/// With `telemetry.metrics_loopback` off, even this machine needs an operator's token.
async fn only_operators_read_metrics(stack: &Stack) {
    let ada = stack.customer_token("OMS-Cust-001");
    for service in SERVICES {
        let (status, kind, body) = scrape(stack, service, None).await;
        assert_eq!(status, 401, "{service}: {body}");
        assert_eq!(kind, "application/problem+json", "{service}");
        let (status, _, body) = scrape(stack, service, Some(&ada)).await;
        assert_eq!(status, 403, "{service}: {body}");
        assert!(body.contains("operators"), "{service}: {body}");
        let (status, kind, body) = scrape(stack, service, Some("not.a.token")).await;
        assert_eq!(status, 401, "{service}: {body} ({kind})");
        let (status, kind, body) = scrape(stack, service, Some(&stack.operator_token())).await;
        assert_eq!(status, 200, "{service}: {body}");
        assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
        assert!(body.contains("# HELP oms_"), "{service}: {body}");
    }
}

async fn the_figures_move_as_orders_flow_and_events_are_dead_lettered(stack: &Stack) {
    let (status, _, before) = scrape(stack, "edge", Some(&stack.operator_token())).await;
    assert_eq!(status, 200, "{before}");
    let placed = |text: &str| {
        let labels = [("route", "/orders"), ("method", "POST"), ("status", "202")];
        value(text, "oms_http_requests_total", &labels).unwrap_or(0.0)
    };
    let placed_before = placed(&before);

    let mut confirmed = Vec::new();
    for _ in 0..6 {
        confirmed.push(stack.place_ok(&original_body()).await);
    }
    let blocked = items_body("OMS-Cust-003", serde_json::Value::Null, &[("item1", 1)]);
    let mut rejected = Vec::new();
    for _ in 0..3 {
        rejected.push(stack.place_ok(&blocked).await);
    }
    for id in &confirmed {
        assert_eq!(stack.terminal(id).await["status"], "CONFIRMED");
    }
    for id in &rejected {
        assert_eq!(stack.terminal(id).await["status"], "REJECTED");
    }

    let edge = until(stack, "edge", "the placed orders", |t| {
        placed(t) >= placed_before + 9.0
    })
    .await;
    let latency = [("route", "/orders"), ("method", "POST")];
    assert!(
        value(&edge, "oms_http_request_duration_seconds_count", &latency).unwrap() >= 9.0,
        "{edge}"
    );
    assert!(
        value(&edge, "oms_http_request_duration_seconds_bucket", &latency).is_some(),
        "a histogram with buckets: {edge}"
    );

    let handled = |service: &'static str, consumer: &'static str, kind: &'static str| {
        move |t: &str| {
            let labels = [
                ("service", service),
                ("consumer", consumer),
                ("type", kind),
                ("outcome", "acked"),
            ];
            value(t, "oms_events_handled_total", &labels).unwrap_or(0.0) >= 9.0
        }
    };
    until(stack, "customer", "customer's handled events", |t| {
        handled("customer", "customer", "OrderPlaced")(t)
    })
    .await;
    until(stack, "inventory", "inventory's handled events", |t| {
        handled("inventory", "inventory", "OrderPlaced")(t)
    })
    .await;
    let payment = until(stack, "payment", "payment's charges", |t| {
        let labels = [("service", "payment"), ("type", "PaymentProcessed")];
        value(t, "oms_events_published_total", &labels).unwrap_or(0.0) >= 6.0
    })
    .await;
    let handle = [("service", "payment"), ("consumer", "payment-customers")];
    assert!(
        value(&payment, "oms_event_handle_duration_seconds_count", &handle).unwrap() >= 9.0,
        "{payment}"
    );

    // The order service counts its table: 6 CONFIRMED, 3 REJECTED, none PENDING; and the sagas'
    // time from placement to their end.
    let order = until(stack, "order", "orders per status", |t| {
        let count = |status| value(t, "oms_orders", &[("status", status)]);
        count("CONFIRMED") == Some(6.0)
            && count("REJECTED") == Some(3.0)
            && count("PENDING") == Some(0.0)
    })
    .await;
    let saga = |status| {
        let labels = [("service", "order"), ("status", status)];
        value(&order, "oms_saga_duration_seconds_count", &labels)
    };
    assert_eq!(saga("CONFIRMED"), Some(6.0), "{order}");
    assert_eq!(saga("REJECTED"), Some(3.0), "{order}");
    assert_eq!(
        value(&order, "oms_orders_oldest_pending_seconds", &[]),
        Some(0.0)
    );

    // The consumers' lag, read from JetStream: all caught up.
    for (service, consumer) in [("customer", "customer"), ("order", "order-payments")] {
        until(stack, service, "the consumer's lag", |t| {
            let labels = [("service", service), ("consumer", consumer)];
            value(t, "oms_consumer_pending_messages", &labels) == Some(0.0)
                && value(t, "oms_consumer_ack_pending_messages", &labels) == Some(0.0)
                && value(t, "oms_consumer_ack_floor_age_seconds", &labels) == Some(0.0)
        })
        .await;
    }

    // An event that breaks its rules goes to the DLQ of each service that takes it, and each
    // counts it: as handled (dead-lettered) and in its DLQ depth.
    let js = stack.jetstream_as(Identity::Edge).await;
    let subject = format!("orders.placed.{}", uuid::Uuid::now_v7());
    let body = json!({"type": "OrderPlaced", "nonsense": true}).to_string();
    js.publish(subject, body.into())
        .await
        .expect("published")
        .await
        .expect("stored");
    for service in ["customer", "inventory", "order"] {
        until(stack, service, "the dead letter", |t| {
            let dead = [("service", service), ("outcome", "dead_lettered")];
            value(t, "oms_events_handled_total", &dead).unwrap_or(0.0) >= 1.0
                && value(t, "oms_dlq_messages", &[("service", service)]) == Some(1.0)
        })
        .await;
    }
    let payment = until(stack, "payment", "payment's DLQ depth", |t| {
        value(t, "oms_dlq_messages", &[("service", "payment")]).is_some()
    })
    .await;
    assert_eq!(
        value(&payment, "oms_dlq_messages", &[("service", "payment")]),
        Some(0.0),
        "payment takes no orders.placed"
    );
}

/// Every metric in the README's table is exported by a running system, and nothing the
/// services export is missing from the table.
async fn the_readme_lists_every_metric_the_services_export(stack: &Stack) {
    let readme = include_str!("../../README.md");
    let listed: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `oms_"))
        .map(|rest| format!("oms_{}", rest.split('`').next().unwrap()))
        .collect();
    assert!(listed.len() >= 15, "the README's Metrics table: {listed:?}");

    let mut exported = BTreeSet::new();
    for service in SERVICES {
        let text = until(stack, service, "its figures", |t| t.contains("# TYPE oms_")).await;
        for line in text.lines().filter(|l| l.starts_with("# TYPE oms_")) {
            exported.insert(line.split_whitespace().nth(2).unwrap().to_string());
        }
    }
    let missing: Vec<_> = listed.difference(&exported).collect();
    let unlisted: Vec<_> = exported.difference(&listed).collect();
    assert!(missing.is_empty(), "listed but not exported: {missing:?}");
    assert!(
        unlisted.is_empty(),
        "exported but not in the README: {unlisted:?}"
    );
}
