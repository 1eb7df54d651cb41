//! Detectors: one actor per failure mode, turning signals into findings.
//!
//! The rule of each mode is `warden_core::detect`: [`assess`] for probe events,
//! [`assess_facts`] for what is known of a service now (state, last exit, a held port,
//! memory, missing files, free space). The actor judges every probe event as it comes (a
//! hang is found within a probe interval) and, every [`RECHECK_EVERY`], every probe that is
//! down now and every service's facts, so an event missed while it or the incident manager
//! restarted is not a fault missed, and a level (a full disk, a missing file) is seen
//! without an event.
//!
//! Before a finding is reported it is checked against what would explain it: a cause on
//! the same service (a held port explains a crash loop) or a dependency that is failing
//! (a frozen db explains the api's failures). An explained finding is not an incident of
//! its own: it is linked to the cause's incident and said once. A finding reported and no
//! longer seen is reported cleared, so an incident with no repair under way closes as such.

use super::facts;
use super::incident_manager::IncidentManager;
use crate::addr::{AbortOnDrop, Addr};
use crate::current::Current;
use crate::data_dir::DataDir;
use crate::guardian::probe_board::ProbeBoard;
use crate::guardian::service_table::ServiceTable;
use crate::registry::{ActorRegistry, Registration};
use ractor::{Actor, ActorProcessingErr, ActorRef, OutputPort};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use warden_core::config::{Layer, NodeConfig, ServiceName};
use warden_core::detect::{ServiceFacts, Thresholds, assess, assess_facts, causes_of, explained_by, oom_exit_key};
use warden_core::diagnose::Cause;
use warden_core::incident::Finding;
use warden_core::mode::FailureMode;
use warden_core::probe::{ProbeEvent, ProbeState};

/// How often every signal is judged again.
const RECHECK_EVERY: Duration = Duration::from_millis(500);
/// Exits in its restart window from which a service's OOM kills are one crash loop.
const OOM_LOOP_EXITS: usize = 2;
/// How long a finding waits at most for a failing check of the path to its service to
/// decide (reach its threshold and explain it, or pass).
const MAX_DEFER: Duration = Duration::from_secs(10);

/// The tree path of the detector for `mode`.
pub fn path(mode: FailureMode) -> String {
    format!("healing/detector/{}", mode.as_str())
}

pub enum DetectorMsg {
    Probe(ProbeEvent),
    /// Judge every probe that is down now and every service's facts.
    Recheck,
    /// The incident of this service was resolved, verified restored at the time given:
    /// forget what was reported of it, so a fault still there (seen in a check after that
    /// time) is reported again (and its incident reopened with the next playbook) instead
    /// of being taken as repaired.
    Resolved(ServiceName, u64),
}

impl Addr<Detector> {
    pub fn for_mode(mode: FailureMode) -> Self {
        Addr::new(path(mode))
    }
}

pub struct Detector {
    pub mode: FailureMode,
    pub events: Arc<OutputPort<ProbeEvent>>,
    pub resolved: Arc<OutputPort<(ServiceName, FailureMode, u64)>>,
    pub board: ProbeBoard,
    pub services: ServiceTable,
    pub config: Current<NodeConfig>,
    pub data_dir: DataDir,
    pub incidents: Addr<IncidentManager>,
    pub registry: ActorRegistry,
}

/// What a finding is about: a probe's streak (probe, first failure), or a service's facts.
type Key = (String, u64);

