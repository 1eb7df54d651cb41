//! Alerts: what is worth telling a person, when, and in which shape.
//!
//! An [`Alert`] is a set of labels (its identity: the same labels are the same alert) with
//! a status, firing or resolved, like Prometheus and Alertmanager alerts, so receivers
//! built for those take warden's without change ([`alertmanager_payload`], version 4).
//! A [`FlapDamper`] turns a stream of state changes into notices: a change is news once;
//! a target that changes too often within a window is reported as flapping, once, and its
//! changes are held back until it settles, then its settled state is told.
//! While warden repairs a fault, the alerts it explains wait (`incident::held_by`): a
//! person hears of it only if the repair fails or runs past its time.

use crate::probe::{Failure, ProbeEvent};
use crate::time::rfc3339;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One alert, firing or resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub status: AlertStatus,
    /// `alertname`, `severity` and what the alert is about (`probe`, `layer`, `target`...).
    pub labels: BTreeMap<String, String>,
    /// `summary` (one line) and `description`.
    pub annotations: BTreeMap<String, String>,
    pub starts_at_unix_ms: u64,
    /// Set once resolved.
    pub ends_at_unix_ms: Option<u64>,
}

impl Alert {
    pub fn new(name: &str, severity: Severity, status: AlertStatus, starts_at_unix_ms: u64) -> Self {
        let labels = BTreeMap::from([("alertname".into(), name.into()), ("severity".into(), severity.as_str().into())]);
        Self { status, labels, annotations: BTreeMap::new(), starts_at_unix_ms, ends_at_unix_ms: None }
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub fn annotate(mut self, key: &str, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    pub fn resolved_at(mut self, unix_ms: u64) -> Self {
        self.status = AlertStatus::Resolved;
        self.ends_at_unix_ms = Some(unix_ms);
        self
    }

    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    pub fn summary(&self) -> &str {
        self.annotations.get("summary").map_or("", String::as_str)
    }

    /// The alert's identity: a hash of its labels (as Alertmanager's fingerprint is).
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for (k, v) in &self.labels {
            h.update(k.as_bytes());
            h.update([0xff]);
            h.update(v.as_bytes());
            h.update([0xff]);
        }
        hex::encode(&h.finalize()[..8])
    }

    /// A probe's target went down (`ProbeFailing`).
    pub fn probe_failing(probe: &str, target: &str, layer: &str, failure: &Failure, since_unix_ms: u64) -> Self {
        Self::new("ProbeFailing", Severity::Warning, AlertStatus::Firing, since_unix_ms)
            .label("probe", probe)
            .label("target", target)
            .label("layer", layer)
            .annotate("summary", format!("probe {probe} ({layer}) of {target} is failing: {failure}"))
            .annotate("failure_kind", failure.kind())
    }

    /// An incident that needs a person (`WardenIncidentNeedsPerson`): its repair waits for
    /// an approver or a hold, or it is past its time, or it ended unhealed (`why`).
    pub fn incident_needs_person(id: u64, service: &str, mode: &str, why: &str, since_unix_ms: u64) -> Self {
        Self::new("WardenIncidentNeedsPerson", Severity::Critical, AlertStatus::Firing, since_unix_ms)
            .label("incident", &id.to_string())
            .label("target", service)
            .label("mode", mode)
            .annotate("summary", format!("incident #{id} ({mode} on {service}) needs a person: {why}"))
    }

    /// The node's memory is low (`NodeMemoryLow`): `available_mib` of `total_mib`, under
    /// its floor of `min_pct` % and `min_mib`; `holders` names who holds the most.
    pub fn node_memory_low(
        available_mib: u64,
        total_mib: u64,
        (min_pct, min_mib): (u8, u64),
        holders: &str,
        at_unix_ms: u64,
    ) -> Self {
        Self::new("NodeMemoryLow", Severity::Critical, AlertStatus::Firing, at_unix_ms).label("target", "node").annotate(
            "summary",
            format!(
                "the node's memory is low: {available_mib} MiB available of {total_mib} MiB (under {min_pct} % and {min_mib} MiB); most held by {holders}"
            ),
        )
    }

    /// A probe whose state changes too often (`ProbeFlapping`).
    pub fn probe_flapping(probe: &str, target: &str, layer: &str, changes: usize, window: Duration, at: u64) -> Self {
        Self::new("ProbeFlapping", Severity::Warning, AlertStatus::Firing, at)
            .label("probe", probe)
            .label("target", target)
            .label("layer", layer)
            .annotate(
                "summary",
                format!(
                    "probe {probe} ({layer}) of {target} is flapping: {changes} state changes in {} s; \
                     single changes are held back until it settles",
                    window.as_secs()
                ),
            )
    }
}

/// A probe event's alert: firing for a down, resolved for an up.
pub fn probe_alert(ev: &ProbeEvent, now_unix_ms: u64, failing_since: Option<u64>) -> Alert {
    match ev {
        ProbeEvent::Down { probe, target, layer, failure, first_failure_unix_ms, .. } => {
            Alert::probe_failing(probe, target.as_str(), layer.as_str(), failure, *first_failure_unix_ms)
        }
        ProbeEvent::Up { probe, target, layer } => {
            Alert::new("ProbeFailing", Severity::Warning, AlertStatus::Firing, failing_since.unwrap_or(now_unix_ms))
                .label("probe", probe)
                .label("target", target.as_str())
                .label("layer", layer.as_str())
                .annotate("summary", format!("probe {probe} ({}) of {} recovered", layer.as_str(), target.as_str()))
                .resolved_at(now_unix_ms)
        }
    }
}

/// The longest a silence may last.
pub const MAX_SILENCE_MS: u64 = 30 * 24 * 3_600_000;

/// A silence (as in Alertmanager): while active, alerts whose labels carry every one of its
/// matchers' values go to the log only, not to the sinks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    pub id: u64,
    /// Label name → value; all must match (equality; no regular expressions).
    pub matchers: BTreeMap<String, String>,
    pub starts_unix_ms: u64,
    pub ends_unix_ms: u64,
    pub created_by: String,
    pub comment: String,
}

