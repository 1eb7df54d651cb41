//! The ten failure modes warden recognises, numbered as SPEC numbers them.

use serde::{Deserialize, Serialize};

/// The ten failure modes warden recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    DatabaseUnavailable,
    PortInUse,
    SlowBoot,
    OutOfMemory,
    DiskFull,
    NetworkUnreachable,
    ApiTimeout,
    MissingConfig,
    InvalidCredentials,
    ModelServerDown,
}

impl FailureMode {
    pub const ALL: [FailureMode; 10] = [
        FailureMode::DatabaseUnavailable,
        FailureMode::PortInUse,
        FailureMode::SlowBoot,
        FailureMode::OutOfMemory,
        FailureMode::DiskFull,
        FailureMode::NetworkUnreachable,
        FailureMode::ApiTimeout,
        FailureMode::MissingConfig,
        FailureMode::InvalidCredentials,
        FailureMode::ModelServerDown,
    ];

    /// The number SPEC gives the mode (1–10).
    pub fn number(self) -> u8 {
        self as u8 + 1
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FailureMode::DatabaseUnavailable => "database_unavailable",
            FailureMode::PortInUse => "port_in_use",
            FailureMode::SlowBoot => "slow_boot",
            FailureMode::OutOfMemory => "out_of_memory",
            FailureMode::DiskFull => "disk_full",
            FailureMode::NetworkUnreachable => "network_unreachable",
            FailureMode::ApiTimeout => "api_timeout",
            FailureMode::MissingConfig => "missing_config",
            FailureMode::InvalidCredentials => "invalid_credentials",
            FailureMode::ModelServerDown => "model_server_down",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_mode_numbers_match_spec() {
        assert_eq!(FailureMode::DatabaseUnavailable.number(), 1);
        assert_eq!(FailureMode::ApiTimeout.number(), 7);
        assert_eq!(FailureMode::ModelServerDown.number(), 10);
    }
}
