//! Probe results and their thresholds.
//!
//! A check either passes (with its latency) or fails with a [`Failure`] that says why, so
//! detectors can tell a hang from a refused connection. A [`ProbeTracker`] turns the stream
//! of results into state changes: `failure_threshold` failures in a row report the target
//! down, `success_threshold` passes in a row report it up again, and nothing in between is
//! news. The tracker is pure: the probe actor feeds it results and the time.

use crate::config::{Layer, ProbeSpec, ServiceName};
use serde::Serialize;
use std::mem::discriminant;
use std::time::Duration;

/// Why a check failed; detectors tell failure modes apart by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer within the timeout (the process may be alive but hung).
    Timeout,
    /// Nothing listening, connection refused or reset.
    Connect(String),
    /// Answered with an unexpected status.
    Status(u16),
    /// No route to the network (`ENETUNREACH`).
    NetworkUnreachable(String),
    /// The host cannot be reached (`EHOSTUNREACH`, ICMP host unreachable).
    HostUnreachable(String),
    /// The link: interface down, no carrier, MTU too small, gateway neighbour failed.
    Link(String),
    /// A process that is not the target service's holds its port.
    Stranger {
        port: u16,
        pid: u32,
        command: String,
    },
    /// A count or a latency over its limit.
    Threshold(String),
    /// The TLS handshake or the certificate.
    Tls(String),
    /// The answer came but is wrong: not UTF-8, not JSON, not the expected content.
    Response(String),
    /// The name does not resolve.
    Dns(String),
    /// Credentials refused (a 401/403, a login the server rejects).
    Auth(String),
    Other(String),
}

impl Failure {
    /// The kind's name, as the API and the logs give it.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Connect(_) => "connect",
            Failure::Status(_) => "status",
            Failure::NetworkUnreachable(_) => "network_unreachable",
            Failure::HostUnreachable(_) => "host_unreachable",
            Failure::Link(_) => "link",
            Failure::Stranger { .. } => "stranger",
            Failure::Threshold(_) => "threshold",
            Failure::Tls(_) => "tls",
            Failure::Response(_) => "response",
            Failure::Dns(_) => "dns",
            Failure::Auth(_) => "auth",
            Failure::Other(_) => "other",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("no answer within the timeout"),
            Failure::Connect(e) => write!(f, "cannot connect: {e}"),
            Failure::Status(s) => write!(f, "answered status {s}"),
            Failure::NetworkUnreachable(e) => write!(f, "network unreachable: {e}"),
            Failure::HostUnreachable(e) => write!(f, "host unreachable: {e}"),
            Failure::Link(e) => write!(f, "link: {e}"),
            Failure::Stranger { port, pid, command } => {
                write!(f, "port {port} is held by pid {pid} ({command}), not by the service")
            }
            Failure::Threshold(e) | Failure::Tls(e) | Failure::Response(e) | Failure::Other(e) => f.write_str(e),
            Failure::Dns(e) => write!(f, "does not resolve: {e}"),
            Failure::Auth(e) => write!(f, "credentials refused: {e}"),
        }
    }
}

/// In the API: `kind` and `message` always (strings), `status` and `pid`/`port` as numbers
/// for the kinds that have them.
impl Serialize for Failure {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = ser.serialize_map(None)?;
        m.serialize_entry("kind", self.kind())?;
        m.serialize_entry("message", &self.to_string())?;
        match self {
            Failure::Status(s) => m.serialize_entry("status", s)?,
            Failure::Stranger { port, pid, command } => {
                m.serialize_entry("port", port)?;
                m.serialize_entry("pid", pid)?;
                m.serialize_entry("command", command)?;
            }
            _ => {}
        }
        m.end()
    }
}

/// The result of a ready check, or of a check that passes or fails.
pub type CheckResult = Result<Duration, Failure>;

