//! Gatekeeper: every tier ≥ 2 action asks it first.
//!
//! It evaluates the policy (pure, in warden-core), has the AuditWriter seal the decision
//! onto the chain — synced to disk — and only then answers. An allow comes back as a
//! [`Permit`], which nothing else can make; if the audit write fails, the answer is a deny
//! (fail closed). Outcomes of permitted actions are audited through it too.

use crate::approval_queue::ApprovalMsg;
use crate::audit_writer::AuditMsg;
use crate::context::{Ctx, names};
use crate::metrics::DecisionLabel;
use crate::registry::Registration;
use crate::rpc;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::time::Duration;
use warden_core::audit::{AuditRecord, DecisionKind, EntryKind, OutcomeKind};
use warden_core::permit::{AuditReceipt, Permit};
use warden_core::policy::{ActionRequest, RateHistory, Verdict, evaluate};

const AUDIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Rate-limit history kept per (action, target).
const HISTORY_KEEP: usize = 1000;

#[derive(Debug)]
pub enum GateAnswer {
    Granted(Permit),
    Denied { reason: String, audit_seq: Option<u64> },
    Pending { reason: String, audit_seq: u64 },
}

/// What happened when a permitted action ran.
#[derive(Debug, Clone)]
pub struct OutcomeReport {
    pub request: ActionRequest,
    pub outcome: OutcomeKind,
    pub detail: String,
}

pub enum GateMsg {
    Request(ActionRequest, RpcReplyPort<GateAnswer>),
    Outcome(Box<OutcomeReport>, RpcReplyPort<Result<u64, String>>),
    /// Fault injection: panic inside the handler.
    Crash,
}

pub struct Gatekeeper {
    pub ctx: Ctx,
}

pub struct State {
    history: RateHistory,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for Gatekeeper {
    type Msg = GateMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<GateMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        Ok(State { history: RateHistory::default(), _reg: self.ctx.registry.started(names::GATEKEEPER) })
    }

    async fn handle(&self, _: ActorRef<GateMsg>, msg: GateMsg, st: &mut State) -> Result<(), ActorProcessingErr> {
        match msg {
            GateMsg::Request(req, reply) => {
                let answer = self.decide(req, st).await;
                let _ = reply.send(answer);
            }
            GateMsg::Outcome(report, reply) => {
                let r = &report.request;
                let draft = AuditRecord {
                    kind: EntryKind::Outcome,
                    actor: r.actor.clone(),
                    action: r.action.clone(),
                    tier: r.tier.get(),
                    target: r.target.clone(),
                    rationale: r.rationale.clone(),
                    decision: DecisionKind::Allow,
                    outcome: Some(report.outcome),
                    detail: report.detail.clone(),
                    incident_id: r.incident_id,
                    run_id: r.run_id,
                };
                let _ = reply.send(self.append(draft).await.map(|s| s.entry.seq));
            }
            GateMsg::Crash => panic!("fault injection: gatekeeper crashed on command"),
        }
        Ok(())
    }
}

impl Gatekeeper {
    async fn append(&self, draft: AuditRecord) -> Result<warden_core::audit::SealedEntry, String> {
        rpc::ask(&self.ctx.name(names::AUDIT_WRITER), AUDIT_TIMEOUT, |tx| AuditMsg::Append(Box::new(draft), tx))
            .await
            .map_err(|e| e.to_string())?
    }

    async fn decide(&self, req: ActionRequest, st: &mut State) -> GateAnswer {
        let now = warden_core::now_unix_ms();
        let verdict = evaluate(&self.ctx.policies, req.clone(), now, &st.history);
        self.ctx
            .metrics
            .gate_decisions
            .get_or_create(&DecisionLabel { decision: format!("{:?}", verdict.kind()).to_lowercase() })
            .inc();
        let draft = AuditRecord {
            kind: EntryKind::Decision,
            actor: req.actor.clone(),
            action: req.action.clone(),
            tier: req.tier.get(),
            target: req.target.clone(),
            rationale: req.rationale.clone(),
            decision: verdict.kind(),
            outcome: None,
            detail: verdict.reason().to_string(),
            incident_id: req.incident_id,
            run_id: req.run_id,
        };
        let sealed = match self.append(draft).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(action = req.action, target = req.target, error = %e, "audit write failed; denying");
                return GateAnswer::Denied { reason: format!("audit log unavailable: {e}"), audit_seq: None };
            }
        };
        match verdict {
            Verdict::Allow(allowed) => match AuditReceipt::for_decision(&sealed) {
                Some(receipt) => {
                    st.history.record(&req.action, &req.target, now, HISTORY_KEEP);
                    GateAnswer::Granted(Permit::grant(allowed, receipt))
                }
                None => GateAnswer::Denied {
                    reason: "audit entry is not a decision".into(),
                    audit_seq: Some(sealed.entry.seq),
                },
            },
            Verdict::Deny { reason } => {
                tracing::warn!(action = req.action, target = req.target, reason, "governance denied action");
                GateAnswer::Denied { reason, audit_seq: Some(sealed.entry.seq) }
            }
            Verdict::PendingApproval { reason } => {
                let _ = rpc::tell(
                    &self.ctx.name(names::APPROVAL_QUEUE),
                    ApprovalMsg::Hold(Box::new(req), sealed.entry.seq),
                );
                GateAnswer::Pending { reason, audit_seq: sealed.entry.seq }
            }
        }
    }
}
