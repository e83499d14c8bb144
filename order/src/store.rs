//! The order service's SQL: the orders projection, its history and the applied event ids.

use oms_domain::api::{ListOrders, OrderCounts, OrderLine, OrderPage, OrderStatus, OrderView};
use std::collections::{HashMap, HashSet};

use oms_domain::{EventId, Item, Money, OrderId, OrderSnapshot, PricedItem, Reason};
use oms_store::{
    MAX_ROWS, Part, Script, StatementResult, Value, execute_in, from_micros, id, to_micros,
};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::decide::{Head, Transition};

/// One schema for both backends (portable SQL).
pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Adds to `script` the recording of the batch's events as applied, except those recorded
/// before; the part affects as many rows as events were new. Only the effects of those are
/// still to be applied (in the same transaction). See [`fresh`].
///
/// It returns no rows on purpose, nor do [`create`] and [`apply`]: SQLite hands each returned
/// row from its worker thread to ours on its own, and their row per event made two thirds of
/// this service's context switches.
pub fn claim(script: &mut Script, events: &[(EventId, OrderId)], now: i64) -> Part {
    script.push_rows(
        "INSERT INTO processed_events (event_id, order_id, processed_at) VALUES {rows} \
         ON CONFLICT (event_id) DO NOTHING",
        events,
        |(event_id, order_id)| [(*event_id).into(), (*order_id).into(), now.into()],
    )
}

/// The events of `events` not applied before, from the number of rows [`claim`] added
/// (`affected`): all of them, or none (a redelivered batch). `None` when only some were new:
/// the count does not say which, so the caller takes them one at a time, where it does.
pub fn fresh(affected: u64, events: &[(EventId, OrderId)]) -> Option<HashSet<EventId>> {
    let all: HashSet<EventId> = events.iter().map(|(event_id, _)| *event_id).collect();
    match affected {
        0 => Some(HashSet::new()),
        n if n == all.len() as u64 => Some(all),
        _ => None,
    }
}

/// Adds to `script` the creation as PENDING, from the snapshot every event carries, of those
/// of `orders` (each once) that do not exist yet, with their items and the first history
/// entry; the part affects as many rows as it created orders (fewer when another instance
/// created one first: its items and history are already there and stay as they are).
pub fn create(script: &mut Script, orders: &[(OrderId, OrderSnapshot, EventId)]) -> Part {
    let pending = OrderStatus::Pending.as_str();
    let created = script.push_rows(
        "INSERT INTO orders (order_id, customer_id, total_cents, status, created_at, updated_at) \
         VALUES {rows} ON CONFLICT (order_id) DO NOTHING",
        orders,
        |(order_id, order, _)| {
            let at = to_micros(order.placed_at);
            [
                (*order_id).into(),
                (&order.customer_id).into(),
                order.total_amount.map(Money::cents).into(),
                pending.into(),
                at.into(),
                at.into(),
            ]
        },
    );
    let items: Vec<(&OrderId, usize, &Item)> = orders
        .iter()
        .flat_map(|(order_id, order, _)| {
            order
                .items
                .iter()
                .enumerate()
                .map(move |(l, i)| (order_id, l, i))
        })
        .collect();
    script.push_rows(
        "INSERT INTO order_items (order_id, line, product_id, quantity) VALUES {rows} \
         ON CONFLICT (order_id, line) DO NOTHING",
        &items,
        |(order_id, line, item)| {
            [
                (**order_id).into(),
                (*line as i64).into(),
                (&item.product_id).into(),
                i64::from(item.quantity).into(),
            ]
        },
    );
    script.push_rows(
        "INSERT INTO order_history (order_id, status, reason, event_id, at) VALUES {rows} \
         ON CONFLICT (order_id, status) DO NOTHING",
        orders,
        |(order_id, order, event_id)| {
            [
                (*order_id).into(),
                pending.into(),
                None::<&str>.into(),
                (*event_id).into(),
                to_micros(order.placed_at).into(),
            ]
        },
    );
    created
}

/// Adds to `script` the reading of the stored heads of `orders` (those that exist); read them
/// with [`read_heads`].
pub fn heads(script: &mut Script, orders: &[OrderId]) -> Part {
    script.push_in(
        "SELECT order_id, status, reason, detail, tracking_number, announced FROM orders \
         WHERE order_id IN ({keys})",
        orders,
    )
}

pub fn read_heads(
    part: &Part,
    outcomes: &[StatementResult],
) -> Result<HashMap<OrderId, Head>, sqlx::Error> {
    part.rows(outcomes)
        .map(|row| Ok((id(row, "order_id")?, head_of(row)?)))
        .collect()
}

