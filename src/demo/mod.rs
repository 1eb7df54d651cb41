//! The embedded demo node's services: `warden demo db|model|api`.
//!
//! Three small but real processes that the default node supervises and that chaos runs break
//! (kill, SIGSTOP, delete config, break credentials, corrupt data). Each one logs one line per
//! event, shuts down gracefully on SIGTERM/SIGINT and reports start-up failures through a
//! distinct exit code, so a supervisor can tell a permanent fault from a crash:
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | clean shutdown after SIGTERM/SIGINT |
//! | 1 | other runtime I/O error |
//! | 2 | cannot bind the listen address (e.g. EADDRINUSE) |
//! | 3 | db: data file failed its integrity check |
//! | 75 | db: data directory locked by another live process (EX_TEMPFAIL) |
//! | 78 | bad or missing configuration file (EX_CONFIG) |

pub mod api;
pub mod db;
pub mod hog;
pub mod model;
pub mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::TcpListener;

#[derive(clap::Subcommand)]
pub enum DemoCommand {
    /// A small checksummed key-value database over a TCP line protocol.
    Db(db::DbArgs),
    /// A model server speaking the Ollama HTTP API.
    Model(model::ModelArgs),
    /// The node's HTTP backend; its /health depends on db, model, config and credentials.
    Api(api::ApiArgs),
    /// A memory balloon: allocates until it holds `--mb` MiB, then idles.
    Hog(hog::HogArgs),
}

/// Why a demo service stopped; each variant maps to one process exit code.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("config error: {0}")]
    Config(String),
    #[error("data file {path} is corrupt at offset {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("data dir {dir} is locked by pid {pid}")]
    Locked { dir: PathBuf, pid: String },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

impl ServiceError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ServiceError::Io { what: what.into(), source }
    }

    /// The process exit code for this error (see the module doc).
    pub fn exit_code(&self) -> i32 {
        match self {
            ServiceError::Bind { .. } => 2,
            ServiceError::Corrupt { .. } => 3,
            ServiceError::Locked { .. } => 75,
            ServiceError::Config(_) => 78,
            ServiceError::Io { .. } => 1,
        }
    }
}

pub async fn run(cmd: DemoCommand) -> anyhow::Result<()> {
    init_tracing();
    let result = match cmd {
        DemoCommand::Db(args) => db::run(args).await,
        DemoCommand::Model(args) => model::run(args).await,
        DemoCommand::Api(args) => api::run(args).await,
        DemoCommand::Hog(args) => hog::run(args).await,
    };
    if let Err(e) = result {
        // Straight to stderr, whatever the log setup: the one line a supervisor shows.
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Another part of the binary may already have installed a subscriber: keep it.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

/// Binds a listener; any failure (EADDRINUSE, EACCES, ...) is a start-up error with exit code 2.
///
/// `WARDEN_DEMO_BOOT_DELAY_MS` (from the environment, e.g. a service's `env_file`) makes the
/// boot that long first, as a cache warm-up or a slow disk would: how a slow boot is made.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServiceError> {
    if let Some(ms) = std::env::var("WARDEN_DEMO_BOOT_DELAY_MS").ok().and_then(|v| v.trim().parse::<u64>().ok()) {
        tracing::info!(delay_ms = ms, "booting slowly (WARDEN_DEMO_BOOT_DELAY_MS)");
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    TcpListener::bind(addr).await.map_err(|source| ServiceError::Bind { addr, source })
}

/// Resolves when the process receives SIGTERM or SIGINT. SIGHUP means "reload", as for
/// most daemons: the demo services re-read their files on every use, so for those a reload
/// only says it was asked (and the process lives on, as a `reload_service` playbook
/// expects); a service with something to reload uses [`shutdown_signal_with`].
pub async fn shutdown_signal() {
    shutdown_signal_with(|| tracing::info!("sighup received: files are re-read on every use, nothing else to reload"))
        .await
}

/// [`shutdown_signal`], with `reload` run on every SIGHUP.
pub async fn shutdown_signal_with(reload: impl Fn() + Send + 'static) {
    use tokio::signal::unix::SignalKind;
    on_signal(SignalKind::hangup(), "sighup", reload);
    shutdown_only().await
}

/// Runs `f` on every delivery of `kind` (from a task of its own).
pub fn on_signal(kind: tokio::signal::unix::SignalKind, name: &'static str, f: impl Fn() + Send + 'static) {
    match tokio::signal::unix::signal(kind) {
        Ok(mut sig) => {
            tokio::spawn(async move {
                while sig.recv().await.is_some() {
                    f();
                }
            });
        }
        Err(e) => tracing::error!("cannot install {name} handler: {e}"),
    }
}

async fn shutdown_only() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!("cannot install sigterm handler: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = term => tracing::info!("sigterm received, shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("sigint received, shutting down"),
    }
}

/// The current UTC time as RFC 3339 with nanoseconds, e.g. `2024-05-01T10:00:00.123456789Z`
/// (the precision Ollama's own timestamps use).
pub fn rfc3339_now() -> String {
    format!("{:.9}", jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::rfc3339_now;

    #[test]
    fn test_rfc3339_now_has_nanoseconds_and_utc() {
        let s = rfc3339_now();
        assert_eq!(s.len(), "2024-05-01T10:00:00.000000000Z".len(), "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T', "{s}");
    }
}
