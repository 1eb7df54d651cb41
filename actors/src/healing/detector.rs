//! Detectors: one actor per failure mode, turning probe events into incidents.
//!
//! The rule of each mode is the pure [`assess`]; the actor only feeds it events and the
//! service's state and tells the incident manager what it found.

use crate::context::{Ctx, names};
use crate::incident_manager::IncidentMsg;
use crate::probe::Failure;
use crate::registry::Registration;
use crate::rpc;
use crate::service_table::ServiceState;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use warden_core::config::Layer;
use warden_core::incident::{FailureMode, Finding};

/// Modes with a detector in this build.
pub const IMPLEMENTED: &[FailureMode] = &[FailureMode::ApiTimeout];

pub fn detector_paths() -> Vec<String> {
    IMPLEMENTED.iter().map(|m| names::detector(m.as_str())).collect()
}

/// A probe crossing its threshold either way.
#[derive(Debug, Clone)]
pub enum ProbeEvent {
    Up { probe: String, target: String, layer: Layer },
    Down { probe: String, target: String, layer: Layer, failure: Failure, consecutive: u32, first_failure_unix_ms: u64 },
}

/// The rule of `mode` applied to one event, given the target service's state.
pub fn assess(mode: FailureMode, event: &ProbeEvent, service_state: Option<ServiceState>) -> Option<Finding> {
    match (mode, event) {
        // An API timeout: the process is up (running, not restarting) yet its L7 check got
        // no answer. A refused connection is a dead process, which the service supervisor
        // already restarts.
        (
            FailureMode::ApiTimeout,
            ProbeEvent::Down {
                probe,
                target,
                layer: Layer::L7,
                failure: Failure::Timeout,
                consecutive,
                first_failure_unix_ms,
            },
        ) if service_state == Some(ServiceState::Running) => Some(Finding {
            mode,
            service: target.clone(),
            evidence: format!(
                "probe `{probe}`: {consecutive} consecutive checks got no answer within the timeout while the process is running"
            ),
            first_sign_unix_ms: *first_failure_unix_ms,
        }),
        _ => None,
    }
}

pub enum DetectorMsg {
    Probe(ProbeEvent),
}

pub struct Detector {
    pub ctx: Ctx,
    pub mode: FailureMode,
}

pub struct State {
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for Detector {
    type Msg = DetectorMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<DetectorMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        Ok(State { _reg: self.ctx.registry.started(&names::detector(self.mode.as_str())) })
    }

    async fn handle(
        &self,
        _: ActorRef<DetectorMsg>,
        msg: DetectorMsg,
        _: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let DetectorMsg::Probe(event) = msg;
        let target = match &event {
            ProbeEvent::Up { target, .. } | ProbeEvent::Down { target, .. } => target.clone(),
        };
        if let Some(finding) = assess(self.mode, &event, self.ctx.services.state_of(&target)) {
            tracing::warn!(
                mode = self.mode.as_str(),
                service = finding.service,
                evidence = finding.evidence,
                "failure detected"
            );
            rpc::tell(&self.ctx.name(names::INCIDENT_MANAGER), IncidentMsg::Open(finding))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn down(failure: Failure) -> ProbeEvent {
        ProbeEvent::Down {
            probe: "p".into(),
            target: "api".into(),
            layer: Layer::L7,
            failure,
            consecutive: 2,
            first_failure_unix_ms: 5,
        }
    }

    #[test]
    fn test_api_timeout_needs_a_running_process_and_a_timeout() {
        let m = FailureMode::ApiTimeout;
        assert!(assess(m, &down(Failure::Timeout), Some(ServiceState::Running)).is_some());
        assert!(
            assess(m, &down(Failure::Connect("refused".into())), Some(ServiceState::Running)).is_none(),
            "dead process is not a hang"
        );
        assert!(assess(m, &down(Failure::Timeout), Some(ServiceState::Starting)).is_none(), "booting is not a hang");
        assert!(
            assess(
                m,
                &ProbeEvent::Up { probe: "p".into(), target: "api".into(), layer: Layer::L7 },
                Some(ServiceState::Running)
            )
            .is_none()
        );
    }

    #[test]
    fn test_finding_carries_first_sign() {
        let f = assess(FailureMode::ApiTimeout, &down(Failure::Timeout), Some(ServiceState::Running)).expect("finding");
        assert_eq!((f.service.as_str(), f.first_sign_unix_ms), ("api", 5));
    }
}
