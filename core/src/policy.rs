//! Governance policy: tiers, the whitelist, rate limits and time windows → a verdict.
//!
//! Tier 1 observes or makes a trivial reversible change and runs on its own; tier 2 needs a
//! whitelist entry; tier 3 needs a whitelist entry and an approval (dev mode fast-approves);
//! tier 4 never runs autonomously. The verdict is a pure function of the policy, the
//! request, the clock and the recent history, so every rule is testable here.

use crate::audit::{AuditActor, AuditRecord, DecisionKind, EntryKind, OutcomeKind};
use crate::config::ServiceName;
use crate::playbook::Primitive;
use crate::source::{self, Collector, Problems, Source};
use crate::tier::Tier;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::time::Duration;

pub const DEFAULT_POLICIES_YAML: &str = include_str!("../../config/governance_policies.yaml");
pub const DEFAULT_POLICIES_FILE: &str = "config/governance_policies.yaml (embedded)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Tier 3 actions on the whitelist are approved at once.
    Dev,
    /// Tier 3 actions wait for an approver.
    Production,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Dev => "dev",
            Mode::Production => "production",
        }
    }
}

/// Who may read the API without a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiReads {
    /// Open on a loopback listener, a viewer token elsewhere.
    Auto,
    /// Anyone who can reach the listener may read.
    Open,
    /// Every read needs a token (viewer or more).
    Viewer,
}

/// What an approval request that nobody decided in time becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnExpiry {
    Deny,
    Approve,
}

/// How approval requests are decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalRules {
    /// Distinct approvers a request needs (one rejection is enough to refuse it).
    pub required: usize,
    pub expire_after: Duration,
    pub on_expiry: OnExpiry,
}

impl Default for ApprovalRules {
    fn default() -> Self {
        Self { required: 1, expire_after: Duration::from_secs(15 * 60), on_expiry: OnExpiry::Deny }
    }
}

/// The validated governance policy.
#[derive(Debug, Clone)]
pub struct Policies {
    pub mode: Mode,
    /// Tier overrides per action; an action not listed keeps its own tier. Never lower
    /// than the action's own tier (refused at load).
    tiers: BTreeMap<String, Tier>,
    pub whitelist: Vec<WhitelistRule>,
    /// Who may approve (their token's name; an approver or admin role is needed too).
    pub approvers: Vec<String>,
    pub approvals: ApprovalRules,
    pub api_reads: ApiReads,
}

/// Which services a whitelist entry covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    Any,
    Only(BTreeSet<String>),
}

impl std::fmt::Display for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Targets::Any => f.write_str("*"),
            Targets::Only(set) => f.write_str(&set.iter().cloned().collect::<Vec<_>>().join(", ")),
        }
    }
}

impl Targets {
    pub fn covers(&self, target: &str) -> bool {
        match self {
            Targets::Any => true,
            Targets::Only(set) => set.contains(target),
        }
    }
}

#[derive(Debug, Clone)]
pub struct WhitelistRule {
    pub action: String,
    pub targets: Targets,
    pub rate_limit: Option<RateLimit>,
    /// UTC hours during which the entry applies, `[from, to)`; always when absent.
    pub hours_utc: Option<HourWindow>,
    /// UTC weekdays on which the entry applies (0 Monday … 6 Sunday); every day when absent.
    pub days_utc: Option<BTreeSet<u8>>,
}

/// Weekday names as the policy writes them, Monday first.
pub const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The UTC weekday of `unix_ms` (0 Monday … 6 Sunday): 1970-01-01 was a Thursday.
pub fn weekday_utc(unix_ms: u64) -> u8 {
    ((unix_ms / 86_400_000 + 3) % 7) as u8
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// At least 1.
    pub max: usize,
    /// Positive.
    pub per: Duration,
}

/// `[from, to)` in UTC hours, both 0–23 and different; wraps past midnight when `to < from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourWindow {
    pub from: u8,
    pub to: u8,
}

impl HourWindow {
    pub fn contains(&self, hour: u8) -> bool {
        if self.from <= self.to { hour >= self.from && hour < self.to } else { hour >= self.from || hour < self.to }
    }
}

