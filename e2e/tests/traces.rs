//! One order is one trace across the five services. The services send their spans over OTLP
//! (HTTP, JSON) to a collector this test runs; from what arrives the test assembles the trace
//! of one order and checks every step is there, each a child of the span that published the
//! event it handled, and that the events' `traceparent` headers name those same spans.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oms_e2e::{Mode, Stack, items_body, original_body};
use oms_topology::{CUSTOMERS, PAYMENTS};
use serde_json::Value;
use warp::Filter;

/// One span as the collector received it.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: HashMap<String, Value>,
}

/// An OTLP/HTTP receiver of traces (`POST /v1/traces`, JSON), keeping every span it is sent.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
}

async fn collector() -> Collector {
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let kept = spans.clone();
    let route = warp::path!("v1" / "traces")
        .and(warp::post())
        .and(warp::body::json())
        .map(move |request: Value| {
            kept.lock().unwrap().extend(spans_of(&request));
            warp::reply::json(&serde_json::json!({}))
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(route).incoming(listener).run());
    Collector { url, spans }
}

/// The spans of an `ExportTraceServiceRequest`, each with its resource's `service.name`.
fn spans_of(request: &Value) -> Vec<Span> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let attributes = |list: &Value| -> HashMap<String, Value> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|kv| {
                let value = kv["value"]
                    .as_object()
                    .and_then(|o| o.values().next().cloned());
                (text(&kv["key"]), value.unwrap_or(Value::Null))
            })
            .collect()
    };
    let mut out = Vec::new();
    for resource in request["resourceSpans"].as_array().into_iter().flatten() {
        let service = attributes(&resource["resource"]["attributes"])
            .get("service.name")
            .map(text)
            .unwrap_or_default();
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                out.push(Span {
                    service: service.clone(),
                    name: text(&span["name"]),
                    trace_id: text(&span["traceId"]),
                    span_id: text(&span["spanId"]),
                    parent: text(&span["parentSpanId"]),
                    attributes: attributes(&span["attributes"]),
                });
            }
        }
    }
    out
}

impl Collector {
    /// The spans of `trace`, by name, once all of `names` have arrived.
    async fn trace(&self, trace: &str, names: &[&str]) -> HashMap<String, Span> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let spans: HashMap<String, Span> = self
                .spans
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.trace_id == trace)
                .map(|s| (s.name.clone(), s.clone()))
                .collect();
            if names.iter().all(|n| spans.contains_key(*n)) {
                return spans;
            }
            let missing: Vec<_> = names.iter().filter(|n| !spans.contains_key(**n)).collect();
            assert!(
                tokio::time::Instant::now() < deadline,
                "trace {trace}: never received {missing:?}; got {:?}",
                spans.keys().collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The span id a stored event's `traceparent` names.
async fn published_by(stack: &Stack, stream: &str, subject: &str) -> String {
    let (_, headers) = stack.event(stream, subject).await;
    let traceparent = headers.get("traceparent").expect("a traceparent").as_str();
    traceparent.split('-').nth(2).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_order_is_one_trace_across_the_five_services() {
    let collector = collector().await;
    let endpoint = collector.url.clone();
    let stack = Stack::builder(Mode::InProcess)
        .configure(move |c| c.telemetry.otlp_endpoint = endpoint)
        .start()
        .await;

    // A confirmed order: placed, validated and reserved side by side, charged, confirmed.
    let id = stack.place_ok(&original_body()).await;
    assert_eq!(stack.terminal(&id).await["status"], "CONFIRMED");
    let trace = id.replace('-', "");
    let steps = [
        "POST /orders",
        "customer OrderPlaced",
        "inventory OrderPlaced",
        "order-orders OrderPlaced",
        "payment-customers CustomerValidated",
        "payment-inventory InventoryReserved",
        "order-payments PaymentProcessed",
    ];
    let spans = collector.trace(&trace, &steps).await;
    let span = |name: &str| &spans[name];
    let root = span("POST /orders");
    assert_eq!(root.service, "edge");
    assert_eq!(root.parent, "", "the request is the root: {root:?}");
    for (child, parent, service) in [
        ("customer OrderPlaced", "POST /orders", "customer"),
        ("inventory OrderPlaced", "POST /orders", "inventory"),
        ("order-orders OrderPlaced", "POST /orders", "order"),
        (
            "payment-customers CustomerValidated",
            "customer OrderPlaced",
            "payment",
        ),
        (
            "payment-inventory InventoryReserved",
            "inventory OrderPlaced",
            "payment",
        ),
    ] {
        let (child, parent) = (span(child), span(parent));
        assert_eq!(child.service, service, "{child:?}");
        assert_eq!(child.parent, parent.span_id, "{child:?} under {parent:?}");
        assert_eq!(child.attributes["oms.order_id"], id.as_str());
        assert_eq!(child.attributes["oms.outcome"], "acked");
    }
    // Payment charges when the second verdict arrives: the confirmation hangs under whichever
    // of its two spans that was, and `payments.processed` names that span.
    let confirmed = span("order-payments PaymentProcessed");
    let charged_by = [
        span("payment-customers CustomerValidated"),
        span("payment-inventory InventoryReserved"),
    ];
    assert!(
        charged_by.iter().any(|s| s.span_id == confirmed.parent),
        "{confirmed:?} under none of {charged_by:?}"
    );
    assert_eq!(
        published_by(&stack, PAYMENTS, &format!("payments.processed.{id}")).await,
        confirmed.parent
    );
    assert_eq!(
        published_by(&stack, CUSTOMERS, &format!("customers.validated.{id}")).await,
        span("customer OrderPlaced").span_id
    );
    assert_eq!(
        published_by(&stack, oms_topology::ORDERS, &format!("orders.placed.{id}")).await,
        root.span_id
    );
    // Each step once: a span per handled message, no more.
    let received = collector.spans.lock().unwrap().clone();
    for step in steps {
        let copies = received
            .iter()
            .filter(|s| s.trace_id == trace && s.name == step)
            .count();
        assert_eq!(copies, 1, "{step}");
    }

    // A rejected order: its compensation steps hang under the order service's span that
    // rejected it.
    let blocked = items_body("OMS-Cust-003", Value::Null, &[("item1", 1)]);
    let id = stack.place_ok(&blocked).await;
    assert_eq!(stack.terminal(&id).await["status"], "REJECTED");
    let trace = id.replace('-', "");
    let spans = collector
        .trace(
            &trace,
            &[
                "POST /orders",
                "customer OrderPlaced",
                "order-customers CustomerRejected",
                "payment-orders OrderRejected",
                "inventory OrderRejected",
            ],
        )
        .await;
    let rejected_by = &spans["payment-orders OrderRejected"].parent;
    assert_eq!(&spans["inventory OrderRejected"].parent, rejected_by);
    let rejecter = spans
        .values()
        .find(|s| &s.span_id == rejected_by)
        .expect("the span that rejected the order is in the trace");
    assert_eq!(rejecter.service, "order", "{rejecter:?}");
    assert_eq!(
        spans["order-customers CustomerRejected"].parent,
        spans["customer OrderPlaced"].span_id
    );
}
