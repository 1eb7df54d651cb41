//! Service level objectives: the share of good events over a rolling window against a
//! target, the error budget left, and how fast it burns.
//!
//! Four SLOs (the spec's "Observability"): health (probe checks that pass), trust
//! (autonomous repairs that succeeded and were not rolled back), confidence (incidents
//! resolved by the first playbook the diagnosis chose) and MTTR (incidents restored within
//! the MTTR limit, 2 minutes). Events are counted in one-minute buckets ([`Buckets`]) that
//! the node keeps in its store, so a restart loses no window.
//!
//! Alerting follows the Google SRE workbook's multiwindow, multi-burn-rate alerts (as Sloth
//! and Pyrra generate them): the burn rate is the error rate over the budget's rate
//! (`(1 − ratio) / (1 − target)`), and an alert needs both a long and a short window over
//! the same factor, so it fires fast on a steep burn and stops soon after it ends
//! ([`BURN_RULES`], for a 30-day objective). Beside them, the spec's own threshold: a value
//! under its target by more than [`ALERT_MARGIN_POINTS`].

use crate::incident::{Incident, IncidentStatus};
use crate::run::{RunOutcome, RunRecord};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The alert threshold sits this many percentage points under the target.
pub const ALERT_MARGIN_POINTS: f64 = 5.0;
/// Width of a bucket.
pub const BUCKET_MS: u64 = 60_000;
/// The objective's window (the error budget's period).
pub const SLO_WINDOW_MS: u64 = 30 * 24 * 3_600_000;

/// The four objectives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SloKind {
    Health,
    Trust,
    Confidence,
    Mttr,
}

impl SloKind {
    pub const ALL: [SloKind; 4] = [SloKind::Health, SloKind::Trust, SloKind::Confidence, SloKind::Mttr];

    pub fn as_str(self) -> &'static str {
        match self {
            SloKind::Health => "health",
            SloKind::Trust => "trust",
            SloKind::Confidence => "confidence",
            SloKind::Mttr => "mttr",
        }
    }

    /// Its target in `config`, as a share (0–1).
    pub fn target(self, config: &crate::config::SloConfig) -> f64 {
        let pct = match self {
            SloKind::Health => config.health_target_pct,
            SloKind::Trust => config.trust_target_pct,
            SloKind::Confidence => config.confidence_target_pct,
            SloKind::Mttr => config.mttr_target_pct,
        };
        pct / 100.0
    }

    /// What a good event is, in words (the API and the docs say it).
    pub fn describe(self) -> &'static str {
        match self {
            SloKind::Health => "probe checks that passed",
            SloKind::Trust => "autonomous repairs that succeeded and were not rolled back",
            SloKind::Confidence => "incidents resolved by the first playbook chosen",
            SloKind::Mttr => "incidents restored within the MTTR limit",
        }
    }
}

/// Good and total events of one bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub good: u64,
    pub total: u64,
}

impl Count {
    pub fn add(&mut self, other: Count) {
        self.good = self.good.saturating_add(other.good);
        self.total = self.total.saturating_add(other.total);
    }

    /// The share of good events, `None` without events.
    pub fn ratio(self) -> Option<f64> {
        (self.total > 0).then(|| self.good.min(self.total) as f64 / self.total as f64)
    }
}

/// One objective's events in one-minute buckets, keyed by the bucket's start (Unix ms).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buckets {
    pub buckets: BTreeMap<u64, Count>,
}

impl Buckets {
    /// Counts `count` at `at_unix_ms`.
    pub fn record(&mut self, at_unix_ms: u64, count: Count) {
        if count.total == 0 {
            return;
        }
        self.buckets.entry(at_unix_ms - at_unix_ms % BUCKET_MS).or_default().add(count);
    }

    /// Takes back `count` recorded at `at_unix_ms` (a record whose part changed).
    pub fn take(&mut self, at_unix_ms: u64, count: Count) {
        let key = at_unix_ms - at_unix_ms % BUCKET_MS;
        if let Some(c) = self.buckets.get_mut(&key) {
            c.good = c.good.saturating_sub(count.good);
            c.total = c.total.saturating_sub(count.total);
            if c.total == 0 {
                self.buckets.remove(&key);
            }
        }
    }