pub struct State {
    /// Findings the incident manager has acknowledged, by what they are about.
    reported: BTreeMap<Key, ServiceName>,
    /// Suppressed findings already said (and linked).
    explained: BTreeSet<Key>,
    /// Findings whose incident was resolved since: seen again, the repair did not hold.
    after_repair: BTreeSet<Key>,
    /// Events (an OOM kill) already reported, by what they are known by, with when they
    /// happened: forgotten once too old to be reported again.
    events: BTreeMap<String, u64>,
    /// When each service was last verified restored: a probe streak whose failures all
    /// came before is about what the repair fixed, however the board still shows it.
    verified: BTreeMap<ServiceName, u64>,
    /// Findings held back while a check of the path to their service fails below its
    /// threshold (that failure may explain them), since when.
    deferred: BTreeMap<Key, u64>,
    _tick: AbortOnDrop,
    /// The slow-boot detector's look the moment a boot is marked slow.
    _nudge: Option<AbortOnDrop>,
    _reg: Registration,
}

/// What one judgement found now.
struct Judged {
    findings: Vec<(Key, Finding)>,
    /// Findings of the modes that can explain this one, on any service.
    causes: Vec<Finding>,
}

#[ractor::async_trait]
impl Actor for Detector {
    type Msg = DetectorMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<DetectorMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        self.events.subscribe(myself.clone(), |ev| Some(DetectorMsg::Probe(ev)));
        let mode = self.mode;
        self.resolved.subscribe(myself.clone(), move |(service, m, at)| {
            (m == mode).then_some(DetectorMsg::Resolved(service, at))
        });
        // Whatever went down before this instance subscribed, then every tick.
        myself.send_message(DetectorMsg::Recheck)?;
        let nudge = (mode == FailureMode::SlowBoot).then(|| {
            let mut marked = self.services.slow_boots();
            let me = myself.clone();
            AbortOnDrop(tokio::spawn(async move {
                while marked.changed().await.is_ok() {
                    if me.send_message(DetectorMsg::Recheck).is_err() {
                        break;
                    }
                }
            }))
        });
        Ok(State {
            reported: BTreeMap::new(),
            explained: BTreeSet::new(),
            after_repair: BTreeSet::new(),
            events: BTreeMap::new(),
            verified: BTreeMap::new(),
            deferred: BTreeMap::new(),
            _tick: AbortOnDrop(myself.send_interval(RECHECK_EVERY, || DetectorMsg::Recheck)),
            _nudge: nudge,
            _reg: self.registry.started(&path(self.mode)),
        })
    }

    async fn handle(
        &self,
        _: ActorRef<DetectorMsg>,
        msg: DetectorMsg,
        st: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let (judged, whole) = match msg {
            DetectorMsg::Resolved(service, at) => {
                let keys: Vec<Key> =
                    st.reported.iter().filter(|(_, s)| **s == service).map(|(k, _)| k.clone()).collect();
                for k in keys {
                    st.reported.remove(&k);
                    st.after_repair.insert(k);
                }
                st.verified.insert(service, at);
                return Ok(());
            }
            DetectorMsg::Probe(ev) => {
                let (down, facts) = (self.board.down_now(), self.facts());
                (self.judge(std::slice::from_ref(&ev), &down, &facts, &st.verified), false)
            }
            DetectorMsg::Recheck => {
                let (down, facts) = (self.board.down_now(), self.facts());
                let mut judged = self.judge(&down, &down, &facts, &st.verified);
                let t = self.thresholds();
                for f in &facts {
                    if let Some(finding) = assess_facts(self.mode, f, t) {
                        // One full disk is one fault, whichever service it is put on.
                        let about = match &f.disk {
                            Some(d) if self.mode == FailureMode::DiskFull => format!("disk:{}", d.path),
                            _ => format!("service:{}", f.service),
                        };
                        // An OOM kill is an event: reported once, never "still there". Kills
                        // one after the other in a crash loop are one fault while it lasts.
                        let about = match oom_exit_key(f).filter(|_| finding.cause == Cause::OomKilled) {
                            Some(key) if f.oom_kills == 0 && f.recent_exits < OOM_LOOP_EXITS => {
                                // An exit older than OOM_EXIT_RECENT_MS is no finding any more.
                                let now = f.now_unix_ms;
                                st.events.retain(|_, at| {
                                    now.saturating_sub(*at) <= 6 * warden_core::detect::OOM_EXIT_RECENT_MS
                                });
                                let at = f.last_exit.as_ref().map_or(now, |e| e.at_unix_ms);
                                if st.events.insert(key.clone(), at).is_some() {
                                    continue;
                                }
                                key
                            }
                            Some(_) if f.oom_kills == 0 => format!("oom-loop:{}", f.service),
                            _ => about,
                        };
                        judged.findings.push(((about, 0), finding));
                    }
                }
                (judged, true)
            }
        };
        let dependencies_failing = self.failing_dependencies();
        let path_failing = self.path_failing();
        let now = warden_core::time::now_unix_ms();
        let mut seen: BTreeSet<Key> = BTreeSet::new();
        for (key, mut finding) in judged.findings {
            seen.insert(key.clone());
            finding.persists = st.after_repair.contains(&key);
            if st.reported.contains_key(&key) {
                continue;
            }
            let failing = dependencies_failing.get(&finding.service).cloned().unwrap_or_default();
            if let Some(why) = explained_by(&finding, &judged.causes, &failing) {
                st.deferred.remove(&key);
                if st.explained.insert(key) {
                    self.link(&finding, &why, &judged.causes, &failing).await;
                }
                continue;
            }
            // A check of the path to it fails, below its threshold yet: that may be the
            // cause, so the finding waits for it to decide (bounded).
            if let Some(path) = path_failing.get(&finding.service)
                && finding.mode != FailureMode::NetworkUnreachable
            {
                let since = *st.deferred.entry(key.clone()).or_insert(now);
                if now.saturating_sub(since) < MAX_DEFER.as_millis() as u64 {
                    if since == now {
                        tracing::info!(
                            mode = self.mode.as_str(),
                            service = finding.service.as_str(),
                            path = path.as_str(),
                            "failure held back: a check of the path to it fails too, and may explain it"
                        );
                    }
                    continue;
                }
            }
            st.deferred.remove(&key);
            match self.incidents.report(finding.clone()).await {
                Ok(()) => {
                    tracing::warn!(
                        mode = self.mode.as_str(),
                        service = finding.service.as_str(),
                        evidence = finding.evidence,
                        "failure detected"
                    );
                    st.after_repair.remove(&key);
                    st.reported.insert(key, finding.service.clone());
                }
                Err(e) => tracing::warn!(
                    mode = self.mode.as_str(),
                    service = finding.service.as_str(),
                    error = %e,
                    "failure detected but not delivered; judging it again shortly"
                ),
            }
        }
        if whole {
            st.explained.retain(|k| seen.contains(k));
            st.after_repair.retain(|k| seen.contains(k));
            st.deferred.retain(|k, _| seen.contains(k));
            // Reported and gone: the fault cleared (by a repair or by itself).
            let gone: Vec<(Key, ServiceName)> =
                st.reported.iter().filter(|(k, _)| !seen.contains(*k)).map(|(k, s)| (k.clone(), s.clone())).collect();
            for (key, service) in gone {
                st.reported.remove(&key);
                if !st.reported.values().any(|s| *s == service) {
                    self.incidents.cleared(service, self.mode);
                }
            }
        }
        Ok(())
    }
}

