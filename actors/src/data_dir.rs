//! The data dir: one type owns its layout, and one lock makes it one warden's.
//!
//! ```text
//! DATA_DIR/
//!   warden.lock          flock held by the running warden: its pid and API address
//!   store/               the fjall store (audit chain, incidents, runs, counters)
//!   logs/<service>.log   each service's output, size-rotated (.1, .2, …)
//!   run/<service>.json   the running process of each service (pid, start time, definition)
//!   services/<service>/  files a service keeps (the demo node's data, passwords, config)
//!   holds.json           pauses, maintenance and the breaker: what holds automatic repair
//! ```

use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create data dir {dir}: {source}")]
    Create { dir: PathBuf, source: std::io::Error },
    #[error("{}", locked_message(.dir, *.pid, *.http))]
    Locked { dir: PathBuf, pid: Option<u32>, http: Option<SocketAddr> },
}

fn locked_message(dir: &Path, pid: Option<u32>, http: Option<SocketAddr>) -> String {
    let who = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
    let api = http.map(|a| format!("; its API is http://{a}")).unwrap_or_default();
    format!("data dir {} is locked by another warden{who}{api}", dir.display())
}

/// The layout of a node's data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// `root` as given; nothing is created until [`DataDir::lock`].
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.root.join("warden.lock")
    }

    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    pub fn log_file(&self, service: &str) -> PathBuf {
        self.logs().join(format!("{service}.log"))
    }

    /// What people were last told of each probe (the alerter's book, across restarts).
    pub fn alerts_file(&self) -> PathBuf {
        self.root.join("alerts.json")
    }

    /// The holds on automatic repair: pauses, maintenance, the breaker (kept across restarts).
    pub fn holds_file(&self) -> PathBuf {
        self.root.join("holds.json")
    }

    /// The alert silences people made (kept across restarts).
    pub fn silences_file(&self) -> PathBuf {
        self.root.join("silences.json")
    }

    /// The config vault: versions of the files services need.
    pub fn vault(&self) -> crate::guardian::vault::Vault {
        crate::guardian::vault::Vault::new(self.root.join("vault"))
    }

    /// The runtime overrides playbooks set (see `reconfigure`).
    pub fn overrides_file(&self) -> PathBuf {
        self.root.join(warden_core::overrides::FILE)
    }

    /// The runtime overrides in force; none when the file does not exist.
    pub fn overrides(&self) -> Result<warden_core::overrides::Overrides, String> {
        let path = self.overrides_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => warden_core::overrides::Overrides::parse(&text).map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Where process records live.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// A short id of this data dir, for names that must not collide between two wardens
    /// on one machine (their cgroups).
    pub fn id(&self) -> String {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(self.root.as_os_str().as_encoded_bytes())[..6])
    }

    /// Whether a store was ever created here.
    pub fn has_store(&self) -> bool {
        self.store().is_dir()
    }

    /// Creates the dir if needed and takes it for this process; `http` is recorded for
    /// tools that find the dir locked (so they can ask the running node instead).
    pub fn lock(&self, http: Option<SocketAddr>) -> Result<DataDirLock, DataDirError> {
        let create = |source| DataDirError::Create { dir: self.root.clone(), source };
        std::fs::create_dir_all(&self.root).map_err(create)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.lock_file())
            .map_err(create)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let _ = lock.set_len(0);
                let _ = lock.rewind();
                let addr = http.map(|a| a.to_string()).unwrap_or_default();
                let _ = write!(lock, "{}\n{addr}\n", std::process::id());
                let _ = lock.sync_data();
                Ok(DataDirLock { _lock: lock })
            }
            Err((mut file, _)) => {
                let mut s = String::new();
                let _ = file.read_to_string(&mut s);
                let mut lines = s.lines();
                let pid = lines.next().and_then(|l| l.trim().parse().ok());
                let http = lines.next().and_then(|l| l.trim().parse().ok());
                Err(DataDirError::Locked { dir: self.root.clone(), pid, http })
            }
        }
    }
}

/// Exclusive ownership of a data dir for the life of the process.
#[derive(Debug)]
pub struct DataDirLock {
    _lock: Flock<File>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_second_lock_names_the_holder_and_its_api() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dd = DataDir::new(dir.path());
        let addr: SocketAddr = "127.0.0.1:7799".parse().expect("addr");
        let _held = dd.lock(Some(addr)).expect("first lock");
        match dd.lock(None) {
            Err(DataDirError::Locked { pid, http, .. }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert_eq!(http, Some(addr));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
    }

    #[test]
    fn test_layout_paths() {
        let dd = DataDir::new("/d");
        assert_eq!(dd.log_file("api"), Path::new("/d/logs/api.log"));
        assert_eq!(dd.store(), Path::new("/d/store"));
    }
}
