//! Detection: the rule of each failure mode, as plain functions over what is known now.
//!
//! Two kinds of signal reach the rules. Probe events (edge-triggered, from the probe
//! actors; judged again every tick from the probe board) carry the check's layer, kind and
//! why it failed. [`ServiceFacts`] (level-triggered, gathered every tick by the detector
//! actors from the service table, the service's cgroup and the filesystem) carry its state,
//! its last exit, who holds its port, its memory against its limit, the files it needs and
//! the free space under the node's data dir.
//!
//! Some modes are causes and some are symptoms. A service whose port a stranger holds, whose
//! config file is gone or whose credentials are refused also fails its health checks and
//! may crash-loop; [`explained_by`] says which cause explains a symptom on the same service,
//! and which failing dependency or lower layer explains it, so one fault opens one incident
//! at the cause and the symptoms are suppressed and linked to it.

use crate::config::{HealingConfig, Layer, ServiceName, ServiceRole};
use crate::diagnose::{Cause, EX_TEMPFAIL};
use crate::incident::Finding;
use crate::mode::FailureMode;
use crate::probe::{Failure, ProbeEvent};
use crate::service::ServiceState;

/// Modes with a detection rule in this build: all ten.
pub const IMPLEMENTED: &[FailureMode] = &FailureMode::ALL;

/// Kinds of L7 check that ask the target process itself in its own protocol: no answer
/// from one of them while the process runs is a hang. A DNS check asks a resolver, which
/// is seldom the target, so its timeout says nothing about the target's process.
const OWN_PROTOCOL: &[&str] = &["http", "ollama", "line", "postgres"];

/// sysexits' EX_CONFIG: the conventional exit code of a program whose configuration is
/// missing or invalid (the demo api uses it, as do many daemons).
pub const EX_CONFIG: i32 = 78;

/// How many exits within the restart window make a crash loop worth an incident (the
/// supervisor restarts a single exit by itself).
pub const CRASH_LOOP_EXITS: usize = 3;

/// The thresholds of the level-triggered rules (from `healing:` in the node config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub memory_pressure_pct: u8,
    /// Full: under this share free *and* under `disk_min_free_bytes` free (a large disk
    /// with gigabytes left is not full at 4 %, a small volume is full with megabytes).
    pub disk_min_free_pct: u8,
    pub disk_min_free_bytes: u64,
}

impl Thresholds {
    /// The thresholds `healing:` sets.
    pub fn of(h: &HealingConfig) -> Self {
        Self {
            memory_pressure_pct: h.memory_pressure_pct,
            disk_min_free_pct: h.disk_min_free_pct,
            disk_min_free_bytes: h.disk_min_free_mb.saturating_mul(1 << 20),
        }
    }
}

/// How the last unexpected exit of a service ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitFacts {
    pub at_unix_ms: u64,
    pub code: Option<i32>,
    pub oom_killed: bool,
    /// As the API says it.
    pub described: String,
}

/// Free space of a filesystem, and what of the service's takes the most of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskFacts {
    pub path: String,
    pub free_bytes: u64,
    pub total_bytes: u64,
    /// Bytes on it of the service's data, logs, temporary files and snapshots.
    pub usage: DiskUsage,
}

/// Where a service's bytes are, on one filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskUsage {
    pub data: u64,
    pub logs: u64,
    pub temp: u64,
    pub snapshots: u64,
}

impl DiskUsage {
    /// The cause a full disk has, by what takes the most room (data when nothing is known).
    pub fn cause(&self) -> Cause {
        let by = [
            (self.logs, Cause::DiskFullOfLogs),
            (self.temp, Cause::DiskFullOfTemp),
            (self.snapshots, Cause::DiskFullOfSnapshots),
        ];
        by.into_iter().filter(|(b, _)| *b > self.data).max_by_key(|(b, _)| *b).map_or(Cause::DiskFullOfData, |(_, c)| c)
    }
}

/// The node's memory as the kernel reports it (`/proc/meminfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeMemory {
    pub total_bytes: u64,
    /// `MemAvailable`: what can be had without swapping.
    pub available_bytes: u64,
}

/// A condition told to a person once when it begins and once when it ends, changed only
/// after `agree` looks in a row disagree with what was told (a passing spike is no page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounced {
    agree: u32,
    told: bool,
    streak: u32,
}

impl Debounced {
    pub fn new(agree: u32) -> Self {
        Self { agree: agree.max(1), told: false, streak: 0 }
    }

