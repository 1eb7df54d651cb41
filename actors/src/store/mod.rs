//! The store: warden's durable records behind one typed handle.
//!
//! Every caller (actors, HTTP, the CLI) goes through [`Store`]: typed queries, the blocking
//! fjall work run off the async threads, typed errors. Writes that the system relies on
//! (audit entries, incidents, runs) are synced to disk before they return.
//!
//! A failed write (a full disk, an I/O error) poisons a fjall database: no later write is
//! accepted. The store then degrades instead of taking warden down: it lets the database go,
//! says so on [`Store::health`] (and `/readyz`), refuses what must be durable (so tier ≥ 2
//! actions fail closed), and reopens the database every second until a write succeeds
//! again. Tier 1 healing (restarting a crashed service) needs no store and goes on.
//!
//! A corrupt journal is found before the database opens ([`journal`]), named by file and
//! offset, and repaired by `warden store recover`, which keeps every intact batch.

mod db;
pub mod journal;

use crate::data_dir::DataDir;
use db::Db;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use warden_core::approval::Approval;
use warden_core::audit::{AuditFilter, AuditKey, ChainBreak, ChainCheck, Checkpoint, Hash, SealedEntry};
use warden_core::incident::{Incident, MttrSummary, summarize};
use warden_core::run::RunRecord;
use warden_core::slo::{Buckets, Count, SloKind};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store error: {0}")]
    Fjall(Arc<fjall::Error>),
    #[error("the store refused a write after a failed flush (poisoned)")]
    Poisoned,
    #[error("the store is degraded ({0}); it is being reopened")]
    Degraded(String),
    #[error(
        "the store's journal is corrupt: {0}; run `warden store check` for details and `warden store recover` to keep every intact entry"
    )]
    Corrupt(Box<journal::Corruption>),
    #[error("stored record {key} in `{keyspace}` cannot be decoded: {reason}")]
    Decode { keyspace: &'static str, key: String, reason: String },
    #[error("cannot encode record: {0}")]
    Encode(String),
    #[error("cannot read the store's files: {0}")]
    Io(Arc<std::io::Error>),
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
    Approval,
}

impl Counter {
    fn name(self) -> &'static str {
        match self {
            Counter::Incident => "incident",
            Counter::Run => "run",
            Counter::Approval => "approval",
        }
    }
}

/// What the healer stats endpoint shows.
#[derive(Debug, Clone)]
pub struct HealerStats {
    /// Newest first, each with its incident when it had one.
    pub last_runs: Vec<(RunRecord, Option<Incident>)>,
    pub summary: MttrSummary,
    /// MTTR percentiles per failure mode.
    pub per_mode: Vec<warden_core::incident::ModeStats>,
}

/// Whether the store takes writes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Health {
    Healthy,
    /// A write failed (a full disk, an I/O error); warden reopens the store until it takes
    /// writes again. Meanwhile nothing that must be durable happens: tier ≥ 2 actions are
    /// refused because their decision cannot be audited.
    Degraded {
        reason: String,
        since_unix_ms: u64,
    },
}

struct Inner {
    path: PathBuf,
    /// `None` while degraded: the old database is let go so it can be reopened.
    db: RwLock<Option<Arc<Db>>>,
    health: watch::Sender<Health>,
    reopening: AtomicBool,
    /// Every write of an incident or a run, numbered: readers that derive figures from
    /// them (the SLO tracker) read again only what was written since they last looked.
    writes: std::sync::Mutex<Writes>,
}

/// An incident or a run written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Written {
    Incident(u64),
    Run(u64),
}

/// Writes kept for readers that follow them; one that falls further behind reads all.
const WRITES_KEPT: usize = 4096;

/// The number of writes made, and the last [`WRITES_KEPT`] of them with their numbers.
#[derive(Debug, Default)]
struct Writes {
    count: u64,
    last: std::collections::VecDeque<(u64, Written)>,
}

