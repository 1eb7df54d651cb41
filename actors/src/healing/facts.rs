//! Gathers what the detection rules judge ([`ServiceFacts`]) from the service table, each
//! service's cgroup and the filesystem. Plain reads, no actor: every detector gathers for
//! itself on its tick.

use crate::data_dir::DataDir;
use crate::guardian::service_table::ServiceTable;
use std::path::Path;
use tokio::time::Instant;
use warden_core::config::ServiceName;
use warden_core::detect::{DiskFacts, DiskUsage, ExitFacts, ServiceFacts, Thresholds, disk_low};
use warden_core::service::ServiceState;

/// Which of the costlier facts to read: each detector reads what its own rule needs (ten
/// detectors ticking twice a second must stay cheap). A cause they leave out is still
/// linked, by the incident manager, once its own detector has opened its incident.
#[derive(Debug, Clone, Copy, Default)]
pub struct Needs {
    /// Memory use and OOM kills, from each service's cgroup.
    pub memory: bool,
    /// Free space of every filesystem under the data dir.
    pub disk: bool,
}

/// The facts of every service in the table now, `disk` only where a filesystem is low.
pub fn gather(table: &ServiceTable, data_dir: &DataDir, t: Thresholds, needs: Needs) -> Vec<ServiceFacts> {
    let now = warden_core::time::now_unix_ms();
    let instant = Instant::now();
    let mut out: Vec<ServiceFacts> = {
        let t = table.lock();
        t.services
            .iter()
            .map(|(name, e)| ServiceFacts {
                service: name.clone(),
                role: e.spec.role,
                state: e.state,
                now_unix_ms: now,
                started_unix_ms: e.started_unix_ms,
                slow_boot: e.slow_boot,
                startup_deadline_ms: e.spec.startup_deadline.as_millis() as u64,
                last_exit: e.exited.as_ref().map(|(at, info)| ExitFacts {
                    at_unix_ms: *at,
                    code: info.code,
                    oom_killed: info.oom_killed,
                    described: info.to_string(),
                }),
                recent_exits: e.tracker.recent_exits(instant),
                waiting_for_port: e.waiting_for_port.clone(),
                memory: e.cgroup.as_ref().filter(|_| needs.memory && e.pid.is_some()).and_then(|c| c.memory_usage()),
                oom_kills: match (
                    e.pid,
                    e.oom_kills_at_start,
                    e.cgroup.as_ref().filter(|_| needs.memory).and_then(|c| c.oom_kills()),
                ) {
                    (Some(_), Some(before), Some(now)) => now.saturating_sub(before),
                    _ => 0,
                },
                missing_files: e
                    .spec
                    .files
                    .iter()
                    .filter(|f| !f.path.exists())
                    .map(|f| f.path.display().to_string())
                    .collect(),
                disk: None,
                log_says: None,
            })
            .collect()
    };
    // Only a service that exited has last words; read them while it is down, outside the
    // table's lock (file reads).
    let down: Vec<(usize, Vec<warden_core::logcause::LogPattern>)> = {
        let t = table.lock();
        out.iter()
            .enumerate()
            .filter_map(|(i, f)| {
                let e = t.services.get(&f.service)?;
                (e.exited.is_some() && e.state != ServiceState::Running).then(|| (i, e.spec.diagnose.clone()))
            })
            .collect()
    };
    for (i, own) in down {
        out[i].log_says = last_words(&data_dir.log_file(out[i].service.as_str()), &own);
    }
    if !needs.disk {
        return out;
    }
    // Each filesystem once: the data dir's, and any mounted under a service's folder (a
    // volume of its own). One that is low is given to the service on it that takes the
    // most room, so it is one incident, at files a playbook can shrink.
    let root = data_dir.root();
    let root_fs = fs_id(root);
    let mut filesystems: Vec<(Option<u64>, DiskFacts, Vec<usize>)> = Vec::new();
    for (i, f) in out.iter().enumerate() {
        let dir = root.join("services").join(f.service.as_str());
        // Its folder and the folders in it (`data/` on a volume of its own).
        let subdirs = std::fs::read_dir(&dir)
            .map(|d| {
                d.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).take(32).collect()
            })
            .unwrap_or_else(|_| Vec::new());
        let mut places = vec![(root_fs, root.to_path_buf())];
        for at in std::iter::once(dir).chain(subdirs) {
            if let Some(id) = fs_id(&at).filter(|id| places.iter().all(|(known, _)| *known != Some(*id))) {
                places.push((Some(id), at));
            }
        }
        for (id, at) in places {
            match filesystems.iter_mut().find(|(fs, ..)| *fs == id) {
                Some((_, _, members)) if !members.contains(&i) => members.push(i),
                Some(_) => {}
                None => {
                    if let Some(disk) = free_space(&at) {
                        filesystems.push((id, disk, vec![i]));
                    }
                }
            }
        }
    }
    for (id, disk, members) in filesystems {
        // Only a filesystem that is low is worth walking for who fills it, and with what.
        if !disk_low(&disk, t) {
            continue;
        }
        let usages: Vec<(usize, DiskUsage)> =
            members.iter().map(|i| (*i, usage(data_dir, &out[*i].service, id))).collect();
        let total = |u: &DiskUsage| u.data + u.logs + u.temp + u.snapshots;
        if let Some((i, u)) = usages.into_iter().max_by_key(|(_, u)| total(u)) {
            out[i].disk = Some(DiskFacts { usage: u, ..disk });
        }
    }
    out
}