impl Detector {
    fn thresholds(&self) -> Thresholds {
        Thresholds::of(&self.config.get().healing)
    }

    fn facts(&self) -> Vec<ServiceFacts> {
        let needs =
            facts::Needs { memory: self.mode == FailureMode::OutOfMemory, disk: self.mode == FailureMode::DiskFull };
        facts::gather(&self.services, &self.data_dir, self.thresholds(), needs)
    }

    /// For each service, a check of the path to it (L2, L3, a name) that failed last
    /// time and is not down past its threshold yet.
    fn path_failing(&self) -> BTreeMap<ServiceName, String> {
        let config = self.config.get();
        let path: BTreeSet<&str> =
            config.probes.iter().filter(|p| warden_core::harm::checks_the_path(p)).map(|p| p.name.as_str()).collect();
        let mut out = BTreeMap::new();
        for p in self.board.snapshot() {
            if path.contains(p.name.as_str()) && p.consecutive_failures > 0 && p.state != ProbeState::Down {
                out.entry(p.target.clone()).or_insert(p.name.clone());
            }
        }
        out
    }

    /// This mode's findings among `events`, and the findings of the modes that explain it
    /// among every probe down now (`all_down`) and the services' facts. `verified`: when
    /// each service was last verified restored.
    fn judge(
        &self,
        events: &[ProbeEvent],
        all_down: &[ProbeEvent],
        facts: &[ServiceFacts],
        verified: &BTreeMap<ServiceName, u64>,
    ) -> Judged {
        let causes: Vec<FailureMode> = causes_of(self.mode).collect();
        let mut judged = Judged { findings: Vec::new(), causes: Vec::new() };
        let (t, table) = (self.thresholds(), self.services.lock());
        for ev in events {
            let Some(key) = streak(ev) else { continue };
            let Some(e) = table.services.get(ev.target()) else { continue };
            // A streak of the service's own checks whose every failure came before its current
            // process started is about a process that is gone. (The path to it does not
            // change with its process: a cut link stays cut across a restart.)
            let own = matches!(ev, ProbeEvent::Down { layer, kind, .. } if *layer > Layer::L3 && *kind != "dns");
            if own
                && matches!((ev, e.started_unix_ms), (ProbeEvent::Down { last_failure_unix_ms, .. }, Some(s)) if *last_failure_unix_ms < s)
            {
                continue;
            }
            // ... or before the repair that was verified since.
            if matches!((ev, verified.get(ev.target())), (ProbeEvent::Down { last_failure_unix_ms, .. }, Some(v)) if *last_failure_unix_ms < *v)
            {
                continue;
            }
            if let Some(f) = assess(self.mode, ev, Some(e.state), e.spec.role) {
                judged.findings.push((key, f));
            }
        }
        for ev in all_down {
            let Some(e) = table.services.get(ev.target()) else { continue };
            judged.causes.extend(causes.iter().filter_map(|m| assess(*m, ev, Some(e.state), e.spec.role)));
        }
        drop(table);
        for f in facts {
            judged.causes.extend(causes.iter().filter_map(|m| assess_facts(*m, f, t)));
        }
        judged
    }