impl Inner {
    /// Counted after the write, on the writing thread (which finishes even when the caller
    /// gives up): a reader that looked before it sees it on its next look.
    fn wrote(&self, what: Written) {
        let mut w = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        w.count += 1;
        let n = w.count;
        if w.last.len() == WRITES_KEPT {
            w.last.pop_front();
        }
        w.last.push_back((n, what));
    }
}

/// The handle every part of warden uses to reach the store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// How often a degraded store tries to open again.
const REOPEN_EVERY: Duration = Duration::from_secs(1);
/// Entries an audit query reads at most per call.
pub const AUDIT_SCAN: usize = 100_000;

/// What a chain check covered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    /// The first and last seq checked (`first` > `last`: nothing to check).
    pub first: u64,
    pub last: u64,
    /// Whether the seals were checked (with the key).
    pub sealed: bool,
    /// Signed checkpoints known.
    pub checkpoints: usize,
}

impl Verified {
    /// Entries checked.
    pub fn count(&self) -> u64 {
        (self.last + 1).saturating_sub(self.first)
    }
}

impl Store {
    /// Opens (creating if needed) the store of `dir`. The caller holds the dir's lock. A
    /// corrupt journal is refused with its file and offset (`warden store recover` keeps
    /// every intact entry).
    pub fn open(dir: &DataDir) -> Result<Self, StoreError> {
        let path = dir.store();
        if let Some(c) = journal::first_corruption(&path).map_err(|e| StoreError::Io(Arc::new(e)))? {
            return Err(StoreError::Corrupt(Box::new(c)));
        }
        let db = Db::open(&path)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                db: RwLock::new(Some(Arc::new(db))),
                health: watch::channel(Health::Healthy).0,
                reopening: AtomicBool::new(false),
                writes: std::sync::Mutex::default(),
            }),
        })
    }

    /// The store's health now and as it changes.
    pub fn health(&self) -> watch::Receiver<Health> {
        self.inner.health.subscribe()
    }

    fn db(&self) -> Result<Arc<Db>, StoreError> {
        let guard = self.inner.db.read().unwrap_or_else(|p| p.into_inner());
        guard.clone().ok_or_else(|| match &*self.inner.health.borrow() {
            Health::Degraded { reason, .. } => StoreError::Degraded(reason.clone()),
            Health::Healthy => StoreError::Degraded("reopening".into()),
        })
    }

    /// Runs a read on the blocking pool.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db()?;
        tokio::task::spawn_blocking(move || f(&db)).await.unwrap_or_else(|e| Err(StoreError::Task(Arc::new(e))))
    }

    /// Runs a write on the blocking pool; a failed write degrades the store.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let result = self.run(f).await;
        if let Err(e @ (StoreError::Fjall(_) | StoreError::Poisoned)) = &result {
            self.degrade(e.to_string());
        }
        result
    }

    /// Lets the database go and reopens it in the background until it takes writes.
    fn degrade(&self, reason: String) {
        let was = self.inner.db.write().unwrap_or_else(|p| p.into_inner()).take();
        if was.is_none() {
            return;
        }
        tracing::error!(
            reason,
            "alert: the store refused a write; degraded until it takes writes again (tier 2+ actions are refused)"
        );
        self.inner.health.send_replace(Health::Degraded { reason, since_unix_ms: warden_core::time::now_unix_ms() });
        drop(was);
        if !self.inner.reopening.swap(true, Ordering::AcqRel) {
            let store = self.clone();
            tokio::spawn(async move { store.reopen().await });
        }
    }

    async fn reopen(&self) {
        loop {
            tokio::time::sleep(REOPEN_EVERY).await;
            let path = self.inner.path.clone();
            // A write proves it: opening alone succeeds on a full disk.
            let opened = tokio::task::spawn_blocking(move || {
                let db = Db::open(&path)?;
                db.probe_write()?;
                Ok::<_, StoreError>(db)
            })
            .await;
            match opened {
                Ok(Ok(db)) => {
                    *self.inner.db.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(db));
                    self.inner.health.send_replace(Health::Healthy);
                    self.inner.reopening.store(false, Ordering::Release);
                    tracing::info!("store resumed: it takes writes again");
                    return;
                }
                Ok(Err(e)) => tracing::debug!(error = %e, "store still refuses writes"),
                Err(e) => tracing::debug!(error = %e, "store reopen task failed"),
            }
        }
    }

    /// Makes everything written so far durable (used at shutdown, outside the runtime).
    pub fn sync_now(&self) -> Result<(), StoreError> {
        self.db()?.sync()
    }

    // --- audit -----------------------------------------------------------------------------

    /// The last entry's seq and hash: where the next append continues the chain.
    pub async fn audit_head(&self) -> Result<Option<(u64, Hash)>, StoreError> {
        self.run(|db| Ok(db.audit_last()?.map(|s| (s.entry.seq, s.hash)))).await
    }

    /// Appends sealed entries in one batch, synced to disk before it returns (a group
    /// commit: one sync for every entry of the batch).
    pub async fn audit_append(&self, batch: Vec<SealedEntry>) -> Result<(), StoreError> {
        self.write(move |db| db.audit_append(&batch)).await
    }

    /// Up to `limit` entries from `from_seq` on.
    pub async fn audit_range(&self, from_seq: u64, limit: usize) -> Result<Vec<SealedEntry>, StoreError> {
        self.run(move |db| db.audit_from(from_seq, limit).into_iter().collect()).await
    }

    /// Checks the chain: hashes, links, seals (with a key) and signed checkpoints, from the
    /// start or from the newest checkpoint at or before `from` (a range check), up to `to`
    /// (the end when `None`, where a missing tail is looked for). An entry that cannot even
    /// be decoded is a break too.
    pub async fn verify_chain(
        &self,
        key: Option<AuditKey>,
        checkpoints: Vec<Checkpoint>,
        from: Option<u64>,
        to: Option<u64>,
    ) -> Result<Result<Verified, ChainBreak>, StoreError> {
        self.run(move |db| {
            let sealed = key.is_some();
            let check = match (key, from) {
                (Some(k), Some(f)) => ChainCheck::from_checkpoint(k, &checkpoints, f.saturating_sub(1)),
                (k, _) => ChainCheck::new(k, &checkpoints),
            };
            let mut check = match check {
                Ok(c) => c,
                Err(b) => return Ok(Err(b)),
            };
            let first = check.starts_after() + 1;
            let mut broken = None;
            let mut last = first.saturating_sub(1);
            db.audit_for_each(first, |item| {
                if let Ok(e) = &item
                    && to.is_some_and(|t| e.entry.seq > t)
                {
                    return false;
                }
                let step = match item {
                    Ok(entry) => {
                        last = entry.entry.seq;
                        check.push(&entry)
                    }
                    Err(e) => Err(check.undecodable(e.to_string())),
                };
                match step {
                    Ok(()) => true,
                    Err(b) => {
                        broken = Some(b);
                        false
                    }
                }
            })?;
            if let Some(b) = broken {
                return Ok(Err(b));
            }
            let verified = Verified { first, last, sealed, checkpoints: checkpoints.len() };
            if to.is_some() {
                return Ok(Ok(verified));
            }
            Ok(check.finish().map(|_| verified))
        })
        .await
    }

    /// Entries matching `filter`, newest first, below seq `before` (the cursor of the page
    /// before), at most `limit`; and the cursor of the next page when there may be one.
    /// At most [`AUDIT_SCAN`] entries are read per call, so a rare filter over a long chain
    /// answers in pages too.
    pub async fn audit_query(
        &self,
        filter: AuditFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<SealedEntry>, Option<u64>), StoreError> {
        self.run(move |db| {
            let mut found = Vec::new();
            let mut full = false;
            let last = db.audit_before(before, AUDIT_SCAN, |e| {
                if filter.matches(&e.entry) {
                    found.push(e);
                }
                full = found.len() >= limit;
                !full
            })?;
            // More may follow unless the scan reached the first entry.
            let next = last.filter(|&seq| seq > 1);
            let next = if full { found.last().map(|e| e.entry.seq).filter(|&s| s > 1) } else { next };
            Ok((found, next))
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
        self.write(move |db| db.audit_put_raw(seq, &bytes)).await
    }

    /// Removes entry `seq` as stored: for tamper tests, which must see the chain notice.
    pub async fn audit_remove_raw(&self, seq: u64) -> Result<(), StoreError> {
        self.write(move |db| db.audit_remove_raw(seq)).await
    }

    // --- approvals ------------------------------------------------------------------------

    /// Stores an approval request (synced); the pending index follows its status.
    pub async fn put_approval(&self, approval: Approval) -> Result<(), StoreError> {
        self.write(move |db| db.put_approval(&approval)).await
    }

    pub async fn approval(&self, id: u64) -> Result<Option<Approval>, StoreError> {
        self.run(move |db| db.approval(id)).await
    }

    /// Every pending request, oldest first.
    pub async fn pending_approvals(&self) -> Result<Vec<Approval>, StoreError> {
        self.run(|db| db.pending_approvals()).await
    }

    /// The newest `limit` requests, whatever their status, oldest first.
    pub async fn recent_approvals(&self, limit: usize) -> Result<Vec<Approval>, StoreError> {
        self.run(move |db| db.recent_approvals(limit)).await
    }

    // --- service level objectives ------------------------------------------------------------

    /// Counts `count` in the one-minute bucket of `at_unix_ms` of objective `slo`.
    pub async fn slo_add(&self, slo: SloKind, at_unix_ms: u64, count: Count) -> Result<(), StoreError> {
        let bucket = at_unix_ms - at_unix_ms % warden_core::slo::BUCKET_MS;
        self.write(move |db| db.slo_add(slo.as_str(), bucket, count)).await
    }

    /// The objective's buckets within its window up to `now`, forgetting older ones.
    pub async fn slo_buckets(&self, slo: SloKind, now_unix_ms: u64) -> Result<Buckets, StoreError> {
        let from = now_unix_ms.saturating_sub(warden_core::slo::SLO_WINDOW_MS + warden_core::slo::BUCKET_MS);
        self.write(move |db| db.slo_buckets(slo.as_str(), from, from)).await
    }

    /// Every incident and every playbook run that can be read (the other objectives are
    /// counted from them; a record that cannot be decoded is left out, not fatal).
    pub async fn incidents_and_runs(&self) -> Result<(Vec<Incident>, Vec<RunRecord>), StoreError> {
        self.run(|db| db.all_incidents_and_runs()).await
    }

    /// The writes the store holds in memory until they are flushed to its tables (0 while
    /// degraded).
    pub fn write_buffer_bytes(&self) -> u64 {
        self.db().map_or(0, |db| db.write_buffer_bytes())
    }

    /// How many incident and run writes this handle's process has made: unchanged, the
    /// records read before are still all there is.
    pub fn record_writes(&self) -> u64 {
        self.inner.writes.lock().unwrap_or_else(|p| p.into_inner()).count
    }

    /// The incidents and runs written after write number `seen` (each once), and
    /// the number of the last; `None` when some of them are no longer kept (read them all).
    pub fn written_since(&self, seen: u64) -> Option<(Vec<Written>, u64)> {
        let w = self.inner.writes.lock().unwrap_or_else(|p| p.into_inner());
        let oldest = w.last.front().map_or(w.count + 1, |(n, _)| *n);
        if seen > w.count || oldest > seen + 1 {
            return None;
        }
        let out: std::collections::BTreeSet<Written> =
            w.last.iter().filter(|(n, _)| *n > seen).map(|(_, what)| *what).collect();
        Some((out.into_iter().collect(), w.count))
    }

    // --- incidents and runs ---------------------------------------------------------------

    /// The id of the store's audit chain, if it was given one, and whether it was given to
    /// a chain older than ids (its unnamed checkpoints are its own).
    pub async fn audit_chain_id(&self) -> Result<Option<(String, bool)>, StoreError> {
        self.run(|db| Ok(db.audit_chain_id()?.map(|id| (id, db.audit_chain_adopted().unwrap_or(false))))).await
    }

    /// Names the store's audit chain (synced); `adopted`: a chain older than ids.
    pub async fn set_audit_chain_id(&self, id: String, adopted: bool) -> Result<(), StoreError> {
        self.write(move |db| db.set_audit_chain_id(&id, adopted)).await
    }

    /// The next value of a durable counter, starting at 1.
    pub async fn next_id(&self, counter: Counter) -> Result<u64, StoreError> {
        self.write(move |db| db.next_id(counter.name())).await
    }

    pub async fn put_incident(&self, incident: Incident) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        self.write(move |db| {
            let written = db.put_incident(&incident);
            inner.wrote(Written::Incident(incident.id));
            written
        })
        .await
    }

    pub async fn open_incidents(&self) -> Result<Vec<Incident>, StoreError> {
        self.run(|db| db.open_incidents()).await
    }

    pub async fn incident(&self, id: u64) -> Result<Option<Incident>, StoreError> {
        self.run(move |db| db.incident(id)).await
    }

    /// The last `limit` incidents, oldest first.
    pub async fn recent_incidents(&self, limit: usize) -> Result<Vec<Incident>, StoreError> {
        self.run(move |db| db.recent_incidents(limit)).await
    }

    /// The newest `limit` incidents `keep` takes, newest first, none detected before
    /// `since_unix_ms`.
    pub async fn newest_incidents_where(
        &self,
        limit: usize,
        since_unix_ms: Option<u64>,
        keep: impl Fn(&Incident) -> bool + Send + 'static,
    ) -> Result<Vec<Incident>, StoreError> {
        self.run(move |db| db.newest_incidents_where(limit, since_unix_ms, keep)).await
    }

    pub async fn put_run(&self, run: RunRecord) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        self.write(move |db| {
            let written = db.put_run(&run);
            inner.wrote(Written::Run(run.run_id));
            written
        })
        .await
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
            Ok(HealerStats { last_runs, summary, per_mode: warden_core::incident::per_mode(&incidents) })
        })
        .await
    }
}

