//! Running one service process: its own process group, output captured into size-rotated
//! log files, its exit awaited (never polled), and group-wide signals to stop it.

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Serialize;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::watch;
use warden_core::config::{LogPolicy, Program, ServiceSpec};
use warden_core::playbook::SignalName;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exited with code {c}"),
            (None, Some(s)) => {
                let name = Signal::try_from(s).map(|s| s.as_str()).unwrap_or("unknown");
                write!(f, "killed by signal {s} ({name})")
            }
            _ => f.write_str("ended"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start `{command}` for service `{service}`: {source}")]
    Exec { service: String, command: String, source: std::io::Error },
    #[error("cannot open log file {path}: {source}")]
    Log { path: PathBuf, source: std::io::Error },
}

/// A started process.
#[derive(Debug, Clone)]
pub struct Spawned {
    pub pid: u32,
    /// Becomes `Some` when the process has exited.
    pub exit: watch::Receiver<Option<ExitInfo>>,
}

/// The last lines a service printed, for diagnostics.
#[derive(Debug, Clone, Default)]
pub struct LogTail {
    lines: Arc<Mutex<VecDeque<String>>>,
}

const TAIL_LINES: usize = 20;

impl LogTail {
    fn push(&self, line: &str) {
        if let Ok(mut q) = self.lines.lock() {
            if q.len() == TAIL_LINES {
                q.pop_front();
            }
            q.push_back(line.to_string());
        }
    }
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().map(|q| q.iter().cloned().collect()).unwrap_or_default()
    }
}

/// A log file that rotates to `.1`, `.2`, … when it passes `max_bytes`.
#[derive(Debug)]
struct RotatingLog {
    path: PathBuf,
    file: File,
    size: u64,
    policy: LogPolicy,
}

impl RotatingLog {
    fn open(path: PathBuf, policy: LogPolicy) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(Self { path, file, size, policy })
    }

    fn write_line(&mut self, line: &str) {
        let _ = self.file.write_all(line.as_bytes());
        let _ = self.file.write_all(b"\n");
        self.size += line.len() as u64 + 1;
        if self.size >= self.policy.max_bytes {
            self.rotate();
        }
    }

    fn rotate(&mut self) {
        let keep = self.policy.keep.max(1);
        let name = |i: usize| PathBuf::from(format!("{}.{i}", self.path.display()));
        let _ = std::fs::remove_file(name(keep));
        for i in (1..keep).rev() {
            let _ = std::fs::rename(name(i), name(i + 1));
        }
        let _ = std::fs::rename(&self.path, name(1));
        if let Ok(f) = OpenOptions::new().create(true).append(true).truncate(false).open(&self.path) {
            self.file = f;
            self.size = 0;
        }
    }
}

/// The program and arguments of a service (`@warden` is this binary).
pub fn command_line(spec: &ServiceSpec, self_exe: &Path) -> (PathBuf, Vec<String>) {
    let program = match &spec.program {
        Program::SelfExe => self_exe.to_path_buf(),
        Program::Path(p) => p.clone(),
    };
    (program, spec.args.clone())
}

/// Starts the service in its own process group, its output appended to `log` (rotated per
/// its policy). `on_exit` runs once when it ends, after the exit is visible on the
/// returned watch channel.
pub fn spawn_service(
    spec: &ServiceSpec,
    self_exe: &Path,
    log: PathBuf,
    tail: LogTail,
    on_exit: impl FnOnce(ExitInfo) + Send + 'static,
) -> Result<Spawned, SpawnError> {
    let name = spec.name.to_string();
    let (program, args) = command_line(spec, self_exe);
    let log = RotatingLog::open(log.clone(), spec.logs).map_err(|source| SpawnError::Log { path: log, source })?;
    let log = Arc::new(Mutex::new(log));

    let mut cmd = Command::new(&program);
    cmd.args(&args)
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    if let Some(dir) = &spec.workdir {
        // Validation checked every workdir outside the data dir; those inside are ours to make.
        let _ = std::fs::create_dir_all(dir);
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn().map_err(|source| SpawnError::Exec {
        service: name.clone(),
        command: program.display().to_string(),
        source,
    })?;
    let pid = child.id().unwrap_or(0);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(copy_lines(out, log.clone(), tail.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(copy_lines(err, log, tail));
    }
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        use std::os::unix::process::ExitStatusExt;
        let info = match child.wait().await {
            Ok(status) => ExitInfo { code: status.code(), signal: status.signal() },
            Err(_) => ExitInfo { code: None, signal: None },
        };
        let _ = tx.send(Some(info));
        on_exit(info);
    });
    Ok(Spawned { pid, exit: rx })
}

async fn copy_lines(stream: impl AsyncRead + Unpin, log: Arc<Mutex<RotatingLog>>, tail: LogTail) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tail.push(&line);
        if let Ok(mut l) = log.lock() {
            l.write_line(&line);
        }
    }
}

/// The signal a playbook names.
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

/// Stops a process group: TERM (and CONT, so a stopped process can act on it), wait up to
/// `grace`, then KILL. With `force`, KILL at once. Returns how it exited.
pub async fn stop_group(
    pid: u32,
    mut exit: watch::Receiver<Option<ExitInfo>>,
    grace: std::time::Duration,
    force: bool,
) -> Option<ExitInfo> {
    if let Some(done) = *exit.borrow() {
        return Some(done);
    }
    if !force {
        let _ = signal_group(pid, Signal::SIGTERM);
        let _ = signal_group(pid, Signal::SIGCONT);
        if let Ok(Ok(r)) = tokio::time::timeout(grace, exit.wait_for(Option::is_some)).await {
            return *r;
        }
    }
    let _ = signal_group(pid, Signal::SIGKILL);
    // A KILLed group is reaped within milliseconds; bound the wait anyway.
    match tokio::time::timeout(std::time::Duration::from_secs(5), exit.wait_for(Option::is_some)).await {
        Ok(Ok(r)) => *r,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_rotating_log_keeps_configured_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.log");
        let mut log = RotatingLog::open(path.clone(), LogPolicy { max_bytes: 100, keep: 2 }).expect("open");
        for i in 0..50 {
            log.write_line(&format!("line {i:04} padding padding"));
        }
        assert!(path.exists());
        assert!(dir.path().join("s.log.1").exists());
        assert!(dir.path().join("s.log.2").exists());
        assert!(!dir.path().join("s.log.3").exists(), "only `keep` rotated files");
        let size = std::fs::metadata(&path).expect("meta").len();
        assert!(size < 100, "current file was rotated: {size}");
    }

    #[test]
    fn test_exit_info_names_signal() {
        let e = ExitInfo { code: None, signal: Some(9) };
        assert_eq!(e.to_string(), "killed by signal 9 (SIGKILL)");
    }
}
