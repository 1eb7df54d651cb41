//! Permits: the only way a tier ≥ 2 step gets to run.
//!
//! A [`Permit`] is made from an [`Allowed`] verdict (only policy evaluation makes those) and
//! an [`AuditReceipt`] (only sealing a decision entry makes those), so no code path can hold
//! a permit that governance did not grant and the audit log did not record first. The
//! executor runs only [`Authorized`] steps, and [`Authorized::with_permit`] checks the permit
//! covers the step's action, target and tier; tier 1 steps go through
//! [`Authorized::autonomous`], which refuses anything higher.

use crate::audit::{EntryKind, Hash, SealedEntry};
use crate::playbook::PlannedStep;
use crate::policy::Allowed;
use crate::tier::Tier;

/// Proof that a decision entry was sealed onto the audit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReceipt {
    seq: u64,
    hash: Hash,
}

impl AuditReceipt {
    /// A receipt for a sealed decision entry; `None` for any other kind of entry.
    pub fn for_decision(sealed: &SealedEntry) -> Option<Self> {
        (sealed.entry.record.kind == EntryKind::Decision).then_some(Self { seq: sealed.entry.seq, hash: sealed.hash })
    }
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// Permission to run one action on one target up to a tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    action: String,
    target: String,
    tier: Tier,
    run_id: Option<u64>,
    audit_seq: u64,
}

impl Permit {
    pub fn grant(allowed: Allowed, receipt: AuditReceipt) -> Self {
        let r = allowed.request();
        Self {
            action: r.action.clone(),
            target: r.target.clone(),
            tier: r.tier,
            run_id: r.run_id,
            audit_seq: receipt.seq,
        }
    }
    pub fn action(&self) -> &str {
        &self.action
    }
    pub fn target(&self) -> &str {
        &self.target
    }
    pub fn tier(&self) -> Tier {
        self.tier
    }
    pub fn run_id(&self) -> Option<u64> {
        self.run_id
    }
    /// The audit entry that recorded the decision.
    pub fn audit_seq(&self) -> u64 {
        self.audit_seq
    }
}

/// What a step needs to be checked against a permit.
pub trait Governed {
    fn action(&self) -> &str;
    fn target(&self) -> &str;
    fn tier(&self) -> Tier;
}

impl Governed for PlannedStep {
    fn action(&self) -> &str {
        self.primitive.action()
    }
    fn target(&self) -> &str {
        self.target.as_str()
    }
    fn tier(&self) -> Tier {
        self.tier
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermitError {
    #[error("step `{action}` is tier {tier}: it needs a permit")]
    NeedsPermit { action: String, tier: u8 },
    #[error("permit for `{permit_action}` on `{permit_target}` does not cover `{action}` on `{target}`")]
    Mismatch { permit_action: String, permit_target: String, action: String, target: String },
    #[error("permit is for tier {permit_tier}, step `{action}` is tier {tier}")]
    TierTooLow { permit_tier: u8, action: String, tier: u8 },
}

/// A step cleared to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized<S> {
    step: S,
    audit_seq: Option<u64>,
}

impl<S: Governed> Authorized<S> {
    /// Tier 1 steps run without asking.
    pub fn autonomous(step: S) -> Result<Self, PermitError> {
        if step.tier() > Tier::OBSERVE {
            return Err(PermitError::NeedsPermit { action: step.action().to_string(), tier: step.tier().get() });
        }
        Ok(Self { step, audit_seq: None })
    }

    /// Any step covered by `permit`.
    pub fn with_permit(step: S, permit: &Permit) -> Result<Self, PermitError> {
        if step.action() != permit.action || step.target() != permit.target {
            return Err(PermitError::Mismatch {
                permit_action: permit.action.clone(),
                permit_target: permit.target.clone(),
                action: step.action().to_string(),
                target: step.target().to_string(),
            });
        }
        if step.tier() > permit.tier {
            return Err(PermitError::TierTooLow {
                permit_tier: permit.tier.get(),
                action: step.action().to_string(),
                tier: step.tier().get(),
            });
        }
        Ok(Self { step, audit_seq: Some(permit.audit_seq) })
    }

    pub fn step(&self) -> &S {
        &self.step
    }
    pub fn audit_seq(&self) -> Option<u64> {
        self.audit_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{self, AuditActor, GENESIS};
    use crate::policy::{ActionRequest, Policies, RateHistory, Verdict, evaluate};
    use crate::source::Source;
    use std::path::Path;

    #[derive(Debug)]
    struct Step(&'static str, &'static str, u8);
    impl Governed for Step {
        fn action(&self) -> &str {
            self.0
        }
        fn target(&self) -> &str {
            self.1
        }
        fn tier(&self) -> Tier {
            Tier::try_from(self.2).expect("tier")
        }
    }

    fn permit_for(action: &str, target: &str) -> Permit {
        let text = format!("mode: dev\nwhitelist:\n  - action: {action}\n    targets: [{target}]\n");
        let services = [crate::config::ServiceName::parse(target).expect("name")];
        let p =
            Policies::load(&Source { name: "p.yaml", dir: Path::new("."), text: &text }, &services).expect("policy");
        let req = ActionRequest {
            action: action.into(),
            tier: Tier::REVERSIBLE,
            target: target.into(),
            rationale: "t".into(),
            actor: AuditActor::System,
            incident_id: None,
            run_id: Some(7),
            plan: String::new(),
            touches: Vec::new(),
        };
        let Verdict::Allow(allowed) = evaluate(&p, req, 0, &RateHistory::default()) else {
            panic!("expected allow");
        };
        let mut entry = audit::tests_support_entry();
        entry.record.action = action.into();
        entry.record.target = target.into();
        let sealed = audit::seal(entry, GENESIS, &audit::AuditKey::from_bytes([1; 32])).expect("seal");
        Permit::grant(allowed, AuditReceipt::for_decision(&sealed).expect("decision receipt"))
    }

    #[test]
    fn test_tier2_step_without_permit_is_refused() {
        let err = Authorized::autonomous(Step("restart_service", "api", 2)).expect_err("needs permit");
        assert!(matches!(err, PermitError::NeedsPermit { tier: 2, .. }));
    }

    #[test]
    fn test_tier1_step_runs_autonomously() {
        assert!(Authorized::autonomous(Step("collect_diagnostics", "api", 1)).is_ok());
    }

    #[test]
    fn test_permit_covers_only_its_action_and_target() {
        let permit = permit_for("restart_service", "api");
        assert!(Authorized::with_permit(Step("restart_service", "api", 2), &permit).is_ok());
        assert!(Authorized::with_permit(Step("restart_service", "db", 2), &permit).is_err());
        assert!(Authorized::with_permit(Step("stop_service", "api", 2), &permit).is_err());
        assert!(matches!(
            Authorized::with_permit(Step("restart_service", "api", 3), &permit),
            Err(PermitError::TierTooLow { .. })
        ));
    }

    #[test]
    fn test_outcome_entries_give_no_receipt() {
        let mut e = audit::tests_support_entry();
        e.record.kind = EntryKind::Outcome;
        let sealed = audit::seal(e, GENESIS, &audit::AuditKey::from_bytes([1; 32])).expect("seal");
        assert!(AuditReceipt::for_decision(&sealed).is_none());
    }
}
