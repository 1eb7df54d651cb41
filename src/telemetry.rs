//! Logging: one line per event on stderr, level from `RUST_LOG` (default `info`), in one of
//! two formats: `human` (a line to read; the default) or `json` (one JSON object per line,
//! for a log shipper: `timestamp`, `level`, `message` and the event's fields, flattened).

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

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

pub fn init(format: LogFormat) {
    let _ = FORMAT.set(format);
    // The store's own recovery chatter, and the actor framework's per-actor lifecycle lines
    // (which name actors by their numeric ids), are not news to an operator.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,fjall=warn,lsm_tree=warn,ractor=warn,ractor_supervisor=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let _ = match format {
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).with_span_list(false).try_init(),
    };
}
