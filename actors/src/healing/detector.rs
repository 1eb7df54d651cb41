//! Detectors: one actor per failure mode, turning probe events into findings.
//!
//! The rule of each mode is `warden_core::detect::assess`; the actor feeds it the events of
//! the probe-event port and the target's state, and reports what it finds to the incident
//! manager, which acknowledges once the incident is stored. Detection is level-triggered
//! where it matters: on (re)start, and whenever a report did not get through, the detector
//! judges every probe that is down now (from the probe board) again, so an event missed
//! while it or the incident manager restarted is never a fault missed. Reporting the same
//! fault twice is harmless: the incident manager keeps one incident per service and mode.

use super::incident_manager::IncidentManager;
use crate::addr::{Addr, Namespace};
use crate::guardian::probe_board::ProbeBoard;
use crate::guardian::service_table::ServiceTable;
use crate::registry::{ActorRegistry, Registration};
use ractor::{Actor, ActorProcessingErr, ActorRef, OutputPort};
use std::sync::Arc;
use std::time::Duration;
use warden_core::detect::assess;
use warden_core::mode::FailureMode;
use warden_core::probe::ProbeEvent;

/// How soon a report that did not get through is tried again.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// The tree path of the detector for `mode`.
pub fn path(mode: FailureMode) -> String {
    format!("healing/detector/{}", mode.as_str())
}

pub enum DetectorMsg {
    Probe(ProbeEvent),
    /// Judge every probe that is down now.
    Recheck,
}

impl Addr<Detector> {
    pub fn for_mode(ns: &Namespace, mode: FailureMode) -> Self {
        Addr::new(ns.name(&path(mode)))
    }
}

pub struct Detector {
    pub mode: FailureMode,
    pub events: Arc<OutputPort<ProbeEvent>>,
    pub board: ProbeBoard,
    pub services: ServiceTable,
    pub incidents: Addr<IncidentManager>,
    pub registry: ActorRegistry,
}

pub struct State {
    /// A recheck is already scheduled.
    recheck_due: bool,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for Detector {
    type Msg = DetectorMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<DetectorMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        self.events.subscribe(myself.clone(), |ev| Some(DetectorMsg::Probe(ev)));
        // Whatever went down before this instance subscribed.
        myself.send_message(DetectorMsg::Recheck)?;
        Ok(State { recheck_due: true, _reg: self.registry.started(&path(self.mode)) })
    }

    async fn handle(
        &self,
        myself: ActorRef<DetectorMsg>,
        msg: DetectorMsg,
        st: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let events = match msg {
            DetectorMsg::Probe(ev) => vec![ev],
            DetectorMsg::Recheck => {
                st.recheck_due = false;
                self.board.down_now()
            }
        };
        let mut undelivered = false;
        for ev in events {
            let Some(finding) = assess(self.mode, &ev, self.services.state_of(ev.target().as_str())) else {
                continue;
            };
            tracing::warn!(
                mode = self.mode.as_str(),
                service = finding.service.as_str(),
                evidence = finding.evidence,
                "failure detected"
            );
            if let Err(e) = self.incidents.report(finding).await {
                tracing::warn!(mode = self.mode.as_str(), error = %e, "finding not delivered; will judge again");
                undelivered = true;
            }
        }
        if undelivered && !st.recheck_due {
            st.recheck_due = true;
            myself.send_after(RETRY_AFTER, || DetectorMsg::Recheck);
        }
        Ok(())
    }
}
