//! A three-node JetStream cluster (started from nats-cluster.conf, as compose does) with every
//! stream and bucket on 3 replicas: losing a node mid-load loses and doubles nothing, and the
//! node, restarted, catches up.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use oms_e2e::load::{Load, all_final};
use oms_e2e::testing::eventually;
use oms_e2e::{Mode, ORDERS, Stack, items_body};
use serde_json::Value;
use sqlx::Row;

const ORDERS_PLACED: usize = 2_000;

/// The two tests would share two cores with six nats-servers and ten services: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn order(i: usize) -> Value {
    match i % 10 {
        8 => items_body("OMS-Cust-003", Value::Null, &[("item2", 1)]),
        // 11 × 10.00 is above Alan's 100.00.
        9 => items_body("OMS-Cust-002", Value::Null, &[("item3", 11)]),
        // 1,600 confirmed orders, 800 each of item1 and item2 (1,000 in stock each).
        n => items_body(
            "OMS-Cust-001",
            Value::Null,
            &[(["item1", "item2"][n % 2], 1)],
        ),
    }
}

/// Which node to kill, given the cluster and the ORDERS stream's current leader.
enum Victim {
    Leader,
    Follower,
}

async fn lose_a_node_mid_load(victim: Victim) {
    let _serial = SERIAL.lock().await;
    let mut stack = Stack::builder(Mode::Processes)
        .cluster()
        .configure(|config| {
            config.streams.replicas = 3;
            config.consumers.ack_wait = Duration::from_secs(3);
        })
        .start()
        .await;
    let js = stack.jetstream().await;
    let load = Load::start(&stack, ORDERS_PLACED, "f", order);

    load.reached(ORDERS_PLACED / 3).await;
    let leader = js
        .get_stream(ORDERS)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .cluster
        .clone()
        .and_then(|c| c.leader)
        .expect("ORDERS has a leader");
    let cluster = stack.nats.cluster();
    let leader_index = cluster.index_of(&leader).expect("a known node");
    let node = match victim {
        Victim::Leader => leader_index,
        Victim::Follower => (leader_index + 1) % 3,
    };
    let killed_name = cluster.name(node).to_string();
    cluster.kill(node);
    let killed_at = Instant::now();
    let before = load.accepted();
    // Recovered: orders are accepted again (a new leader, if the leader was lost).
    load.reached(before + 50).await;
    let recovery = killed_at.elapsed();

    load.reached(2 * ORDERS_PLACED / 3).await;
    tokio::task::block_in_place(|| stack.nats.cluster().start_node(node));
    let placed = load.finish().await;
    let ids: HashSet<&str> = placed.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.len(), ORDERS_PLACED, "one order id per idempotency key");

    // Every order ends, once.
    let orders = oms_store::connect(&stack.data.database_url("order"))
        .await
        .unwrap();
    let settle = all_final(&stack, &orders, ORDERS_PLACED, Duration::from_secs(60)).await;
    let rows = sqlx::query("SELECT order_id, status FROM orders")
        .fetch_all(&orders)
        .await
        .unwrap();
    assert_eq!(rows.len(), ORDERS_PLACED, "none doubled, none phantom");
    let stored: HashSet<String> = rows.iter().map(|r| r.get("order_id")).collect();
    assert!(ids.iter().all(|id| stored.contains(*id)), "none lost");
    let confirmed: HashSet<String> = rows
        .iter()
        .filter(|r| r.get::<String, _>("status") == "CONFIRMED")
        .map(|r| r.get("order_id"))
        .collect();
    assert_eq!(confirmed.len(), ORDERS_PLACED * 8 / 10);
    assert_eq!(
        stack.count(ORDERS, "orders.placed.*").await,
        ORDERS_PLACED as u64
    );
    let charged = stack.charged().await;
    assert_eq!(charged, confirmed, "each confirmed order charged once");

    // The restarted node catches up: every replica of every stream current, no lag.
    let caught_up = Instant::now();
    eventually(
        Duration::from_secs(60),
        "the restarted node to catch up",
        || {
            let js = js.clone();
            let killed_name = killed_name.clone();
            async move {
                for stream in [
                    ORDERS,
                    "CUSTOMERS",
                    "INVENTORY",
                    "PAYMENTS",
                    "KV_payment-join",
                ] {
                    let info = js.get_stream(stream).await.ok()?.info().await.ok()?.clone();
                    let cluster = info.cluster?;
                    let nodes: Vec<String> = cluster
                        .replicas
                        .iter()
                        .map(|r| r.name.clone())
                        .chain(cluster.leader.clone())
                        .collect();
                    if !nodes.contains(&killed_name) {
                        return None;
                    }
                    if cluster
                        .replicas
                        .iter()
                        .any(|r| !r.current || r.lag.unwrap_or(0) > 0)
                    {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await;
    println!(
        "killed {killed_name} ({}) after {before} of {ORDERS_PLACED} orders: accepting again after {recovery:?}; all terminal {settle:?} after the last 202; lost 0, doubled 0; node current again {:?} after the load",
        match victim {
            Victim::Leader => "ORDERS leader",
            Victim::Follower => "a follower",
        },
        caught_up.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_the_orders_leader_mid_load_loses_nothing() {
    lose_a_node_mid_load(Victim::Leader).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_a_follower_mid_load_loses_nothing() {
    lose_a_node_mid_load(Victim::Follower).await;
}