/// Reads the stored heads of `orders` again into `heads`: after another instance wrote some
/// of them first.
pub async fn reread(
    conn: &mut AnyConnection,
    heads: &mut HashMap<OrderId, Head>,
    orders: &[OrderId],
) -> Result<(), sqlx::Error> {
    if !orders.is_empty() {
        let mut script = Script::new(conn);
        let part = self::heads(&mut script, orders);
        heads.extend(read_heads(&part, &script.run(conn).await?)?);
    }
    Ok(())
}

fn head_of(row: &AnyRow) -> Result<Head, sqlx::Error> {
    Ok(Head {
        status: status_of(row)?,
        reason: row
            .try_get::<Option<String>, _>("reason")?
            .as_deref()
            .and_then(Reason::parse),
        detail: row.try_get("detail")?,
        tracking_number: row.try_get("tracking_number")?,
        announced: row.try_get::<i64, _>("announced")? != 0,
    })
}

/// Adds to `script` the status changes, one per order, in one statement per chunk, and their
/// history. The `status = 'PENDING'` guard means a terminal order never moves: the part affects
/// as many rows as orders changed (fewer when another instance moved one first). A history
/// entry is written only for the status its order has now.
pub fn apply(script: &mut Script, changes: &[(OrderId, Transition, EventId)], now: i64) -> Part {
    let params = script.params();
    let first = script.len();
    for chunk in changes.chunks(MAX_ROWS) {
        // Parameters are numbered in the order they appear, which is also the binding order:
        // a CASE of 2n per column, the time, then the ids.
        let n = chunk.len();
        let sql = format!(
            "UPDATE orders SET status = {}, reason = {}, detail = {}, updated_at = {} \
             WHERE status = 'PENDING' AND order_id IN ({})",
            params.case("order_id", 1, n),
            params.case("order_id", 2 * n + 1, n),
            params.case("order_id", 4 * n + 1, n),
            params.list(6 * n + 1, 1),
            params.list(6 * n + 2, n),
        );

        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 7 + 1);
        for (order_id, t, _) in chunk {
            values.extend([(*order_id).into(), t.status.as_str().into()]);
        }
        for (order_id, t, _) in chunk {
            values.extend([(*order_id).into(), t.reason.map(Reason::as_str).into()]);
        }
        for (order_id, t, _) in chunk {
            values.extend([(*order_id).into(), t.detail.as_deref().into()]);
        }
        values.push(now.into());
        values.extend(chunk.iter().map(|(order_id, _, _)| Value::from(*order_id)));
        script.push(sql, values);
    }
    let changed = script.since(first);

    // A WHERE, not JOIN … ON: SQLite would read the ON of a join as the upsert's.
    script.push_rows(
        "INSERT INTO order_history (order_id, status, reason, event_id, at) \
         SELECT o.order_id, o.status, o.reason, v.column3, o.updated_at \
         FROM (VALUES {rows}) AS v, orders o \
         WHERE o.order_id = v.column1 AND o.status = v.column2 \
         ON CONFLICT (order_id, status) DO NOTHING",
        changes,
        |(order_id, t, event_id)| {
            [
                (*order_id).into(),
                t.status.as_str().into(),
                (*event_id).into(),
            ]
        },
    );
    changed
}

/// Adds to `script` the prices of confirmed orders: the total charged, and each line's price
/// as inventory reserved it (lines in the order's order, so a line's index is its number).
/// Writing the same prices again changes nothing.
pub fn price(script: &mut Script, prices: &[(OrderId, Money, Vec<PricedItem>)]) {
    script.push_rows(
        "UPDATE orders SET priced_cents = v.column2 FROM (VALUES {rows}) AS v \
         WHERE orders.order_id = v.column1",
        prices,
        |(order_id, total, _)| [(*order_id).into(), total.cents().into()],
    );
    let lines: Vec<(&OrderId, usize, &PricedItem)> = prices
        .iter()
        .flat_map(|(order_id, _, items)| {
            items.iter().enumerate().map(move |(l, i)| (order_id, l, i))
        })
        .collect();
    script.push_rows(
        "INSERT INTO order_items (order_id, line, product_id, quantity, unit_cents, line_cents) \
         VALUES {rows} ON CONFLICT (order_id, line) DO UPDATE \
         SET unit_cents = excluded.unit_cents, line_cents = excluded.line_cents",
        &lines,
        |(order_id, line, item)| {
            [
                (**order_id).into(),
                (*line as i64).into(),
                (&item.product_id).into(),
                i64::from(item.quantity).into(),
                item.unit_price.cents().into(),
                item.line_total.cents().into(),
            ]
        },
    );
}

