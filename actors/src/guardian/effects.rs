//! What playbook steps do beyond the service's own process: processes chosen by a
//! selector, files and directories, the config vault, HTTP calls, whitelisted commands.
//!
//! Each primitive has three faces here: [`preview`] resolves what it would touch (which
//! pids, files and bytes) and changes nothing, for dry runs; [`apply`] does it and returns
//! the undo data a rollback needs; [`undo`] puts back what an [`Undo`] names. Paths are
//! expanded for the target and must stay inside the data dir: the catalog checks how
//! they start, this checks where they end (after symlinks).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use warden_core::config::{ServiceName, ServiceSpec, SnapshotMethod};
use warden_core::playbook::{Primitive, Selector, Vars};
use warden_core::run::Undo;

use super::snapshots::{SnapshotError, Snapshots, replace_tree, tree_size};
use super::vault::Vault;

/// How long a signalled process gets to be gone before the step says it is not.
const GONE_WITHIN: Duration = Duration::from_secs(5);
/// Output of a whitelisted command quoted in the step's detail.
const OUTPUT_TAIL: usize = 400;

impl From<SnapshotError> for EffectError {
    fn from(e: SnapshotError) -> Self {
        match e {
            SnapshotError::Refused(why) => EffectError::Refused(why),
            SnapshotError::Failed(why) => EffectError::Failed(why),
            SnapshotError::Io { what, source } => EffectError::Io { what, source },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EffectError {
    #[error("{0}")]
    Refused(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Failed(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EffectError {
    let what = what.into();
    move |source| EffectError::Io { what, source }
}

/// What a step acts on: its target service, as it is now.
#[derive(Debug, Clone)]
pub struct Env {
    pub data_dir: PathBuf,
    pub target: ServiceName,
    pub spec: ServiceSpec,
    /// The service's current process (its group leader).
    pub pid: Option<u32>,
    /// The current process of every supervised service: no selector ever picks one of
    /// them or their groups (a service is stopped by its own steps, not killed by a scan).
    pub supervised: Vec<u32>,
    /// The target's processes now (its cgroup, or its process group): a selector by name
    /// picks only among them.
    pub own: Vec<u32>,
    /// This binary, for services run as `@warden`.
    pub self_exe: PathBuf,
    pub vault: Vault,
    pub commands: BTreeMap<String, Vec<String>>,
}

impl Env {
    /// The playbook variables of the target as it is now.
    pub fn vars(&self) -> Vars {
        Vars::of(&self.data_dir, &self.spec)
    }

    /// `text` expanded for the target; a variable the service does not declare is refused.
    fn expand(&self, text: &str) -> Result<String, EffectError> {
        let out = self.vars().expand(text);
        match out.find("${") {
            Some(at) => Err(EffectError::Refused(format!(
                "`{}` declares nothing for {}",
                self.target,
                out[at..].split('}').next().map_or(String::new(), |v| format!("{v}}}"))
            ))),
            None => Ok(out),
        }
    }

    fn path(&self, raw: &str) -> Result<PathBuf, EffectError> {
        let p = PathBuf::from(self.expand(raw)?);
        self.inside(&p)?;
        self.below_service_areas(&p)?;
        Ok(p)
    }

    /// Playbooks act on the services' folders, their logs and snapshots, never on the
    /// store, the vault, the process records or a whole area at once.
    fn below_service_areas(&self, p: &Path) -> Result<(), EffectError> {
        let Ok(rel) = p.strip_prefix(&self.data_dir) else {
            return Err(EffectError::Refused(format!("{} is outside the data dir", p.display())));
        };
        let mut parts = rel.components();
        let area = parts.next().map(|c| c.as_os_str().to_string_lossy().into_owned());
        let deep_enough = match area.as_deref() {
            Some("services" | "snapshots") => parts.next().is_some() && parts.next().is_some(),
            Some("logs") => parts.next().is_some(),
            _ => false,
        };
        if deep_enough {
            Ok(())
        } else {
            Err(EffectError::Refused(format!(
                "{} is not inside a service's folder, its snapshots or the logs",
                p.display()
            )))
        }
    }

    /// Refuses a path that leaves the data dir, also through a symlink on the way.
    fn inside(&self, p: &Path) -> Result<(), EffectError> {
        let root = std::fs::canonicalize(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone());
        // The deepest part of the path that exists decides where it really is.
        let mut probe = p.to_path_buf();
        while !probe.exists() {
            if !probe.pop() {
                break;
            }
        }
        let real = std::fs::canonicalize(&probe).unwrap_or(probe);
        if real.starts_with(&root) {
            Ok(())
        } else {
            Err(EffectError::Refused(format!("{} is outside the data dir", p.display())))
        }
    }

    fn snapshots(&self) -> PathBuf {
        self.data_dir.join("snapshots").join(self.target.as_str())
    }

    /// The target's snapshots, made and kept as its config says.
    fn snapshot_store(&self) -> Snapshots<'_> {
        Snapshots { root: self.snapshots(), policy: &self.spec.hooks.snapshot, identity: self.spec.identity.as_ref() }
    }

    /// The files the service's config manages.
    fn managed(&self) -> Vec<PathBuf> {
        self.spec.files.iter().map(|f| f.path.clone()).collect()
    }
}

/// What the step would do, resolved now; nothing changes.
pub fn preview(env: &Env, p: &Primitive) -> Result<String, EffectError> {
    match p {
        Primitive::KillProcess { select, signal } => {
            let found = select_processes(env, select)?;
            if found.is_empty() {
                return Ok(format!("would send {} to nobody: no {} now", signal.as_str(), select.describe()));
            }
            if let Err(EffectError::Refused(why)) = may_kill(env, select, &found) {
                return Ok(format!("would refuse: {why}"));
            }
            Ok(format!("would send {} to {}", signal.as_str(), describe_pids(&found)))
        }
        Primitive::SnapshotDir { path } => {
            let dir = env.path(path)?;
            let (files, bytes) = tree_size(&dir);
            let how = match &env.spec.hooks.snapshot.method {
                SnapshotMethod::Stop if env.pid.is_some() => {
                    return Ok(format!(
                        "would refuse: {} runs and its data is copied only while it is stopped",
                        env.target
                    ));
                }
                SnapshotMethod::Command(argv) if env.pid.is_some() => format!("would run `{}`", argv.join(" ")),
                _ => "would copy".to_string(),
            };
            Ok(format!("{how} {} ({files} files, {bytes} bytes) to {}", dir.display(), env.snapshots().display()))
        }
        Primitive::RestoreDir { path } => {
            let dir = env.path(path)?;
            match env.snapshot_store().newest(&dir)? {
                Some(s) => Ok(format!(
                    "would snapshot {} as it is, then replace it with {} ({} bytes)",
                    dir.display(),
                    s.display(),
                    tree_size(&s.join("tree")).1
                )),
                None => Err(EffectError::Failed(format!("no snapshot of {} to restore", dir.display()))),
            }
        }
        Primitive::MoveAside { path } => {
            let p = env.path(path)?;
            let meta = std::fs::symlink_metadata(&p).map_err(io(p.display().to_string()))?;
            Ok(format!("would rename {} ({} bytes) to {}", p.display(), meta.len(), aside_name(&p).display()))
        }
        Primitive::CompressFiles { glob, older_than_ms } => {
            let files = matching(env, glob, *older_than_ms, 0)?;
            let files: Vec<_> = files.into_iter().filter(|(f, _)| !is_gz(f)).collect();
            Ok(format!("would gzip {}", describe_files(&files)))
        }
        Primitive::DeleteFiles { glob, older_than_ms, keep } => {
            let files = matching(env, glob, *older_than_ms, *keep)?;
            Ok(format!("would delete {}", describe_files(&files)))
        }
        Primitive::RestoreFile { path, previous } => {
            let mut lines = Vec::new();
            for file in restore_targets(env, path.as_deref())? {
                if !*previous && std::fs::metadata(&file).is_ok_and(|m| m.len() > 0) {
                    lines.push(format!("{}: present, left as it is", file.display()));
                    continue;
                }
                if *previous && path.is_none() && env.vault.written_by_warden(&file).map_err(io("the vault"))? {
                    lines.push(format!("{}: written by warden itself, left as it is", file.display()));
                    continue;
                }
                if !*previous && env.spec.files.iter().any(|m| m.path == file) {
                    lines.push(format!("{} as the config declares it", file.display()));
                    continue;
                }
                lines.push(match env.vault.pick(&file, *previous).map_err(io("the vault"))? {
                    Some(v) => format!("{} from vault version {v}", file.display()),
                    None => format!("{}: no vaulted version", file.display()),
                });
            }
            Ok(format!("would write back {}", lines.join("; ")))
        }
        Primitive::RotateSecret { files } => {
            let files: Vec<String> = env
                .vars()
                .expand_files(files)
                .iter()
                .map(|f| env.path(f).map(|p| p.display().to_string()))
                .collect::<Result<_, _>>()?;
            Ok(format!("would write one new random token into {} (each vaulted first)", files.join(", ")))
        }
        Primitive::HttpCall { method, url, expect_status, .. } => {
            let url = env.expand(url)?;
            Ok(format!("would send {method} {url}, expecting {expect_status}"))
        }
        Primitive::RunCommand { command } => match env.commands.get(command) {
            Some(argv) => Ok(format!("would run `{}`", argv.join(" "))),
            None => Err(EffectError::Refused(format!("no command `{command}` in the node config's commands"))),
        },
        other => Ok(format!("would {}", other.changes())),
    }
}

/// What a step did before it failed part way: the error and the undo of what it changed
/// (a second file not written after the first was, files compressed before one would not).
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Partial {
    pub error: EffectError,
    pub undo: Vec<Undo>,
}

impl From<EffectError> for Partial {
    fn from(error: EffectError) -> Self {
        Self { error, undo: Vec::new() }
    }
}

/// Carries out a step; what it did and how to undo it. A step that fails part way still
/// says how to undo what it did change.
pub async fn apply(env: &Env, p: &Primitive) -> Result<(String, Vec<Undo>), Partial> {
    match p {
        Primitive::HttpCall { method, url, body, expect_status, .. } => {
            let url = env.expand(url)?;
            let body = body.as_deref().map(|b| env.expand(b)).transpose()?;
            Ok(http_call(method, &url, body.as_deref(), *expect_status).await.map(|d| (d, Vec::new()))?)
        }
        Primitive::RunCommand { command } => Ok(run_command(env, command).await.map(|d| (d, Vec::new()))?),
        Primitive::KillProcess { select, signal } => {
            let (env, select, signal) = (env.clone(), select.clone(), *signal);
            Ok(blocking(move || kill(&env, &select, signal)).await.map(|d| (d, Vec::new()))?)
        }
        other => {
            let (env, p) = (env.clone(), other.clone());
            let done = tokio::task::spawn_blocking(move || {
                let mut undo = Vec::new();
                let r = apply_files(&env, &p, &mut undo);
                (r, undo)
            })
            .await;
            match done {
                Ok((Ok(detail), undo)) => Ok((detail, undo)),
                Ok((Err(error), undo)) => Err(Partial { error, undo }),
                Err(e) => Err(EffectError::Failed(format!("the step's task failed: {e}")).into()),
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EffectError> + Send + 'static,
) -> Result<T, EffectError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| EffectError::Failed(format!("the step's task failed: {e}")))?
}

/// A file step; each change's undo goes into `undo` as soon as the change is made.
fn apply_files(env: &Env, p: &Primitive, undo: &mut Vec<Undo>) -> Result<String, EffectError> {
    match p {
        Primitive::SnapshotDir { path } => {
            let dir = env.path(path)?;
            let store = env.snapshot_store();
            let snap = store.take(&dir, env.pid.is_some(), false)?;
            let (gone, freed) = store.prune(&[&snap])?;
            let pruned = if gone.is_empty() {
                String::new()
            } else {
                format!("; pruned {} older snapshots ({freed} bytes)", gone.len())
            };
            Ok(format!("copied {} to {}{pruned}", dir.display(), snap.display()))
        }
        Primitive::RestoreDir { path } => {
            let dir = env.path(path)?;
            let store = env.snapshot_store();
            let Some(from) = store.newest(&dir)? else {
                return Err(EffectError::Failed(format!("no snapshot of {} to restore", dir.display())));
            };
            // What is there now becomes a snapshot too: the undo puts it back. It is marked
            // as replaced, never a restore point: the data a restore replaced is often the
            // broken data, and the next restore must not bring it back.
            let before = store.take(&dir, env.pid.is_some(), true)?;
            replace_tree(&from.join("tree"), &dir)?;
            let detail =
                format!("restored {} from {} (it was kept as {})", dir.display(), from.display(), before.display());
            undo.push(Undo::RestoreSnapshot { path: dir, snapshot: before.clone() });
            let _ = store.prune(&[&before, &from]);
            Ok(detail)
        }
        Primitive::MoveAside { path } => {
            let p = env.path(path)?;
            let aside = aside_name(&p);
            std::fs::rename(&p, &aside).map_err(io(format!("rename {}", p.display())))?;
            let detail = format!("renamed {} to {}", p.display(), aside.display());
            undo.push(Undo::Rename { from: p, to: aside });
            Ok(detail)
        }
        Primitive::CompressFiles { glob, older_than_ms } => {
            let files = matching(env, glob, *older_than_ms, 0)?;
            let (mut count, mut before, mut after) = (0usize, 0u64, 0u64);
            for (f, size) in files.into_iter().filter(|(f, _)| !is_gz(f)) {
                let gz = gzip(&f)?;
                before += size;
                after += std::fs::metadata(&gz).map(|m| m.len()).unwrap_or(0);
                count += 1;
                match undo.last_mut() {
                    Some(Undo::Decompress { files }) => files.push(gz),
                    _ => undo.push(Undo::Decompress { files: vec![gz] }),
                }
            }
            Ok(format!("gzipped {count} files: {before} bytes to {after}"))
        }
        Primitive::DeleteFiles { glob, older_than_ms, keep } => {
            let files = matching(env, glob, *older_than_ms, *keep)?;
            let mut bytes = 0;
            for (f, size) in &files {
                let meta = std::fs::symlink_metadata(f).map_err(io(f.display().to_string()))?;
                if meta.is_dir() {
                    std::fs::remove_dir_all(f).map_err(io(format!("delete {}", f.display())))?;
                } else {
                    std::fs::remove_file(f).map_err(io(format!("delete {}", f.display())))?;
                }
                bytes += size;
            }
            Ok(format!("deleted {} entries, {bytes} bytes", files.len()))
        }
        Primitive::RestoreFile { path, previous } => {
            let mut done = Vec::new();
            for file in restore_targets(env, path.as_deref())? {
                // Without `previous` a restore replaces what is gone (missing or emptied),
                // never a file that has content: that may be a deliberate change.
                if !*previous && std::fs::metadata(&file).is_ok_and(|m| m.len() > 0) {
                    continue;
                }
                // A managed file that is gone comes back as the config declares it (its
                // content, owner and mode), not as some older vaulted version.
                if !*previous && let Some(m) = env.spec.files.iter().find(|m| m.path == file) {
                    let before = env.vault.keep(&file).map_err(io(format!("vault {}", file.display())))?;
                    super::managed_files::write(m, super::managed_files::owner(m))
                        .map_err(io(format!("write {}", file.display())))?;
                    env.vault.mark_declared(&file, m.content.as_bytes()).map_err(io("the vault"))?;
                    env.vault.keep(&file).map_err(io(format!("vault {}", file.display())))?;
                    done.push(format!("{} ({} bytes, as the config declares it)", file.display(), m.content.len()));
                    undo.push(Undo::RestoreVaulted { path: file, version: before });
                    continue;
                }
                // Taking back changes to every managed file: what warden wrote itself (a
                // rotated secret) is no change to take back.
                if *previous && path.is_none() && env.vault.written_by_warden(&file).map_err(io("the vault"))? {
                    continue;
                }
                let Some(version) = env.vault.pick(&file, *previous).map_err(io("the vault"))? else {
                    continue;
                };
                if std::fs::read(&file).ok() == Some(env.vault.read(&file, &version).map_err(io("the vault"))?) {
                    continue;
                }
                let before = env.vault.keep(&file).map_err(io(format!("vault {}", file.display())))?;
                let taken_back = std::fs::read(&file).ok().filter(|_| *previous);
                let bytes = env.vault.restore(&file, &version).map_err(io(format!("write {}", file.display())))?;
                if let Some(content) = taken_back {
                    env.vault.reject(&file, &content).map_err(io("the vault"))?;
                }
                done.push(format!("{} ({bytes} bytes, version {version})", file.display()));
                undo.push(Undo::RestoreVaulted { path: file, version: before });
            }
            if done.is_empty() {
                return Err(EffectError::Failed(
                    "nothing to restore: every file is present (or matches its vaulted version), or none is vaulted"
                        .into(),
                ));
            }
            Ok(format!("wrote back {}", done.join(", ")))
        }
        Primitive::RotateSecret { files } => {
            let files: Vec<PathBuf> =
                env.vars().expand_files(files).iter().map(|f| env.path(f)).collect::<Result<_, _>>()?;
            if let Some(missing) = files.iter().find(|f| !f.exists()) {
                return Err(EffectError::Failed(format!("{} does not exist: nothing rotated", missing.display())));
            }
            let token = format!("{}\n", hex::encode(rand::random::<[u8; 16]>()));
            for f in &files {
                let before = env.vault.keep(f).map_err(io(format!("vault {}", f.display())))?;
                undo.push(Undo::RestoreVaulted { path: f.clone(), version: before });
            }
            for f in &files {
                crate::private_file::write(f, token.as_bytes(), None).map_err(io(format!("write {}", f.display())))?;
                env.vault.keep(f).map_err(io(format!("vault {}", f.display())))?;
                env.vault.mark_written(f, token.as_bytes()).map_err(io(format!("vault {}", f.display())))?;
            }
            let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            Ok(format!("a new token in {}", names.join(", ")))
        }
        other => Err(EffectError::Failed(format!("`{}` is not a file step", other.action()))),
    }
}

/// Puts back what `u` names (file undos; service ones go to the service supervisor).
pub async fn undo(env: &Env, u: &Undo) -> Result<String, EffectError> {
    let (env, u) = (env.clone(), u.clone());
    blocking(move || undo_files(&env, &u)).await
}

fn undo_files(env: &Env, u: &Undo) -> Result<String, EffectError> {
    match u {
        Undo::Rename { from, to } => {
            env.inside(from)?;
            if from.exists() {
                return Err(EffectError::Failed(format!("{} exists again: not renaming over it", from.display())));
            }
            std::fs::rename(to, from).map_err(io(format!("rename {}", to.display())))?;
            Ok(format!("renamed {} back to {}", to.display(), from.display()))
        }
        Undo::Decompress { files } => {
            for gz in files {
                env.inside(gz)?;
                gunzip(gz)?;
            }
            Ok(format!("decompressed {} files", files.len()))
        }
        Undo::RestoreVaulted { path, version } => {
            // A managed file may live anywhere its config says; anything else must be ours.
            if !env.managed().contains(path) {
                env.inside(path)?;
            }
            env.vault.keep(path).map_err(io(format!("vault {}", path.display())))?;
            match version {
                Some(v) => {
                    let bytes = env.vault.restore(path, v).map_err(io(format!("write {}", path.display())))?;
                    Ok(format!("wrote back {} ({bytes} bytes, version {v})", path.display()))
                }
                None => {
                    std::fs::remove_file(path).map_err(io(format!("remove {}", path.display())))?;
                    Ok(format!("removed {} (it did not exist before)", path.display()))
                }
            }
        }
        Undo::RestoreSnapshot { path, snapshot } => {
            env.inside(path)?;
            replace_tree(&snapshot.join("tree"), path)?;
            Ok(format!("put back {} from {}", path.display(), snapshot.display()))
        }
        other => Err(EffectError::Failed(format!("`{}` is not a file undo", other.action()))),
    }
}

// --- processes ---------------------------------------------------------------------------

/// A process a selector chose: pid, name, command line.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub pid: u32,
    pub name: String,
    pub cmdline: String,
    pub rss_bytes: u64,
    /// Its start time (clock ticks since boot): with the pid, who it is.
    pub start_ticks: u64,
}

/// Exactly what a step would act on now, as identities an approval binds: each process a
/// kill would signal (pid, start time, command line), each file or directory a file step
/// would change (its path). A reused pid or a different file set is a different answer.
pub fn touches(env: &Env, p: &Primitive) -> Vec<String> {
    let files = |found: Result<Vec<(PathBuf, u64)>, EffectError>| -> Vec<String> {
        found.map(|f| f.into_iter().map(|(p, _)| format!("file {}", p.display())).collect()).unwrap_or_default()
    };
    match p {
        Primitive::KillProcess { select, .. } => select_processes(env, select)
            .map(|found| {
                found
                    .iter()
                    .map(|c| format!("pid {} started at tick {} `{}`", c.pid, c.start_ticks, c.cmdline))
                    .collect()
            })
            .unwrap_or_default(),
        Primitive::DeleteFiles { glob, older_than_ms, keep } => files(matching(env, glob, *older_than_ms, *keep)),
        Primitive::CompressFiles { glob, older_than_ms } => files(matching(env, glob, *older_than_ms, 0)),
        Primitive::RestoreDir { path } | Primitive::SnapshotDir { path } | Primitive::MoveAside { path } => {
            let Ok(dir) = env.path(path) else { return Vec::new() };
            let snapshot = match p {
                Primitive::RestoreDir { .. } => env.snapshot_store().newest(&dir).ok().flatten(),
                _ => None,
            };
            std::iter::once(format!("dir {}", dir.display()))
                .chain(snapshot.map(|s| format!("snapshot {}", s.display())))
                .collect()
        }
        _ => Vec::new(),
    }
}

fn describe_pids(found: &[Chosen]) -> String {
    let each: Vec<String> =
        found.iter().map(|c| format!("pid {} `{}` ({} MiB resident)", c.pid, c.cmdline, c.rss_bytes >> 20)).collect();
    each.join(", ")
}

fn chosen(p: &procfs::process::Process) -> Option<Chosen> {
    let pid = u32::try_from(p.pid()).ok()?;
    let stat = p.stat().ok()?;
    let cmdline = p.cmdline().ok().map(|c| c.join(" ")).filter(|c| !c.is_empty()).unwrap_or(stat.comm.clone());
    Some(Chosen {
        pid,
        name: stat.comm.clone(),
        cmdline,
        rss_bytes: stat.rss * procfs::page_size(),
        start_ticks: stat.starttime,
    })
}

/// Never warden, never init, never the service's current process group (it is handled
/// by the service steps, not by a kill).
fn protected(env: &Env, pid: u32) -> bool {
    let me = std::process::id();
    if pid <= 1 || pid == me {
        return true;
    }
    // Each service leads a process group of its own: its group is it.
    let group = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid as i32))).ok().map(|g| g.as_raw() as u32);
    env.pid.iter().chain(env.supervised.iter()).any(|&leader| pid == leader || group == Some(leader))
}

/// Whether `pid` runs the service's own command line (a leftover of an earlier life).
fn is_own_program(env: &Env, pid: u32) -> bool {
    let (program, args) = crate::process::command_line(&env.spec, &env.self_exe);
    let Ok(p) = procfs::process::Process::new(pid as i32) else { return false };
    let Ok(cmd) = p.cmdline() else { return false };
    let same_exe = p.exe().ok().is_some_and(|e| e == program) || cmd.first().is_some_and(|c| Path::new(c) == program);
    same_exe && cmd.get(1..).is_some_and(|rest| rest == args.as_slice())
}

pub fn select_processes(env: &Env, select: &Selector) -> Result<Vec<Chosen>, EffectError> {
    let mut out = Vec::new();
    match select {
        Selector::PortOwner { port, stranger } => {
            let ports: Vec<u16> = port.map_or_else(|| env.spec.ports.clone(), |p| vec![p]);
            if ports.is_empty() {
                return Err(EffectError::Refused(format!("`{}` declares no ports", env.target)));
            }
            let mut pids = std::collections::BTreeSet::new();
            for p in ports {
                for (pid, _) in warden_core::procnet::listeners_of_port(p).map_err(io("/proc/net"))? {
                    pids.insert(pid);
                }
            }
            for pid in pids {
                if protected(env, pid) || is_own_program(env, pid) == *stranger {
                    continue;
                }
                if let Some(c) = procfs::process::Process::new(pid as i32).ok().as_ref().and_then(chosen) {
                    out.push(c);
                }
            }
        }
        Selector::MemoryHog { min_rss_mb } => {
            let Some(leader) = env.pid else {
                return Err(EffectError::Failed(format!("`{}` has no process now", env.target)));
            };
            let all = procfs::process::all_processes().map_err(|e| EffectError::Failed(e.to_string()))?;
            let hog = all
                .filter_map(Result::ok)
                .filter(|p| p.stat().is_ok_and(|s| s.pgrp == leader as i32 && s.pid != leader as i32))
                .filter_map(|p| chosen(&p))
                .filter(|c| c.pid != std::process::id())
                .max_by_key(|c| c.rss_bytes);
            out.extend(hog.filter(|c| c.rss_bytes >= min_rss_mb.saturating_mul(1 << 20)));
        }
        // Only the service's own processes: a name alone would match any process of the
        // machine that happens to share it.
        Selector::Name { name } => {
            out.extend(
                env.own
                    .iter()
                    .filter(|p| !protected(env, **p))
                    .filter_map(|p| procfs::process::Process::new(*p as i32).ok())
                    .filter_map(|p| chosen(&p))
                    .filter(|c| c.name == *name),
            );
        }
        Selector::LockHolder { path } => {
            let file = env.path(path)?;
            let meta = match std::fs::metadata(&file) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(e) => return Err(io(file.display().to_string())(e)),
            };
            let ino = std::os::unix::fs::MetadataExt::ino(&meta);
            let dev = std::os::unix::fs::MetadataExt::dev(&meta);
            let (major, minor) = (nix::sys::stat::major(dev) as u32, nix::sys::stat::minor(dev) as u32);
            let locks = procfs::locks().map_err(|e| EffectError::Failed(format!("/proc/locks: {e}")))?;
            let mut pids: Vec<u32> = locks
                .iter()
                .filter(|l| l.inode == ino && l.devmaj == major && l.devmin == minor)
                .filter_map(|l| l.pid.and_then(|p| u32::try_from(p).ok()))
                .collect();
            // A flock belongs to an open file description: children that inherited the
            // descriptor (`flock FILE cmd` runs cmd with it) hold the lock as much as the
            // pid /proc/locks names, which may even be gone. Their fdinfo says so.
            if !pids.is_empty() {
                pids.extend(holders_of_lock_on(ino, dev));
            }
            pids.sort_unstable();
            pids.dedup();
            for pid in pids.into_iter().filter(|p| !protected(env, *p)) {
                if let Some(c) = procfs::process::Process::new(pid as i32).ok().as_ref().and_then(chosen) {
                    out.push(c);
                }
            }
        }
    }
    Ok(out)
}

/// Processes with a descriptor on file (`dev`, `ino`) that carries a lock (a `lock:` line
/// in its fdinfo).
fn holders_of_lock_on(ino: u64, dev: u64) -> Vec<u32> {
    let Ok(all) = procfs::process::all_processes() else { return Vec::new() };
    let mut out = Vec::new();
    for p in all.flatten() {
        let Ok(fds) = p.fd() else { continue };
        for fd in fds.flatten() {
            let link = format!("/proc/{}/fd/{}", p.pid, fd.fd);
            let same = std::fs::metadata(&link).is_ok_and(|m| {
                std::os::unix::fs::MetadataExt::ino(&m) == ino && std::os::unix::fs::MetadataExt::dev(&m) == dev
            });
            let locked = same
                && std::fs::read_to_string(format!("/proc/{}/fdinfo/{}", p.pid, fd.fd))
                    .is_ok_and(|info| info.lines().any(|l| l.starts_with("lock:")));
            if locked && let Ok(pid) = u32::try_from(p.pid) {
                out.push(pid);
                break;
            }
        }
    }
    out
}

/// The most processes a selector may pick: one that finds more has found something else
/// than it was written for, and an empty set never means "all".
fn most_picked(select: &Selector) -> usize {
    match select {
        // A server's master and its workers all listen on the port.
        Selector::PortOwner { .. } => 8,
        Selector::MemoryHog { .. } => 1,
        Selector::Name { .. } | Selector::LockHolder { .. } => 4,
    }
}

/// Whether a kill may go to these processes: some, and not more than its selector may pick.
/// (Whether the healer may kill processes that are not the service's own is the harm
/// guard's to say: `warden_core::harm::kill_allowed`.)
fn may_kill(_env: &Env, select: &Selector, found: &[Chosen]) -> Result<(), EffectError> {
    if found.is_empty() {
        return Err(EffectError::Failed(format!("no {} now: nothing is killed", select.describe())));
    }
    let most = most_picked(select);
    if found.len() > most {
        return Err(EffectError::Refused(format!(
            "{} finds {} processes, more than the {most} it may: {}; refused (a person must look)",
            select.describe(),
            found.len(),
            describe_pids(found)
        )));
    }
    Ok(())
}

/// Whether `pid` is the service's: one of its processes now, or a leftover of its program.
pub fn owned(env: &Env, pid: u32) -> bool {
    env.own.contains(&pid) || is_own_program(env, pid)
}

fn kill(env: &Env, select: &Selector, signal: warden_core::signal::SignalName) -> Result<String, EffectError> {
    let found = select_processes(env, select)?;
    may_kill(env, select, &found)?;
    let sig = crate::process::signal_of(signal);
    for c in &found {
        if let Err(errno) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.pid as i32), sig)
            && errno != nix::errno::Errno::ESRCH
        {
            return Err(EffectError::Failed(format!("cannot send {} to pid {}: {errno}", signal.as_str(), c.pid)));
        }
    }
    let deadline = std::time::Instant::now() + GONE_WITHIN;
    let alive =
        |c: &Chosen| procfs::process::Process::new(c.pid as i32).is_ok_and(|p| p.stat().is_ok_and(|s| s.state != 'Z'));
    while found.iter().any(alive) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<&Chosen> = found.iter().filter(|c| alive(c)).collect();
    if !left.is_empty() {
        let pids: Vec<String> = left.iter().map(|c| c.pid.to_string()).collect();
        return Err(EffectError::Failed(format!(
            "sent {} but pid {} still runs after {} s",
            signal.as_str(),
            pids.join(", "),
            GONE_WITHIN.as_secs()
        )));
    }
    Ok(format!("sent {} to {}; gone", signal.as_str(), describe_pids(&found)))
}

