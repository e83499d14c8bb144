//! The inventory service's SQL: products, reservations and their items.

use std::collections::{BTreeMap, HashMap};

use oms_shared::Reason;
use oms_shared::db::now_micros;
use sqlx::{AnyConnection, AnyPool, Row};
use uuid::Uuid;

use crate::decide::Status;

pub static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A reservation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub status: Status,
    pub reason: Option<Reason>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub product_id: String,
    pub name: String,
    pub available: i64,
}

pub async fn reservation(
    conn: &mut AnyConnection,
    order_id: Uuid,
) -> Result<Option<Reservation>, sqlx::Error> {
    let row = sqlx::query("SELECT status, reason, detail FROM reservations WHERE order_id = $1")
        .bind(order_id.to_string())
        .fetch_optional(conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let status: String = row.try_get("status")?;
    let reason: Option<String> = row.try_get("reason")?;
    Ok(Some(Reservation {
        status: Status::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown status {status}").into()))?,
        reason: reason.as_deref().and_then(Reason::parse),
        detail: row.try_get("detail")?,
    }))
}

/// Available stock of each of `products` that exists.
pub async fn stock<'a>(
    conn: &mut AnyConnection,
    products: impl Iterator<Item = &'a String>,
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let mut stock = HashMap::new();
    for product in products {
        let row = sqlx::query("SELECT available FROM products WHERE product_id = $1")
            .bind(product.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = row {
            stock.insert(product.clone(), row.try_get("available")?);
        }
    }
    Ok(stock)
}

/// Takes `wanted` from stock and records the reservation. Returns false (and the caller rolls
/// back) if any product no longer has enough: the guard in the UPDATE keeps stock from ever
/// going below zero, whatever runs concurrently.
pub async fn take(
    conn: &mut AnyConnection,
    order_id: Uuid,
    wanted: &BTreeMap<String, i64>,
) -> Result<bool, sqlx::Error> {
    for (product, quantity) in wanted {
        let done = sqlx::query(
            "UPDATE products SET available = available - $1 \
             WHERE product_id = $2 AND available >= $1",
        )
        .bind(*quantity)
        .bind(product.as_str())
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
    }
    insert(conn, order_id, Status::Reserved, None, "").await?;
    for (product, quantity) in wanted {
        sqlx::query(
            "INSERT INTO reservation_items (order_id, product_id, quantity) VALUES ($1, $2, $3)",
        )
        .bind(order_id.to_string())
        .bind(product.as_str())
        .bind(*quantity)
        .execute(&mut *conn)
        .await?;
    }
    Ok(true)
}

/// Gives the reserved stock of `order_id` back and marks the reservation RELEASED.
pub async fn release(conn: &mut AnyConnection, order_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE products SET available = available + (SELECT quantity FROM reservation_items \
           WHERE reservation_items.order_id = $1 \
             AND reservation_items.product_id = products.product_id) \
         WHERE product_id IN (SELECT product_id FROM reservation_items WHERE order_id = $1)",
    )
    .bind(order_id.to_string())
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE reservations SET status = $1, updated_at = $2 WHERE order_id = $3")
        .bind(Status::Released.as_str())
        .bind(now_micros())
        .bind(order_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Records a reservation without stock (REJECTED or CANCELLED), or the head of a RESERVED one.
pub async fn insert(
    conn: &mut AnyConnection,
    order_id: Uuid,
    status: Status,
    reason: Option<Reason>,
    detail: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO reservations (order_id, status, reason, detail, updated_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(order_id.to_string())
    .bind(status.as_str())
    .bind(reason.map(Reason::as_str))
    .bind(detail)
    .bind(now_micros())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn product(pool: &AnyPool, product_id: &str) -> Result<Option<Product>, sqlx::Error> {
    let row = sqlx::query("SELECT product_id, name, available FROM products WHERE product_id = $1")
        .bind(product_id)
        .fetch_optional(pool)
        .await?;
    row.map(|r| {
        Ok(Product {
            product_id: r.try_get("product_id")?,
            name: r.try_get("name")?,
            available: r.try_get("available")?,
        })
    })
    .transpose()
}