/// Adds to `script` one move of the lifecycle: the order goes from `from` to the transition's
/// status (keeping `tracking_number` if given), its event not yet announced, with the history
/// entry. The part affects 1 row, or 0 if the order was not in `from` any more (another writer
/// got there first): the caller then rolls back and decides again.
pub fn change(
    script: &mut Script,
    order_id: OrderId,
    from: OrderStatus,
    t: &Transition,
    tracking_number: Option<&str>,
    event_id: EventId,
    now: i64,
) -> Part {
    let p = script.params();
    let first = script.len();
    script.push(
        format!(
            "UPDATE orders SET status = {}, reason = COALESCE({}, reason), \
             detail = COALESCE({}, detail), tracking_number = COALESCE({}, tracking_number), \
             updated_at = {}, announced = 0 WHERE order_id = {} AND status = {}",
            p.list(1, 1),
            p.list(2, 1),
            p.list(3, 1),
            p.list(4, 1),
            p.list(5, 1),
            p.list(6, 1),
            p.list(7, 1),
        ),
        vec![
            t.status.as_str().into(),
            t.reason.map(Reason::as_str).into(),
            t.detail.as_deref().into(),
            tracking_number.into(),
            now.into(),
            order_id.into(),
            from.as_str().into(),
        ],
    );
    let moved = script.since(first);
    script.push(
        format!(
            "INSERT INTO order_history (order_id, status, reason, event_id, at) \
             VALUES ({}) ON CONFLICT (order_id, status) DO NOTHING",
            p.list(1, 5)
        ),
        vec![
            order_id.into(),
            t.status.as_str().into(),
            t.reason.map(Reason::as_str).into(),
            event_id.into(),
            now.into(),
        ],
    );
    moved
}

/// PENDING orders placed before `cutoff` (µs), oldest first, at most `limit`: the index on
/// (status, created_at) reads only these. With the snapshot their rejection carries.
pub async fn overdue(
    conn: &mut AnyConnection,
    cutoff: i64,
    limit: i64,
) -> Result<Vec<(OrderId, OrderSnapshot)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT order_id, customer_id, total_cents, created_at FROM orders \
         WHERE status = 'PENDING' AND created_at < $1 ORDER BY created_at LIMIT $2",
    )
    .bind(cutoff)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    snapshots(conn, &rows).await
}

/// Orders rejected `TIMED_OUT` whose rejection is not yet on the stream (a crash came between
/// the commit and the publish).
pub async fn unannounced_timeouts(
    conn: &mut AnyConnection,
) -> Result<Vec<(OrderId, OrderSnapshot)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT order_id, customer_id, total_cents, created_at FROM orders \
         WHERE status = 'REJECTED' AND reason = $1 AND announced = 0",
    )
    .bind(Reason::TimedOut.as_str())
    .fetch_all(&mut *conn)
    .await?;
    snapshots(conn, &rows).await
}

/// The orders of `rows` as they were placed, with their items.
async fn snapshots(
    conn: &mut AnyConnection,
    rows: &[AnyRow],
) -> Result<Vec<(OrderId, OrderSnapshot)>, sqlx::Error> {
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r.try_get::<String, _>("order_id"))
        .collect::<Result<_, _>>()?;
    let mut items: HashMap<String, Vec<Item>> = HashMap::new();
    let sql = "SELECT order_id, product_id, quantity FROM order_items \
               WHERE order_id IN ({keys}) ORDER BY order_id, line";
    for row in oms_store::fetch_in(conn, sql, &ids).await? {
        items
            .entry(row.try_get("order_id")?)
            .or_default()
            .push(Item {
                product_id: id(&row, "product_id")?,
                quantity: u32::try_from(row.try_get::<i64, _>("quantity")?).unwrap_or(u32::MAX),
            });
    }
    rows.iter()
        .map(|r| {
            let order_id: String = r.try_get("order_id")?;
            let snapshot = OrderSnapshot {
                customer_id: id(r, "customer_id")?,
                items: items.remove(&order_id).unwrap_or_default(),
                total_amount: r
                    .try_get::<Option<i64>, _>("total_cents")?
                    .map(Money::from_cents),
                placed_at: from_micros(r.try_get("created_at")?),
            };
            Ok((id(r, "order_id")?, snapshot))
        })
        .collect()
}

/// How many orders have each status, and when the oldest PENDING one was placed (µs). Both
/// read only the index on (status, created_at).
pub async fn census(pool: &AnyPool) -> Result<(Vec<(String, i64)>, Option<i64>), sqlx::Error> {
    let counts = sqlx::query("SELECT status, COUNT(*) AS n FROM orders GROUP BY status")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let oldest = sqlx::query(
        "SELECT created_at FROM orders WHERE status = 'PENDING' ORDER BY created_at LIMIT 1",
    )
    .fetch_optional(pool)
    .await?
    .map(|r| r.try_get("created_at"))
    .transpose()?;
    Ok((counts, oldest))
}

