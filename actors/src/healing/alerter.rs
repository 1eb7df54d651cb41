//! The alerter: tells a person when a probe starts failing and when it recovers, once per
//! change, with flap damping (`warden_core::alert::FlapDamper`), in the log and through the
//! notifier's webhooks.
//!
//! It listens on the probe-event port like the detectors, and every second also reads the
//! probe board, so a change it missed while restarting is still told. What was told lives
//! in the [`AlertBook`], outside the actor, and in the data dir (`alerts.json`): neither a
//! restart of the alerter nor one of warden repeats an alert or leaves one unresolved. A
//! probe a reload removed has its firing alerts resolved.
//!
//! A new failing alert waits `alerts.group_wait_ms` before it is sent (Alertmanager's
//! group wait). It also waits while something lower explains it: a failing probe of the
//! same target at a lower layer (inhibition: a closed port explains a failing HTTP check),
//! or warden's repair of the fault, for a probe of the incident's service or of a service
//! that depends on it (`warden_core::incident::held_by`, on the incident manager's
//! [`RepairBoard`]). An alert that recovers while it waits was never worth a page and is
//! dropped; one still failing a group wait after what held it is over (a repair failed,
//! given up or past its time; the lower layer back) is sent then.

use super::notifier::Notifier;
use super::repair_board::RepairBoard;
use crate::addr::{AbortOnDrop, Addr};
use crate::current::Current;
use crate::data_dir::DataDir;
use crate::guardian::probe_board::ProbeBoard;
use crate::registry::{ActorRegistry, Registration};
use ractor::{Actor, ActorProcessingErr, ActorRef, OutputPort};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden_core::alert::{Alert, FlapDamper, FlapPolicy, Notice, Side, probe_alert};
use warden_core::config::{Layer, NodeConfig, ServiceName};
use warden_core::incident::held_by;
use warden_core::probe::{ProbeEvent, ProbeStatus};
use warden_core::time::now_unix_ms;

pub const PATH: &str = "healing/alerter";
/// How often flapping is re-judged and the board read for missed changes.
const TICK: Duration = Duration::from_secs(1);

pub enum AlerterMsg {
    Probe(ProbeEvent),
    Tick,
}

impl Addr<Alerter> {
    pub fn at() -> Self {
        Addr::new(PATH)
    }
}

/// What each probe's people were told, kept across restarts of the alerter.
#[derive(Debug, Clone, Default)]
pub struct AlertBook {
    inner: Arc<Mutex<Book>>,
}

#[derive(Debug, Default)]
struct Book {
    /// Whether the data dir's copy was read (once per process).
    loaded: bool,
    probes: BTreeMap<String, Tracked>,
}

#[derive(Debug)]
struct Tracked {
    target: ServiceName,
    layer: Layer,
    damper: FlapDamper,
    /// The latest down event, for the alert a settled flap turns into.
    last_down: Option<ProbeEvent>,
    /// When the failure that was told began (the resolved alert carries it).
    failing_since: Option<u64>,
    flapping_since: u64,
    /// A failing alert not sent yet: in its group wait, or held for a repair.
    pending: Option<Pending>,
}

/// A failing alert that waits.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    since_unix_ms: u64,
    /// The incident whose repair it waits for, once one covers it.
    repair: Option<u64>,
    /// The lower-layer probe of the same target whose failure explains it (inhibition).
    #[serde(default)]
    inhibited_by: Option<String>,
    /// When what held it was seen over: the probe gets a group wait from then to show the
    /// repair (or the lower layer's recovery) fixed it before the alert goes out.
    #[serde(default)]
    repair_over_unix_ms: Option<u64>,
    /// Held while its target was in maintenance.
    #[serde(default)]
    maintenance: bool,
}

/// What a failing alert waits for.
enum Hold {
    /// An incident's repair of its service or of one it depends on.
    Repair { incident: u64, cause: ServiceName },
    /// A failing probe of the same target at a lower layer (Alertmanager's inhibition).
    Lower { probe: String },
    /// Its target is in maintenance: someone is at work on it.
    Maintenance,
}

/// One probe's entry in `alerts.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    target: ServiceName,
    layer: Layer,
    told: Option<Side>,
    flapping: bool,
    failing_since: Option<u64>,
    flapping_since: u64,
    #[serde(default)]
    pending: Option<Pending>,
}

