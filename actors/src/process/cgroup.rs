//! Containment: each service in a cgroup of its own where the machine allows it, so a stop
//! reaches every descendant (grandchildren, `setsid` escapees), `memory_limit_mb` is the
//! kernel's limit, `limits.processes` caps the service's tasks, and an OOM kill is seen as
//! one. Where it does not, process groups, with a warning saying why.
//!
//! - cgroup v2 (one unified hierarchy with the memory and pids controllers delegated to
//!   warden's own cgroup): warden moves itself into a leaf `supervisor` cgroup (a cgroup
//!   with processes cannot hand controllers to children), then makes `warden.ID/SERVICE`
//!   beside it.
//! - cgroup v1 (separate memory, pids and freezer hierarchies, as hybrid systems and many
//!   containers have): `warden.ID/SERVICE` under warden's own cgroup in each hierarchy.
//!
//! `ID` comes from the data dir, so two wardens on one machine never share a cgroup, and
//! a warden that starts again on the same data dir finds what its predecessor left.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a hierarchy is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// v2: everything in one directory.
    Unified,
    Memory,
    Pids,
    Freezer,
}

/// Where this warden can put its services.
#[derive(Debug, Clone)]
pub struct Containment {
    /// `warden.ID` directories, one per hierarchy used; empty: process groups only.
    roots: Vec<(Role, PathBuf)>,
    version: Option<u8>,
    /// Why there are no cgroups, when there are none.
    why_not: Option<String>,
}

impl fmt::Display for Containment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.version, &self.why_not) {
            (Some(2), _) => f.write_str("cgroup v2 (memory, pids)"),
            (Some(_), _) => {
                let names: Vec<&str> = self
                    .roots
                    .iter()
                    .map(|(r, _)| match r {
                        Role::Memory => "memory",
                        Role::Pids => "pids",
                        Role::Freezer => "freezer",
                        Role::Unified => "unified",
                    })
                    .collect();
                write!(f, "cgroup v1 ({})", names.join(", "))
            }
            (None, why) => write!(f, "process groups only ({})", why.as_deref().unwrap_or("no cgroups")),
        }
    }
}

impl Containment {
    /// No cgroups: stops reach the process group only.
    pub fn none(why: impl Into<String>) -> Self {
        Self { roots: Vec::new(), version: None, why_not: Some(why.into()) }
    }

    /// Finds the cgroups this process may manage, for the node with this `id`.
    pub fn detect(id: &str) -> Self {
        match detect_v2(id).or_else(|v2| detect_v1(id).map_err(|v1| format!("{v2}; {v1}"))) {
            Ok(c) => c,
            Err(why) => Self::none(why),
        }
    }

    pub fn is_active(&self) -> bool {
        !self.roots.is_empty()
    }

    /// Whether a pids controller enforces `limits.processes` per service.
    pub fn limits_processes(&self) -> bool {
        self.roots.iter().any(|(r, _)| matches!(r, Role::Pids | Role::Unified))
    }

    /// What the config asks that this machine can only approximate, one sentence each.
    pub fn shortfalls(&self, specs: &[warden_core::config::ServiceSpec]) -> Vec<String> {
        let root = nix::unistd::geteuid().is_root();
        let mut out = Vec::new();
        for spec in specs {
            let name = spec.name.as_str();
            if spec.memory_limit_mb.is_some() && !self.is_active() {
                out.push(format!("service `{name}`: memory_limit_mb is not enforced without a memory cgroup"));
            }
            if spec.limits.processes.is_some() && !self.limits_processes() {
                let user = spec.identity.as_ref().and_then(|i| i.user.as_ref());
                out.push(if user.is_none() && root {
                    format!("service `{name}`: limits.processes has no effect: without a pids cgroup it becomes RLIMIT_NPROC, which does not bind root (set `user:`)")
                } else {
                    format!("service `{name}`: limits.processes becomes RLIMIT_NPROC without a pids cgroup: it counts every process of the service's user, not the service's")
                });
            }
        }
        out
    }

    /// The cgroup of `service` (created by [`ServiceCgroup::prepare`]).
    pub fn service(&self, service: &str) -> Option<ServiceCgroup> {
        self.is_active().then(|| ServiceCgroup {
            dirs: self.roots.iter().map(|(role, root)| (*role, root.join(service))).collect(),
        })
    }