/// Why a silence cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    #[error("a silence needs at least one matcher (label: value)")]
    NoMatchers,
    #[error("`{0}` is not a label name (letters, digits and _, not starting with a digit)")]
    BadLabel(String),
    #[error("a silence lasts more than 0 ms and at most {} days", MAX_SILENCE_MS / 86_400_000)]
    BadDuration,
    #[error("a silence needs a comment saying why")]
    NoComment,
}

impl Silence {
    /// A silence from `now` for `duration_ms`, checked.
    pub fn new(
        id: u64,
        matchers: BTreeMap<String, String>,
        now_unix_ms: u64,
        duration_ms: u64,
        created_by: &str,
        comment: &str,
    ) -> Result<Self, SilenceError> {
        if matchers.is_empty() {
            return Err(SilenceError::NoMatchers);
        }
        let label_ok = |k: &str| {
            k.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if let Some(bad) = matchers.keys().find(|k| !label_ok(k)) {
            return Err(SilenceError::BadLabel(bad.clone()));
        }
        if duration_ms == 0 || duration_ms > MAX_SILENCE_MS {
            return Err(SilenceError::BadDuration);
        }
        if comment.trim().is_empty() {
            return Err(SilenceError::NoComment);
        }
        Ok(Self {
            id,
            matchers,
            starts_unix_ms: now_unix_ms,
            ends_unix_ms: now_unix_ms + duration_ms,
            created_by: created_by.to_string(),
            comment: comment.trim().to_string(),
        })
    }

    pub fn active(&self, now_unix_ms: u64) -> bool {
        self.starts_unix_ms <= now_unix_ms && now_unix_ms < self.ends_unix_ms
    }

    pub fn matches(&self, alert: &Alert) -> bool {
        self.matchers.iter().all(|(k, v)| alert.labels.get(k) == Some(v))
    }
}

/// The active silence that mutes `alert`, if any.
pub fn silenced_by<'a>(alert: &Alert, silences: &'a [Silence], now_unix_ms: u64) -> Option<&'a Silence> {
    silences.iter().find(|s| s.active(now_unix_ms) && s.matches(alert))
}

/// Alerts taken together into one notification (Alertmanager's grouping by `alertname`):
/// the longest run of `queue`'s front with the first one's name, at most `max`, the same
/// alert (fingerprint) kept once, as it is last.
pub fn take_group(queue: &mut std::collections::VecDeque<Alert>, max: usize) -> Vec<Alert> {
    let Some(first) = queue.pop_front() else { return Vec::new() };
    let name = first.name().to_string();
    let mut group = vec![first];
    while group.len() < max && queue.front().is_some_and(|a| a.name() == name) {
        let Some(next) = queue.pop_front() else { break };
        match group.iter_mut().find(|a| a.fingerprint() == next.fingerprint()) {
            Some(same) => *same = next,
            None => group.push(next),
        }
    }
    group
}

