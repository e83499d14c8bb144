//! The inventory service's SQL: products, reservations and their items.

use std::collections::{BTreeMap, HashMap};

use oms_shared::Reason;
use oms_shared::db::{MAX_ROWS, Params, fetch_in, now_micros, uuid};
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Row};
use uuid::Uuid;

use crate::decide::{Held, Status};

pub static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
pub static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub product_id: String,
    pub name: String,
    pub available: i64,
}

/// The stored reservations among `orders`, with what each holds.
pub async fn reservations(
    conn: &mut AnyConnection,
    orders: &[Uuid],
) -> Result<HashMap<Uuid, Held>, sqlx::Error> {
    let mut held = HashMap::with_capacity(orders.len());
    let sql =
        "SELECT order_id, status, reason, detail FROM reservations WHERE order_id IN ({keys})";
    for row in fetch_in(conn, sql, orders).await? {
        let status: String = row.try_get("status")?;
        let status = Status::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown status {status}").into()))?;
        let reason: Option<String> = row.try_get("reason")?;
        let detail: String = row.try_get("detail")?;
        held.insert(
            uuid(&row, "order_id")?,
            Held {
                status,
                reason: reason
                    .as_deref()
                    .and_then(Reason::parse)
                    .map(|r| (r, detail)),
                items: BTreeMap::new(),
            },
        );
    }
    let sql = "SELECT order_id, product_id, quantity FROM reservation_items \
               WHERE order_id IN ({keys})";
    for row in fetch_in(conn, sql, orders).await? {
        if let Some(h) = held.get_mut(&uuid(&row, "order_id")?) {
            h.items
                .insert(row.try_get("product_id")?, row.try_get("quantity")?);
        }
    }
    Ok(held)
}

/// Available stock of each of `products` that exists.
pub async fn stock(
    conn: &mut AnyConnection,
    products: &[&str],
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let mut stock = HashMap::with_capacity(products.len());
    let sql = "SELECT product_id, available FROM products WHERE product_id IN ({keys})";
    for row in fetch_in(conn, sql, products).await? {
        stock.insert(row.try_get("product_id")?, row.try_get("available")?);
    }
    Ok(stock)
}

/// Applies the net change of each product's stock. Returns false (and the caller rolls back)
/// if a product would go below zero: the guard keeps stock from ever going negative, whatever
/// runs concurrently.
pub async fn adjust(
    conn: &mut AnyConnection,
    delta: &BTreeMap<String, i64>,
) -> Result<bool, sqlx::Error> {
    for (product, change) in delta {
        let done = sqlx::query(
            "UPDATE products SET available = available + $1 \
             WHERE product_id = $2 AND available + $1 >= 0",
        )
        .bind(*change)
        .bind(product.as_str())
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Records new reservations (RESERVED with their items, REJECTED, CANCELLED).
pub async fn insert(conn: &mut AnyConnection, new: &[(Uuid, Held)]) -> Result<(), sqlx::Error> {
    let now = now_micros();
    for chunk in new.chunks(MAX_ROWS) {
        let sql = format!(
            "INSERT INTO reservations (order_id, status, reason, detail, updated_at) VALUES {}",
            Params::of(conn).tuples(chunk.len(), 5)
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (order_id, held) in chunk {
            let (reason, detail) = match &held.reason {
                Some((reason, detail)) => (Some(reason.as_str()), detail.as_str()),
                None => (None, ""),
            };
            query = query
                .bind(order_id.to_string())
                .bind(held.status.as_str())
                .bind(reason)
                .bind(detail)
                .bind(now);
        }
        query.execute(&mut *conn).await?;
        let items: Vec<(&Uuid, &String, i64)> = chunk
            .iter()
            .flat_map(|(order_id, held)| held.items.iter().map(move |(p, q)| (order_id, p, *q)))
            .collect();
        for items in items.chunks(MAX_ROWS) {
            let sql = format!(
                "INSERT INTO reservation_items (order_id, product_id, quantity) VALUES {}",
                Params::of(conn).tuples(items.len(), 3)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (order_id, product, quantity) in items {
                query = query
                    .bind(order_id.to_string())
                    .bind(product.as_str())
                    .bind(*quantity);
            }
            query.execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// Marks reservations RELEASED (their stock went back through [`adjust`]).
pub async fn mark_released(conn: &mut AnyConnection, orders: &[Uuid]) -> Result<(), sqlx::Error> {
    let now = now_micros();
    for chunk in orders.chunks(MAX_ROWS) {
        let params = Params::of(conn);
        let sql = format!(
            "UPDATE reservations SET status = '{}', updated_at = {} WHERE order_id IN ({})",
            Status::Released.as_str(),
            params.list(1, 1),
            params.list(2, chunk.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(now);
        for order_id in chunk {
            query = query.bind(order_id.to_string());
        }
        query.execute(&mut *conn).await?;
    }
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