    /// Everything in the `window_ms` up to `now_unix_ms`.
    pub fn over(&self, now_unix_ms: u64, window_ms: u64) -> Count {
        let from = now_unix_ms.saturating_sub(window_ms);
        let mut sum = Count::default();
        for (_, c) in self.buckets.range(from - from % BUCKET_MS..) {
            sum.add(*c);
        }
        sum
    }

    /// Every event held.
    pub fn total(&self) -> Count {
        let mut sum = Count::default();
        for c in self.buckets.values() {
            sum.add(*c);
        }
        sum
    }

    /// Forgets buckets older than the objective's window.
    pub fn prune(&mut self, now_unix_ms: u64) {
        let keep_from = now_unix_ms.saturating_sub(SLO_WINDOW_MS + BUCKET_MS);
        self.buckets = self.buckets.split_off(&keep_from);
    }
}

/// A run's trust event: every autonomous repair (a run for an incident, not a dry run nor a
/// rollback) that ended counts at its end; good when it succeeded and was not rolled back.
/// A run governance stopped before it acted is not an action that ran.
pub fn run_event(r: &RunRecord) -> Option<(u64, Count)> {
    let autonomous = r.incident_id.is_some() && !r.dry_run && r.rollback_of.is_none();
    let end = r.finished_unix_ms.filter(|_| autonomous)?;
    let good = match r.outcome {
        RunOutcome::Succeeded => r.rolled_back_by.is_none(),
        RunOutcome::Failed => false,
        _ => return None,
    };
    Some((end, Count { good: u64::from(good), total: 1 }))
}

/// An incident's confidence and MTTR events: an incident that ended (resolved or failed, not
/// cleared by itself) counts at its end; good when the first playbook chosen resolved it,
/// and when it was restored within `mttr_limit_ms`.
pub fn incident_event(i: &Incident, mttr_limit_ms: u64) -> Option<(u64, Count, Count)> {
    let end = match i.status {
        IncidentStatus::Resolved | IncidentStatus::Failed | IncidentStatus::Closed => {
            i.resolved_unix_ms.unwrap_or(i.detected_unix_ms)
        }
        _ => return None,
    };
    let in_time = i.mttr().is_some_and(|(ms, _)| ms <= mttr_limit_ms);
    let one = |good: bool| Count { good: u64::from(good), total: 1 };
    Some((end, one(i.resolved_by_first_playbook()), one(in_time)))
}

/// Trust's, confidence's and MTTR's events, kept record by record: a record written again
/// (a run rolled back later, an incident reopened or closed) has its part replaced, so the
/// events follow the store's writes without reading it whole after each one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventBook {
    pub mttr_limit_ms: u64,
    pub trust: Buckets,
    pub confidence: Buckets,
    pub mttr: Buckets,
    runs: BTreeMap<u64, (u64, Count)>,
    incidents: BTreeMap<u64, (u64, Count, Count)>,
}

impl EventBook {
    pub fn new(mttr_limit_ms: u64) -> Self {
        Self { mttr_limit_ms, ..Self::default() }
    }

    /// Every record's events.
    pub fn of(incidents: &[Incident], runs: &[RunRecord], mttr_limit_ms: u64) -> Self {
        let mut book = Self::new(mttr_limit_ms);
        for r in runs {
            book.run(r.run_id, Some(r));
        }
        for i in incidents {
            book.incident(i.id, Some(i));
        }
        book
    }

    /// Run `id` as written now (`None`: gone).
    pub fn run(&mut self, id: u64, run: Option<&RunRecord>) {
        if let Some((at, c)) = self.runs.remove(&id) {
            self.trust.take(at, c);
        }
        if let Some((at, c)) = run.and_then(run_event) {
            self.trust.record(at, c);
            self.runs.insert(id, (at, c));
        }
    }

    /// Incident `id` as written now (`None`: gone).
    pub fn incident(&mut self, id: u64, incident: Option<&Incident>) {
        if let Some((at, c, m)) = self.incidents.remove(&id) {
            self.confidence.take(at, c);
            self.mttr.take(at, m);
        }
        if let Some((at, c, m)) = incident.and_then(|i| incident_event(i, self.mttr_limit_ms)) {
            self.confidence.record(at, c);
            self.mttr.record(at, m);
            self.incidents.insert(id, (at, c, m));
        }
    }

