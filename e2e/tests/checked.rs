//! Events checked on arrival: a message whose subject, `type` and `orderId` disagree, whose order
//! is out of range, or that is not JSON at all goes to the DLQ with the reason and has no effect,
//! while the messages behind it keep flowing. And a database constraint violation is a permanent
//! failure, on the backend of this run (SQLite, or PostgreSQL with `OMS_TEST_POSTGRES`).

use async_nats::jetstream::{self, message::PublishMessage};
use oms_bus::api::{self, ApiError};
use oms_bus::{
    self as bus, HEADER_DLQ_ERROR, HEADER_DLQ_SERVICE, HEADER_DLQ_STREAM, HEADER_DLQ_SUBJECT,
    HandleError,
};
use oms_domain::api::{GetOrder, GetProduct, OrderStatus, OrderView, ProductView};
use oms_domain::events::Rejection;
use oms_domain::{Envelope, Event, Item, Money, OrderId, OrderSnapshot, Reason};
use oms_e2e::{CUSTOMERS, DEADLINE, DataDir, INVENTORY, Mode, ORDERS, PAYMENTS, Stack};
use oms_testkit::eventually;
use oms_topology::identity::Identity;
use oms_topology::{self as topology, DLQ};
use uuid::Uuid;

/// The consumers of `orders.placed.*`, by service.
const PLACED_READERS: &[&str] = &["customer", "inventory", "order"];

fn order(quantity: u32, cents: i64) -> OrderSnapshot {
    OrderSnapshot {
        customer_id: "OMS-Cust-001".into(),
        items: vec![Item {
            product_id: "item4".into(),
            quantity,
        }],
        total_amount: Some(Money::from_cents(cents)),
        placed_at: time::OffsetDateTime::now_utc(),
    }
}

/// A message that must not be acted on.
struct Bad {
    what: &'static str,
    publisher: Identity,
    subject: String,
    payload: Vec<u8>,
    /// The services that read `subject`: each must dead-letter it.
    readers: &'static [&'static str],
    /// What `Oms-Dlq-Error` must say.
    reason: String,
}

/// Publishes `payload` as it is, with a `Nats-Msg-Id` of its own so that the genuine event of
/// the same subject later is not dropped as a duplicate.
async fn publish_raw(js: &jetstream::Context, subject: &str, payload: &[u8]) {
    let message = PublishMessage::build()
        .payload(payload.to_vec().into())
        .message_id(format!("bad.{}", Uuid::new_v4()));
    js.send_publish(subject.to_string(), message)
        .await
        .expect("publish sent")
        .await
        .expect("JetStream stored it");
}

/// The dead letter on `subject`, raw (it need not be JSON), once it is there.
async fn dead_letter(stack: &Stack, subject: &str) -> (Vec<u8>, async_nats::HeaderMap) {
    let js = stack.jetstream().await;
    eventually(DEADLINE, &format!("a dead letter on {subject}"), || {
        let js = js.clone();
        async move {
            let dlq = js.get_stream(DLQ).await.ok()?;
            let m = dlq.get_last_raw_message_by_subject(subject).await.ok()?;
            Some((m.payload.to_vec(), m.headers))
        }
    })
    .await
}

fn header(headers: &async_nats::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name}"))
        .as_str()
        .to_string()
}

async fn get_order(client: &async_nats::Client, order_id: OrderId) -> Result<OrderView, ApiError> {
    api::call(client, topology::api::ORDERS_GET, &GetOrder { order_id }).await
}

