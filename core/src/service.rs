//! The states a supervised service goes through, as the API and the detectors name them.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Waiting for its dependencies.
    Pending,
    /// Started, not yet ready.
    Starting,
    Running,
    /// Exited; restarts after a backoff delay.
    Backoff,
    Stopping,
    Stopped,
    /// Crash-looped past its restart budget; left stopped until released.
    Quarantined,
}

impl ServiceState {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceState::Pending => "pending",
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Backoff => "backoff",
            ServiceState::Stopping => "stopping",
            ServiceState::Stopped => "stopped",
            ServiceState::Quarantined => "quarantined",
        }
    }
}
