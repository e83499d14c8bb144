//! The attacks of a stranger and of a curious insider, tried against the running system: each
//! must fail and change nothing. (The permission table cell by cell is `permissions.rs`.)

use std::time::Duration;

use async_nats::jetstream;
use oms_domain::{Envelope, Event};
use oms_e2e::{DEADLINE, Mode, ORDERS, PAYMENTS, Stack, items_body, original_body};
use oms_testkit::{TestBroker, eventually};
use oms_topology::identity::Identity;
use serde_json::json;

/// Publishes `event` once on its subject and waits for the PubAck (a refused publish gets none).
async fn publish_once(js: &jetstream::Context, event: &Envelope) -> bool {
    match js.publish(event.subject(), event.encode()).await {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    }
}

/// JetStream as `identity`, giving up on an unanswered request after a second: a refused
/// request gets no answer, only a permissions violation on the connection.
async fn impatient(stack: &Stack, identity: Identity) -> jetstream::Context {
    let client = stack.nats.connect_as(identity).await;
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(1))
        .build(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nobody_is_anonymous() {
    let stack = Stack::builder(Mode::InProcess).services(&[]).start().await;
    let refused = async_nats::ConnectOptions::new()
        .connect(stack.nats.url())
        .await
        .expect_err("an anonymous client is refused");
    assert!(
        refused.to_string().to_lowercase().contains("authorization"),
        "{refused}"
    );
}

/// The attack: a real `payments.processed` under a new order id, for the blocked
/// customer. Only payment may publish that subject; from anyone else it is refused, stored
/// nowhere, and no order comes of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_payment_from_anyone_but_payment_is_refused_and_changes_nothing() {
    let stack = Stack::start().await;
    let id = stack.place_ok(&original_body()).await;
    assert_eq!(stack.terminal(&id).await["status"], "CONFIRMED");
    let (event, _) = stack
        .event(PAYMENTS, &format!("payments.processed.{id}"))
        .await;
    let mut forged: Envelope = serde_json::from_value(event).expect("an envelope");
    let victim = oms_domain::OrderId::new();
    forged.order_id = victim;
    if let Event::PaymentProcessed(p) = &mut forged.event {
        p.order.customer_id = "OMS-Cust-003".into();
    }
    for attacker in Identity::ALL
        .into_iter()
        .filter(|i| ![Identity::Payment, Identity::Operator].contains(i))
    {
        let js = impatient(&stack, attacker).await;
        assert!(
            !publish_once(&js, &forged).await,
            "{attacker:?} must not publish a payment"
        );
    }
    // The owner's publish goes through the same way: the refusals above are about who.
    let payment = impatient(&stack, Identity::Payment).await;
    let mut genuine = forged.clone();
    genuine.order_id = oms_domain::OrderId::new();
    assert!(
        publish_once(&payment, &genuine).await,
        "payment may publish"
    );
    stack.drained(PAYMENTS, "order-payments").await;
    assert_eq!(
        stack.count(PAYMENTS, &format!("payments.*.{victim}")).await,
        0,
        "nothing stored"
    );
    let (status, _) = stack.get(&format!("/orders/{victim}")).await;
    assert_eq!(status, 404, "no order was made of it");
}

/// `orders.rejected` of a confirmed order would make inventory give its stock back (oversell).
/// Only the order service may publish it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forged_rejection_cannot_free_a_confirmed_orders_stock() {
    let stack = Stack::start().await;
    let id = stack
        .place_ok(&items_body("OMS-Cust-001", json!(50), &[("item4", 2)]))
        .await;
    assert_eq!(stack.terminal(&id).await["status"], "CONFIRMED");
    assert_eq!(stack.available("item4").await, 3);
    let (placed, _) = stack.event(ORDERS, &format!("orders.placed.{id}")).await;
    let placed: Envelope = serde_json::from_value(placed).expect("an envelope");
    let Event::OrderPlaced(order) = placed.event else {
        panic!("an OrderPlaced")
    };
    let rejected = Envelope::new(
        placed.order_id,
        Event::OrderRejected(oms_domain::events::Rejection {
            order,
            reason: oms_domain::Reason::OutOfStock,
            detail: "forged".into(),
        }),
    );
    for attacker in [
        Identity::Edge,
        Identity::Customer,
        Identity::Inventory,
        Identity::Payment,
        Identity::Observer,
        Identity::Loadgen,
        Identity::Provisioner,
    ] {
        let js = impatient(&stack, attacker).await;
        assert!(
            !publish_once(&js, &rejected).await,
            "{attacker:?} must not reject an order"
        );
    }
    stack.drained(ORDERS, "inventory").await;
    assert_eq!(
        stack.count(ORDERS, &format!("orders.rejected.{id}")).await,
        0
    );
    assert_eq!(stack.available("item4").await, 3, "the stock stays taken");
    assert_eq!(stack.terminal(&id).await["status"], "CONFIRMED");
}

