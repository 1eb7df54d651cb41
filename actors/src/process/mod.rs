//! Running service processes: started through the launcher (cgroup, limits, identity, then
//! exec), their output appended to their log file, their exit awaited (never polled), and
//! stops that reach every process of the service.
//!
//! - [`launch`]: the launcher's plan and what it does in the child.
//! - [`cgroup`]: where the machine allows it, one cgroup per service.
//! - [`logs`]: log files, rotation, the tail for diagnostics.
//! - [`record`]: what the data dir keeps about running processes, for the next warden.
//! - [`reaper`]: warden as a child subreaper, collecting orphans.
//! - [`LastGroup`]: what is left of a process group after its leader exited.

pub mod cgroup;
mod group;
pub mod launch;
pub mod logs;
pub mod reaper;
pub mod record;

use cgroup::ServiceCgroup;
pub use group::LastGroup;
use launch::LaunchPlan;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Command;
use tokio::sync::watch;
use warden_core::config::{Program, ServiceSpec};
use warden_core::signal::SignalName;

/// How a process ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The kernel's OOM killer killed it (its cgroup counted an OOM kill).
    pub oom_killed: bool,
    /// Why it never ran: the launcher's report (no such program, no permission, …).
    pub not_started: Option<String>,
    /// It was adopted from an earlier warden, which alone could have read its status.
    pub adopted: bool,
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(why) = &self.not_started {
            return write!(f, "did not start: {why}");
        }
        if self.oom_killed {
            return f.write_str("killed by the kernel's OOM killer (memory limit reached)");
        }
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exited with code {c}"),
            (None, Some(s)) => {
                let name = Signal::try_from(s).map(|s| s.as_str()).unwrap_or("unknown");
                write!(f, "killed by signal {s} ({name})")
            }
            _ if self.adopted => f.write_str("exited (status unknown: adopted from an earlier warden)"),
            _ => f.write_str("ended"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start `{command}` for service `{service}`: {source} ({})", errno_name(.source))]
    Exec { service: String, command: String, source: std::io::Error },
    #[error("cannot open log file {path}: {source} ({})", errno_name(.source))]
    Log { path: PathBuf, source: std::io::Error },
    #[error("cannot prepare the cgroup of `{service}`: {source} ({})", errno_name(.source))]
    Cgroup { service: String, source: std::io::Error },
    #[error("cannot read env_file {path}: {reason}")]
    EnvFile { path: PathBuf, reason: String },
    #[error("cannot make the launch status pipe: {0}")]
    Pipe(nix::errno::Errno),
}

/// The errno's name (`EMFILE`), which is what an operator searches for.
fn errno_name(e: &std::io::Error) -> String {
    e.raw_os_error().map_or_else(|| "no errno".into(), |n| format!("{:?}", nix::errno::Errno::from_raw(n)))
}

/// A started process.
#[derive(Debug, Clone)]
pub struct Spawned {
    pub pid: u32,
    /// Becomes `Some` when the process has exited.
    pub exit: watch::Receiver<Option<ExitInfo>>,
    /// The cgroup's OOM kills when it started: more later means the kernel killed in it.
    pub oom_kills_at_start: Option<u64>,
}

/// What it takes to start a service.
pub struct SpawnRequest<'a> {
    pub spec: &'a ServiceSpec,
    /// This binary: the launcher, and `@warden` services.
    pub self_exe: &'a Path,
    pub log: &'a Path,
    pub cgroup: Option<&'a ServiceCgroup>,
}

/// The program and arguments of a service (`@warden` is this binary).
pub fn command_line(spec: &ServiceSpec, self_exe: &Path) -> (PathBuf, Vec<String>) {
    let program = match &spec.program {
        Program::SelfExe => self_exe.to_path_buf(),
        Program::Path(p) => p.clone(),
    };
    (program, spec.args.clone())
}

/// The environment a service starts with: warden's, then its `env_file` (read now, as
/// systemd reads `EnvironmentFile=` at each start), then its `env`, then `USER`, `LOGNAME`
/// and `HOME` of the user it runs as.
fn environment(spec: &ServiceSpec) -> Result<Vec<(String, String)>, SpawnError> {
    let mut env = match &spec.env_file {
        Some(path) => warden_core::config::read_env_file(path)
            .map_err(|reason| SpawnError::EnvFile { path: path.clone(), reason })?,
        None => Vec::new(),
    };
    env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    if let Some(user) = spec.identity.as_ref().and_then(|i| i.user.as_ref()) {
        env.push(("USER".into(), user.name.clone()));
        env.push(("LOGNAME".into(), user.name.clone()));
        env.push(("HOME".into(), user.home.display().to_string()));
    }
    Ok(env)
}

