//! The fjall database behind [`super::Store`]: keyspaces, keys and encodings. Synchronous;
//! only the store handle calls it, always off the async threads.
//!
//! | keyspace | key | value |
//! | --- | --- | --- |
//! | `audit` | seq (u64 BE) | postcard `SealedEntry` |
//! | `incidents` | id (u64 BE) | JSON `Incident` |
//! | `incidents_open` | id (u64 BE) | empty: the index of open incidents |
//! | `runs` | run id (u64 BE) | JSON `RunRecord` |
//! | `runs_active` | run id (u64 BE) | empty: the index of runs not yet finished |
//! | `approvals` | id (u64 BE) | JSON `Approval` |
//! | `approvals_pending` | id (u64 BE) | empty: the index of pending approval requests |
//! | `meta` | `counter/<name>` | u64 BE |
//! | `meta` | `audit/chain_id` | the audit chain's id (its checkpoints name it) |
//! | `meta` | `audit/chain_adopted` | present: the id was given to a chain older than ids |
//! | `meta` | `slo/<slo>/` + bucket start (u64 BE) | JSON `slo::Count`: one minute of an objective's events |

use super::StoreError;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::Path;
use warden_core::approval::Approval;
use warden_core::audit::SealedEntry;
use warden_core::incident::Incident;
use warden_core::run::RunRecord;
use warden_core::slo::{Buckets, Count};

pub(super) struct Db {
    db: Database,
    audit: Keyspace,
    incidents: Keyspace,
    incidents_open: Keyspace,
    runs: Keyspace,
    runs_active: Keyspace,
    approvals: Keyspace,
    approvals_pending: Keyspace,
    meta: Keyspace,
}

/// A keyspace's in-memory write buffer, flushed to disk when full.
pub(super) const MEMTABLE_BYTES: u64 = 1024 * 1024;

fn key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn decode_key(k: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = k.len().min(8);
    b[8 - n..].copy_from_slice(&k[k.len() - n..]);
    u64::from_be_bytes(b)
}

