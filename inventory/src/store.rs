//! The inventory service's SQL: products, reservations and their items.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

use oms_domain::api::{NewProduct, Restock, SetPrice};
use oms_domain::{Money, OrderId, ProductId, Reason};
use oms_store::{MAX_ROWS, Part, Script, StatementResult, Value, Writer, id};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::decide::{Held, Shelf, Status, Stock, Taken};

/// One schema for both backends (portable SQL).
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub product_id: ProductId,
    pub name: String,
    pub price: Money,
    pub available: i64,
}

/// Adds to `script` the reading of the stored reservations among `orders`, with what each
/// holds and the available stock of what it holds (one statement: on PostgreSQL every
/// statement is a round trip); read them with [`read_reservations`].
pub fn reservations(script: &mut Script, orders: &[OrderId]) -> Part {
    script.push_in(
        "SELECT r.order_id, r.status, r.reason, r.detail, i.product_id, i.quantity, i.unit_cents, \
                p.available, p.price_cents \
         FROM reservations r \
         LEFT JOIN reservation_items i ON i.order_id = r.order_id \
         LEFT JOIN products p ON p.product_id = i.product_id \
         WHERE r.order_id IN ({keys})",
        orders,
    )
}

/// The reservations found, and the stock of the products they hold.
pub fn read_reservations(
    part: &Part,
    outcomes: &[StatementResult],
) -> Result<(HashMap<OrderId, Held>, Stock), sqlx::Error> {
    let (mut held, mut stock) = (HashMap::new(), Stock::new());
    for row in part.rows(outcomes) {
        let reservation = match held.entry(id(row, "order_id")?) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(held_of(row)?),
        };
        // A reservation without items (rejected, say) comes as one row of NULLs.
        let Some(product_id) = row
            .try_get::<Option<String>, _>("product_id")?
            .map(ProductId::from)
        else {
            continue;
        };
        let shelf = shelf_of(row)?;
        if let Some(shelf) = shelf {
            stock.insert(product_id.clone(), shelf);
        }
        let unit_price = match row.try_get::<Option<i64>, _>("unit_cents")? {
            Some(cents) => Money::from_cents(cents),
            // Reserved before reservations kept their prices.
            None => shelf.map_or(Money::ZERO, |s| s.price),
        };
        let taken = Taken {
            quantity: row.try_get("quantity")?,
            unit_price,
        };
        reservation.items.insert(product_id, taken);
    }
    Ok((held, stock))
}

/// A product's stock and price, if the row has them.
fn shelf_of(row: &AnyRow) -> Result<Option<Shelf>, sqlx::Error> {
    let available: Option<i64> = row.try_get("available")?;
    let price: Option<i64> = row.try_get("price_cents")?;
    Ok(available.zip(price).map(|(available, price)| Shelf {
        available,
        price: Money::from_cents(price),
    }))
}

/// A reservation's own columns; its items are added row by row.
fn held_of(row: &AnyRow) -> Result<Held, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let status = Status::parse(&status)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown status {status}").into()))?;
    let reason: Option<String> = row.try_get("reason")?;
    let detail: String = row.try_get("detail")?;
    Ok(Held {
        status,
        reason: reason
            .as_deref()
            .and_then(Reason::parse)
            .map(|r| (r, detail)),
        items: BTreeMap::new(),
    })
}

/// Adds to `script` the reading of the available stock of each of `products` that exists;
/// read it with [`read_stock`].
pub fn stock(script: &mut Script, products: &[&ProductId]) -> Part {
    script.push_in(
        "SELECT product_id, available, price_cents FROM products WHERE product_id IN ({keys})",
        products,
    )
}

pub fn read_stock(part: &Part, outcomes: &[StatementResult]) -> Result<Stock, sqlx::Error> {
    let mut stock = Stock::new();
    for row in part.rows(outcomes) {
        if let Some(shelf) = shelf_of(row)? {
            stock.insert(id(row, "product_id")?, shelf);
        }
    }
    Ok(stock)
}

/// Adds to `script` the net change of each product's stock, one statement per chunk; the
/// change went through only if the part affected `delta.len()` rows, else the caller rolls
/// back. The guard keeps stock from ever going negative, whatever runs concurrently.
pub fn adjust(script: &mut Script, delta: &BTreeMap<ProductId, i64>) -> Part {
    let params = script.params();
    let first = script.len();
    let delta: Vec<(&ProductId, &i64)> = delta.iter().collect();
    for chunk in delta.chunks(MAX_ROWS) {
        // Parameters are numbered in the order they appear, which is also the binding order:
        // the CASE of the set, the same of the guard, then the ids.
        let n = chunk.len();
        let change = |first| params.case("product_id", first, n);
        let sql = format!(
            "UPDATE products SET available = available + {} \
             WHERE available + {} >= 0 AND product_id IN ({})",
            change(1),
            change(2 * n + 1),
            params.list(4 * n + 1, n)
        );
        let pairs = chunk
            .iter()
            .flat_map(|(product, change)| [(*product).into(), (**change).into()]);
        let values: Vec<Value> = pairs
            .clone()
            .chain(pairs)
            .chain(chunk.iter().map(|(product, _)| (*product).into()))
            .collect();
        script.push(sql, values);
    }
    script.since(first)
}

