//! Governance policy: tiers, the whitelist, rate limits and time windows → a verdict.
//!
//! Tier 1 observes or makes a trivial reversible change and runs on its own; tier 2 needs a
//! whitelist entry; tier 3 needs a whitelist entry and an approval (dev mode fast-approves);
//! tier 4 never runs autonomously. The verdict is a pure function of the policy, the
//! request, the clock and the recent history, so every rule is testable here.

use crate::yaml::{self, YamlError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

pub const DEFAULT_POLICIES_YAML: &str = include_str!("../../config/governance_policies.yaml");
pub const DEFAULT_POLICIES_FILE: &str = "config/governance_policies.yaml (embedded)";

/// Autonomy tier of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Tier(u8);

impl Tier {
    pub const OBSERVE: Tier = Tier(1);
    pub const REVERSIBLE: Tier = Tier(2);
    pub const DESTRUCTIVE: Tier = Tier(3);
    pub const HUMAN_ONLY: Tier = Tier(4);

    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Tier {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        if (1..=4).contains(&v) { Ok(Tier(v)) } else { Err(format!("tier must be 1, 2, 3 or 4, not {v}")) }
    }
}

impl From<Tier> for u8 {
    fn from(t: Tier) -> u8 {
        t.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Tier 3 actions on the whitelist are approved at once.
    Dev,
    /// Tier 3 actions wait for an approver.
    Production,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policies {
    pub mode: Mode,
    /// Tier overrides per action; an action not listed keeps its own tier.
    #[serde(default)]
    pub tiers: BTreeMap<String, Tier>,
    #[serde(default)]
    pub whitelist: Vec<WhitelistEntry>,
    #[serde(default)]
    pub approvers: Vec<Approver>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhitelistEntry {
    pub action: String,
    /// Service names, or `*` for any.
    pub targets: Vec<String>,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// UTC hours during which the entry applies, `[from, to)`; always when absent.
    #[serde(default)]
    pub hours_utc: Option<HourWindow>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub max: usize,
    pub per_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HourWindow {
    pub from: u8,
    pub to: u8,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approver {
    pub name: String,
}

impl Policies {
    pub fn load(file: &str, text: &str) -> Result<Self, YamlError> {
        yaml::parse(file, text)
    }

    pub fn embedded_default() -> Result<Self, YamlError> {
        Self::load(DEFAULT_POLICIES_FILE, DEFAULT_POLICIES_YAML)
    }

    /// The tier governance applies to `action`: the policy's override, else its own.
    pub fn tier_of(&self, action: &str, own: Tier) -> Tier {
        self.tiers.get(action).copied().unwrap_or(own)
    }
}

/// A request for permission to act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRequest {
    pub action: String,
    pub tier: Tier,
    pub target: String,
    pub rationale: String,
    pub actor: crate::audit::AuditActor,
    pub incident_id: Option<u64>,
    pub run_id: Option<u64>,
}

/// A request the policy allows. Only [`evaluate`] makes one; a [`crate::permit::Permit`]
/// needs one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    request: ActionRequest,
    reason: String,
}

impl Allowed {
    pub fn request(&self) -> &ActionRequest {
        &self.request
    }
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow(Allowed),
    Deny { reason: String },
    PendingApproval { reason: String },
}

impl Verdict {
    pub fn kind(&self) -> crate::audit::DecisionKind {
        use crate::audit::DecisionKind;
        match self {
            Verdict::Allow(_) => DecisionKind::Allow,
            Verdict::Deny { .. } => DecisionKind::Deny,
            Verdict::PendingApproval { .. } => DecisionKind::PendingApproval,
        }
    }
    pub fn reason(&self) -> &str {
        match self {
            Verdict::Allow(a) => &a.reason,
            Verdict::Deny { reason } | Verdict::PendingApproval { reason } => reason,
        }
    }
}

/// Times (unix ms) at which each (action, target) was allowed, for rate limits.
#[derive(Debug, Default, Clone)]
pub struct RateHistory {
    allowed: BTreeMap<(String, String), VecDeque<u64>>,
}

impl RateHistory {
    fn count_since(&self, action: &str, target: &str, since: u64) -> usize {
        self.allowed
            .get(&(action.to_string(), target.to_string()))
            .map(|q| q.iter().filter(|&&t| t >= since).count())
            .unwrap_or(0)
    }

    /// Records an allowed action; keeps at most `keep` timestamps per key.
    pub fn record(&mut self, action: &str, target: &str, at_unix_ms: u64, keep: usize) {
        let q = self.allowed.entry((action.to_string(), target.to_string())).or_default();
        q.push_back(at_unix_ms);
        while q.len() > keep.max(1) {
            q.pop_front();
        }
    }
}

/// Decides `req` under `policies` at `now_unix_ms`.
pub fn evaluate(policies: &Policies, req: ActionRequest, now_unix_ms: u64, history: &RateHistory) -> Verdict {
    let tier = policies.tier_of(&req.action, req.tier);
    if tier == Tier::OBSERVE {
        return Verdict::Allow(Allowed { request: ActionRequest { tier, ..req }, reason: "tier 1: autonomous".into() });
    }
    if tier == Tier::HUMAN_ONLY {
        return Verdict::Deny { reason: format!("`{}` is tier 4: never autonomous, a person must act", req.action) };
    }
    let entries: Vec<&WhitelistEntry> = policies
        .whitelist
        .iter()
        .filter(|w| w.action == req.action && w.targets.iter().any(|t| t == "*" || *t == req.target))
        .collect();
    if entries.is_empty() {
        return Verdict::Deny { reason: format!("`{}` on `{}` is not whitelisted", req.action, req.target) };
    }
    let hour = ((now_unix_ms / 3_600_000) % 24) as u8;
    let mut last_reason = String::new();
    for w in entries {
        if let Some(h) = w.hours_utc {
            let inside = if h.from <= h.to { hour >= h.from && hour < h.to } else { hour >= h.from || hour < h.to };
            if !inside {
                last_reason = format!("`{}` is whitelisted only {:02}:00–{:02}:00 UTC", req.action, h.from, h.to);
                continue;
            }
        }
        if let Some(r) = w.rate_limit {
            let used = history.count_since(&req.action, &req.target, now_unix_ms.saturating_sub(r.per_ms));
            if used >= r.max {
                last_reason = format!(
                    "rate limit: `{}` on `{}` ran {used} times in {} ms (max {})",
                    req.action, req.target, r.per_ms, r.max
                );
                continue;
            }
        }
        if tier == Tier::DESTRUCTIVE && policies.mode == Mode::Production {
            return Verdict::PendingApproval {
                reason: format!("tier 3 `{}` on `{}` waits for an approver", req.action, req.target),
            };
        }
        let reason = if tier == Tier::DESTRUCTIVE {
            "whitelisted tier 3, fast-approved in dev mode".to_string()
        } else {
            "whitelisted tier 2".to_string()
        };
        return Verdict::Allow(Allowed { request: ActionRequest { tier, ..req }, reason });
    }
    Verdict::Deny { reason: last_reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditActor;

    fn policies(mode: &str) -> Policies {
        Policies::load(
            "p.yaml",
            &format!(
                "mode: {mode}\ntiers:\n  delete_everything: 4\nwhitelist:\n  - action: restart_service\n    targets: [api]\n    rate_limit: {{ max: 2, per_ms: 60000 }}\n  - action: restore_snapshot\n    targets: ['*']\n  - action: night_job\n    targets: ['*']\n    hours_utc: {{ from: 1, to: 2 }}\n"
            ),
        )
        .expect("valid policy")
    }

    fn req(action: &str, tier: u8, target: &str) -> ActionRequest {
        ActionRequest {
            action: action.into(),
            tier: Tier::try_from(tier).expect("tier"),
            target: target.into(),
            rationale: "test".into(),
            actor: AuditActor::System,
            incident_id: None,
            run_id: None,
        }
    }

    const NOON: u64 = 12 * 3_600_000;

    #[test]
    fn test_tier1_is_autonomous() {
        let v = evaluate(&policies("dev"), req("collect_diagnostics", 1, "api"), NOON, &RateHistory::default());
        assert!(matches!(v, Verdict::Allow(_)), "{v:?}");
    }

    #[test]
    fn test_tier2_whitelisted_target_is_allowed() {
        let v = evaluate(&policies("production"), req("restart_service", 2, "api"), NOON, &RateHistory::default());
        assert!(matches!(v, Verdict::Allow(_)), "{v:?}");
    }

    #[test]
    fn test_tier2_not_whitelisted_is_denied() {
        let v = evaluate(&policies("dev"), req("restart_service", 2, "db"), NOON, &RateHistory::default());
        assert!(matches!(&v, Verdict::Deny { reason } if reason.contains("not whitelisted")), "{v:?}");
    }

    #[test]
    fn test_rate_limit_denies_past_max() {
        let p = policies("dev");
        let mut h = RateHistory::default();
        h.record("restart_service", "api", NOON - 1000, 100);
        h.record("restart_service", "api", NOON - 500, 100);
        let v = evaluate(&p, req("restart_service", 2, "api"), NOON, &h);
        assert!(matches!(&v, Verdict::Deny { reason } if reason.contains("rate limit")), "{v:?}");
        let later = evaluate(&p, req("restart_service", 2, "api"), NOON + 61_000, &h);
        assert!(matches!(later, Verdict::Allow(_)), "window passed: {later:?}");
    }

    #[test]
    fn test_tier3_waits_for_approval_in_production_and_is_fast_approved_in_dev() {
        let prod = evaluate(&policies("production"), req("restore_snapshot", 3, "db"), NOON, &RateHistory::default());
        assert!(matches!(prod, Verdict::PendingApproval { .. }), "{prod:?}");
        let dev = evaluate(&policies("dev"), req("restore_snapshot", 3, "db"), NOON, &RateHistory::default());
        assert!(matches!(dev, Verdict::Allow(_)), "{dev:?}");
    }

    #[test]
    fn test_tier4_override_is_never_autonomous() {
        let v = evaluate(&policies("dev"), req("delete_everything", 2, "db"), NOON, &RateHistory::default());
        assert!(matches!(&v, Verdict::Deny { reason } if reason.contains("tier 4")), "{v:?}");
    }

    #[test]
    fn test_hour_window_limits_entry() {
        let p = policies("dev");
        let outside = evaluate(&p, req("night_job", 2, "x"), NOON, &RateHistory::default());
        assert!(matches!(outside, Verdict::Deny { .. }), "{outside:?}");
        let inside = evaluate(&p, req("night_job", 2, "x"), 3_600_000 + 5, &RateHistory::default());
        assert!(matches!(inside, Verdict::Allow(_)), "{inside:?}");
    }

    #[test]
    fn test_embedded_policies_load() {
        let p = Policies::embedded_default().expect("embedded policies");
        assert!(p.whitelist.iter().any(|w| w.action == "restart_service"));
    }

    #[test]
    fn test_bad_tier_names_position() {
        let err = Policies::load("p.yaml", "mode: dev\ntiers:\n  x: 9\n").expect_err("tier 9");
        assert_eq!(err.pos.line, 3, "{err}");
    }
}
