//! Playbooks as data, and planning them into governed steps.
//!
//! A playbook is metadata plus ordered steps built from typed primitives. Each primitive
//! declares its minimum tier, what it changes and how it is undone; planning binds the
//! steps to a target service so each one can be checked against a permit and run.

use crate::incident::FailureMode;
use crate::permit::Governed;
use crate::policy::Tier;
use crate::yaml::{self, SourcePos, YamlError};
use serde::{Deserialize, Serialize};

pub const DEFAULT_CATALOG_YAML: &str = include_str!("../../config/playbooks.yaml");
pub const DEFAULT_CATALOG_FILE: &str = "config/playbooks.yaml (embedded)";

/// The building blocks of playbooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "do", deny_unknown_fields)]
pub enum Primitive {
    /// Gather pid, state, recent log lines and port owners into the incident.
    CollectDiagnostics,
    /// Send a signal to the service's process group.
    SignalService {
        signal: String,
    },
    /// Stop (TERM, grace, KILL) and start again; `force` skips straight to KILL, for a hung
    /// process that would never act on TERM.
    RestartService {
        #[serde(default)]
        force: bool,
    },
    StopService,
    StartService,
    /// Wait for the service's probes to pass.
    WaitHealthy {
        timeout_ms: u64,
    },
    /// Stop restarting a crash-looping service until an operator releases it.
    QuarantineService,
}

impl Primitive {
    /// The action name governance rules and the audit log speak of.
    pub fn action(&self) -> &'static str {
        match self {
            Primitive::CollectDiagnostics => "collect_diagnostics",
            Primitive::SignalService { .. } => "signal_service",
            Primitive::RestartService { .. } => "restart_service",
            Primitive::StopService => "stop_service",
            Primitive::StartService => "start_service",
            Primitive::WaitHealthy { .. } => "wait_healthy",
            Primitive::QuarantineService => "quarantine_service",
        }
    }

    pub fn min_tier(&self) -> Tier {
        match self {
            Primitive::CollectDiagnostics | Primitive::WaitHealthy { .. } | Primitive::StartService => Tier::OBSERVE,
            Primitive::SignalService { .. }
            | Primitive::RestartService { .. }
            | Primitive::StopService
            | Primitive::QuarantineService => Tier::REVERSIBLE,
        }
    }

    /// What running it changes, for people and for the rollback document.
    pub fn changes(&self) -> &'static str {
        match self {
            Primitive::CollectDiagnostics | Primitive::WaitHealthy { .. } => "nothing",
            Primitive::SignalService { .. } => "delivers a signal to the service's process group",
            Primitive::RestartService { .. } => "replaces the service's process (new pid)",
            Primitive::StopService => "stops the service",
            Primitive::StartService => "starts the service",
            Primitive::QuarantineService => "stops restarting the service",
        }
    }

    /// The primitive that undoes it, if any (a restart needs none: the service runs either way).
    pub fn inverse(&self) -> Option<Primitive> {
        match self {
            Primitive::StopService | Primitive::QuarantineService => Some(Primitive::StartService),
            Primitive::StartService => Some(Primitive::StopService),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    pub id: String,
    pub name: String,
    pub description: String,
    pub category: String,
    /// The highest tier of its steps (checked on load).
    pub tier: Tier,
    pub triggers: Vec<FailureMode>,
    #[serde(default)]
    pub max_retries: u32,
    pub timeout_ms: u64,
    /// Re-probe the target after the steps.
    #[serde(default = "yes")]
    pub verify: bool,
    pub steps: Vec<Primitive>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    playbooks: Vec<Playbook>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    Yaml(#[from] YamlError),
    #[error("{pos}: {message}")]
    Invalid { pos: SourcePos, message: String },
}

/// The loaded, checked catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    playbooks: Vec<Playbook>,
}

impl Catalog {
    pub fn load(file: &str, text: &str) -> Result<Self, CatalogError> {
        let parsed: CatalogFile = yaml::parse(file, text)?;
        let invalid = |message: String| CatalogError::Invalid {
            pos: SourcePos { file: file.into(), line: 1, column: 1 },
            message,
        };
        let mut seen = std::collections::BTreeSet::new();
        for p in &parsed.playbooks {
            if !seen.insert(p.id.as_str()) {
                return Err(invalid(format!("playbook `{}` is defined twice", p.id)));
            }
            let highest = p.steps.iter().map(Primitive::min_tier).max().unwrap_or(Tier::OBSERVE);
            if highest != p.tier {
                return Err(invalid(format!(
                    "playbook `{}` declares tier {} but its steps need tier {}",
                    p.id,
                    p.tier.get(),
                    highest.get()
                )));
            }
            if p.steps.is_empty() {
                return Err(invalid(format!("playbook `{}` has no steps", p.id)));
            }
        }
        Ok(Self { playbooks: parsed.playbooks })
    }

    pub fn embedded_default() -> Result<Self, CatalogError> {
        Self::load(DEFAULT_CATALOG_FILE, DEFAULT_CATALOG_YAML)
    }

    pub fn get(&self, id: &str) -> Option<&Playbook> {
        self.playbooks.iter().find(|p| p.id == id)
    }

    pub fn all(&self) -> &[Playbook] {
        &self.playbooks
    }

    /// Playbooks for a failure mode, in catalog order (first = first choice).
    pub fn for_mode(&self, mode: FailureMode) -> Vec<&Playbook> {
        self.playbooks.iter().filter(|p| p.triggers.contains(&mode)).collect()
    }
}

/// One step bound to its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub index: usize,
    pub primitive: Primitive,
    pub target: String,
    pub tier: Tier,
}

