//! Processes the harness owns. Each child runs in its own process group with its output in a
//! log file and is killed with its whole group when dropped, so no path out of a run (error,
//! Ctrl-C, panic) leaves a process behind. The harness also makes itself a child subreaper
//! and reaps orphans (services that a peer supervisor started through `sh -c '... &'`), like
//! a real init would: a zombie must not look alive to a supervisor.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use crate::error::BenchError;
use crate::procnet;

/// A child process leading its own process group; the group dies with this value.
pub struct Group {
    name: String,
    child: tokio::process::Child,
    pid: u32,
    log: PathBuf,
    stopped: bool,
}

impl Group {
    /// Starts `program args...` in a new process group, stdin from /dev/null, stdout and
    /// stderr appended to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Result<Self, BenchError> {
        Self::spawn_with_env(name, program, args, &[], log)
    }

    /// Like [`Group::spawn`], with extra environment variables.
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log: &Path,
    ) -> Result<Self, BenchError> {
        let spawn_err = |source| BenchError::Spawn { what: name.to_string(), source };
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log).map_err(spawn_err)?;
        let err = out.try_clone().map_err(spawn_err)?;
        let mut command = tokio::process::Command::new(program);
        // A measured process exports no traces unless the harness says so: the shell's
        // OpenTelemetry settings would change the figures.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("OTEL_") {
                command.env_remove(k);
            }
        }
        let child = command
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(spawn_err)?;
        let pid = child.id().ok_or_else(|| spawn_err(std::io::Error::other("child exited before its pid was read")))?;
        Ok(Self { name: name.to_string(), child, pid, log: log.to_path_buf(), stopped: false })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// True while the leader has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// SIGTERM to the leader, up to `grace` for it to exit, then SIGKILL to the whole group
    /// (leader and anything it left behind). Returns whether the leader exited on SIGTERM.
    pub async fn terminate(&mut self, grace: Duration) -> bool {
        let clean = self.stop_leader(grace).await;
        self.kill_group().await;
        clean
    }

    /// SIGTERM to the leader only and up to `grace` for it to exit; true if it did. The
    /// rest of the group is left as the leader left it (see [`Group::kill_group`]).
    pub async fn stop_leader(&mut self, grace: Duration) -> bool {
        let _ = kill(pid(self.pid), Signal::SIGTERM);
        tokio::time::timeout(grace, self.child.wait()).await.is_ok()
    }

    /// SIGKILL to the whole group, then reap the leader.
    pub async fn kill_group(&mut self) {
        let _ = killpg(pid(self.pid), Signal::SIGKILL);
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        self.stopped = true;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = killpg(pid(self.pid), Signal::SIGKILL);
            // tokio reaps a dropped child in the background.
        }
    }
}

fn pid(raw: u32) -> Pid {
    Pid::from_raw(i32::try_from(raw).unwrap_or(i32::MAX))
}

/// The first executable `name` on `PATH`, then in `extra` directories.
pub fn find_program(name: &str, extra: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra)
        .map(|dir| dir.join(name))
        .find(|c| std::fs::metadata(c).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Sends `signal` to one process.
pub fn signal(raw_pid: u32, signal: Signal) -> Result<(), BenchError> {
    kill(pid(raw_pid), signal).map_err(BenchError::from)
}

/// The last `lines` lines of a text file, or an empty string when unreadable.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut tail = String::new();
    for line in &all[start..] {
        tail.push('\n');
        tail.push_str("    ");
        tail.push_str(line);
    }
    tail
}

/// Makes this process the reaper of orphaned descendants (Linux `PR_SET_CHILD_SUBREAPER`).
pub fn become_subreaper() -> Result<(), BenchError> {
    nix::sys::prctl::set_child_subreaper(true).map_err(BenchError::from)
}

/// Reaps `raw_pid` if it is a zombie child of ours; silently does nothing otherwise.
pub fn reap(raw_pid: u32) {
    let _ = waitpid(pid(raw_pid), Some(WaitPidFlag::WNOHANG));
}

/// Reaps every zombie child of ours that does not lead its own process group: those are
/// orphans handed to us as subreaper. [`Group`] children lead their groups and are left to
/// tokio, which waits for them by pid.
pub fn reap_orphans() {
    reap_zombies(|stat| stat.pgrp != stat.pid);
}

/// Reaps every zombie child of ours except `keep`: services orphaned by a killed warden
/// lead their own process groups, and are ours (as subreaper) once they exit.
pub fn reap_zombies_except(keep: u32) {
    reap_zombies(|stat| u32::try_from(stat.pid).is_ok_and(|p| p != keep));
}

fn reap_zombies(pick: impl Fn(&procfs::process::Stat) -> bool) {
    let me = std::process::id() as i32;
    let Ok(all) = procfs::process::all_processes() else {
        return;
    };
    for p in all.flatten() {
        if let Ok(stat) = p.stat()
            && stat.state == 'Z'
            && stat.ppid == me
            && pick(&stat)
            && let Ok(pid) = u32::try_from(stat.pid)
        {
            reap(pid);
        }
    }
}

/// Raises this process's open-file soft limit to its hard limit, for a flood of sockets.
pub fn raise_nofile() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if hard > soft => setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_or(soft, |()| hard),
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    }
}

/// What the harness reads of a process's `/proc/<pid>/stat`.
#[derive(Debug, PartialEq, Eq)]
pub struct StatInfo {
    pub state: char,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
}

/// `/proc/<pid>/stat`, parsed by `procfs`; `None` once the process is gone.
pub fn stat_of(raw_pid: u32) -> Option<StatInfo> {
    let stat = procfs::process::Process::new(i32::try_from(raw_pid).ok()?).ok()?.stat().ok()?;
    Some(StatInfo { state: stat.state, cpu_ticks: stat.utime + stat.stime })
}

