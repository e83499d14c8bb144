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
