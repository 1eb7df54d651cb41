//! The durable store: audit chain, incidents, playbook runs and counters in fjall.
//!
//! One fjall database per data dir, guarded by our own lock file so a second warden on the
//! same dir gets a one-line error naming the holder. fjall is synchronous: actors call it
//! from `spawn_blocking`. Audit appends are synced to disk before they return.

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden_core::audit::SealedEntry;
use warden_core::incident::Incident;
use warden_core::playbook::RunRecord;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("data dir {dir} is locked by another warden{}", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Locked { dir: PathBuf, pid: Option<u32> },
    #[error("cannot open data dir {dir}: {source}")]
    Open { dir: PathBuf, source: std::io::Error },
    #[error("store error: {0}")]
    Fjall(#[from] fjall::Error),
    #[error("stored record {key} in `{keyspace}` cannot be decoded: {reason}")]
    Decode { keyspace: &'static str, key: String, reason: String },
    #[error("cannot encode record: {0}")]
    Encode(String),
}

/// Exclusive ownership of a data dir for the life of the process.
#[derive(Debug)]
pub struct DataDirLock {
    _lock: Flock<File>,
}

impl DataDirLock {
    pub fn acquire(dir: &Path) -> Result<Self, StoreError> {
        let open_err = |source| StoreError::Open { dir: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(open_err)?;
        let path = dir.join("warden.lock");
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(open_err)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                // Record the holder for the next one's error message.
                let _ = lock.set_len(0);
                let _ = lock.rewind();
                let _ = write!(lock, "{}", std::process::id());
                let _ = lock.sync_data();
                Ok(Self { _lock: lock })
            }
            Err((mut file, _)) => {
                let mut s = String::new();
                let _ = file.read_to_string(&mut s);
                Err(StoreError::Locked { dir: dir.to_path_buf(), pid: s.trim().parse().ok() })
            }
        }
    }
}

/// The node's durable records.
pub struct Store {
    db: Database,
    audit: Keyspace,
    incidents: Keyspace,
    runs: Keyspace,
    meta: Keyspace,
    _lock: DataDirLock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

fn key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn decode_key(k: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = k.len().min(8);
    b[8 - n..].copy_from_slice(&k[k.len() - n..]);
    u64::from_be_bytes(b)
}

impl Store {
    /// Opens (creating if needed) the store under `data_dir/store`, locking `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let lock = DataDirLock::acquire(data_dir)?;
        let db = Database::builder(data_dir.join("store"))
            // Small caches: warden's records are few and it must stay light when idle.
            .cache_size(2 * 1024 * 1024)
            .worker_threads(1)
            .open()?;
        let ks = |name| db.keyspace(name, KeyspaceCreateOptions::default);
        Ok(Self {
            audit: ks("audit")?,
            incidents: ks("incidents")?,
            runs: ks("runs")?,
            meta: ks("meta")?,
            db,
            _lock: lock,
        })
    }

    /// Makes everything written so far durable.
    pub fn sync(&self) -> Result<(), StoreError> {
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }

    // --- audit -----------------------------------------------------------------------------

    pub fn audit_last(&self) -> Result<Option<SealedEntry>, StoreError> {
        match self.audit.last_key_value() {
            None => Ok(None),
            Some(g) => {
                let (k, v) = g.into_inner()?;
                Ok(Some(decode_audit(&k, &v)?))
            }
        }
    }

    /// Appends a sealed entry and syncs it to disk before returning.
    pub fn audit_append(&self, sealed: &SealedEntry) -> Result<(), StoreError> {
        let bytes = postcard::to_stdvec(sealed).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.audit.insert(key(sealed.entry.seq), bytes)?;
        self.sync()
    }

    /// Every stored audit entry in key order, each decoded or the decode error.
    pub fn audit_entries(&self) -> impl Iterator<Item = Result<SealedEntry, StoreError>> + '_ {
        self.audit.iter().map(|g| {
            let (k, v) = g.into_inner()?;
            decode_audit(&k, &v)
        })
    }

    /// The raw stored bytes of audit entry `seq`, for repair tools and tamper tests.
    pub fn audit_raw(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.audit.get(key(seq))?.map(|v| v.to_vec()))
    }

    /// Overwrites the raw bytes of audit entry `seq` (tamper tests only: the chain must notice).
    pub fn audit_put_raw(&self, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        self.audit.insert(key(seq), bytes)?;
        self.sync()
    }

    // --- incidents and runs ---------------------------------------------------------------

    /// Next value of a durable counter (incident and run ids), starting at 1.
    pub fn next_id(&self, counter: &str) -> Result<u64, StoreError> {
        let k = format!("counter/{counter}");
        let current = self.meta.get(&k)?.map(|v| decode_key(&v)).unwrap_or(0);
        let next = current + 1;
        self.meta.insert(&k, key(next))?;
        Ok(next)
    }

    pub fn put_incident(&self, incident: &Incident) -> Result<(), StoreError> {
        let v = serde_json::to_vec(incident).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.incidents.insert(key(incident.id), v)?;
        self.sync()
    }

    /// The newest `limit` incidents, oldest first.
    pub fn recent_incidents(&self, limit: usize) -> Result<Vec<Incident>, StoreError> {
        recent_json(&self.incidents, "incidents", limit)
    }

    pub fn put_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        let v = serde_json::to_vec(run).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.runs.insert(key(run.run_id), v)?;
        self.sync()
    }

    /// The newest `limit` playbook runs, oldest first.
    pub fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        recent_json(&self.runs, "runs", limit)
    }
}

/// Runs a store call off the async threads.
pub async fn blocking<T: Send + 'static>(
    store: &Arc<Store>,
    f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ractor::ActorProcessingErr> {
    let s = store.clone();
    Ok(tokio::task::spawn_blocking(move || f(&s)).await??)
}

fn decode_audit(k: &[u8], v: &[u8]) -> Result<SealedEntry, StoreError> {
    postcard::from_bytes(v).map_err(|e| StoreError::Decode {
        keyspace: "audit",
        key: decode_key(k).to_string(),
        reason: e.to_string(),
    })
}

fn recent_json<T: serde::de::DeserializeOwned>(
    ks: &Keyspace,
    name: &'static str,
    limit: usize,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for g in ks.iter().rev().take(limit) {
        let (k, v) = g.into_inner()?;
        out.push(serde_json::from_slice(&v).map_err(|e| StoreError::Decode {
            keyspace: name,
            key: decode_key(&k).to_string(),
            reason: e.to_string(),
        })?);
    }
    out.reverse();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_second_open_of_same_dir_is_locked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _first = Store::open(dir.path()).expect("first open");
        let err = Store::open(dir.path()).expect_err("second open must fail");
        let msg = err.to_string();
        assert!(msg.contains("is locked by another warden"), "{msg}");
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
    }

    #[test]
    fn test_counters_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = Store::open(dir.path()).expect("open");
            assert_eq!(s.next_id("incident").expect("id"), 1);
            assert_eq!(s.next_id("incident").expect("id"), 2);
            s.sync().expect("sync");
        }
        let s = Store::open(dir.path()).expect("reopen");
        assert_eq!(s.next_id("incident").expect("id"), 3);
    }
}
