//! One trace per incident: `incident` (the root, from the fault's first sign to the
//! incident's end) with `detect` (first sign to finding), `diagnose` (cause and playbook
//! order), a `decide` for every step the incident manager takes, and for every run
//! `remediate` (its steps, each with the governance `permit` it ran under) and `verify`.
//!
//! The root and `detect` start in the past (at the first failed check, before warden knew
//! of an incident), which a `tracing` span cannot, so they are OpenTelemetry spans made on
//! the global tracer; every other span is a `tracing` span under [`TARGET`], parented to the
//! root through `tracing-opentelemetry`. With export off, the global tracer is a no-op and
//! no subscriber takes [`TARGET`]'s spans: tracing costs nothing.
//!
//! The live roots are kept on a [`TraceBoard`] outside the incident manager, so a restart of
//! that actor neither ends them early nor loses them. The root's `traceparent` is kept on
//! the incident, so spans made after warden restarts, or after a fault came back and
//! reopened its incident, join the same trace; the root then having been sent (or lost with
//! the old process), the incident's end is a short `end` span under it.

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, Status, TraceContextExt as _, TraceFlags, TraceId, TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use warden_core::incident::{Finding, Incident};

/// The `tracing` target of the incident traces' spans: the trace exporter takes them, the
/// log formatter leaves them out.
pub const TARGET: &str = "warden::trace";

/// The trace an incident's spans join.
#[derive(Debug, Clone, Default)]
pub struct IncidentTrace {
    cx: Context,
}

fn at(unix_ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(unix_ms)
}

fn attributes(incident: &Incident) -> Vec<KeyValue> {
    vec![
        KeyValue::new("warden.incident.id", incident.id as i64),
        KeyValue::new("warden.failure_mode", incident.mode.as_str()),
        KeyValue::new("warden.service", incident.service.to_string()),
    ]
}

impl IncidentTrace {
    /// Starts the trace of a new incident at its fault's first sign, with its `detect` span
    /// (first sign to now).
    pub fn begin(incident: &Incident, finding: &Finding) -> Self {
        let tracer = opentelemetry::global::tracer("warden");
        let now = SystemTime::now();
        let first_sign = at(finding.first_sign_unix_ms).min(now);
        let root = tracer
            .span_builder("incident")
            .with_start_time(first_sign)
            .with_attributes(attributes(incident))
            .start_with_context(&tracer, &Context::new());
        let cx = Context::new().with_span(root);
        let mut attrs = attributes(incident);
        attrs.push(KeyValue::new("warden.evidence", finding.evidence.clone()));
        let mut detect = tracer
            .span_builder("detect")
            .with_start_time(first_sign)
            .with_attributes(attrs)
            .start_with_context(&tracer, &cx);
        detect.end_with_timestamp(now);
        Self { cx }
    }

    /// The trace of an incident opened before (by an earlier process, or reopened): its
    /// spans join the stored root. None stored (export was off): spans start traces of
    /// their own.
    pub fn resume(incident: &Incident) -> Self {
        let Some(sc) = incident.trace.as_deref().and_then(parse_traceparent) else { return Self::default() };
        Self { cx: Context::new().with_remote_span_context(sc) }
    }

    /// The W3C `traceparent` of the root, when it is recorded (export on).
    pub fn traceparent(&self) -> Option<String> {
        let span = self.cx.span();
        let sc = span.span_context();
        sc.is_valid().then(|| format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8()))
    }

    /// The context child spans take as their parent.
    pub fn context(&self) -> Context {
        self.cx.clone()
    }

    /// Makes `span` a child of the root.
    pub fn adopt(&self, span: &tracing::Span) {
        adopt(span, &self.cx);
    }

    /// Ends the root: `outcome` is how the incident ended (`resolved`, `failed`,
    /// `cleared`); `error` marks the trace failed. A root of an earlier process or an earlier
    /// opening cannot be ended here: a short `end` span under it says the outcome instead.
    pub fn end(&self, outcome: &str, error: Option<&str>) {
        let status = match error {
            Some(e) => Status::error(e.to_string()),
            None => Status::Ok,
        };
        let outcome = KeyValue::new("warden.outcome", outcome.to_string());
        let root = self.cx.span();
        if root.is_recording() {
            root.set_attribute(outcome);
            root.set_status(status);
            root.end();
        } else if root.span_context().is_valid() {
            let tracer = opentelemetry::global::tracer("warden");
            let mut end = tracer.span_builder("end").with_attributes([outcome]).start_with_context(&tracer, &self.cx);
            end.set_status(status);
            end.end();
        }
    }
}

/// The traces of the open incidents, by incident id.
#[derive(Debug, Clone, Default)]
pub struct TraceBoard {
    inner: Arc<Mutex<BTreeMap<u64, IncidentTrace>>>,
}

impl TraceBoard {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, IncidentTrace>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live trace of `incident`, or (opened by an earlier process, or reopened) the one
    /// its stored `traceparent` names.
    pub fn of(&self, incident: &Incident) -> IncidentTrace {
        self.map().entry(incident.id).or_insert_with(|| IncidentTrace::resume(incident)).clone()
    }

    pub fn insert(&self, id: u64, trace: IncidentTrace) {
        self.map().insert(id, trace);
    }

    /// Ends and forgets the trace of incident `id` (see [`IncidentTrace::end`]).
    pub fn close(&self, id: u64, outcome: &str, error: Option<&str>) {
        let trace = self.map().remove(&id);
        if let Some(trace) = trace {
            trace.end(outcome, error);
        }
    }

    /// Forgets the trace of an incident that was never stored, ending its root unmarked.
    pub fn discard(&self, id: u64) {
        let trace = self.map().remove(&id);
        if let Some(trace) = trace {
            trace.cx.span().end();
        }
    }
}

/// Makes `span` a child of the span in `cx` (a span with no subscriber is left alone).
pub fn adopt(span: &tracing::Span, cx: &Context) {
    if !span.is_disabled() && cx.span().span_context().is_valid() {
        // Only fails for a span already started under another parent, which these are not.
        let _ = span.set_parent(cx.clone());
    }
}

fn parse_traceparent(s: &str) -> Option<SpanContext> {
    let mut parts = s.split('-');
    let (_version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sc = SpanContext::new(trace_id, span_id, TraceFlags::new(flags), true, TraceState::default());
    sc.is_valid().then_some(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_traceparent_is_read_back_and_garbage_is_not() {
        let sc = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").expect("valid");
        assert_eq!(sc.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        assert!(parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
        assert!(parse_traceparent("not a traceparent").is_none());
        assert!(parse_traceparent("00-zz-00f067aa0ba902b7-01").is_none());
    }

    #[test]
    fn test_without_an_exporter_nothing_is_recorded() {
        let trace = IncidentTrace::default();
        assert_eq!(trace.traceparent(), None);
        let span = tracing::info_span!(target: TARGET, "decide");
        trace.adopt(&span);
        trace.end("resolved", None);
    }
}
