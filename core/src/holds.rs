//! Holds on automatic repair: what stops the healer from acting, and why.
//!
//! People put healing on hold: a pause (the node's or one service's, with an end or
//! until resumed), maintenance (a service nobody should heal or page about while someone
//! works on it; its probes still run and show), and every action an operator takes on a
//! service holds automatic repair of it for a short while (the person is at work there).
//! The node holds itself too: the circuit breaker opens when more services fail at once
//! than the policy allows (a common cause is likely, as Cluster API's `maxUnhealthy` says),
//! and stays open until an operator resumes. Every hold names who set it and why;
//! [`Holds::blocking`] says which one stops the repair of a service now.
//!
//! A per-service repair budget ([`RepairBudget`]) bounds how often the healer may act on
//! one service in an hour; past it, a person is asked instead of repeating.

use crate::config::ServiceName;
use serde::{Deserialize, Serialize};

/// What kind of hold it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldKind {
    /// An operator paused healing (`warden healing pause`).
    Pause,
    /// A service in maintenance: no healing, no alerts (`warden services unmonitor`).
    Maintenance,
    /// An operator acted on the service a moment ago.
    Operator,
    /// Too many services failed at once: the node stopped its own automatic repair.
    Breaker,
}

impl HoldKind {
    pub const ALL: [HoldKind; 4] = [HoldKind::Pause, HoldKind::Maintenance, HoldKind::Operator, HoldKind::Breaker];

    pub fn as_str(self) -> &'static str {
        match self {
            HoldKind::Pause => "pause",
            HoldKind::Maintenance => "maintenance",
            HoldKind::Operator => "operator",
            HoldKind::Breaker => "breaker",
        }
    }
}

/// One hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub kind: HoldKind,
    /// The service it is on; `None`: the whole node.
    pub service: Option<ServiceName>,
    pub since_unix_ms: u64,
    /// When it lifts by itself; `None`: when someone lifts it.
    pub until_unix_ms: Option<u64>,
    /// Who set it: a person's name, or `system`.
    pub by: String,
    pub reason: String,
}

impl Hold {
    /// The hold in words, for logs, status and the decision that it stopped.
    pub fn describe(&self) -> String {
        let on = self.service.as_ref().map_or("the node".to_string(), |s| format!("`{s}`"));
        let until = self.until_unix_ms.map_or(String::new(), |t| format!(" until {}", crate::time::rfc3339(t)));
        match self.kind {
            HoldKind::Pause => format!("healing of {on} paused by {}{until}: {}", self.by, self.reason),
            HoldKind::Maintenance => format!("{on} in maintenance by {}{until}: {}", self.by, self.reason),
            HoldKind::Operator => format!("{} acted on {on}; automatic repair waits{until}", self.by),
            HoldKind::Breaker => format!("circuit breaker open: {}; an operator resumes healing", self.reason),
        }
    }

    fn covers(&self, service: &ServiceName) -> bool {
        self.service.as_ref().is_none_or(|s| s == service)
    }

    fn active(&self, now_unix_ms: u64) -> bool {
        self.until_unix_ms.is_none_or(|t| now_unix_ms < t)
    }
}

/// Every hold of a node (kept in its data dir, so a restart of warden keeps them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holds {
    pub holds: Vec<Hold>,
    /// The services that were failing when an operator resumed healing past the breaker:
    /// repairing them is what the operator asked for, so their failures do not open it
    /// again (a new failure does). Forgotten once few enough services fail.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumed_over: Vec<ServiceName>,
    /// Since when few enough services fail (Unix ms): the resume is forgotten only once it
    /// has been so for [`RESUME_FORGOTTEN_AFTER_MS`], not at the first calm moment (a
    /// service being restarted counts as not failing for a tick).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calm_since_unix_ms: Option<u64>,
}

/// How long few enough services must fail before an operator's resume past the breaker is
/// forgotten (then the same failures open it again).
pub const RESUME_FORGOTTEN_AFTER_MS: u64 = 120_000;

