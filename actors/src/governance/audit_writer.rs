//! AuditWriter: appends sealed, hash-chained entries to the store, synced to disk before it
//! answers, with group commit.
//!
//! The actor hands appends to its committer task, which owns the chain's head: it takes
//! every append waiting (up to [`MAX_BATCH`]), seals them in order and stores them in one
//! batch with one sync, then answers each. A burst of decisions costs one sync, not one
//! each, and no entry is answered before it is on disk.
//!
//! When it starts, the committer checks the whole chain (hashes, links, seals, the signed
//! checkpoints) before it appends anything; a chain that fails is named in an alert and
//! marks [`ChainTrust`] broken, so the gatekeeper grants nothing of tier 2 or more. Once a
//! second at most, and when asked (shutdown), it signs the head into a checkpoint.

use super::seal::{AuditSeal, ChainTrust, SealError};
use crate::addr::{AbortOnDrop, Addr, SendError};
use crate::metrics::Metrics;
use crate::registry::{ActorRegistry, Registration};
use crate::store::{Store, StoreError};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::time::Duration;
use tokio::sync::mpsc;
use warden_core::audit::{self, AuditEntry, AuditError, AuditRecord, Checkpoint, GENESIS, Hash, SealedEntry};

pub const PATH: &str = "governance/audit_writer";
/// An append is a seal and one synced write; a slow disk gets generous time.
const APPEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Appends sealed and stored together at most.
pub const MAX_BATCH: usize = 512;
/// How often the head is signed into a checkpoint (when it moved).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    #[error("audit writer unavailable: {0}")]
    Unavailable(#[from] SendError),
    #[error(transparent)]
    Seal(#[from] AuditError),
    #[error("cannot store audit entry: {0}")]
    Store(#[from] StoreError),
    #[error("no audit key: {0}")]
    NoKey(String),
    #[error("cannot write the checkpoint: {0}")]
    Checkpoint(#[from] SealError),
}

type AppendReply = RpcReplyPort<Result<SealedEntry, AppendError>>;
type CheckpointReply = RpcReplyPort<Result<Option<Checkpoint>, AppendError>>;

pub enum AuditMsg {
    Append(Box<AuditRecord>, AppendReply),
    /// Sign the head now (at shutdown).
    Checkpoint(CheckpointReply),
}

impl Addr<AuditWriter> {
    pub fn at() -> Self {
        Addr::new(PATH)
    }

    /// Seals `record` onto the chain; answers once it is on disk.
    pub async fn append(&self, record: AuditRecord) -> Result<SealedEntry, AppendError> {
        self.ask(APPEND_TIMEOUT, |tx| AuditMsg::Append(Box::new(record), tx)).await?
    }

    /// Signs the chain's head into a checkpoint now; `None` for an empty chain.
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, AppendError> {
        self.ask(APPEND_TIMEOUT, AuditMsg::Checkpoint).await?
    }
}

pub struct AuditWriter {
    pub store: Store,
    /// The key and checkpoint file; `Err` when the key cannot be had (then nothing is
    /// appended, and the gatekeeper refuses what needs an entry).
    pub seal: Result<AuditSeal, SealError>,
    pub trust: ChainTrust,
    pub metrics: Metrics,
    pub registry: ActorRegistry,
}

pub struct State {
    jobs: mpsc::UnboundedSender<Job>,
    _committer: AbortOnDrop,
    _reg: Registration,
}

enum Job {
    Append(AuditRecord, AppendReply),
    Checkpoint(CheckpointReply),
}

#[ractor::async_trait]
impl Actor for AuditWriter {
    type Msg = AuditMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<AuditMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        let (jobs, rx) = mpsc::unbounded_channel();
        let committer = Committer {
            store: self.store.clone(),
            seal: self.seal.clone(),
            trust: self.trust.clone(),
            metrics: self.metrics.clone(),
            head: None,
            signed: None,
            unsure: false,
        };
        Ok(State { jobs, _committer: AbortOnDrop(tokio::spawn(committer.run(rx))), _reg: self.registry.started(PATH) })
    }

    async fn handle(&self, _: ActorRef<AuditMsg>, msg: AuditMsg, st: &mut State) -> Result<(), ActorProcessingErr> {
        // A job the committer cannot take (it ended) drops its reply: the caller sees the
        // writer fail and fails closed.
        let _ = st.jobs.send(match msg {
            AuditMsg::Append(record, reply) => Job::Append(*record, reply),
            AuditMsg::Checkpoint(reply) => Job::Checkpoint(reply),
        });
        Ok(())
    }
}

/// The task that owns the chain's head.
struct Committer {
    store: Store,
    seal: Result<AuditSeal, SealError>,
    trust: ChainTrust,
    metrics: Metrics,
    /// Where the chain ends, once read: nothing is appended before, so a store that cannot
    /// be read never forks the chain.
    head: Option<(u64, Hash)>,
    /// The head last signed into a checkpoint.
    signed: Option<u64>,
    /// A batch failed to sync: what the store holds past the last good batch may not be on
    /// disk, so no checkpoint vouches for it until a batch syncs again.
    unsure: bool,
}

impl Committer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        self.check_chain().await;
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                job = rx.recv() => {
                    let Some(job) = job else { return };
                    let mut appends = Vec::new();
                    let mut checkpoint = None;
                    match job {
                        Job::Append(r, reply) => appends.push((r, reply)),
                        Job::Checkpoint(reply) => checkpoint = Some(reply),
                    }
                    // Writers answered by the last batch are about to send their next
                    // append: let them run first, so it joins this batch, not the next.
                    tokio::task::yield_now().await;
                    // Everything already waiting goes into the same batch.
                    while checkpoint.is_none() && appends.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(Job::Append(r, reply)) => appends.push((r, reply)),
                            Ok(Job::Checkpoint(reply)) => checkpoint = Some(reply),
                            Err(_) => break,
                        }
                    }
                    if !appends.is_empty() {
                        self.commit(appends).await;
                    }
                    if let Some(reply) = checkpoint {
                        let _ = reply.send(self.sign_head().await);
                    }
                }
                _ = tick.tick() => {
                    if let Err(e) = self.sign_head().await {
                        tracing::warn!(error = %e, "cannot sign the audit chain's head");
                    }
                }
            }
        }
    }

    /// The whole chain against its seals and checkpoints, before anything is appended.
    async fn check_chain(&mut self) {
        let seal = match &self.seal {
            Ok(s) => s.clone(),
            Err(e) => {
                let why = format!("audit key unavailable: {e}");
                tracing::error!(error = %e, "alert: audit key unavailable; tier 2+ actions are refused");
                self.trust.set_broken(why);
                return;
            }
        };
        let checkpoints = match seal.checkpoints() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "alert: the audit checkpoints are unreadable; tier 2+ actions are refused");
                self.trust.set_broken(format!("audit checkpoints unreadable: {e}"));
                return;
            }
        };
        self.signed = checkpoints.iter().map(|c| c.seq).max();
        match self.store.verify_chain(Some(seal.key().clone()), checkpoints, None, None).await {
            Ok(Ok(v)) => {
                tracing::info!(entries = v.last, checkpoints = v.checkpoints, "audit chain verified");
                if v.last > 0 && v.checkpoints == 0 {
                    // Young chains have none yet; an old one without any lost its file.
                    tracing::warn!(
                        entries = v.last,
                        "the audit chain has entries but no checkpoint: a cut tail cannot be detected \
                         until the next one is written (was the checkpoint file lost?)"
                    );
                }
                self.trust.set_trusted();
            }
            Ok(Err(b)) => {
                tracing::error!(break_at = %b, "alert: the audit chain fails verification; tier 2+ actions are refused");
                self.trust.set_broken(format!("audit chain fails verification: {b}"));
            }
            Err(e) => {
                tracing::error!(error = %e, "alert: the audit chain cannot be read; tier 2+ actions are refused");
                self.trust.set_broken(format!("audit chain unreadable: {e}"));
            }
        }
    }

    async fn head(&mut self) -> Result<(u64, Hash), StoreError> {
        match self.head {
            Some(h) => Ok(h),
            None => {
                let h = self.store.audit_head().await?.unwrap_or((0, GENESIS));
                self.head = Some(h);
                Ok(h)
            }
        }
    }

    /// Seals and stores one batch with one sync, then answers each append.
    async fn commit(&mut self, appends: Vec<(AuditRecord, AppendReply)>) {
        let seal = match &self.seal {
            Ok(s) => s.clone(),
            Err(e) => {
                for (_, reply) in appends {
                    let _ = reply.send(Err(AppendError::NoKey(e.to_string())));
                }
                return;
            }
        };
        let (mut seq, mut prev) = match self.head().await {
            Ok(h) => h,
            Err(e) => {
                for (_, reply) in appends {
                    let _ = reply.send(Err(e.clone().into()));
                }
                return;
            }
        };
        let now = warden_core::time::now_unix_ms();
        let mut sealed = Vec::with_capacity(appends.len());
        let mut replies = Vec::with_capacity(appends.len());
        for (record, reply) in appends {
            let entry = AuditEntry { seq: seq + 1, ts_unix_ms: now, record, prev_hash: prev };
            match audit::seal(entry, prev, seal.key()) {
                Ok(s) => {
                    seq = s.entry.seq;
                    prev = s.hash;
                    sealed.push(s);
                    replies.push(reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e.into()));
                }
            }
        }
        match self.store.audit_append(sealed.clone()).await {
            Ok(()) => {
                self.head = Some((seq, prev));
                self.unsure = false;
                self.metrics.audit_entries.inc_by(sealed.len() as u64);
                for (s, reply) in sealed.into_iter().zip(replies) {
                    let _ = reply.send(Ok(s));
                }
            }
            Err(e) => {
                // The batch may or may not have reached the disk: read the head again
                // before the next one, so the chain continues from what is really stored.
                self.head = None;
                self.unsure = true;
                for reply in replies {
                    let _ = reply.send(Err(e.clone().into()));
                }
            }
        }
    }

    /// Signs the head when it moved since the last checkpoint.
    async fn sign_head(&mut self) -> Result<Option<Checkpoint>, AppendError> {
        let Ok(seal) = self.seal.clone() else { return Ok(None) };
        if self.unsure {
            return Ok(None);
        }
        let (seq, hash) = self.head().await?;
        if seq == 0 || self.signed == Some(seq) {
            return Ok(None);
        }
        let cp = tokio::task::spawn_blocking(move || seal.checkpoint(seq, hash))
            .await
            .map_err(|e| AppendError::Store(StoreError::Task(std::sync::Arc::new(e))))??;
        self.signed = Some(seq);
        Ok(Some(cp))
    }
}
