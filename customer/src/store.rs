//! The customer service's SQL: customers and the verdict kept per order.

use oms_shared::db::{MAX_ROWS, Params, fetch_in, now_micros, uuid};
use oms_shared::{Money, Reason};
use std::collections::{HashMap, HashSet};

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Row};
use uuid::Uuid;

use crate::decide::{Customer, Verdict};

pub static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub async fn customer(pool: &AnyPool, customer_id: &str) -> Result<Option<Customer>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT customer_id, name, status, credit_limit_cents FROM customers WHERE customer_id = $1",
    )
    .bind(customer_id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(customer_of).transpose()
}

/// The customers among `ids` that exist.
pub async fn customers(
    conn: &mut AnyConnection,
    ids: &[&str],
) -> Result<HashMap<String, Customer>, sqlx::Error> {
    let mut found = HashMap::with_capacity(ids.len());
    let sql = "SELECT customer_id, name, status, credit_limit_cents FROM customers \
               WHERE customer_id IN ({keys})";
    for row in fetch_in(conn, sql, ids).await? {
        let customer = customer_of(&row)?;
        found.insert(customer.customer_id.clone(), customer);
    }
    Ok(found)
}

fn customer_of(r: &AnyRow) -> Result<Customer, sqlx::Error> {
    Ok(Customer {
        customer_id: r.try_get("customer_id")?,
        name: r.try_get("name")?,
        blocked: r.try_get::<String, _>("status")? == "BLOCKED",
        credit_limit: Money::from_cents(r.try_get("credit_limit_cents")?),
    })
}

/// Records each verdict unless one is recorded for its order already; returns the orders
/// whose verdict is new. The first decision stands: a redelivery (or a second instance)
/// republishes it.
pub async fn keep_verdicts(
    conn: &mut AnyConnection,
    verdicts: &[(Uuid, Verdict)],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    let now = now_micros();
    let mut inserted = HashSet::with_capacity(verdicts.len());
    for chunk in verdicts.chunks(MAX_ROWS) {
        let sql = format!(
            "INSERT INTO verdicts (order_id, reason, detail, credit_limit_cents, decided_at) \
             VALUES {} ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
            Params::of(conn).tuples(chunk.len(), 5)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (order_id, verdict) in chunk {
            let (reason, detail, limit) = match verdict {
                Verdict::Validated { credit_limit } => {
                    (None, String::new(), Some(credit_limit.cents()))
                }
                Verdict::Rejected { reason, detail } => {
                    (Some(reason.as_str()), detail.clone(), None)
                }
            };
            query = query
                .bind(order_id.to_string())
                .bind(reason)
                .bind(detail)
                .bind(limit)
                .bind(now);
        }
        for row in query.fetch_all(&mut *conn).await? {
            inserted.insert(uuid(&row, "order_id")?);
        }
    }
    Ok(inserted)
}

/// The verdicts kept for those of `orders` that have one.
pub async fn verdicts(
    conn: &mut AnyConnection,
    orders: &[Uuid],
) -> Result<HashMap<Uuid, Verdict>, sqlx::Error> {
    let mut kept = HashMap::with_capacity(orders.len());
    let sql = "SELECT order_id, reason, detail, credit_limit_cents FROM verdicts \
               WHERE order_id IN ({keys})";
    for row in fetch_in(conn, sql, orders).await? {
        kept.insert(uuid(&row, "order_id")?, verdict_of(&row)?);
    }
    Ok(kept)
}

fn verdict_of(row: &AnyRow) -> Result<Verdict, sqlx::Error> {
    let reason: Option<String> = row.try_get("reason")?;
    Ok(match reason.as_deref().and_then(Reason::parse) {
        Some(reason) => Verdict::Rejected {
            reason,
            detail: row.try_get("detail")?,
        },
        None => Verdict::Validated {
            credit_limit: Money::from_cents(
                row.try_get::<Option<i64>, _>("credit_limit_cents")?
                    .unwrap_or(0),
            ),
        },
    })
}
