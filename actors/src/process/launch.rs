//! The launcher: `warden launch PLAN -- PROGRAM ARGS…`, the short-lived first process of
//! every service. It joins the service's cgroups, sets limits, umask, groups and user, then
//! execs the program; it is the same pid, so warden's child *is* the service. Doing this in
//! a process of our own (systemd has sd-executor for it) keeps warden free of `unsafe`
//! `pre_exec` hooks, and a service joins its cgroup before it can fork, so none of its
//! descendants can start outside it.
//!
//! Failures are reported on a status pipe that warden hands over as stdin: the launcher
//! keeps a close-on-exec copy of it, gives the program `/dev/null` as stdin, and writes the
//! reason there if a step or the exec fails. A successful exec closes the pipe empty.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// The subcommand name (`warden launch`).
pub const SUBCOMMAND: &str = "launch";

/// Exit status when a set-up step fails (cgroup, limits, identity).
pub const EXIT_SETUP: i32 = 125;
/// Exit status when the program cannot be executed (as a shell says: 126, 127).
pub const EXIT_NOEXEC: i32 = 126;
pub const EXIT_NOTFOUND: i32 = 127;

/// Everything the launcher does before it execs, decided by warden.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaunchPlan {
    /// `cgroup.procs` files the launcher writes its own pid into, first of all.
    pub cgroup_procs: Vec<PathBuf>,
    /// A network namespace to join (`setns`), while the launcher may still do so.
    #[serde(default)]
    pub network_namespace: Option<PathBuf>,
    /// `limits.open_files`: soft and hard limit.
    pub open_files: Option<u64>,
    /// Without `limits.open_files`: the soft limit warden itself was given, restored
    /// (warden raises its own for the API; a service should not inherit that).
    #[serde(default)]
    pub open_files_soft: Option<u64>,
    /// RLIMIT_NPROC, only where no pids cgroup limits the service.
    pub processes: Option<u64>,
    pub umask: Option<u32>,
    /// Supplementary groups, then the group, then the user (the order privileges drop in).
    pub groups: Option<Vec<u32>>,
    pub gid: Option<u32>,
    pub uid: Option<u32>,
}

impl LaunchPlan {
    pub fn to_arg(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Runs in the launcher process: set up, then exec `program`. Returns only on failure,
/// with the exit status to use; the reason has been written to the status pipe.
pub fn run(plan_json: &str, program: &str, args: &[String]) -> i32 {
    // fd 0 is the status pipe: keep a close-on-exec copy, give the program /dev/null.
    let status = nix::unistd::dup(std::io::stdin().as_fd()).ok().map(std::fs::File::from);
    if let Some(s) = &status {
        let _ = nix::fcntl::fcntl(s.as_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    }
    let report = |code: i32, what: String| {
        if let Some(mut s) = status.as_ref() {
            let _ = s.write_all(what.as_bytes());
        }
        eprintln!("warden launch: {what}");
        code
    };
    if let Err(e) = std::fs::File::open("/dev/null").and_then(|null| Ok(nix::unistd::dup2_stdin(null)?)) {
        return report(EXIT_SETUP, format!("cannot redirect stdin: {e}"));
    }
    let plan: LaunchPlan = match serde_json::from_str(plan_json) {
        Ok(p) => p,
        Err(e) => return report(EXIT_SETUP, format!("bad launch plan: {e}")),
    };
    if let Err(what) = set_up(&plan) {
        return report(EXIT_SETUP, what);
    }
    // std's exec, not a bare execv: it restores what the launcher's own Rust runtime
    // changed (SIGPIPE ignored, the signal mask), so the program starts with the default
    // dispositions a service expects, as it did when warden spawned it directly.
    let err = std::process::Command::new(program).args(args).exec();
    let code = if err.kind() == std::io::ErrorKind::NotFound { EXIT_NOTFOUND } else { EXIT_NOEXEC };
    let errno = err.raw_os_error().map(nix::errno::Errno::from_raw);
    match errno {
        Some(errno) => report(code, format!("cannot execute {program}: {} ({errno:?})", errno.desc())),
        None => report(code, format!("cannot execute {program}: {err}")),
    }
}

fn set_up(plan: &LaunchPlan) -> Result<(), String> {
    use nix::sys::resource::{Resource, setrlimit};
    use nix::unistd::{Gid, Uid};
    let me = std::process::id().to_string();
    for procs in &plan.cgroup_procs {
        std::fs::write(procs, &me).map_err(|e| format!("cannot join cgroup {}: {e}", procs.display()))?;
    }
    if let Some(ns) = &plan.network_namespace {
        // Joined before privileges drop: setns needs CAP_SYS_ADMIN.
        let file =
            std::fs::File::open(ns).map_err(|e| format!("cannot open network namespace {}: {e}", ns.display()))?;
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("cannot join network namespace {}: {e}", ns.display()))?;
    }
    if let Some(n) = plan.open_files {
        setrlimit(Resource::RLIMIT_NOFILE, n, n).map_err(|e| format!("cannot set open files limit {n}: {e}"))?;
    } else if let Some(soft) = plan.open_files_soft
        && let Ok((current, hard)) = nix::sys::resource::getrlimit(Resource::RLIMIT_NOFILE)
        && soft < current
    {
        setrlimit(Resource::RLIMIT_NOFILE, soft, hard)
            .map_err(|e| format!("cannot restore the open files limit {soft}: {e}"))?;
    }
    if let Some(n) = plan.processes {
        setrlimit(Resource::RLIMIT_NPROC, n, n).map_err(|e| format!("cannot set processes limit {n}: {e}"))?;
    }
    if let Some(mask) = plan.umask {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    if let Some(groups) = &plan.groups {
        let gids: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&gids).map_err(|e| format!("cannot set supplementary groups {groups:?}: {e}"))?;
    }
    if let Some(gid) = plan.gid {
        nix::unistd::setgid(Gid::from_raw(gid)).map_err(|e| format!("cannot set group {gid}: {e}"))?;
    }
    if let Some(uid) = plan.uid {
        nix::unistd::setuid(Uid::from_raw(uid)).map_err(|e| format!("cannot set user {uid}: {e}"))?;
    }
    Ok(())
}
