//! The alerter: tells a person when a probe starts failing and when it recovers, once per
//! change, with flap damping (`warden_core::alert::FlapDamper`), in the log and through the
//! notifier's webhooks.
//!
//! It listens on the probe-event port like the detectors, and every second also reads the
//! probe board, so a change it missed while restarting is still told. What was told lives
//! in the [`AlertBook`], outside the actor: a restart of the alerter repeats nothing.

use super::notifier::Notifier;
use crate::addr::{AbortOnDrop, Addr};
use crate::current::Current;
use crate::guardian::probe_board::ProbeBoard;
use crate::registry::{ActorRegistry, Registration};
use ractor::{Actor, ActorProcessingErr, ActorRef, OutputPort};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden_core::alert::{Alert, FlapDamper, Notice, Side, probe_alert};
use warden_core::config::{Layer, NodeConfig, ServiceName};
use warden_core::probe::ProbeEvent;
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
    inner: Arc<Mutex<BTreeMap<String, Tracked>>>,
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
}

pub struct Alerter {
    pub events: Arc<OutputPort<ProbeEvent>>,
    pub board: ProbeBoard,
    pub book: AlertBook,
    pub notifier: Notifier,
    pub config: Current<NodeConfig>,
    pub registry: ActorRegistry,
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
        self.events.subscribe(myself.clone(), |ev| Some(AlerterMsg::Probe(ev)));
        myself.send_message(AlerterMsg::Tick)?;
        Ok(State {
            _tick: AbortOnDrop(myself.send_interval(TICK, || AlerterMsg::Tick)),
            _reg: self.registry.started(PATH),
        })
    }

    async fn handle(&self, _: ActorRef<AlerterMsg>, msg: AlerterMsg, _: &mut State) -> Result<(), ActorProcessingErr> {
        let now = now_unix_ms();
        match msg {
            AlerterMsg::Probe(ev) => self.observe(&ev, now),
            AlerterMsg::Tick => self.tick(now),
        }
        Ok(())
    }
}

impl Alerter {
    fn observe(&self, ev: &ProbeEvent, now: u64) {
        let (probe, target, layer, side) = match ev {
            ProbeEvent::Down { probe, target, layer, .. } => (probe, target, *layer, Side::Failing),
            ProbeEvent::Up { probe, target, layer } => (probe, target, *layer, Side::Ok),
        };
        let flap = self.config.get().alerts.flap;
        let mut book = self.book.inner.lock().unwrap_or_else(|p| p.into_inner());
        let t = book.entry(probe.clone()).or_insert_with(|| Tracked {
            target: target.clone(),
            layer,
            damper: FlapDamper::new(flap),
            last_down: None,
            failing_since: None,
            flapping_since: now,
        });
        t.damper.set_policy(flap);
        if side == Side::Failing {
            t.last_down = Some(ev.clone());
        }
        for notice in t.damper.observe(side, now) {
            self.tell(probe, t, notice, now);
        }
    }

    /// Catches up with the board, ends settled flapping, forgets removed probes.
    fn tick(&self, now: u64) {
        let statuses = self.board.snapshot();
        for s in &statuses {
            let ev = match s.up {
                Some(false) => s.down_event(),
                Some(true) => Some(ProbeEvent::Up { probe: s.name.clone(), target: s.target.clone(), layer: s.layer }),
                None => None,
            };
            if let Some(ev) = ev {
                self.observe(&ev, now);
            }
        }
        let mut book = self.book.inner.lock().unwrap_or_else(|p| p.into_inner());
        book.retain(|name, _| statuses.iter().any(|s| &s.name == name));
        for (probe, t) in book.iter_mut() {
            for notice in t.damper.tick(now) {
                self.tell(probe, t, notice, now);
            }
        }
    }

    fn tell(&self, probe: &str, t: &mut Tracked, notice: Notice, now: u64) {
        let (target, layer) = (t.target.as_str(), t.layer.as_str());
        let flap = self.config.get().alerts.flap;
        let alert = match notice {
            Notice::Failing => {
                let Some(down) = &t.last_down else { return };
                let alert = probe_alert(down, now, None);
                t.failing_since = Some(alert.starts_at_unix_ms);
                if let ProbeEvent::Down { failure, consecutive, .. } = down {
                    tracing::warn!(probe, target, layer, %failure, failures = consecutive, "alert: probe failing");
                }
                alert
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