impl Db {
    pub(super) fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::builder(path)
            // Small caches: warden's records are few and it must stay light when idle.
            .cache_size(2 * 1024 * 1024)
            .worker_threads(1)
            .open()?;
        // fjall keeps a keyspace's writes in memory until its memtable reaches this size
        // (64 MiB by default, per keyspace): warden's RSS grew by that much over a soak with
        // nothing lost. 1 MiB bounds the store's memory to a few MiB; the flushes it causes
        // are tiny at warden's write rate. (256 KiB was tried: over an hour's soak RSS rose
        // faster, not slower, and open fds with it: more, smaller segments.)
        let ks = |name| db.keyspace(name, || KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES));
        Ok(Self {
            audit: ks("audit")?,
            incidents: ks("incidents")?,
            incidents_open: ks("incidents_open")?,
            runs: ks("runs")?,
            runs_active: ks("runs_active")?,
            approvals: ks("approvals")?,
            approvals_pending: ks("approvals_pending")?,
            meta: ks("meta")?,
            db,
        })
    }

    /// The writes held in memory (every keyspace's memtables, active and sealed).
    pub(super) fn write_buffer_bytes(&self) -> u64 {
        self.db.write_buffer_size()
    }

    /// A synced write of a scratch key: proves the store takes writes.
    pub(super) fn probe_write(&self) -> Result<(), StoreError> {
        self.meta.insert("health/probe", warden_core::time::now_unix_ms().to_be_bytes())?;
        self.sync()
    }

    /// fjall's ids of warden's keyspaces, to name what a repair cut from the journal.
    pub(super) fn keyspace_ids(&self) -> Vec<(u64, &'static str)> {
        vec![
            (self.audit.id(), "audit"),
            (self.incidents.id(), "incidents"),
            (self.incidents_open.id(), "incidents_open"),
            (self.runs.id(), "runs"),
            (self.runs_active.id(), "runs_active"),
            (self.approvals.id(), "approvals"),
            (self.approvals_pending.id(), "approvals_pending"),
            (self.meta.id(), "meta"),
        ]
    }

    /// The audit keyspace's tables on disk: flushed memtables, for the memory bound's test.
    #[cfg(test)]
    pub(super) fn audit_tables(&self) -> usize {
        self.audit.table_count()
    }

    pub(super) fn sync(&self) -> Result<(), StoreError> {
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }

    // --- audit -----------------------------------------------------------------------------

    pub(super) fn audit_last(&self) -> Result<Option<SealedEntry>, StoreError> {
        match self.audit.last_key_value() {
            None => Ok(None),
            Some(g) => {
                let (k, v) = g.into_inner()?;
                Ok(Some(decode_audit(&k, &v)?))
            }
        }
    }

    /// Appends entries in one batch with one sync: a group commit.
    pub(super) fn audit_append(&self, batch: &[SealedEntry]) -> Result<(), StoreError> {
        let mut b = self.db.batch();
        for sealed in batch {
            let bytes = postcard::to_stdvec(sealed).map_err(|e| StoreError::Encode(e.to_string()))?;
            b.insert(&self.audit, key(sealed.entry.seq), bytes);
        }
        b.commit()?;
        self.sync()
    }

    /// Entries from `from_seq` on, at most `limit`, each decoded or the decode error.
    pub(super) fn audit_from(&self, from_seq: u64, limit: usize) -> Vec<Result<SealedEntry, StoreError>> {
        self.audit
            .range(key(from_seq)..)
            .take(limit)
            .map(|g| {
                let (k, v) = g.into_inner()?;
                decode_audit(&k, &v)
            })
            .collect()
    }

    /// Every entry from `from_seq` on, oldest first, while `f` says so.
    pub(super) fn audit_for_each(
        &self,
        from_seq: u64,
        mut f: impl FnMut(Result<SealedEntry, StoreError>) -> bool,
    ) -> Result<(), StoreError> {
        for g in self.audit.range(key(from_seq)..) {
            let item = g.into_inner().map_err(StoreError::from).and_then(|(k, v)| decode_audit(&k, &v));
            if !f(item) {
                break;
            }
        }
        Ok(())
    }

    /// Entries below seq `before` (all when `None`), newest first, visiting at most `scan`.
    pub(super) fn audit_before(
        &self,
        before: Option<u64>,
        scan: usize,
        mut f: impl FnMut(SealedEntry) -> bool,
    ) -> Result<Option<u64>, StoreError> {
        let mut last = None;
        let iter: Box<dyn DoubleEndedIterator<Item = fjall::Guard>> = match before {
            Some(b) => Box::new(self.audit.range(..key(b))),
            None => Box::new(self.audit.iter()),
        };
        for g in iter.rev().take(scan) {
            let (k, v) = g.into_inner()?;
            let entry = decode_audit(&k, &v)?;
            last = Some(entry.entry.seq);
            if !f(entry) {
                break;
            }
        }
        Ok(last)
    }

    /// Entries newest first, while `keep_going` says so.
    pub(super) fn audit_newest_first(
        &self,
        mut keep_going: impl FnMut(&SealedEntry) -> bool,
    ) -> Result<Vec<SealedEntry>, StoreError> {
        let mut out = Vec::new();
        for g in self.audit.iter().rev() {
            let (k, v) = g.into_inner()?;
            let entry = decode_audit(&k, &v)?;
            if !keep_going(&entry) {
                break;
            }
            out.push(entry);
        }
        Ok(out)
    }

    pub(super) fn audit_raw(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.audit.get(key(seq))?.map(|v| v.to_vec()))
    }

    pub(super) fn audit_put_raw(&self, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        self.audit.insert(key(seq), bytes)?;
        self.sync()
    }

    pub(super) fn audit_remove_raw(&self, seq: u64) -> Result<(), StoreError> {
        self.audit.remove(key(seq))?;
        self.sync()
    }

    // --- the audit chain's id ----------------------------------------------------------------

    pub(super) fn audit_chain_id(&self) -> Result<Option<String>, StoreError> {
        Ok(self.meta.get("audit/chain_id")?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    pub(super) fn set_audit_chain_id(&self, id: &str, adopted: bool) -> Result<(), StoreError> {
        self.meta.insert("audit/chain_id", id.as_bytes())?;
        if adopted {
            self.meta.insert("audit/chain_adopted", [1u8])?;
        }
        self.sync()
    }

    pub(super) fn audit_chain_adopted(&self) -> Result<bool, StoreError> {
        Ok(self.meta.get("audit/chain_adopted")?.is_some())
    }

    // --- counters --------------------------------------------------------------------------

    pub(super) fn next_id(&self, counter: &str) -> Result<u64, StoreError> {
        let k = format!("counter/{counter}");
        let current = self.meta.get(&k)?.map(|v| decode_key(&v)).unwrap_or(0);
        let next = current + 1;
        self.meta.insert(&k, key(next))?;
        Ok(next)
    }

    // --- service level objectives ------------------------------------------------------------

    fn slo_key(slo: &str, bucket: u64) -> Vec<u8> {
        let mut k = format!("slo/{slo}/").into_bytes();
        k.extend_from_slice(&key(bucket));
        k
    }

    /// Adds `count` to the bucket starting at `bucket` (not synced: losing the last seconds
    /// of counts in a crash is fine, and this runs every few seconds).
    pub(super) fn slo_add(&self, slo: &str, bucket: u64, count: Count) -> Result<(), StoreError> {
        let k = Self::slo_key(slo, bucket);
        let mut c: Count = match self.meta.get(&k)? {
            Some(v) => serde_json::from_slice(&v).map_err(|e| StoreError::Decode {
                keyspace: "meta",
                key: format!("slo/{slo}/{bucket}"),
                reason: e.to_string(),
            })?,
            None => Count::default(),
        };
        c.add(count);
        let v = serde_json::to_vec(&c).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.meta.insert(&k, v)?;
        Ok(())
    }

    /// The buckets of `slo` from `from` on; buckets older than `forget_before` are deleted.
    pub(super) fn slo_buckets(&self, slo: &str, from: u64, forget_before: u64) -> Result<Buckets, StoreError> {
        let old: Vec<Vec<u8>> = self
            .meta
            .range(Self::slo_key(slo, 0)..Self::slo_key(slo, forget_before))
            .map(|g| g.key().map(|k| k.to_vec()))
            .collect::<Result<_, _>>()?;
        for k in old {
            self.meta.remove(k)?;
        }
        let mut b = Buckets::default();
        for g in self.meta.range(Self::slo_key(slo, from)..Self::slo_key(slo, u64::MAX)) {
            let (k, v) = g.into_inner()?;
            // A value that cannot be read is one lost minute, not a broken objective.
            if let Ok(c) = serde_json::from_slice::<Count>(&v) {
                b.buckets.insert(decode_key(&k), c);
            }
        }
        Ok(b)
    }

    // --- incidents and runs -----------------------------------------------------------------

    /// Stores the incident and keeps the open index in step, atomically, synced.
    pub(super) fn put_incident(&self, incident: &Incident) -> Result<(), StoreError> {
        self.put_listed(&self.incidents, &self.incidents_open, incident.id, incident, incident.status.is_open())
    }

    pub(super) fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.listed(&self.incidents, "incidents", &self.incidents_open)
    }

    pub(super) fn incident(&self, id: u64) -> Result<Option<Incident>, StoreError> {
        self.incidents.get(key(id))?.map(|v| decode_json("incidents", id, &v)).transpose()
    }

    pub(super) fn recent_incidents(&self, limit: usize) -> Result<Vec<Incident>, StoreError> {
        recent_json(&self.incidents, "incidents", limit)
    }

    /// The newest `limit` incidents `keep` takes, newest first: read one at a time, so a
    /// filtered list of a long history holds no more than it answers; the read stops at
    /// the first incident detected before `since_unix_ms` (ids follow detection).
    pub(super) fn newest_incidents_where(
        &self,
        limit: usize,
        since_unix_ms: Option<u64>,
        keep: impl Fn(&Incident) -> bool,
    ) -> Result<Vec<Incident>, StoreError> {
        let mut out = Vec::new();
        for g in self.incidents.iter().rev() {
            if out.len() >= limit {
                break;
            }
            let (k, v) = g.into_inner()?;
            let i: Incident = decode_json("incidents", decode_key(&k), &v)?;
            if since_unix_ms.is_some_and(|t| i.detected_unix_ms < t) {
                break;
            }
            if keep(&i) {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// Stores the run and keeps the active index in step, atomically, synced.
    pub(super) fn put_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.put_listed(&self.runs, &self.runs_active, run.run_id, run, !run.outcome.is_final())
    }

    pub(super) fn run(&self, run_id: u64) -> Result<Option<RunRecord>, StoreError> {
        self.runs.get(key(run_id))?.map(|v| decode_json("runs", run_id, &v)).transpose()
    }

    pub(super) fn active_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.listed(&self.runs, "runs", &self.runs_active)
    }

    /// Every incident and run that decodes (see [`all_json_lossy`]).
    pub(super) fn all_incidents_and_runs(&self) -> Result<(Vec<Incident>, Vec<RunRecord>), StoreError> {
        Ok((all_json_lossy(&self.incidents, "incidents")?, all_json_lossy(&self.runs, "runs")?))
    }

    pub(super) fn recent_runs(&self, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        recent_json(&self.runs, "runs", limit)
    }

    // --- approvals ---------------------------------------------------------------------------

    pub(super) fn put_approval(&self, a: &Approval) -> Result<(), StoreError> {
        self.put_listed(&self.approvals, &self.approvals_pending, a.id, a, a.is_pending())
    }

    pub(super) fn approval(&self, id: u64) -> Result<Option<Approval>, StoreError> {
        self.approvals.get(key(id))?.map(|v| decode_json("approvals", id, &v)).transpose()
    }

    pub(super) fn pending_approvals(&self) -> Result<Vec<Approval>, StoreError> {
        self.listed(&self.approvals, "approvals", &self.approvals_pending)
    }

    // --- records with an index of the live ones ----------------------------------------------

    /// Stores `value` (JSON) under `id` in `records`, and lists `id` in `index` while
    /// `live` (an open incident, a running run, a pending approval): one batch, synced, so
    /// the index never names a record that is not stored, nor misses one that is live.
    fn put_listed<T: serde::Serialize>(
        &self,
        records: &Keyspace,
        index: &Keyspace,
        id: u64,
        value: &T,
        live: bool,
    ) -> Result<(), StoreError> {
        let v = serde_json::to_vec(value).map_err(|e| StoreError::Encode(e.to_string()))?;
        let mut b = self.db.batch();
        b.insert(records, key(id), v);
        if live {
            b.insert(index, key(id), []);
        } else {
            b.remove(index, key(id));
        }
        b.commit()?;
        self.sync()
    }

    /// The records of `records` that `index` lists.
    fn listed<T: serde::de::DeserializeOwned>(
        &self,
        records: &Keyspace,
        name: &'static str,
        index: &Keyspace,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for g in index.iter() {
            let id = decode_key(&g.key()?);
            if let Some(v) = records.get(key(id))? {
                out.push(decode_json(name, id, &v)?);
            }
        }
        Ok(out)
    }

    pub(super) fn recent_approvals(&self, limit: usize) -> Result<Vec<Approval>, StoreError> {
        recent_json(&self.approvals, "approvals", limit)
    }
}

fn decode_audit(k: &[u8], v: &[u8]) -> Result<SealedEntry, StoreError> {
    postcard::from_bytes(v).map_err(|e| StoreError::Decode {
        keyspace: "audit",
        key: decode_key(k).to_string(),
        reason: e.to_string(),
    })
}

fn decode_json<T: serde::de::DeserializeOwned>(keyspace: &'static str, id: u64, v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Decode { keyspace, key: id.to_string(), reason: e.to_string() })
}

/// The newest `limit` records of a keyspace, oldest first.
/// Every record of a keyspace that decodes, oldest first: one bad record costs itself, not
/// the whole read (for figures over all records, like the objectives').
pub(super) fn all_json_lossy<T: serde::de::DeserializeOwned>(
    ks: &Keyspace,
    name: &'static str,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for g in ks.iter() {
        let (k, v) = g.into_inner()?;
        match decode_json(name, decode_key(&k), &v) {
            Ok(record) => out.push(record),
            Err(e) => tracing::debug!(error = %e, "skipping a record that cannot be decoded"),
        }
    }
    Ok(out)
}

fn recent_json<T: serde::de::DeserializeOwned>(
    ks: &Keyspace,
    name: &'static str,
    limit: usize,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for g in ks.iter().rev().take(limit) {
        let (k, v) = g.into_inner()?;
        out.push(decode_json(name, decode_key(&k), &v)?);
    }
    out.reverse();
    Ok(out)
}