/// The observer reads what the nats CLI shows (streams, consumers, a bucket's entry, the
/// service API's discovery) and cannot delete, purge, overwrite or re-point anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_observer_reads_everything_and_changes_nothing() {
    let stack = Stack::start().await;
    let id = stack.place_ok(&original_body()).await;
    assert_eq!(stack.terminal(&id).await["status"], "CONFIRMED");
    let js = impatient(&stack, Identity::Observer).await;

    // Reads: `stream ls/info`, `consumer report`, `kv get`, `micro ls`.
    let mut orders = js.get_stream(ORDERS).await.expect("stream info");
    assert!(orders.info().await.expect("info").state.messages >= 2);
    let mut customer: jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream("customer", ORDERS)
        .await
        .expect("consumer info");
    assert_eq!(
        customer
            .info()
            .await
            .expect("info")
            .config
            .durable_name
            .as_deref(),
        Some("customer")
    );
    let ledger = js
        .get_key_value("payment-ledger")
        .await
        .expect("bucket info");
    assert!(
        ledger.get(&id).await.expect("kv get").is_some(),
        "the charge"
    );
    let message = orders
        .direct_get_last_for_subject(format!("orders.placed.{id}"))
        .await
        .expect("a message read");
    assert!(!message.payload.is_empty());
    // `stream view`'s part, without a consumer: the whole stream by direct gets.
    let stored = oms_bus::direct::read_all(&js.client(), ORDERS, None)
        .await
        .expect("a stream read by direct gets");
    assert!(
        stored
            .iter()
            .any(|m| m.subject == format!("orders.placed.{id}")),
        "the order's placement among {} messages",
        stored.len()
    );
    // And as a person would, with `oms-view` (JSON lines).
    let viewed = stack.run_tool("view", &[ORDERS, "--subject", &format!("orders.*.{id}")]);
    let out = String::from_utf8_lossy(&viewed.stdout);
    assert!(
        viewed.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&viewed.stderr)
    );
    let viewed: Vec<serde_json::Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let types = Vec::from_iter(viewed.iter().map(|m| m["data"]["type"].as_str().unwrap()));
    assert_eq!(types, ["OrderPlaced", "OrderConfirmed"], "{out}");
    assert_eq!(viewed[1]["headers"]["Oms-Event-Type"], "OrderConfirmed");
    assert!(viewed[0]["sequence"].as_u64() < viewed[1]["sequence"].as_u64());
    let services = stack.nats.connect_as(Identity::Observer).await;
    let answers = eventually(DEADLINE, "three micro services to answer a ping", || {
        let services = services.clone();
        async move {
            let inbox = services.new_inbox();
            let mut replies = services.subscribe(inbox.clone()).await.ok()?;
            services
                .publish_with_reply("$SRV.PING", inbox, "".into())
                .await
                .ok()?;
            services.flush().await.ok()?;
            let mut names = std::collections::BTreeSet::new();
            while let Ok(Some(reply)) = tokio::time::timeout(
                Duration::from_millis(500),
                futures::StreamExt::next(&mut replies),
            )
            .await
            {
                let ping: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
                names.insert(ping["name"].as_str()?.to_string());
            }
            (names.len() == 3).then_some(names)
        }
    })
    .await;
    assert_eq!(
        answers.into_iter().collect::<Vec<_>>(),
        ["oms-customers", "oms-inventory", "oms-orders"]
    );

    // Changes: every one refused, and afterwards everything is as it was.
    assert!(js.delete_stream(ORDERS).await.is_err(), "delete a stream");
    assert!(
        js.get_stream(PAYMENTS)
            .await
            .unwrap()
            .purge()
            .await
            .is_err(),
        "purge"
    );
    assert!(ledger.purge(&id).await.is_err(), "wipe a ledger entry");
    assert!(ledger.delete(&id).await.is_err(), "delete a ledger entry");
    assert!(
        js.delete_consumer_from_stream("customer", ORDERS)
            .await
            .is_err(),
        "delete a consumer"
    );
    let stream = js.get_stream_no_info(ORDERS).await.unwrap();
    assert!(
        stream
            .create_consumer(jetstream::consumer::pull::Config {
                durable_name: Some("customer".into()),
                filter_subject: "orders.confirmed.*".into(),
                ..Default::default()
            })
            .await
            .is_err(),
        "re-point a service's durable"
    );
    // The same through an "ephemeral" create: no name in the subject, the durable's in the body.
    let rewrite = serde_json::json!({
        "stream_name": ORDERS,
        "config": {"name": "customer", "filter_subject": "orders.confirmed.*", "ack_policy": "explicit"},
    });
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        js.client().request(
            format!("$JS.API.CONSUMER.CREATE.{ORDERS}"),
            rewrite.to_string().into(),
        ),
    )
    .await;
    if let Ok(Ok(answer)) = answer {
        let answer: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
        assert!(
            answer["error"].is_object(),
            "a durable re-pointed: {answer}"
        );
    }
    let owner = stack.jetstream_as(Identity::Provisioner).await;
    let info = owner
        .get_consumer_from_stream::<jetstream::consumer::pull::Config, _, _>("customer", ORDERS)
        .await
        .expect("still there")
        .cached_info()
        .clone();
    assert_eq!(
        info.config.filter_subjects,
        ["orders.placed.*"],
        "unchanged"
    );
    let charges = stack.charged().await;
    assert!(charges.contains(&id), "the ledger still holds the charge");
    let mut orders = owner.get_stream(ORDERS).await.expect("ORDERS still there");
    assert!(orders.info().await.unwrap().state.messages >= 2);
}