// --- files -------------------------------------------------------------------------------

fn is_gz(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "gz")
}

fn aside_name(p: &Path) -> PathBuf {
    let mut name = p.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".aside-{}", warden_core::time::now_unix_ms()));
    p.with_file_name(name)
}

/// Entries matching `glob`, older than `older_than_ms`, but the newest `keep`; with sizes.
fn matching(env: &Env, glob: &str, older_than_ms: u64, keep: usize) -> Result<Vec<(PathBuf, u64)>, EffectError> {
    let pattern = env.expand(glob)?;
    let paths = glob::glob(&pattern).map_err(|e| EffectError::Refused(format!("glob `{pattern}`: {e}")))?;
    let mut found: Vec<(PathBuf, SystemTime, u64)> = Vec::new();
    for p in paths.filter_map(Result::ok) {
        env.inside(&p)?;
        env.below_service_areas(&p)?;
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        let size = if meta.is_dir() { tree_size(&p).1 } else { meta.len() };
        found.push((p, meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), size));
    }
    // Newest first: the ones kept are the newest.
    found.sort_by_key(|f| std::cmp::Reverse(f.1));
    let cutoff = SystemTime::now().checked_sub(Duration::from_millis(older_than_ms)).unwrap_or(SystemTime::UNIX_EPOCH);
    Ok(found.into_iter().skip(keep).filter(|(_, t, _)| *t <= cutoff).map(|(p, _, s)| (p, s)).collect())
}