mod raw {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct PolicyFile {
        pub mode: Mode,
        #[serde(default)]
        pub tiers: BTreeMap<String, Spanned<Tier>>,
        #[serde(default)]
        pub whitelist: Vec<Rule>,
        #[serde(default)]
        pub approvers: Vec<Approver>,
        #[serde(default)]
        pub approvals: Option<Approvals>,
        #[serde(default)]
        pub api_reads: Option<ApiReads>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Approvals {
        #[serde(default)]
        pub required: Option<Spanned<usize>>,
        #[serde(default)]
        pub expire_after_ms: Option<Spanned<u64>>,
        #[serde(default)]
        pub on_expiry: Option<OnExpiry>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Rule {
        pub action: Spanned<String>,
        pub targets: Spanned<Vec<Spanned<String>>>,
        #[serde(default)]
        pub rate_limit: Option<Spanned<Rate>>,
        #[serde(default)]
        pub hours_utc: Option<Spanned<Hours>>,
        #[serde(default)]
        pub days_utc: Option<Spanned<Vec<Spanned<String>>>>,
    }

    #[derive(Debug, Clone, Copy, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Rate {
        pub max: usize,
        pub per_ms: u64,
    }

    #[derive(Debug, Clone, Copy, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Hours {
        pub from: u8,
        pub to: u8,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Approver {
        pub name: Spanned<String>,
    }
}

impl Policies {
    /// Reads and validates a policy document for a node running `services`.
    pub fn load(src: &Source<'_>, services: &[ServiceName]) -> Result<Self, Problems> {
        let raw: raw::PolicyFile = source::parse(src)?;
        let mut c = Collector::new(src.name);
        let own_tier = |action: &str| Primitive::action_tier(action);
        let mut tiers = BTreeMap::new();
        for (action, tier) in &raw.tiers {
            match own_tier(action) {
                None => c.at(tier.referenced, format!("tiers: unknown action `{action}`")),
                Some(own) if tier.value < own => c.at(
                    tier.referenced,
                    format!(
                        "tiers: `{action}` is tier {} by nature; a policy may raise it, not lower it to {}",
                        own.get(),
                        tier.value.get()
                    ),
                ),
                Some(_) => {
                    tiers.insert(action.clone(), tier.value);
                }
            }
        }
        let whitelist = raw.whitelist.iter().filter_map(|r| rule(&mut c, r, &tiers, services)).collect();
        let mut approvers = Vec::new();
        for a in &raw.approvers {
            if a.name.value.trim().is_empty() {
                c.at(a.name.referenced, "approver name must not be empty");
            } else if approvers.contains(&a.name.value) {
                c.at(a.name.referenced, format!("approver `{}` is listed twice", a.name.value));
            } else {
                approvers.push(a.name.value.clone());
            }
        }
        let d = ApprovalRules::default();
        let approvals = match &raw.approvals {
            None => d,
            Some(a) => {
                let required = match &a.required {
                    Some(r) if r.value == 0 => {
                        c.at(r.referenced, "approvals.required must be at least 1");
                        1
                    }
                    // An empty list means anyone with the approver role, however many that is.
                    Some(r) if !approvers.is_empty() && r.value > approvers.len() => {
                        c.at(
                            r.referenced,
                            format!(
                                "approvals.required is {}, but only {} approvers are listed: no request could pass",
                                r.value,
                                approvers.len()
                            ),
                        );
                        r.value
                    }
                    Some(r) => r.value,
                    None => d.required,
                };
                let expire_after = match &a.expire_after_ms {
                    Some(e) if e.value == 0 => {
                        c.at(e.referenced, "approvals.expire_after_ms must be positive");
                        d.expire_after
                    }
                    Some(e) => Duration::from_millis(e.value),
                    None => d.expire_after,
                };
                ApprovalRules { required, expire_after, on_expiry: a.on_expiry.unwrap_or(d.on_expiry) }
            }
        };
        let api_reads = raw.api_reads.unwrap_or(ApiReads::Auto);
        c.finish(|| Policies { mode: raw.mode, tiers, whitelist, approvers, approvals, api_reads })
    }