/// Adds to `script` the recording of new reservations (RESERVED with their items, REJECTED,
/// CANCELLED).
pub fn insert(script: &mut Script, new: &[(OrderId, Held)], now: i64) {
    script.push_rows(
        "INSERT INTO reservations (order_id, status, reason, detail, updated_at) VALUES {rows}",
        new,
        |(order_id, held)| {
            let (reason, detail) = match &held.reason {
                Some((reason, detail)) => (Some(reason.as_str()), detail.as_str()),
                None => (None, ""),
            };
            [
                (*order_id).into(),
                held.status.as_str().into(),
                reason.into(),
                detail.into(),
                now.into(),
            ]
        },
    );
    let items: Vec<(&OrderId, &ProductId, &Taken)> = new
        .iter()
        .flat_map(|(order_id, held)| held.items.iter().map(move |(p, t)| (order_id, p, t)))
        .collect();
    script.push_rows(
        "INSERT INTO reservation_items (order_id, product_id, quantity, unit_cents) VALUES {rows}",
        &items,
        |(order_id, product, taken)| {
            [
                (**order_id).into(),
                (*product).into(),
                taken.quantity.into(),
                taken.unit_price.cents().into(),
            ]
        },
    );
}

/// Adds to `script` the marking of reservations RELEASED (their stock went back through
/// [`adjust`]).
pub fn mark_released(script: &mut Script, orders: &[OrderId], now: i64) {
    let params = script.params();
    for chunk in orders.chunks(MAX_ROWS) {
        let sql = format!(
            "UPDATE reservations SET status = '{}', updated_at = {} WHERE order_id IN ({})",
            Status::Released.as_str(),
            params.list(1, 1),
            params.list(2, chunk.len())
        );
        let values = std::iter::once(now.into())
            .chain(chunk.iter().map(|order_id| Value::from(*order_id)))
            .collect();
        script.push(sql, values);
    }
}

/// Creates a product; `false` if the id exists already (nothing changes).
pub async fn create(pool: &AnyPool, new: &NewProduct) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO products (product_id, name, price_cents, available) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (product_id) DO NOTHING",
    )
    .bind(new.product_id.as_str())
    .bind(new.name.as_str())
    .bind(new.price.cents())
    .bind(new.available)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets a product's price; `false` if there is no such product. Reservations keep the prices
/// they were made at.
pub async fn set_price(pool: &AnyPool, set: &SetPrice) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE products SET price_cents = $1 WHERE product_id = $2")
        .bind(set.price.cents())
        .bind(set.product_id.as_str())
        .execute(pool)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// What a restock did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restocked {
    Added,
    /// The key was used before, for this very delivery: nothing added again.
    Repeated,
    /// The key was used before for another delivery.
    KeyReused,
    UnknownProduct,
}

/// Adds stock, in one transaction with the key's record when there is a key.
pub async fn restock(writer: &Writer, restock: &Restock) -> Result<Restocked, sqlx::Error> {
    let mut tx = writer.begin().await?;
    if let Some(key) = &restock.key {
        let kept = sqlx::query("SELECT product_id, quantity FROM restocks WHERE restock_key = $1")
            .bind(key.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = kept {
            let same = row.try_get::<String, _>("product_id")? == restock.product_id.as_str()
                && row.try_get::<i64, _>("quantity")? == restock.add;
            return Ok(if same {
                Restocked::Repeated
            } else {
                Restocked::KeyReused
            });
        }
    }
    let added = sqlx::query("UPDATE products SET available = available + $1 WHERE product_id = $2")
        .bind(restock.add)
        .bind(restock.product_id.as_str())
        .execute(&mut *tx)
        .await?;
    if added.rows_affected() != 1 {
        return Ok(Restocked::UnknownProduct);
    }
    if let Some(key) = &restock.key {
        sqlx::query(
            "INSERT INTO restocks (restock_key, product_id, quantity, added_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(key.as_str())
        .bind(restock.product_id.as_str())
        .bind(restock.add)
        .bind(oms_store::now_micros())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Restocked::Added)
}

pub async fn product(
    pool: &AnyPool,
    product_id: &ProductId,
) -> Result<Option<Product>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT product_id, name, price_cents, available FROM products WHERE product_id = $1",
    )
    .bind(product_id.as_str())
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(Product {
            product_id: id(&r, "product_id")?,
            name: r.try_get("name")?,
            price: Money::from_cents(r.try_get("price_cents")?),
            available: r.try_get("available")?,
        })
    })
    .transpose()
}