fn describe_files(files: &[(PathBuf, u64)]) -> String {
    if files.is_empty() {
        return "nothing (no entry matches)".into();
    }
    let total: u64 = files.iter().map(|(_, s)| s).sum();
    let names: Vec<String> = files.iter().take(10).map(|(p, s)| format!("{} ({s} bytes)", p.display())).collect();
    let more = if files.len() > 10 { format!(" and {} more", files.len() - 10) } else { String::new() };
    format!("{} entries, {total} bytes: {}{more}", files.len(), names.join(", "))
}

fn gzip(f: &Path) -> Result<PathBuf, EffectError> {
    let mut gz_name = f.as_os_str().to_os_string();
    gz_name.push(".gz");
    let gz = PathBuf::from(gz_name);
    let mut input = std::fs::File::open(f).map_err(io(f.display().to_string()))?;
    let out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&gz)
        .map_err(io(format!("{} (an older archive is never overwritten)", gz.display())))?;
    let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    std::io::copy(&mut input, &mut enc).map_err(io(format!("gzip {}", f.display())))?;
    let out = enc.finish().map_err(io(format!("gzip {}", f.display())))?;
    out.sync_all().map_err(io(gz.display().to_string()))?;
    std::fs::remove_file(f).map_err(io(format!("remove {}", f.display())))?;
    Ok(gz)
}

