//! SloTracker: keeps the four service level objectives (rules: `warden_core::slo`).
//!
//! Every [`TICK`] it counts the probe checks made since its last look (the probe board's
//! totals per probe) into the store's health buckets, keeps the other objectives' events
//! from the incidents and runs in the store (all of them read once, then only those written
//! since: [`warden_core::slo::EventBook`]), and judges each objective against its target
//! from the config. The result goes to the [`SloBoard`] (what `GET /api/slo` reads) and to
//! the metrics (value, target, budget left, burn rates, and the events as counters for
//! Prometheus's own rules). An objective under its alert threshold (target − 5 points), or
//! burning its budget past a multiwindow rule, is alerted once, in the log and through the
//! notifier, and resolved once it recovers.

use super::notifier::Notifier;
use crate::addr::{AbortOnDrop, Addr};
use crate::current::Current;
use crate::guardian::probe_board::ProbeBoard;
use crate::metrics::Metrics;
use crate::registry::{ActorRegistry, Registration};
use crate::store::Store;
use crate::store::Written;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden_core::alert::{Alert, AlertStatus, Severity};
use warden_core::config::NodeConfig;
use warden_core::slo::{self, Count, EventBook, SloKind, SloStatus};

pub const PATH: &str = "healing/slo_tracker";
/// How often the objectives are counted and judged.
const TICK: Duration = Duration::from_secs(10);

pub enum SloMsg {
    Tick,
}

impl Addr<SloTracker> {
    pub fn at() -> Self {
        Addr::new(PATH)
    }
}

/// Trust's, confidence's and MTTR's events, and the store's write they are up to.
struct Events {
    seen_writes: u64,
    book: EventBook,
}

/// When the objectives were judged, and what was found.
type Judgement = (u64, Vec<SloStatus>);

/// The objectives as last judged, for the API, and the alerts firing for them (kept here,
/// outside the actor, so a restart of the tracker neither says a firing alert again nor
/// forgets to resolve it).
#[derive(Debug, Clone, Default)]
pub struct SloBoard {
    inner: Arc<Mutex<Option<Judgement>>>,
    firing: Arc<Mutex<BTreeMap<String, Alert>>>,
}

impl SloBoard {
    /// When they were judged, and the objectives; `None` before the first judgement.
    pub fn get(&self) -> Option<Judgement> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set(&self, at_unix_ms: u64, statuses: Vec<SloStatus>) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = Some((at_unix_ms, statuses));
    }
}

pub struct SloTracker {
    pub board: ProbeBoard,
    pub store: Store,
    pub config: Current<NodeConfig>,
    pub metrics: Metrics,
    pub notifier: Notifier,
    pub slos: SloBoard,
    pub registry: ActorRegistry,
}

pub struct State {
    /// Each probe's (checks, failures) at the last look.
    last_checks: BTreeMap<String, (u64, u64)>,
    /// Runs and incidents already counted in the event counters.
    counted_runs: BTreeSet<u64>,
    counted_incidents: BTreeSet<u64>,
    /// Whether the first look is done (what ended before it is not counted again).
    primed: bool,
    /// Trust's, confidence's and MTTR's events, followed write by write; read whole again
    /// when the MTTR limit changes or the tracker fell too far behind.
    events: Option<Events>,
    /// Whether the probe checks' totals have been noted once.
    checks_primed: bool,
    _tick: AbortOnDrop,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for SloTracker {
    type Msg = SloMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<SloMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        myself.send_message(SloMsg::Tick)?;
        Ok(State {
            last_checks: BTreeMap::new(),
            counted_runs: BTreeSet::new(),
            counted_incidents: BTreeSet::new(),
            primed: false,
            events: None,
            checks_primed: false,
            _tick: AbortOnDrop(myself.send_interval(TICK, || SloMsg::Tick)),
            _reg: self.registry.started(PATH),
        })
    }