impl Holds {
    /// Drops the holds whose time is over; returns them.
    pub fn expire(&mut self, now_unix_ms: u64) -> Vec<Hold> {
        let (over, keep): (Vec<Hold>, Vec<Hold>) = self.holds.drain(..).partition(|h| !h.active(now_unix_ms));
        self.holds = keep;
        over
    }

    /// The hold that stops automatic repair of `service` now, if any (the node's first).
    pub fn blocking(&self, service: &ServiceName, now_unix_ms: u64) -> Option<&Hold> {
        let mut on: Vec<&Hold> = self.holds.iter().filter(|h| h.active(now_unix_ms) && h.covers(service)).collect();
        on.sort_by_key(|h| (h.service.is_some(), h.kind));
        on.into_iter().next()
    }

    /// The kinds of the holds on `service` now (its own and the node's), each once.
    pub fn kinds_on(&self, service: &ServiceName, now_unix_ms: u64) -> Vec<HoldKind> {
        let mut kinds: Vec<HoldKind> =
            self.holds.iter().filter(|h| h.active(now_unix_ms) && h.covers(service)).map(|h| h.kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds
    }

    /// Whether alerts about `service` are held back (it is in maintenance).
    pub fn in_maintenance(&self, service: &ServiceName, now_unix_ms: u64) -> bool {
        self.holds.iter().any(|h| h.kind == HoldKind::Maintenance && h.active(now_unix_ms) && h.covers(service))
    }

    /// The holds on the whole node now (they stop every automatic repair).
    pub fn node_wide(&self, now_unix_ms: u64) -> Vec<&Hold> {
        self.holds.iter().filter(|h| h.service.is_none() && h.active(now_unix_ms)).collect()
    }

    /// The active holds, each kind at most once per scope, for status and metrics.
    pub fn active(&self, now_unix_ms: u64) -> Vec<&Hold> {
        self.holds.iter().filter(|h| h.active(now_unix_ms)).collect()
    }

    /// Sets `hold`, replacing one of the same kind on the same scope.
    pub fn set(&mut self, hold: Hold) {
        self.holds.retain(|h| !(h.kind == hold.kind && h.service == hold.service));
        self.holds.push(hold);
    }

    /// Lifts the holds of these kinds on `service` (`None`: the node's); returns them.
    pub fn lift(&mut self, service: Option<&ServiceName>, kinds: &[HoldKind]) -> Vec<Hold> {
        let (gone, keep): (Vec<Hold>, Vec<Hold>) =
            self.holds.drain(..).partition(|h| h.service.as_ref() == service && kinds.contains(&h.kind));
        self.holds = keep;
        gone
    }

    /// Whether the breaker is open.
    pub fn breaker_open(&self) -> bool {
        self.holds.iter().any(|h| h.kind == HoldKind::Breaker)
    }

    /// Whether the breaker must open, with `failing` the services failing now that nothing
    /// else explains, out of `total`: past `limit`, unless every one of them was failing
    /// already when an operator resumed healing. Forgets that resume once few enough have
    /// failed for [`RESUME_FORGOTTEN_AFTER_MS`].
    pub fn breaker_due(
        &mut self,
        limit: MaxUnhealthy,
        total: usize,
        failing: &[ServiceName],
        now_unix_ms: u64,
    ) -> bool {
        if !limit.trips(total, failing.len()) {
            if !self.resumed_over.is_empty() {
                let since = *self.calm_since_unix_ms.get_or_insert(now_unix_ms);
                if now_unix_ms.saturating_sub(since) >= RESUME_FORGOTTEN_AFTER_MS {
                    self.resumed_over.clear();
                    self.calm_since_unix_ms = None;
                }
            }
            return false;
        }
        self.calm_since_unix_ms = None;
        !self.breaker_open() && failing.iter().any(|s| !self.resumed_over.contains(s))
    }
}

/// How many services may fail at once before the breaker opens: a count, or a share of
/// the node's services (rounded down). A single failing service never opens it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxUnhealthy {
    Count(usize),
    Percent(u8),
    /// Never open.
    Off,
}