/// What `warden store recover` did.
#[derive(Debug, Clone)]
pub struct Repair {
    /// A copy of the store as it was, kept beside it.
    pub backup: PathBuf,
    /// The bad batches cut out of the journals.
    pub cut: Vec<journal::Corruption>,
    /// What those batches held, in warden's words (`audit entry 7`, `incident 3`).
    pub lost: Vec<String>,
}

/// Repairs a store whose journal is corrupt: copies it aside, cuts every bad batch out
/// (keeping every intact batch before and after), opens it, and says what was lost. The
/// caller holds the data dir's lock; the store is not open.
pub fn repair(dir: &DataDir) -> Result<Repair, StoreError> {
    let io = |e: std::io::Error| StoreError::Io(Arc::new(e));
    let store = dir.store();
    let backup = dir.root().join(format!("store.before-recover-{}", warden_core::time::now_unix_ms()));
    copy_dir(&store, &backup).map_err(io)?;
    let cut = journal::cut_corruption(&store).map_err(io)?;
    let db = Db::open(&store)?;
    let names = db.keyspace_ids();
    let lost = cut
        .iter()
        .flat_map(|c| c.items.iter())
        .map(|item| {
            let seq = <[u8; 8]>::try_from(item.key.as_slice()).map(u64::from_be_bytes);
            match (names.iter().find(|(id, _)| *id == item.keyspace_id).map(|(_, n)| *n), seq) {
                (Some("audit"), Ok(n)) => format!("audit entry {n}"),
                (Some("incidents" | "incidents_open"), Ok(n)) => format!("incident {n}"),
                (Some("runs" | "runs_active"), Ok(n)) => format!("playbook run {n}"),
                (Some(name), _) => format!("{name} key {}", String::from_utf8_lossy(&item.key)),
                (None, _) => format!("keyspace #{} key {}", item.keyspace_id, hex::encode(&item.key)),
            }
        })
        .collect();
    db.sync()?;
    Ok(Repair { backup, cut, lost })
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::audit::{AuditActor, AuditEntry, AuditRecord, DecisionKind, EntryKind, GENESIS, seal};

    fn key() -> AuditKey {
        AuditKey::from_bytes([3; 32])
    }

    /// The whole chain checked with the key and no checkpoints: how many entries.
    async fn verify(s: &Store) -> Result<u64, ChainBreak> {
        s.verify_chain(Some(key()), vec![], None, None).await.expect("readable").map(|v| v.last)
    }

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
                let sealed = seal(e, prev, &key()).expect("seal");
                prev = sealed.hash;
                s.audit_append(vec![sealed]).await.expect("append");
            }
            s.sync_now().expect("sync");
        }
        let s = Store::open(&dd).expect("reopen");
        assert_eq!(s.next_id(Counter::Incident).await.expect("id"), 3);
        assert_eq!(verify(&s).await, Ok(3));
        assert_eq!(s.audit_head().await.expect("head").map(|(seq, _)| seq), Some(3));
        assert_eq!(s.audit_range(2, 10).await.expect("range").len(), 2);
    }

    /// Readers follow the writes of incidents and runs: each written record once, and
    /// told to read everything when they fell further behind than the writes kept.
    #[tokio::test]
    async fn test_readers_follow_the_records_written_since_they_looked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&DataDir::new(dir.path())).expect("open");
        assert_eq!(s.written_since(0), Some((vec![], 0)), "nothing written yet");
        let svc = warden_core::config::ServiceName::parse("api").expect("name");
        let run = |id| RunRecord::started(id, None, "restart_service", &svc, 1_000);
        s.put_run(run(1)).await.expect("put");
        s.put_run(run(2)).await.expect("put");
        s.put_run(run(1)).await.expect("put");
        assert_eq!(s.written_since(0), Some((vec![Written::Run(1), Written::Run(2)], 3)), "each once");
        assert_eq!(s.written_since(2), Some((vec![Written::Run(1)], 3)));
        assert_eq!(s.written_since(3), Some((vec![], 3)));
        assert_eq!(s.written_since(4), None, "ahead of the store: read everything");
        for _ in 0..WRITES_KEPT {
            s.put_run(run(3)).await.expect("put");
        }
        assert_eq!(s.written_since(0), None, "fell behind: read everything");
        assert_eq!(s.written_since(3), Some((vec![Written::Run(3)], 3 + WRITES_KEPT as u64)));
    }

    /// The store's memory is bounded: once a keyspace's writes exceed its memtable, they
    /// go to a table on disk (fjall's default would keep 64 MiB per keyspace in memory).
    #[tokio::test]
    async fn test_writes_beyond_the_memtable_are_flushed_to_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&DataDir::new(dir.path())).expect("open");
        let entry = vec![7u8; 4096];
        let entries = 2 * db::MEMTABLE_BYTES / entry.len() as u64 + 16;
        for seq in 1..=entries {
            s.audit_put_raw(seq, entry.clone()).await.expect("put");
        }
        let tables = || s.inner.db.read().ok().and_then(|g| g.as_ref().map(|db| db.audit_tables())).unwrap_or(0);
        let started = std::time::Instant::now();
        while tables() == 0 && started.elapsed() < Duration::from_secs(60) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(tables() > 0, "{} KiB written, still all in memory", entries * 4);
        assert_eq!(s.audit_raw(entries).await.expect("read"), Some(entry), "a flushed entry reads back");
    }

    #[tokio::test]
    async fn test_undecodable_entry_is_a_named_break() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&DataDir::new(dir.path())).expect("open");
        let sealed = seal(AuditEntry { seq: 1, ts_unix_ms: 1, record: record(), prev_hash: GENESIS }, GENESIS, &key())
            .expect("seal");
        s.audit_append(vec![sealed]).await.expect("append");
        s.audit_put_raw(2, vec![0xff; 3]).await.expect("garbage");
        let b = verify(&s).await.expect_err("garbage breaks the chain");
        assert_eq!((b.position, b.seq), (1, 2), "{b}");
    }
}