fn gunzip(gz: &Path) -> Result<PathBuf, EffectError> {
    let plain = gz.with_extension("");
    let mut dec = flate2::read::GzDecoder::new(std::fs::File::open(gz).map_err(io(gz.display().to_string()))?);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&plain)
        .map_err(io(format!("{} (a newer file is never overwritten)", plain.display())))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = dec.read(&mut buf).map_err(io(format!("gunzip {}", gz.display())))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(io(plain.display().to_string()))?;
    }
    out.sync_all().map_err(io(plain.display().to_string()))?;
    std::fs::remove_file(gz).map_err(io(format!("remove {}", gz.display())))?;
    Ok(plain)
}

/// The files a `restore_file` step means: `path`, or every file the service manages.
fn restore_targets(env: &Env, path: Option<&str>) -> Result<Vec<PathBuf>, EffectError> {
    match path {
        Some(p) => Ok(vec![env.path(p)?]),
        None if env.spec.files.is_empty() => {
            Err(EffectError::Refused(format!("`{}` manages no files (`files:` in its config)", env.target)))
        }
        None => Ok(env.managed()),
    }
}

// --- the outside world ---------------------------------------------------------------------

async fn http_call(method: &str, url: &str, body: Option<&str>, expect: u16) -> Result<String, EffectError> {
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| EffectError::Refused(e.to_string()))?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| EffectError::Failed(e.to_string()))?;
    let mut req = client.request(method.clone(), url);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let resp = req.send().await.map_err(|e| EffectError::Failed(format!("{method} {url}: {e}")))?;
    let status = resp.status().as_u16();
    if status != expect {
        return Err(EffectError::Failed(format!("{method} {url} answered {status}, expected {expect}")));
    }
    Ok(format!("{method} {url} answered {status}"))
}

