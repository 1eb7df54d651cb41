//! AuditWriter: appends hash-chained entries to the store, synced to disk before it answers.
//!
//! It is the only writer of the chain, so appends are serialised by its mailbox. It reloads
//! the chain head from the store when it starts, so a restart continues the same chain.

use crate::addr::{Addr, SendError};
use crate::metrics::Metrics;
use crate::registry::{ActorRegistry, Registration};
use crate::store::{Store, StoreError};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::time::Duration;
use warden_core::audit::{self, AuditEntry, AuditError, AuditRecord, GENESIS, Hash, SealedEntry};

pub const PATH: &str = "governance/audit_writer";
/// An append is a seal and one synced write; a slow disk gets generous time.
const APPEND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    #[error("audit writer unavailable: {0}")]
    Unavailable(#[from] SendError),
    #[error(transparent)]
    Seal(#[from] AuditError),
    #[error("cannot store audit entry: {0}")]
    Store(#[from] StoreError),
}

pub enum AuditMsg {
    Append(Box<AuditRecord>, RpcReplyPort<Result<SealedEntry, AppendError>>),
}

impl Addr<AuditWriter> {
    pub fn at() -> Self {
        Addr::new(PATH)
    }

    /// Seals `record` onto the chain; answers once it is on disk.
    pub async fn append(&self, record: AuditRecord) -> Result<SealedEntry, AppendError> {
        self.ask(APPEND_TIMEOUT, |tx| AuditMsg::Append(Box::new(record), tx)).await?
    }
}

pub struct AuditWriter {
    pub store: Store,
    pub metrics: Metrics,
    pub registry: ActorRegistry,
}

pub struct State {
    /// Where the chain ends, once it could be read: nothing is appended before, so a store
    /// that cannot be read never forks the chain.
    head: Option<(u64, Hash)>,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for AuditWriter {
    type Msg = AuditMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<AuditMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        let head = match self.store.audit_head().await {
            Ok(head) => Some(head.unwrap_or((0, GENESIS))),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the audit chain's head yet; appends wait for it");
                None
            }
        };
        Ok(State { head, _reg: self.registry.started(PATH) })
    }

    async fn handle(&self, _: ActorRef<AuditMsg>, msg: AuditMsg, st: &mut State) -> Result<(), ActorProcessingErr> {
        let AuditMsg::Append(record, reply) = msg;
        let result = self.append(st, *record).await;
        let _ = reply.send(result);
        Ok(())
    }
}

impl AuditWriter {
    async fn append(&self, st: &mut State, record: AuditRecord) -> Result<SealedEntry, AppendError> {
        let (last_seq, last_hash) = match st.head {
            Some(head) => head,
            None => {
                let head = self.store.audit_head().await?.unwrap_or((0, GENESIS));
                st.head = Some(head);
                head
            }
        };
        let entry = AuditEntry {
            seq: last_seq + 1,
            ts_unix_ms: warden_core::time::now_unix_ms(),
            record,
            prev_hash: last_hash,
        };
        let sealed = audit::seal(entry, last_hash)?;
        if let Err(e) = self.store.audit_append(sealed.clone()).await {
            // The append may or may not have reached the disk: read the head again before the
            // next one, so the chain continues from what is really stored.
            st.head = None;
            return Err(e.into());
        }
        st.head = Some((sealed.entry.seq, sealed.hash));
        self.metrics.audit_entries.inc();
        Ok(sealed)
    }
}
