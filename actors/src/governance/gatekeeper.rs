//! Gatekeeper: every tier ≥ 2 action asks it first.
//!
//! It evaluates the policy (pure, in warden-core), has the AuditWriter seal the decision
//! onto the chain — synced to disk — and only then answers. An allow comes back as a
//! [`Permit`], which nothing else can make; if the audit write fails, the answer is a deny
//! (fail closed). Outcomes of permitted actions are audited through it too. Its rate-limit
//! history is rebuilt from the audit chain when it starts.
//!
//! Requests are judged one at a time, in order; the wait for the audit entry is not: a
//! decision that needs nothing more is answered by a task of its own once its entry is on
//! disk, so decisions that come together are synced together.

use super::approval_queue::ApprovalQueue;
use super::audit_writer::{AppendError, AuditWriter};
use super::seal::ChainTrust;
use crate::addr::{Addr, SendError};
use crate::current::Current;
use crate::metrics::{ActionLabel, DecisionLabel, Metrics};
use crate::registry::{ActorRegistry, Registration};
use crate::store::{Store, StoreError};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::time::Duration;
use warden_core::audit::{DecisionKind, EntryKind, OutcomeKind, SealedEntry};
use warden_core::permit::{AuditReceipt, Permit};
use warden_core::policy::{ActionRequest, Mode, Policies, RateHistory, Verdict, evaluate_with};
use warden_core::tier::Tier;

pub const PATH: &str = "governance/gatekeeper";
/// A decision includes one synced audit append.
const GATE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a risky request waits for the audit chain's start-up verification before it
/// is refused; well inside [`GATE_TIMEOUT`], so the answer is a reason, not a timeout.
const TRUST_WAIT: Duration = Duration::from_secs(8);
/// Rate-limit history kept per (action, target).
const HISTORY_KEEP: usize = 1000;