impl Book {
    fn load(&mut self, path: &std::path::Path, policy: FlapPolicy) {
        self.loaded = true;
        let Ok(text) = std::fs::read_to_string(path) else { return };
        let saved: BTreeMap<String, Saved> = match serde_json::from_str(&text) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "the alert book is unreadable; starting afresh");
                return;
            }
        };
        for (probe, s) in saved {
            self.probes.insert(
                probe,
                Tracked {
                    target: s.target,
                    layer: s.layer,
                    damper: FlapDamper::resumed(policy, s.told, s.flapping),
                    last_down: None,
                    failing_since: s.failing_since,
                    flapping_since: s.flapping_since,
                    pending: s.pending,
                },
            );
        }
    }

    /// Written whole, through a temporary file and a rename, after each notice.
    fn save(&self, path: &std::path::Path) {
        let saved: BTreeMap<&String, Saved> = self
            .probes
            .iter()
            .map(|(p, t)| {
                let s = Saved {
                    target: t.target.clone(),
                    layer: t.layer,
                    told: t.damper.told(),
                    flapping: t.damper.flapping(),
                    failing_since: t.failing_since,
                    flapping_since: t.flapping_since,
                    pending: t.pending.clone(),
                };
                (p, s)
            })
            .collect();
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec_pretty(&saved)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::warn!(file = %path.display(), error = %e, "cannot save the alert book");
        }
    }
}

pub struct Alerter {
    pub events: Arc<OutputPort<ProbeEvent>>,
    pub board: ProbeBoard,
    pub book: AlertBook,
    /// The open incidents' repairs: the alerts they explain wait.
    pub repairs: RepairBoard,
    pub notifier: Notifier,
    pub config: Current<NodeConfig>,
    pub data_dir: DataDir,
    pub registry: ActorRegistry,
    /// Services in maintenance: their alerts wait until it ends.
    pub holds: crate::holds::HoldBoard,
}

pub struct State {
    _tick: AbortOnDrop,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for Alerter {
    type Msg = AlerterMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<AlerterMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        {
            let mut book = self.book.inner.lock().unwrap_or_else(|p| p.into_inner());
            if !book.loaded {
                book.load(&self.data_dir.alerts_file(), self.config.get().alerts.flap);
            }
        }
        self.events.subscribe(myself.clone(), |ev| Some(AlerterMsg::Probe(ev)));
        myself.send_message(AlerterMsg::Tick)?;
        Ok(State {
            _tick: AbortOnDrop(myself.send_interval(TICK, || AlerterMsg::Tick)),
            _reg: self.registry.started(PATH),
        })
    }

    async fn handle(&self, _: ActorRef<AlerterMsg>, msg: AlerterMsg, _: &mut State) -> Result<(), ActorProcessingErr> {
        let now = now_unix_ms();
        let mut book = self.book.inner.lock().unwrap_or_else(|p| p.into_inner());
        let told = match msg {
            AlerterMsg::Probe(ev) => self.observe(&mut book, &ev, now),
            AlerterMsg::Tick => self.tick(&mut book, now),
        };
        if told {
            book.save(&self.data_dir.alerts_file());
        }
        Ok(())
    }
}

impl Alerter {
    /// Feeds one state change to its probe's damper; whether anything was told.
    fn observe(&self, book: &mut Book, ev: &ProbeEvent, now: u64) -> bool {
        let (probe, target, layer, side) = match ev {
            ProbeEvent::Down { probe, target, layer, .. } => (probe, target, *layer, Side::Failing),
            ProbeEvent::Up { probe, target, layer } => (probe, target, *layer, Side::Ok),
        };
        let flap = self.config.get().alerts.flap;
        let t = book.probes.entry(probe.clone()).or_insert_with(|| Tracked {
            target: target.clone(),
            layer,
            damper: FlapDamper::new(flap),
            last_down: None,
            failing_since: None,
            flapping_since: now,
            pending: None,
        });
        t.damper.set_policy(flap);
        if side == Side::Failing {
            t.last_down = Some(ev.clone());
        }
        let notices = t.damper.observe(side, now);
        for notice in &notices {
            self.tell(probe, t, *notice, now);
        }
        !notices.is_empty()
    }

    /// Catches up with the board, ends settled flapping, resolves removed probes' alerts.
    fn tick(&self, book: &mut Book, now: u64) -> bool {
        let statuses = self.board.snapshot();
        let mut told = false;
        for s in &statuses {
            let ev = match s.up {
                Some(false) => s.down_event(),
                Some(true) => Some(ProbeEvent::Up { probe: s.name.clone(), target: s.target.clone(), layer: s.layer }),
                None => None,
            };
            if let Some(ev) = ev {
                told |= self.observe(book, &ev, now);
            }
        }
        let configured: Vec<String> = self.config.get().probes.iter().map(|p| p.name.clone()).collect();
        let removed: Vec<String> = book.probes.keys().filter(|p| !configured.contains(p)).cloned().collect();
        for probe in removed {
            if let Some(t) = book.probes.remove(&probe) {
                told |= self.resolve_removed(&probe, &t, now);
            }
        }
        for (probe, t) in book.probes.iter_mut() {
            for notice in t.damper.tick(now) {
                self.tell(probe, t, notice, now);
                told = true;
            }
            told |= self.release_if_due(probe, t, now, &statuses);
        }
        self.notifier.unmute_ended();
        told
    }

