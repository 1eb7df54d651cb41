//! Detectors: one actor per failure mode, turning probe events into findings.
//!
//! The rule of each mode is `warden_core::detect::assess`; the actor feeds it the events of
//! the probe-event port and the target's state, and reports what it finds to the incident
//! manager, which acknowledges once the incident is stored. Detection is also
//! level-triggered: every second (and when it starts) the detector judges every probe that
//! is down now, from the probe board, so an event missed while it or the incident manager
//! restarted, or judged while the target was still booting, is not a fault missed. A
//! streak is reported until it is acknowledged, once; a streak that began before the
//! target's current process started is about a process that is gone, and is left alone.

use super::incident_manager::IncidentManager;
use crate::addr::{AbortOnDrop, Addr};
use crate::guardian::probe_board::ProbeBoard;
use crate::guardian::service_table::ServiceTable;
use crate::registry::{ActorRegistry, Registration};
use ractor::{Actor, ActorProcessingErr, ActorRef, OutputPort};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use warden_core::detect::assess;
use warden_core::mode::FailureMode;
use warden_core::probe::ProbeEvent;

/// How often every probe that is down now is judged again.
const RECHECK_EVERY: Duration = Duration::from_secs(1);

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
    pub fn for_mode(mode: FailureMode) -> Self {
        Addr::new(path(mode))
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
    /// Streaks (probe, first failure) the incident manager has acknowledged.
    reported: BTreeSet<(String, u64)>,
    _tick: AbortOnDrop,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for Detector {
    type Msg = DetectorMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, myself: ActorRef<DetectorMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        self.events.subscribe(myself.clone(), |ev| Some(DetectorMsg::Probe(ev)));
        // Whatever went down before this instance subscribed, then every second.
        myself.send_message(DetectorMsg::Recheck)?;
        Ok(State {
            reported: BTreeSet::new(),
            _tick: AbortOnDrop(myself.send_interval(RECHECK_EVERY, || DetectorMsg::Recheck)),
            _reg: self.registry.started(&path(self.mode)),
        })
    }

    async fn handle(
        &self,
        _: ActorRef<DetectorMsg>,
        msg: DetectorMsg,
        st: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let events = match msg {
            DetectorMsg::Probe(ev) => vec![ev],
            DetectorMsg::Recheck => {
                let down = self.board.down_now();
                // Forget streaks that ended: a new one with the same start cannot come.
                st.reported.retain(|key| down.iter().any(|ev| streak(ev).as_ref() == Some(key)));
                down.into_iter().filter(|ev| !self.about_a_gone_process(ev)).collect()
            }
        };
        for ev in events {
            let Some(key) = streak(&ev) else { continue };
            if st.reported.contains(&key) {
                continue;
            }
            let Some(finding) = assess(self.mode, &ev, self.services.state_of(ev.target().as_str())) else {
                continue;
            };
            match self.incidents.report(finding.clone()).await {
                Ok(()) => {
                    tracing::warn!(
                        mode = self.mode.as_str(),
                        service = finding.service.as_str(),
                        evidence = finding.evidence,
                        "failure detected"
                    );
                    st.reported.insert(key);
                }
                Err(e) => tracing::warn!(
                    mode = self.mode.as_str(),
                    service = finding.service.as_str(),
                    error = %e,
                    "failure detected but not delivered; judging it again shortly"
                ),
            }
        }
        Ok(())
    }
}

impl Detector {
    /// A streak that began before the target's current process started.
    fn about_a_gone_process(&self, ev: &ProbeEvent) -> bool {
        let started = self.services.lock().services.get(ev.target()).and_then(|e| e.started_unix_ms);
        matches!((ev, started), (ProbeEvent::Down { first_failure_unix_ms, .. }, Some(s)) if *first_failure_unix_ms < s)
    }
}

/// The streak a down event belongs to.
fn streak(ev: &ProbeEvent) -> Option<(String, u64)> {
    match ev {
        ProbeEvent::Down { probe, first_failure_unix_ms, .. } => Some((probe.clone(), *first_failure_unix_ms)),
        ProbeEvent::Up { .. } => None,
    }
}
