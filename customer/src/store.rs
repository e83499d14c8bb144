//! The customer service's SQL: customers and the verdict kept per order.

use oms_shared::db::now_micros;
use oms_shared::{Money, Reason};
use sqlx::{AnyPool, Row};
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
    row.map(|r| {
        Ok(Customer {
            customer_id: r.try_get("customer_id")?,
            name: r.try_get("name")?,
            blocked: r.try_get::<String, _>("status")? == "BLOCKED",
            credit_limit: Money::from_cents(r.try_get("credit_limit_cents")?),
        })
    })
    .transpose()
}

/// Records `verdict` for the order unless one is recorded already; returns the one that stands,
/// so a redelivery (or a second instance) republishes the first decision, never a new one.
pub async fn keep_verdict(
    pool: &AnyPool,
    order_id: Uuid,
    verdict: &Verdict,
) -> Result<Verdict, sqlx::Error> {
    let (reason, detail, limit) = match verdict {
        Verdict::Validated { credit_limit } => (None, String::new(), Some(credit_limit.cents())),
        Verdict::Rejected { reason, detail } => (Some(reason.as_str()), detail.clone(), None),
    };
    sqlx::query(
        "INSERT INTO verdicts (order_id, reason, detail, credit_limit_cents, decided_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id.to_string())
    .bind(reason)
    .bind(detail)
    .bind(limit)
    .bind(now_micros())
    .execute(pool)
    .await?;
    let kept = verdict_of(pool, order_id).await?;
    Ok(kept.expect("the verdict was just inserted or already there"))
}

pub async fn verdict_of(pool: &AnyPool, order_id: Uuid) -> Result<Option<Verdict>, sqlx::Error> {
    let row =
        sqlx::query("SELECT reason, detail, credit_limit_cents FROM verdicts WHERE order_id = $1")
            .bind(order_id.to_string())
            .fetch_optional(pool)
            .await?;
    let Some(row) = row else { return Ok(None) };
    let reason: Option<String> = row.try_get("reason")?;
    Ok(Some(match reason.as_deref().and_then(Reason::parse) {
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
    }))
}
