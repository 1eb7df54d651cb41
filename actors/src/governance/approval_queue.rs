//! ApprovalQueue: tier 3 requests waiting for an approver (production mode).
//!
//! Holds what the gatekeeper parked, with the audit entry of its pending decision. The
//! approve/reject flow through the API builds on this.

use crate::context::{Ctx, names};
use crate::registry::Registration;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use warden_core::policy::ActionRequest;

#[derive(Debug, Clone, Serialize)]
pub struct PendingRequest {
    pub request: ActionRequest,
    pub audit_seq: u64,
    pub since_unix_ms: u64,
}

pub enum ApprovalMsg {
    Hold(Box<ActionRequest>, u64),
    List(RpcReplyPort<Vec<PendingRequest>>),
}

pub struct ApprovalQueue {
    pub ctx: Ctx,
}

pub struct State {
    pending: Vec<PendingRequest>,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for ApprovalQueue {
    type Msg = ApprovalMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<ApprovalMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        Ok(State { pending: Vec::new(), _reg: self.ctx.registry.started(names::APPROVAL_QUEUE) })
    }

    async fn handle(
        &self,
        _: ActorRef<ApprovalMsg>,
        msg: ApprovalMsg,
        st: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ApprovalMsg::Hold(request, audit_seq) => {
                tracing::info!(action = request.action, target = request.target, audit_seq, "approval requested");
                st.pending.push(PendingRequest {
                    request: *request,
                    audit_seq,
                    since_unix_ms: warden_core::now_unix_ms(),
                });
            }
            ApprovalMsg::List(reply) => {
                let _ = reply.send(st.pending.clone());
            }
        }
        Ok(())
    }
}