/// Marks the final status of `orders` as published.
pub async fn mark_announced(pool: &AnyPool, orders: &[OrderId]) -> Result<(), sqlx::Error> {
    if orders.is_empty() {
        return Ok(());
    }
    let mut conn = pool.acquire().await?;
    let sql = "UPDATE orders SET announced = 1 WHERE order_id IN ({keys})";
    execute_in(&mut conn, sql, orders).await?;
    Ok(())
}

fn status_of(row: &AnyRow) -> Result<OrderStatus, sqlx::Error> {
    let status: String = row.try_get("status")?;
    OrderStatus::parse(&status)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown status {status}").into()))
}

async fn items(pool: &AnyPool, order_id: &str) -> Result<Vec<OrderLine>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT product_id, quantity, unit_cents, line_cents FROM order_items \
         WHERE order_id = $1 ORDER BY line",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await?;
    let money = |r: &AnyRow, column| {
        let cents: Option<i64> = r.try_get(column)?;
        Ok::<_, sqlx::Error>(cents.map(Money::from_cents))
    };
    rows.iter()
        .map(|r| {
            Ok(OrderLine {
                product_id: id(r, "product_id")?,
                quantity: u32::try_from(r.try_get::<i64, _>("quantity")?).unwrap_or(u32::MAX),
                unit_price: money(r, "unit_cents")?,
                line_total: money(r, "line_cents")?,
            })
        })
        .collect()
}

/// The priced total once there is one, else the client's amount if it gave one.
fn total(row: &AnyRow) -> Result<Option<Money>, sqlx::Error> {
    let priced: Option<i64> = row.try_get("priced_cents")?;
    let said: Option<i64> = row.try_get("total_cents")?;
    Ok(priced.or(said).map(Money::from_cents))
}

async fn view(pool: &AnyPool, row: &AnyRow) -> Result<OrderView, sqlx::Error> {
    let order_id: String = row.try_get("order_id")?;
    Ok(OrderView {
        order_id: id(row, "order_id")?,
        customer_id: id(row, "customer_id")?,
        items: items(pool, &order_id).await?,
        total_amount: total(row)?,
        status: status_of(row)?,
        reason: row
            .try_get::<Option<String>, _>("reason")?
            .as_deref()
            .and_then(Reason::parse),
        tracking_number: row.try_get("tracking_number")?,
        created_at: from_micros(row.try_get("created_at")?),
        updated_at: from_micros(row.try_get("updated_at")?),
    })
}

pub async fn get(pool: &AnyPool, order_id: OrderId) -> Result<Option<OrderView>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT order_id, customer_id, total_cents, priced_cents, status, reason, \
                tracking_number, created_at, updated_at \
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
        "SELECT order_id, customer_id, total_cents, priced_cents, status, reason, \
                tracking_number, created_at, updated_at \
         FROM orders \
         WHERE (CAST($1 AS TEXT) IS NULL OR customer_id = $1) \
           AND (CAST($2 AS TEXT) IS NULL OR status = $2) \
           AND (CAST($3 AS BIGINT) IS NULL OR created_at < $3 \
                OR (created_at = $3 AND order_id < $4)) \
         ORDER BY created_at DESC, order_id DESC \
         LIMIT $5",
    )
    .bind(q.customer_id.as_ref().map(|c| c.as_str()))
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

/// How many orders are in each status (`GROUP BY` over the index on status).
pub async fn counts(pool: &AnyPool) -> Result<OrderCounts, sqlx::Error> {
    let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM orders GROUP BY status")
        .fetch_all(pool)
        .await?;
    let found = rows
        .iter()
        .map(|row| {
            let n: i64 = row.try_get("n")?;
            Ok((status_of(row)?, u64::try_from(n).unwrap_or(0)))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(OrderCounts::of(found))
}

fn parse_cursor(cursor: &str) -> Option<(i64, String)> {
    let (at, id) = cursor.split_once('_')?;
    Some((at.parse().ok()?, id.parse::<OrderId>().ok()?.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_count_tells_all_new_from_none_and_not_some() {
        let [a, b] = [(); 2].map(|_| EventId::new());
        let o = OrderId::new();
        let events = [(a, o), (b, o), (a, o)];
        assert_eq!(fresh(2, &events), Some(HashSet::from([a, b])), "both new");
        assert_eq!(fresh(0, &events), Some(HashSet::new()), "both seen before");
        assert_eq!(fresh(1, &events), None, "one of two: which is unknown");
        assert_eq!(
            fresh(1, &events[..1]),
            Some(HashSet::from([a])),
            "alone it is known"
        );
    }
}
