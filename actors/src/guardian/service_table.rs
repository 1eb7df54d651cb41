//! The services' shared state: what runs, under which pid, in which state.
//!
//! It lives outside the service supervisor actor so that running processes survive that
//! actor's restart (the new instance adopts them and reconciles what it missed) and so the
//! HTTP API and the detectors read it without asking any actor. Facts about a process are
//! written here by the tasks that learn them (its exit, its readiness) before any message
//! is sent, so a message lost while the supervisor restarts loses no fact.

use crate::process::cgroup::ServiceCgroup;
use crate::process::{ExitInfo, LastGroup};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;
use tokio::time::Instant;
use warden_core::config::{ServiceName, ServiceSpec};
use warden_core::restart::RestartTracker;
use warden_core::service::ServiceState;

/// What follows a deliberate stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterStop {
    /// Start a new process (a restart).
    Start,
    /// Stay stopped.
    Stay,
    /// Stay stopped, quarantined until released.
    Quarantine,
    /// Gone from the config: leave the table.
    Remove,
}

#[derive(Debug)]
pub struct ServiceEntry {
    pub spec: ServiceSpec,
    pub state: ServiceState,
    pub pid: Option<u32>,
    /// Bumped for every process started (and every deliberate stop), so late notices
    /// about an older process are recognised and ignored.
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
    /// Becomes `Some` when the current process has exited.
    pub exit: Option<watch::Receiver<Option<ExitInfo>>>,
    /// What a deliberate stop in progress leads to.
    pub after_stop: Option<AfterStop>,
    /// When a backed-off restart is due (kept here so a restarted supervisor keeps it).
    pub restart_due: Option<Instant>,
    /// The current process hung before its first ready check and was killed for it.
    pub hung_before_ready: bool,
    /// Its cgroup, where the machine has cgroups.
    pub cgroup: Option<ServiceCgroup>,
    /// A reload removed it; it leaves the table once stopped.
    pub removed: bool,
    /// The current process's start time (clock ticks since boot).
    pub start_ticks: Option<u64>,
    /// The process group of the process that last exited (without cgroups, what is left
    /// of it is killed through the group before the next start).
    pub last_group: Option<LastGroup>,
    /// Another process holds one of its ports: it is not restarted into EADDRINUSE (and
    /// its restart budget is not spent) until the port is free. Who holds which port.
    pub waiting_for_port: Option<String>,
    /// A dependency of it is not running: it is not restarted into the same failure (and
    /// its restart budget is not spent) until they all run. Which and how they are.
    pub waiting_for_dependencies: Option<String>,
    /// The last unexpected exit, when it was seen (wall clock).
    pub exited: Option<(u64, ExitInfo)>,
    /// Its cgroup's OOM kill count when the current process started.
    pub oom_kills_at_start: Option<u64>,
    /// Managed files whose content the config never declared (a hand edit, a rotated
    /// secret): left as they are, shown so an operator knows the config is not what runs.
    pub edited_files: Vec<String>,
}

impl ServiceEntry {
    /// A service not started yet.
    pub fn new(spec: ServiceSpec) -> Self {
        Self {
            tracker: RestartTracker::new(spec.restart),
            spec,
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
            after_stop: None,
            restart_due: None,
            hung_before_ready: false,
            cgroup: None,
            removed: false,
            start_ticks: None,
            last_group: None,
            waiting_for_port: None,
            waiting_for_dependencies: None,
            exited: None,
            oom_kills_at_start: None,
            edited_files: Vec::new(),
        }
    }

    /// The current process has exited (its watcher saw it), whatever we were told.
    pub fn process_exited(&self) -> Option<ExitInfo> {
        self.exit.as_ref().and_then(|rx| rx.borrow().clone())
    }
}

