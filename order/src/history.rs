//! An order's history, from the streams: every step of the saga and the lifecycle publishes at
//! most one event per order on `<step>.<orderId>` (the `Nats-Msg-Id` sees to that), so the
//! history is the last message of each such subject, in time order. The streams keep events
//! `streams.max_age` (7 days by default); the orders table keeps the order for good.

use async_nats::jetstream::{self, stream::DirectGetErrorKind};
use futures::future::join_all;
use oms_bus::api::ApiError;
use oms_domain::api::{HistoryEntry, OrderHistory};
use oms_domain::{Envelope, OrderId};
use oms_topology as topology;
use sqlx::AnyPool;
use tracing::warn;

use crate::store;

pub async fn history(
    pool: &AnyPool,
    js: &jetstream::Context,
    order_id: OrderId,
) -> Result<OrderHistory, ApiError> {
    let order = store::get(pool, order_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("order {order_id} does not exist")))?;
    let reads = topology::EVENT_STREAMS
        .iter()
        .flat_map(|(stream, kinds)| kinds.iter().map(move |kind| (*stream, *kind)))
        .map(|(stream, kind)| async move {
            let stream = js.get_stream_no_info(stream).await.map_err(unavailable)?;
            match stream
                .direct_get_last_for_subject(kind.subject(order_id))
                .await
            {
                Ok(message) => Ok(Some(message)),
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => Ok(None),
                Err(e) => Err(unavailable(e)),
            }
        });
    let mut history = Vec::new();
    for message in join_all(reads).await {
        let Some(message) = message? else { continue };
        match Envelope::decode(&message.payload) {
            Ok(envelope) if envelope.order_id == order_id => {
                history.push((message.time, HistoryEntry::of(&envelope)));
            }
            // Not an event our services would have acted on: not part of its history.
            _ => warn!(%order_id, subject = %message.subject, "unreadable event in a history"),
        }
    }
    // In the order the streams stored them (an event is stored after what caused it).
    history.sort_by_key(|(stored, entry)| (*stored, entry.at));
    Ok(OrderHistory {
        order_id,
        customer_id: order.customer_id,
        history: history.into_iter().map(|(_, entry)| entry).collect(),
    })
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::Unavailable(format!("cannot read the order's events: {e}"))
}