#[derive(Debug)]
pub enum GateAnswer {
    Granted(Permit),
    Denied {
        reason: String,
        audit_seq: Option<u64>,
        /// When the same request would be allowed (a rate limit, an hour window).
        retry_at_unix_ms: Option<u64>,
    },
    Pending {
        reason: String,
        audit_seq: u64,
        /// The approval request approvers decide.
        approval_id: u64,
    },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum GateError {
    #[error("gatekeeper unavailable: {0}")]
    Unavailable(#[from] SendError),
    #[error("cannot audit the outcome: {0}")]
    Audit(#[from] AppendError),
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
    Outcome(Box<OutcomeReport>, RpcReplyPort<Result<u64, AppendError>>),
    /// What the policy would decide now, for a dry run: nothing is audited or counted.
    Preview(ActionRequest, RpcReplyPort<String>),
    /// Fault injection: stall in the handler for the given time (messages queue up), then
    /// panic (they are lost with the mailbox).
    #[cfg(feature = "fault-injection")]
    Crash(std::time::Duration),
}

impl Addr<Gatekeeper> {
    pub fn at() -> Self {
        Addr::new(PATH)
    }

    /// Asks for a permit; the decision is on the audit chain before the answer comes.
    pub async fn request(&self, request: ActionRequest) -> Result<GateAnswer, SendError> {
        self.ask(GATE_TIMEOUT, |tx| GateMsg::Request(request, tx)).await
    }

    /// What the policy would decide on `request` now, in words (nothing recorded).
    pub async fn preview(&self, request: ActionRequest) -> Result<String, SendError> {
        self.ask(GATE_TIMEOUT, |tx| GateMsg::Preview(request, tx)).await
    }

    /// Audits what a permitted action did; returns the entry's seq.
    pub async fn outcome(&self, report: OutcomeReport) -> Result<u64, GateError> {
        Ok(self.ask(GATE_TIMEOUT, |tx| GateMsg::Outcome(Box::new(report), tx)).await??)
    }
}

pub struct Gatekeeper {
    /// Replaced by a reload; each decision takes the current one.
    pub policies: Current<Policies>,
    pub store: Store,
    pub audit: Addr<AuditWriter>,
    pub approvals: Addr<ApprovalQueue>,
    /// While the chain failed verification at start, nothing of tier 2+ is granted.
    pub trust: ChainTrust,
    pub metrics: Metrics,
    pub registry: ActorRegistry,
}

pub struct State {
    /// `None` until it could be read from the audit chain: then nothing is allowed, since a
    /// rate limit that cannot be counted cannot be kept.
    history: Option<RateHistory>,
    /// How far back that history was read: a reload whose policies have a longer window
    /// reads it again, so a longer limit counts what it should from its first request.
    covers: Option<std::time::Duration>,
    _reg: Registration,
}

#[ractor::async_trait]
impl Actor for Gatekeeper {
    type Msg = GateMsg;
    type State = State;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<GateMsg>, _: ()) -> Result<State, ActorProcessingErr> {
        let covers = self.policies.get().longest_rate_window();
        let history = self.load_history(covers).await;
        if let Err(e) = &history {
            tracing::warn!(error = %e, "rate-limit history unavailable; tier 2+ requests are refused until it loads");
        }
        Ok(State { history: history.ok(), covers, _reg: self.registry.started(PATH) })
    }

    async fn handle(&self, _: ActorRef<GateMsg>, msg: GateMsg, st: &mut State) -> Result<(), ActorProcessingErr> {
        match msg {
            GateMsg::Request(req, reply) => match self.judge(req, st).await {
                Judged::Answered(answer) => {
                    let _ = reply.send(answer);
                }
                // The approval queue is asked in order, after the decision is on disk.
                Judged::Decided(d) if d.needs_approval_queue() => {
                    let sealed = self.audit.append(d.req.decision_record(&d.verdict)).await;
                    let answer = self.conclude(*d, sealed).await;
                    let _ = reply.send(answer);
                }
                // Nothing else to do here: the answer waits for its audit entry in a task
                // of its own, so the next request is judged meanwhile and decisions that
                // arrive together share one sync (the writer's group commit).
                Judged::Decided(d) => {
                    let this = Conclude { audit: self.audit.clone(), approvals: self.approvals.clone() };
                    tokio::spawn(async move {
                        let sealed = this.audit.append(d.req.decision_record(&d.verdict)).await;
                        let _ = reply.send(this.conclude(*d, sealed).await);
                    });
                }
            },
            GateMsg::Preview(req, reply) => {
                let _ = reply.send(self.preview(req, st));
            }
            GateMsg::Outcome(report, reply) => {
                let record = report.request.outcome_record(report.outcome, report.detail.clone());
                let _ = reply.send(self.audit.append(record).await.map(|s| s.entry.seq));
            }
            #[cfg(feature = "fault-injection")]
            GateMsg::Crash(after) => {
                tokio::time::sleep(after).await;
                panic!("fault injection: gatekeeper crashed on command");
            }
        }
        Ok(())
    }
}

impl Gatekeeper {
    /// Rate limits count what the audit chain says was allowed, so they hold across a
    /// restart of this actor or of warden.
    async fn load_history(&self, window: Option<std::time::Duration>) -> Result<RateHistory, StoreError> {
        let mut history = RateHistory::default();
        if let Some(window) = window {
            let since = warden_core::time::now_unix_ms().saturating_sub(window.as_millis() as u64);
            for sealed in self.store.audit_since(since).await? {
                let r = &sealed.entry.record;
                if r.kind == EntryKind::Decision && r.decision == DecisionKind::Allow {
                    history.record(&r.action, &r.target, sealed.entry.ts_unix_ms, HISTORY_KEEP);
                }
            }
        }
        Ok(history)
    }

    /// Decides `req` under the current policy; the decision still has to be audited.
    /// An allowed request counts toward its rate limit from here, before its entry is on
    /// disk: a request that comes meanwhile sees it, and one whose entry then fails to be
    /// written (and is denied) only makes the limit stricter for a while.
    async fn judge(&self, req: ActionRequest, st: &mut State) -> Judged {
        let wanted = self.policies.get().longest_rate_window();
        if st.history.is_none() || wanted > st.covers {
            match self.load_history(wanted).await {
                Ok(h) => {
                    st.history = Some(h);
                    st.covers = wanted;
                }
                Err(e) => {
                    tracing::error!(action = req.action, target = req.target, error = %e, "rate-limit history unavailable; denying");
                    return Judged::Answered(GateAnswer::Denied {
                        reason: format!("rate-limit history unavailable: {e}"),
                        audit_seq: None,
                        retry_at_unix_ms: None,
                    });
                }
            }
        }
        let history = st.history.get_or_insert_with(RateHistory::default);
        let now = warden_core::time::now_unix_ms();
        let policies = self.policies.get();
        let tier = policies.tier_of(&req.action, req.tier);
        // Decided, audited and permitted at the tier the policy gives it.
        let req = ActionRequest { tier, ..req };
        // A tier 3 action in production may have been approved already (once).
        let approved = if tier >= Tier::DESTRUCTIVE && policies.mode == Mode::Production {
            self.approvals.find(req.clone()).await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot ask the approval queue; no approval counts");
                None
            })
        } else {
            None
        };
        // A trail that cannot be trusted cannot vouch for a risky action; one still being
        // verified at start is waited for (the gatekeeper has nothing else to decide first).
        let distrust = if tier >= Tier::REVERSIBLE { self.trust.settled(TRUST_WAIT).await } else { None };
        let verdict = match distrust {
            Some(why) => Verdict::Deny { reason: format!("refused while {why}"), retry_at_unix_ms: None },
            None => evaluate_with(&policies, req.clone(), now, history, approved.as_ref()),
        };
        if let Verdict::Allow(allowed) = &verdict {
            // An approval is spent before the grant is written: if the grant's entry then
            // fails, the action is denied and the approval gone (fail safe), never reusable.
            if let Some(id) = allowed.approval_id()
                && let Err(e) = self.approvals.mark_used(id).await
            {
                tracing::error!(approval = id, error = %e, "cannot mark the approval used; denying");
                return Judged::Answered(GateAnswer::Denied {
                    reason: format!("approval {id} could not be marked used: {e}"),
                    audit_seq: None,
                    retry_at_unix_ms: None,
                });
            }
            history.record(&req.action, &req.target, now, HISTORY_KEEP);
        }
        let decision = verdict.kind().as_str().to_string();
        if verdict.kind() == DecisionKind::Deny {
            // A request the policy refused: something tried to act outside it.
            self.metrics.policy_violations.get_or_create(&ActionLabel { action: req.action.clone() }).inc();
        }
        self.metrics.gate_decisions.get_or_create(&DecisionLabel { decision }).inc();
        Judged::Decided(Box::new(Decided { req, verdict }))
    }

