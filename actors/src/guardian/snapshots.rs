//! Snapshots of a service's data a real database survives: a consistent copy, the files as
//! they were (owner, group, mode, symlinks, timestamps), and a bounded pile.
//!
//! A snapshot is `<snapshots>/<target>/<ms>-<name>/` with the copy in `tree/` and the
//! folder it came from in `source`. How the copy is made is the service's to say
//! ([`SnapshotMethod`]): a running service is copied only by its own command
//! (`pg_basebackup`) or when it declares its files consistent at any moment; else it must
//! be stopped first, never copied file by file while it writes. The oldest snapshots are
//! pruned as each new one is made, past the service's count or bytes.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use warden_core::config::{Identity, SnapshotMethod, SnapshotPolicy};

/// In a snapshot made of what a restore replaced: it is no restore point.
pub const REPLACED: &str = "replaced";

/// How long a snapshot command may take before it is killed.
const COMMAND_LIMIT: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    /// Not made: nothing was changed.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SnapshotError {
    let what = what.into();
    move |source| SnapshotError::Io { what, source }
}

/// Copies `from` to `to` (which must not exist) as it is: files, folders and symlinks with
/// their owner, group, mode and timestamps (a symlink is copied, never followed). Sockets,
/// pipes and devices are left out (a database's socket is made again at its start).
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), SnapshotError> {
    let meta = std::fs::symlink_metadata(from).map_err(io_err(from.display().to_string()))?;
    let t = meta.file_type();
    if t.is_symlink() {
        let target = std::fs::read_link(from).map_err(io_err(from.display().to_string()))?;
        std::os::unix::fs::symlink(&target, to).map_err(io_err(format!("symlink {}", to.display())))?;
        // Owner of the link itself; its mode means nothing on Linux.
        let _ = std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()));
        return keep_times(to, &meta);
    }
    if t.is_dir() {
        std::fs::create_dir(to).map_err(io_err(format!("mkdir {}", to.display())))?;
        for e in std::fs::read_dir(from).map_err(io_err(from.display().to_string()))? {
            let e = e.map_err(io_err(from.display().to_string()))?;
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        }
    } else if t.is_file() {
        std::fs::copy(from, to).map_err(io_err(format!("copy {}", from.display())))?;
    } else {
        return Ok(());
    }
    // Owner before mode: a chown clears set-id bits.
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid()))
        .map_err(io_err(format!("chown {}", to.display())))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(io_err(format!("chmod {}", to.display())))?;
    // A folder's times last: copying into it changed them.
    keep_times(to, &meta)
}

fn keep_times(to: &Path, meta: &std::fs::Metadata) -> Result<(), SnapshotError> {
    let atime = TimeSpec::new(meta.atime(), meta.atime_nsec());
    let mtime = TimeSpec::new(meta.mtime(), meta.mtime_nsec());
    utimensat(nix::fcntl::AT_FDCWD, to, &atime, &mtime, UtimensatFlags::NoFollowSymlink)
        .map_err(|e| SnapshotError::Io { what: format!("times of {}", to.display()), source: e.into() })
}

/// Files and bytes under `dir` (symlinks not followed; 0, 0 when it does not exist).
pub fn tree_size(dir: &Path) -> (u64, u64) {
    let mut files = 0;
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            if let Ok(m) = std::fs::symlink_metadata(&d) {
                return (1, m.len());
            }
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => {
                    files += 1;
                    bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                }
                Err(_) => {}
            }
        }
    }
    (files, bytes)
}

/// One service's snapshots: where they live, how they are made and kept.
pub struct Snapshots<'a> {
    pub root: PathBuf,
    pub policy: &'a SnapshotPolicy,
    /// Who the service runs as: a snapshot command runs as it.
    pub identity: Option<&'a Identity>,
}

/// Whether the copy must wait for the service to stop, given how it is made.
pub fn needs_stopped(method: &SnapshotMethod) -> bool {
    matches!(method, SnapshotMethod::Stop)
}

