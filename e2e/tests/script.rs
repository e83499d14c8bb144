//! `db::Script` on the backend of this run (SQLite, or PostgreSQL with `OMS_TEST_POSTGRES`):
//! each statement's rows and affected count come back apart and in order, parameters bind in
//! order across statements, and a failing statement fails the script and, in a transaction,
//! leaves nothing behind.

use oms_e2e::DataDir;
use oms_store::{self as db, Script, Value};
use sqlx::Row;

async fn pool() -> (sqlx::AnyPool, DataDir) {
    let data = DataDir::temporary();
    let pool = db::connect(&data.database_url("script")).await.unwrap();
    sqlx::query("CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL, note TEXT)")
        .execute(&pool)
        .await
        .unwrap();
    (pool, data)
}

fn kv_insert(script: &mut Script, rows: &[(&str, i64)]) -> db::Part {
    script.push_rows(
        "INSERT INTO kv (k, v) VALUES {rows} ON CONFLICT (k) DO NOTHING RETURNING k",
        rows,
        |(k, v)| [Value::from(*k), Value::from(*v)],
    )
}

#[tokio::test]
async fn statements_return_their_own_outcomes_in_order() {
    let (pool, _data) = pool().await;
    let mut conn = pool.acquire().await.unwrap();

    let mut script = Script::new(&conn);
    assert!(script.is_empty());
    let first = kv_insert(&mut script, &[("a", 1), ("b", 2)]);
    let again = kv_insert(&mut script, &[("b", 20), ("c", 3)]);
    let bump = script.push(
        format!(
            "UPDATE kv SET v = v + {}, note = {} WHERE k IN ({})",
            script.params().list(1, 1),
            script.params().list(2, 1),
            script.params().list(3, 2)
        ),
        vec![10.into(), None::<&str>.into(), "a".into(), "c".into()],
    );
    let read = script.push_in(
        "SELECT k, v FROM kv WHERE k IN ({keys}) ORDER BY k",
        &["a", "b", "c", "zz"],
    );
    assert_eq!(script.len(), 4);
    let out = script.run(&mut conn).await.unwrap();

    assert_eq!(out.len(), 4);
    let keys = |part: &db::Part| -> Vec<String> {
        part.rows(&out).map(|r| r.get::<String, _>("k")).collect()
    };
    assert_eq!(keys(&first), ["a", "b"]);
    assert_eq!(first.affected(&out), 2);
    // "b" was there already: only "c" is new.
    assert_eq!(keys(&again), ["c"]);
    assert_eq!(bump.affected(&out), 2);
    assert_eq!(bump.rows(&out).count(), 0);
    let read: Vec<(String, i64)> = read.rows(&out).map(|r| (r.get("k"), r.get("v"))).collect();
    assert_eq!(
        read,
        [("a".into(), 11), ("b".into(), 2), ("c".into(), 13)],
        "each statement saw the ones before it, with its own parameters"
    );

    let empty = Script::new(&conn).run(&mut conn).await.unwrap();
    assert!(empty.is_empty());
}

#[tokio::test]
async fn batches_longer_than_a_statement_take_several_and_read_as_one_part() {
    let (pool, _data) = pool().await;
    let mut conn = pool.acquire().await.unwrap();
    let keys: Vec<String> = (0..db::MAX_ROWS + 7).map(|i| format!("k{i:04}")).collect();

    let mut script = Script::new(&conn);
    let rows: Vec<(&str, i64)> = keys.iter().map(|k| (k.as_str(), 1)).collect();
    let written = kv_insert(&mut script, &rows);
    let read = script.push_in("SELECT k FROM kv WHERE k IN ({keys})", &keys);
    let out = script.run(&mut conn).await.unwrap();
    assert_eq!(
        written.each(&out).len(),
        2,
        "one statement per chunk of rows"
    );
    assert_eq!(written.affected(&out), keys.len() as u64);
    assert_eq!(read.each(&out).len(), 2, "one statement per chunk of keys");
    let mut found: Vec<String> = read.rows(&out).map(|r| r.get("k")).collect();
    found.sort();
    assert_eq!(found, keys);
}

#[tokio::test]
async fn a_failing_statement_fails_the_script_and_its_transaction_keeps_nothing() {
    let (pool, _data) = pool().await;
    let mut tx = db::begin_write(&pool).await.unwrap();
    let mut script = Script::new(&tx);
    kv_insert(&mut script, &[("a", 1)]);
    // A NULL into a NOT NULL column, after a statement that succeeded.
    script.push(
        format!(
            "INSERT INTO kv (k, v) VALUES ({}, NULL)",
            script.params().list(1, 1)
        ),
        vec!["b".into()],
    );
    assert!(script.run(&mut tx).await.is_err());
    tx.rollback().await.unwrap();

    let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM kv")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get("n");
    assert_eq!(count, 0);
}