    /// Removes the node's (empty) cgroup directories, at shutdown.
    pub fn remove_node(&self) {
        for (_, root) in &self.roots {
            let _ = std::fs::remove_dir(root);
        }
    }

    /// Services that have a cgroup from an earlier run (names of the directories).
    pub fn existing_services(&self) -> BTreeSet<String> {
        let Some((_, root)) = self.roots.first() else { return BTreeSet::new() };
        std::fs::read_dir(root)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().is_dir())
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn own_cgroups() -> Result<Vec<procfs::ProcessCGroup>, String> {
    let me = procfs::process::Process::myself().map_err(|e| format!("cannot read /proc/self: {e}"))?;
    Ok(me.cgroups().map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?.0)
}

fn mounts() -> Result<Vec<procfs::process::MountInfo>, String> {
    let me = procfs::process::Process::myself().map_err(|e| format!("cannot read /proc/self: {e}"))?;
    Ok(me.mountinfo().map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?.0)
}

/// v2: the unified hierarchy, with memory and pids available in our own cgroup.
fn detect_v2(id: &str) -> Result<Containment, String> {
    let mount = mounts()?.into_iter().find(|m| m.fs_type == "cgroup2").ok_or("no cgroup v2 mount")?.mount_point;
    let own = own_cgroups()?.into_iter().find(|c| c.hierarchy == 0).ok_or("not in a cgroup v2 hierarchy")?;
    let base = mount.join(own.pathname.trim_start_matches('/'));
    let available = std::fs::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
    let has = |c: &str| available.split_whitespace().any(|x| x == c);
    if !(has("memory") && has("pids")) {
        return Err(format!("cgroup v2 at {} offers [{}], not memory and pids", base.display(), available.trim()));
    }
    let fail = |what: &str, e: io::Error| format!("cgroup v2 at {}: cannot {what}: {e}", base.display());
    // A cgroup with processes in it cannot hand controllers to children: warden moves
    // itself into a leaf first.
    let leaf = base.join("supervisor");
    std::fs::create_dir_all(&leaf).map_err(|e| fail("create the supervisor leaf", e))?;
    std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())
        .map_err(|e| fail("move warden into its leaf", e))?;
    std::fs::write(base.join("cgroup.subtree_control"), "+memory +pids")
        .map_err(|e| fail("delegate memory and pids", e))?;
    let root = base.join(format!("warden.{id}"));
    std::fs::create_dir_all(&root).map_err(|e| fail("create the node's cgroup", e))?;
    std::fs::write(root.join("cgroup.subtree_control"), "+memory +pids")
        .map_err(|e| fail("delegate memory and pids to services", e))?;
    Ok(Containment { roots: vec![(Role::Unified, root)], version: Some(2), why_not: None })
}

/// v1: the memory, pids and freezer hierarchies that are mounted and writable.
fn detect_v1(id: &str) -> Result<Containment, String> {
    let own = own_cgroups()?;
    let mounts = mounts()?;
    let mut roots = Vec::new();
    for (role, name) in [(Role::Memory, "memory"), (Role::Pids, "pids"), (Role::Freezer, "freezer")] {
        let Some(mount) = mounts.iter().find(|m| m.fs_type == "cgroup" && m.super_options.contains_key(name)) else {
            continue;
        };
        let Some(mine) = own.iter().find(|c| c.controllers.iter().any(|x| x == name)) else { continue };
        let root = mount.mount_point.join(mine.pathname.trim_start_matches('/')).join(format!("warden.{id}"));
        if std::fs::create_dir_all(&root).is_ok() {
            roots.push((role, root));
        }
    }
    if roots.iter().any(|(r, _)| matches!(r, Role::Memory | Role::Pids)) {
        Ok(Containment { roots, version: Some(1), why_not: None })
    } else {
        Err("no writable cgroup v1 memory or pids hierarchy".into())
    }
}

/// One service's cgroup (a directory per hierarchy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCgroup {
    dirs: Vec<(Role, PathBuf)>,
}

impl ServiceCgroup {
    fn dir(&self, role: Role) -> Option<&Path> {
        self.dirs.iter().find(|(r, _)| *r == role || *r == Role::Unified).map(|(_, d)| d.as_path())
    }

