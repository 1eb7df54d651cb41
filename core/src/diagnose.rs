//! Diagnosis before repair: why a fault happened, as far as the signal that found it
//! says, and the order of playbooks that repairs that cause rather than its symptom.
//!
//! The detection rule that fires knows more than the mode: a database that does not answer
//! is hung, one that answers "corrupt" has bad data, one that exits because its lock is
//! taken needs the holder gone. [`Cause`] is that knowledge; [`plan`] turns it into the
//! incident's playbook order: the playbooks the cause calls for first, then the mode's
//! others in catalog order, minus the ones the cause makes pointless, and the last resort
//! (quarantine) last.

use crate::mode::FailureMode;
use crate::playbook::{Catalog, Playbook};
use serde::{Deserialize, Serialize};

/// sysexits' EX_TEMPFAIL: what the demo db (and many daemons) exit with when their lock or
/// another resource is held by someone else.
pub const EX_TEMPFAIL: i32 = 75;

/// Why, as diagnosed from the signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The process runs but does not answer in its own protocol.
    Hung,
    /// It answers that its data is corrupt (an integrity check failed).
    Corrupt,
    /// It exits because another process holds its lock.
    LockHeld,
    /// It keeps exiting for a reason of its own.
    CrashLoop,
    /// A process outside the service holds its port.
    PortStranger,
    /// A model server answers without the model it should serve.
    ModelMissing,
    /// A login with its credentials is refused.
    CredentialsRefused,
    /// A TLS handshake or certificate fails.
    Tls,
    /// A file it needs is gone.
    FileMissing,
    /// It exits on a config error though its files are there (a bad change).
    ConfigInvalid,
    /// Its memory use nears its limit.
    MemoryPressure,
    /// The kernel's OOM killer killed it.
    OomKilled,
    /// Free space is low, mostly taken by the service's data (dead records a compaction frees).
    DiskFullOfData,
    /// ... by its logs.
    DiskFullOfLogs,
    /// ... by its temporary files.
    DiskFullOfTemp,
    /// ... by its snapshots.
    DiskFullOfSnapshots,
    /// The network path is gone (a link down, no route).
    Unreachable,
    /// The name does not resolve (or resolves to the wrong place).
    NameResolution,
    /// Still starting past its deadline.
    SlowStart,
    #[default]
    Unknown,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Hung => "hung",
            Cause::Corrupt => "corrupt",
            Cause::LockHeld => "lock_held",
            Cause::CrashLoop => "crash_loop",
            Cause::PortStranger => "port_stranger",
            Cause::ModelMissing => "model_missing",
            Cause::CredentialsRefused => "credentials_refused",
            Cause::Tls => "tls",
            Cause::FileMissing => "file_missing",
            Cause::ConfigInvalid => "config_invalid",
            Cause::MemoryPressure => "memory_pressure",
            Cause::OomKilled => "oom_killed",
            Cause::DiskFullOfData => "disk_full_of_data",
            Cause::DiskFullOfLogs => "disk_full_of_logs",
            Cause::DiskFullOfTemp => "disk_full_of_temp",
            Cause::DiskFullOfSnapshots => "disk_full_of_snapshots",
            Cause::Unreachable => "unreachable",
            Cause::NameResolution => "name_resolution",
            Cause::SlowStart => "slow_start",
            Cause::Unknown => "unknown",
        }
    }

    /// Playbooks this cause calls for, first choice first.
    fn prefers(self) -> &'static [&'static str] {
        match self {
            Cause::Hung => &["restart_database", "restart_model_server", "restart_hung_service"],
            Cause::Corrupt => &["restore_database_snapshot", "failover_upstream"],
            Cause::LockHeld => &["clear_stale_db_lock", "restart_database"],
            Cause::CrashLoop => &["restart_database", "clear_stale_db_lock", "restart_model_server"],
            Cause::PortStranger => &["free_port_foreign", "relocate_port"],
            Cause::ModelMissing => &["warm_model"],
            Cause::CredentialsRefused => &["reload_credentials", "rotate_credentials"],
            Cause::Tls => &["reload_tls_certificate"],
            Cause::FileMissing => &["restore_config_file"],
            Cause::ConfigInvalid => &["rollback_config_change", "restore_config_file"],
            Cause::MemoryPressure => &["restart_memory_hog", "kill_memory_balloon"],
            Cause::OomKilled => &["restart_memory_hog"],
            Cause::DiskFullOfData => &["compact_store"],
            Cause::DiskFullOfLogs => &["compress_logs"],
            Cause::DiskFullOfTemp => &["prune_temp_files"],
            Cause::DiskFullOfSnapshots => &["prune_old_snapshots"],
            // A cut path is not mended by asking the resolver again: go round it.
            Cause::Unreachable => &["failover_upstream"],
            Cause::NameResolution => &["reresolve_dns", "failover_upstream"],
            Cause::SlowStart => &["extend_startup_deadline", "staggered_boot"],
            Cause::Unknown => &[],
        }
    }

    /// Playbooks of the mode that cannot help with this cause.
    fn rules_out(self) -> &'static [&'static str] {
        match self {
            // Taking a snapshot of a hung or looping database copies nothing useful; a
            // restore throws away good data; a lock nobody holds needs no clearing.
            Cause::Hung => &["snapshot_database", "restore_database_snapshot", "clear_stale_db_lock"],
            // Corrupt data stays corrupt across restarts (the db refuses to start on it and
            // would only crash-loop); a copy of it is no backup.
            Cause::Corrupt => &[
                "snapshot_database",
                "clear_stale_db_lock",
                "reset_connection_pool",
                "restart_database",
                "restart_service",
                "restart_dependency_chain",
            ],
            Cause::LockHeld => &["snapshot_database", "restore_database_snapshot"],
            Cause::CrashLoop => &["snapshot_database"],
            // The holder is not ours: there is no orphan to kill.
            Cause::PortStranger => &["free_port_orphan"],
            Cause::CredentialsRefused => &["reload_tls_certificate"],
            Cause::Tls => &["reload_credentials", "rotate_credentials"],
            _ => &[],
        }
    }
}