impl Default for MaxUnhealthy {
    fn default() -> Self {
        MaxUnhealthy::Percent(50)
    }
}

impl MaxUnhealthy {
    /// The most services that may fail at once out of `total`.
    pub fn limit(self, total: usize) -> Option<usize> {
        match self {
            MaxUnhealthy::Count(n) => Some(n.max(1)),
            MaxUnhealthy::Percent(p) => Some((total * usize::from(p) / 100).max(1)),
            MaxUnhealthy::Off => None,
        }
    }

    /// Whether `failing` of `total` services failing at once opens the breaker. Count only
    /// the failures nothing else explains: a dependent of a failing service is not a
    /// failure of its own.
    pub fn trips(self, total: usize, failing: usize) -> bool {
        self.limit(total).is_some_and(|max| failing > max)
    }

    pub fn describe(self) -> String {
        match self {
            MaxUnhealthy::Count(n) => n.to_string(),
            MaxUnhealthy::Percent(p) => format!("{p}%"),
            MaxUnhealthy::Off => "off".into(),
        }
    }
}

/// The services failing with no failing dependency of theirs to explain it: `failing` are
/// the services failing now, `depends_on` says what each depends on.
pub fn independent_failures(
    failing: &[ServiceName],
    depends_on: impl Fn(&ServiceName) -> Vec<ServiceName>,
) -> Vec<&ServiceName> {
    failing.iter().filter(|s| !depends_on(s).iter().any(|d| failing.contains(d))).collect()
}

/// How many automatic repairs one service may get within an hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairBudget {
    pub per_hour: u32,
}

/// An hour, the budget's window.
pub const BUDGET_WINDOW_MS: u64 = 3_600_000;

