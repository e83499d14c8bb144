//! The host keeps a service's consumers running: one that dies takes `/readyz` down, says which,
//! and is started again; the event it died on is handled once the handler works again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use oms_bus::{HandleError, Incoming, Input, Step};
use oms_domain::{Envelope, Event, EventKind, Item, Money, OrderSnapshot};
use oms_host::Service;
use oms_testkit::{NatsServer, TestBroker, eventually};
use oms_topology::identity::Identity;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Panics while `panicking` is set, else counts the events it was given.
struct Flaky {
    panicking: Arc<AtomicBool>,
    handled: Arc<AtomicUsize>,
}

/// Placed orders.
struct Placed;

impl Input for Placed {
    const KINDS: &'static [EventKind] = &[EventKind::OrderPlaced];

    fn take(event: Event) -> Option<Self> {
        matches!(event, Event::OrderPlaced(_)).then_some(Placed)
    }
}

impl Step for Flaky {
    type Input = Placed;
    type Work = ();
    type Found = ();
    type Plan = ();

    async fn load(&self, _: &[Incoming<Placed>]) -> Result<((), ()), HandleError> {
        assert!(!self.panicking.load(Ordering::SeqCst), "the handler fails");
        Ok(((), ()))
    }

    fn decide(_: &[Incoming<Placed>], (): ()) {}

    async fn persist(
        &self,
        (): (),
        batch: &[Incoming<Placed>],
        (): (),
    ) -> Result<Vec<Option<Event>>, HandleError> {
        self.handled.fetch_add(batch.len(), Ordering::SeqCst);
        Ok(batch.iter().map(|_| None).collect())
    }
}

async fn readyz(url: &str) -> (u16, serde_json::Value) {
    let response = reqwest::get(url).await.expect("the health port answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn a_consumer_that_dies_takes_readiness_down_and_is_started_again() {
    let nats = NatsServer::start();
    let mut config = nats.config();
    // Redelivered soon after the handler died holding it.
    config.consumers.ack_wait = Duration::from_secs(1);
    nats.provision(&config).await;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/readyz", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let (panicking, handled) = (Arc::new(AtomicBool::new(true)), Arc::default());
    let mut service = Service::start("customer", &config, listener, &shutdown)
        .await
        .expect("the customer identity connects");
    let flaky = Flaky {
        panicking: panicking.clone(),
        handled: Arc::clone(&handled),
    };
    service
        .consume(&[oms_topology::CUSTOMER], flaky)
        .expect("the step takes what the consumer delivers");
    let running = tokio::spawn(service.run());
    eventually(Duration::from_secs(20), "ready", || async {
        (readyz(&url).await.0 == 200).then_some(())
    })
    .await;

    let edge = async_nats::jetstream::new(nats.connect_as(Identity::Edge).await);
    let order = OrderSnapshot {
        customer_id: "OMS-Cust-001".into(),
        items: vec![Item {
            product_id: "item1".into(),
            quantity: 1,
        }],
        total_amount: Some(Money::from_cents(2_599)),
        placed_at: time::OffsetDateTime::now_utc(),
    };
    let placed = Envelope::new(oms_domain::OrderId::new(), Event::OrderPlaced(order));
    oms_bus::publish(&edge, &placed).await.expect("published");

    let (status, body) = eventually(Duration::from_secs(20), "not ready", || async {
        let (status, body) = readyz(&url).await;
        (status == 503).then_some((status, body))
    })
    .await;
    assert_eq!(status, 503);
    assert_eq!(
        body["down"],
        serde_json::json!(["consumer customer"]),
        "{body}"
    );

    panicking.store(false, Ordering::SeqCst);
    eventually(Duration::from_secs(30), "the event handled", || async {
        (handled.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    eventually(Duration::from_secs(20), "ready again", || async {
        (readyz(&url).await.0 == 200).then_some(())
    })
    .await;

    shutdown.cancel();
    running
        .await
        .expect("the service task ends")
        .expect("a clean shutdown");
    assert_eq!(handled.load(Ordering::SeqCst), 1, "handled once");
}