    /// The verdict `req` would get now, without auditing it or counting it.
    fn preview(&self, req: ActionRequest, st: &State) -> String {
        let policies = self.policies.get();
        let tier = policies.tier_of(&req.action, req.tier);
        if let Some(why) = self.trust.broken().filter(|_| tier >= Tier::REVERSIBLE) {
            return format!("deny (refused while {why})");
        }
        let none = RateHistory::default();
        let history = st.history.as_ref().unwrap_or(&none);
        match evaluate_with(&policies, req, warden_core::time::now_unix_ms(), history, None) {
            Verdict::Allow(a) => format!("allow ({})", a.reason()),
            Verdict::Deny { reason, .. } => format!("deny ({reason})"),
            Verdict::PendingApproval { reason } => format!("needs approval ({reason})"),
        }
    }

    async fn conclude(&self, d: Decided, sealed: Result<SealedEntry, AppendError>) -> GateAnswer {
        Conclude { audit: self.audit.clone(), approvals: self.approvals.clone() }.conclude(d, sealed).await
    }
}

/// A request judged by the policy.
enum Judged {
    /// Answered without an audit entry (the history to judge by could not be read).
    Answered(GateAnswer),
    /// A verdict to audit before it is answered.
    Decided(Box<Decided>),
}

struct Decided {
    req: ActionRequest,
    verdict: Verdict,
}

impl Decided {
    /// Whether answering it takes the approval queue (a request to hold): those are
    /// answered in the gatekeeper's order.
    fn needs_approval_queue(&self) -> bool {
        matches!(self.verdict, Verdict::PendingApproval { .. })
    }
}

/// What turns an audited verdict into an answer.
struct Conclude {
    audit: Addr<AuditWriter>,
    approvals: Addr<ApprovalQueue>,
}

impl Conclude {
    async fn conclude(&self, d: Decided, sealed: Result<SealedEntry, AppendError>) -> GateAnswer {
        let Decided { req, verdict } = d;
        let sealed = match sealed {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(action = req.action, target = req.target, error = %e, "audit write failed; denying");
                let reason = format!("audit log unavailable: {e}");
                return GateAnswer::Denied { reason, audit_seq: None, retry_at_unix_ms: None };
            }
        };
        match verdict {
            Verdict::Allow(allowed) => match AuditReceipt::for_decision(&sealed) {
                Some(receipt) => GateAnswer::Granted(Permit::grant(allowed, receipt)),
                None => GateAnswer::Denied {
                    reason: "audit entry is not a decision".into(),
                    audit_seq: Some(sealed.entry.seq),
                    retry_at_unix_ms: None,
                },
            },
            Verdict::Deny { reason, retry_at_unix_ms } => {
                tracing::warn!(action = req.action, target = req.target, reason, "governance denied action");
                GateAnswer::Denied { reason, audit_seq: Some(sealed.entry.seq), retry_at_unix_ms }
            }
            Verdict::PendingApproval { reason } => match self.approvals.hold(req, sealed.entry.seq).await {
                Ok(a) => GateAnswer::Pending { reason, audit_seq: sealed.entry.seq, approval_id: a.id },
                Err(e) => {
                    tracing::error!(error = %e, "cannot queue the approval request; denying");
                    GateAnswer::Denied {
                        reason: format!("needs an approval, but it cannot be requested: {e}"),
                        audit_seq: Some(sealed.entry.seq),
                        retry_at_unix_ms: None,
                    }
                }
            },
        }
    }
}