    pub fn embedded_default(services: &[ServiceName]) -> Result<Self, Problems> {
        Self::load(&Source { name: DEFAULT_POLICIES_FILE, dir: Path::new("."), text: DEFAULT_POLICIES_YAML }, services)
    }

    /// The policy a node gets when its config names none: the embedded whitelist in
    /// production mode, so tier 3 actions (killing strangers, restoring snapshots,
    /// deleting files) wait for an approver. Only the embedded demo node runs in dev mode.
    pub fn safe_default(services: &[ServiceName]) -> Result<Self, Problems> {
        Ok(Self { mode: Mode::Production, ..Self::embedded_default(services)? })
    }

    /// The longest rate-limit period of any whitelist entry: how far back the history of
    /// allowed actions matters.
    pub fn longest_rate_window(&self) -> Option<Duration> {
        self.whitelist.iter().filter_map(|w| w.rate_limit.map(|r| r.per)).max()
    }

    /// The tier governance applies to `action`: the policy's override, else its own.
    pub fn tier_of(&self, action: &str, own: Tier) -> Tier {
        self.tiers.get(action).copied().unwrap_or(own).max(own)
    }
}

fn rule(
    c: &mut Collector,
    r: &raw::Rule,
    tiers: &BTreeMap<String, Tier>,
    services: &[ServiceName],
) -> Option<WhitelistRule> {
    let action = r.action.value.clone();
    let mut ok = true;
    match Primitive::action_tier(&action) {
        None => {
            c.at(r.action.referenced, format!("whitelist: unknown action `{action}`"));
            ok = false;
        }
        Some(own) if tiers.get(&action).copied().unwrap_or(own) == Tier::HUMAN_ONLY => {
            c.at(
                r.action.referenced,
                format!("whitelist: `{action}` is tier 4: a person must act, it cannot be whitelisted"),
            );
            ok = false;
        }
        Some(_) => {}
    }
    let targets = if r.targets.value.iter().any(|t| t.value == "*") {
        if r.targets.value.len() > 1 {
            c.at(r.targets.referenced, "whitelist: `*` already covers every service; list it alone");
        }
        Targets::Any
    } else {
        if r.targets.value.is_empty() {
            c.at(r.targets.referenced, format!("whitelist: `{action}` covers no target (use `*` for every service)"));
            ok = false;
        }
        let mut set = BTreeSet::new();
        for t in &r.targets.value {
            if services.iter().any(|s| *s == t.value.as_str()) {
                set.insert(t.value.clone());
            } else {
                c.at(t.referenced, format!("whitelist: unknown target `{}` (not a service of this node)", t.value));
                ok = false;
            }
        }
        Targets::Only(set)
    };
    let rate_limit = r.rate_limit.as_ref().map(|rl| {
        if rl.value.max == 0 {
            c.at(rl.referenced, "whitelist: rate_limit.max must be at least 1 (remove the entry to forbid the action)");
        }
        if rl.value.per_ms == 0 {
            c.at(rl.referenced, "whitelist: rate_limit.per_ms must be positive");
        }
        RateLimit { max: rl.value.max, per: Duration::from_millis(rl.value.per_ms) }
    });
    let hours_utc = r.hours_utc.as_ref().map(|h| {
        for (key, v) in [("from", h.value.from), ("to", h.value.to)] {
            if v > 23 {
                c.at(h.referenced, format!("whitelist: hours_utc.{key} is {v}, outside 0–23"));
            }
        }
        if h.value.from == h.value.to {
            c.at(h.referenced, "whitelist: hours_utc is empty (from equals to); remove it to allow all day");
        }
        HourWindow { from: h.value.from, to: h.value.to }
    });
    let days_utc = r.days_utc.as_ref().map(|days| {
        let mut set = BTreeSet::new();
        for d in &days.value {
            match WEEKDAYS.iter().position(|w| d.value.eq_ignore_ascii_case(w)) {
                Some(i) => {
                    set.insert(i as u8);
                }
                None => c.at(
                    d.referenced,
                    format!("whitelist: days_utc `{}` is not one of {}", d.value, WEEKDAYS.join(", ")),
                ),
            }
        }
        if days.value.is_empty() {
            c.at(days.referenced, "whitelist: days_utc is empty; remove it to allow every day");
        }
        set
    });
    ok.then_some(WhitelistRule { action, targets, rate_limit, hours_utc, days_utc })
}

/// A request for permission to act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRequest {
    pub action: String,
    pub tier: Tier,
    pub target: String,
    pub rationale: String,
    pub actor: AuditActor,
    pub incident_id: Option<u64>,
    pub run_id: Option<u64>,
    /// What would happen, in words (which process, file, port): shown to approvers.
    #[serde(default)]
    pub plan: String,
    /// Exactly what it would act on, as identities that change when the thing does (a
    /// process by pid and start time, a file by path): an approval allows only the same.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub touches: Vec<String>,
}