    async fn handle(&self, _: ActorRef<SloMsg>, msg: SloMsg, st: &mut State) -> Result<(), ActorProcessingErr> {
        let SloMsg::Tick = msg;
        let now = warden_core::time::now_unix_ms();
        self.metrics.store_write_buffer_bytes.set(i64::try_from(self.store.write_buffer_bytes()).unwrap_or(i64::MAX));
        if let Err(e) = self.count_checks(st, now).await {
            tracing::debug!(error = %e, "cannot count the probe checks into the health objective yet");
        }
        match self.judge(st, now).await {
            Ok(statuses) => {
                self.alert(&statuses, now);
                self.slos.set(now, statuses);
            }
            Err(e) => tracing::debug!(error = %e, "cannot judge the objectives yet"),
        }
        Ok(())
    }
}

impl SloTracker {
    /// The checks since the last look, into the health buckets and counters.
    async fn count_checks(&self, st: &mut State, now: u64) -> Result<(), crate::store::StoreError> {
        // The first look only notes the totals: after a restart of this actor they hold
        // checks already counted.
        if !st.checks_primed {
            st.checks_primed = true;
            for p in self.board.snapshot() {
                st.last_checks.insert(p.name.clone(), (p.checks, p.failures));
            }
            return Ok(());
        }
        let mut count = Count::default();
        for p in self.board.snapshot() {
            let (checks, failures) = (p.checks, p.failures);
            let (c0, f0) = st.last_checks.insert(p.name.clone(), (checks, failures)).unwrap_or((0, 0));
            // A probe whose totals went down was made anew (a reload): count from zero.
            let (c0, f0) = if checks < c0 || failures < f0 { (0, 0) } else { (c0, f0) };
            let total = checks - c0;
            let bad = (failures - f0).min(total);
            count.add(Count { good: total - bad, total });
        }
        self.metrics.slo_counted(SloKind::Health, count);
        if count.total > 0 {
            self.store.slo_add(SloKind::Health, now, count).await?;
        }
        Ok(())
    }

    /// Every objective now, from the store.
    async fn judge(&self, st: &mut State, now: u64) -> Result<Vec<SloStatus>, crate::store::StoreError> {
        let config = self.config.get();
        let health = self.store.slo_buckets(SloKind::Health, now).await?;
        let limit = config.healing.mttr_alert.as_millis() as u64;
        self.follow_writes(st, limit, now).await?;
        let Some(events) = &st.events else { return Ok(Vec::new()) };
        let (trust, confidence, mttr) = (&events.book.trust, &events.book.confidence, &events.book.mttr);
        let statuses: Vec<SloStatus> = [
            (SloKind::Health, &health),
            (SloKind::Trust, trust),
            (SloKind::Confidence, confidence),
            (SloKind::Mttr, mttr),
        ]
        .into_iter()
        .map(|(kind, buckets)| slo::status(kind, buckets, kind.target(&config.slo), now))
        .collect();
        for s in &statuses {
            self.metrics.slo_judged(s);
        }
        Ok(statuses)
    }

    /// Brings the events up to the store's last write: every record at the first look (or
    /// when the MTTR limit changed, or too many writes went by), else only those written
    /// since; and counts into the counters what ended since the last look.
    async fn follow_writes(&self, st: &mut State, limit: u64, now: u64) -> Result<(), crate::store::StoreError> {
        let followed = st
            .events
            .as_ref()
            .filter(|e| e.book.mttr_limit_ms == limit)
            .and_then(|e| self.store.written_since(e.seen_writes));
        let Some((written, last)) = followed else {
            // The count is read before the records: a write in between is read again next time.
            let writes = self.store.record_writes();
            let (incidents, runs) = self.store.incidents_and_runs().await?;
            st.events = Some(Events { seen_writes: writes, book: EventBook::of(&incidents, &runs, limit) });
            self.count_ended(st, &incidents, &runs, limit);
            return Ok(());
        };
        if written.is_empty() {
            return Ok(());
        }
        let (mut incidents, mut runs) = (Vec::new(), Vec::new());
        for w in written {
            match w {
                Written::Incident(id) => incidents.push((id, self.store.incident(id).await?)),
                Written::Run(id) => runs.push((id, self.store.run_record(id).await?)),
            }
        }
        let Some(events) = st.events.as_mut() else { return Ok(()) };
        for (id, i) in &incidents {
            events.book.incident(*id, i.as_ref());
        }
        for (id, r) in &runs {
            events.book.run(*id, r.as_ref());
        }
        events.book.prune(now);
        events.seen_writes = last;
        let incidents: Vec<_> = incidents.into_iter().filter_map(|(_, i)| i).collect();
        let runs: Vec<_> = runs.into_iter().filter_map(|(_, r)| r).collect();
        self.count_ended(st, &incidents, &runs, limit);
        Ok(())
    }