    /// For each service, its dependencies that are not serving now.
    fn failing_dependencies(&self) -> BTreeMap<ServiceName, Vec<ServiceName>> {
        let down = self.board.failing_targets();
        let t = self.services.lock();
        t.services
            .iter()
            .map(|(name, e)| {
                let failing = e
                    .spec
                    .depends_on
                    .iter()
                    .filter(|d| facts::failing(t.services.get(*d).map(|x| x.state), down.contains(*d)))
                    .cloned()
                    .collect();
                (name.clone(), failing)
            })
            .collect()
    }

    /// Says an explained finding once and links it to the incident of what explains it.
    async fn link(&self, finding: &Finding, why: &str, causes: &[Finding], failing: &[ServiceName]) {
        let cause = causes
            .iter()
            .find(|c| c.service == finding.service)
            .map(|c| c.service.clone())
            .or_else(|| failing.first().cloned());
        tracing::info!(
            mode = self.mode.as_str(),
            service = finding.service.as_str(),
            why,
            "failure suppressed: something lower explains it"
        );
        if let Some(cause) = cause {
            let text = format!("{} on `{}`: {} ({why})", self.mode.as_str(), finding.service, finding.evidence);
            self.incidents.link(cause, text);
        }
    }
}

/// The streak a down event belongs to.
fn streak(ev: &ProbeEvent) -> Option<Key> {
    match ev {
        ProbeEvent::Down { probe, first_failure_unix_ms, .. } => Some((probe.clone(), *first_failure_unix_ms)),
        ProbeEvent::Up { .. } => None,
    }
}