    /// What a failing alert of `probe` (about `target`, at `layer`) waits for now, if any.
    /// `probes`: the probe board as this tick (or this notice) read it.
    fn holding(&self, probes: &[ProbeStatus], probe: &str, target: &ServiceName, layer: Layer) -> Option<Hold> {
        if self.holds.in_maintenance(target) {
            return Some(Hold::Maintenance);
        }
        let lower = probes
            .iter()
            .filter(|p| p.name != probe && p.target == *target && p.layer < layer && p.up == Some(false))
            .min_by_key(|p| p.layer);
        if let Some(p) = lower {
            return Some(Hold::Lower { probe: p.name.clone() });
        }
        let repairs = self.repairs.get();
        if repairs.is_empty() {
            return None;
        }
        let deps = dependencies(&self.config.get(), target);
        held_by(target, &deps, &repairs).map(|r| Hold::Repair { incident: r.incident_id, cause: r.service.clone() })
    }

    /// Sends a waiting failing alert once nothing holds it: its group wait is over, and no
    /// repair or lower-layer failure covers it (or the one that did is over, a group wait
    /// ago; a repair past its time holds nothing). Whether it sent.
    fn release_if_due(&self, probe: &str, t: &mut Tracked, now: u64, probes: &[ProbeStatus]) -> bool {
        let Some(mut pending) = t.pending.clone() else { return false };
        if t.damper.told() != Some(Side::Failing) {
            t.pending = None;
            return false;
        }
        match self.holding(probes, probe, &t.target, t.layer) {
            Some(Hold::Repair { incident, .. }) => {
                pending.repair = Some(incident);
                pending.repair_over_unix_ms = None;
                t.pending = Some(pending);
                return false;
            }
            Some(Hold::Lower { probe: lower }) => {
                pending.inhibited_by = Some(lower);
                pending.repair_over_unix_ms = None;
                t.pending = Some(pending);
                return false;
            }
            Some(Hold::Maintenance) => {
                pending.maintenance = true;
                pending.repair_over_unix_ms = None;
                t.pending = Some(pending);
                return false;
            }
            None => {}
        }
        if (pending.repair.is_some() || pending.inhibited_by.is_some() || pending.maintenance)
            && pending.repair_over_unix_ms.is_none()
        {
            pending.repair_over_unix_ms = Some(now);
            t.pending = Some(pending.clone());
        }
        let config = self.config.get();
        let mut wait = config.alerts.group_wait;
        if pending.repair_over_unix_ms.is_some() {
            // After a repair the probe needs its own checks to show it worked: at least
            // `success_threshold` intervals and a timeout.
            if let Some(spec) = config.probes.iter().find(|p| p.name == probe) {
                wait = wait.max(spec.interval * spec.success_threshold.max(1) + spec.timeout);
            }
        }
        let waiting_since = pending.repair_over_unix_ms.unwrap_or(pending.since_unix_ms);
        if now.saturating_sub(waiting_since) < wait.as_millis() as u64 {
            return false;
        }
        let Some(down) = &t.last_down else { return false };
        t.pending = None;
        let (target, layer) = (t.target.as_str(), t.layer.as_str());
        let mut alert = probe_alert(down, now, None);
        if let ProbeEvent::Down { failure, consecutive, .. } = down {
            match pending.repair {
                Some(incident) => tracing::warn!(
                    probe, target, layer, %failure, failures = consecutive, incident,
                    "alert: probe failing, and the repair that held its alert back did not fix it"
                ),
                None => tracing::warn!(probe, target, layer, %failure, failures = consecutive, "alert: probe failing"),
            }
        }
        if let Some(incident) = pending.repair {
            alert =
                alert.annotate("description", format!("held while incident {incident} was repaired; still failing"));
        } else if let Some(lower) = &pending.inhibited_by {
            alert =
                alert.annotate("description", format!("held while lower-layer probe {lower} failed; still failing"));
        } else if pending.maintenance {
            alert = alert.annotate("description", "held while its service was in maintenance; still failing");
        }
        t.failing_since = Some(alert.starts_at_unix_ms);
        self.notifier.send(&alert);
        true
    }

