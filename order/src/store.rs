//! The order service's SQL: the orders projection, its history and the applied event ids.

use oms_shared::api::{ListOrders, OrderPage, OrderStatus, OrderView};
use oms_shared::db::{from_micros, now_micros, to_micros};
use oms_shared::{Item, Money, OrderSnapshot, Reason};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use uuid::Uuid;

use crate::decide::Transition;

pub static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// What the handler needs to know of a stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: OrderStatus,
    pub reason: Option<Reason>,
    pub detail: Option<String>,
    pub announced: bool,
}

/// True if the event was applied before (its effect is already in the store).
pub async fn seen(conn: &mut AnyConnection, event_id: Uuid) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("SELECT 1 FROM processed_events WHERE event_id = $1")
            .bind(event_id.to_string())
            .fetch_optional(conn)
            .await?
            .is_some(),
    )
}

pub async fn mark_seen(
    conn: &mut AnyConnection,
    event_id: Uuid,
    order_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO processed_events (event_id, order_id, processed_at) VALUES ($1, $2, $3)",
    )
    .bind(event_id.to_string())
    .bind(order_id.to_string())
    .bind(now_micros())
    .execute(conn)
    .await?;
    Ok(())
}

/// Creates the order as PENDING from the snapshot every event carries, unless it exists.
pub async fn ensure_order(
    conn: &mut AnyConnection,
    order_id: Uuid,
    order: &OrderSnapshot,
    event_id: Uuid,
) -> Result<(), sqlx::Error> {
    let created = to_micros(order.placed_at);
    let inserted = sqlx::query(
        "INSERT INTO orders (order_id, customer_id, total_cents, status, created_at, updated_at) \
         VALUES ($1, $2, $3, 'PENDING', $4, $4) ON CONFLICT (order_id) DO NOTHING",
    )
    .bind(order_id.to_string())
    .bind(order.customer_id.as_str())
    .bind(order.total_amount.cents())
    .bind(created)
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(());
    }
    for (line, item) in order.items.iter().enumerate() {
        sqlx::query(
            "INSERT INTO order_items (order_id, line, product_id, quantity) VALUES ($1, $2, $3, $4)",
        )
        .bind(order_id.to_string())
        .bind(line as i64)
        .bind(item.product_id.as_str())
        .bind(i64::from(item.quantity))
        .execute(&mut *conn)
        .await?;
    }
    history(
        conn,
        order_id,
        OrderStatus::Pending,
        None,
        event_id,
        created,
    )
    .await
}

pub async fn head(conn: &mut AnyConnection, order_id: Uuid) -> Result<Head, sqlx::Error> {
    let row =
        sqlx::query("SELECT status, reason, detail, announced FROM orders WHERE order_id = $1")
            .bind(order_id.to_string())
            .fetch_one(conn)
            .await?;
    Ok(Head {
        status: status_of(&row)?,
        reason: row
            .try_get::<Option<String>, _>("reason")?
            .as_deref()
            .and_then(Reason::parse),
        detail: row.try_get("detail")?,
        announced: row.try_get::<i64, _>("announced")? != 0,
    })
}

/// Applies a status change; the `status = 'PENDING'` guard means a terminal order never moves.
pub async fn apply(
    conn: &mut AnyConnection,
    order_id: Uuid,
    t: &Transition,
    event_id: Uuid,
) -> Result<(), sqlx::Error> {
    let now = now_micros();
    let changed = sqlx::query(
        "UPDATE orders SET status = $1, reason = $2, detail = $3, updated_at = $4 \
         WHERE order_id = $5 AND status = 'PENDING'",
    )
    .bind(t.status.as_str())
    .bind(t.reason.map(Reason::as_str))
    .bind(t.detail.as_deref())
    .bind(now)
    .bind(order_id.to_string())
    .execute(&mut *conn)
    .await?;
    if changed.rows_affected() == 1 {
        history(conn, order_id, t.status, t.reason, event_id, now).await?;
    }
    Ok(())
}

