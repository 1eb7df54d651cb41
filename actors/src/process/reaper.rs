//! warden as a child subreaper: a service that forks and exits leaves its children to
//! warden rather than to init, and they stay inside the service's cgroup where a stop
//! reaches them. Orphans are reaped here once they exit; the services' own main processes
//! are left to their exit watchers (tokio waits for them by pid), so only zombies whose pid
//! warden is not waiting for are collected.

use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

static WATCHED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Spawns a child an exit watcher will wait for, registered before the reaper can look:
/// the reaper holds the same lock while it scans and reaps, so it never sees the child
/// unregistered (a launcher that fails at once is a zombie within microseconds).
pub fn spawn_watched(
    spawn: impl FnOnce() -> std::io::Result<tokio::process::Child>,
) -> std::io::Result<tokio::process::Child> {
    let mut watched = WATCHED.lock().unwrap_or_else(|p| p.into_inner());
    let child = spawn()?;
    if let Some(pid) = child.id() {
        watched.insert(pid);
    }
    Ok(child)
}

/// [`spawn_watched`] for a child waited for by std (a blocking task's command).
pub fn spawn_watched_std(
    spawn: impl FnOnce() -> std::io::Result<std::process::Child>,
) -> std::io::Result<std::process::Child> {
    let mut watched = WATCHED.lock().unwrap_or_else(|p| p.into_inner());
    let child = spawn()?;
    watched.insert(child.id());
    Ok(child)
}

/// Its exit watcher is done with `pid`.
pub fn unwatched(pid: u32) {
    WATCHED.lock().unwrap_or_else(|p| p.into_inner()).remove(&pid);
}

/// Makes this process the subreaper of its descendants.
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// Reaps exited orphans now: zombie children of ours that no exit watcher waits for.
pub fn reap_orphans() -> usize {
    let me = std::process::id() as i32;
    let Ok(all) = procfs::process::all_processes() else { return 0 };
    let zombies: Vec<i32> = all
        .flatten()
        .filter_map(|p| p.stat().ok())
        .filter(|st| st.state == 'Z' && st.ppid == me)
        .map(|st| st.pid)
        .collect();
    // The lock only now, for the check and the reap: a child spawned after the scan is not
    // in the list, and one spawned before it was registered before the spawn let go.
    let watched = WATCHED.lock().unwrap_or_else(|p| p.into_inner());
    zombies
        .into_iter()
        .filter(|pid| !watched.contains(&(*pid as u32)))
        .filter(|pid| waitpid(Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG)).is_ok())
        .count()
}

/// Reaps orphans whenever a child exits (SIGCHLD), and every few seconds in case a signal
/// was merged with another.
pub async fn run() {
    let mut sigchld = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGCHLD; reaping orphans every few seconds only");
            None
        }
    };
    loop {
        let tick = tokio::time::sleep(Duration::from_secs(5));
        match &mut sigchld {
            Some(s) => {
                tokio::select! {
                    _ = s.recv() => {}
                    _ = tick => {}
                }
            }
            None => tick.await,
        }
        let n = tokio::task::spawn_blocking(reap_orphans).await.unwrap_or(0);
        if n > 0 {
            tracing::debug!(reaped = n, "reaped orphaned processes");
        }
    }
}
