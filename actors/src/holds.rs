//! The holds on automatic repair (`warden_core::holds`), kept in the data dir and shared:
//! the executor asks before every tier 2+ step, the incident manager before it starts a
//! repair, the alerter before it pages about a service in maintenance, the API shows and
//! changes them. Every change is written (synced) before it counts, so a restart of warden
//! neither forgets a pause nor closes an open breaker.

use crate::addr::Addr;
use crate::data_dir::DataDir;
use crate::governance::audit_writer::AuditWriter;
use crate::guardian::probe_board::ProbeBoard;
use crate::guardian::service_table::ServiceTable;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use warden_core::audit::{AuditActor, AuditRecord, DecisionKind, EntryKind, OutcomeKind};
use warden_core::config::{NodeConfig, ServiceName};
use warden_core::holds::{Hold, HoldKind, Holds, independent_failures};
use warden_core::probe::ProbeState;
use warden_core::service::ServiceState;

/// The node's holds, shared.
#[derive(Debug, Clone)]
pub struct HoldBoard {
    inner: Arc<Mutex<Holds>>,
    file: PathBuf,
}

impl HoldBoard {
    /// The holds kept in `data_dir` (none when it has none). A file that cannot be read
    /// is said in the log and kept aside; healing then starts with no holds.
    pub fn open(data_dir: &DataDir) -> Self {
        let file = data_dir.holds_file();
        let holds = match std::fs::read_to_string(&file) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                let aside = file.with_extension(format!("unreadable-{}", warden_core::time::now_unix_ms()));
                let _ = std::fs::rename(&file, &aside);
                tracing::error!(file = %file.display(), kept = %aside.display(), error = %e, "alert: the holds on healing cannot be read; starting without them");
                Holds::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Holds::default(),
            Err(e) => {
                tracing::error!(file = %file.display(), error = %e, "alert: the holds on healing cannot be read; starting without them");
                Holds::default()
            }
        };
        Self { inner: Arc::new(Mutex::new(holds)), file }
    }

    /// A board kept nowhere (tests of actors).
    pub fn in_memory() -> Self {
        Self { inner: Arc::default(), file: PathBuf::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Holds> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hold that stops automatic repair of `service` now, if any.
    pub fn blocking(&self, service: &ServiceName) -> Option<Hold> {
        self.lock().blocking(service, warden_core::time::now_unix_ms()).cloned()
    }

    /// The kinds of the holds on `service` now (its own and the node's).
    pub fn kinds_on(&self, service: &ServiceName) -> Vec<HoldKind> {
        self.lock().kinds_on(service, warden_core::time::now_unix_ms())
    }

    /// Whether `service` is in maintenance now (no alerts about it).
    pub fn in_maintenance(&self, service: &ServiceName) -> bool {
        self.lock().in_maintenance(service, warden_core::time::now_unix_ms())
    }

    /// The holds in force now.
    pub fn active(&self) -> Vec<Hold> {
        self.lock().active(warden_core::time::now_unix_ms()).into_iter().cloned().collect()
    }

    /// Whether the breaker is open.
    pub fn breaker_open(&self) -> bool {
        self.lock().breaker_open()
    }

    /// Changes the holds with `f` and writes them (synced) before anyone sees the change;
    /// a write that fails changes nothing.
    pub fn update<R>(&self, f: impl FnOnce(&mut Holds) -> R) -> Result<R, String> {
        let mut holds = self.lock();
        let mut next = holds.clone();
        let r = f(&mut next);
        if next != *holds {
            self.write(&next)?;
            *holds = next;
        }
        Ok(r)
    }

    /// Changes the holds with `f` at once, in one step with its decision, and writes them;
    /// a write that fails is said (and returned), and the change holds in memory anyway: a
    /// hold that stops repairs must not wait on a disk.
    pub fn update_kept<R>(&self, f: impl FnOnce(&mut Holds) -> R) -> (R, Option<String>) {
        let mut holds = self.lock();
        let mut next = holds.clone();
        let r = f(&mut next);
        let mut unkept = None;
        if next != *holds {
            if let Err(e) = self.write(&next) {
                tracing::error!(error = e, "alert: cannot keep the holds across a restart of warden; they hold now");
                unkept = Some(e);
            }
            *holds = next;
        }
        (r, unkept)
    }

    fn write(&self, holds: &Holds) -> Result<(), String> {
        if self.file.as_os_str().is_empty() {
            return Ok(());
        }
        let text = serde_json::to_vec_pretty(holds).map_err(|e| e.to_string())?;
        crate::private_file::write(&self.file, &text, None)
            .map_err(|e| format!("cannot write {}: {e}", self.file.display()))
    }
}

/// Services failing now, for the breaker: backing off, quarantined, or running with a
/// probe of theirs down, or whose last two checks or more failed in a streak that began
/// after it was ready (a hang seen by its checks counts before its probe's threshold: the
/// breaker must be open before the first repair of many acts; a check that failed while
/// the service was still coming up, or a single blip, does not). Not those in
/// maintenance, nor those stopped on purpose.
fn failing_now(table: &ServiceTable, board: &ProbeBoard, holds: &HoldBoard) -> Vec<ServiceName> {
    let probes = board.snapshot();
    let now_unix = warden_core::time::now_unix_ms();
    let t = table.lock();
    t.services
        .iter()
        .filter(|(name, e)| {
            if matches!(e.state, ServiceState::Backoff | ServiceState::Quarantined) {
                return true;
            }
            let Some(ready) = e.ready_at.filter(|_| e.state == ServiceState::Running) else { return false };
            let ready_unix = now_unix.saturating_sub(ready.elapsed().as_millis() as u64);
            probes.iter().filter(|p| p.target == **name).any(|p| {
                p.state == ProbeState::Down
                    || (p.consecutive_failures >= 2 && p.failing_since_unix_ms.is_some_and(|s| s >= ready_unix))
            })
        })
        .map(|(name, _)| name.clone())
        .filter(|name| !holds.in_maintenance(name))
        .collect()
}

/// The services failing now that no failing dependency explains (what the breaker counts).
pub fn failing_roots(
    config: &NodeConfig,
    table: &ServiceTable,
    board: &ProbeBoard,
    holds: &HoldBoard,
) -> Vec<ServiceName> {
    let failing = failing_now(table, board, holds);
    let deps = |s: &ServiceName| {
        config.services.iter().find(|x| x.name == *s).map(|x| x.depends_on.clone()).unwrap_or_default()
    };
    independent_failures(&failing, deps).into_iter().cloned().collect()
}

/// Opens the breaker when more services fail at once than `healing.max_unhealthy`
/// allows, counting only failures no failing dependency explains (and not only those an
/// operator resumed healing for); says why, on the audit trail and in one alert. The
/// decision and the hold are one step: of two callers at once, one opens it. Whether it
/// opened now (`false` while it is open already or healing is off).
pub async fn trip_breaker(
    config: &NodeConfig,
    table: &ServiceTable,
    board: &ProbeBoard,
    holds: &HoldBoard,
    audit: &Addr<AuditWriter>,
) -> bool {
    if !config.healing.enabled {
        return false;
    }
    let roots = failing_roots(config, table, board, holds);
    let total = config.services.len();
    let limit = config.healing.max_unhealthy;
    let names: Vec<String> = roots.iter().map(|s| format!("`{s}`")).collect();
    let reason = format!(
        "{} of {total} services fail at once ({}), more than healing.max_unhealthy {}: a common cause is likely",
        roots.len(),
        names.join(", "),
        limit.describe()
    );
    let now_unix_ms = warden_core::time::now_unix_ms();
    let (opened, _) = holds.update_kept(|h| {
        let due = h.breaker_due(limit, total, &roots, now_unix_ms);
        if due {
            h.set(Hold {
                kind: HoldKind::Breaker,
                service: None,
                since_unix_ms: now_unix_ms,
                until_unix_ms: None,
                by: "system".into(),
                reason: reason.clone(),
            });
        }
        due
    });
    if !opened {
        return false;
    }
    tracing::error!(reason, "alert: circuit breaker open: automatic repair stops until an operator resumes it");
    let record = AuditRecord {
        kind: EntryKind::Control,
        actor: AuditActor::System,
        action: "open_breaker".into(),
        tier: 1,
        target: "node".into(),
        rationale: reason,
        decision: DecisionKind::Deny,
        outcome: Some(OutcomeKind::Succeeded),
        detail: "automatic tier 2+ repairs stop until an operator resumes healing".into(),
        incident_id: None,
        run_id: None,
    };
    // A trail that cannot be written refuses tier 2+ anyway; the breaker holds either way.
    if let Err(e) = audit.append(record).await {
        tracing::warn!(error = %e, "cannot audit the breaker opening");
    }
    true
}
