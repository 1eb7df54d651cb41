//! What earlier processes of a service left behind, and what becomes of it.
//!
//! Three kinds of leftover: the processes of an earlier warden on this data dir (killed or
//! crashed), adopted when they are still the recorded ones and healthy, stopped otherwise;
//! what an exited main process forked (daemons, `setsid` escapees), killed before the
//! next start and whenever the service stops for good, as systemd does; and the processes
//! of a service that left the config while warden was down, stopped.
//!
//! Everything that waits (grace periods, cgroups emptying) runs in tasks, never in the
//! service supervisor's handler: the supervisor keeps answering meanwhile, and the service
//! manager's watchdog pings through it.

use super::service_table::ServiceTable;
use crate::process::cgroup::{Containment, ServiceCgroup};
use crate::process::{self, ExitInfo, LastGroup, record};
use nix::sys::signal::Signal;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};
use warden_core::config::{ServiceName, ServiceSpec};

/// Grace for a process of a service that is no longer configured (its own stop settings
/// went with its definition): SIGTERM, this long, then SIGKILL.
const UNKNOWN_SERVICE_GRACE: Duration = Duration::from_secs(10);
/// Ready-check timeout when deciding whether a leftover is healthy enough to adopt.
const ADOPT_CHECK_TIMEOUT: Duration = Duration::from_millis(500);

/// Whether anything of a service's earlier processes still runs.
pub fn present(cgroup: Option<&ServiceCgroup>, group: Option<LastGroup>) -> bool {
    match cgroup {
        Some(cg) => !cg.pids().is_empty(),
        None => group.is_some_and(|g| !g.members().is_empty()),
    }
}