    /// Forgets what is older than the objectives' window: buckets, and the records' parts
    /// (a record that old written again counts at its old end, outside the window anyway).
    pub fn prune(&mut self, now_unix_ms: u64) {
        let keep_from = now_unix_ms.saturating_sub(SLO_WINDOW_MS + BUCKET_MS);
        self.runs.retain(|_, (at, _)| *at >= keep_from);
        self.incidents.retain(|_, (at, _, _)| *at >= keep_from);
        for b in [&mut self.trust, &mut self.confidence, &mut self.mttr] {
            b.prune(now_unix_ms);
        }
    }
}

/// Trust's events from the playbook runs ([`run_event`]).
pub fn trust_events(runs: &[RunRecord]) -> Buckets {
    EventBook::of(&[], runs, 0).trust
}

/// Confidence's and MTTR's events from the incidents ([`incident_event`]).
pub fn incident_events(incidents: &[Incident], mttr_limit_ms: u64) -> (Buckets, Buckets) {
    let book = EventBook::of(incidents, &[], mttr_limit_ms);
    (book.confidence, book.mttr)
}

/// `(1 − ratio) / (1 − target)`: 1 spends the budget exactly over the window; 0 with no
/// errors (or no events).
pub fn burn_rate(ratio: Option<f64>, target: f64) -> f64 {
    let budget = (1.0 - target).max(1e-9);
    ratio.map_or(0.0, |r| ((1.0 - r) / budget).max(0.0))
}

/// Share of the window's error budget not yet spent (negative once overspent); 1 without
/// events.
pub fn budget_left(ratio: Option<f64>, target: f64) -> f64 {
    1.0 - burn_rate(ratio, target)
}

/// A multiwindow burn-rate alert: fires while the burn rate over both windows exceeds
/// `factor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurnRule {
    pub long_ms: u64,
    pub short_ms: u64,
    pub factor: f64,
    /// `page` (a person now) or `ticket` (a person soon).
    pub severity: &'static str,
}

impl BurnRule {
    /// `1h`, `5m`, `3d`: the Prometheus duration of a window.
    pub fn window_name(ms: u64) -> String {
        match ms {
            ms if ms % 86_400_000 == 0 => format!("{}d", ms / 86_400_000),
            ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
            ms => format!("{}m", ms / 60_000),
        }
    }

    /// The alert's `severity` label, as warden's own alerts say it: a page is `critical`,
    /// a ticket a `warning`.
    pub fn alert_severity(&self) -> &'static str {
        if self.severity == "page" { "critical" } else { "warning" }
    }
}

/// The SRE workbook's table 5-8: 2 % of a 30-day budget in an hour, 5 % in six hours (page);
/// 10 % in a day, 10 % in three days (ticket).
pub const BURN_RULES: [BurnRule; 4] = [
    BurnRule { long_ms: 3_600_000, short_ms: 300_000, factor: 14.4, severity: "page" },
    BurnRule { long_ms: 6 * 3_600_000, short_ms: 1_800_000, factor: 6.0, severity: "page" },
    BurnRule { long_ms: 86_400_000, short_ms: 2 * 3_600_000, factor: 3.0, severity: "ticket" },
    BurnRule { long_ms: 3 * 86_400_000, short_ms: 6 * 3_600_000, factor: 1.0, severity: "ticket" },
];

/// The windows burn rates are reported over, shortest first.
pub fn burn_windows() -> Vec<u64> {
    let mut w: Vec<u64> = BURN_RULES.iter().flat_map(|r| [r.long_ms, r.short_ms]).collect();
    w.sort_unstable();
    w.dedup();
    w
}