/// What the end of a service's log says of why it exited ([`warden_core::logcause`]).
fn last_words(log: &Path, own: &[warden_core::logcause::LogPattern]) -> Option<warden_core::logcause::LogFinding> {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL_BYTES: u64 = 16 * 1024;
    let mut f = std::fs::File::open(log).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES))).ok()?;
    let mut buf = Vec::new();
    f.take(TAIL_BYTES).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    warden_core::logcause::classify(&lines, own)
}

/// The filesystem `path` is on (its device), if it exists.
fn fs_id(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.dev())
}

/// Free and total bytes of the filesystem `path` is on.
fn free_space(path: &Path) -> Option<DiskFacts> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = st.fragment_size() as u64;
    Some(DiskFacts {
        path: path.display().to_string(),
        free_bytes: (st.blocks_available() as u64).saturating_mul(frag),
        total_bytes: (st.blocks() as u64).saturating_mul(frag),
        usage: DiskUsage::default(),
    })
}

/// Where a service's bytes are on filesystem `fs`: its folder (data, and `tmp/` apart),
/// its logs, its snapshots.
fn usage(data_dir: &DataDir, service: &ServiceName, fs: Option<u64>) -> DiskUsage {
    let root = data_dir.root();
    let on_fs = |p: &Path| fs.is_none() || fs_id(p) == fs;
    let logs = std::fs::read_dir(data_dir.logs())
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{service}.log")))
                .filter(|e| on_fs(&e.path()))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>()
        })
        .unwrap_or(0);
    let dir = root.join("services").join(service.as_str());
    let temp = dir_size(&dir.join("tmp"), 4, fs);
    let snapshots = dir_size(&root.join("snapshots").join(service.as_str()), 4, fs);
    let data = dir_size(&dir, 4, fs).saturating_sub(temp);
    DiskUsage { data, logs, temp, snapshots }
}

/// Bytes of the regular files under `dir` on filesystem `fs` (any, if `None`), `depth`
/// levels down at most (bounded: this runs on a detector's tick).
fn dir_size(dir: &Path, depth: u32, fs: Option<u64>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .take(10_000)
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            if m.is_dir() {
                return Some(if depth > 0 { dir_size(&e.path(), depth - 1, fs) } else { 0 });
            }
            Some(if fs.is_none_or(|f| f == m.dev()) { m.len() } else { 0 })
        })
        .sum()
}

/// Whether a service is serving now, as far as a dependent is concerned: running, and none
/// of its probes down.
pub fn failing(state: Option<ServiceState>, probes_down: bool) -> bool {
    state != Some(ServiceState::Running) || probes_down
}
