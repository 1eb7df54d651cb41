//! The store: warden's durable records behind one typed handle.
//!
//! Every caller (actors, HTTP, the CLI) goes through [`Store`]: typed queries, the blocking
//! fjall work run off the async threads, typed errors. Writes that the system relies on
//! (audit entries, incidents, runs) are synced to disk before they return. fjall marks its
//! database poisoned after a failed flush; from then on no write can be trusted, so the
//! first [`StoreError::Poisoned`] is published on [`Store::fatal`] and the node stops
//! rather than run on without a durable audit trail.

mod db;

use crate::data_dir::DataDir;
use db::Db;
use std::sync::Arc;
use tokio::sync::watch;
use warden_core::audit::{self, ChainBreak, Hash, SealedEntry};
use warden_core::incident::{Incident, MttrSummary, summarize};
use warden_core::run::RunRecord;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store error: {0}")]
    Fjall(Arc<fjall::Error>),
    #[error("the store refused a write after a failed flush (poisoned); warden must restart to recover it")]
    Poisoned,
    #[error("stored record {key} in `{keyspace}` cannot be decoded: {reason}")]
    Decode { keyspace: &'static str, key: String, reason: String },
    #[error("cannot encode record: {0}")]
    Encode(String),
    #[error("store task failed: {0}")]
    Task(Arc<tokio::task::JoinError>),
}

impl From<fjall::Error> for StoreError {
    fn from(e: fjall::Error) -> Self {
        match e {
            fjall::Error::Poisoned => StoreError::Poisoned,
            e => StoreError::Fjall(Arc::new(e)),
        }
    }
}

/// Durable id counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    Incident,
    Run,
}

impl Counter {
    fn name(self) -> &'static str {
        match self {
            Counter::Incident => "incident",
            Counter::Run => "run",
        }
    }
}

/// What the healer stats endpoint shows.
#[derive(Debug, Clone)]
pub struct HealerStats {
    /// Newest first, each with its incident when it had one.
    pub last_runs: Vec<(RunRecord, Option<Incident>)>,
    pub summary: MttrSummary,
}

/// The handle every part of warden uses to reach the store.
#[derive(Clone)]
pub struct Store {
    db: Arc<Db>,
    fatal: Arc<watch::Sender<Option<StoreError>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Opens (creating if needed) the store of `dir`. The caller holds the dir's lock.
    pub fn open(dir: &DataDir) -> Result<Self, StoreError> {
        let db = Db::open(&dir.store())?;
        Ok(Self { db: Arc::new(db), fatal: Arc::new(watch::channel(None).0) })
    }

    /// Becomes `Some` on the first fatal store error.
    pub fn fatal(&self) -> watch::Receiver<Option<StoreError>> {
        self.fatal.subscribe()
    }

