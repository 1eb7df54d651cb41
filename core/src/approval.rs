//! Approval requests: a tier 3 action that policy says a person must approve first.
//!
//! A request names the action it would allow, what would happen (the plan: which process,
//! file, port), who asked (an incident's playbook or an operator), when it expires and how
//! many approvers it needs. Approvers decide it one by one; one rejection refuses it;
//! nobody decides their own request, and nobody twice. An approved request is used once:
//! the gatekeeper grants the matching action and marks it used, and only as long again as
//! it could wait for approvers (an approval from last month allows nothing today). One that
//! nobody decided in time expires, and is then denied or approved as the policy says (deny
//! by default); a vote that comes after its time counts for nothing.

use crate::policy::{ActionRequest, OnExpiry};
use serde::{Deserialize, Serialize};

/// Where a request came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Origin {
    /// A playbook run for an incident: approved, the incident runs the playbook again.
    Incident { incident_id: u64, run_id: u64 },
    /// An operator's request through the API or the shell: approved, it runs for them.
    Operator { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
    Expired,
    /// Approved, and the action it allowed was granted.
    Used,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Expired => "expired",
            ApprovalStatus::Used => "used",
        }
    }
}

/// One approver's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub by: String,
    pub approve: bool,
    pub reason: String,
    pub at_unix_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub id: u64,
    pub request: ActionRequest,
    /// What would happen, in words: which process, file, port.
    pub plan: String,
    pub origin: Origin,
    pub requested_unix_ms: u64,
    pub expires_unix_ms: u64,
    /// Approvals needed.
    pub required: usize,
    pub votes: Vec<Vote>,
    pub status: ApprovalStatus,
    /// When it was decided, expired or used.
    pub closed_unix_ms: Option<u64>,
    /// The audit entry of the decision that put it on hold.
    pub audit_seq: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("approval {id} is {status}, no longer pending")]
    NotPending { id: u64, status: &'static str },
    #[error("`{by}` asked for this action and cannot approve it too")]
    OwnRequest { by: String },
    #[error("`{by}` has already decided approval {id}")]
    AlreadyVoted { by: String, id: u64 },
    #[error("a rejection needs a reason")]
    NoReason,
    #[error("approval {id} expired at {at}; it can no longer be decided")]
    Expired { id: u64, at: String },
}

/// Whether `name` with `role` may decide approval requests: an approver (or admin) token,
/// and, when the policy lists approvers by name, one of them. The list binds admins too:
/// whoever may edit the policy can add themselves, and the edit is then on record.
pub fn may_approve(approvers: &[String], name: &str, role: crate::auth::Role) -> bool {
    role.allows(crate::auth::Role::Approver) && (approvers.is_empty() || approvers.iter().any(|a| a == name))
}

impl Approval {
    pub fn approvals(&self) -> usize {
        self.votes.iter().filter(|v| v.approve).count()
    }

    /// Records `by`'s decision; returns the status it leaves.
    pub fn decide(
        &mut self,
        by: &str,
        approve: bool,
        reason: &str,
        now_unix_ms: u64,
    ) -> Result<ApprovalStatus, ApprovalError> {
        if self.status != ApprovalStatus::Pending {
            return Err(ApprovalError::NotPending { id: self.id, status: self.status.as_str() });
        }
        if now_unix_ms >= self.expires_unix_ms {
            return Err(ApprovalError::Expired { id: self.id, at: crate::time::rfc3339(self.expires_unix_ms) });
        }
        if matches!(&self.origin, Origin::Operator { name } if name == by) {
            return Err(ApprovalError::OwnRequest { by: by.to_string() });
        }
        if self.votes.iter().any(|v| v.by == by) {
            return Err(ApprovalError::AlreadyVoted { by: by.to_string(), id: self.id });
        }
        if !approve && reason.trim().is_empty() {
            return Err(ApprovalError::NoReason);
        }
        self.votes.push(Vote { by: by.to_string(), approve, reason: reason.to_string(), at_unix_ms: now_unix_ms });
        if !approve {
            self.close(ApprovalStatus::Rejected, now_unix_ms);
        } else if self.approvals() >= self.required.max(1) {
            self.close(ApprovalStatus::Approved, now_unix_ms);
        }
        Ok(self.status)
    }

    /// A pending request past its time: expired, or approved when the policy says expiry
    /// approves. Returns whether it changed.
    pub fn expire(&mut self, now_unix_ms: u64, on_expiry: OnExpiry) -> bool {
        if self.status != ApprovalStatus::Pending || now_unix_ms < self.expires_unix_ms {
            return false;
        }
        let status = match on_expiry {
            OnExpiry::Deny => ApprovalStatus::Expired,
            OnExpiry::Approve => ApprovalStatus::Approved,
        };
        self.close(status, now_unix_ms);
        true
    }

