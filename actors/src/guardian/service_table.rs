//! The services' shared state: what runs, under which pid, in which state.
//!
//! It lives outside the service supervisor actor so that running processes survive that
//! actor's restart (the new instance adopts them) and so the HTTP API reads it without
//! asking any actor.

use crate::process::{ExitInfo, LogTail};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;
use tokio::time::Instant;
use warden_core::config::ServiceConfig;
use warden_core::restart::RestartTracker;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Waiting for its dependencies.
    Pending,
    /// Started, not yet ready.
    Starting,
    Running,
    /// Exited; restarts after a backoff delay.
    Backoff,
    Stopping,
    Stopped,
    /// Crash-looped past its restart budget; left stopped until released.
    Quarantined,
}

#[derive(Debug)]
pub struct ServiceEntry {
    pub config: ServiceConfig,
    pub state: ServiceState,
    pub pid: Option<u32>,
    /// Bumped for every process started (and every deliberate stop), so late exit
    /// notices of an older process are recognised and ignored.
    pub generation: u64,
    pub restarts: u64,
    pub started_at: Option<Instant>,
    pub started_unix_ms: Option<u64>,
    pub ready_once: bool,
    /// When the current process passed its ready check.
    pub ready_at: Option<Instant>,
    pub slow_boot: bool,
    pub last_exit: Option<String>,
    pub tracker: RestartTracker,
    pub exit: Option<watch::Receiver<Option<ExitInfo>>>,
    pub tail: LogTail,
}

/// What `/api/status` shows of a service.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceSnapshot {
    pub name: String,
    pub state: ServiceState,
    pub pid: Option<u32>,
    pub restarts: u64,
    pub uptime_ms: Option<u64>,
    pub started_unix_ms: Option<u64>,
    pub slow_boot: bool,
    pub last_exit: Option<String>,
    pub ports: Vec<u16>,
}

#[derive(Debug, Default)]
pub struct Table {
    pub services: BTreeMap<String, ServiceEntry>,
    /// Start order (dependencies first).
    pub order: Vec<String>,
    /// Set once shutdown begins: nothing starts or restarts after it.
    pub shutting_down: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ServiceTable {
    inner: Arc<Mutex<Table>>,
}

impl ServiceTable {
    /// Fills the table from config (in start order) unless it already holds services.
    pub fn init(&self, order: Vec<ServiceConfig>) {
        let mut t = self.lock();
        if !t.services.is_empty() {
            return;
        }
        for cfg in order {
            let name = cfg.name.value.clone();
            t.order.push(name.clone());
            t.services.insert(
                name,
                ServiceEntry {
                    tracker: RestartTracker::new(cfg.restart),
                    config: cfg,
                    state: ServiceState::Pending,
                    pid: None,
                    generation: 0,
                    restarts: 0,
                    started_at: None,
                    started_unix_ms: None,
                    ready_once: false,
                    ready_at: None,
                    slow_boot: false,
                    last_exit: None,
                    exit: None,
                    tail: LogTail::default(),
                },
            );
        }
    }

    /// The table, locked. A poisoned lock (a panic while holding it) still yields the
    /// data: every update is a few field writes that leave it consistent.
    pub fn lock(&self) -> MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> Vec<ServiceSnapshot> {
        let t = self.lock();
        t.order
            .iter()
            .filter_map(|n| t.services.get(n))
            .map(|e| ServiceSnapshot {
                name: e.config.name.value.clone(),
                state: e.state,
                pid: e.pid,
                restarts: e.restarts,
                uptime_ms: match e.state {
                    ServiceState::Running | ServiceState::Starting => {
                        e.started_at.map(|s| s.elapsed().as_millis() as u64)
                    }
                    _ => None,
                },
                started_unix_ms: e.started_unix_ms,
                slow_boot: e.slow_boot,
                last_exit: e.last_exit.clone(),
                ports: e.config.ports.clone(),
            })
            .collect()
    }

    pub fn state_of(&self, service: &str) -> Option<ServiceState> {
        self.lock().services.get(service).map(|e| e.state)
    }

    pub fn tail_of(&self, service: &str) -> Vec<String> {
        self.lock().services.get(service).map(|e| e.tail.lines()).unwrap_or_default()
    }

    /// Every service has been ready at least once.
    pub fn all_ready_once(&self) -> bool {
        let t = self.lock();
        !t.services.is_empty() && t.services.values().all(|e| e.ready_once)
    }
}