/// Alertmanager's webhook payload, version 4, for `alerts` of one group (what Alertmanager
/// itself posts to a `webhook_config` receiver).
pub fn alertmanager_payload(receiver: &str, group_labels: &BTreeMap<String, String>, alerts: &[Alert]) -> Value {
    let firing = alerts.iter().any(|a| a.status == AlertStatus::Firing);
    let common = |pick: fn(&Alert) -> &BTreeMap<String, String>| -> BTreeMap<String, String> {
        let mut it = alerts.iter();
        let Some(first) = it.next() else { return BTreeMap::new() };
        let mut common = pick(first).clone();
        for a in it {
            common.retain(|k, v| pick(a).get(k) == Some(v));
        }
        common
    };
    let group_key =
        format!("{{}}:{{{}}}", group_labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join(", "));
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|a| {
            json!({
                "status": a.status.as_str(),
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at_unix_ms),
                // Alertmanager's zero time for an alert that has not ended.
                "endsAt": a.ends_at_unix_ms.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339),
                "generatorURL": "",
                "fingerprint": a.fingerprint(),
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common(|a| &a.labels),
        "commonAnnotations": common(|a| &a.annotations),
        "externalURL": "",
        "alerts": alerts,
    })
}

/// Which side of its threshold a target is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Ok,
    Failing,
}

/// What a damper says is worth telling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Failing,
    Recovered,
    /// Too many changes in the window; carries their number.
    FlappingStarted(usize),
    /// Settled; what it settled on follows as its own notice when that is news.
    FlappingStopped,
}

/// When changes count as flapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlapPolicy {
    pub window: Duration,
    /// This many changes within `window` start flapping; half of it or fewer end it.
    pub max_changes: usize,
}

impl Default for FlapPolicy {
    fn default() -> Self {
        Self { window: Duration::from_secs(600), max_changes: 6 }
    }
}

/// State-change notices for one target, with flap damping.
#[derive(Debug, Clone)]
pub struct FlapDamper {
    policy: FlapPolicy,
    /// When the state changed, oldest first, within the window.
    changes: VecDeque<u64>,
    current: Option<Side>,
    /// What a person was last told.
    told: Option<Side>,
    flapping: bool,
}

impl FlapDamper {
    pub fn new(policy: FlapPolicy) -> Self {
        Self { policy, changes: VecDeque::new(), current: None, told: None, flapping: false }
    }

    /// A damper that resumes what an earlier run told (its state and whether it was
    /// flapping), so the first state seen is compared with that: a failure told before a
    /// restart is resolved when the target is found well.
    pub fn resumed(policy: FlapPolicy, told: Option<Side>, flapping: bool) -> Self {
        Self { policy, changes: VecDeque::new(), current: None, told, flapping }
    }

    pub fn flapping(&self) -> bool {
        self.flapping
    }

    /// What a person was last told.
    pub fn told(&self) -> Option<Side> {
        self.told
    }

    /// A reload's policy, from the next change on.
    pub fn set_policy(&mut self, policy: FlapPolicy) {
        self.policy = policy;
    }

    /// The target is now on `side` (a state change, or a repeat of the same state, which
    /// is no news). Returns what to tell, in order.
    pub fn observe(&mut self, side: Side, now_unix_ms: u64) -> Vec<Notice> {
        let mut out = Vec::new();
        if self.current == Some(side) {
            return out;
        }
        let first = self.current.is_none();
        self.current = Some(side);
        if !first {
            self.changes.push_back(now_unix_ms);
        }
        self.expire(now_unix_ms);
        if !self.flapping && self.changes.len() >= self.policy.max_changes.max(2) {
            self.flapping = true;
            out.push(Notice::FlappingStarted(self.changes.len()));
            return out;
        }
        if !self.flapping {
            out.extend(self.tell());
        }
        out
    }

    /// Called now and then: a flapping target that has settled is told as such, then its
    /// state if that is news.
    pub fn tick(&mut self, now_unix_ms: u64) -> Vec<Notice> {
        self.expire(now_unix_ms);
        let mut out = Vec::new();
        if self.flapping && self.changes.len() <= self.policy.max_changes / 2 {
            self.flapping = false;
            out.push(Notice::FlappingStopped);
            out.extend(self.tell());
        }
        out
    }

    fn expire(&mut self, now_unix_ms: u64) {
        let window = u64::try_from(self.policy.window.as_millis()).unwrap_or(u64::MAX);
        while self.changes.front().is_some_and(|t| now_unix_ms.saturating_sub(*t) > window) {
            self.changes.pop_front();
        }
    }