    /// A probe a reload removed: what was firing for it is resolved.
    fn resolve_removed(&self, probe: &str, t: &Tracked, now: u64) -> bool {
        let (target, layer) = (t.target.as_str(), t.layer.as_str());
        let summary = format!("probe {probe} ({layer}) of {target} was removed from the configuration");
        let mut told = false;
        if t.damper.told() == Some(Side::Failing) && t.pending.is_none() {
            let up = ProbeEvent::Up { probe: probe.to_string(), target: t.target.clone(), layer: t.layer };
            self.notifier.send(&probe_alert(&up, now, t.failing_since).annotate("summary", summary.clone()));
            told = true;
        }
        if t.damper.flapping() {
            let flap = self.config.get().alerts.flap;
            let alert = Alert::probe_flapping(probe, target, layer, 0, flap.window, t.flapping_since);
            self.notifier.send(&alert.annotate("summary", summary.clone()).resolved_at(now));
            told = true;
        }
        if told {
            tracing::info!(probe, target, layer, "probe removed; its alerts are resolved");
        }
        told
    }

    fn tell(&self, probe: &str, t: &mut Tracked, notice: Notice, now: u64) {
        let (target, layer) = (t.target.as_str(), t.layer.as_str());
        let flap = self.config.get().alerts.flap;
        let alert = match notice {
            // It waits (group wait, a repair); `release_if_due` sends it when nothing holds it.
            Notice::Failing => {
                let mut pending = Pending {
                    since_unix_ms: now,
                    repair: None,
                    inhibited_by: None,
                    repair_over_unix_ms: None,
                    maintenance: false,
                };
                let probes = self.board.snapshot();
                match self.holding(&probes, probe, &t.target, t.layer) {
                    Some(Hold::Repair { incident, cause }) => {
                        tracing::info!(
                            probe,
                            target,
                            layer,
                            incident,
                            cause = cause.as_str(),
                            "probe failing; its alert waits for the repair under way"
                        );
                        pending.repair = Some(incident);
                    }
                    Some(Hold::Lower { probe: lower }) => {
                        tracing::info!(
                            probe,
                            target,
                            layer,
                            lower,
                            "probe failing; its alert is inhibited by the failing lower-layer probe"
                        );
                        pending.inhibited_by = Some(lower);
                    }
                    Some(Hold::Maintenance) => {
                        tracing::info!(probe, target, layer, "probe failing; its service is in maintenance, no alert");
                        pending.maintenance = true;
                    }
                    None => {}
                }
                t.pending = Some(pending);
                self.release_if_due(probe, t, now, &probes);
                return;
            }
            Notice::Recovered if t.pending.is_some() => {
                match t.pending.take() {
                    Some(Pending { repair: Some(incident), .. }) => tracing::info!(
                        probe,
                        target,
                        layer,
                        incident,
                        "probe recovered by the repair; its held alert is dropped"
                    ),
                    Some(Pending { inhibited_by: Some(lower), .. }) => tracing::info!(
                        probe,
                        target,
                        layer,
                        lower,
                        "probe recovered; its alert, inhibited by a lower layer, is dropped"
                    ),
                    Some(Pending { maintenance: true, .. }) => {
                        tracing::info!(probe, target, layer, "probe recovered during maintenance; nothing sent")
                    }
                    _ => tracing::info!(probe, target, layer, "probe recovered within its group wait; nothing sent"),
                }
                return;
            }
            Notice::Recovered => {
                let up = ProbeEvent::Up { probe: probe.to_string(), target: t.target.clone(), layer: t.layer };
                let down_for_ms = t.failing_since.map(|s| now.saturating_sub(s));
                tracing::info!(probe, target, layer, down_for_ms, "probe recovered");
                probe_alert(&up, now, t.failing_since.take())
            }
            Notice::FlappingStarted(changes) => {
                t.flapping_since = now;
                tracing::warn!(probe, target, layer, changes, "alert: probe flapping, single changes held back");
                Alert::probe_flapping(probe, target, layer, changes, flap.window, now)
            }
            Notice::FlappingStopped => {
                tracing::info!(probe, target, layer, "probe stopped flapping");
                Alert::probe_flapping(probe, target, layer, 0, flap.window, t.flapping_since)
                    .annotate("summary", format!("probe {probe} ({layer}) of {target} stopped flapping"))
                    .resolved_at(now)
            }
        };
        self.notifier.send(&alert);
    }
}

/// The services `target` relies on, all the way down (bounded by the config's size).
fn dependencies(config: &NodeConfig, target: &ServiceName) -> Vec<ServiceName> {
    let mut out: Vec<ServiceName> = Vec::new();
    let mut next = vec![target.clone()];
    while let Some(s) = next.pop() {
        let Some(spec) = config.services.iter().find(|x| x.name == s) else { continue };
        for d in &spec.depends_on {
            if !out.contains(d) && d != target && out.len() < config.services.len() {
                out.push(d.clone());
                next.push(d.clone());
            }
        }
    }
    out
}