impl Governed for PlannedStep {
    fn action(&self) -> &str {
        self.primitive.action()
    }
    fn target(&self) -> &str {
        &self.target
    }
    fn tier(&self) -> Tier {
        self.tier
    }
}

/// Binds a playbook's steps to `target`; `tier_of` lets policy raise a step's tier.
pub fn plan(playbook: &Playbook, target: &str, tier_of: impl Fn(&str, Tier) -> Tier) -> Vec<PlannedStep> {
    playbook
        .steps
        .iter()
        .enumerate()
        .map(|(index, p)| PlannedStep {
            index,
            primitive: p.clone(),
            target: target.to_string(),
            tier: tier_of(p.action(), p.min_tier()).max(p.min_tier()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_embedded_catalog_loads_and_covers_api_timeout() {
        let c = Catalog::embedded_default().expect("catalog");
        let first = c.for_mode(FailureMode::ApiTimeout);
        assert_eq!(first.first().map(|p| p.id.as_str()), Some("restart_hung_service"));
    }

    #[test]
    fn test_plan_binds_target_and_keeps_min_tier() {
        let c = Catalog::embedded_default().expect("catalog");
        let pb = c.get("restart_hung_service").expect("playbook");
        let steps = plan(pb, "api", |_, t| t);
        assert!(steps.iter().all(|s| s.target == "api"));
        let restart = steps.iter().find(|s| s.primitive.action() == "restart_service").expect("restart step");
        assert_eq!(restart.tier, Tier::REVERSIBLE);
        // Policy may raise a tier, never lower it below the primitive's own.
        let lowered = plan(pb, "api", |_, _| Tier::OBSERVE);
        assert!(lowered.iter().all(|s| s.tier >= s.primitive.min_tier()));
    }

    #[test]
    fn test_catalog_rejects_understated_tier() {
        let text = "playbooks:\n  - id: x\n    name: X\n    description: d\n    category: service\n    tier: 1\n    triggers: [api_timeout]\n    timeout_ms: 1000\n    steps:\n      - do: restart_service\n";
        let err = Catalog::load("c.yaml", text).expect_err("tier too low");
        assert!(err.to_string().contains("declares tier 1"), "{err}");
    }
}

/// How a playbook run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Running,
    Succeeded,
    Failed,
    /// Governance refused a step; nothing past it ran.
    Denied,
    /// A step waits for an approver.
    PendingApproval,
}

/// One step as it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub index: usize,
    pub action: String,
    pub tier: u8,
    /// The audit entry of the decision that permitted it (tier ≥ 2).
    pub permit_audit_seq: Option<u64>,
    pub ok: bool,
    pub detail: String,
    pub duration_ms: u64,
}

/// One playbook run as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: u64,
    pub incident_id: Option<u64>,
    pub playbook: String,
    pub target: String,
    pub started_unix_ms: u64,
    pub finished_unix_ms: Option<u64>,
    pub outcome: RunOutcome,
    pub steps: Vec<StepRecord>,
    pub detail: String,
}

impl RunRecord {
    pub fn duration_ms(&self) -> Option<u64> {
        self.finished_unix_ms.map(|f| f.saturating_sub(self.started_unix_ms))
    }
}