/// A Prometheus rule file for the objectives, over warden's `warden_slo_events_total`:
/// one recording rule per window (`warden:slo_error_ratio:rate5m` ...), a multiwindow
/// burn-rate alert per objective and rule of [`BURN_RULES`], and the spec's threshold alert
/// on `warden_slo_value_ratio`. `targets` are shares (0–1). With a target as low as 85 %
/// the error ratio cannot reach 14.4 × 15 %: the fastest page cannot fire, as the workbook's
/// factors are meant for tighter objectives; the slower rules still can.
pub fn prometheus_rules(targets: &[(SloKind, f64)]) -> String {
    let mut out = String::from(
        "# Generated by `warden slo rules`: recording rules and multiwindow, multi-burn-rate\n\
         # alerts (Google SRE workbook, chapter 5) for warden's service level objectives.\n\
         groups:\n  - name: warden-slo-error-ratios\n    rules:\n",
    );
    for ms in burn_windows() {
        let w = BurnRule::window_name(ms);
        out.push_str(&format!(
            "      - record: warden:slo_error_ratio:rate{w}\n        \
             expr: sum by (slo) (rate(warden_slo_events_total{{result=\"bad\"}}[{w}])) / sum by (slo) (rate(warden_slo_events_total[{w}]))\n"
        ));
    }
    out.push_str("  - name: warden-slo-alerts\n    rules:\n");
    for (kind, target) in targets {
        let slo = kind.as_str();
        let budget = 1.0 - target;
        for r in &BURN_RULES {
            let (long, short) = (BurnRule::window_name(r.long_ms), BurnRule::window_name(r.short_ms));
            let threshold = (r.factor * budget * 1e6).round() / 1e6;
            out.push_str(&format!(
                "      - alert: WardenSloBurnRate\n        \
                 expr: warden:slo_error_ratio:rate{long}{{slo=\"{slo}\"}} > {threshold} and warden:slo_error_ratio:rate{short}{{slo=\"{slo}\"}} > {threshold}\n        \
                 labels:\n          severity: {sev}\n          slo: {slo}\n          windows: {kind}:{long}/{short}\n        \
                 annotations:\n          summary: SLO {slo} burns its error budget {factor}x too fast over {long} and {short}\n",
                sev = r.alert_severity(),
                kind = r.severity,
                factor = r.factor,
            ));
        }
        let below = ((target - ALERT_MARGIN_POINTS / 100.0).max(0.0) * 1e6).round() / 1e6;
        out.push_str(&format!(
            "      - alert: WardenSloBelowThreshold\n        \
             expr: warden_slo_value_ratio{{slo=\"{slo}\"}} < {below}\n        for: 5m\n        \
             labels:\n          severity: warning\n          slo: {slo}\n        \
             annotations:\n          summary: SLO {slo} is under its alert threshold of {below} (target {target})\n"
        ));
    }
    out
}

/// One objective now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloStatus {
    pub slo: SloKind,
    pub description: &'static str,
    /// Target share, 0–1.
    pub target: f64,
    /// Alert when the value falls under this (target − 5 points).
    pub alert_below: f64,
    /// Over the objective's window; `None` without events.
    pub value: Option<f64>,
    pub good: u64,
    pub total: u64,
    pub error_budget_left: f64,
    /// Burn rate per window (`5m`, `1h`, ...).
    pub burn_rates: BTreeMap<String, f64>,
    /// The burn-rate rules firing now, as `severity:long/short`.
    pub burning: Vec<String>,
    /// Under `alert_below`.
    pub below_threshold: bool,
}

