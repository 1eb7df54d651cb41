//! Detection: the rule of each failure mode, applied to a probe event and the state of
//! the service it is about. Detector actors only feed events in and pass findings on.

use crate::config::Layer;
use crate::incident::Finding;
use crate::mode::FailureMode;
use crate::probe::{Failure, ProbeEvent};
use crate::service::ServiceState;

/// Modes with a detection rule in this build.
pub const IMPLEMENTED: &[FailureMode] = &[FailureMode::ApiTimeout];

/// Kinds of L7 check that ask the target process itself in its own protocol: no answer
/// from one of them while the process runs is a hang. A DNS check asks a resolver, which
/// is seldom the target, so its timeout says nothing about the target's process.
const OWN_PROTOCOL: &[&str] = &["http", "ollama", "line", "postgres"];

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
                kind,
                failure: Failure::Timeout,
                consecutive,
                first_failure_unix_ms,
            },
        ) if service_state == Some(ServiceState::Running) && OWN_PROTOCOL.contains(kind) => Some(Finding {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServiceName;

    fn api() -> ServiceName {
        ServiceName::parse("api").expect("name")
    }

    fn down(failure: Failure) -> ProbeEvent {
        down_of("http", failure)
    }

    fn down_of(kind: &'static str, failure: Failure) -> ProbeEvent {
        ProbeEvent::Down {
            probe: "p".into(),
            target: api(),
            layer: Layer::L7,
            kind,
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
        let up = ProbeEvent::Up { probe: "p".into(), target: api(), layer: Layer::L7 };
        assert!(assess(m, &up, Some(ServiceState::Running)).is_none(), "recovery is not a failure");
        assert!(
            assess(m, &down_of("dns", Failure::Timeout), Some(ServiceState::Running)).is_none(),
            "a slow resolver is not a hung service"
        );
        assert!(assess(m, &down_of("postgres", Failure::Timeout), Some(ServiceState::Running)).is_some());
    }

    #[test]
    fn test_finding_carries_first_sign() {
        let f = assess(FailureMode::ApiTimeout, &down(Failure::Timeout), Some(ServiceState::Running)).expect("finding");
        assert_eq!((f.service.as_str(), f.first_sign_unix_ms), ("api", 5));
    }
}
