//! How the command line finds a running node without `--config`: each `warden run`
//! publishes its API address and data dir in a runtime file, one per process, removed at
//! its stop (and ignored once its process is gone).
//!
//! The folder is `WARDEN_RUNTIME_DIR`, else `/run/warden` for root, else
//! `$XDG_RUNTIME_DIR/warden`: where systemd keeps what lives only while a program runs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a running node publishes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Published {
    pub pid: u32,
    pub name: String,
    pub url: String,
    pub data_dir: PathBuf,
    /// The config file it was started with (absolute); `None`: the embedded default.
    #[serde(default)]
    pub config: Option<PathBuf>,
}

/// The folder runtime files live in, if there is one.
pub fn dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("WARDEN_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if nix::unistd::geteuid().is_root() {
        return Some(PathBuf::from("/run/warden"));
    }
    std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()).map(|d| PathBuf::from(d).join("warden"))
}

/// Removes the node's runtime file when dropped (a `kill -9` leaves it; readers skip it).
pub struct Publication(PathBuf);

impl Drop for Publication {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Publishes this node; `None` (with why) where no runtime folder can be written.
pub fn publish(p: &Published) -> Result<Publication, String> {
    let dir = dir().ok_or("no runtime folder (set WARDEN_RUNTIME_DIR)")?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("{}.json", p.pid));
    let text = serde_json::to_vec_pretty(p).map_err(|e| e.to_string())?;
    // Not a secret (no token), but only its owner writes it.
    write_whole(&path, &text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Publication(path))
}

fn write_whole(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Every node that is running now (its process alive), by pid.
pub fn running() -> Vec<Published> {
    let Some(dir) = dir() else { return Vec::new() };
    let Ok(rd) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut out: Vec<Published> = rd
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice::<Published>(&std::fs::read(e.path()).ok()?).ok())
        .filter(|p| alive(p.pid))
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}

/// The node a command that names none goes to: the one running here (`None` when none
/// runs); several running is an error that lists them, for the user to pick one.
pub fn the_running_node() -> anyhow::Result<Option<Published>> {
    let mut running = running();
    match running.len() {
        0 => Ok(None),
        1 => Ok(running.pop()),
        n => {
            let each: Vec<String> =
                running.iter().map(|p| format!("`{}` pid {} at {}", p.name, p.pid, p.url)).collect();
            anyhow::bail!("{n} nodes are running ({}): name one with --config, --url or WARDEN_URL", each.join(", "))
        }
    }
}

/// Whether `pid` is a live warden (a reused pid of another program is not).
fn alive(pid: u32) -> bool {
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else { return false };
    exe.file_name().is_some_and(|n| n.to_string_lossy().starts_with("warden"))
}

/// What a command that found no node says it tried.
pub fn tried() -> String {
    match dir() {
        Some(d) => format!("no running node published itself in {}", d.display()),
        None => "no runtime folder to look in (set WARDEN_RUNTIME_DIR)".into(),
    }
}
