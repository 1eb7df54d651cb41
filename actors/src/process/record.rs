//! Process records: what a warden writes into the data dir about each service's running
//! process, so that the next warden on the dir (after a `kill -9`, a crash, a power cut of
//! warden alone) can tell its predecessor's processes apart from strangers and from pids
//! the kernel has since given to someone else.
//!
//! A record names the pid, its process group, its start time (clock ticks since boot, from
//! `/proc/PID/stat`), the boot it belongs to, and a hash of the service definition it was
//! started from. A process is the recorded one only if it is alive in the same boot with
//! the same start time.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io;
use std::path::{Path, PathBuf};
use warden_core::config::ServiceSpec;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub service: String,
    pub pid: u32,
    pub pgid: u32,
    /// Start time in clock ticks since boot.
    pub start_ticks: u64,
    pub boot_id: String,
    /// The definition it runs ([`spec_hash`]).
    pub spec_hash: String,
    pub warden_pid: u32,
    pub started_unix_ms: u64,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// (start ticks, state) of a live process.
fn stat(pid: u32) -> Option<(u64, char, u32)> {
    let st = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?.stat().ok()?;
    Some((st.starttime, st.state, u32::try_from(st.pgrp).ok()?))
}

impl ProcessRecord {
    /// The record of a process warden has just started.
    pub fn of(service: &str, pid: u32, spec_hash: String) -> Option<Self> {
        let (start_ticks, _, pgid) = stat(pid)?;
        Some(Self {
            service: service.to_string(),
            pid,
            pgid,
            start_ticks,
            boot_id: boot_id(),
            spec_hash,
            warden_pid: std::process::id(),
            started_unix_ms: warden_core::time::now_unix_ms(),
        })
    }

    /// Whether it was recorded in this boot (its start time means something now).
    pub fn same_boot(&self) -> bool {
        self.boot_id == boot_id()
    }

    /// Its process group, as what may be left of it (only meaningful in the same boot).
    pub fn group(&self) -> Option<crate::process::LastGroup> {
        self.same_boot().then_some(crate::process::LastGroup { pgid: self.pgid, leader_ticks: self.start_ticks })
    }

    /// Whether the recorded process still runs (same boot, same start time, not a zombie).
    pub fn is_running(&self) -> bool {
        self.boot_id == boot_id()
            && stat(self.pid).is_some_and(|(ticks, state, _)| ticks == self.start_ticks && state != 'Z')
    }
}

/// A digest of everything that defines a service's process: a process started from an
/// older definition is not adopted.
pub fn spec_hash(spec: &ServiceSpec) -> String {
    let defining = format!(
        "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
        spec.program,
        spec.args,
        spec.env,
        spec.env_file,
        spec.workdir,
        spec.identity,
        spec.umask,
        spec.limits,
        spec.memory_limit_mb,
        spec.ports
    );
    hex::encode(Sha256::digest(defining.as_bytes()))
}

fn path(dir: &Path, service: &str) -> PathBuf {
    dir.join(format!("{service}.json"))
}

/// Writes the record atomically (a reader sees the old one or the new one).
pub fn write(dir: &Path, record: &ProcessRecord) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", record.service));
    std::fs::write(&tmp, serde_json::to_vec(record).map_err(io::Error::other)?)?;
    std::fs::rename(tmp, path(dir, &record.service))
}

pub fn read(dir: &Path, service: &str) -> Option<ProcessRecord> {
    serde_json::from_slice(&std::fs::read(path(dir, service)).ok()?).ok()
}

pub fn remove(dir: &Path, service: &str) {
    let _ = std::fs::remove_file(path(dir, service));
}

/// Every service with a record.
pub fn services(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten().filter_map(|e| e.file_name().to_str()?.strip_suffix(".json").map(str::to_string)).collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_record_knows_its_process_and_not_a_reused_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let me = ProcessRecord::of("me", std::process::id(), "h".into()).expect("own record");
        write(dir.path(), &me).expect("write");
        let back = read(dir.path(), "me").expect("read");
        assert!(back.is_running(), "this process is alive with the same start time");
        let reused = ProcessRecord { start_ticks: back.start_ticks + 1, ..back.clone() };
        assert!(!reused.is_running(), "same pid, other start time: not ours");
        assert_eq!(services(dir.path()), ["me"]);
        remove(dir.path(), "me");
        assert!(read(dir.path(), "me").is_none());
    }
}
