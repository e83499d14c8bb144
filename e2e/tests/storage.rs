//! Bounded storage: every stream and bucket has a byte limit and refuses new messages when full
//! (discard new). A full ORDERS stream makes `POST /orders` a clean 503: nothing accepted,
//! nothing already stored dropped.

use oms_e2e::{Mode, ORDERS, Stack, original_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_order_stream_refuses_new_orders_and_keeps_the_old_ones() {
    // Room for a handful of orders (an OrderPlaced is about 400 bytes with its headers).
    let stack = Stack::builder(Mode::InProcess)
        .configure(|config| config.streams.max_bytes = 4 * 1024)
        .start()
        .await;
    let mut accepted = Vec::new();
    let refused = loop {
        let (status, answer) = stack.place(&original_body()).await;
        match status {
            202 => accepted.push(answer["orderId"].as_str().expect("an id").to_string()),
            503 => break answer,
            other => panic!("unexpected {other}: {answer}"),
        }
        assert!(accepted.len() < 100, "the stream never filled up");
    };
    assert!(!accepted.is_empty(), "the first orders fit");
    assert_eq!(refused["status"], 503);
    assert!(
        refused["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("full"),
        "says why: {refused}"
    );
    // Nothing of the refused order was stored; everything accepted before is still there.
    let placed = stack.count(ORDERS, "orders.placed.*").await;
    assert_eq!(
        placed,
        accepted.len() as u64,
        "only the accepted orders are stored"
    );
    for id in &accepted {
        let (status, body) = stack.get(&format!("/orders/{id}")).await;
        assert_eq!(status, 200, "accepted order {id} still readable: {body}");
    }
    let stream = stack
        .jetstream()
        .await
        .get_stream(ORDERS)
        .await
        .expect("ORDERS");
    let config = &stream.cached_info().config;
    assert_eq!(config.max_bytes, 4 * 1024);
    assert_eq!(
        config.discard,
        async_nats::jetstream::stream::DiscardPolicy::New
    );
}
