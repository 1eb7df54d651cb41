//! Signals by their usual names, as configs and playbooks write them (`SIGTERM`).

use serde::{Deserialize, Serialize};

/// A signal warden may send to a service (a playbook step, or its stop signal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SignalName {
    #[serde(rename = "SIGHUP")]
    Hup,
    #[serde(rename = "SIGINT")]
    Int,
    #[serde(rename = "SIGQUIT")]
    Quit,
    #[serde(rename = "SIGUSR1")]
    Usr1,
    #[serde(rename = "SIGUSR2")]
    Usr2,
    #[serde(rename = "SIGTERM")]
    Term,
    #[serde(rename = "SIGKILL")]
    Kill,
    #[serde(rename = "SIGCONT")]
    Cont,
    #[serde(rename = "SIGSTOP")]
    Stop,
    #[serde(rename = "SIGWINCH")]
    Winch,
}

impl SignalName {
    pub fn as_str(self) -> &'static str {
        match self {
            SignalName::Hup => "SIGHUP",
            SignalName::Int => "SIGINT",
            SignalName::Quit => "SIGQUIT",
            SignalName::Usr1 => "SIGUSR1",
            SignalName::Usr2 => "SIGUSR2",
            SignalName::Term => "SIGTERM",
            SignalName::Kill => "SIGKILL",
            SignalName::Cont => "SIGCONT",
            SignalName::Stop => "SIGSTOP",
            SignalName::Winch => "SIGWINCH",
        }
    }
}
