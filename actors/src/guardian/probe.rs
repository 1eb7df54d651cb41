//! Probes: the checks themselves, and the probe actor that runs one on its interval.
//!
//! The actor measures; the threshold rule is `warden_core::probe::ProbeTracker`. State
//! changes are published on the node's probe-event port (every detector subscribes) and on
//! the probe board (the API, and detectors catching up after a restart).

use super::checks::Prober;
use super::probe_board::ProbeBoard;
use super::service_table::ServiceTable;
use crate::addr::Addr;
use crate::metrics::{Metrics, ProbeMetrics};
use crate::registry::{ActorRegistry, Registration};
use ractor::{Actor, ActorProcessingErr, ActorRef, OutputPort};
use std::sync::Arc;
use tokio::time::Instant;
use warden_core::config::ProbeSpec;
use warden_core::probe::{Outcome, ProbeEvent, ProbeTracker};

/// The tree path of probe `name`.
pub fn path(name: &str) -> String {
    format!("guardian/probe/{name}")
}

pub enum ProbeMsg {
    Tick,
}

impl Addr<ProbeActor> {
    pub fn for_probe(name: &str) -> Self {
        Addr::new(path(name))
    }
}

/// Runs one configured probe forever on its interval.
pub struct ProbeActor {
    pub spec: ProbeSpec,
    pub events: Arc<OutputPort<ProbeEvent>>,
    pub board: ProbeBoard,
    pub metrics: Metrics,
    pub registry: ActorRegistry,
    /// The services, for the port-owner check.
    pub table: ServiceTable,
}

pub struct ProbeState {
    prober: Prober,
    tracker: ProbeTracker,
    metrics: ProbeMetrics,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for ProbeActor {
    type Msg = ProbeMsg;
    type State = ProbeState;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<ProbeMsg>, _: ()) -> Result<ProbeState, ActorProcessingErr> {
        let reg = self.registry.started(&path(&self.spec.name));
        myself.send_message(ProbeMsg::Tick)?;
        let prober = Prober::new(&self.spec, self.table.clone());
        let mut tracker = ProbeTracker::new(&self.spec);
        tracker.set_method(prober.method());
        self.board.register(tracker.status());
        Ok(ProbeState { prober, tracker, metrics: self.metrics.probe(&self.spec), _reg: reg })
    }

    async fn handle(
        &self,
        myself: ActorRef<ProbeMsg>,
        msg: ProbeMsg,
        st: &mut ProbeState,
    ) -> Result<(), ActorProcessingErr> {
        let ProbeMsg::Tick = msg;
        let started = Instant::now();
        let outcome = st.prober.check().await;
        self.record(st, outcome);
        myself.send_after(self.spec.interval.saturating_sub(started.elapsed()), || ProbeMsg::Tick);
        Ok(())
    }
}

impl ProbeActor {
    /// Counts the check, tracks its thresholds, publishes the status; a state change goes
    /// to the event port (the detectors and the alerter tell what it means).
    fn record(&self, st: &mut ProbeState, outcome: Outcome) {
        let now = warden_core::time::now_unix_ms();
        match &outcome {
            Outcome::Pass { latency, .. } => {
                st.metrics.checks_ok.inc();
                st.metrics.latency.observe(latency.as_secs_f64());
                st.metrics.last_success.set(now as f64 / 1000.0);
            }
            Outcome::Fail(_) => {
                st.metrics.checks_fail.inc();
            }
            Outcome::Unsupported(_) => {
                st.metrics.checks_unsupported.inc();
            }
        }
        let event = st.tracker.record(outcome.clone(), now);
        self.board.record(st.tracker.status(), &outcome, now);
        if let Some(ev) = event {
            self.events.send(ev);
        }
    }
}
