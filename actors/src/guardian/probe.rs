//! Probes: the checks themselves, and the probe actor that runs one on its interval.
//!
//! The actor measures; the threshold rule is `warden_core::probe::ProbeTracker`. State
//! changes are published on the node's probe-event port (every detector subscribes) and on
//! the probe board (the API, and detectors catching up after a restart).

use super::checks::Prober;
use super::probe_board::ProbeBoard;
use super::service_table::ServiceTable;
use crate::addr::Addr;
use crate::metrics::{Metrics, ProbeLabels};
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
        Ok(ProbeState { prober, tracker: ProbeTracker::new(&self.spec), _reg: reg })
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
    fn record(&self, st: &mut ProbeState, outcome: Outcome) {
        let result = match &outcome {
            Outcome::Pass { .. } => "ok",
            Outcome::Fail(_) => "fail",
            Outcome::Unsupported(_) => "unsupported",
        };
        let labels = ProbeLabels {
            probe: self.spec.name.clone(),
            layer: self.spec.layer.as_str().into(),
            result: result.into(),
        };
        self.metrics.probe_checks.get_or_create(&labels).inc();
        let event = st.tracker.record(outcome, warden_core::time::now_unix_ms());
        let status = st.tracker.status();
        match &event {
            Some(ProbeEvent::Down { failure, consecutive, .. }) => tracing::warn!(
                probe = status.name,
                target = status.target.as_str(),
                %failure,
                failures = consecutive,
                "alert: probe failing"
            ),
            Some(ProbeEvent::Up { .. }) if status.checks > 1 => {
                tracing::info!(probe = status.name, target = status.target.as_str(), "probe recovered")
            }
            _ => {}
        }
        self.board.publish(status);
        if let Some(ev) = event {
            self.events.send(ev);
        }
    }
}