    /// Creates the directories and sets the limits; safe to call again before each start.
    pub fn prepare(&self, memory_limit_mb: Option<u64>, processes: Option<u64>) -> io::Result<()> {
        for (_, dir) in &self.dirs {
            std::fs::create_dir_all(dir)?;
        }
        let unified = self.dirs.iter().any(|(r, _)| *r == Role::Unified);
        if let Some(dir) = self.dir(Role::Memory) {
            let limit = memory_limit_mb.map(|mb| (mb * 1024 * 1024).to_string());
            let (file, value) = match (unified, limit) {
                (true, Some(l)) => ("memory.max", l),
                (true, None) => ("memory.max", "max".to_string()),
                // v1 has no "unlimited" word: the largest page-aligned value means it.
                (false, Some(l)) => ("memory.limit_in_bytes", l),
                (false, None) => ("memory.limit_in_bytes", "-1".to_string()),
            };
            std::fs::write(dir.join(file), value)?;
        }
        if let Some(dir) = self.dir(Role::Pids) {
            std::fs::write(dir.join("pids.max"), processes.map_or("max".to_string(), |n| n.to_string()))?;
        }
        Ok(())
    }

    /// Whether `limits.processes` is enforced here (else the launcher sets RLIMIT_NPROC).
    pub fn limits_processes(&self) -> bool {
        self.dir(Role::Pids).is_some()
    }

    /// The files a process writes its pid into to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, d)| d.join("cgroup.procs")).collect()
    }

    /// Every process in the cgroup now.
    pub fn pids(&self) -> Vec<u32> {
        let Some((_, dir)) = self.dirs.iter().find(|(r, _)| matches!(r, Role::Unified | Role::Pids | Role::Memory))
        else {
            return Vec::new();
        };
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Sends `signal` to every process in the cgroup; how many got it.
    pub fn signal_all(&self, signal: nix::sys::signal::Signal) -> usize {
        self.pids()
            .into_iter()
            .filter(|&p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), signal).is_ok())
            .count()
    }

    /// Kills everything in the cgroup and waits (bounded) until it is empty. v2 has
    /// `cgroup.kill`; on v1 the cgroup is frozen first where the freezer is there, so
    /// nothing forks while it is being emptied.
    pub async fn kill_all(&self) -> bool {
        use nix::sys::signal::Signal;
        if let Some(dir) = self.dir(Role::Unified)
            && std::fs::write(dir.join("cgroup.kill"), "1").is_ok()
        {
            return self.wait_empty(Duration::from_secs(5)).await;
        }
        let freezer = self.dirs.iter().find(|(r, _)| *r == Role::Freezer).map(|(_, d)| d.join("freezer.state"));
        if let Some(state) = &freezer {
            let _ = std::fs::write(state, "FROZEN");
        }
        for _ in 0..50 {
            if self.signal_all(Signal::SIGKILL) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if let Some(state) = &freezer {
            let _ = std::fs::write(state, "THAWED");
        }
        self.wait_empty(Duration::from_secs(5)).await
    }

    async fn wait_empty(&self, limit: Duration) -> bool {
        let start = tokio::time::Instant::now();
        while start.elapsed() < limit {
            if self.pids().is_empty() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.pids().is_empty()
    }

    /// How many times the kernel's OOM killer has killed in this cgroup.
    pub fn oom_kills(&self) -> Option<u64> {
        let dir = self.dir(Role::Memory)?;
        let (file, key) = if self.dirs.iter().any(|(r, _)| *r == Role::Unified) {
            ("memory.events", "oom_kill")
        } else {
            ("memory.oom_control", "oom_kill")
        };
        let text = std::fs::read_to_string(dir.join(file)).ok()?;
        text.lines().find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
    }

    /// Bytes the cgroup uses now and its limit (`None` without a memory controller or a
    /// limit): what the out-of-memory detector compares before the kernel has to act.
    pub fn memory_usage(&self) -> Option<(u64, u64)> {
        let dir = self.dir(Role::Memory)?;
        let (used, limit) = if self.dirs.iter().any(|(r, _)| *r == Role::Unified) {
            ("memory.current", "memory.max")
        } else {
            ("memory.usage_in_bytes", "memory.limit_in_bytes")
        };
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok()?.trim().parse::<u64>().ok();
        // "max" (v2) does not parse, and v1's "unlimited" is near u64::MAX: no limit either way.
        let limit = read(limit).filter(|l| *l < u64::MAX / 2)?;
        Some((read(used)?, limit))
    }

    /// Removes the (empty) directories.
    pub fn remove(&self) {
        for (_, dir) in &self.dirs {
            let _ = std::fs::remove_dir(dir);
        }
    }
}
