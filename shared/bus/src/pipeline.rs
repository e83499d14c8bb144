//! The one pipeline every consumer runs: take → load → decide → persist → publish → ack.
//!
//! A service writes a [`Step`]: the events it takes (its own [`Input`] type), what it reads
//! (`load`, which may also claim), what it makes of that (`decide`, pure), and how it keeps it
//! (`persist`, which says what stands and so what to announce). [`Pipeline`] does the rest, the
//! same for every service: batching, trying again when another writer got in first
//! ([`HandleError::Conflict`]), taking a failed batch apart event by event, and publishing what
//! each event caused with the PubAcks awaited together. The consumer acks an event only once
//! all of that is done ([`crate::consume`]).

use std::future::Future;

use async_nats::jetstream;
use oms_domain::{Envelope, Event, EventId, EventKind, OrderId};
use tracing::{debug, warn};

use crate::trace::SpanRef;
use crate::{HandleError, Handler, publish_all};

/// How often a step is loaded and decided again after losing a race to another writer before
/// the event is handed back for later.
const CONFLICT_ATTEMPTS: usize = 50;

/// The events a step takes, as a type of its own, so that a step never sees an event it does
/// not handle.
pub trait Input: Sized + Send + Sync + 'static {
    /// The kinds of event it is made of; every consumer feeding the step must deliver only
    /// these (the service host checks at start).
    const KINDS: &'static [EventKind];

    /// The input of `event`, if it is of one of [`Input::KINDS`].
    fn take(event: Event) -> Option<Self>;
}

/// One event a step takes, with what its envelope says.
#[derive(Debug, Clone)]
pub struct Incoming<I> {
    pub event_id: EventId,
    pub order_id: OrderId,
    pub event: I,
}

/// The steps of one service's reaction to its events. Every effect must be idempotent: a
/// crash anywhere means the same events come again.
pub trait Step: Send + Sync + 'static {
    /// The events it takes.
    type Input: Input;
    /// What `load` opened and `persist` finishes: a transaction, a revision to compare-and-set.
    type Work: Send;
    /// What `load` found, for `decide`.
    type Found: Send;
    /// What `decide` made of it, for `persist`.
    type Plan: Send;

    /// `true`: the events of a batch are independent (per-order state) and go through the
    /// steps each on its own, concurrently. `false`: a batch goes through them together, in
    /// stream order, so that it costs one transaction; several consumers of the service then
    /// share one pipeline (see [`crate::Funnel`]).
    const EACH: bool = false;

    /// Batches at once; see [`Handler::in_flight`].
    fn in_flight(&self) -> usize {
        1
    }

    /// Reads (and claims) what deciding `batch` needs.
    fn load(
        &self,
        batch: &[Incoming<Self::Input>],
    ) -> impl Future<Output = Result<(Self::Work, Self::Found), HandleError>> + Send;

    /// The decision, from what was found alone: no I/O.
    fn decide(batch: &[Incoming<Self::Input>], found: Self::Found) -> Self::Plan;

    /// Makes the plan durable and returns, per event of `batch`, the event it causes (`None`:
    /// nothing to announce). What stands may be what another writer kept first. Returns
    /// [`HandleError::Conflict`] when another writer changed what was loaded: the batch is
    /// then loaded and decided again.
    fn persist(
        &self,
        work: Self::Work,
        batch: &[Incoming<Self::Input>],
        plan: Self::Plan,
    ) -> impl Future<Output = Result<Vec<Option<Event>>, HandleError>> + Send;

    /// Called with the orders whose announcements the stream now holds.
    fn announced(
        &self,
        orders: &[OrderId],
    ) -> impl Future<Output = Result<(), HandleError>> + Send {
        let _ = orders;
        async { Ok(()) }
    }
}

/// A [`Step`] made into a [`Handler`] of consumed events.
pub struct Pipeline<S> {
    /// The service it runs in, whose span handling an event is what the event causes.
    service: &'static str,
    step: S,
    js: jetstream::Context,
}

impl<S: Step> Pipeline<S> {
    /// `js` publishes what the step causes, as the identity of `service`.
    pub fn new(service: &'static str, step: S, js: jetstream::Context) -> Self {
        Pipeline { service, step, js }
    }

    /// The event kinds of `consumer` that the step does not take, if any.
    pub fn refuses(consumer: &[EventKind]) -> Vec<EventKind> {
        let takes = <S::Input as Input>::KINDS;
        consumer
            .iter()
            .filter(|k| !takes.contains(k))
            .copied()
            .collect()
    }