    /// The counters (Prometheus's rules rate them): the records among these that ended since
    /// the last look, each once; nothing at the first look (what ended before it was
    /// counted by an earlier life, or is history).
    fn count_ended(
        &self,
        st: &mut State,
        incidents: &[warden_core::incident::Incident],
        runs: &[warden_core::run::RunRecord],
        limit: u64,
    ) {
        let mut fresh_runs = Vec::new();
        for r in runs.iter().filter(|r| r.outcome.is_final()) {
            if st.counted_runs.insert(r.run_id) && st.primed {
                fresh_runs.push(r.clone());
            }
        }
        let mut fresh_incidents = Vec::new();
        for i in incidents.iter().filter(|i| !i.status.is_open()) {
            if st.counted_incidents.insert(i.id) && st.primed {
                fresh_incidents.push(i.clone());
            }
        }
        st.primed = true;
        self.metrics.slo_counted(SloKind::Trust, slo::trust_events(&fresh_runs).total());
        let (c, m) = slo::incident_events(&fresh_incidents, limit);
        self.metrics.slo_counted(SloKind::Confidence, c.total());
        self.metrics.slo_counted(SloKind::Mttr, m.total());
    }

    /// Says each objective's alerts once when they start and once when they end.
    fn alert(&self, statuses: &[SloStatus], now: u64) {
        let mut now_firing: BTreeMap<String, Alert> = BTreeMap::new();
        for s in statuses {
            let name = s.slo.as_str();
            if s.below_threshold {
                let value = s.value.unwrap_or(0.0) * 100.0;
                let alert = Alert::new("WardenSloBelowThreshold", Severity::Warning, AlertStatus::Firing, now)
                    .label("slo", name)
                    .annotate(
                        "summary",
                        format!(
                            "SLO {name} at {value:.1} %, under its alert threshold of {:.1} % (target {:.1} %)",
                            s.alert_below * 100.0,
                            s.target * 100.0
                        ),
                    );
                now_firing.insert(format!("below/{name}"), alert);
            }
            for rule in &s.burning {
                // As the rule file says it (`BurnRule::alert_severity`).
                let severity = if rule.starts_with("page") { Severity::Critical } else { Severity::Warning };
                let alert = Alert::new("WardenSloBurnRate", severity, AlertStatus::Firing, now)
                    .label("slo", name)
                    .label("windows", rule)
                    .annotate("summary", format!("SLO {name} burns its error budget too fast ({rule})"));
                now_firing.insert(format!("burn/{name}/{rule}"), alert);
            }
        }
        let mut firing = self.slos.firing.lock().unwrap_or_else(|p| p.into_inner());
        for (key, alert) in &now_firing {
            if !firing.contains_key(key) {
                let summary = alert.annotations.get("summary").cloned().unwrap_or_default();
                tracing::warn!(alert = key, summary, "alert: service level objective");
                self.notifier.send(alert);
            }
        }
        let ended: Vec<String> = firing.keys().filter(|k| !now_firing.contains_key(*k)).cloned().collect();
        for key in ended {
            if let Some(alert) = firing.remove(&key) {
                tracing::info!(alert = key, "service level objective recovered");
                self.notifier.send(&alert.resolved_at(now));
            }
        }
        for (key, alert) in now_firing {
            firing.entry(key).or_insert(alert);
        }
    }
}