/// True when `raw_pid` exists and is not a zombie.
pub fn is_alive(raw_pid: u32) -> bool {
    stat_of(raw_pid).is_some_and(|s| s.state != 'Z')
}

/// `VmRSS` of a process in KiB.
pub fn rss_kib(raw_pid: u32) -> Option<u64> {
    procfs::process::Process::new(i32::try_from(raw_pid).ok()?).ok()?.status().ok()?.vmrss
}

/// A copy of this executable that a long run uses instead of the file it was started
/// from, so that a rebuild during the run (which replaces that file) does not leave it
/// unable to start its helpers, its node or its peers' services.
static PINNED_EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Copies this executable into `dir` (which must outlive the run) and uses the copy from
/// now on for everything the harness starts; its path.
pub fn pin_exe(dir: &Path) -> Result<PathBuf, BenchError> {
    if let Some(p) = PINNED_EXE.get() {
        return Ok(p.clone());
    }
    let from = std::env::current_exe().map_err(BenchError::io("finding this executable"))?;
    let to = dir.join("warden");
    std::fs::copy(&from, &to).map_err(BenchError::io(format!("copying {} to {}", from.display(), to.display())))?;
    Ok(PINNED_EXE.get_or_init(|| to).clone())
}

/// The executable the harness starts its helpers and nodes from: the pinned copy of a
/// long run, else this process's own file.
pub fn own_exe() -> std::io::Result<PathBuf> {
    match PINNED_EXE.get() {
        Some(p) => Ok(p.clone()),
        None => std::env::current_exe(),
    }
}

/// True when `raw_pid` runs the same executable as this process (so it is one of ours).
pub fn runs_our_exe(raw_pid: u32) -> bool {
    let Ok(ours) = own_exe() else {
        return false;
    };
    std::fs::read_link(format!("/proc/{raw_pid}/exe")).is_ok_and(|theirs| theirs == ours)
}

/// The pids listening on `port`, without duplicates (a port may be held through IPv4 and
/// IPv6, or by a parent and its forked child).
pub fn holders(port: u16) -> Result<Vec<u32>, BenchError> {
    let mut pids: Vec<u32> = procnet::listeners_of_port(port)
        .map_err(BenchError::io(format!("reading /proc for port {port}")))?
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    pids.dedup();
    Ok(pids)
}

/// Fails with [`BenchError::PortBusy`] when anything listens on one of `ports`.
pub fn ensure_ports_free(ports: &[u16]) -> Result<(), BenchError> {
    for &port in ports {
        let pids = holders(port)?;
        if !pids.is_empty() {
            let holders = pids
                .iter()
                .map(|p| {
                    let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
                    format!("pid {p} ({})", comm.trim())
                })
                .collect::<Vec<_>>()
                .join(", ");
            return Err(BenchError::PortBusy { port, holders });
        }
    }
    Ok(())
}

/// SIGKILLs (and reaps) every process running our executable that listens on one of
/// `ports`; returns how many it found. Used after a supervisor is gone, to leave nothing.
pub fn kill_our_listeners(ports: &[u16]) -> usize {
    let mut n = 0;
    for &port in ports {
        for p in holders(port).unwrap_or_default() {
            if runs_our_exe(p) {
                let _ = signal(p, Signal::SIGCONT);
                let _ = signal(p, Signal::SIGKILL);
                reap(p);
                n += 1;
            }
        }
    }
    n
}

/// Calls `f` with the metadata of every file under `dir` (symlinks not followed); what
/// cannot be read is left out.
fn each_file(dir: &Path, mut f: impl FnMut(&std::fs::Metadata)) {
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(e.path()),
                Ok(m) if m.is_file() => f(&m),
                _ => {}
            }
        }
    }
}

/// Files and bytes under `dir`; (0, 0) for what cannot be read.
pub fn tree_bytes(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0u64, 0u64);
    each_file(dir, |m| {
        files += 1;
        bytes += m.len();
    });
    (files, bytes)
}

/// The disk space the files under `dir` take (allocated blocks): a preallocated, sparse
/// file (fjall's 64 MiB journal) counts for what it holds, not for its length.
pub fn tree_disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0u64;
    each_file(dir, |m| bytes += m.blocks() * 512);
    bytes
}

/// A private (0700) temporary directory, removed when dropped unless `keep` (then its path
/// is printed so the logs and configs in it can be read).
pub fn temp_dir(prefix: &str, keep: bool) -> Result<tempfile::TempDir, BenchError> {
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("{prefix}-"))
        .tempdir()
        .map_err(BenchError::io(format!("creating a temporary directory for {prefix}")))?;
    if keep {
        dir.disable_cleanup(true);
        eprintln!("keeping {}", dir.path().display());
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_a_sparse_file_counts_its_length_in_bytes_and_what_it_holds_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = std::fs::File::create(dir.path().join("journal")).expect("create");
        file.set_len(64 << 20).expect("set_len");
        std::fs::write(dir.path().join("table"), vec![1u8; 8192]).expect("write");
        assert_eq!(tree_bytes(dir.path()), (2, (64 << 20) + 8192));
        let disk = tree_disk_bytes(dir.path());
        assert!((8192..1 << 20).contains(&disk), "{disk} bytes on disk");
    }

    #[test]
    fn test_own_stat_and_rss_are_readable() {
        let me = std::process::id();
        assert!(is_alive(me), "we are alive");
        assert!(rss_kib(me).is_some_and(|k| k > 0), "own VmRSS readable");
        assert!(runs_our_exe(me), "our exe is our exe");
    }
}
