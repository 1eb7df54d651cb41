//! First, do no harm: whether an automatic step may act on a service, judged on evidence
//! gathered fresh at the moment of decision, never on the probe board as it stood.
//!
//! A step that disrupts a process (a restart, stop, signal, kill, quarantine, restore, a
//! switch that restarts it) runs only when the service's own checks fail now, or when the
//! finding is about the service itself in a way its checks cannot show (its memory, its
//! disk, a stranger on its port). A failing lower layer (its link, its route) or a failing
//! dependency is not mended by acting on the service: such a step is held. A service whose
//! own checks pass needs no repair: the run stops there, restored (or mitigated, when a
//! lower layer still fails). Every verdict says which rule decided it, for the audit trail.

use crate::config::{Layer, ProbeCheck, ProbeSpec};
use crate::diagnose::Cause;
use crate::playbook::{Primitive, Selector};

/// Whether an automatic kill may go to the processes a selector found, `all_own` when every
/// one is the service's (its processes, or leftovers of its program). Others only when the
/// finding is about them: a stranger on the service's port, a holder of its lock.
pub fn kill_allowed(select: &Selector, cause: Cause, all_own: bool) -> Result<(), String> {
    match (select, cause) {
        _ if all_own => Ok(()),
        (Selector::PortOwner { stranger: true, .. }, Cause::PortStranger) => Ok(()),
        (Selector::LockHolder { .. }, Cause::LockHeld) => Ok(()),
        _ => Err(format!(
            "{} finds processes that are not the service's own, and the finding ({}) does not name them",
            select.describe(),
            cause.as_str()
        )),
    }
}

/// Whether a probe checks the path to its service rather than the service itself: its
/// L2 and L3 checks (the link, the route), and a name lookup (a resolver answers it, not
/// the service). Every other probe of a service is one of its own checks.
pub fn checks_the_path(probe: &ProbeSpec) -> bool {
    probe.layer <= Layer::L3 || matches!(probe.check, ProbeCheck::Dns { .. })
}

/// Rounds of the service's own checks that must all pass, [`HEALTHY_SPACING`] apart,
/// before a repair is skipped as needless: one passing check may be a slow or flapping
/// service caught at a good moment (it answers now and then), and skipping its repair
/// leaves it broken. Five rounds a quarter second apart span more than a second.
pub const HEALTHY_ROUNDS: u32 = 5;
pub const HEALTHY_SPACING: std::time::Duration = std::time::Duration::from_millis(250);

/// What the service's own checks (its probes at L4 to L7, or its ready check) say now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Passing,
    /// The first check that failed, in words.
    Failing(String),
    /// It has no check of its own that can run here.
    Unknown,
}

/// What was checked just before the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    pub own: Health,
    /// Its L2/L3 checks (the path to it) that fail now, in words.
    pub lower_failing: Vec<String>,
    /// Its dependencies whose own checks fail now, in words.
    pub dependencies_failing: Vec<String>,
}

impl Evidence {
    /// Nothing known: no checks, nothing failing below or beside it.
    pub fn unknown() -> Self {
        Self { own: Health::Unknown, lower_failing: Vec::new(), dependencies_failing: Vec::new() }
    }
}

/// The guard's answer for one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The step may run; the rule that allowed it goes into the decision's rationale.
    Act { rule: String },
    /// The service's own checks pass now: there is nothing to repair on it.
    Healthy,
    /// Acting on the service would not mend the cause (it lies below or beside it): the
    /// step waits.
    Hold { reason: String },
}

/// Whether running `p` disturbs a running process: a restart, stop, signal, kill,
/// quarantine, a restore under it, or a setting applied by restarting it.
pub fn disrupts(p: &Primitive) -> bool {
    matches!(
        p,
        Primitive::SignalService { .. }
            | Primitive::RestartService { .. }
            | Primitive::StopService
            | Primitive::QuarantineService
            | Primitive::RestartDependents
            | Primitive::KillProcess { .. }
            | Primitive::RestoreDir { .. }
            | Primitive::SetPort { .. }
            | Primitive::SetEndpoint { .. }
    )
}

/// Causes that are about the service itself in a way its health checks do not show: a
/// service near its memory limit or with a helper killed by the kernel, a disk filling up,
/// a stranger on its port. Its checks may pass, and the repair is still due.
pub fn about_the_service_itself(cause: Cause) -> bool {
    matches!(
        cause,
        Cause::MemoryPressure
            | Cause::OomKilled
            | Cause::PortStranger
            | Cause::DiskFullOfData
            | Cause::DiskFullOfLogs
            | Cause::DiskFullOfTemp
            | Cause::DiskFullOfSnapshots
    )
}