/// What `/api/status` shows of a service.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceSnapshot {
    pub name: ServiceName,
    pub state: ServiceState,
    pub pid: Option<u32>,
    pub restarts: u64,
    pub uptime_ms: Option<u64>,
    pub started_unix_ms: Option<u64>,
    pub started_at: Option<String>,
    pub slow_boot: bool,
    pub last_exit: Option<String>,
    pub ports: Vec<u16>,
    /// Set while a port of it is held by another process and its start waits for it.
    pub waiting_for_port: Option<String>,
    /// Set while its restart waits for dependencies that are not running.
    pub waiting_for_dependencies: Option<String>,
    /// Managed files that hold an edit, not what the config declares (left alone).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub edited_files: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Table {
    pub services: BTreeMap<ServiceName, ServiceEntry>,
    /// Start order (dependencies first).
    pub order: Vec<ServiceName>,
    /// Set once shutdown begins: nothing starts or restarts after it.
    pub shutting_down: bool,
    /// The start-up takeover of an earlier warden's leftovers; `true` once it is over.
    pub adoption: Option<watch::Receiver<bool>>,
    /// Start one service at a time (the config's `staggered_boot`).
    pub staggered_boot: bool,
}

impl Table {
    /// A takeover of an earlier warden's leftovers is under way: nothing starts yet. A
    /// takeover task that died (its sender dropped) is over too.
    pub fn adopting(&self) -> bool {
        self.adoption.as_ref().is_some_and(|rx| !*rx.borrow() && rx.has_changed().is_ok())
    }
}

#[derive(Debug, Clone, Default)]
pub struct ServiceTable {
    inner: Arc<Mutex<Table>>,
    /// Counts the boots marked slow: the slow-boot detector looks at once rather than at
    /// its next tick (a boot only a little past its deadline is ready again before then).
    slow_boots: Arc<tokio::sync::watch::Sender<u64>>,
}

impl ServiceTable {
    /// A table of `specs` (already in start order), all pending.
    pub fn new(specs: &[ServiceSpec]) -> Self {
        let mut t = Table::default();
        for spec in specs {
            t.order.push(spec.name.clone());
            t.services.insert(spec.name.clone(), ServiceEntry::new(spec.clone()));
        }
        Self { inner: Arc::new(Mutex::new(t)), slow_boots: Arc::new(tokio::sync::watch::Sender::new(0)) }
    }

    /// Changes whenever a boot is marked slow.
    pub fn slow_boots(&self) -> tokio::sync::watch::Receiver<u64> {
        self.slow_boots.subscribe()
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
                name: e.spec.name.clone(),
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
                started_at: e.started_unix_ms.map(warden_core::time::rfc3339),
                slow_boot: e.slow_boot,
                last_exit: e.last_exit.clone(),
                ports: e.spec.ports.clone(),
                waiting_for_port: e.waiting_for_port.clone(),
                waiting_for_dependencies: e.waiting_for_dependencies.clone(),
                edited_files: e.edited_files.clone(),
            })
            .collect()
    }

    pub fn state_of(&self, service: &str) -> Option<ServiceState> {
        self.lock().services.get(service).map(|e| e.state)
    }

    /// Every service has been ready at least once.
    pub fn all_ready_once(&self) -> bool {
        let t = self.lock();
        !t.services.is_empty() && t.services.values().all(|e| e.ready_once)
    }

    /// Process generation `generation` of `service` passed its ready check: it runs.
    /// Returns whether that changed anything (a stale or repeated notice does not).
    pub fn mark_ready(&self, service: &str, generation: u64) -> bool {
        let mut t = self.lock();
        match t.services.get_mut(service) {
            Some(e) if e.generation == generation && e.state == ServiceState::Starting => {
                e.state = ServiceState::Running;
                e.ready_once = true;
                e.ready_at = Some(Instant::now());
                true
            }
            _ => false,
        }
    }

    /// Process generation `generation` of `service` hung before its first ready check; its
    /// pid, to kill, when that is news.
    pub fn mark_hung(&self, service: &str, generation: u64) -> Option<u32> {
        let mut t = self.lock();
        match t.services.get_mut(service) {
            Some(e) if e.generation == generation && e.state == ServiceState::Starting && !e.hung_before_ready => {
                e.hung_before_ready = true;
                e.pid
            }
            _ => None,
        }
    }

    /// Process generation `generation` of `service` missed its startup deadline.
    pub fn mark_slow_boot(&self, service: &str, generation: u64) -> bool {
        let mut t = self.lock();
        match t.services.get_mut(service) {
            Some(e) if e.generation == generation && e.state == ServiceState::Starting => {
                e.slow_boot = true;
                self.slow_boots.send_modify(|n| *n += 1);
                true
            }
            _ => false,
        }
    }
}
