//! AuditWriter: appends hash-chained entries to the store, synced to disk before it answers.
//!
//! It is the only writer of the chain, so appends are serialised by its mailbox. It reloads
//! the chain head from the store when it starts, so a restart continues the same chain.

use crate::context::{Ctx, names};
use crate::registry::Registration;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use warden_core::audit::{self, AuditEntry, AuditRecord, GENESIS, Hash, SealedEntry};

pub enum AuditMsg {
    Append(Box<AuditRecord>, RpcReplyPort<Result<SealedEntry, String>>),
}

pub struct AuditWriter {
    pub ctx: Ctx,
}

pub struct State {
    last_seq: u64,
    last_hash: Hash,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for AuditWriter {
    type Msg = AuditMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<AuditMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        let store = self.ctx.store.clone();
        let head = tokio::task::spawn_blocking(move || store.audit_last()).await??;
        let (last_seq, last_hash) = head.map(|s| (s.entry.seq, s.hash)).unwrap_or((0, GENESIS));
        Ok(State { last_seq, last_hash, _reg: self.ctx.registry.started(names::AUDIT_WRITER) })
    }

    async fn handle(&self, _: ActorRef<AuditMsg>, msg: AuditMsg, st: &mut State) -> Result<(), ActorProcessingErr> {
        let AuditMsg::Append(record, reply) = msg;
        let entry = AuditEntry {
            seq: st.last_seq + 1,
            ts_unix_ms: warden_core::now_unix_ms(),
            record: *record,
            prev_hash: st.last_hash,
        };
        let result = match audit::seal(entry, st.last_hash) {
            Err(e) => Err(e.to_string()),
            Ok(sealed) => {
                let store = self.ctx.store.clone();
                let s = sealed.clone();
                match tokio::task::spawn_blocking(move || store.audit_append(&s)).await {
                    Ok(Ok(())) => {
                        st.last_seq = sealed.entry.seq;
                        st.last_hash = sealed.hash;
                        self.ctx.metrics.audit_entries.inc();
                        Ok(sealed)
                    }
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        let _ = reply.send(result);
        Ok(())
    }
}
