//! Metric names in one place, in Prometheus text format via prometheus-client.
//!
//! Counters and histograms are fed as things happen; state gauges (a service's state, a
//! probe's) are set from the service table and the probe board when a scraper asks
//! ([`Metrics::refresh`]), so they never drift from what the API shows.

use crate::guardian::probe_board::ProbeBoard;
use crate::guardian::service_table::ServiceTable;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use warden_core::config::ProbeSpec;
use warden_core::probe::ProbeState;
use warden_core::service::ServiceState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModeLabel {
    pub mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlaybookLabels {
    pub playbook: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlaybookLabel {
    pub playbook: String,
}

/// One playbook's runs since warden started, for the API.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PlaybookStat {
    pub executions: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub total_ms: u64,
    pub last_unix_ms: Option<u64>,
    pub last_outcome: Option<String>,
}

impl PlaybookStat {
    pub fn avg_ms(&self) -> Option<u64> {
        (self.executions > 0).then(|| self.total_ms / self.executions)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    pub probe: String,
    pub layer: String,
    pub result: String,
}

/// One probe's identity.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeId {
    pub probe: String,
    pub layer: String,
    pub target: String,
}

impl ProbeId {
    pub fn of(spec: &ProbeSpec) -> Self {
        Self { probe: spec.name.clone(), layer: spec.layer.as_str().into(), target: spec.target.to_string() }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeStateLabels {
    pub probe: String,
    pub layer: String,
    pub target: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceStateLabels {
    pub service: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub sink: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloLabel {
    pub slo: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloEventLabels {
    pub slo: String,
    /// `good` or `bad`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SloWindowLabels {
    pub slo: String,
    pub window: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabel {
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabel {
    pub verdict: String,
}

/// Every reason automatic repair may be blocked or held for (`warden_healing_blocked`).
pub const BLOCKED_REASONS: &[&str] =
    &["disabled", "audit_chain", "store_degraded", "paused", "breaker", "service_paused", "maintenance", "operator"];

/// The harm guard's verdicts on disruptive steps (`warden_harm_guard_decisions_total`).
pub const GUARD_VERDICTS: &[&str] = &["act", "healthy", "hold"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

/// The process's own figures, read from `/proc` at each scrape under the names Prometheus's
/// client libraries use (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...),
/// and the heap in use as the binary's allocator counts it ([`count_heap_with`]).
#[derive(Debug)]
struct ProcessCollector;

static HEAP_IN_USE: std::sync::OnceLock<fn() -> usize> = std::sync::OnceLock::new();

/// Says how to read the bytes allocated and not yet freed (the binary's global allocator
/// counts them): exported as `warden_heap_allocated_bytes`. A leak rises there; resident
/// memory also holds what the allocator keeps after a free, so it alone cannot tell.
pub fn count_heap_with(read: fn() -> usize) {
    let _ = HEAP_IN_USE.set(read);
}

impl prometheus_client::collector::Collector for ProcessCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let Ok(me) = procfs::process::Process::myself() else { return Ok(()) };
        let Ok(stat) = me.stat() else { return Ok(()) };
        let ticks = procfs::ticks_per_second() as f64;
        let page = procfs::page_size() as f64;
        let boot = procfs::boot_time_secs().unwrap_or(0) as f64;
        let cpu = ConstCounter::new((stat.utime + stat.stime) as f64 / ticks);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "User and system CPU time spent, in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            ("process_resident_memory_bytes", "Resident memory size in bytes", stat.rss as f64 * page),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes", stat.vsize as f64),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch",
                boot + stat.starttime as f64 / ticks,
            ),
            ("process_open_fds", "Open file descriptors", me.fd_count().unwrap_or(0) as f64),
            ("process_threads", "Threads of the process", stat.num_threads as f64),
        ];
        let heap = HEAP_IN_USE.get().map(|read| {
            (
                "warden_heap_allocated_bytes",
                "Heap bytes allocated and not yet freed, as warden's allocator counts them",
                read() as f64,
            )
        });
        for (name, help, value) in gauges.into_iter().chain(heap) {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        Ok(())
    }
}

/// Every metric warden exports.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub service_restarts: Family<ServiceLabel, Counter>,
    pub service_quarantines: Family<ServiceLabel, Counter>,
    pub incidents_opened: Family<ModeLabel, Counter>,
    pub incidents_open: Gauge,
    /// The store's writes held in memory (its memtables), bounded by its flushes.
    pub store_write_buffer_bytes: Gauge,
    pub mttr_seconds: Histogram,
    pub playbook_executions: Family<PlaybookLabels, Counter>,
    pub playbook_duration_seconds: Family<PlaybookLabel, Histogram, fn() -> Histogram>,
    pub playbook_last_run: Family<PlaybookLabel, Gauge<f64, AtomicU64>>,
    playbook_stats: Arc<Mutex<std::collections::BTreeMap<String, PlaybookStat>>>,
    pub probe_checks: Family<ProbeLabels, Counter>,
    pub gate_decisions: Family<DecisionLabel, Counter>,
    pub audit_entries: Counter,
    /// 1 while the probe is up; 0 while down, undecided or unsupported (see `probe_state`).
    pub probe_up: Family<ProbeId, Gauge>,
    /// 1 for the probe's current state (pending, up, down, unsupported), 0 for the others.
    pub probe_state: Family<ProbeStateLabels, Gauge>,
    pub probe_latency_seconds: Family<ProbeId, Histogram, fn() -> Histogram>,
    pub probe_last_success: Family<ProbeId, Gauge<f64, AtomicU64>>,
    /// 1 for the service's current state, 0 for the others.
    pub service_state: Family<ServiceStateLabels, Gauge>,
    pub alerts_sent: Family<AlertLabels, Counter>,
    /// Approval requests waiting for a person.
    pub approvals_pending: Gauge,
    /// Requests the policy denied, by action.
    pub policy_violations: Family<ActionLabel, Counter>,
    /// Each objective's events (Prometheus's own SLO rules rate these).
    pub slo_events: Family<SloEventLabels, Counter>,
    /// Over the objective's window; 1 without events.
    pub slo_value: Family<SloLabel, FloatGauge>,
    pub slo_target: Family<SloLabel, FloatGauge>,
    pub slo_error_budget_left: Family<SloLabel, FloatGauge>,
    pub slo_burn_rate: Family<SloWindowLabels, FloatGauge>,
    /// 1 while automatic repair is blocked or held for this reason (node-wide or for some
    /// service), else 0.
    pub healing_blocked: Family<ReasonLabel, Gauge>,
    /// The harm guard's verdicts on the healer's disruptive steps.
    pub harm_guard: Family<VerdictLabel, Counter>,
    /// Held while gauges are refreshed and the text encoded, so a scrape never sees a
    /// half-refreshed family.
    scrape: Arc<Mutex<()>>,
}

/// The handles one probe feeds on every check (looked up once, not per check).
#[derive(Clone, Debug)]
pub struct ProbeMetrics {
    pub checks_ok: Counter,
    pub checks_fail: Counter,
    pub checks_unsupported: Counter,
    pub latency: Histogram,
    pub last_success: Gauge<f64, AtomicU64>,
}

fn playbook_duration_histogram() -> Histogram {
    Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
}

/// How a run's outcome counts: the outcome labels every playbook has from the start.
const PLAYBOOK_OUTCOMES: [&str; 8] =
    ["succeeded", "failed", "denied", "throttled", "pending_approval", "interrupted", "held", "not_applicable"];

fn probe_latency_histogram() -> Histogram {
    Histogram::new([0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
}

const SERVICE_STATES: [ServiceState; 7] = [
    ServiceState::Pending,
    ServiceState::Starting,
    ServiceState::Running,
    ServiceState::Backoff,
    ServiceState::Stopping,
    ServiceState::Stopped,
    ServiceState::Quarantined,
];

const PROBE_STATES: [ProbeState; 4] = [ProbeState::Pending, ProbeState::Up, ProbeState::Down, ProbeState::Unsupported];

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        // warden's own series under `warden_`; the process's under the usual `process_`.
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector));
        let r = root.sub_registry_with_prefix("warden");
        let m = Self {
            registry: Arc::new(Registry::default()),
            service_restarts: Family::default(),
            service_quarantines: Family::default(),
            incidents_opened: Family::default(),
            incidents_open: Gauge::default(),
            store_write_buffer_bytes: Gauge::default(),
            mttr_seconds: Histogram::new([0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0]),
            playbook_executions: Family::default(),
            playbook_duration_seconds: Family::new_with_constructor(playbook_duration_histogram as fn() -> Histogram),
            playbook_last_run: Family::default(),
            playbook_stats: Arc::default(),
            probe_checks: Family::default(),
            gate_decisions: Family::default(),
            audit_entries: Counter::default(),
            probe_up: Family::default(),
            probe_state: Family::default(),
            probe_latency_seconds: Family::new_with_constructor(probe_latency_histogram as fn() -> Histogram),
            probe_last_success: Family::default(),
            service_state: Family::default(),
            alerts_sent: Family::default(),
            approvals_pending: Gauge::default(),
            policy_violations: Family::default(),
            slo_events: Family::default(),
            slo_value: Family::default(),
            slo_target: Family::default(),
            slo_error_budget_left: Family::default(),
            slo_burn_rate: Family::default(),
            healing_blocked: Family::default(),
            harm_guard: Family::default(),
            scrape: Arc::new(Mutex::new(())),
        };
        r.register("service_restarts", "Service processes restarted", m.service_restarts.clone());
        r.register("service_quarantines", "Services quarantined for crash-looping", m.service_quarantines.clone());
        r.register("incidents", "Incidents opened, by failure mode", m.incidents_opened.clone());
        r.register("incidents_open", "Incidents currently open", m.incidents_open.clone());
        r.register(
            "store_write_buffer_bytes",
            "The store's writes held in memory until flushed to its tables",
            m.store_write_buffer_bytes.clone(),
        );
        r.register("mttr_seconds", "Time from detection to verified restore", m.mttr_seconds.clone());
        r.register("playbook_executions", "Playbook runs, by outcome", m.playbook_executions.clone());
        r.register("playbook_duration_seconds", "Duration of playbook runs", m.playbook_duration_seconds.clone());
        r.register(
            "playbook_last_run_timestamp_seconds",
            "Unix time a playbook's last run ended (0: never)",
            m.playbook_last_run.clone(),
        );
        r.register("probe_checks", "Probe checks, by result", m.probe_checks.clone());
        r.register("gate_decisions", "Gatekeeper decisions", m.gate_decisions.clone());
        r.register("audit_entries", "Audit entries appended", m.audit_entries.clone());
        r.register("probe_up", "1 while the probe is up, else 0 (see warden_probe_state)", m.probe_up.clone());
        r.register("probe_state", "1 for the probe's current state", m.probe_state.clone());
        r.register("probe_latency_seconds", "Latency of passing probe checks", m.probe_latency_seconds.clone());
        r.register(
            "probe_last_success_timestamp_seconds",
            "Unix time of the probe's last passing check",
            m.probe_last_success.clone(),
        );
        r.register("service_state", "1 for the service's current state", m.service_state.clone());
        r.register("alerts_sent", "Alert notifications, by sink and outcome", m.alerts_sent.clone());
        r.register("slo_events", "Events of each service level objective, good or bad", m.slo_events.clone());
        r.register(
            "slo_value_ratio",
            "Share of good events over the objective's window (1 without events)",
            m.slo_value.clone(),
        );
        r.register("slo_target_ratio", "The objective's target share", m.slo_target.clone());
        r.register(
            "slo_error_budget_left_ratio",
            "Share of the window's error budget not yet spent (negative once overspent)",
            m.slo_error_budget_left.clone(),
        );
        r.register("slo_burn_rate", "Error rate over the budget's rate, per window", m.slo_burn_rate.clone());
        r.register("approvals_pending", "Approval requests waiting for a person", m.approvals_pending.clone());
        r.register(
            "policy_violations",
            "Requests the governance policy denied, by action",
            m.policy_violations.clone(),
        );
        r.register(
            "healing_blocked",
            "1 while automatic repair is blocked or held for this reason, else 0",
            m.healing_blocked.clone(),
        );
        r.register(
            "harm_guard_decisions",
            "The harm guard's verdicts on the healer's disruptive steps: act, healthy (skipped), hold",
            m.harm_guard.clone(),
        );
        for reason in BLOCKED_REASONS {
            let _ = m.healing_blocked.get_or_create(&ReasonLabel { reason: (*reason).into() });
        }
        for verdict in GUARD_VERDICTS {
            let _ = m.harm_guard.get_or_create(&VerdictLabel { verdict: (*verdict).into() });
        }
        let build: Family<BuildLabels, Gauge> = Family::default();
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").into() }).set(1);
        r.register("build_info", "1, labelled with the running warden's version", build);
        for decision in warden_core::audit::DecisionKind::ALL.map(warden_core::audit::DecisionKind::as_str) {
            let _ = m.gate_decisions.get_or_create(&DecisionLabel { decision: decision.into() });
        }
        for action in warden_core::playbook::Primitive::actions() {
            let _ = m.policy_violations.get_or_create(&ActionLabel { action: action.into() });
        }
        for mode in warden_core::mode::FailureMode::ALL {
            let _ = m.incidents_opened.get_or_create(&ModeLabel { mode: mode.as_str().into() });
        }
        // Every objective's series from the start (zero, not absent).
        for kind in warden_core::slo::SloKind::ALL {
            let slo = kind.as_str().to_string();
            for result in ["good", "bad"] {
                let _ = m.slo_events.get_or_create(&SloEventLabels { slo: slo.clone(), result: result.into() });
            }
            m.slo_value.get_or_create(&SloLabel { slo: slo.clone() }).set(1.0);
            let _ = m.slo_target.get_or_create(&SloLabel { slo: slo.clone() });
            m.slo_error_budget_left.get_or_create(&SloLabel { slo: slo.clone() }).set(1.0);
            for window in warden_core::slo::burn_windows() {
                let window = warden_core::slo::BurnRule::window_name(window);
                let _ = m.slo_burn_rate.get_or_create(&SloWindowLabels { slo: slo.clone(), window });
            }
        }
        Self { registry: Arc::new(root), ..m }
    }

    /// The reasons automatic repair is blocked or held now (1), every other one 0.
    pub fn healing_blocked_now(&self, reasons: &[&str]) {
        for r in BLOCKED_REASONS {
            self.healing_blocked
                .get_or_create(&ReasonLabel { reason: (*r).into() })
                .set(i64::from(reasons.contains(r)));
        }
    }

    /// Events of objective `kind` counted now.
    pub fn slo_counted(&self, kind: warden_core::slo::SloKind, count: warden_core::slo::Count) {
        let slo = kind.as_str().to_string();
        let bad = count.total.saturating_sub(count.good);
        self.slo_events.get_or_create(&SloEventLabels { slo: slo.clone(), result: "good".into() }).inc_by(count.good);
        self.slo_events.get_or_create(&SloEventLabels { slo, result: "bad".into() }).inc_by(bad);
    }

    /// An objective as last judged.
    pub fn slo_judged(&self, s: &warden_core::slo::SloStatus) {
        let label = SloLabel { slo: s.slo.as_str().into() };
        self.slo_value.get_or_create(&label).set(s.value.unwrap_or(1.0));
        self.slo_target.get_or_create(&label).set(s.target);
        self.slo_error_budget_left.get_or_create(&label).set(s.error_budget_left);
        for (window, rate) in &s.burn_rates {
            self.slo_burn_rate
                .get_or_create(&SloWindowLabels { slo: label.slo.clone(), window: window.clone() })
                .set(*rate);
        }
    }

    /// Every playbook's series from now on (zero until its first run).
    pub fn playbooks_known<'a>(&self, ids: impl Iterator<Item = &'a str>) {
        let mut stats = self.playbook_stats.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            let label = PlaybookLabel { playbook: id.into() };
            let _ = self.playbook_duration_seconds.get_or_create(&label);
            let _ = self.playbook_last_run.get_or_create(&label);
            for outcome in PLAYBOOK_OUTCOMES {
                let _ = self
                    .playbook_executions
                    .get_or_create(&PlaybookLabels { playbook: id.into(), outcome: outcome.into() });
            }
            stats.entry(id.to_string()).or_default();
        }
    }

    /// A run of `playbook` ended with `outcome` after `ms`.
    pub fn playbook_finished(&self, playbook: &str, outcome: &str, ms: u64) {
        self.playbook_executions
            .get_or_create(&PlaybookLabels { playbook: playbook.into(), outcome: outcome.into() })
            .inc();
        let label = PlaybookLabel { playbook: playbook.into() };
        self.playbook_duration_seconds.get_or_create(&label).observe(ms as f64 / 1000.0);
        let now = warden_core::time::now_unix_ms();
        self.playbook_last_run.get_or_create(&label).set(now as f64 / 1000.0);
        let mut stats = self.playbook_stats.lock().unwrap_or_else(|p| p.into_inner());
        let s = stats.entry(playbook.to_string()).or_default();
        s.executions += 1;
        match outcome {
            "succeeded" => s.succeeded += 1,
            "failed" => s.failed += 1,
            _ => {}
        }
        s.total_ms += ms;
        s.last_unix_ms = Some(now);
        s.last_outcome = Some(outcome.to_string());
    }

    /// Each playbook's runs since warden started.
    pub fn playbook_stats(&self) -> std::collections::BTreeMap<String, PlaybookStat> {
        self.playbook_stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The handles of one probe; its series exist from now on (zero until its first check).
    pub fn probe(&self, spec: &ProbeSpec) -> ProbeMetrics {
        let id = ProbeId::of(spec);
        let checks = |result: &str| {
            let labels = ProbeLabels { probe: id.probe.clone(), layer: id.layer.clone(), result: result.into() };
            self.probe_checks.get_or_create(&labels).clone()
        };
        ProbeMetrics {
            checks_ok: checks("ok"),
            checks_fail: checks("fail"),
            checks_unsupported: checks("unsupported"),
            latency: self.probe_latency_seconds.get_or_create(&id).clone(),
            last_success: self.probe_last_success.get_or_create(&id).clone(),
        }
    }

    /// Drops the series of a probe a reload removed.
    pub fn forget_probe(&self, spec: &ProbeSpec) {
        let id = ProbeId::of(spec);
        for result in ["ok", "fail", "unsupported"] {
            self.probe_checks.remove(&ProbeLabels {
                probe: id.probe.clone(),
                layer: id.layer.clone(),
                result: result.into(),
            });
        }
        self.probe_latency_seconds.remove(&id);
        self.probe_last_success.remove(&id);
    }

    /// Sets the state gauges from the service table and the probe board.
    fn refresh(&self, services: &ServiceTable, probes: &ProbeBoard) {
        self.service_state.clear();
        for s in services.snapshot() {
            // Every service's counters from the start (zero, not absent).
            let label = ServiceLabel { service: s.name.to_string() };
            let _ = self.service_restarts.get_or_create(&label);
            let _ = self.service_quarantines.get_or_create(&label);
            for state in SERVICE_STATES {
                let labels = ServiceStateLabels { service: s.name.to_string(), state: state.as_str().into() };
                self.service_state.get_or_create(&labels).set(i64::from(s.state == state));
            }
        }
        self.probe_up.clear();
        self.probe_state.clear();
        for p in probes.snapshot() {
            let id = ProbeId { probe: p.name.clone(), layer: p.layer.as_str().into(), target: p.target.to_string() };
            self.probe_up.get_or_create(&id).set(i64::from(p.state == ProbeState::Up));
            for state in PROBE_STATES {
                let labels = ProbeStateLabels {
                    probe: id.probe.clone(),
                    layer: id.layer.clone(),
                    target: id.target.clone(),
                    state: state.as_str().into(),
                };
                self.probe_state.get_or_create(&labels).set(i64::from(p.state == state));
            }
        }
    }

    /// Refreshes the state gauges and encodes everything, as one scrape.
    pub fn scrape(
        &self,
        services: &ServiceTable,
        probes: &ProbeBoard,
        openmetrics: bool,
    ) -> Result<String, std::fmt::Error> {
        let _one_at_a_time = self.scrape.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh(services, probes);
        if openmetrics { self.encode_openmetrics() } else { self.encode_prometheus() }
    }

    /// OpenMetrics text, for scrapers that ask for it.
    pub fn encode_openmetrics(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Prometheus text format 0.0.4 (what `promtool check metrics` and most scrapers read).
    pub fn encode_prometheus(&self) -> Result<String, std::fmt::Error> {
        Ok(openmetrics_to_prometheus(&self.encode_openmetrics()?))
    }
}

/// OpenMetrics names a counter family without `_total` and ends with `# EOF`; the
/// Prometheus text format names the family like its samples and has no terminator.
pub fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: std::collections::BTreeSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters.contains(name).then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_counter_families_are_named_like_their_samples() {
        let m = Metrics::new();
        m.audit_entries.inc();
        let text = m.encode_prometheus().expect("encode");
        assert!(text.contains("# TYPE warden_audit_entries_total counter"), "{text}");
        assert!(text.contains("# HELP warden_audit_entries_total "), "{text}");
        assert!(text.contains("warden_audit_entries_total 1"), "{text}");
        assert!(!text.contains("# EOF"));
        assert!(text.contains("# TYPE warden_mttr_seconds histogram"), "non-counters untouched");
    }
}