    /// Runs `f` on the blocking pool; escalates a poisoned store.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        let result =
            tokio::task::spawn_blocking(move || f(&db)).await.unwrap_or_else(|e| Err(StoreError::Task(Arc::new(e))));
        if let Err(StoreError::Poisoned) = &result {
            // Announce it once; later errors change nothing.
            self.fatal.send_if_modified(|fatal| {
                if fatal.is_some() {
                    return false;
                }
                *fatal = Some(StoreError::Poisoned);
                true
            });
        }
        result
    }

    /// Makes everything written so far durable (used at shutdown, outside the runtime).
    pub fn sync_now(&self) -> Result<(), StoreError> {
        self.db.sync()
    }

    // --- audit -----------------------------------------------------------------------------

    /// The last entry's seq and hash: where the next append continues the chain.
    pub async fn audit_head(&self) -> Result<Option<(u64, Hash)>, StoreError> {
        self.run(|db| Ok(db.audit_last()?.map(|s| (s.entry.seq, s.hash)))).await
    }

    /// Appends a sealed entry, synced to disk before it returns.
    pub async fn audit_append(&self, sealed: SealedEntry) -> Result<(), StoreError> {
        self.run(move |db| db.audit_append(&sealed)).await
    }

    /// Up to `limit` entries from `from_seq` on.
    pub async fn audit_range(&self, from_seq: u64, limit: usize) -> Result<Vec<SealedEntry>, StoreError> {
        self.run(move |db| db.audit_from(from_seq, limit).into_iter().collect()).await
    }

    /// Walks the whole chain: how many entries verified, or where it breaks (an entry that
    /// cannot even be decoded is a break too).
    pub async fn verify_chain(&self) -> Result<Result<u64, ChainBreak>, StoreError> {
        self.run(|db| {
            let mut verifier = audit::Verifier::default();
            let mut broken = None;
            db.audit_for_each(|item| {
                let step = match item {
                    Ok(entry) => verifier.push(&entry),
                    Err(e) => Err(verifier.undecodable(e.to_string())),
                };
                match step {
                    Ok(()) => true,
                    Err(b) => {
                        broken = Some(b);
                        false
                    }
                }
            })?;
            Ok(broken.map_or(Ok(verifier.count()), Err))
        })
        .await
    }

    /// Entries stamped at or after `since_unix_ms`, oldest first (rebuilding rate-limit
    /// history after a restart).
    pub async fn audit_since(&self, since_unix_ms: u64) -> Result<Vec<SealedEntry>, StoreError> {
        self.run(move |db| {
            let mut newest_first = db.audit_newest_first(|e| e.entry.ts_unix_ms >= since_unix_ms)?;
            newest_first.reverse();
            Ok(newest_first)
        })
        .await
    }

    /// The raw bytes of entry `seq` (repair tools, tamper tests).
    pub async fn audit_raw(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.run(move |db| db.audit_raw(seq)).await
    }

    /// Overwrites the raw bytes of entry `seq`: for tamper tests, which must see the chain
    /// notice.
    pub async fn audit_put_raw(&self, seq: u64, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.run(move |db| db.audit_put_raw(seq, &bytes)).await
    }

    // --- incidents and runs ---------------------------------------------------------------

    /// The next value of a durable counter, starting at 1.
    pub async fn next_id(&self, counter: Counter) -> Result<u64, StoreError> {
        self.run(move |db| db.next_id(counter.name())).await
    }

    pub async fn put_incident(&self, incident: Incident) -> Result<(), StoreError> {
        self.run(move |db| db.put_incident(&incident)).await
    }

    pub async fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.run(|db| db.open_incidents()).await
    }

    pub async fn put_run(&self, run: RunRecord) -> Result<(), StoreError> {
        self.run(move |db| db.put_run(&run)).await
    }

    pub async fn run_record(&self, run_id: u64) -> Result<Option<RunRecord>, StoreError> {
        self.run(move |db| db.run(run_id)).await
    }

    /// Runs stored as still going: after a crash, the ones nobody finished.
    pub async fn active_runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.run(|db| db.active_runs()).await
    }

    /// The last `runs` playbook runs with their incidents, and MTTR over the last `window`
    /// resolved incidents.
    pub async fn healer_stats(&self, runs: usize, window: usize) -> Result<HealerStats, StoreError> {
        self.run(move |db| {
            // Every incident counts toward the success rate; the scan is fine at warden's
            // scale (one node, incidents per day) and keeps the figures exact.
            let incidents = db.recent_incidents(usize::MAX)?;
            let summary = summarize(&incidents, window);
            let last_runs = db
                .recent_runs(runs)?
                .into_iter()
                .rev()
                .map(|r| {
                    let incident = r.incident_id.and_then(|id| incidents.iter().find(|i| i.id == id).cloned());
                    (r, incident)
                })
                .collect();
            Ok(HealerStats { last_runs, summary })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::audit::{AuditActor, AuditEntry, AuditRecord, DecisionKind, EntryKind, GENESIS, seal};

    fn record() -> AuditRecord {
        AuditRecord {
            kind: EntryKind::Decision,
            actor: AuditActor::System,
            action: "restart_service".into(),
            tier: 2,
            target: "api".into(),
            rationale: "test".into(),
            decision: DecisionKind::Allow,
            outcome: None,
            detail: String::new(),
            incident_id: None,
            run_id: None,
        }
    }

    #[tokio::test]
    async fn test_counters_and_chain_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dd = DataDir::new(dir.path());
        {
            let s = Store::open(&dd).expect("open");
            assert_eq!(s.next_id(Counter::Incident).await.expect("id"), 1);
            assert_eq!(s.next_id(Counter::Incident).await.expect("id"), 2);
            let mut prev = GENESIS;
            for seq in 1..=3 {
                let e = AuditEntry { seq, ts_unix_ms: seq, record: record(), prev_hash: prev };
                let sealed = seal(e, prev).expect("seal");
                prev = sealed.hash;
                s.audit_append(sealed).await.expect("append");
            }
            s.sync_now().expect("sync");
        }
        let s = Store::open(&dd).expect("reopen");
        assert_eq!(s.next_id(Counter::Incident).await.expect("id"), 3);
        assert_eq!(s.verify_chain().await.expect("verify"), Ok(3));
        assert_eq!(s.audit_head().await.expect("head").map(|(seq, _)| seq), Some(3));
        assert_eq!(s.audit_range(2, 10).await.expect("range").len(), 2);
    }

    #[tokio::test]
    async fn test_undecodable_entry_is_a_named_break() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&DataDir::new(dir.path())).expect("open");
        let sealed =
            seal(AuditEntry { seq: 1, ts_unix_ms: 1, record: record(), prev_hash: GENESIS }, GENESIS).expect("seal");
        s.audit_append(sealed).await.expect("append");
        s.audit_put_raw(2, vec![0xff; 3]).await.expect("garbage");
        let b = s.verify_chain().await.expect("verify").expect_err("garbage breaks the chain");
        assert_eq!((b.position, b.seq), (1, 2), "{b}");
    }
}