    /// One look: `Some(now)` when what is told changes to `now`.
    pub fn look(&mut self, now: bool) -> Option<bool> {
        self.streak = if now == self.told { 0 } else { self.streak + 1 };
        if self.streak < self.agree {
            return None;
        }
        self.streak = 0;
        self.told = now;
        Some(now)
    }
}

/// Whose a process is, of `services` (name, the pid it was started as): a service's own
/// process, or one of its process group (each service starts as a group leader).
pub fn owner_of(pid: i32, pgrp: i32, services: &[(String, Option<u32>)]) -> Option<&str> {
    services
        .iter()
        .find(|(_, sp)| sp.is_some_and(|sp| i64::from(sp) == i64::from(pid) || i64::from(sp) == i64::from(pgrp)))
        .map(|(name, _)| name.as_str())
}

/// Whether the node's memory is low: its available memory under `min_pct` of the total
/// *and* under `min_bytes` (a large machine with gigabytes left is not low at 4 %, a small
/// one is low with a few hundred megabytes), as `healing.node_memory_min_available_*` set.
pub fn node_memory_low(m: NodeMemory, min_pct: u8, min_bytes: u64) -> bool {
    m.total_bytes > 0
        && u128::from(m.available_bytes) * 100 < u128::from(m.total_bytes) * u128::from(min_pct)
        && m.available_bytes < min_bytes
}

/// How long after an OOM kill it is still a finding (longer than a detector's tick).
pub const OOM_EXIT_RECENT_MS: u64 = 10_000;

/// What one OOM kill of `f`'s last exit is known by, if its last exit was one: a detector
/// reports each kill once, not again for as long as it stays recent.
pub fn oom_exit_key(f: &ServiceFacts) -> Option<String> {
    f.last_exit.as_ref().filter(|e| e.oom_killed).map(|e| format!("oom-exit:{}:{}", f.service, e.at_unix_ms))
}

/// What the detectors know of one service now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFacts {
    pub service: ServiceName,
    pub role: Option<ServiceRole>,
    pub state: ServiceState,
    pub now_unix_ms: u64,
    pub started_unix_ms: Option<u64>,
    /// Starting past its startup deadline.
    pub slow_boot: bool,
    pub startup_deadline_ms: u64,
    pub last_exit: Option<ExitFacts>,
    /// Unexpected exits within its restart window.
    pub recent_exits: usize,
    /// Another process holds a port of it (who and which).
    pub waiting_for_port: Option<String>,
    /// Bytes its cgroup uses and its limit.
    pub memory: Option<(u64, u64)>,
    /// Processes of its cgroup the kernel's OOM killer killed since its process started
    /// (a worker or helper; the service itself may live on).
    pub oom_kills: u64,
    /// Files it needs (its `files:`) that are not there.
    pub missing_files: Vec<String>,
    /// The node's data dir, where the services' data, logs and snapshots live.
    pub disk: Option<DiskFacts>,
    /// What its last log lines say of why it exited (read only while it is not running).
    pub log_says: Option<crate::logcause::LogFinding>,
}