/// What one probe check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It passed; with a warning when something is close to failing (a certificate
    /// expiring soon).
    Pass {
        latency: Duration,
        warning: Option<String>,
    },
    Fail(Failure),
    /// The check cannot run here (no permission for raw ICMP, no such interface): neither
    /// up nor down, and said why.
    Unsupported(String),
}

/// A probe's state as the API and the metrics give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeState {
    /// Not decided yet (fewer checks than the thresholds need).
    Pending,
    Up,
    Down,
    Unsupported,
}

impl ProbeState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeState::Pending => "pending",
            ProbeState::Up => "up",
            ProbeState::Down => "down",
            ProbeState::Unsupported => "unsupported",
        }
    }
}

/// A probe crossing its threshold either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEvent {
    Up {
        probe: String,
        target: ServiceName,
        layer: Layer,
    },
    Down {
        probe: String,
        target: ServiceName,
        layer: Layer,
        /// The check's kind (`http`, `dns`...): detectors tell a hung service from a slow
        /// upstream by it.
        kind: &'static str,
        failure: Failure,
        consecutive: u32,
        /// Wall-clock time of the first failed check of the streak (the fault's earliest sign).
        first_failure_unix_ms: u64,
        /// Wall-clock time of its latest failed check.
        last_failure_unix_ms: u64,
    },
}

impl ProbeEvent {
    pub fn target(&self) -> &ServiceName {
        match self {
            ProbeEvent::Up { target, .. } | ProbeEvent::Down { target, .. } => target,
        }
    }
}

/// The latest state of one probe, as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeStatus {
    pub name: String,
    pub layer: Layer,
    pub target: ServiceName,
    /// The check's kind (`http`, `link`, `route`...).
    pub kind: &'static str,
    /// How the check runs here, where there is a choice (`ICMP echo, raw socket`).
    pub method: Option<String>,
    pub state: ProbeState,
    /// `None` until the thresholds have decided either way (and while unsupported).
    pub up: Option<bool>,
    /// The last check passed with this warning.
    pub warning: Option<String>,
    /// Why the check cannot run here.
    pub unsupported: Option<String>,
    pub last_success_unix_ms: Option<u64>,
    pub last_ok: Option<bool>,
    pub last_latency_ms: Option<f64>,
    pub last_failure: Option<Failure>,
    pub consecutive_failures: u32,
    /// When the current streak of failures began (its first failed check).
    pub failing_since_unix_ms: Option<u64>,
    pub checks: u64,
    pub failures: u64,
    pub last_check_unix_ms: u64,
}

impl ProbeStatus {
    /// The down event this status stands for, while the probe is down.
    pub fn down_event(&self) -> Option<ProbeEvent> {
        match (self.up, &self.last_failure, self.failing_since_unix_ms) {
            (Some(false), Some(failure), Some(since)) => Some(ProbeEvent::Down {
                probe: self.name.clone(),
                target: self.target.clone(),
                layer: self.layer,
                kind: self.kind,
                failure: failure.clone(),
                consecutive: self.consecutive_failures,
                first_failure_unix_ms: since,
                last_failure_unix_ms: self.last_check_unix_ms,
            }),
            _ => None,
        }
    }
}

/// Whether the service of a mitigated incident is whole again: every probe of it that can
/// run here is up with its last check passed (a probe not decided yet is not), and, when
/// none can run, its supervisor says it runs. A probe that cannot run on this host neither
/// holds the incident open nor ends it.
pub fn whole_again(probes: &[&ProbeStatus], running: bool) -> bool {
    let usable: Vec<_> = probes.iter().filter(|p| p.state != ProbeState::Unsupported).collect();
    if usable.is_empty() {
        return running;
    }
    usable.iter().all(|p| p.state == ProbeState::Up && p.consecutive_failures == 0)
}

/// Threshold tracking for one probe.
#[derive(Debug, Clone)]
pub struct ProbeTracker {
    failure_threshold: u32,
    success_threshold: u32,
    status: ProbeStatus,
    consecutive_ok: u32,
}

