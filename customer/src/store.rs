//! The customer service's SQL: customers and the verdict kept per order.

use oms_domain::api::NewCustomer;
use oms_domain::{CustomerId, Money, Reason};
use oms_store::{Part, Script, fetch_in, id};
use std::collections::HashMap;

use oms_domain::OrderId;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::decide::{Customer, Verdict};

/// One schema for both backends (portable SQL).
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub async fn customer(
    pool: &AnyPool,
    customer_id: &CustomerId,
) -> Result<Option<Customer>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT customer_id, name, status, credit_limit_cents FROM customers WHERE customer_id = $1",
    )
    .bind(customer_id.as_str())
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(customer_of).transpose()
}

/// The customers among `ids` that exist.
pub async fn customers(
    conn: &mut AnyConnection,
    ids: &[&CustomerId],
) -> Result<HashMap<CustomerId, Customer>, sqlx::Error> {
    let mut found = HashMap::with_capacity(ids.len());
    let sql = "SELECT customer_id, name, status, credit_limit_cents FROM customers \
               WHERE customer_id IN ({keys})";
    for row in fetch_in(conn, sql, ids).await? {
        let customer = customer_of(&row)?;
        found.insert(customer.customer_id.clone(), customer);
    }
    Ok(found)
}

/// Creates an ACTIVE customer; `false` if the id exists already (nothing changes).
pub async fn create(pool: &AnyPool, new: &NewCustomer) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO customers (customer_id, name, status, credit_limit_cents) \
         VALUES ($1, $2, 'ACTIVE', $3) ON CONFLICT (customer_id) DO NOTHING",
    )
    .bind(new.customer_id.as_str())
    .bind(new.name.as_str())
    .bind(new.credit_limit.cents())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Blocks or unblocks a customer; `false` if there is none (setting the status it has is a
/// change of nothing, and `true`).
pub async fn set_blocked(
    pool: &AnyPool,
    customer_id: &CustomerId,
    blocked: bool,
) -> Result<bool, sqlx::Error> {
    let status = if blocked { "BLOCKED" } else { "ACTIVE" };
    let done = sqlx::query("UPDATE customers SET status = $1 WHERE customer_id = $2")
        .bind(status)
        .bind(customer_id.as_str())
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

fn customer_of(r: &AnyRow) -> Result<Customer, sqlx::Error> {
    Ok(Customer {
        customer_id: id(r, "customer_id")?,
        name: r.try_get("name")?,
        blocked: r.try_get::<String, _>("status")? == "BLOCKED",
        credit_limit: Money::from_cents(r.try_get("credit_limit_cents")?),
    })
}

/// Adds to `script` the recording of each verdict unless one is recorded for its order
/// already; the part affects as many rows as verdicts were new. The first decision stands: a
/// redelivery (or a second instance) republishes it. No rows come back: SQLite hands each
/// returned row from its worker thread to ours on its own, and those hand-offs were half of
/// this service's context switches.
pub fn keep_verdicts(script: &mut Script, verdicts: &[(OrderId, Verdict)], now: i64) -> Part {
    script.push_rows(
        "INSERT INTO verdicts (order_id, reason, detail, credit_limit_cents, decided_at) \
         VALUES {rows} ON CONFLICT (order_id) DO NOTHING",
        verdicts,
        |(order_id, verdict)| {
            let (reason, detail, limit) = match verdict {
                Verdict::Validated { credit_limit } => {
                    (None, String::new(), Some(credit_limit.cents()))
                }
                Verdict::Rejected { reason, detail } => {
                    (Some(reason.as_str()), detail.clone(), None)
                }
            };
            [
                (*order_id).into(),
                reason.into(),
                detail.into(),
                limit.into(),
                now.into(),
            ]
        },
    )
}

/// The verdicts kept for those of `orders` that have one.
pub async fn verdicts(
    conn: &mut AnyConnection,
    orders: &[OrderId],
) -> Result<HashMap<OrderId, Verdict>, sqlx::Error> {
    let mut kept = HashMap::with_capacity(orders.len());
    let sql = "SELECT order_id, reason, detail, credit_limit_cents FROM verdicts \
               WHERE order_id IN ({keys})";
    for row in fetch_in(conn, sql, orders).await? {
        kept.insert(id(&row, "order_id")?, verdict_of(&row)?);
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