/// The observer pages through a stream without a consumer: every message once, in order, across
/// pages, from any sequence on, and only those on a subject when asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_observer_pages_through_a_stream_by_direct_gets() {
    use oms_bus::direct::{BATCH, Pages, read_all};
    let stack = Stack::builder(Mode::InProcess).services(&[]).start().await;
    let edge = stack.jetstream_as(Identity::Edge).await;
    let total = 2 * BATCH + 10;
    let acks = futures::future::join_all((0..total).map(|n| {
        let edge = edge.clone();
        async move {
            let subject = format!("orders.placed.{}", n % 3);
            edge.publish(subject, n.to_string().into()).await?.await
        }
    }))
    .await;
    assert!(acks.iter().all(Result::is_ok), "every message stored");

    let client = stack.nats.connect_as(Identity::Observer).await;
    let all = read_all(&client, ORDERS, None)
        .await
        .expect("the stream read");
    assert_eq!(all.len(), total);
    let sequences = Vec::from_iter(all.iter().map(|m| m.sequence));
    assert_eq!(
        sequences,
        Vec::from_iter(1..=total as u64),
        "each once, in order"
    );

    let ones = read_all(&client, ORDERS, Some("orders.placed.1"))
        .await
        .expect("one subject read");
    assert_eq!(ones.len(), (0..total).filter(|n| n % 3 == 1).count());
    assert!(ones.iter().all(|m| m.subject == "orders.placed.1"));

    let mut pages = Pages::open(&client, ORDERS, 100, None).await.unwrap();
    let first = pages.next_page().await.unwrap();
    assert_eq!(first.len(), BATCH);
    assert_eq!(first[0].sequence, 100);
    let rest = pages.next_page().await.unwrap();
    assert_eq!(rest.len(), total - 99 - BATCH);
    assert_eq!(rest[0].sequence, 100 + BATCH as u64);
    assert!(pages.next_page().await.unwrap().is_empty(), "the end");
}