impl Snapshots<'_> {
    /// Every snapshot folder, oldest first.
    fn all(&self) -> Result<Vec<PathBuf>, SnapshotError> {
        let mut all: Vec<PathBuf> = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("source").exists()).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(self.root.display().to_string())(e)),
        };
        all.sort();
        Ok(all)
    }

    /// The newest snapshot of `dir` that is a restore point.
    pub fn newest(&self, dir: &Path) -> Result<Option<PathBuf>, SnapshotError> {
        Ok(self.all()?.into_iter().rev().filter(|s| !s.join(REPLACED).exists()).find(|s| source_is(s, dir)))
    }

    /// A new empty snapshot folder for `dir`.
    fn fresh(&self, dir: &Path) -> Result<PathBuf, SnapshotError> {
        std::fs::create_dir_all(&self.root).map_err(io_err(self.root.display().to_string()))?;
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // Names sort by time, strictly after the newest (two in one millisecond would
        // otherwise take turns).
        let newest = self.all()?.last().and_then(|p| p.file_name()?.to_str()?.get(..13)?.parse::<u64>().ok());
        let mut ms = warden_core::time::now_unix_ms().max(newest.map_or(0, |n| n + 1));
        loop {
            let snap = self.root.join(format!("{ms:013}-{name}"));
            match std::fs::create_dir(&snap) {
                Ok(()) => return Ok(snap),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => ms += 1,
                Err(e) => return Err(io_err(snap.display().to_string())(e)),
            }
        }
    }

    /// Takes a snapshot of `dir`. `running`: whether the service is up now, which decides
    /// how (its command, a live copy, or a refusal for one that must be stopped first).
    /// `replaced`: it is what a restore replaces, kept for the restore's undo only.
    pub fn take(&self, dir: &Path, running: bool, replaced: bool) -> Result<PathBuf, SnapshotError> {
        if !dir.is_dir() {
            return Err(SnapshotError::Failed(format!("{} is not a directory", dir.display())));
        }
        let command = match &self.policy.method {
            SnapshotMethod::Stop if running && !replaced => {
                return Err(SnapshotError::Refused(format!(
                    "the service is running and {} is copied only while it is stopped (snapshot.method: stop): stop it first, or declare a command that copies it consistently",
                    dir.display()
                )));
            }
            SnapshotMethod::Command(argv) if running && !replaced => Some(argv),
            _ => None,
        };
        let snap = self.fresh(dir)?;
        let made = match command {
            Some(argv) => self.by_command(argv, dir, &snap.join("tree")),
            None => copy_tree(dir, &snap.join("tree")),
        };
        let made = made.and_then(|()| {
            std::fs::write(snap.join("source"), dir.as_os_str().as_encoded_bytes())
                .map_err(io_err(snap.display().to_string()))?;
            if replaced {
                std::fs::write(snap.join(REPLACED), b"replaced by a restore; kept for its undo\n")
                    .map_err(io_err(snap.display().to_string()))?;
            }
            Ok(())
        });
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&snap);
            return Err(e);
        }
        Ok(snap)
    }

    /// Runs the service's own snapshot command into `tree`, a folder made as `dir` is
    /// (owner, mode) and run as the service's user, so what it writes is the service's.
    fn by_command(&self, argv: &[String], dir: &Path, tree: &Path) -> Result<(), SnapshotError> {
        let meta = std::fs::metadata(dir).map_err(io_err(dir.display().to_string()))?;
        std::fs::create_dir(tree).map_err(io_err(tree.display().to_string()))?;
        std::os::unix::fs::lchown(tree, Some(meta.uid()), Some(meta.gid()))
            .map_err(io_err(format!("chown {}", tree.display())))?;
        std::fs::set_permissions(tree, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io_err(format!("chmod {}", tree.display())))?;
        let snap = tree.parent().unwrap_or(tree);
        // Its user must reach the folder it fills: the snapshot folder is its.
        std::os::unix::fs::lchown(snap, Some(meta.uid()), Some(meta.gid()))
            .map_err(io_err(format!("chown {}", snap.display())))?;
        let args: Vec<String> = argv.iter().map(|a| a.replace("${snapshot}", &tree.display().to_string())).collect();
        let Some((program, rest)) = args.split_first() else {
            return Err(SnapshotError::Refused("snapshot.command is empty".into()));
        };
        // Its messages go to a file beside the copy (a pipe nobody reads while it runs
        // could fill and stop it).
        let log_path = snap.join("command.log");
        let log = std::fs::File::create(&log_path).map_err(io_err(log_path.display().to_string()))?;
        let mut cmd = Command::new(program);
        cmd.args(rest).stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        if let Some(id) = self.identity {
            use std::os::unix::process::CommandExt;
            if let Some(u) = &id.user {
                cmd.uid(u.uid).env("HOME", &u.home).env("USER", &u.name);
            }
            cmd.gid(id.gid);
        }
        // Registered with the reaper, which would otherwise take its exit status.
        let mut child =
            crate::process::reaper::spawn_watched_std(|| cmd.spawn()).map_err(io_err(format!("run {program}")))?;
        let pid = child.id();
        let status = wait_limited(&mut child, &args);
        crate::process::reaper::unwatched(pid);
        let status = status?;
        if status.success() {
            return Ok(());
        }
        let err = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: String = err.chars().rev().take(400).collect::<Vec<_>>().into_iter().rev().collect();
        Err(SnapshotError::Failed(format!("`{}` {status}: {}", args.join(" "), tail.trim())))
    }

    /// Deletes the oldest snapshots past the policy's count or bytes; `keep_also` (the one
    /// just made, a restore's undo) always stays, as does the newest restore point.
    /// Returns what was deleted and the bytes freed.
    pub fn prune(&self, keep_also: &[&Path]) -> Result<(Vec<PathBuf>, u64), SnapshotError> {
        let all = self.all()?;
        let newest_point = all.iter().rev().find(|s| !s.join(REPLACED).exists()).cloned();
        let mut sized: Vec<(PathBuf, u64)> = all.into_iter().map(|s| (s.clone(), tree_size(&s).1)).collect();
        let mut count = sized.len();
        let mut bytes: u64 = sized.iter().map(|(_, b)| b).sum();
        let mut gone = Vec::new();
        let mut freed = 0;
        // Oldest first; what must stay is skipped.
        for (snap, size) in sized.drain(..) {
            if count <= self.policy.keep && bytes <= self.policy.max_bytes {
                break;
            }
            if keep_also.iter().any(|k| *k == snap) || newest_point.as_ref() == Some(&snap) {
                continue;
            }
            std::fs::remove_dir_all(&snap).map_err(io_err(format!("delete {}", snap.display())))?;
            count -= 1;
            bytes = bytes.saturating_sub(size);
            freed += size;
            gone.push(snap);
        }
        Ok((gone, freed))
    }
}