impl ProbeTracker {
    pub fn new(spec: &ProbeSpec) -> Self {
        Self {
            failure_threshold: spec.failure_threshold.max(1),
            success_threshold: spec.success_threshold.max(1),
            status: ProbeStatus {
                name: spec.name.clone(),
                layer: spec.layer,
                target: spec.target.clone(),
                kind: spec.check.kind(),
                method: None,
                state: ProbeState::Pending,
                up: None,
                warning: None,
                unsupported: None,
                last_success_unix_ms: None,
                last_ok: None,
                last_latency_ms: None,
                last_failure: None,
                consecutive_failures: 0,
                failing_since_unix_ms: None,
                checks: 0,
                failures: 0,
                last_check_unix_ms: 0,
            },
            consecutive_ok: 0,
        }
    }

    pub fn status(&self) -> &ProbeStatus {
        &self.status
    }

    /// Says how the check runs here (the API shows it beside the state).
    pub fn set_method(&mut self, method: Option<String>) {
        self.status.method = method;
    }

    /// Records a check made at `now_unix_ms`; returns the event when the probe changes state.
    pub fn record(&mut self, outcome: Outcome, now_unix_ms: u64) -> Option<ProbeEvent> {
        let event = self.apply(outcome, now_unix_ms);
        let s = &mut self.status;
        s.state = match (&s.unsupported, s.up) {
            (Some(_), _) => ProbeState::Unsupported,
            (None, Some(true)) => ProbeState::Up,
            (None, Some(false)) => ProbeState::Down,
            (None, None) => ProbeState::Pending,
        };
        event
    }