impl ActionRequest {
    /// The audit record of the gatekeeper's decision on this request.
    pub fn decision_record(&self, verdict: &Verdict) -> AuditRecord {
        self.record(EntryKind::Decision, verdict.kind(), None, verdict.reason().to_string())
    }

    /// The audit record of what happened when the permitted action ran.
    pub fn outcome_record(&self, outcome: OutcomeKind, detail: String) -> AuditRecord {
        self.record(EntryKind::Outcome, DecisionKind::Allow, Some(outcome), detail)
    }

    fn record(
        &self,
        kind: EntryKind,
        decision: DecisionKind,
        outcome: Option<OutcomeKind>,
        detail: String,
    ) -> AuditRecord {
        AuditRecord {
            kind,
            actor: self.actor.clone(),
            action: self.action.clone(),
            tier: self.tier.get(),
            target: self.target.clone(),
            rationale: self.rationale.clone(),
            decision,
            outcome,
            detail,
            incident_id: self.incident_id,
            run_id: self.run_id,
        }
    }
}

/// A request the policy allows. Only [`evaluate`] makes one; a [`crate::permit::Permit`]
/// needs one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    request: ActionRequest,
    reason: String,
    /// The approval request it spends, for a tier 3 action in production.
    approval_id: Option<u64>,
}