    /// What it was asked for is no longer needed (its incident ended): a pending request
    /// expires now, whatever the policy says of expiry; an approved one that was not used
    /// can no longer be. Whether it changed.
    pub fn withdraw(&mut self, now_unix_ms: u64) -> bool {
        if !matches!(self.status, ApprovalStatus::Pending | ApprovalStatus::Approved) {
            return false;
        }
        self.close(ApprovalStatus::Expired, now_unix_ms);
        true
    }

    /// Until when an approved request may be used: as long after its approval as it could
    /// wait for one.
    pub fn usable_until_unix_ms(&self) -> u64 {
        let wait = self.expires_unix_ms.saturating_sub(self.requested_unix_ms);
        self.closed_unix_ms.unwrap_or(self.expires_unix_ms).saturating_add(wait)
    }

    /// Whether this approval allows `req` at `now`: approved and not yet stale, the same
    /// action on the same target, for the same incident or the same operator.
    pub fn allows(&self, req: &ActionRequest, now_unix_ms: u64) -> bool {
        let same_origin = match &self.origin {
            Origin::Incident { incident_id, .. } => req.incident_id == Some(*incident_id),
            Origin::Operator { name } => {
                req.incident_id.is_none() && matches!(&req.actor, crate::audit::AuditActor::User(u) if u == name)
            }
        };
        self.status == ApprovalStatus::Approved
            && now_unix_ms < self.usable_until_unix_ms()
            && same_origin
            && self.request.action == req.action
            && self.request.target == req.target
            && self.request.touches == req.touches
    }

    /// Whether this approval was for `req` but what it would act on changed since (a pid
    /// gone or reused, other files): it no longer allows it, and the request is asked again.
    pub fn stale_for(&self, req: &ActionRequest, now_unix_ms: u64) -> bool {
        let changed = ActionRequest { touches: self.request.touches.clone(), ..req.clone() };
        self.request.touches != req.touches && self.allows(&changed, now_unix_ms)
    }

    /// Who approved it, for the grant's reason.
    pub fn approvers(&self) -> Vec<&str> {
        self.votes.iter().filter(|v| v.approve).map(|v| v.by.as_str()).collect()
    }

    pub fn mark_used(&mut self, now_unix_ms: u64) {
        self.close(ApprovalStatus::Used, now_unix_ms);
    }

    fn close(&mut self, status: ApprovalStatus, now_unix_ms: u64) {
        self.status = status;
        self.closed_unix_ms = Some(now_unix_ms);
    }