/// The rule of `mode` applied to one probe event, given the target's state and role.
pub fn assess(
    mode: FailureMode,
    event: &ProbeEvent,
    service_state: Option<ServiceState>,
    role: Option<ServiceRole>,
) -> Option<Finding> {
    let ProbeEvent::Down { probe, target, layer, kind, failure, consecutive, first_failure_unix_ms, .. } = event else {
        return None;
    };
    // A service not started yet (waiting for its dependencies: its files are not even
    // written) or stopped on purpose fails its probes as expected; nothing to repair.
    if matches!(service_state, Some(ServiceState::Pending | ServiceState::Stopping | ServiceState::Stopped)) {
        return None;
    }
    let running = service_state == Some(ServiceState::Running);
    let finding = |evidence: String| {
        Some(Finding {
            mode,
            service: target.clone(),
            evidence,
            first_sign_unix_ms: *first_failure_unix_ms,
            cause: if *layer <= Layer::L3 { Cause::Unreachable } else { probe_cause(mode, kind, failure) },
            persists: false,
        })
    };
    let said = || format!("probe `{probe}` ({}, {kind}): {consecutive} failed checks: {failure}", layer.as_str());
    match mode {
        // A process that is up (running, not restarting) yet its own protocol gets no
        // answer. A refused connection is a dead process, which the supervisor restarts.
        FailureMode::ApiTimeout
            if role.is_none() && running && *failure == Failure::Timeout && OWN_PROTOCOL.contains(kind) =>
        {
            finding(format!(
                "probe `{probe}`: {consecutive} consecutive checks got no answer within the timeout while the process is running"
            ))
        }
        // A database or model server that runs but does not serve: frozen, hung, answering
        // garbage, or failing its own integrity check. The credentials, the network and a
        // stranger on its port are other modes.
        FailureMode::DatabaseUnavailable | FailureMode::ModelServerDown
            if role == Some(role_of(mode)) && running && *layer >= Layer::L4 && serves_badly(failure) =>
        {
            finding(said())
        }
        // At L2 and L3 no answer at all is the path, not the far end: a cut link often
        // shows as silence (the packets leave by another route and are lost).
        FailureMode::NetworkUnreachable
            if matches!(
                failure,
                Failure::NetworkUnreachable(_) | Failure::HostUnreachable(_) | Failure::Link(_) | Failure::Dns(_)
            ) || (*layer <= Layer::L3 && *failure == Failure::Timeout) =>
        {
            finding(said())
        }
        // Only a check that logs in (postgres, a line exchange with a password file) can
        // have its login refused; an HTTP check sends no credentials, so its 401 or 403 is
        // the server refusing everyone (a file its workers cannot read), not a bad secret.
        FailureMode::InvalidCredentials if matches!(failure, Failure::Auth(_)) => finding(said()),
        FailureMode::PortInUse if matches!(failure, Failure::Stranger { .. }) => finding(said()),
        _ => None,
    }
}

/// Whether a filesystem is full by `t`.
pub fn disk_low(d: &DiskFacts, t: Thresholds) -> bool {
    d.total_bytes > 0
        && d.free_bytes < t.disk_min_free_bytes
        && d.free_bytes.saturating_mul(100) < d.total_bytes.saturating_mul(u64::from(t.disk_min_free_pct))
}

/// What a failed check says of the cause.
fn probe_cause(mode: FailureMode, kind: &str, failure: &Failure) -> Cause {
    match failure {
        Failure::Timeout => Cause::Hung,
        // The ollama check answers a model it cannot find in the list with a response failure.
        Failure::Response(_) if kind == "ollama" => Cause::ModelMissing,
        Failure::Response(text) if text.to_ascii_lowercase().contains("corrupt") => Cause::Corrupt,
        // Only a check that logs in can be refused a login: an HTTP check sends no
        // credentials, so its 401 or 403 says the server refuses everyone (a file its
        // workers cannot read, a rule), not that a password went bad.
        Failure::Auth(_) => Cause::CredentialsRefused,
        Failure::Tls(_) => Cause::Tls,
        Failure::Stranger { .. } => Cause::PortStranger,
        Failure::NetworkUnreachable(_) | Failure::HostUnreachable(_) | Failure::Link(_) => Cause::Unreachable,
        Failure::Dns(_) => Cause::NameResolution,
        _ if mode == FailureMode::ApiTimeout => Cause::Hung,
        _ => Cause::Unknown,
    }
}

fn role_of(mode: FailureMode) -> ServiceRole {
    if mode == FailureMode::ModelServerDown { ServiceRole::ModelServer } else { ServiceRole::Database }
}

/// A failure that says the server does not serve (as opposed to refusing a login, being
/// unreachable through the network, or someone else holding its port).
fn serves_badly(failure: &Failure) -> bool {
    matches!(failure, Failure::Timeout | Failure::Response(_) | Failure::Other(_))
        || matches!(failure, Failure::Status(s) if *s >= 500)
}

