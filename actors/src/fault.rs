//! Fault injection: make a pillar actor panic on command, to prove the tree restarts it and
//! nothing it was doing is lost. Compiled in only with the `fault-injection` feature (the
//! test suite's build); a default release build answers that it has none.

use crate::wiring::Addrs;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    #[error("this warden was built without fault injection (cargo feature `fault-injection`)")]
    NotBuilt,
    #[error("cannot crash `{0}`: one of {1}")]
    UnknownTarget(String, String),
    #[error(transparent)]
    NotRunning(#[from] crate::addr::SendError),
}

/// Whether this build has fault injection.
pub const BUILT: bool = cfg!(feature = "fault-injection");

/// The actors that can be crashed, by tree path.
pub const TARGETS: &[&str] = &[
    crate::guardian::service_supervisor::PATH,
    crate::governance::gatekeeper::PATH,
    crate::healing::incident_manager::PATH,
];

/// Makes the actor at tree path `target` stall in its handler for `after` (messages sent to
/// it meanwhile queue up) and then panic (they are lost with its mailbox): the moment a
/// lost message must not cost a state change.
#[cfg(feature = "fault-injection")]
pub fn crash(addrs: &Addrs, target: &str, after: std::time::Duration) -> Result<(), FaultError> {
    use crate::governance::gatekeeper::GateMsg;
    use crate::guardian::service_supervisor::ServiceMsg;
    use crate::healing::incident_manager::IncidentMsg;
    let sent = match target {
        crate::guardian::service_supervisor::PATH => addrs.services.tell(ServiceMsg::Crash(after)),
        crate::governance::gatekeeper::PATH => addrs.gatekeeper.tell(GateMsg::Crash(after)),
        crate::healing::incident_manager::PATH => addrs.incidents.tell(IncidentMsg::Crash(after)),
        other => return Err(FaultError::UnknownTarget(other.to_string(), TARGETS.join(", "))),
    };
    Ok(sent?)
}

/// Without the feature, nothing can be crashed.
#[cfg(not(feature = "fault-injection"))]
pub fn crash(_: &Addrs, _: &str, _: std::time::Duration) -> Result<(), FaultError> {
    Err(FaultError::NotBuilt)
}