/// Kills what a service's earlier processes left running: everything in its cgroup, or
/// without one the members of the last process group. Bounded: a few seconds at most.
pub async fn clear(service: &str, cgroup: Option<&ServiceCgroup>, group: Option<LastGroup>) {
    match cgroup {
        Some(cg) => {
            let pids = cg.pids();
            if !pids.is_empty() {
                warn!(service, ?pids, "killing what the service's exited process left running");
                if !cg.kill_all().await {
                    warn!(service, pids = ?cg.pids(), "alert: the service's cgroup is not empty after SIGKILL");
                }
            }
        }
        None => {
            let Some(group) = group else { return };
            for _ in 0..50 {
                let pids = group.members();
                if pids.is_empty() {
                    return;
                }
                warn!(service, ?pids, "killing what the service's exited process left in its group");
                for pid in pids {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// What the start-up pass over an earlier warden's leftovers needs.
pub struct Takeover {
    pub table: ServiceTable,
    pub run_dir: PathBuf,
    pub containment: Containment,
}

/// A process the takeover adopted: the service supervisor watches for its exit.
pub struct Adopted {
    pub service: ServiceName,
    pub generation: u64,
    pub exit: watch::Receiver<Option<ExitInfo>>,
}

/// Marks the table as taking over (nothing starts meanwhile) and returns the sender that
/// ends it; `None` if a takeover is already under way.
pub fn begin(table: &ServiceTable) -> Option<watch::Sender<bool>> {
    let mut t = table.lock();
    if t.adopting() {
        return None;
    }
    let (tx, rx) = watch::channel(false);
    t.adoption = Some(rx);
    Some(tx)
}

/// What an earlier warden on this data dir left running (it was killed, or crashed): a
/// recorded process that still runs, was started from the same definition and passes its
/// ready check is adopted (watched through a pidfd) and not started again; any other
/// process of a configured service (another definition, unhealthy, anything else in its
/// cgroup) is stopped first, and so is whatever a service no longer in the config left. So
/// a `kill -9` of warden followed by `warden run` ends with one process per service, and no
/// start fails on a port its own orphan holds. Returns what it adopted; the caller ends
/// the takeover (the sender [`begin`] gave) and watches those processes.
pub async fn take_over(t: Takeover) -> Vec<Adopted> {
    let names: Vec<ServiceName> = t.table.lock().order.clone();
    let mut adopted = Vec::new();
    for name in &names {
        let Some(spec) = t.table.lock().services.get(name).map(|e| e.spec.clone()) else { continue };
        let cgroup = t.containment.service(name.as_str());
        let rec = record::read(&t.run_dir, name.as_str());
        let this = match &rec {
            Some(rec) => adopt_or_stop(&t, name, &spec, rec, cgroup.clone()).await,
            None => None,
        };
        match this {
            Some(a) => adopted.push(a),
            None => {
                // Its cgroup, or without one what is left of the recorded process's group.
                clear(name.as_str(), cgroup.as_ref(), rec.as_ref().and_then(record::ProcessRecord::group)).await;
                record::remove(&t.run_dir, name.as_str());
            }
        }
    }
    stop_unconfigured(&t, &names).await;
    adopted
}

/// Adopts the recorded process of `name` if it is still that process, runs `spec` and is
/// healthy; stops it otherwise.
async fn adopt_or_stop(
    t: &Takeover,
    name: &ServiceName,
    spec: &ServiceSpec,
    rec: &record::ProcessRecord,
    cgroup: Option<ServiceCgroup>,
) -> Option<Adopted> {
    // The pidfd first, the identity check second: the pid cannot be reused in between.
    let fd = process::pidfd(rec.pid).ok()?;
    if !rec.is_running() {
        return None;
    }
    let Ok(exit) = process::watch_pidfd(rec.pid, fd) else {
        warn!(service = name.as_str(), pid = rec.pid, "cannot watch the process; not adopting it");
        return None;
    };
    let same = rec.spec_hash == record::spec_hash(spec);
    if same
        && adoptable(spec, rec.pid).await
        && let Some(generation) = adopt(t, name, rec, cgroup.clone(), exit.clone())
    {
        return Some(Adopted { service: name.clone(), generation, exit });
    }
    let why = if same { "it does not pass its ready check" } else { "its definition changed" };
    warn!(service = name.as_str(), pid = rec.pid, reason = why, "stopping a process an earlier warden left");
    let stop = process::Stop {
        pid: rec.pid,
        exit,
        grace: spec.stop_grace,
        force: false,
        signal: process::signal_of(spec.stop_signal),
        cgroup: cgroup.as_ref(),
    };
    process::stop(stop).await;
    None
}

/// Takes over a running process as the service's current one (not during shutdown: what
/// shutdown did not see would be left running); its generation.
fn adopt(
    t: &Takeover,
    name: &ServiceName,
    rec: &record::ProcessRecord,
    cgroup: Option<ServiceCgroup>,
    exit: watch::Receiver<Option<ExitInfo>>,
) -> Option<u64> {
    let mut table = t.table.lock();
    if table.shutting_down {
        return None;
    }
    let e = table.services.get_mut(name)?;
    e.generation += 1;
    let generation = e.generation;
    e.pid = Some(rec.pid);
    e.start_ticks = Some(rec.start_ticks);
    e.state = warden_core::service::ServiceState::Running;
    e.ready_once = true;
    e.ready_at = Some(Instant::now());
    e.started_at = Some(Instant::now());
    e.started_unix_ms = Some(rec.started_unix_ms);
    e.exit = Some(exit);
    e.cgroup = cgroup;
    drop(table);
    info!(service = name.as_str(), pid = rec.pid, "adopted the running process an earlier warden started");
    Some(generation)
}

/// Stops what services no longer in the config left: their recorded processes and their
/// cgroups, which are then removed.
async fn stop_unconfigured(t: &Takeover, configured: &[ServiceName]) {
    let configured: BTreeSet<&str> = configured.iter().map(ServiceName::as_str).collect();
    let mut gone: BTreeSet<String> = record::services(&t.run_dir).into_iter().collect();
    gone.extend(t.containment.existing_services());
    gone.retain(|s| !configured.contains(s.as_str()));
    for service in gone {
        let cgroup = t.containment.service(&service);
        if let Some(rec) = record::read(&t.run_dir, &service)
            && let Ok(fd) = process::pidfd(rec.pid)
            && rec.is_running()
            && let Ok(exit) = process::watch_pidfd(rec.pid, fd)
        {
            warn!(service, pid = rec.pid, "stopping a process of a service no longer in the config");
            let stop = process::Stop {
                pid: rec.pid,
                exit,
                grace: UNKNOWN_SERVICE_GRACE,
                force: false,
                signal: Signal::SIGTERM,
                cgroup: cgroup.as_ref(),
            };
            process::stop(stop).await;
        }
        let group = record::read(&t.run_dir, &service).and_then(|r| r.group());
        clear(&service, cgroup.as_ref(), group).await;
        if let Some(cg) = &cgroup {
            cg.remove();
        }
        record::remove(&t.run_dir, &service);
    }
}

/// Whether a left-over process may be adopted: it passes its ready check (a few tries) or,
/// without one, is simply alive and not stopped.
async fn adoptable(spec: &ServiceSpec, pid: u32) -> bool {
    if process::state(pid).is_none_or(|s| matches!(s, 'T' | 't' | 'Z')) {
        return false;
    }
    let Some(check) = spec.ready.as_ref() else { return true };
    let client = super::checks::http_client();
    let deadline = Instant::now() + Duration::from_secs(3);
    for _ in 0..3 {
        if super::checks::ready(&client, check, ADOPT_CHECK_TIMEOUT).await.is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