/// The rule of `mode` applied to what is known of a service now.
pub fn assess_facts(mode: FailureMode, f: &ServiceFacts, t: Thresholds) -> Option<Finding> {
    let finding = |evidence: String, onset: Option<u64>, cause: Cause| {
        Some(Finding {
            mode,
            service: f.service.clone(),
            evidence,
            first_sign_unix_ms: onset.unwrap_or(f.now_unix_ms),
            cause,
            persists: false,
        })
    };
    let exit_onset = f.last_exit.as_ref().map(|e| e.at_unix_ms);
    let crash_looping = f.recent_exits >= CRASH_LOOP_EXITS
        && matches!(f.state, ServiceState::Backoff | ServiceState::Quarantined | ServiceState::Starting);
    match mode {
        FailureMode::PortInUse => {
            let holder = f.waiting_for_port.as_ref()?;
            finding(format!("cannot start: {holder}"), exit_onset, Cause::PortStranger)
        }
        FailureMode::SlowBoot if f.state == ServiceState::Starting && f.slow_boot => finding(
            format!("still starting past its startup deadline of {} ms", f.startup_deadline_ms),
            f.started_unix_ms.map(|s| s + f.startup_deadline_ms),
            Cause::SlowStart,
        ),
        FailureMode::OutOfMemory => {
            // An OOM kill is an event: seen for a while after it, even once the supervisor has
            // started the service again (it may do so before a detector's tick); the
            // detector reports each kill once ([`oom_exit_key`]).
            let oom = f
                .last_exit
                .as_ref()
                .filter(|e| e.oom_killed && f.now_unix_ms.saturating_sub(e.at_unix_ms) < OOM_EXIT_RECENT_MS);
            if let Some(e) = oom {
                return finding(
                    format!("{} ({} exits in its window)", e.described, f.recent_exits),
                    Some(e.at_unix_ms),
                    Cause::OomKilled,
                );
            }
            if f.oom_kills > 0 {
                return finding(
                    format!(
                        "the kernel's OOM killer killed {} process(es) in its cgroup (memory limit reached)",
                        f.oom_kills
                    ),
                    None,
                    Cause::OomKilled,
                );
            }
            let (used, limit) = f.memory?;
            (limit > 0 && used.saturating_mul(100) >= limit.saturating_mul(u64::from(t.memory_pressure_pct))).then(
                || Finding {
                    mode,
                    service: f.service.clone(),
                    evidence: format!(
                        "uses {} MiB of its {} MiB memory limit (over {} %)",
                        used >> 20,
                        limit >> 20,
                        t.memory_pressure_pct
                    ),
                    first_sign_unix_ms: f.now_unix_ms,
                    cause: Cause::MemoryPressure,
                    persists: false,
                },
            )
        }
        FailureMode::DiskFull => {
            let d = f.disk.as_ref()?;
            disk_low(d, t).then(|| Finding {
                mode,
                service: f.service.clone(),
                evidence: format!(
                    "{} has {} KiB free of {} KiB (under {} % and {} MiB)",
                    d.path,
                    d.free_bytes >> 10,
                    d.total_bytes >> 10,
                    t.disk_min_free_pct,
                    t.disk_min_free_bytes >> 20
                ),
                first_sign_unix_ms: f.now_unix_ms,
                cause: d.usage.cause(),
                persists: false,
            })
        }
        FailureMode::MissingConfig => {
            let stopped = matches!(f.state, ServiceState::Stopped | ServiceState::Stopping | ServiceState::Pending);
            if !f.missing_files.is_empty() && !stopped {
                return finding(format!("missing: {}", f.missing_files.join(", ")), None, Cause::FileMissing);
            }
            let e = f.last_exit.as_ref().filter(|_| f.state != ServiceState::Running)?;
            // Its log names the file or the error where the exit status cannot (nginx and
            // PostgreSQL exit 1 for a bad config as for anything else).
            match f.log_says.as_ref().filter(|l| matches!(l.cause, Cause::ConfigInvalid | Cause::FileMissing)) {
                Some(l) => finding(
                    format!("exits on a config error: {}; its log: {}", e.described, l.line),
                    Some(e.at_unix_ms),
                    l.cause,
                ),
                None if e.code == Some(EX_CONFIG) => finding(
                    format!("exits on a config error: {}", e.described),
                    Some(e.at_unix_ms),
                    Cause::ConfigInvalid,
                ),
                None => None,
            }
        }
        FailureMode::DatabaseUnavailable | FailureMode::ModelServerDown
            if f.role == Some(role_of(mode)) && crash_looping =>
        {
            let why = f.last_exit.as_ref().map_or("exit status unknown", |e| e.described.as_str());
            let said = f.log_says.as_ref().filter(|l| matches!(l.cause, Cause::Corrupt | Cause::LockHeld));
            let cause = match (said, f.last_exit.as_ref().and_then(|e| e.code)) {
                (Some(l), _) => l.cause,
                (None, Some(EX_TEMPFAIL)) => Cause::LockHeld,
                _ => Cause::CrashLoop,
            };
            let log = said.map(|l| format!("; its log: {}", l.line)).unwrap_or_default();
            finding(
                format!("crash loop: {} exits in its restart window; last: {why}{log}", f.recent_exits),
                exit_onset,
                cause,
            )
        }
        _ => None,
    }
}

