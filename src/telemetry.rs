//! Logging and traces. Logs: one line per event on stderr, level from `RUST_LOG` (default
//! `info`), in one of two formats: `human` (a line to read; the default) or `json` (one JSON
//! object per line, for a log shipper: `timestamp`, `level`, `message` and the event's
//! fields, flattened). Traces: when export is on (src/otlp.rs), the incident traces' spans
//! go to the OpenTelemetry bridge, with the log events inside them as span events.

use crate::otlp;
use std::io::IsTerminal;
use tracing::Level;
use tracing_subscriber::filter::{FilterExt as _, LevelFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};
use warden_actors::incident_trace::TARGET as TRACE_TARGET;

/// `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line to read per event.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

static FORMAT: std::sync::OnceLock<LogFormat> = std::sync::OnceLock::new();

/// Whether stderr carries JSON objects only: then nothing may be printed there by hand.
pub fn is_json() -> bool {
    FORMAT.get() == Some(&LogFormat::Json)
}

pub fn init(format: LogFormat, traces: Option<&otlp::Export>) {
    let _ = FORMAT.set(format);
    // The store's own recovery chatter, and the actor framework's per-actor lifecycle lines
    // (which name actors by their numeric ids), are not news to an operator.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,fjall=warn,lsm_tree=warn,ractor=warn,ractor_supervisor=warn,opentelemetry=warn")
    });
    // The incident traces' spans are for the trace backend: a log line does not carry them.
    // The hints keep the level ceiling the env filter sets: without one, `and` has none,
    // and every crate's debug and trace events (and `log` records) would be built only to
    // be filtered out.
    let no_trace_spans =
        filter_fn(|m| !(m.is_span() && m.target() == TRACE_TARGET)).with_max_level_hint(LevelFilter::TRACE);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false);
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Human => {
            fmt.with_ansi(std::io::stderr().is_terminal()).with_filter(filter.and(no_trace_spans)).boxed()
        }
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(filter.and(no_trace_spans))
            .boxed(),
    };
    let traces = traces.map(|export| {
        let only = filter_fn(|m| if m.is_span() { m.target() == TRACE_TARGET } else { *m.level() <= Level::INFO })
            .with_max_level_hint(LevelFilter::INFO);
        // Where in the code a span was made is kept; which thread ran it and the idle and
        // busy times of an actor's future say nothing about the incident.
        tracing_opentelemetry::layer()
            .with_tracer(export.tracer())
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(only)
    });
    let _ = tracing_subscriber::registry().with(logs).with(traces).try_init();
}