/// Judges one automatic step of a repair of `cause` against fresh `evidence` about the
/// step's target.
pub fn judge(step: &Primitive, cause: Cause, evidence: &Evidence) -> Verdict {
    if !disrupts(step) {
        return Verdict::Act { rule: "it disturbs no running process".into() };
    }
    if about_the_service_itself(cause) {
        return Verdict::Act { rule: format!("the finding is about the service itself ({})", cause.as_str()) };
    }
    // A service that serves needs no repair, whatever fails below or beside it: the run
    // stops here, and a lower layer still failing then makes it a mitigation.
    if evidence.own == Health::Passing {
        return Verdict::Healthy;
    }
    // Going round a failing path or a failing upstream is the remedy for it, so neither
    // holds a re-route; everything else acting on the process cannot mend them.
    let reroute = matches!(step, Primitive::SetEndpoint { .. });
    if !reroute && let Some(below) = evidence.lower_failing.first() {
        return Verdict::Hold {
            reason: format!("a lower layer fails now ({below}): acting on the service cannot mend its path"),
        };
    }
    if !reroute && let Some(dep) = evidence.dependencies_failing.first() {
        return Verdict::Hold {
            reason: format!("its dependency fails now ({dep}): acting on the service cannot mend it"),
        };
    }
    match &evidence.own {
        Health::Passing => Verdict::Healthy,
        Health::Failing(what) if reroute => {
            Verdict::Act { rule: format!("its own checks fail now ({what}), and going round is the remedy") }
        }
        Health::Failing(what) => Verdict::Act { rule: format!("its own checks fail now ({what})") },
        Health::Unknown => Verdict::Act { rule: "it has no check of its own to consult".into() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::SignalName;

    fn evidence(own: Health, lower: &[&str], deps: &[&str]) -> Evidence {
        Evidence {
            own,
            lower_failing: lower.iter().map(|s| s.to_string()).collect(),
            dependencies_failing: deps.iter().map(|s| s.to_string()).collect(),
        }
    }

    const RESTART: Primitive = Primitive::RestartService { force: true };

    #[test]
    fn test_a_healthy_service_is_not_restarted_signalled_or_quarantined() {
        let ok = evidence(Health::Passing, &[], &[]);
        for step in [RESTART, Primitive::QuarantineService, Primitive::SignalService { signal: SignalName::Hup }] {
            assert_eq!(judge(&step, Cause::Hung, &ok), Verdict::Healthy, "{step:?}");
        }
        assert!(
            matches!(judge(&RESTART, Cause::Hung, &evidence(Health::Failing("x".into()), &[], &[])), Verdict::Act { rule } if rule.contains("fail now"))
        );
    }

    #[test]
    fn test_a_failing_lower_layer_holds_a_restart_but_not_a_reroute() {
        let cut = evidence(Health::Failing("timeout".into()), &["app-link (l2): down"], &[]);
        assert!(matches!(judge(&RESTART, Cause::Hung, &cut), Verdict::Hold { reason } if reason.contains("app-link")));
        let failover = Primitive::SetEndpoint { upstream: None, dependents: false };
        assert!(matches!(judge(&failover, Cause::Unreachable, &cut), Verdict::Act { .. }));
        let mended = evidence(Health::Passing, &["app-link (l2): down"], &[]);
        assert_eq!(judge(&failover, Cause::Unreachable, &mended), Verdict::Healthy, "healthy: nothing to re-route");
        assert_eq!(judge(&RESTART, Cause::Unreachable, &mended), Verdict::Healthy, "serving: nothing to restart");
    }

    #[test]
    fn test_a_failing_dependency_holds_acting_on_the_dependent() {
        let dep = evidence(Health::Failing("503".into()), &[], &["db: timeout"]);
        assert!(matches!(judge(&RESTART, Cause::Hung, &dep), Verdict::Hold { reason } if reason.contains("db")));
    }

    #[test]
    fn test_findings_about_the_service_itself_act_whatever_its_checks_say() {
        let ok = evidence(Health::Passing, &["l3"], &[]);
        assert!(
            matches!(judge(&RESTART, Cause::MemoryPressure, &ok), Verdict::Act { rule } if rule.contains("memory_pressure"))
        );
        assert!(matches!(
            judge(&Primitive::SignalService { signal: SignalName::Usr1 }, Cause::DiskFullOfData, &ok),
            Verdict::Act { .. }
        ));
    }

    #[test]
    fn test_a_kill_reaches_others_only_when_the_finding_names_them() {
        let stranger = Selector::PortOwner { port: None, stranger: true };
        let lock = Selector::LockHolder { path: "${lock_file}".into() };
        assert!(kill_allowed(&stranger, Cause::PortStranger, false).is_ok());
        assert!(kill_allowed(&stranger, Cause::Hung, false).is_err(), "a hang names no stranger");
        assert!(kill_allowed(&lock, Cause::LockHeld, false).is_ok());
        assert!(kill_allowed(&lock, Cause::CrashLoop, false).is_err());
        assert!(kill_allowed(&lock, Cause::CrashLoop, true).is_ok(), "its own leftover");
    }

    #[test]
    fn test_steps_that_disturb_no_process_always_run_and_unknown_health_acts() {
        let ok = evidence(Health::Passing, &["l2"], &["db"]);
        let restore = Primitive::RestoreFile { path: None, previous: false };
        assert!(matches!(judge(&restore, Cause::FileMissing, &ok), Verdict::Act { .. }));
        assert!(
            matches!(judge(&RESTART, Cause::Hung, &Evidence::unknown()), Verdict::Act { rule } if rule.contains("no check"))
        );
    }
}