/// What explains a finding other than its own mode, so it is suppressed: a cause on the
/// same service (a held port, a missing file, refused credentials, a cut network, memory),
/// or a dependency that is failing. `causes` are the findings of those modes on the same
/// service now; `failing_dependencies` the service's dependencies that are not serving.
pub fn explained_by(finding: &Finding, causes: &[Finding], failing_dependencies: &[ServiceName]) -> Option<String> {
    if let Some(c) = causes.iter().find(|c| c.service == finding.service && rank(c.mode) < rank(finding.mode)) {
        return Some(format!("explained by {} on `{}`: {}", c.mode.as_str(), c.service, c.evidence));
    }
    // A dependency that is down explains the dependent's failures, except those only the
    // dependent itself can have.
    if explained_by_dependency(finding.mode)
        && let Some(dep) = failing_dependencies.first()
    {
        return Some(format!("explained by its dependency `{dep}`, which is failing"));
    }
    None
}

/// Whether a failing dependency explains a failure of this mode (a dependent that does not
/// answer while its database is frozen), rather than it being the dependent's own (its
/// files, its port, its memory, its credentials).
pub fn explained_by_dependency(mode: FailureMode) -> bool {
    rank(mode) >= rank(FailureMode::DatabaseUnavailable)
}

/// Lower explains higher: the network under everything, then what stops a process from
/// starting or serving at all, then what it lacks, then the symptoms.
fn rank(mode: FailureMode) -> u8 {
    match mode {
        FailureMode::NetworkUnreachable => 0,
        FailureMode::DiskFull => 1,
        FailureMode::PortInUse => 2,
        FailureMode::MissingConfig => 3,
        FailureMode::OutOfMemory => 4,
        FailureMode::InvalidCredentials => 5,
        FailureMode::DatabaseUnavailable => 6,
        FailureMode::ModelServerDown => 6,
        FailureMode::SlowBoot => 7,
        FailureMode::ApiTimeout => 8,
    }
}

/// How far apart the first signs of the two ends of one cut may be.
pub const SAME_CUT_WITHIN_MS: u64 = 5_000;

/// Whether failures on a service and on a service that depends on it directly are one
/// fault seen from both ends (the path between them cut): both network unreachable, first
/// seen within [`SAME_CUT_WITHIN_MS`] of each other. A dependency cut well before or after
/// is a fault of its own.
pub fn one_cut(a: FailureMode, a_first_sign_ms: u64, b: FailureMode, b_first_sign_ms: u64) -> bool {
    a == FailureMode::NetworkUnreachable
        && b == FailureMode::NetworkUnreachable
        && a_first_sign_ms.abs_diff(b_first_sign_ms) <= SAME_CUT_WITHIN_MS
}

/// Whether a fault of mode `cause` on a service explains a failure of mode `symptom` on it.
pub fn explains(cause: FailureMode, symptom: FailureMode) -> bool {
    rank(cause) < rank(symptom)
}