impl RepairBudget {
    /// Whether another repair would pass the budget, given when the service's repairs of
    /// the last hour started (older ones are ignored). A budget of 0 is no budget.
    pub fn spent(self, starts_unix_ms: &[u64], now_unix_ms: u64) -> Option<String> {
        if self.per_hour == 0 {
            return None;
        }
        let recent = starts_unix_ms.iter().filter(|t| now_unix_ms.saturating_sub(**t) < BUDGET_WINDOW_MS).count();
        (recent >= self.per_hour as usize).then(|| {
            format!("repair budget spent: {recent} automatic repairs in the last hour (at most {})", self.per_hour)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ServiceName {
        ServiceName::parse(s).expect("name")
    }

    fn hold(kind: HoldKind, service: Option<&str>, until: Option<u64>) -> Hold {
        Hold {
            kind,
            service: service.map(name),
            since_unix_ms: 0,
            until_unix_ms: until,
            by: "alice".into(),
            reason: "r".into(),
        }
    }

    #[test]
    fn test_a_node_hold_blocks_every_service_a_service_hold_only_its_own() {
        let mut h = Holds::default();
        h.set(hold(HoldKind::Pause, Some("api"), None));
        assert_eq!(h.blocking(&name("api"), 10).map(|h| h.kind), Some(HoldKind::Pause));
        assert!(h.blocking(&name("db"), 10).is_none());
        h.set(hold(HoldKind::Breaker, None, None));
        assert_eq!(h.blocking(&name("db"), 10).map(|h| h.kind), Some(HoldKind::Breaker));
        assert!(h.blocking(&name("api"), 10).is_some_and(|h| h.service.is_none()), "the node's hold first");
        assert_eq!(h.lift(None, &[HoldKind::Pause, HoldKind::Breaker]).len(), 1, "resume lifts the breaker");
        assert!(h.blocking(&name("db"), 10).is_none());
    }

    #[test]
    fn test_holds_with_an_end_lift_by_themselves() {
        let mut h = Holds::default();
        h.set(hold(HoldKind::Maintenance, Some("api"), Some(100)));
        assert!(h.in_maintenance(&name("api"), 99) && h.blocking(&name("api"), 99).is_some());
        assert!(!h.in_maintenance(&name("api"), 100) && h.blocking(&name("api"), 100).is_none());
        assert_eq!(h.expire(100).len(), 1);
        assert!(h.holds.is_empty());
    }

    #[test]
    fn test_a_new_hold_replaces_one_of_its_kind_and_scope() {
        let mut h = Holds::default();
        h.set(hold(HoldKind::Operator, Some("api"), Some(10)));
        h.set(hold(HoldKind::Operator, Some("api"), Some(50)));
        assert_eq!(h.holds.len(), 1);
        assert_eq!(h.holds[0].until_unix_ms, Some(50));
    }

    #[test]
    fn test_the_breaker_opens_past_its_limit_and_never_for_one_service() {
        let half = MaxUnhealthy::Percent(50);
        assert!(half.trips(4, 3), "three of four");
        assert!(!half.trips(4, 2), "two of four is at the limit, not past it");
        assert!(!half.trips(1, 1), "a node of one service heals it");
        assert!(!MaxUnhealthy::Count(0).trips(5, 1), "one failing service never opens it");
        assert!(!MaxUnhealthy::Off.trips(4, 4));
        let failing = [name("db"), name("api"), name("model")];
        let deps = |s: &ServiceName| if s == "api" { vec![name("db")] } else { vec![] };
        let roots = independent_failures(&failing, deps);
        assert_eq!(roots, vec![&name("db"), &name("model")], "the api's failure is the db's");
    }

    #[test]
    fn test_a_resume_past_the_breaker_holds_for_what_failed_then_not_for_a_new_failure() {
        let mut h = Holds::default();
        let (a, b, c, d) = (name("a"), name("b"), name("c"), name("d"));
        let half = MaxUnhealthy::Percent(50);
        let abc = [a.clone(), b.clone(), c.clone()];
        assert!(h.breaker_due(half, 4, &abc, 0));
        h.resumed_over = abc.to_vec();
        assert!(!h.breaker_due(half, 4, &abc, 1), "the operator said go");
        assert!(h.breaker_due(half, 4, &[a.clone(), b.clone(), d.clone()], 2), "a new failure opens it again");
        assert!(!h.breaker_due(half, 4, &[b.clone(), c.clone()], 3), "`a` being restarted: a calm tick");
        assert!(!h.breaker_due(half, 4, &abc, 4), "its restart did not hold: still the resumed failures");
        assert!(!h.breaker_due(half, 4, std::slice::from_ref(&a), 10), "calm again");
        assert!(!h.resumed_over.is_empty(), "not forgotten at once");
        assert!(!h.breaker_due(half, 4, std::slice::from_ref(&a), 10 + RESUME_FORGOTTEN_AFTER_MS), "calm for long");
        assert!(h.resumed_over.is_empty(), "and the resume is forgotten");
        assert!(h.breaker_due(half, 4, &abc, 20 + RESUME_FORGOTTEN_AFTER_MS), "the same failures open it again");
    }

    #[test]
    fn test_the_repair_budget_counts_the_last_hour() {
        let b = RepairBudget { per_hour: 3 };
        let now = 10 * BUDGET_WINDOW_MS;
        assert!(b.spent(&[now - 10, now - 20], now).is_none());
        assert!(b.spent(&[now - 10, now - 20, now - 30], now).is_some_and(|w| w.contains("3 automatic")));
        assert!(b.spent(&[now - BUDGET_WINDOW_MS, now - 20, now - 30], now).is_none(), "an hour ago falls out");
        assert!(RepairBudget { per_hour: 0 }.spent(&[now; 100], now).is_none(), "0: no budget");
    }
}