    /// Load, decide, persist (again while another writer wins), then publish what it caused;
    /// one result per event of `batch`.
    async fn run(
        &self,
        batch: &[Incoming<S::Input>],
    ) -> Result<Vec<Result<(), HandleError>>, HandleError> {
        let mut attempt = 1;
        let caused = loop {
            let (work, found) = self.step.load(batch).await?;
            let plan = S::decide(batch, found);
            match self.step.persist(work, batch, plan).await {
                Err(HandleError::Conflict(e)) if attempt < CONFLICT_ATTEMPTS => {
                    debug!(error = %e, attempt, "lost a race to another writer, deciding again");
                    attempt += 1;
                }
                caused => break caused?,
            }
        };
        if caused.len() != batch.len() {
            // A bug in the step; nothing may be acked without its outcome.
            return Err(HandleError::transient(anyhow::anyhow!(
                "the step answered {} of {} events",
                caused.len(),
                batch.len()
            )));
        }
        // What an event causes names, as its parent, the span that handled that event.
        let (slots, events): (Vec<usize>, Vec<(Envelope, SpanRef)>) = batch
            .iter()
            .zip(caused)
            .enumerate()
            .filter_map(|(i, (incoming, event))| {
                let by = SpanRef::of(incoming.order_id, self.service, incoming.event_id);
                Some((i, (Envelope::new(incoming.order_id, event?), by)))
            })
            .unzip();
        let mut results: Vec<Result<(), HandleError>> = batch.iter().map(|_| Ok(())).collect();
        let mut announced = Vec::with_capacity(events.len());
        for ((slot, event), published) in slots
            .into_iter()
            .zip(&events)
            .zip(publish_all(&self.js, &events).await)
        {
            match published {
                Ok(()) => announced.push(event.0.order_id),
                Err(e) => results[slot] = Err(e.into()),
            }
        }
        if !announced.is_empty() {
            self.step.announced(&announced).await?;
        }
        Ok(results)
    }

    /// Runs the whole batch; if it fails as a whole (its transaction, say), runs each event
    /// alone, so that one bad event cannot hold back the others.
    async fn whole_or_each(&self, batch: &[Incoming<S::Input>]) -> Vec<Result<(), HandleError>> {
        let e = match self.run(batch).await {
            Ok(results) => return results,
            Err(e) => e,
        };
        if batch.len() == 1 {
            return vec![Err(e)];
        }
        warn!(error = %e, events = batch.len(), "batch failed, taking its events one by one");
        let mut results = Vec::with_capacity(batch.len());
        for one in batch {
            results.extend(self.run_alone(std::slice::from_ref(one)).await);
        }
        results
    }

    async fn run_alone(&self, one: &[Incoming<S::Input>]) -> Vec<Result<(), HandleError>> {
        self.run(one).await.unwrap_or_else(|e| vec![Err(e)])
    }
}

impl<S: Step> Handler for Pipeline<S> {
    fn in_flight(&self) -> usize {
        self.step.in_flight()
    }

    async fn handle_batch(&self, events: Vec<Envelope>) -> Vec<Result<(), HandleError>> {
        let mut results: Vec<Result<(), HandleError>> = Vec::with_capacity(events.len());
        let mut slots = Vec::with_capacity(events.len());
        let mut batch = Vec::with_capacity(events.len());
        for envelope in events {
            let (event_id, order_id, kind) =
                (envelope.event_id, envelope.order_id, envelope.event.kind());
            match S::Input::take(envelope.event) {
                Some(event) => {
                    slots.push(results.len());
                    results.push(Ok(()));
                    batch.push(Incoming {
                        event_id,
                        order_id,
                        event,
                    });
                }
                // The consumers' filters make this impossible unless the topology and the step
                // disagree; the host checks that at start.
                None => results.push(Err(HandleError::Permanent(anyhow::anyhow!(
                    "this consumer does not take {kind:?} events"
                )))),
            }
        }
        let outcomes = if S::EACH {
            let each = batch
                .iter()
                .map(|one| async move { self.run_alone(std::slice::from_ref(one)).await });
            futures::future::join_all(each)
                .await
                .into_iter()
                .flatten()
                .collect()
        } else {
            self.whole_or_each(&batch).await
        };
        for (slot, outcome) in slots.into_iter().zip(outcomes) {
            results[slot] = outcome;
        }
        results
    }
}