/// Modes that can explain others (and so are gathered for [`explained_by`]).
pub fn causes_of(mode: FailureMode) -> impl Iterator<Item = FailureMode> {
    FailureMode::ALL.into_iter().filter(move |m| rank(*m) < rank(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_condition_changes_only_after_looks_in_a_row_agree() {
        let mut d = Debounced::new(2);
        assert_eq!(d.look(true), None, "one look is a spike");
        assert_eq!(d.look(false), None, "and it passed");
        assert_eq!(d.look(true), None);
        assert_eq!(d.look(true), Some(true), "two in a row: told");
        assert_eq!(d.look(true), None, "told once");
        assert_eq!(d.look(false), None);
        assert_eq!(d.look(false), Some(false), "over: told once");
    }

    #[test]
    fn test_a_process_belongs_to_the_service_it_was_started_as_or_its_group() {
        let services = vec![("db".to_string(), Some(100)), ("api".to_string(), None)];
        assert_eq!(owner_of(100, 100, &services), Some("db"));
        assert_eq!(owner_of(140, 100, &services), Some("db"), "a child in its group");
        assert_eq!(owner_of(200, 200, &services), None, "not run by warden");
    }

    #[test]
    fn test_node_memory_is_low_under_both_the_share_and_the_floor() {
        let gib = 1u64 << 30;
        let m = |total, available| NodeMemory { total_bytes: total, available_bytes: available };
        assert!(node_memory_low(m(8 * gib, 200 << 20), 5, 256 << 20), "200 MiB of 8 GiB");
        assert!(!node_memory_low(m(64 * gib, 2 * gib), 5, 256 << 20), "a large machine with gigabytes left");
        assert!(!node_memory_low(m(gib, 40 << 20), 5, 32 << 20), "over its floor");
        assert!(!node_memory_low(m(0, 0), 5, 256 << 20), "nothing read is not low");
        assert!(node_memory_low(m(24 * gib, 10 * gib), 99, 20 * gib), "thresholds raised: low under them");
    }

    #[test]
    fn test_one_cut_needs_both_ends_unreachable_and_seen_together() {
        let nu = FailureMode::NetworkUnreachable;
        assert!(one_cut(nu, 10_000, nu, 10_400));
        assert!(one_cut(nu, 10_400, nu, 10_000), "either end first");
        assert!(!one_cut(nu, 10_000, nu, 40_000), "a cut half a minute later is another fault");
        assert!(!one_cut(nu, 10_000, FailureMode::ApiTimeout, 10_000));
    }

    fn api() -> ServiceName {
        ServiceName::parse("api").expect("name")
    }

    fn down(failure: Failure) -> ProbeEvent {
        down_of("http", Layer::L7, failure)
    }

    fn down_of(kind: &'static str, layer: Layer, failure: Failure) -> ProbeEvent {
        ProbeEvent::Down {
            probe: "p".into(),
            target: api(),
            layer,
            kind,
            failure,
            consecutive: 2,
            first_failure_unix_ms: 5,
            last_failure_unix_ms: 6,
        }
    }

    fn facts(state: ServiceState) -> ServiceFacts {
        ServiceFacts {
            service: api(),
            role: None,
            state,
            now_unix_ms: 10_000,
            started_unix_ms: Some(1_000),
            slow_boot: false,
            startup_deadline_ms: 5_000,
            last_exit: None,
            recent_exits: 0,
            waiting_for_port: None,
            memory: None,
            oom_kills: 0,
            missing_files: vec![],
            disk: None,
            log_says: None,
        }
    }

    const T: Thresholds = Thresholds { memory_pressure_pct: 90, disk_min_free_pct: 5, disk_min_free_bytes: 1 << 20 };
    const RUNNING: Option<ServiceState> = Some(ServiceState::Running);

    #[test]
    fn test_api_timeout_needs_a_running_process_and_a_timeout() {
        let m = FailureMode::ApiTimeout;
        assert!(assess(m, &down(Failure::Timeout), RUNNING, None).is_some());
        assert!(
            assess(m, &down(Failure::Connect("refused".into())), RUNNING, None).is_none(),
            "dead process is not a hang"
        );
        assert!(assess(m, &down(Failure::Timeout), Some(ServiceState::Starting), None).is_none(), "booting");
        let up = ProbeEvent::Up { probe: "p".into(), target: api(), layer: Layer::L7 };
        assert!(assess(m, &up, RUNNING, None).is_none(), "recovery is not a failure");
        assert!(
            assess(m, &down_of("dns", Layer::L7, Failure::Timeout), RUNNING, None).is_none(),
            "a slow resolver is not a hung service"
        );
        assert!(assess(m, &down_of("postgres", Layer::L7, Failure::Timeout), RUNNING, None).is_some());
        assert!(
            assess(m, &down(Failure::Timeout), RUNNING, Some(ServiceRole::Database)).is_none(),
            "a hung database is mode 1, not 7"
        );
    }

    #[test]
    fn test_database_and_model_server_modes_follow_the_role() {
        let frozen = down_of("line", Layer::L7, Failure::Timeout);
        let db = Some(ServiceRole::Database);
        let model = Some(ServiceRole::ModelServer);
        assert!(assess(FailureMode::DatabaseUnavailable, &frozen, RUNNING, db).is_some());
        assert!(assess(FailureMode::DatabaseUnavailable, &frozen, RUNNING, model).is_none());
        assert!(assess(FailureMode::ModelServerDown, &frozen, RUNNING, model).is_some());
        let corrupt = down_of("line", Layer::L7, Failure::Response("ERR corrupt at offset 3".into()));
        let found = assess(FailureMode::DatabaseUnavailable, &corrupt, RUNNING, db).expect("corrupt");
        assert_eq!(found.cause, Cause::Corrupt, "diagnosed from the answer");
        assert_eq!(assess(FailureMode::DatabaseUnavailable, &frozen, RUNNING, db).map(|f| f.cause), Some(Cause::Hung));
        let refused = down_of("line", Layer::L7, Failure::Auth("ERR auth".into()));
        assert!(assess(FailureMode::DatabaseUnavailable, &refused, RUNNING, db).is_none(), "a login is mode 9");
        assert!(assess(FailureMode::InvalidCredentials, &refused, RUNNING, db).is_some());
        let silent = down_of("route", Layer::L3, Failure::Timeout);
        assert_eq!(
            assess(FailureMode::NetworkUnreachable, &silent, RUNNING, None).map(|f| f.cause),
            Some(Cause::Unreachable)
        );
        assert!(assess(FailureMode::ApiTimeout, &silent, RUNNING, None).is_none(), "an L3 probe is no hang");
        let l3 = down_of("route", Layer::L3, Failure::NetworkUnreachable("ENETUNREACH".into()));
        assert!(assess(FailureMode::DatabaseUnavailable, &l3, RUNNING, db).is_none());
        assert!(assess(FailureMode::NetworkUnreachable, &l3, RUNNING, db).is_some());
        let refused = down_of("postgres", Layer::L7, Failure::Auth("28P01".into()));
        assert!(assess(FailureMode::InvalidCredentials, &refused, RUNNING, None).is_some());
        for not_started in [ServiceState::Pending, ServiceState::Stopped] {
            assert!(
                assess(FailureMode::InvalidCredentials, &refused, Some(not_started), None).is_none(),
                "a service waiting for its dependencies has not written its credentials yet"
            );
        }
        for status in [401, 403] {
            let forbidden = down(Failure::Status(status));
            assert!(
                assess(FailureMode::InvalidCredentials, &forbidden, RUNNING, None).is_none(),
                "an HTTP check sends no credentials: {status} is no bad secret"
            );
        }
        assert!(assess(FailureMode::InvalidCredentials, &down(Failure::Status(503)), RUNNING, None).is_none());
    }

    #[test]
    fn test_finding_carries_first_sign() {
        let f = assess(FailureMode::ApiTimeout, &down(Failure::Timeout), RUNNING, None).expect("finding");
        assert_eq!((f.service.as_str(), f.first_sign_unix_ms), ("api", 5));
    }

    #[test]
    fn test_fact_rules() {
        let mut f = facts(ServiceState::Backoff);
        assert!(FailureMode::ALL.iter().all(|m| assess_facts(*m, &f, T).is_none()), "nothing known, nothing found");
        f.waiting_for_port = Some("port 8000 is held by pid 7 (nc)".into());
        assert!(assess_facts(FailureMode::PortInUse, &f, T).is_some());

        let mut f = facts(ServiceState::Starting);
        f.slow_boot = true;
        let slow = assess_facts(FailureMode::SlowBoot, &f, T).expect("slow boot");
        assert_eq!(slow.first_sign_unix_ms, 6_000, "onset: the deadline passing");

        let mut f = facts(ServiceState::Running);
        f.memory = Some((89 << 20, 100 << 20));
        assert!(assess_facts(FailureMode::OutOfMemory, &f, T).is_none());
        f.memory = Some((95 << 20, 100 << 20));
        assert!(assess_facts(FailureMode::OutOfMemory, &f, T).is_some());
        f.memory = Some((10 << 20, 100 << 20));
        f.oom_kills = 1;
        assert_eq!(
            assess_facts(FailureMode::OutOfMemory, &f, T).map(|f| f.cause),
            Some(Cause::OomKilled),
            "a helper killed by the kernel, the service alive"
        );
        let mut f = facts(ServiceState::Backoff);
        f.started_unix_ms = None;
        f.last_exit = Some(ExitFacts { at_unix_ms: 9_000, code: None, oom_killed: true, described: "OOM".into() });
        assert_eq!(assess_facts(FailureMode::OutOfMemory, &f, T).map(|f| f.first_sign_unix_ms), Some(9_000));

        let mut f = facts(ServiceState::Running);
        f.disk = Some(DiskFacts {
            path: "/d".into(),
            free_bytes: 4,
            total_bytes: 100,
            usage: DiskUsage { temp: 9, data: 2, ..DiskUsage::default() },
        });
        assert_eq!(
            assess_facts(FailureMode::DiskFull, &f, T).map(|f| f.cause),
            Some(Cause::DiskFullOfTemp),
            "diagnosed by what fills it"
        );
        f.disk = Some(DiskFacts { path: "/d".into(), free_bytes: 6, total_bytes: 100, usage: DiskUsage::default() });
        assert!(assess_facts(FailureMode::DiskFull, &f, T).is_none());
        f.disk = Some(DiskFacts {
            path: "/d".into(),
            free_bytes: 4 << 30,
            total_bytes: 100 << 30,
            usage: DiskUsage::default(),
        });
        assert!(assess_facts(FailureMode::DiskFull, &f, T).is_none(), "gigabytes free are not full at 4 %");

        let mut f = facts(ServiceState::Running);
        f.missing_files = vec!["/d/api.json".into()];
        assert!(assess_facts(FailureMode::MissingConfig, &f, T).is_some());
        f.state = ServiceState::Stopped;
        assert!(assess_facts(FailureMode::MissingConfig, &f, T).is_none(), "a stopped service needs nothing");
        let mut f = facts(ServiceState::Backoff);
        f.last_exit = Some(ExitFacts { at_unix_ms: 9_000, code: Some(78), oom_killed: false, described: "78".into() });
        assert!(assess_facts(FailureMode::MissingConfig, &f, T).is_some(), "EX_CONFIG");

        let mut f = facts(ServiceState::Backoff);
        f.role = Some(ServiceRole::Database);
        f.recent_exits = 2;
        assert!(assess_facts(FailureMode::DatabaseUnavailable, &f, T).is_none(), "the supervisor restarts an exit");
        f.recent_exits = 3;
        assert_eq!(assess_facts(FailureMode::DatabaseUnavailable, &f, T).map(|f| f.cause), Some(Cause::CrashLoop));
        // What it logged last names the cause an exit status cannot (PostgreSQL exits 1).
        f.last_exit = Some(ExitFacts { at_unix_ms: 9_000, code: Some(1), oom_killed: false, described: "1".into() });
        f.log_says = crate::logcause::classify(&["FATAL:  incorrect checksum in control file"], &[]);
        let found = assess_facts(FailureMode::DatabaseUnavailable, &f, T).expect("finding");
        assert_eq!(found.cause, Cause::Corrupt);
        assert!(found.evidence.contains("incorrect checksum"), "{}", found.evidence);
        f.log_says = crate::logcause::classify(&[r#"LOG:  syntax error in file "/p/postgresql.conf" line 1"#], &[]);
        assert_eq!(
            assess_facts(FailureMode::MissingConfig, &f, T).map(|f| f.cause),
            Some(Cause::ConfigInvalid),
            "a config error in its log, whatever its exit status"
        );
        f.log_says = None;
        f.last_exit = Some(ExitFacts { at_unix_ms: 9_000, code: Some(75), oom_killed: false, described: "75".into() });
        assert_eq!(
            assess_facts(FailureMode::DatabaseUnavailable, &f, T).map(|f| f.cause),
            Some(Cause::LockHeld),
            "EX_TEMPFAIL: its lock is taken"
        );
        assert!(assess_facts(FailureMode::ModelServerDown, &f, T).is_none(), "not a model server");
    }

    #[test]
    fn test_causes_explain_symptoms_and_dependencies_explain_dependents() {
        let of = |mode| Finding {
            mode,
            service: api(),
            evidence: "e".into(),
            first_sign_unix_ms: 1,
            cause: Cause::Unknown,
            persists: false,
        };
        let db = ServiceName::parse("db").expect("name");
        let timeout = of(FailureMode::ApiTimeout);
        assert!(explained_by(&timeout, &[], &[]).is_none());
        assert!(explained_by(&timeout, &[of(FailureMode::PortInUse)], &[]).is_some());
        assert!(explained_by(&of(FailureMode::PortInUse), &[of(FailureMode::ApiTimeout)], &[]).is_none());
        let why = explained_by(&timeout, &[], std::slice::from_ref(&db)).expect("dependency");
        assert!(why.contains("`db`"), "{why}");
        assert!(
            explained_by(&of(FailureMode::MissingConfig), &[], &[db]).is_none(),
            "a missing file is the service's own"
        );
        assert!(causes_of(FailureMode::NetworkUnreachable).next().is_none());
        assert!(causes_of(FailureMode::ApiTimeout).any(|m| m == FailureMode::PortInUse));
    }
}