/// Waits for a snapshot command, killed past [`COMMAND_LIMIT`].
fn wait_limited(child: &mut std::process::Child, args: &[String]) -> Result<std::process::ExitStatus, SnapshotError> {
    let start = Instant::now();
    loop {
        match child.try_wait().map_err(io_err(format!("wait for {}", args.join(" "))))? {
            Some(s) => return Ok(s),
            None if start.elapsed() > COMMAND_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SnapshotError::Failed(format!(
                    "`{}` took longer than {} s: killed",
                    args.join(" "),
                    COMMAND_LIMIT.as_secs()
                )));
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn source_is(snap: &Path, dir: &Path) -> bool {
    std::fs::read(snap.join("source")).is_ok_and(|b| b == dir.as_os_str().as_encoded_bytes())
}

/// Makes `dir` hold exactly what `tree` holds, as it is in the snapshot (owners, modes,
/// times), built beside it and swapped in. The top folder keeps the snapshot's owner and
/// mode too: a database refuses a data dir that is not its own or too open.
pub fn replace_tree(tree: &Path, dir: &Path) -> Result<(), SnapshotError> {
    let with_suffix = |s: &str| {
        let mut p = dir.as_os_str().to_os_string();
        p.push(s);
        PathBuf::from(p)
    };
    let staging = with_suffix(".restoring");
    let old = with_suffix(".replaced");
    let _ = std::fs::remove_dir_all(&staging);
    copy_tree(tree, &staging)?;
    let _ = std::fs::remove_dir_all(&old);
    let had = dir.exists();
    if had {
        std::fs::rename(dir, &old).map_err(io_err(format!("rename {}", dir.display())))?;
    }
    if let Err(e) = std::fs::rename(&staging, dir) {
        // Leave the directory as it was rather than without one.
        if had {
            let _ = std::fs::rename(&old, dir);
        }
        return Err(io_err(format!("rename {}", staging.display()))(e));
    }
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(keep: usize, max_bytes: u64) -> SnapshotPolicy {
        SnapshotPolicy { method: SnapshotMethod::Live, keep, max_bytes }
    }

    #[test]
    fn test_a_copy_keeps_modes_times_and_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("data");
        std::fs::create_dir(&src).expect("mkdir");
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::fs::write(src.join("conf"), "x").expect("write");
        std::fs::set_permissions(src.join("conf"), std::fs::Permissions::from_mode(0o640)).expect("chmod");
        std::os::unix::fs::symlink("conf", src.join("link")).expect("symlink");
        std::os::unix::fs::symlink("/nowhere/at/all", src.join("dangling")).expect("symlink");
        let old = TimeSpec::new(1_000_000_000, 0);
        utimensat(nix::fcntl::AT_FDCWD, &src.join("conf"), &old, &old, UtimensatFlags::NoFollowSymlink).expect("times");
        let dst = dir.path().join("copy");
        copy_tree(&src, &dst).expect("copy");
        let m = |p: &Path| std::fs::symlink_metadata(p).expect("meta");
        assert_eq!(m(&dst).mode() & 0o777, 0o700);
        assert_eq!(m(&dst.join("conf")).mode() & 0o777, 0o640);
        assert_eq!(m(&dst.join("conf")).mtime(), 1_000_000_000);
        assert_eq!(std::fs::read_link(dst.join("link")).expect("link"), Path::new("conf"));
        assert_eq!(std::fs::read_link(dst.join("dangling")).expect("link"), Path::new("/nowhere/at/all"));
        assert_eq!(m(&dst).uid(), m(&src).uid());
    }

    #[test]
    fn test_a_stopped_only_service_is_not_copied_while_it_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        let p = SnapshotPolicy { method: SnapshotMethod::Stop, ..policy(3, 1 << 30) };
        let s = Snapshots { root: dir.path().join("snaps"), policy: &p, identity: None };
        assert!(matches!(s.take(&data, true, false), Err(SnapshotError::Refused(_))));
        assert!(s.newest(&data).expect("list").is_none(), "nothing was made");
        let made = s.take(&data, false, false).expect("stopped: copied");
        assert_eq!(s.newest(&data).expect("list"), Some(made));
    }

    #[test]
    fn test_a_command_fills_the_snapshot_and_a_failing_one_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        let ok = SnapshotPolicy {
            method: SnapshotMethod::Command(vec!["sh".into(), "-c".into(), "echo dump > ${snapshot}/dump".into()]),
            ..policy(3, 1 << 30)
        };
        let s = Snapshots { root: dir.path().join("snaps"), policy: &ok, identity: None };
        let made = s.take(&data, true, false).expect("the command made it");
        assert_eq!(std::fs::read_to_string(made.join("tree/dump")).expect("dump"), "dump\n");
        let bad = SnapshotPolicy {
            method: SnapshotMethod::Command(vec!["sh".into(), "-c".into(), "echo no >&2; exit 3".into()]),
            ..policy(3, 1 << 30)
        };
        let s = Snapshots { root: dir.path().join("snaps"), policy: &bad, identity: None };
        let err = s.take(&data, true, false).expect_err("it failed");
        assert!(err.to_string().contains("no"), "{err}");
        assert_eq!(s.all().expect("list").len(), 1, "the failed one is gone");
    }

    #[test]
    fn test_pruning_keeps_the_count_the_bytes_and_the_newest_restore_point() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        std::fs::write(data.join("f"), vec![0u8; 1000]).expect("write");
        let p = policy(2, 1 << 30);
        let s = Snapshots { root: dir.path().join("snaps"), policy: &p, identity: None };
        let mut made = Vec::new();
        for _ in 0..4 {
            made.push(s.take(&data, true, false).expect("take"));
        }
        let (gone, freed) = s.prune(&[]).expect("prune");
        assert_eq!(gone, made[..2].to_vec());
        assert!(freed >= 2000, "{freed}");
        // By bytes: room for one copy only; the newest restore point stays whatever the size.
        let p = policy(10, 1500);
        let s = Snapshots { root: dir.path().join("snaps"), policy: &p, identity: None };
        let replaced = s.take(&data, true, true).expect("a restore's before");
        let (gone, _) = s.prune(&[&replaced]).expect("prune");
        assert_eq!(gone, vec![made[2].clone()]);
        let left = s.all().expect("list");
        assert_eq!(left, vec![made[3].clone(), replaced]);
    }
}