async fn available(client: &async_nats::Client, product: &str) -> i64 {
    let product: ProductView = api::call(
        client,
        topology::api::PRODUCTS_GET,
        &GetProduct {
            product_id: product.into(),
        },
    )
    .await
    .expect("inventory answers");
    product.available
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_that_disagree_or_are_out_of_range_go_to_the_dlq_and_change_nothing() {
    let stack = Stack::builder(Mode::InProcess)
        .services(&["customer", "inventory", "payment", "order"])
        .start()
        .await;
    let edge = stack.jetstream_as(Identity::Edge).await;
    let order_service = stack.jetstream_as(Identity::Order).await;
    // The service API, as the edge reads it (no edge runs here).
    let reader = edge.client();
    assert_eq!(available(&reader, "item4").await, 5);

    let [a, a2, b, b_subject, c1, c2, c3, d] = [(); 8].map(|_| OrderId::new());
    let placed = |id, order| Envelope::new(id, Event::OrderPlaced(order));
    // A rejection of a2, sent where placed orders go; the genuine order a2 follows below.
    let rejection_of_a2 = Envelope::new(
        a2,
        Event::OrderRejected(Rejection {
            order: order(2, 5_000),
            reason: Reason::CustomerBlocked,
            detail: "forged".into(),
        }),
    );
    let too_precise = {
        let mut json: serde_json::Value =
            serde_json::from_slice(&placed(c3, order(1, 1_000)).encode()).unwrap();
        json["data"]["totalAmount"] = serde_json::json!(10.005);
        serde_json::to_vec(&json).unwrap()
    };
    let bad = vec![
        Bad {
            what: "(a) an OrderPlaced on orders.rejected",
            publisher: Identity::Order,
            subject: format!("orders.rejected.{a}"),
            payload: placed(a, order(2, 5_000)).encode().to_vec(),
            readers: &["inventory", "payment"],
            reason: format!(
                "invalid event: subject orders.rejected.{a} does not match the envelope's type \
                 OrderPlaced, which is published on orders.placed.{a}"
            ),
        },
        Bad {
            what: "(a) an OrderRejected on orders.placed",
            publisher: Identity::Edge,
            subject: format!("orders.placed.{a2}"),
            payload: rejection_of_a2.encode().to_vec(),
            readers: PLACED_READERS,
            reason: "does not match the envelope's type OrderRejected".into(),
        },
        Bad {
            what: "(b) another order's id in the subject",
            publisher: Identity::Edge,
            subject: format!("orders.placed.{b_subject}"),
            payload: placed(b, order(2, 5_000)).encode().to_vec(),
            readers: PLACED_READERS,
            reason: format!("names another order than the envelope's orderId {b}"),
        },
        Bad {
            what: "(c) quantity 0",
            publisher: Identity::Edge,
            subject: format!("orders.placed.{c1}"),
            payload: placed(c1, order(0, 5_000)).encode().to_vec(),
            readers: PLACED_READERS,
            reason: "data.items[0].quantity is 0: must be a whole number from 1".into(),
        },
        Bad {
            what: "(c) an absurd amount",
            publisher: Identity::Edge,
            subject: format!("orders.placed.{c2}"),
            payload: placed(c2, order(1, 500_000_000)).encode().to_vec(),
            readers: PLACED_READERS,
            reason: "data.totalAmount is 5000000.00: must be more than 0.00 and at most 1000000.00"
                .into(),
        },
        Bad {
            what: "(c) an amount with three decimals",
            publisher: Identity::Edge,
            subject: format!("orders.placed.{c3}"),
            payload: too_precise,
            readers: PLACED_READERS,
            reason: "amount 10.005 has more than 2 decimal places".into(),
        },
        Bad {
            what: "(d) bytes that are not JSON",
            publisher: Identity::Edge,
            subject: format!("orders.placed.{d}"),
            payload: b"\x00 this is { not JSON".to_vec(),
            readers: PLACED_READERS,
            reason: "not an event envelope".into(),
        },
    ];
    for m in &bad {
        let js = match m.publisher {
            Identity::Order => &order_service,
            _ => &edge,
        };
        publish_raw(js, &m.subject, &m.payload).await;
    }

    // Each reader parked each message once, as it arrived, saying why.
    for m in &bad {
        for service in m.readers {
            let subject = topology::dlq_subject(service, &m.subject);
            let (payload, headers) = dead_letter(&stack, &subject).await;
            assert_eq!(payload, m.payload, "{}: the message as it came", m.what);
            let error = header(&headers, HEADER_DLQ_ERROR);
            assert!(
                error.contains(&m.reason),
                "{}, {service}: {error:?} names {:?}",
                m.what,
                m.reason
            );
            assert_eq!(header(&headers, HEADER_DLQ_SERVICE), *service);
            assert_eq!(header(&headers, HEADER_DLQ_STREAM), ORDERS);
            assert_eq!(header(&headers, HEADER_DLQ_SUBJECT), m.subject);
            assert_eq!(stack.count(DLQ, &subject).await, 1, "{}: once", m.what);
        }
    }
    for durable in ["customer", "inventory", "order-orders", "payment-orders"] {
        stack.drained(ORDERS, durable).await;
    }
    let letters: usize = bad.iter().map(|m| m.readers.len()).sum();
    assert_eq!(stack.count(DLQ, "dlq.>").await, letters as u64);

    // Nothing else happened: no verdict, reservation, charge or projection for any of them, and
    // no stock taken.
    for id in [a, a2, b, b_subject, c1, c2, c3, d] {
        for (stream, subject) in [
            (CUSTOMERS, format!("customers.*.{id}")),
            (INVENTORY, format!("inventory.*.{id}")),
            (PAYMENTS, format!("payments.*.{id}")),
            (ORDERS, format!("orders.confirmed.{id}")),
        ] {
            assert_eq!(stack.count(stream, &subject).await, 0, "{subject}");
        }
        let rejected = u64::from(id == a); // the bad message itself sits there
        let subject = format!("orders.rejected.{id}");
        assert_eq!(stack.count(ORDERS, &subject).await, rejected, "{subject}");
        assert!(
            matches!(get_order(&reader, id).await, Err(ApiError::NotFound(_))),
            "order {id} was not projected"
        );
    }
    assert_eq!(available(&reader, "item4").await, 5, "no stock taken");

    // The genuine order a2 goes through: the forged rejection before it left nothing behind
    // (inventory would have reserved nothing for an order it had seen rejected).
    bus::publish(&edge, &placed(a2, order(2, 5_000)))
        .await
        .expect("the genuine order is stored");
    let confirmed = eventually(DEADLINE, "the genuine order to be confirmed", || {
        let reader = reader.clone();
        async move {
            let order = get_order(&reader, a2).await.ok()?;
            order.status.is_terminal().then_some(order)
        }
    })
    .await;
    assert_eq!(confirmed.status, OrderStatus::Confirmed, "{confirmed:?}");
    assert_eq!(available(&reader, "item4").await, 3);
    assert_eq!(
        stack.count(DLQ, "dlq.>").await,
        letters as u64,
        "no new dead letters"
    );
}

/// Runs `sql` and classifies its error as a consumer would.
async fn failure(pool: &sqlx::AnyPool, sql: &str) -> HandleError {
    let e = sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .expect_err(sql);
    HandleError::from(e)
}

#[tokio::test]
async fn constraint_violations_are_permanent_and_a_lost_race_is_not() {
    let data = DataDir::temporary();
    let pool = oms_store::connect(&data.database_url("checked"))
        .await
        .unwrap();
    for sql in [
        "CREATE TABLE parent (id TEXT PRIMARY KEY)",
        "CREATE TABLE child (id TEXT PRIMARY KEY, \
         parent_id TEXT NOT NULL REFERENCES parent (id), n BIGINT NOT NULL CHECK (n > 0))",
        "INSERT INTO parent (id) VALUES ('p')",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    for (what, sql) in [
        (
            "a foreign key",
            "INSERT INTO child (id, parent_id, n) VALUES ('c', 'nobody', 1)",
        ),
        (
            "a check",
            "INSERT INTO child (id, parent_id, n) VALUES ('c', 'p', 0)",
        ),
        (
            "not null",
            "INSERT INTO child (id, parent_id, n) VALUES ('c', NULL, 1)",
        ),
    ] {
        let e = failure(&pool, sql).await;
        assert!(matches!(e, HandleError::Permanent(_)), "{what}: {e}");
    }
    // Two instances inserting the row of one order: the loser retries and finds the winner's.
    let e = failure(&pool, "INSERT INTO parent (id) VALUES ('p')").await;
    assert!(matches!(e, HandleError::Transient(_)), "unique: {e}");
    // Not the database's verdict on the data: may work later.
    let e = HandleError::from(sqlx::Error::PoolTimedOut);
    assert!(matches!(e, HandleError::Transient(_)), "{e}");
}