    /// The current state, when it differs from what was last told. A first `Ok` is not
    /// news (nothing was wrong).
    fn tell(&mut self) -> Option<Notice> {
        let current = self.current?;
        if self.told == Some(current) || (self.told.is_none() && current == Side::Ok) {
            self.told.get_or_insert(current);
            return None;
        }
        self.told = Some(current);
        Some(match current {
            Side::Failing => Notice::Failing,
            Side::Ok => Notice::Recovered,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Layer, ServiceName};

    fn damper() -> FlapDamper {
        FlapDamper::new(FlapPolicy { window: Duration::from_secs(60), max_changes: 4 })
    }

    #[test]
    fn test_each_change_is_told_once_and_a_first_ok_is_no_news() {
        let mut d = damper();
        assert_eq!(d.observe(Side::Ok, 0), vec![]);
        assert_eq!(d.observe(Side::Ok, 1), vec![], "the same state again is no news");
        assert_eq!(d.observe(Side::Failing, 2), vec![Notice::Failing]);
        assert_eq!(d.observe(Side::Failing, 3), vec![]);
        assert_eq!(d.observe(Side::Ok, 4), vec![Notice::Recovered]);
    }

    #[test]
    fn test_a_first_failure_is_news() {
        let mut d = damper();
        assert_eq!(d.observe(Side::Failing, 0), vec![Notice::Failing]);
    }

    #[test]
    fn test_flapping_is_told_once_and_holds_back_single_changes_until_it_settles() {
        let mut d = damper();
        d.observe(Side::Ok, 0);
        assert_eq!(d.observe(Side::Failing, 1_000), vec![Notice::Failing]);
        assert_eq!(d.observe(Side::Ok, 2_000), vec![Notice::Recovered]);
        assert_eq!(d.observe(Side::Failing, 3_000), vec![Notice::Failing]);
        assert_eq!(d.observe(Side::Ok, 4_000), vec![Notice::FlappingStarted(4)], "4 changes in 60 s");
        assert!(d.flapping());
        assert_eq!(d.observe(Side::Failing, 5_000), vec![], "held back while flapping");
        assert_eq!(d.observe(Side::Ok, 6_000), vec![]);
        assert_eq!(d.tick(30_000), vec![], "still 6 changes in the window");
        // At 63.5 s the changes of 1..3 s have left the window: 3 remain, above 4/2.
        assert_eq!(d.tick(63_500), vec![]);
        // At 65.5 s only the change at 6 s remains: settled, on ok; the last told was
        // failing (at 3 s), so the recovery is news.
        assert_eq!(d.tick(65_500), vec![Notice::FlappingStopped, Notice::Recovered]);
        assert!(!d.flapping());
        assert_eq!(d.observe(Side::Failing, 70_000), vec![Notice::Failing], "single changes are told again");
    }

    #[test]
    fn test_flapping_that_settles_on_what_was_told_adds_nothing() {
        let mut d = damper();
        d.observe(Side::Ok, 0);
        for (i, side) in [Side::Failing, Side::Ok, Side::Failing, Side::Ok].into_iter().enumerate() {
            d.observe(side, 1_000 * (i as u64 + 1));
        }
        assert!(d.flapping());
        // Last told: Failing (third change); the flapping began on the fourth (Ok).
        assert_eq!(d.observe(Side::Failing, 5_000), vec![]);
        assert_eq!(d.tick(200_000), vec![Notice::FlappingStopped], "settled on failing, already told");
    }

    #[test]
    fn test_a_resumed_failure_is_resolved_when_the_target_is_found_well() {
        let mut d = FlapDamper::resumed(FlapPolicy::default(), Some(Side::Failing), false);
        assert_eq!(d.observe(Side::Ok, 0), vec![Notice::Recovered], "told failing before the restart");
        let mut quiet = FlapDamper::resumed(FlapPolicy::default(), Some(Side::Ok), false);
        assert_eq!(quiet.observe(Side::Ok, 0), vec![]);
        let mut flapping = FlapDamper::resumed(FlapPolicy::default(), Some(Side::Failing), true);
        assert_eq!(flapping.observe(Side::Failing, 0), vec![], "held while flapping");
        assert_eq!(flapping.tick(1), vec![Notice::FlappingStopped], "no changes since: settled, on what was told");
    }

    #[test]
    fn test_probe_alerts_share_identity_between_firing_and_resolved() {
        let target = ServiceName::parse("api").expect("name");
        let down = ProbeEvent::Down {
            probe: "api-health".into(),
            target: target.clone(),
            layer: Layer::L7,
            kind: "http",
            failure: Failure::Timeout,
            consecutive: 2,
            last_failure_unix_ms: 0,
            first_failure_unix_ms: 1_000,
        };
        let up = ProbeEvent::Up { probe: "api-health".into(), target, layer: Layer::L7 };
        let firing = probe_alert(&down, 2_000, None);
        let resolved = probe_alert(&up, 5_000, Some(1_000));
        assert_eq!(firing.fingerprint(), resolved.fingerprint(), "the same alert, resolved");
        assert_eq!((firing.status, resolved.status), (AlertStatus::Firing, AlertStatus::Resolved));
        assert_eq!((resolved.starts_at_unix_ms, resolved.ends_at_unix_ms), (1_000, Some(5_000)));
        assert!(firing.summary().contains("no answer within the timeout"), "{}", firing.summary());
    }

    #[test]
    fn test_alertmanager_payload_has_version_4_shape() {
        let a = Alert::new("ProbeFailing", Severity::Warning, AlertStatus::Firing, 0)
            .label("probe", "p1")
            .annotate("summary", "s1");
        let b = Alert::new("ProbeFailing", Severity::Warning, AlertStatus::Firing, 0)
            .label("probe", "p2")
            .annotate("summary", "s2")
            .resolved_at(1_000);
        let groups = BTreeMap::from([("alertname".to_string(), "ProbeFailing".to_string())]);
        let p = alertmanager_payload("warden", &groups, &[a.clone(), b]);
        assert_eq!(p["version"], "4");
        assert_eq!(p["status"], "firing", "firing while any alert fires");
        assert_eq!(p["commonLabels"]["alertname"], "ProbeFailing");
        assert!(p["commonLabels"].get("probe").is_none(), "labels that differ are not common");
        assert_eq!(p["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(p["alerts"][1]["endsAt"], "1970-01-01T00:00:01.000Z");
        assert_eq!(p["alerts"][0]["fingerprint"], a.fingerprint());
        assert_eq!(p["groupKey"], "{}:{alertname=\"ProbeFailing\"}");
    }

    #[test]
    fn test_silences_are_checked_and_mute_only_what_they_match_while_active() {
        let m = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(Silence::new(1, m(&[]), 0, 1, "a", "x"), Err(SilenceError::NoMatchers));
        assert_eq!(Silence::new(1, m(&[("1x", "v")]), 0, 1, "a", "x"), Err(SilenceError::BadLabel("1x".into())));
        assert_eq!(Silence::new(1, m(&[("target", "api")]), 0, 0, "a", "x"), Err(SilenceError::BadDuration));
        assert_eq!(Silence::new(1, m(&[("target", "api")]), 0, 10, "a", " "), Err(SilenceError::NoComment));
        let s = Silence::new(1, m(&[("target", "api"), ("alertname", "ProbeFailing")]), 1_000, 60_000, "ops", "deploy")
            .expect("valid");
        let api = Alert::new("ProbeFailing", Severity::Warning, AlertStatus::Firing, 0).label("target", "api");
        let db = Alert::new("ProbeFailing", Severity::Warning, AlertStatus::Firing, 0).label("target", "db");
        let all = [s];
        assert_eq!(silenced_by(&api, &all, 2_000).map(|s| s.id), Some(1));
        assert!(silenced_by(&db, &all, 2_000).is_none(), "another target");
        assert!(silenced_by(&api, &all, 61_000).is_none(), "expired");
        assert!(silenced_by(&api, &all, 999).is_none(), "not yet");
    }

    #[test]
    fn test_a_group_is_one_alertname_from_the_front_without_duplicates() {
        let a = |name: &str, target: &str, summary: &str| {
            Alert::new(name, Severity::Warning, AlertStatus::Firing, 0)
                .label("target", target)
                .annotate("summary", summary)
        };
        let mut q: std::collections::VecDeque<Alert> = [
            a("ProbeFailing", "api", "first"),
            a("ProbeFailing", "db", "db"),
            a("ProbeFailing", "api", "second"),
            a("WardenSloBurnRate", "x", "slo"),
            a("ProbeFailing", "web", "after"),
        ]
        .into_iter()
        .collect();
        let g = take_group(&mut q, 100);
        assert_eq!(g.len(), 2, "api once (its latest), db: {g:?}");
        assert_eq!(g[0].summary(), "second");
        assert_eq!(q.len(), 2, "the next name starts the next group");
        assert_eq!(take_group(&mut q, 100).len(), 1);
        assert_eq!(take_group(&mut q, 1).len(), 1);
        assert!(take_group(&mut q, 1).is_empty());
    }
}
