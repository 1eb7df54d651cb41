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
use warden_core::audit::{
    self, AuditEntry, AuditError, AuditRecord, ChainId, Checkpoint, CheckpointLine, GENESIS, Hash, SealedEntry,
};

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
    #[error("{0}")]
    Refused(String),
}

type AppendReply = RpcReplyPort<Result<SealedEntry, AppendError>>;
type CheckpointReply = RpcReplyPort<Result<Option<Checkpoint>, AppendError>>;

pub enum AuditMsg {
    Append(Box<AuditRecord>, AppendReply),
    /// Sign the head now (at shutdown).
    Checkpoint(CheckpointReply),
    /// Retire an earlier chain of this data dir (its store was reset on purpose), record
    /// that on the chain, and check the chain again; answered with the trust it leaves.
    Retire {
        chain: String,
        by: String,
        reason: String,
        reply: RetireReply,
    },
}

type RetireReply = RpcReplyPort<Result<Option<String>, AppendError>>;

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

    /// Retires chain `chain` of this data dir (reset on purpose) and checks the chain again:
    /// `None` when it is trusted then, else why not.
    pub async fn retire(&self, chain: String, by: String, reason: String) -> Result<Option<String>, AppendError> {
        self.ask(APPEND_TIMEOUT, |reply| AuditMsg::Retire { chain, by, reason, reply }).await?
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
    /// The data dir: with the chain's id, what its checkpoints name.
    pub data_dir: std::path::PathBuf,
}

pub struct State {
    jobs: mpsc::UnboundedSender<Job>,
    _committer: AbortOnDrop,
    _reg: Registration,
}

enum Job {
    Append(AuditRecord, AppendReply),
    Checkpoint(CheckpointReply),
    Retire { chain: String, by: String, reason: String, reply: RetireReply },
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
            data_dir: self.data_dir.clone(),
            chain: None,
        };
        Ok(State { jobs, _committer: AbortOnDrop(tokio::spawn(committer.run(rx))), _reg: self.registry.started(PATH) })
    }

    async fn handle(&self, _: ActorRef<AuditMsg>, msg: AuditMsg, st: &mut State) -> Result<(), ActorProcessingErr> {
        // A job the committer cannot take (it ended) drops its reply: the caller sees the
        // writer fail and fails closed.
        let _ = st.jobs.send(match msg {
            AuditMsg::Append(record, reply) => Job::Append(*record, reply),
            AuditMsg::Checkpoint(reply) => Job::Checkpoint(reply),
            AuditMsg::Retire { chain, by, reason, reply } => Job::Retire { chain, by, reason, reply },
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
    data_dir: std::path::PathBuf,
    /// The chain's identity, once read or made (what its checkpoints name).
    chain: Option<ChainId>,
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
                        Job::Retire { chain, by, reason, reply } => {
                            let _ = reply.send(self.retire(chain, by, reason).await);
                            continue;
                        }
                    }
                    // Writers answered by the last batch are about to send their next
                    // append: let them run first, so it joins this batch, not the next.
                    tokio::task::yield_now().await;
                    // Everything already waiting goes into the same batch.
                    while checkpoint.is_none() && appends.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(Job::Append(r, reply)) => appends.push((r, reply)),
                            Ok(Job::Checkpoint(reply)) => checkpoint = Some(reply),
                            Ok(Job::Retire { chain, by, reason, reply }) => {
                                let _ = reply.send(self.retire(chain, by, reason).await);
                            }
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
        let (chain, adopt) = match super::seal::chain_identity(&self.store, &self.data_dir, true).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "alert: the audit chain cannot be read; tier 2+ actions are refused");
                self.trust.set_broken(format!("audit chain unreadable: {e}"));
                return;
            }
        };
        self.chain = Some(chain.clone());
        let checkpoints = match seal.book(&chain, adopt) {
            Ok(Ok(c)) => c,
            Ok(Err(b)) => {
                tracing::error!(break_at = %b, "alert: the audit chain fails verification; tier 2+ actions are refused");
                self.trust.set_broken(format!("audit chain fails verification: {b}"));
                return;
            }
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

    /// Retires chain `id` of this data dir: only a chain the checkpoints show gone (not this
    /// store's own), signed into the checkpoint file, on this chain, then the chain checked
    /// again. The trust it leaves (`None`: trusted).
    async fn retire(&mut self, id: String, by: String, reason: String) -> Result<Option<String>, AppendError> {
        let seal = self.seal.clone().map_err(|e| AppendError::NoKey(e.to_string()))?;
        let Some(me) = self.chain.clone() else {
            return Err(AppendError::Refused("the audit chain is not read yet; try again in a moment".into()));
        };
        if id == me.id {
            return Err(AppendError::Refused(format!(
                "chain {id} is this data dir's own, in use: it cannot be retired"
            )));
        }
        let known = seal.lines()?.iter().any(|l| {
            matches!(l, CheckpointLine::Checkpoint(c) if c.chain.as_ref().is_some_and(|c| c.id == id && c.data_dir == me.data_dir))
        });
        if !known {
            return Err(AppendError::Refused(format!(
                "no checkpoints of a chain {id} in this data dir ({}): nothing to retire",
                me.data_dir
            )));
        }
        let old = ChainId { id: id.clone(), data_dir: me.data_dir.clone() };
        let (s, r, b) = (seal.clone(), reason.clone(), by.clone());
        tokio::task::spawn_blocking(move || s.retire(&old, &b, &r))
            .await
            .map_err(|e| AppendError::Store(StoreError::Task(std::sync::Arc::new(e))))??;
        self.check_chain().await;
        if self.trust.broken().is_none() {
            let record = AuditRecord {
                kind: audit::EntryKind::Control,
                actor: audit::AuditActor::User(by.clone()),
                action: "retire_chain".into(),
                tier: 1,
                target: me.data_dir.clone(),
                rationale: format!("chain {id} of this data dir is gone on purpose: {reason}"),
                decision: audit::DecisionKind::Allow,
                outcome: Some(audit::OutcomeKind::Succeeded),
                detail: format!("this data dir's chain is {} now", me.id),
                incident_id: None,
                run_id: None,
            };
            let (tx, rx) = ractor::concurrency::oneshot();
            self.commit(vec![(record, tx.into())]).await;
            if let Ok(Err(e)) = rx.await {
                tracing::warn!(error = %e, "the retirement is signed into the checkpoints but not on the chain");
            }
        }
        Ok(self.trust.broken())
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
        // No checkpoint before the chain is known (it is read, or named, at start).
        let Some(chain) = self.chain.clone() else { return Ok(None) };
        let cp = tokio::task::spawn_blocking(move || seal.checkpoint(&chain, seq, hash))
            .await
            .map_err(|e| AppendError::Store(StoreError::Task(std::sync::Arc::new(e))))??;
        self.signed = Some(seq);
        Ok(Some(cp))
    }
}