/// Judges one objective's buckets at `now` against `target` (0–1).
pub fn status(slo: SloKind, buckets: &Buckets, target: f64, now_unix_ms: u64) -> SloStatus {
    let whole = buckets.over(now_unix_ms, SLO_WINDOW_MS);
    let value = whole.ratio();
    // In whole millionths: 0.85 − 0.05 is 0.7999999999999999 in floating point.
    let alert_below = ((target - ALERT_MARGIN_POINTS / 100.0).max(0.0) * 1e6).round() / 1e6;
    let rate = |ms| burn_rate(buckets.over(now_unix_ms, ms).ratio(), target);
    let burn_rates = burn_windows().into_iter().map(|ms| (BurnRule::window_name(ms), rate(ms))).collect();
    let burning = BURN_RULES
        .iter()
        .filter(|r| rate(r.long_ms) > r.factor && rate(r.short_ms) > r.factor)
        .map(|r| format!("{}:{}/{}", r.severity, BurnRule::window_name(r.long_ms), BurnRule::window_name(r.short_ms)))
        .collect();
    SloStatus {
        slo,
        description: slo.describe(),
        target,
        alert_below,
        value,
        good: whole.good,
        total: whole.total,
        error_budget_left: budget_left(value, target),
        burn_rates,
        burning,
        below_threshold: value.is_some_and(|v| v < alert_below),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;
    const NOW: u64 = 100 * 86_400_000;

    #[test]
    fn test_buckets_sum_a_window_and_forget_the_old() {
        let mut b = Buckets::default();
        b.record(NOW - 10 * MIN, Count { good: 9, total: 10 });
        b.record(NOW - 10 * MIN + 5, Count { good: 1, total: 1 });
        b.record(NOW - 2 * 3_600_000, Count { good: 0, total: 5 });
        b.record(NOW, Count { good: 0, total: 0 });
        assert_eq!(b.buckets.len(), 2, "same minute, one bucket; no empty bucket");
        assert_eq!(b.over(NOW, 3_600_000), Count { good: 10, total: 11 });
        assert_eq!(b.over(NOW, 3 * 3_600_000), Count { good: 10, total: 16 });
        b.record(NOW - SLO_WINDOW_MS - 10 * MIN, Count { good: 1, total: 1 });
        b.prune(NOW);
        assert_eq!(b.buckets.len(), 2, "older than the objective's window is gone");
    }

    #[test]
    fn test_burn_rate_and_budget() {
        // 85 % target: 15 % may fail. 70 % good burns at twice the budget's rate.
        assert!((burn_rate(Some(0.70), 0.85) - 2.0).abs() < 1e-9);
        assert!((budget_left(Some(0.70), 0.85) + 1.0).abs() < 1e-9, "overspent by a whole budget");
        assert_eq!(burn_rate(None, 0.85), 0.0, "no events burn nothing");
        assert_eq!(burn_rate(Some(1.0), 0.85), 0.0);
        assert!((budget_left(Some(0.925), 0.85) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn test_a_steep_recent_burn_pages_on_both_windows_only() {
        let target = 0.999;
        let mut b = Buckets::default();
        // A month of good events, then five minutes of everything failing.
        for m in 0..(30 * 24 * 60) {
            b.record(NOW - m * MIN - 10 * MIN, Count { good: 100, total: 100 });
        }
        let s = status(SloKind::Health, &b, target, NOW);
        assert!(s.burning.is_empty(), "{s:?}");
        for m in 0..5 {
            b.record(NOW - m * MIN, Count { good: 0, total: 100 });
        }
        // A total outage against a 99.9 % objective burns every window's budget.
        let s = status(SloKind::Health, &b, target, NOW);
        assert!(s.burning.contains(&"page:1h/5m".to_string()), "{s:?}");
        assert!(s.burn_rates["5m"] > 14.4 && s.burn_rates["1h"] > 14.4, "{s:?}");
        assert!(s.value.is_some_and(|v| v > 0.99), "the month is still fine: {s:?}");
        // Half an hour later the short window has cooled off: the fast page stops, though
        // its hour still burned.
        let later = status(SloKind::Health, &b, target, NOW + 30 * MIN);
        assert!(!later.burning.contains(&"page:1h/5m".to_string()), "{later:?}");
        assert!(later.burn_rates["1h"] > 14.4, "{later:?}");
    }

    #[test]
    fn test_the_spec_threshold_is_target_minus_five_points() {
        let mut b = Buckets::default();
        b.record(NOW, Count { good: 79, total: 100 });
        let s = status(SloKind::Confidence, &b, 0.85, NOW);
        assert!((s.alert_below - 0.80).abs() < 1e-9);
        assert!(s.below_threshold, "{s:?}");
        b.record(NOW, Count { good: 10, total: 10 });
        assert!(!status(SloKind::Confidence, &b, 0.85, NOW).below_threshold, "89/110 is over 80 %");
        assert!(!status(SloKind::Trust, &Buckets::default(), 0.85, NOW).below_threshold, "no events, no alert");
    }

    #[test]
    fn test_rules_name_every_window_and_objective() {
        let rules = prometheus_rules(&[(SloKind::Health, 0.85), (SloKind::Mttr, 0.9)]);
        for w in ["5m", "30m", "1h", "2h", "6h", "1d", "3d"] {
            assert!(rules.contains(&format!("record: warden:slo_error_ratio:rate{w}\n")), "{w}: {rules}");
        }
        assert_eq!(rules.matches("alert: WardenSloBurnRate").count(), 8, "{rules}");
        assert!(rules.contains("warden:slo_error_ratio:rate6h{slo=\"health\"} > 0.9"), "6 × 15 %: {rules}");
        assert!(rules.contains("warden_slo_value_ratio{slo=\"mttr\"} < 0.85"), "{rules}");
    }

    #[test]
    fn test_window_names() {
        let names: Vec<String> = burn_windows().into_iter().map(BurnRule::window_name).collect();
        assert_eq!(names, ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]);
    }

    #[test]
    fn test_trust_counts_autonomous_repairs_that_held() {
        let svc = crate::config::ServiceName::parse("api").expect("name");
        let run = |id, incident: Option<u64>, outcome, f: &dyn Fn(&mut RunRecord)| {
            let mut r = RunRecord::started(id, incident, "restart_service", &svc, NOW - 10 * MIN);
            r.outcome = outcome;
            r.finished_unix_ms = Some(NOW - 9 * MIN);
            f(&mut r);
            r
        };
        let runs = vec![
            run(1, Some(1), RunOutcome::Succeeded, &|_| {}),
            run(2, Some(2), RunOutcome::Succeeded, &|r| r.rolled_back_by = Some(9)),
            run(3, Some(3), RunOutcome::Failed, &|_| {}),
            run(4, None, RunOutcome::Succeeded, &|_| {}),
            run(5, Some(5), RunOutcome::Succeeded, &|r| r.dry_run = true),
            run(6, Some(6), RunOutcome::Denied, &|_| {}),
            run(7, Some(7), RunOutcome::Running, &|r| r.finished_unix_ms = None),
        ];
        assert_eq!(trust_events(&runs).over(NOW, 3_600_000), Count { good: 1, total: 3 });
    }

    #[test]
    fn test_confidence_and_mttr_count_ended_incidents() {
        let incident = |id, status, took_ms: u64, playbooks: &[&str]| {
            crate::incident::fixture(id, status, NOW - 20 * MIN, Some(NOW - 20 * MIN + took_ms), playbooks)
        };
        let all = vec![
            incident(1, IncidentStatus::Resolved, 1_000, &["restart_hung_service"]),
            incident(2, IncidentStatus::Resolved, 200_000, &["restart_hung_service", "quarantine_crashloop"]),
            incident(3, IncidentStatus::Failed, 5_000, &["restart_hung_service"]),
            incident(4, IncidentStatus::Cleared, 1_000, &[]),
        ];
        let (confidence, mttr) = incident_events(&all, 120_000);
        assert_eq!(confidence.over(NOW, 3_600_000), Count { good: 1, total: 3 }, "only the first playbook's wins");
        assert_eq!(mttr.over(NOW, 3_600_000), Count { good: 1, total: 3 }, "restored within 2 minutes");
    }

    #[test]
    fn test_the_book_replaces_a_records_part_when_it_is_written_again() {
        let svc = crate::config::ServiceName::parse("api").expect("name");
        let mut r = RunRecord::started(1, Some(1), "restart_service", &svc, NOW - 10 * MIN);
        let mut book = EventBook::new(120_000);
        book.run(1, Some(&r));
        assert_eq!(book.trust.total(), Count::default(), "still running: no event");
        r.outcome = RunOutcome::Succeeded;
        r.finished_unix_ms = Some(NOW - 9 * MIN);
        book.run(1, Some(&r));
        assert_eq!(book.trust.total(), Count { good: 1, total: 1 });
        r.rolled_back_by = Some(2);
        book.run(1, Some(&r));
        assert_eq!(book.trust.total(), Count { good: 0, total: 1 }, "rolled back later: one bad event, not two");
        let mut i = crate::incident::fixture(7, IncidentStatus::Resolved, NOW - 20 * MIN, Some(NOW - 19 * MIN), &["a"]);
        book.incident(7, Some(&i));
        assert_eq!(book.mttr.total(), Count { good: 1, total: 1 });
        i.status = IncidentStatus::Open;
        book.incident(7, Some(&i));
        assert_eq!(book.mttr.total(), Count::default(), "reopened: no longer ended");
        // The same as reading every record at once.
        i.status = IncidentStatus::Failed;
        book.incident(7, Some(&i));
        assert_eq!(book, EventBook::of(std::slice::from_ref(&i), std::slice::from_ref(&r), 120_000));
        book.prune(NOW + SLO_WINDOW_MS + 2 * BUCKET_MS);
        assert_eq!(book, EventBook::new(120_000), "a window later nothing is kept");
    }
}