/// warden's open-files soft limit as it was given (before warden raised its own).
static INHERITED_OPEN_FILES: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Remembers the open-files soft limit warden was started with: services without
/// `limits.open_files` get that one back, not the raised limit warden keeps for its API.
pub fn remember_inherited_open_files(soft: u64) {
    let _ = INHERITED_OPEN_FILES.set(soft);
}

fn plan(spec: &ServiceSpec, cgroup: Option<&ServiceCgroup>) -> LaunchPlan {
    let identity = spec.identity.as_ref();
    LaunchPlan {
        cgroup_procs: cgroup.map(ServiceCgroup::procs_files).unwrap_or_default(),
        network_namespace: spec.network_namespace.clone(),
        open_files: spec.limits.open_files,
        open_files_soft: INHERITED_OPEN_FILES.get().copied(),
        processes: spec.limits.processes.filter(|_| !cgroup.is_some_and(ServiceCgroup::limits_processes)),
        umask: spec.umask,
        groups: identity.map(|i| i.groups.clone()),
        gid: identity.map(|i| i.gid),
        uid: identity.and_then(|i| i.user.as_ref().map(|u| u.uid)),
    }
}

/// Starts the service through the launcher, in its own process group and (if given) its
/// cgroup, output appended to its log. `on_exit` runs once when it ends, after the exit
/// is visible on the returned watch channel.
pub fn spawn_service(
    req: SpawnRequest<'_>,
    on_exit: impl FnOnce(ExitInfo) + Send + 'static,
) -> Result<Spawned, SpawnError> {
    let spec = req.spec;
    let name = spec.name.to_string();
    let env = environment(spec)?;
    let (program, args) = command_line(spec, req.self_exe);
    if let Some(cg) = req.cgroup {
        cg.prepare(spec.memory_limit_mb, spec.limits.processes)
            .map_err(|source| SpawnError::Cgroup { service: name.clone(), source })?;
    }
    let log_err = |source| SpawnError::Log { path: req.log.to_path_buf(), source };
    let out = logs::open(req.log).map_err(log_err)?;
    let err = out.try_clone().map_err(log_err)?;
    let (status_rx, status_tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(SpawnError::Pipe)?;

    let mut cmd = Command::new(req.self_exe);
    cmd.arg(launch::SUBCOMMAND)
        .arg(plan(spec, req.cgroup).to_arg())
        .arg("--")
        .arg(&program)
        .args(&args)
        // warden's own service-manager variables are for warden alone: a systemd-aware
        // service would otherwise report its readiness, or its end, to warden's manager.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .envs(env)
        .stdin(Stdio::from(status_tx))
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .process_group(0)
        .kill_on_drop(false);
    if let Some(dir) = &spec.workdir {
        // Validation checked every workdir outside the data dir; those inside are ours to make.
        let _ = std::fs::create_dir_all(dir);
        cmd.current_dir(dir);
    }
    // Registered with the reaper before it can scan again: a launcher that fails at once
    // is then never taken for an orphan.
    let mut child = reaper::spawn_watched(|| cmd.spawn()).map_err(|source| SpawnError::Exec {
        service: name.clone(),
        command: program.display().to_string(),
        source,
    })?;
    // The parent's copy of the pipe's write end went with `cmd`'s stdin when it spawned.
    drop(cmd);
    let pid = child.id().unwrap_or(0);
    let oom_kills_at_start = req.cgroup.and_then(ServiceCgroup::oom_kills);
    let oom_before = oom_kills_at_start.unwrap_or(0);
    let cgroup = req.cgroup.cloned();
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        use std::os::unix::process::ExitStatusExt;
        // Empty at a successful exec (the pipe closes); the reason otherwise.
        let report = tokio::task::spawn_blocking(move || {
            let mut s = String::new();
            let _ = std::fs::File::from(status_rx).read_to_string(&mut s);
            s
        });
        let status = child.wait().await;
        reaper::unwatched(pid);
        let report = report.await.unwrap_or_default();
        let mut info = match status {
            Ok(status) => ExitInfo { code: status.code(), signal: status.signal(), ..ExitInfo::default() },
            Err(_) => ExitInfo::default(),
        };
        info.not_started = (!report.trim().is_empty()).then(|| report.trim().to_string());
        info.oom_killed = info.signal == Some(Signal::SIGKILL as i32)
            && cgroup.as_ref().and_then(ServiceCgroup::oom_kills).is_some_and(|n| n > oom_before);
        let _ = tx.send(Some(info.clone()));
        on_exit(info);
    });
    Ok(Spawned { pid, exit: rx, oom_kills_at_start })
}

