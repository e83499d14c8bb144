//! Traces: one trace per order (its id is the trace id), one span per handled message, and on
//! every event the `traceparent` of the span that published it.
//!
//! Span ids are derived, not drawn: the span that handles event `e` in service `s` has an id
//! made of `s` and `e`'s id. So a service knows the id of the span it is in from the event
//! alone, a redelivered event is the same span, and what it publishes names that span as
//! parent whether or not spans are recorded. Recording (OpenTelemetry, exported over OTLP by
//! the host when `telemetry.otlp_endpoint` is set) only adds the spans' times and attributes;
//! with no tracer installed, [`record`] returns at once.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

pub use opentelemetry::KeyValue;
pub use opentelemetry::trace::SpanKind;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
    Tracer as _,
};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer};

use oms_domain::{Envelope, EventId, OrderId};

/// A span's place in its trace: what a `traceparent` header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanRef {
    pub trace_id: u128,
    pub span_id: u64,
}

impl SpanRef {
    /// The span of `service` that handles (or publishes) event `event_id` of `order`.
    pub fn of(order: OrderId, service: &str, event_id: EventId) -> SpanRef {
        SpanRef {
            trace_id: order.uuid().as_u128(),
            span_id: span_id(service, event_id),
        }
    }

    /// The span in which `service` published `event` on its own (not while handling another
    /// event): a request at the edge, a deadline.
    pub fn own(service: &str, event: &Envelope) -> SpanRef {
        SpanRef::of(event.order_id, service, event.event_id)
    }

    /// W3C `traceparent`: version 00, sampled.
    pub fn traceparent(&self) -> String {
        format!("00-{:032x}-{:016x}-01", self.trace_id, self.span_id)
    }

    /// The span a `traceparent` names, if it is one.
    pub fn parse(header: &str) -> Option<SpanRef> {
        let mut parts = header.trim().split('-');
        let (version, trace, span) = (parts.next()?, parts.next()?, parts.next()?);
        let flags = parts.next()?;
        let hex = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        if version != "00" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(SpanRef { trace_id, span_id })
    }

    /// The trace id as logs show it.
    pub fn trace_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

/// FNV-1a over the service's name and the event's id: stable across processes and versions,
/// never 0 (W3C's invalid span id).
fn span_id(service: &str, event_id: EventId) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in service
        .bytes()
        .chain([b'/'])
        .chain(event_id.uuid().as_bytes().iter().copied())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash.max(1)
}

/// A finished span to record.
pub struct Span {
    pub service: &'static str,
    pub name: String,
    pub kind: SpanKind,
    pub span: SpanRef,
    pub parent: Option<SpanRef>,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<KeyValue>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static TRACERS: RwLock<Option<HashMap<&'static str, SdkTracer>>> = RwLock::new(None);

/// Whether spans are recorded at all: when not, callers skip building them.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Records `service`'s spans with `tracer` from now on.
pub fn install(service: &'static str, tracer: SdkTracer) {
    let mut tracers = TRACERS.write().unwrap_or_else(|e| e.into_inner());
    tracers
        .get_or_insert_with(HashMap::new)
        .insert(service, tracer);
    ENABLED.store(true, Ordering::Relaxed);
}

/// Records `span` if its service has a tracer.
pub fn record(span: Span) {
    if !enabled() {
        return;
    }
    let tracers = TRACERS.read().unwrap_or_else(|e| e.into_inner());
    let Some(tracer) = tracers.as_ref().and_then(|t| t.get(span.service)) else {
        return;
    };
    let parent = match span.parent {
        Some(p) => opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from(p.trace_id),
            SpanId::from(p.span_id),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        )),
        None => opentelemetry::Context::new(),
    };
    let builder = tracer
        .span_builder(span.name)
        .with_kind(span.kind)
        .with_start_time(span.start)
        .with_attributes(span.attributes);
    // The SDK draws ids from its generator: hand it ours for this one span.
    NEXT.with(|next| next.set(Some(span.span)));
    let mut recorded = tracer.build_with_context(builder, &parent);
    NEXT.with(|next| next.set(None));
    if let Some(error) = span.error {
        recorded.set_status(Status::error(error));
    }
    recorded.end_with_timestamp(span.end);
}

thread_local! {
    static NEXT: std::cell::Cell<Option<SpanRef>> = const { std::cell::Cell::new(None) };
}

/// The ids [`record`] chose, else random ones.
#[derive(Debug, Default)]
pub struct DerivedIds(RandomIdGenerator);

impl IdGenerator for DerivedIds {
    fn new_trace_id(&self) -> TraceId {
        NEXT.with(|n| n.get())
            .map_or_else(|| self.0.new_trace_id(), |s| TraceId::from(s.trace_id))
    }

    fn new_span_id(&self) -> SpanId {
        NEXT.with(|n| n.get())
            .map_or_else(|| self.0.new_span_id(), |s| SpanId::from(s.span_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_refuses_what_is_not_one() {
        let order = OrderId::new();
        let span = SpanRef::of(order, "customer", EventId::new());
        let header = span.traceparent();
        assert_eq!(header.len(), 55);
        assert_eq!(SpanRef::parse(&header), Some(span));
        assert_eq!(span.trace_hex(), order.uuid().simple().to_string());
        for bad in [
            "",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
            "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
        ] {
            assert_eq!(SpanRef::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_span_id_depends_on_the_service_and_the_event_only() {
        let (order, event) = (OrderId::new(), EventId::new());
        let a = SpanRef::of(order, "payment", event);
        assert_eq!(
            a,
            SpanRef::of(order, "payment", event),
            "redelivered: same span"
        );
        assert_ne!(a.span_id, SpanRef::of(order, "order", event).span_id);
        assert_ne!(
            a.span_id,
            SpanRef::of(order, "payment", EventId::new()).span_id
        );
    }
}