impl Allowed {
    pub fn request(&self) -> &ActionRequest {
        &self.request
    }
    pub fn reason(&self) -> &str {
        &self.reason
    }
    pub fn approval_id(&self) -> Option<u64> {
        self.approval_id
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow(Allowed),
    Deny {
        reason: String,
        /// When the same request would be allowed (a rate limit's window moves on, an hour
        /// window opens); `None`: not by waiting.
        retry_at_unix_ms: Option<u64>,
    },
    PendingApproval {
        reason: String,
    },
}

impl Verdict {
    pub fn kind(&self) -> DecisionKind {
        match self {
            Verdict::Allow(_) => DecisionKind::Allow,
            Verdict::Deny { .. } => DecisionKind::Deny,
            Verdict::PendingApproval { .. } => DecisionKind::PendingApproval,
        }
    }
    pub fn reason(&self) -> &str {
        match self {
            Verdict::Allow(a) => &a.reason,
            Verdict::Deny { reason, .. } | Verdict::PendingApproval { reason } => reason,
        }
    }
}

/// Times (unix ms) at which each (action, target) was allowed, for rate limits.
#[derive(Debug, Default, Clone)]
pub struct RateHistory {
    allowed: BTreeMap<(String, String), VecDeque<u64>>,
}

impl RateHistory {
    /// The times (oldest first) `action` on `target` was allowed at or after `since`.
    fn within(&self, action: &str, target: &str, since: u64) -> Vec<u64> {
        self.allowed
            .get(&(action.to_string(), target.to_string()))
            .map(|q| q.iter().copied().filter(|&t| t >= since).collect())
            .unwrap_or_default()
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
    evaluate_with(policies, req, now_unix_ms, history, None)
}

/// Decides `req`; an `approved` request it allows stands in for the approver a tier 3
/// action needs in production (every other rule still holds: whitelist, rate, hours).
pub fn evaluate_with(
    policies: &Policies,
    req: ActionRequest,
    now_unix_ms: u64,
    history: &RateHistory,
    approved: Option<&crate::approval::Approval>,
) -> Verdict {
    let tier = policies.tier_of(&req.action, req.tier);
    if tier == Tier::OBSERVE {
        return Verdict::Allow(Allowed {
            request: ActionRequest { tier, ..req },
            reason: "tier 1: autonomous".into(),
            approval_id: None,
        });
    }
    if tier == Tier::HUMAN_ONLY {
        let reason = format!("`{}` is tier 4: never autonomous, a person must act", req.action);
        return Verdict::Deny { reason, retry_at_unix_ms: None };
    }
    // With their place in the file: a decision names the entry that allowed it.
    let entries: Vec<(usize, &WhitelistRule)> = policies
        .whitelist
        .iter()
        .enumerate()
        .filter(|(_, w)| w.action == req.action && w.targets.covers(&req.target))
        .collect();
    if entries.is_empty() {
        let reason = format!("`{}` on `{}` is not whitelisted", req.action, req.target);
        return Verdict::Deny { reason, retry_at_unix_ms: None };
    }
    let hour = ((now_unix_ms / 3_600_000) % 24) as u8;
    let mut last_reason = String::new();
    // The earliest time any matching entry would allow it.
    let mut retry_at: Option<u64> = None;
    let mut later = |at: u64| retry_at = Some(retry_at.map_or(at, |r| r.min(at)));
    let day = weekday_utc(now_unix_ms);
    for (index, w) in entries {
        if let Some(days) = &w.days_utc
            && !days.contains(&day)
        {
            let names: Vec<&str> = days.iter().map(|d| WEEKDAYS[*d as usize]).collect();
            last_reason = format!("`{}` is whitelisted only on {} (UTC)", req.action, names.join(", "));
            // The next allowed day, at midnight UTC.
            let days_until = (1..=7u64).find(|k| days.contains(&(((u64::from(day) + k) % 7) as u8))).unwrap_or(7);
            later((now_unix_ms / 86_400_000 + days_until) * 86_400_000);
            continue;
        }
        if let Some(h) = w.hours_utc
            && !h.contains(hour)
        {
            last_reason = format!("`{}` is whitelisted only {:02}:00–{:02}:00 UTC", req.action, h.from, h.to);
            let hours_until = (u64::from(h.from) + 24 - u64::from(hour)) % 24;
            later((now_unix_ms / 3_600_000 + hours_until) * 3_600_000);
            continue;
        }
        if let Some(r) = w.rate_limit {
            let per_ms = r.per.as_millis() as u64;
            let window = history.within(&req.action, &req.target, now_unix_ms.saturating_sub(per_ms));
            if window.len() >= r.max {
                let used = window.len();
                last_reason = format!(
                    "rate limit: `{}` on `{}` ran {used} times in {per_ms} ms (max {})",
                    req.action, req.target, r.max
                );
                // Allowed again once enough of the counted ones have left the window.
                if let Some(&oldest) = window.get(used - r.max) {
                    later(oldest + per_ms + 1);
                }
                continue;
            }
        }
        if tier == Tier::DESTRUCTIVE && policies.mode == Mode::Production {
            if let Some(a) = approved.filter(|a| a.allows(&req, now_unix_ms)) {
                let reason = format!("tier 3, approved by {} (approval {})", a.approvers().join(", "), a.id);
                return Verdict::Allow(Allowed {
                    request: ActionRequest { tier, ..req },
                    reason,
                    approval_id: Some(a.id),
                });
            }
            return Verdict::PendingApproval {
                reason: format!("tier 3 `{}` on `{}` waits for an approver", req.action, req.target),
            };
        }
        let rule = format!("whitelist entry {} ({} on {})", index + 1, w.action, w.targets);
        let reason = if tier == Tier::DESTRUCTIVE {
            format!("whitelisted tier 3 by {rule}, fast-approved in dev mode")
        } else {
            format!("whitelisted tier 2 by {rule}")
        };
        return Verdict::Allow(Allowed { request: ActionRequest { tier, ..req }, reason, approval_id: None });
    }
    Verdict::Deny { reason: last_reason, retry_at_unix_ms: retry_at }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services() -> Vec<ServiceName> {
        ["api", "db"].iter().map(|s| ServiceName::parse(s).expect("name")).collect()
    }

    fn load(text: &str) -> Result<Policies, Problems> {
        Policies::load(&Source { name: "p.yaml", dir: Path::new("."), text }, &services())
    }

    /// stop_service is raised to tier 3 (needs approval in production); signal_service to
    /// tier 4 (never autonomous); quarantine_service is whitelisted only 01:00–02:00 UTC.
    fn policies(mode: &str) -> Policies {
        load(&format!(
            "mode: {mode}\ntiers:\n  stop_service: 3\n  signal_service: 4\nwhitelist:\n  - action: restart_service\n    targets: [api]\n    rate_limit: {{ max: 2, per_ms: 60000 }}\n  - action: stop_service\n    targets: ['*']\n  - action: quarantine_service\n    targets: ['*']\n    hours_utc: {{ from: 1, to: 2 }}\n"
        ))
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
            plan: String::new(),
            touches: Vec::new(),
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
        assert!(
            matches!(&v, Verdict::Deny { reason, retry_at_unix_ms: None } if reason.contains("not whitelisted")),
            "{v:?}"
        );
    }

    #[test]
    fn test_rate_limit_denies_past_max() {
        let p = policies("dev");
        let mut h = RateHistory::default();
        h.record("restart_service", "api", NOON - 1000, 100);
        h.record("restart_service", "api", NOON - 500, 100);
        let v = evaluate(&p, req("restart_service", 2, "api"), NOON, &h);
        assert!(matches!(&v, Verdict::Deny { reason, .. } if reason.contains("rate limit")), "{v:?}");
        // The first of the two leaves the 60 s window at NOON - 1000 + 60000.
        assert!(matches!(v, Verdict::Deny { retry_at_unix_ms: Some(t), .. } if t == NOON - 1000 + 60_000 + 1));
        let later = evaluate(&p, req("restart_service", 2, "api"), NOON + 61_000, &h);
        assert!(matches!(later, Verdict::Allow(_)), "window passed: {later:?}");
    }

    #[test]
    fn test_tier3_waits_for_approval_in_production_and_is_fast_approved_in_dev() {
        let prod = evaluate(&policies("production"), req("stop_service", 2, "db"), NOON, &RateHistory::default());
        assert!(matches!(prod, Verdict::PendingApproval { .. }), "{prod:?}");
        let dev = evaluate(&policies("dev"), req("stop_service", 2, "db"), NOON, &RateHistory::default());
        assert!(matches!(&dev, Verdict::Allow(a) if a.request().tier == Tier::DESTRUCTIVE), "{dev:?}");
    }

    #[test]
    fn test_tier4_override_is_never_autonomous() {
        let v = evaluate(&policies("dev"), req("signal_service", 2, "db"), NOON, &RateHistory::default());
        assert!(matches!(&v, Verdict::Deny { reason, .. } if reason.contains("tier 4")), "{v:?}");
    }

    #[test]
    fn test_hour_window_limits_entry() {
        let p = policies("dev");
        let outside = evaluate(&p, req("quarantine_service", 2, "api"), NOON, &RateHistory::default());
        let tomorrow_one = 25 * 3_600_000;
        assert!(matches!(outside, Verdict::Deny { retry_at_unix_ms: Some(t), .. } if t == tomorrow_one), "{outside:?}");
        let inside = evaluate(&p, req("quarantine_service", 2, "api"), 3_600_000 + 5, &RateHistory::default());
        assert!(matches!(inside, Verdict::Allow(_)), "{inside:?}");
        assert!(HourWindow { from: 22, to: 2 }.contains(23) && HourWindow { from: 22, to: 2 }.contains(1));
        assert!(!HourWindow { from: 22, to: 2 }.contains(12), "a window may wrap past midnight");
    }

    #[test]
    fn test_decision_and_outcome_records_carry_the_request() {
        let r = req("restart_service", 2, "api");
        let v = evaluate(&policies("dev"), r.clone(), NOON, &RateHistory::default());
        let d = r.decision_record(&v);
        assert_eq!(
            (d.kind, d.decision, d.action.as_str(), d.detail.as_str()),
            (
                EntryKind::Decision,
                DecisionKind::Allow,
                "restart_service",
                "whitelisted tier 2 by whitelist entry 1 (restart_service on api)"
            )
        );
        let o = r.outcome_record(OutcomeKind::Failed, "boom".into());
        assert_eq!(
            (o.kind, o.outcome, o.target.as_str(), o.detail.as_str()),
            (EntryKind::Outcome, Some(OutcomeKind::Failed), "api", "boom")
        );
    }

    #[test]
    fn test_embedded_policies_load() {
        let p = Policies::embedded_default(&services()).expect("embedded policies");
        assert!(p.whitelist.iter().any(|w| w.action == "restart_service"));
    }

    #[test]
    fn test_bad_tier_names_position() {
        let err = load("mode: dev\ntiers:\n  stop_service: 9\n").expect_err("tier 9");
        assert_eq!(err.list()[0].pos.line, 3, "{err}");
    }

    #[test]
    fn test_every_policy_mistake_is_reported_with_its_position() {
        // Unknown action, unknown target, an hour outside 0–23, a zero rate, a whitelisted
        // tier 4 action and a lowered tier: six problems, one load.
        let text = "mode: dev\ntiers:\n  signal_service: 4\n  restart_service: 1\nwhitelist:\n  - action: restat_service\n    targets: ['*']\n  - action: stop_service\n    targets: [nope]\n  - action: restart_service\n    targets: [api]\n    hours_utc: { from: 25, to: 3 }\n    rate_limit: { max: 0, per_ms: 1000 }\n  - action: signal_service\n    targets: ['*']\n";
        let err = load(text).expect_err("six problems");
        let found: Vec<(u64, &str)> = err.list().iter().map(|p| (p.pos.line, p.message.as_str())).collect();
        assert_eq!(err.len(), 6, "{err}");
        for (line, needle) in [
            (4, "not lower it to 1"),
            (6, "unknown action `restat_service`"),
            (9, "unknown target `nope`"),
            (12, "hours_utc.from is 25"),
            (13, "rate_limit.max must be at least 1"),
            (14, "tier 4"),
        ] {
            assert!(
                found.iter().any(|(l, m)| *l == line && m.contains(needle)),
                "line {line}: `{needle}` in {found:?}"
            );
        }
    }

    /// The policy of the table below: tiers raised, targets limited, a rate, an hour window,
    /// weekdays, a tier 4.
    fn table_policy(mode: &str) -> Policies {
        load(&format!(
            "mode: {mode}\ntiers:\n  stop_service: 3\n  signal_service: 4\n  release_service: 3\nwhitelist:\n  - action: restart_service\n    targets: [api]\n    rate_limit: {{ max: 2, per_ms: 60000 }}\n  - action: restart_service\n    targets: [db]\n  - action: stop_service\n    targets: [db]\n  - action: quarantine_service\n    targets: ['*']\n    hours_utc: {{ from: 1, to: 2 }}\n  - action: release_service\n    targets: ['*']\n    days_utc: [sat, sun]\napprovers:\n  - name: alice\n"
        ))
        .expect("valid policy")
    }

    #[test]
    fn test_ten_allowed_and_ten_blocked_actions_with_their_reasons_and_audit_records() {
        // 1970-01-01 was a Thursday: day 2 is a Saturday, day 5 a Tuesday.
        const SAT_NOON: u64 = 2 * 86_400_000 + NOON;
        const TUE_NOON: u64 = 5 * 86_400_000 + NOON;
        const TUE_0130: u64 = 5 * 86_400_000 + 5_400_000;
        let mut busy = RateHistory::default();
        busy.record("restart_service", "api", TUE_NOON - 1_000, 100);
        busy.record("restart_service", "api", TUE_NOON - 500, 100);
        let quiet = RateHistory::default();
        /// (mode, action, own tier, target, now, history, allowed?, reason contains)
        type Row<'a> = (&'a str, &'a str, u8, &'a str, u64, &'a RateHistory, bool, &'a str);
        let table: Vec<Row> = vec![
            ("dev", "collect_diagnostics", 1, "api", TUE_NOON, &quiet, true, "tier 1: autonomous"),
            ("production", "wait_healthy", 1, "db", TUE_NOON, &quiet, true, "tier 1"),
            ("production", "start_service", 1, "api", TUE_NOON, &quiet, true, "tier 1"),
            ("dev", "restart_service", 2, "api", TUE_NOON, &quiet, true, "whitelist entry 1 (restart_service on api)"),
            ("production", "restart_service", 2, "db", TUE_NOON, &quiet, true, "whitelist entry 2"),
            ("production", "restart_service", 2, "db", TUE_NOON, &busy, true, "whitelisted tier 2"),
            (
                "dev",
                "stop_service",
                2,
                "db",
                TUE_NOON,
                &quiet,
                true,
                "tier 3 by whitelist entry 3 (stop_service on db), fast-approved in dev mode",
            ),
            ("dev", "quarantine_service", 2, "api", TUE_0130, &quiet, true, "whitelist entry 4"),
            ("production", "quarantine_service", 2, "db", TUE_0130, &quiet, true, "whitelisted tier 2"),
            ("dev", "release_service", 2, "api", SAT_NOON, &quiet, true, "fast-approved in dev mode"),
            (
                "dev",
                "restart_service",
                2,
                "model",
                TUE_NOON,
                &quiet,
                false,
                "`restart_service` on `model` is not whitelisted",
            ),
            ("dev", "stop_service", 2, "api", TUE_NOON, &quiet, false, "`stop_service` on `api` is not whitelisted"),
            ("dev", "restart_service", 2, "api", TUE_NOON, &busy, false, "rate limit"),
            ("dev", "signal_service", 2, "api", TUE_NOON, &quiet, false, "tier 4: never autonomous"),
            ("production", "signal_service", 2, "db", TUE_NOON, &quiet, false, "a person must act"),
            ("dev", "quarantine_service", 2, "api", TUE_NOON, &quiet, false, "whitelisted only 01:00–02:00 UTC"),
            ("dev", "release_service", 2, "db", TUE_NOON, &quiet, false, "whitelisted only on sat, sun"),
            ("production", "stop_service", 2, "db", TUE_NOON, &quiet, false, "waits for an approver"),
            ("production", "release_service", 2, "db", SAT_NOON, &quiet, false, "waits for an approver"),
            ("production", "nonexistent_action", 2, "db", TUE_NOON, &quiet, false, "not whitelisted"),
        ];
        let (mut allowed, mut blocked) = (0, 0);
        for (mode, action, tier, target, now, history, allow, says) in table {
            let p = table_policy(mode);
            let r = req(action, tier, target);
            let v = evaluate(&p, r.clone(), now, history);
            let what = format!("{mode} {action} on {target}: {v:?}");
            assert_eq!(matches!(v, Verdict::Allow(_)), allow, "{what}");
            assert!(v.reason().contains(says), "{what}: expected `{says}`");
            let audit = r.decision_record(&v);
            assert_eq!(audit.kind, EntryKind::Decision, "{what}");
            assert_eq!(audit.decision, v.kind(), "{what}");
            assert_eq!((audit.action.as_str(), audit.target.as_str()), (action, target), "{what}");
            assert_eq!(audit.detail, v.reason(), "the audit entry keeps the reason: {what}");
            assert_eq!(audit.actor, AuditActor::System);
            if allow {
                allowed += 1;
            } else {
                blocked += 1;
            }
        }
        assert_eq!((allowed, blocked), (10, 10));
    }
}