    fn apply(&mut self, outcome: Outcome, now_unix_ms: u64) -> Option<ProbeEvent> {
        let s = &mut self.status;
        s.checks += 1;
        s.last_check_unix_ms = now_unix_ms;
        match outcome {
            Outcome::Unsupported(why) => {
                // Never a false up: what cannot be checked is not reported healthy.
                s.unsupported = Some(why);
                s.up = None;
                s.warning = None;
                s.last_ok = None;
                s.last_latency_ms = None;
                s.consecutive_failures = 0;
                s.failing_since_unix_ms = None;
                self.consecutive_ok = 0;
                None
            }
            Outcome::Pass { latency, warning } => {
                s.unsupported = None;
                s.warning = warning;
                s.last_success_unix_ms = Some(now_unix_ms);
                s.last_ok = Some(true);
                s.last_latency_ms = Some(latency.as_secs_f64() * 1000.0);
                s.last_failure = None;
                s.consecutive_failures = 0;
                s.failing_since_unix_ms = None;
                self.consecutive_ok = self.consecutive_ok.saturating_add(1);
                if s.up != Some(true) && self.consecutive_ok >= self.success_threshold {
                    s.up = Some(true);
                    return Some(ProbeEvent::Up { probe: s.name.clone(), target: s.target.clone(), layer: s.layer });
                }
                None
            }
            Outcome::Fail(failure) => {
                s.unsupported = None;
                s.warning = None;
                // While down, a different kind of failure is a different fault (a crash,
                // then a hang once restarted): it starts its own streak and is reported on
                // its own. Before that, every failure counts toward down, whatever its kind
                // (a target failing in turns with two kinds is failing), but the onset moves
                // to the new kind: a refusal before a process started says nothing of when
                // that process began to hang.
                let changed = s.last_failure.as_ref().is_some_and(|f| discriminant(f) != discriminant(&failure));
                if changed {
                    s.failing_since_unix_ms = None;
                    if s.up == Some(false) {
                        s.consecutive_failures = 0;
                        s.up = None;
                    }
                }
                s.failures += 1;
                s.last_ok = Some(false);
                s.last_failure = Some(failure.clone());
                s.consecutive_failures = s.consecutive_failures.saturating_add(1);
                self.consecutive_ok = 0;
                let onset = *s.failing_since_unix_ms.get_or_insert(now_unix_ms);
                if s.up != Some(false) && s.consecutive_failures >= self.failure_threshold {
                    s.up = Some(false);
                    return Some(ProbeEvent::Down {
                        probe: s.name.clone(),
                        target: s.target.clone(),
                        layer: s.layer,
                        kind: s.kind,
                        failure,
                        consecutive: s.consecutive_failures,
                        first_failure_unix_ms: onset,
                        last_failure_unix_ms: now_unix_ms,
                    });
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProbeCheck;

    fn tracker(failures: u32, successes: u32) -> ProbeTracker {
        ProbeTracker::new(&ProbeSpec {
            name: "p".into(),
            layer: Layer::L7,
            target: ServiceName::parse("api").expect("name"),
            check: ProbeCheck::Tcp { addr: "127.0.0.1:1".parse().expect("addr"), owner: false },
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(50),
            failure_threshold: failures,
            success_threshold: successes,
        })
    }

    const OK: Outcome = Outcome::Pass { latency: Duration::from_millis(3), warning: None };

    fn fail(f: Failure) -> Outcome {
        Outcome::Fail(f)
    }

    #[test]
    fn test_whole_again_needs_every_probe_that_can_run_up_and_passing() {
        let (mut route, mut http) = (tracker(2, 1), tracker(1, 1));
        route.record(Outcome::Unsupported("no raw sockets".into()), 1);
        http.record(OK, 1);
        assert!(whole_again(&[route.status(), http.status()], false), "a probe that cannot run holds nothing");
        http.record(fail(Failure::Timeout), 2);
        assert!(!whole_again(&[route.status(), http.status()], true), "down");
        http.record(OK, 3);
        let mut slow = tracker(3, 1);
        assert!(!whole_again(&[http.status(), slow.status()], true), "not decided yet");
        slow.record(OK, 4);
        slow.record(fail(Failure::Timeout), 5);
        assert!(!whole_again(&[http.status(), slow.status()], true), "up, but its last check failed");
        assert!(whole_again(&[route.status()], true) && !whole_again(&[], false), "no probe: its state decides");
    }

    #[test]
    fn test_down_only_after_failure_threshold_in_a_row() {
        let mut t = tracker(3, 1);
        assert!(matches!(t.record(OK, 1), Some(ProbeEvent::Up { .. })), "first pass decides up");
        assert_eq!(t.record(fail(Failure::Timeout), 10), None);
        assert_eq!(t.record(fail(Failure::Timeout), 20), None);
        assert_eq!(t.record(OK, 30), None, "a pass in between resets the streak");
        assert_eq!(t.record(fail(Failure::Timeout), 40), None);
        assert_eq!(t.record(fail(Failure::Timeout), 50), None);
        let down = t.record(fail(Failure::Timeout), 60).expect("third failure in a row");
        assert!(
            matches!(down, ProbeEvent::Down { consecutive: 3, first_failure_unix_ms: 40, .. }),
            "onset is the streak's first failure: {down:?}"
        );
        assert_eq!(t.record(fail(Failure::Timeout), 70), None, "still down is no news");
    }

    #[test]
    fn test_a_new_kind_of_failure_is_a_new_streak_and_reported_again() {
        // Down because nothing listens; then the restarted process hangs: the hang is news.
        let mut t = tracker(2, 1);
        let refused = || fail(Failure::Connect("refused".into()));
        assert_eq!(t.record(refused(), 10), None);
        assert!(matches!(t.record(refused(), 20), Some(ProbeEvent::Down { failure: Failure::Connect(_), .. })));
        assert_eq!(t.record(fail(Failure::Timeout), 30), None, "first of the new streak");
        let hang = t.record(fail(Failure::Timeout), 40).expect("the hang is reported");
        assert!(
            matches!(
                hang,
                ProbeEvent::Down { failure: Failure::Timeout, first_failure_unix_ms: 30, consecutive: 2, .. }
            ),
            "{hang:?}"
        );
        assert_eq!(t.status().down_event(), Some(hang), "the status stands for the same event");
    }

    #[test]
    fn test_failures_of_alternating_kinds_still_take_an_up_target_down() {
        // 503, timeout, 503...: every check fails, so the target is down.
        let mut t = tracker(3, 1);
        assert!(t.record(OK, 1).is_some());
        assert_eq!(t.record(fail(Failure::Status(503)), 2), None);
        assert_eq!(t.record(fail(Failure::Timeout), 3), None);
        let down = t.record(fail(Failure::Status(503)), 4).expect("three failures in a row");
        assert!(matches!(down, ProbeEvent::Down { consecutive: 3, first_failure_unix_ms: 4, .. }), "{down:?}");
    }

    #[test]
    fn test_a_hang_right_after_start_has_its_own_onset() {
        // Refused while the process was not up yet, then no answer once it hung: the down
        // event dates from the hang, not from before the process existed.
        let mut t = tracker(2, 1);
        assert_eq!(t.record(fail(Failure::Connect("refused".into())), 10), None);
        let down = t.record(fail(Failure::Timeout), 30).expect("two failures");
        assert!(matches!(down, ProbeEvent::Down { first_failure_unix_ms: 30, failure: Failure::Timeout, .. }));
    }

    #[test]
    fn test_up_again_only_after_success_threshold() {
        let mut t = tracker(1, 2);
        assert!(matches!(t.record(fail(Failure::Connect("refused".into())), 1), Some(ProbeEvent::Down { .. })));
        assert_eq!(t.record(OK, 2), None, "one pass is not enough");
        assert!(matches!(t.record(OK, 3), Some(ProbeEvent::Up { .. })));
        assert_eq!(t.status().checks, 3);
        assert_eq!(t.status().failures, 1);
    }

    #[test]
    fn test_unsupported_is_neither_up_nor_down_and_says_why() {
        let mut t = tracker(1, 1);
        assert!(t.record(OK, 1).is_some());
        assert_eq!(t.record(Outcome::Unsupported("no raw ICMP".into()), 2), None);
        let s = t.status();
        assert_eq!((s.state, s.up, s.unsupported.as_deref()), (ProbeState::Unsupported, None, Some("no raw ICMP")));
        assert!(matches!(t.record(OK, 3), Some(ProbeEvent::Up { .. })), "supported again: up is news");
        assert_eq!(t.status().state, ProbeState::Up);
    }

    #[test]
    fn test_a_warning_passes_and_is_kept_until_the_next_check() {
        let mut t = tracker(1, 1);
        let warn = Outcome::Pass { latency: Duration::from_millis(1), warning: Some("expires in 3 days".into()) };
        assert!(matches!(t.record(warn, 1), Some(ProbeEvent::Up { .. })));
        assert_eq!(t.status().warning.as_deref(), Some("expires in 3 days"));
        assert_eq!(t.status().last_success_unix_ms, Some(1));
        assert_eq!(t.record(OK, 2), None);
        assert_eq!(t.status().warning, None);
    }

    #[test]
    fn test_failures_serialize_with_consistent_types() {
        let json = |f: Failure| serde_json::to_value(f).expect("json");
        let s = json(Failure::Status(503));
        assert_eq!((s["kind"].as_str(), s["status"].as_u64()), (Some("status"), Some(503)));
        assert!(s["message"].is_string());
        let st = json(Failure::Stranger { port: 8000, pid: 42, command: "nc".into() });
        assert_eq!((st["pid"].as_u64(), st["port"].as_u64()), (Some(42), Some(8000)));
        assert_eq!(json(Failure::Timeout)["message"], "no answer within the timeout");
    }
}
