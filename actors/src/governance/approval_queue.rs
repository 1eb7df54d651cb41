//! ApprovalQueue: tier 3 requests waiting for an approver (production mode).
//!
//! Holds what the gatekeeper parked, with the audit entry of its pending decision. The
//! approve/reject flow through the API (governance issue) builds on this.

use crate::addr::{Addr, SendError};
use crate::registry::{ActorRegistry, Registration};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde::Serialize;
use warden_core::policy::ActionRequest;

pub const PATH: &str = "governance/approval_queue";

#[derive(Debug, Clone, Serialize)]
pub struct PendingRequest {
    pub request: ActionRequest,
    pub audit_seq: u64,
    pub since_unix_ms: u64,
}

pub enum ApprovalMsg {
    Hold(Box<ActionRequest>, u64),
}

impl Addr<ApprovalQueue> {
    pub fn at() -> Self {
        Addr::new(PATH)
    }

    /// Parks a request whose pending decision is audit entry `audit_seq`.
    pub fn hold(&self, request: ActionRequest, audit_seq: u64) -> Result<(), SendError> {
        self.tell(ApprovalMsg::Hold(Box::new(request), audit_seq))
    }
}

pub struct ApprovalQueue {
    pub registry: ActorRegistry,
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
        Ok(State { pending: Vec::new(), _reg: self.registry.started(PATH) })
    }

    async fn handle(
        &self,
        _: ActorRef<ApprovalMsg>,
        msg: ApprovalMsg,
        st: &mut State,
    ) -> Result<(), ActorProcessingErr> {
        let ApprovalMsg::Hold(request, audit_seq) = msg;
        tracing::info!(action = request.action, target = request.target, audit_seq, "approval requested");
        st.pending.push(PendingRequest {
            request: *request,
            audit_seq,
            since_unix_ms: warden_core::time::now_unix_ms(),
        });
        Ok(())
    }
}
