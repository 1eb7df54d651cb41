//! The harness's typed errors: what went wrong, with enough context to act on it.

use std::io;
use std::path::PathBuf;

/// Everything `warden chaos bench` can fail with.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("monit is not installed (no `monit` on PATH); install it with `.ci/install-deps.sh --bench` (as root)")]
    MonitMissing,
    #[error(
        "{name} is not installed (not on PATH nor beside the build); install it with `.ci/install-deps.sh --bench` (as root), or `{install}`"
    )]
    PeerMissing { name: &'static str, install: &'static str },
    #[error("monit rejected the generated control file {path}: {output}")]
    MonitConfig { path: PathBuf, output: String },
    #[error("port {port} on 127.0.0.1 is already in use by {holders}; stop it before benchmarking")]
    PortBusy { port: u16, holders: String },
    #[error("{what} was not healthy within {secs} s{log}")]
    NotHealthy {
        what: String,
        secs: u64,
        /// The tail of the process's log, prefixed with a newline, or empty.
        log: String,
    },
    #[error("cannot start {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("path {0} cannot be quoted safely in a peer's config (use only letters, digits and /._-)")]
    UnsafePath(PathBuf),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("histogram: {0}")]
    Histogram(String),
    #[error("the node's config: {0}")]
    NodeConfig(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("signal: {0}")]
    Signal(#[from] nix::Error),
}

impl BenchError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}
