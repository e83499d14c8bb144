//! The lifecycle after the saga: cancel, ship and deliver (requests people made through the
//! edge).
//!
//! takes `orders.cancel`, `orders.ship` and `orders.deliver` → loads the heads of their orders
//! → decides (pure: [`decide::lifecycle`], forward along the graph only) → moves each order with
//! a guarded update and its history entry in one transaction → publishes `orders.cancelled`,
//! `orders.shipped` or `orders.delivered` → ack. A request the graph does not allow changes
//! nothing.

use std::collections::HashMap;

use oms_bus::{HandleError, Incoming, Input, Step};
use oms_domain::{Event, EventKind, OrderId};
use oms_store::{self as db, Script};

use crate::decide::{self, Command, Head};
use crate::store;

impl Input for Command {
    const KINDS: &'static [EventKind] = &[
        EventKind::OrderCancelRequested,
        EventKind::OrderShipRequested,
        EventKind::OrderDeliverRequested,
    ];

    fn take(event: Event) -> Option<Self> {
        match event {
            Event::OrderCancelRequested(c) => Some(Command::Cancel(c.reason)),
            Event::OrderShipRequested(s) => Some(Command::Ship(s.tracking_number)),
            Event::OrderDeliverRequested(_) => Some(Command::Deliver),
            _ => None,
        }
    }
}

pub struct Lifecycle {
    /// The same writer as the saga's step: the two take turns.
    pub writer: db::Writer,
}

/// What a batch does: per command its step, and the heads afterwards.
pub struct Plan {
    steps: Vec<decide::Step>,
    heads: HashMap<OrderId, Head>,
}

impl Step for Lifecycle {
    type Input = Command;
    type Work = db::Turn;
    type Found = HashMap<OrderId, Head>;
    type Plan = Plan;

    async fn load(
        &self,
        batch: &[Incoming<Command>],
    ) -> Result<(Self::Work, Self::Found), HandleError> {
        let mut orders: Vec<OrderId> = batch.iter().map(|c| c.order_id).collect();
        orders.sort_unstable();
        orders.dedup();
        let mut tx = self.writer.begin().await?;
        let mut script = Script::new(&tx);
        let stored = store::heads(&mut script, &orders);
        let found = script.run(&mut tx).await?;
        Ok((tx, store::read_heads(&stored, &found)?))
    }

    /// In stream order, each command seeing what the ones before it did.
    fn decide(batch: &[Incoming<Command>], mut heads: Self::Found) -> Plan {
        let steps = batch
            .iter()
            .map(|incoming| {
                let step = decide::lifecycle(heads.get(&incoming.order_id), &incoming.event);
                if let (decide::Step::Move { to: t, .. }, Some(head)) =
                    (&step, heads.get_mut(&incoming.order_id))
                {
                    head.status = t.status;
                    head.reason = t.reason.or(head.reason);
                    head.detail = t.detail.clone().or(head.detail.take());
                    if let Command::Ship(tracking) = &incoming.event {
                        head.tracking_number = Some(tracking.clone());
                    }
                    head.announced = false;
                }
                step
            })
            .collect();
        Plan { steps, heads }
    }

    async fn persist(
        &self,
        mut tx: db::Turn,
        batch: &[Incoming<Command>],
        plan: Plan,
    ) -> Result<Vec<Option<Event>>, HandleError> {
        if plan.steps.contains(&decide::Step::Later) {
            // Taken apart by the pipeline, so that only these wait.
            return Err(HandleError::transient(anyhow::anyhow!(
                "an order is not projected yet, or its status not yet announced"
            )));
        }
        let now = db::now_micros();
        let mut script = Script::new(&tx);
        let mut moves = Vec::new();
        for (incoming, step) in batch.iter().zip(&plan.steps) {
            if let decide::Step::Move { from, to } = step {
                let tracking = match &incoming.event {
                    Command::Ship(tracking) => Some(tracking.as_str()),
                    _ => None,
                };
                moves.push(store::change(
                    &mut script,
                    incoming.order_id,
                    *from,
                    to,
                    tracking,
                    incoming.event_id,
                    now,
                ));
            }
        }
        let written = script.run(&mut tx).await?;
        if moves.iter().any(|m| m.affected(&written) != 1) {
            return Err(HandleError::conflict("an order moved while deciding"));
        }
        tx.commit().await?;
        Ok(batch
            .iter()
            .zip(&plan.steps)
            .map(|(incoming, step)| match step {
                decide::Step::Move { .. } | decide::Step::Announce => {
                    let head = &plan.heads[&incoming.order_id];
                    Some(decide::lifecycle_event(&incoming.event, head))
                }
                decide::Step::Later | decide::Step::Nothing => None,
            })
            .collect())
    }

    async fn announced(&self, orders: &[OrderId]) -> Result<(), HandleError> {
        let _turn = self.writer.turn().await;
        Ok(store::mark_announced(self.writer.pool(), orders).await?)
    }
}