/// A pidfd for `pid`: from here on the process it names cannot be confused with a later
/// one that gets the same pid, so identity checks made after opening it hold.
pub fn pidfd(pid: u32) -> std::io::Result<std::os::fd::OwnedFd> {
    let raw = rustix::process::Pid::from_raw(i32::try_from(pid).map_err(std::io::Error::other)?)
        .ok_or_else(|| std::io::Error::other("pid 0"))?;
    Ok(rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty())?)
}

/// Watches a process that is not our child (adopted from an earlier warden) through its
/// pidfd, which becomes readable when it exits. A small thread waits on it: registering a
/// raw fd with tokio's reactor needs `unsafe`, which this workspace forbids.
pub fn watch_pidfd(pid: u32, fd: std::os::fd::OwnedFd) -> std::io::Result<watch::Receiver<Option<ExitInfo>>> {
    use std::os::fd::AsFd;
    let (tx, rx) = watch::channel(None);
    std::thread::Builder::new().name(format!("pidfd-{pid}")).stack_size(64 * 1024).spawn(move || {
        let mut fds = [nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN)];
        while let Err(nix::errno::Errno::EINTR) = nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {}
        let _ = tx.send(Some(ExitInfo { adopted: true, ..ExitInfo::default() }));
    })?;
    Ok(rx)
}

/// The state letter of a process (`R`, `S`, `T` for stopped, `Z`, …); `None` once gone.
pub fn state(pid: u32) -> Option<char> {
    Some(procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?.stat().ok()?.state)
}

/// The signal a config or playbook names.
pub fn signal_of(name: SignalName) -> Signal {
    match name {
        SignalName::Hup => Signal::SIGHUP,
        SignalName::Int => Signal::SIGINT,
        SignalName::Quit => Signal::SIGQUIT,
        SignalName::Usr1 => Signal::SIGUSR1,
        SignalName::Usr2 => Signal::SIGUSR2,
        SignalName::Term => Signal::SIGTERM,
        SignalName::Kill => Signal::SIGKILL,
        SignalName::Cont => Signal::SIGCONT,
        SignalName::Stop => Signal::SIGSTOP,
        SignalName::Winch => Signal::SIGWINCH,
    }
}

/// Sends `signal` to the whole process group led by `pid`.
pub fn signal_group(pid: u32, signal: Signal) -> nix::Result<()> {
    killpg(Pid::from_raw(pid as i32), signal)
}

/// How to stop one service.
pub struct Stop<'a> {
    pub pid: u32,
    pub exit: watch::Receiver<Option<ExitInfo>>,
    pub grace: Duration,
    /// Straight to SIGKILL (a hung process would never act on the stop signal).
    pub force: bool,
    pub signal: Signal,
    pub cgroup: Option<&'a ServiceCgroup>,
}

/// Stops a service: its stop signal (and SIGCONT, so a stopped process can act on it) to
/// its process group, up to `grace` for the main process to exit, then SIGKILL; and in any
/// case SIGKILL to whatever is left in its cgroup (grandchildren, `setsid` escapees), as
/// systemd's `KillMode=mixed` does. Returns how the main process exited.
pub async fn stop(s: Stop<'_>) -> Option<ExitInfo> {
    let mut exit = s.exit;
    let already = exit.borrow().clone();
    let info = match already {
        Some(done) => Some(done),
        None => {
            let mut done = None;
            if !s.force {
                let _ = signal_group(s.pid, s.signal);
                let _ = signal_group(s.pid, Signal::SIGCONT);
                if let Ok(Ok(r)) = tokio::time::timeout(s.grace, exit.wait_for(Option::is_some)).await {
                    done = r.clone();
                }
            }
            if done.is_none() {
                let _ = signal_group(s.pid, Signal::SIGKILL);
                if let Some(cg) = s.cgroup {
                    cg.kill_all().await;
                }
                // A KILLed process is reaped within milliseconds; bound the wait anyway.
                done = match tokio::time::timeout(Duration::from_secs(5), exit.wait_for(Option::is_some)).await {
                    Ok(Ok(r)) => r.clone(),
                    _ => None,
                };
            }
            done
        }
    };
    if let Some(cg) = s.cgroup {
        cg.kill_all().await;
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_exit_info_names_the_cause() {
        let killed = ExitInfo { signal: Some(9), ..ExitInfo::default() };
        assert_eq!(killed.to_string(), "killed by signal 9 (SIGKILL)");
        let oom = ExitInfo { signal: Some(9), oom_killed: true, ..ExitInfo::default() };
        assert!(oom.to_string().contains("OOM killer"));
        let enoent = ExitInfo { code: Some(127), not_started: Some("cannot execute /x".into()), ..ExitInfo::default() };
        assert_eq!(enoent.to_string(), "did not start: cannot execute /x");
    }
}