    /// Still waiting for a decision.
    pub fn is_pending(&self) -> bool {
        self.status == ApprovalStatus::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditActor;
    use crate::tier::Tier;

    fn request(actor: AuditActor, incident: Option<u64>) -> ActionRequest {
        ActionRequest {
            action: "restart_service".into(),
            tier: Tier::DESTRUCTIVE,
            target: "api".into(),
            rationale: "hung".into(),
            actor,
            incident_id: incident,
            run_id: None,
            plan: String::new(),
            touches: Vec::new(),
        }
    }

    fn approval(origin: Origin, required: usize) -> Approval {
        let actor = match &origin {
            Origin::Operator { name } => AuditActor::User(name.clone()),
            Origin::Incident { .. } => AuditActor::System,
        };
        let incident = match &origin {
            Origin::Incident { incident_id, .. } => Some(*incident_id),
            Origin::Operator { .. } => None,
        };
        Approval {
            id: 1,
            request: request(actor, incident),
            plan: "restart api (pid 42)".into(),
            origin,
            requested_unix_ms: 0,
            expires_unix_ms: 1_000,
            required,
            votes: vec![],
            status: ApprovalStatus::Pending,
            closed_unix_ms: None,
            audit_seq: 7,
        }
    }

    #[test]
    fn test_two_approvers_are_needed_when_policy_says_two() {
        let mut a = approval(Origin::Incident { incident_id: 3, run_id: 9 }, 2);
        assert_eq!(a.decide("alice", true, "", 10), Ok(ApprovalStatus::Pending));
        assert_eq!(a.decide("alice", true, "", 11), Err(ApprovalError::AlreadyVoted { by: "alice".into(), id: 1 }));
        assert_eq!(a.decide("bob", true, "ok", 12), Ok(ApprovalStatus::Approved));
        assert_eq!(a.approvers(), vec!["alice", "bob"]);
        assert!(matches!(a.decide("carol", true, "", 13), Err(ApprovalError::NotPending { .. })));
    }

    #[test]
    fn test_nobody_approves_their_own_request_and_one_rejection_refuses() {
        let mut a = approval(Origin::Operator { name: "dave".into() }, 1);
        assert_eq!(a.decide("dave", true, "", 1), Err(ApprovalError::OwnRequest { by: "dave".into() }));
        assert_eq!(a.decide("erin", false, "", 2), Err(ApprovalError::NoReason), "a rejection says why");
        assert_eq!(a.decide("erin", false, "not during the sale", 3), Ok(ApprovalStatus::Rejected));
        assert!(!a.allows(&a.request.clone(), 4));
    }

    #[test]
    fn test_expiry_denies_by_default_and_approves_when_told() {
        let mut a = approval(Origin::Incident { incident_id: 3, run_id: 9 }, 1);
        assert!(!a.expire(999, OnExpiry::Deny), "not yet");
        assert!(a.expire(1_000, OnExpiry::Deny));
        assert_eq!(a.status, ApprovalStatus::Expired);
        let mut b = approval(Origin::Incident { incident_id: 3, run_id: 9 }, 1);
        assert!(b.expire(2_000, OnExpiry::Approve));
        assert_eq!(b.status, ApprovalStatus::Approved);
    }

    #[test]
    fn test_an_approval_allows_only_its_own_action_for_its_own_origin() {
        let mut a = approval(Origin::Incident { incident_id: 3, run_id: 9 }, 1);
        let same = a.request.clone();
        assert!(!a.allows(&same, 1), "not before it is approved");
        a.decide("alice", true, "", 1).expect("vote");
        assert!(a.allows(&same, 2));
        assert!(!a.allows(&ActionRequest { target: "db".into(), ..same.clone() }, 2));
        assert!(!a.allows(&ActionRequest { incident_id: Some(4), ..same.clone() }, 2), "another incident");
        a.mark_used(2);
        assert!(!a.allows(&same, 3), "used once");
    }

    #[test]
    fn test_an_approval_allows_only_what_it_named_and_a_withdrawal_ends_it() {
        // Approved to kill pid 42 as it was then: a reused pid is another process.
        let mut a = approval(Origin::Incident { incident_id: 3, run_id: 9 }, 1);
        a.request.touches = vec!["pid 42 started at tick 100 `nc -l 8000`".into()];
        a.decide("alice", true, "", 10).expect("vote");
        let same = ActionRequest { touches: a.request.touches.clone(), ..request(AuditActor::System, Some(3)) };
        assert!(a.allows(&same, 20) && !a.stale_for(&same, 20));
        let reused = ActionRequest { touches: vec!["pid 42 started at tick 900 `sshd`".into()], ..same.clone() };
        assert!(!a.allows(&reused, 20), "a pid gone or reused is refused");
        assert!(a.stale_for(&reused, 20), "and the approval is withdrawn, the request asked again");
        assert!(a.withdraw(30));
        assert_eq!(a.status, ApprovalStatus::Expired);
        assert!(!a.allows(&same, 40) && !a.withdraw(50), "withdrawn once, allows nothing");
    }

    #[test]
    fn test_a_late_vote_counts_for_nothing_and_an_old_approval_allows_nothing() {
        let mut late = approval(Origin::Incident { incident_id: 3, run_id: 9 }, 1);
        assert!(matches!(late.decide("alice", true, "", 1_000), Err(ApprovalError::Expired { id: 1, .. })));
        assert_eq!(late.status, ApprovalStatus::Pending, "left for the expiry to close");
        let mut a = approval(Origin::Incident { incident_id: 3, run_id: 9 }, 1);
        a.decide("alice", true, "", 400).expect("vote");
        // It waited up to 1 000 ms for an approver; approved at 400 it is good until 1 400.
        assert_eq!(a.usable_until_unix_ms(), 1_400);
        assert!(a.allows(&a.request.clone(), 1_399));
        assert!(!a.allows(&a.request.clone(), 1_400), "stale");
    }

    #[test]
    fn test_a_listed_approver_list_binds_admins_too() {
        use crate::auth::Role;
        let listed = vec!["alice".to_string()];
        assert!(may_approve(&listed, "alice", Role::Approver));
        assert!(!may_approve(&listed, "root", Role::Admin), "not listed");
        assert!(!may_approve(&listed, "alice", Role::Operator), "too weak a role");
        assert!(may_approve(&[], "bob", Role::Approver), "no list: the role decides");
        assert!(may_approve(&[], "root", Role::Admin));
    }
}