/// The order in which an incident of `mode` with `cause` tries playbooks: every playbook
/// for which `unmet` (what the service lacks for it) is empty.
pub fn plan(mode: FailureMode, cause: Cause, catalog: &Catalog, unmet: impl Fn(&Playbook) -> Vec<String>) -> Plan {
    let mut not_applicable = Vec::new();
    let candidates: Vec<&Playbook> = catalog
        .for_mode(mode)
        .into_iter()
        .filter(|p| {
            let why = unmet(p);
            if !why.is_empty() {
                not_applicable.push(format!("{}: {}", p.id, why.join("; ")));
            }
            why.is_empty()
        })
        .collect();
    Plan { order: order(cause, candidates), not_applicable }
}

/// An incident's plan: its playbooks in order, and the mode's playbooks left out because
/// the service lacks what they need (each with why).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub order: Vec<String>,
    pub not_applicable: Vec<String>,
}

fn order(cause: Cause, candidates: Vec<&Playbook>) -> Vec<String> {
    let fits = |id: &str| !cause.rules_out().contains(&id);
    let mut out: Vec<String> =
        cause.prefers().iter().filter(|id| candidates.iter().any(|p| p.id == **id)).map(|id| id.to_string()).collect();
    // A playbook that quarantines gives up on the service: after everything else.
    let (last, rest): (Vec<_>, Vec<_>) = candidates.into_iter().partition(|p| p.gives_up());
    for p in rest.into_iter().chain(last) {
        if fits(&p.id) && !out.contains(&p.id) {
            out.push(p.id.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::embedded_default().expect("catalog")
    }

    #[test]
    fn test_the_cause_picks_the_first_playbook() {
        let c = catalog();
        let first = |mode, cause| plan(mode, cause, &c, |_| vec![]).order.first().cloned().unwrap_or_default();
        assert_eq!(first(FailureMode::DatabaseUnavailable, Cause::Hung), "restart_database");
        assert_eq!(first(FailureMode::DatabaseUnavailable, Cause::Corrupt), "restore_database_snapshot");
        assert_eq!(first(FailureMode::DatabaseUnavailable, Cause::LockHeld), "clear_stale_db_lock");
        assert_eq!(first(FailureMode::PortInUse, Cause::PortStranger), "free_port_foreign");
        assert_eq!(first(FailureMode::ModelServerDown, Cause::Hung), "restart_model_server");
        assert_eq!(first(FailureMode::ApiTimeout, Cause::Hung), "restart_hung_service");
        assert_eq!(first(FailureMode::MissingConfig, Cause::FileMissing), "restore_config_file");
        assert_eq!(first(FailureMode::InvalidCredentials, Cause::CredentialsRefused), "reload_credentials");
        assert_eq!(first(FailureMode::DiskFull, Cause::DiskFullOfData), "compact_store");
        assert_eq!(first(FailureMode::DiskFull, Cause::DiskFullOfTemp), "prune_temp_files");
    }

    #[test]
    fn test_what_cannot_help_is_left_out_and_the_last_resort_is_last() {
        let c = catalog();
        let hung = plan(FailureMode::DatabaseUnavailable, Cause::Hung, &c, |_| vec![]).order;
        assert!(!hung.iter().any(|p| p == "restore_database_snapshot"), "{hung:?}");
        assert_eq!(hung.last().map(String::as_str), Some("quarantine_crashloop"), "{hung:?}");
        let stranger = plan(FailureMode::PortInUse, Cause::PortStranger, &c, |_| vec![]).order;
        assert!(!stranger.iter().any(|p| p == "free_port_orphan"), "{stranger:?}");
        let unknown = plan(FailureMode::PortInUse, Cause::Unknown, &c, |_| vec![]).order;
        assert_eq!(unknown.len(), c.for_mode(FailureMode::PortInUse).len(), "nothing known, nothing left out");
        for mode in FailureMode::ALL {
            let p = plan(mode, Cause::Unknown, &c, |_| vec![]).order;
            let mut unique = p.clone();
            unique.dedup();
            assert_eq!(p.len(), unique.len(), "each playbook once: {p:?}");
            assert!(p.iter().all(|id| c.get(id).is_some_and(|pb| pb.triggers.contains(&mode))));
        }
    }

    #[test]
    fn test_a_playbook_the_service_cannot_use_is_left_out_with_why() {
        let c = catalog();
        let none_signalled = |p: &Playbook| match p
            .steps
            .iter()
            .any(|s| matches!(s, crate::playbook::Primitive::SignalService { .. }))
        {
            true => vec!["no signals".to_string()],
            false => vec![],
        };
        let p = plan(FailureMode::NetworkUnreachable, Cause::Unreachable, &c, none_signalled);
        assert!(!p.order.contains(&"reresolve_dns".to_string()), "{p:?}");
        assert!(p.not_applicable.iter().any(|w| w == "reresolve_dns: no signals"), "{p:?}");
    }
}