async fn history(
    conn: &mut AnyConnection,
    order_id: Uuid,
    status: OrderStatus,
    reason: Option<Reason>,
    event_id: Uuid,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO order_history (order_id, status, reason, event_id, at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (order_id, status) DO NOTHING",
    )
    .bind(order_id.to_string())
    .bind(status.as_str())
    .bind(reason.map(Reason::as_str))
    .bind(event_id.to_string())
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mark_announced(pool: &AnyPool, order_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE orders SET announced = 1 WHERE order_id = $1")
        .bind(order_id.to_string())
        .execute(pool)
        .await?;
    Ok(())
}

fn status_of(row: &AnyRow) -> Result<OrderStatus, sqlx::Error> {
    let status: String = row.try_get("status")?;
    OrderStatus::parse(&status)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown status {status}").into()))
}

async fn items(pool: &AnyPool, order_id: &str) -> Result<Vec<Item>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT product_id, quantity FROM order_items WHERE order_id = $1 ORDER BY line",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Item {
                product_id: r.try_get("product_id")?,
                quantity: u32::try_from(r.try_get::<i64, _>("quantity")?).unwrap_or(u32::MAX),
            })
        })
        .collect()
}

async fn view(pool: &AnyPool, row: &AnyRow) -> Result<OrderView, sqlx::Error> {
    let order_id: String = row.try_get("order_id")?;
    Ok(OrderView {
        order_id: order_id
            .parse()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        customer_id: row.try_get("customer_id")?,
        items: items(pool, &order_id).await?,
        total_amount: Money::from_cents(row.try_get("total_cents")?),
        status: status_of(row)?,
        reason: row
            .try_get::<Option<String>, _>("reason")?
            .as_deref()
            .and_then(Reason::parse),
        created_at: from_micros(row.try_get("created_at")?),
        updated_at: from_micros(row.try_get("updated_at")?),
    })
}

pub async fn get(pool: &AnyPool, order_id: Uuid) -> Result<Option<OrderView>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT order_id, customer_id, total_cents, status, reason, created_at, updated_at \
         FROM orders WHERE order_id = $1",
    )
    .bind(order_id.to_string())
    .fetch_optional(pool)
    .await?;
    match row {
        Some(row) => Ok(Some(view(pool, &row).await?)),
        None => Ok(None),
    }
}

/// A page of orders, newest first, after the cursor `<createdAt>_<orderId>` if given.
pub async fn list(pool: &AnyPool, q: &ListOrders) -> Result<OrderPage, sqlx::Error> {
    let limit = q.limit.clamp(1, 500);
    let cursor = q.after.as_deref().and_then(parse_cursor);
    let rows = sqlx::query(
        "SELECT order_id, customer_id, total_cents, status, reason, created_at, updated_at \
         FROM orders \
         WHERE (CAST($1 AS TEXT) IS NULL OR customer_id = $1) \
           AND (CAST($2 AS TEXT) IS NULL OR status = $2) \
           AND (CAST($3 AS BIGINT) IS NULL OR created_at < $3 \
                OR (created_at = $3 AND order_id < $4)) \
         ORDER BY created_at DESC, order_id DESC \
         LIMIT $5",
    )
    .bind(q.customer_id.as_deref())
    .bind(q.status.map(OrderStatus::as_str))
    .bind(cursor.as_ref().map(|c| c.0))
    .bind(cursor.as_ref().map(|c| c.1.clone()).unwrap_or_default())
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let more = rows.len() > limit as usize;
    let mut orders = Vec::with_capacity(rows.len().min(limit as usize));
    for row in rows.iter().take(limit as usize) {
        orders.push(view(pool, row).await?);
    }
    let next = if more {
        orders
            .last()
            .map(|o| format!("{}_{}", to_micros(o.created_at), o.order_id))
    } else {
        None
    };
    Ok(OrderPage { orders, next })
}

fn parse_cursor(cursor: &str) -> Option<(i64, String)> {
    let (at, id) = cursor.split_once('_')?;
    Some((at.parse().ok()?, id.parse::<Uuid>().ok()?.to_string()))
}