async fn run_command(env: &Env, name: &str) -> Result<String, EffectError> {
    let Some(argv) = env.commands.get(name) else {
        return Err(EffectError::Refused(format!("no command `{name}` in the node config's commands")));
    };
    let Some((program, args)) = argv.split_first() else {
        return Err(EffectError::Refused(format!("command `{name}` is empty")));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("WARDEN_SERVICE", env.target.as_str())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // Registered with the reaper, which would otherwise take its exit status.
    let child = crate::process::reaper::spawn_watched(|| cmd.spawn()).map_err(io(format!("run {program}")))?;
    let pid = child.id();
    let out = child.wait_with_output().await;
    if let Some(pid) = pid {
        crate::process::reaper::unwatched(pid);
    }
    let out = out.map_err(io(format!("run {program}")))?;
    let text = String::from_utf8_lossy(if out.stderr.is_empty() { &out.stdout } else { &out.stderr }).into_owned();
    let tail: String = text.chars().rev().take(OUTPUT_TAIL).collect::<Vec<_>>().into_iter().rev().collect();
    if out.status.success() {
        Ok(format!("`{}` succeeded: {}", argv.join(" "), tail.trim()))
    } else {
        Err(EffectError::Failed(format!("`{}` {}: {}", argv.join(" "), out.status, tail.trim())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(dir: &Path, pid: Option<u32>) -> Env {
        let yaml = "node: { name: t, http_listen: 127.0.0.1:1 }\nservices:\n  - name: svc\n    command: /bin/true\n    ports: [2]\n";
        let src = warden_core::source::Source { name: "t.yaml", dir, text: yaml };
        let config = warden_core::config::NodeConfig::load(&src, &Default::default()).expect("config");
        Env {
            data_dir: dir.to_path_buf(),
            target: ServiceName::parse("svc").expect("name"),
            spec: config.services[0].clone(),
            pid,
            supervised: Vec::new(),
            own: Vec::new(),
            self_exe: PathBuf::from("/proc/self/exe"),
            vault: Vault::new(dir.join("vault")),
            commands: BTreeMap::new(),
        }
    }

    #[test]
    fn test_file_steps_stay_in_the_services_areas_and_dry_runs_touch_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let e = env(&root, None);
        std::fs::create_dir_all(root.join("store")).expect("mkdir");
        std::fs::write(root.join("store/journal"), "x").expect("write");
        std::fs::create_dir_all(root.join("services/svc")).expect("mkdir");
        for glob in ["${data_dir}/*", "${data_dir}/store/*", "${data_dir}/services"] {
            let p = Primitive::DeleteFiles { glob: glob.into(), older_than_ms: 0, keep: 0 };
            assert!(matches!(preview(&e, &p), Err(EffectError::Refused(_))), "{glob} must be refused");
        }
        let tmp = root.join("services/svc/tmp");
        std::fs::create_dir_all(&tmp).expect("mkdir");
        std::fs::write(tmp.join("a"), "x").expect("write");
        let p = Primitive::DeleteFiles { glob: "${service_dir}/tmp/*".into(), older_than_ms: 0, keep: 0 };
        let said = preview(&e, &p).expect("preview");
        assert!(said.contains("1 entries, 1 bytes"), "{said}");
        assert!(tmp.join("a").exists(), "a preview deletes nothing");
        // A symlink out of the data dir is followed to where it really points: refused.
        std::os::unix::fs::symlink("/etc", root.join("services/svc/etc")).expect("symlink");
        let p = Primitive::DeleteFiles { glob: "${service_dir}/etc/*".into(), older_than_ms: 0, keep: 0 };
        assert!(matches!(preview(&e, &p), Err(EffectError::Refused(_))));
    }

    #[tokio::test]
    async fn test_a_step_that_fails_part_way_still_says_how_to_undo_what_it_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let e = env(&root, None);
        let svc = root.join("services/svc");
        std::fs::create_dir_all(&svc).expect("mkdir");
        std::fs::write(svc.join("a"), "old\n").expect("write");
        std::fs::write(svc.join("b"), "old\n").expect("write");
        // A folder where the second file's temporary file must go: its write fails.
        std::fs::create_dir_all(svc.join(format!(".b.{}.tmp", std::process::id()))).expect("mkdir");
        let p = Primitive::RotateSecret { files: vec!["${service_dir}/a".into(), "${service_dir}/b".into()] };
        let partial = apply(&e, &p).await.expect_err("the second file cannot be written");
        assert_ne!(std::fs::read_to_string(svc.join("a")).expect("read"), "old\n", "the first was rotated");
        assert_eq!(partial.undo.len(), 2, "both files' versions before: {partial}");
        std::fs::remove_dir(svc.join(format!(".b.{}.tmp", std::process::id()))).expect("the obstacle gone");
        for u in partial.undo.iter().rev() {
            undo(&e, u).await.expect("undo");
        }
        assert_eq!(std::fs::read_to_string(svc.join("a")).expect("read"), "old\n");
        assert_eq!(std::fs::read_to_string(svc.join("b")).expect("read"), "old\n");
    }

    #[test]
    fn test_selectors_never_pick_warden_or_a_supervised_service() {
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mut e = env(dir.path(), None);
        // This test process listens, and it is warden here: never a stranger to kill.
        let found = select_processes(&e, &Selector::PortOwner { port: Some(port), stranger: true }).expect("scan");
        assert!(found.is_empty(), "{found:?}");
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        let name = Selector::Name { name: "sleep".into() };
        assert!(select_processes(&e, &name).expect("scan").is_empty(), "not the service's: never picked by name");
        e.own = vec![child.id()];
        assert!(select_processes(&e, &name).expect("scan").iter().any(|c| c.pid == child.id()));
        e.supervised = vec![child.id()];
        assert!(!select_processes(&e, &name).expect("scan").iter().any(|c| c.pid == child.id()), "supervised");
        let _ = child.kill();
        let _ = child.wait();
    }

    #[tokio::test]
    async fn test_taking_back_every_managed_file_leaves_what_warden_wrote_itself() {
        // A rotation wrote a fresh secret; a roll-back of config changes must not put the
        // old one back (it would break the credentials again).
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let secret = root.join("services/svc/secret");
        let yaml = format!(
            "node: {{ name: t, http_listen: 127.0.0.1:1 }}\nservices:\n  - name: svc\n    command: /bin/true\n    files:\n      - path: {}\n        content: old\n",
            secret.display()
        );
        let src = warden_core::source::Source { name: "t.yaml", dir: &root, text: &yaml };
        let config = warden_core::config::NodeConfig::load(&src, &Default::default()).expect("config");
        let e = Env { spec: config.services[0].clone(), ..env(&root, None) };
        std::fs::create_dir_all(secret.parent().expect("dir")).expect("mkdir");
        std::fs::write(&secret, "old").expect("write");
        e.vault.keep(&secret).expect("vaulted at start");
        apply(&e, &Primitive::RotateSecret { files: vec!["${service_dir}/secret".into()] }).await.expect("rotated");
        let rotated = std::fs::read_to_string(&secret).expect("read");
        let back = apply(&e, &Primitive::RestoreFile { path: None, previous: true }).await;
        assert!(back.is_err(), "nothing to take back: {back:?}");
        assert_eq!(std::fs::read_to_string(&secret).expect("read"), rotated, "the rotated secret stays");
        std::fs::write(&secret, "a bad edit").expect("edit");
        apply(&e, &Primitive::RestoreFile { path: None, previous: true }).await.expect("a change from outside");
        assert_eq!(std::fs::read_to_string(&secret).expect("read"), rotated, "taken back to warden's last write");
    }

    #[test]
    fn test_a_kill_refuses_nothing_and_too_much() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut e = env(dir.path(), None);
        let c = |pid| Chosen { pid, name: "x".into(), cmdline: "x".into(), rss_bytes: 0, start_ticks: 0 };
        let lock = Selector::LockHolder { path: "${service_dir}/LOCK".into() };
        assert!(matches!(may_kill(&e, &lock, &[]), Err(EffectError::Failed(_))), "nothing found: nothing killed");
        let many: Vec<Chosen> = (0..5).map(|i| c(1_000_000 + i)).collect();
        assert!(matches!(may_kill(&e, &lock, &many), Err(EffectError::Refused(_))), "more than it may");
        assert!(may_kill(&e, &lock, &many[..1]).is_ok());
        assert!(!owned(&e, std::process::id()), "this test process is not the service's");
        e.own = vec![std::process::id()];
        assert!(owned(&e, std::process::id()));
    }
}
