//! Playbooks as data, and planning them into governed steps.
//!
//! A playbook is metadata plus ordered steps built from typed primitives. Each primitive
//! declares its minimum tier, what it changes and how it is undone; planning binds the
//! steps to a target service so each one can be checked against a permit and run.

use crate::config::ServiceName;
use crate::mode::FailureMode;
use crate::signal::SignalName;
use crate::source::{self, Collector, Problems, Source};
use crate::tier::Tier;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use std::path::Path;
use std::time::Duration;

pub const DEFAULT_CATALOG_YAML: &str = include_str!("../../config/playbooks.yaml");
pub const DEFAULT_CATALOG_FILE: &str = "config/playbooks.yaml (embedded)";

/// Durations written as whole milliseconds (`timeout_ms: 500`).
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// The building blocks of playbooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "do", deny_unknown_fields)]
pub enum Primitive {
    /// Record the service's state, pid, restarts and last log lines in the step's detail.
    CollectDiagnostics,
    /// Send a signal to the service's process group.
    SignalService {
        signal: SignalName,
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
        #[serde(rename = "timeout_ms", with = "millis")]
        timeout: Duration,
    },
    /// Stop restarting a crash-looping service until an operator releases it.
    QuarantineService,
    /// Lift a quarantine: the service starts again with a fresh restart budget.
    ReleaseService,
}

/// Every action a primitive can name, with its own (minimum) tier. Policies may only name
/// these; a test keeps it in step with [`Primitive::action`].
const ACTIONS: &[(&str, Tier)] = &[
    ("collect_diagnostics", Tier::OBSERVE),
    ("signal_service", Tier::REVERSIBLE),
    ("restart_service", Tier::REVERSIBLE),
    ("stop_service", Tier::REVERSIBLE),
    ("start_service", Tier::OBSERVE),
    ("wait_healthy", Tier::OBSERVE),
    ("quarantine_service", Tier::REVERSIBLE),
    ("release_service", Tier::REVERSIBLE),
];

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
            Primitive::ReleaseService => "release_service",
        }
    }

    /// The own tier of a known action; `None` for a name no primitive has.
    pub fn action_tier(action: &str) -> Option<Tier> {
        ACTIONS.iter().find(|(a, _)| *a == action).map(|(_, t)| *t)
    }

    /// Every known action name.
    pub fn actions() -> impl Iterator<Item = &'static str> {
        ACTIONS.iter().map(|(a, _)| *a)
    }

    pub fn min_tier(&self) -> Tier {
        Self::action_tier(self.action()).unwrap_or(Tier::HUMAN_ONLY)
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
            Primitive::ReleaseService => "starts a quarantined service again with a fresh restart budget",
        }
    }

    /// The primitive that undoes it, if any (a restart needs none: the service runs either way).
    pub fn inverse(&self) -> Option<Primitive> {
        match self {
            Primitive::StopService | Primitive::QuarantineService => Some(Primitive::StartService),
            Primitive::ReleaseService => Some(Primitive::QuarantineService),
            Primitive::StartService => Some(Primitive::StopService),
            _ => None,
        }
    }

    /// What is wrong with this step's own parameters, if anything.
    fn problem(&self) -> Option<String> {
        match self {
            Primitive::WaitHealthy { timeout } if timeout.is_zero() => {
                Some("wait_healthy.timeout_ms must be positive".into())
            }
            _ => None,
        }
    }
}

/// What a playbook is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Service,
    Network,
    Database,
    Resources,
    Config,
    Model,
}

/// A validated playbook.
#[derive(Debug, Clone)]
pub struct Playbook {
    pub id: String,
    pub name: String,
    pub description: String,
    pub category: Category,
    /// At least the highest tier of its steps (checked on load).
    pub tier: Tier,
    /// At least one failure mode.
    pub triggers: Vec<FailureMode>,
    pub max_retries: u32,
    pub timeout: Duration,
    /// The run succeeds only once the target's own probes pass: the executor re-probes after
    /// the steps unless the last step already waits for exactly that.
    pub verify: bool,
    pub steps: Vec<Primitive>,
}

mod raw {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct CatalogFile {
        pub playbooks: Vec<Playbook>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Playbook {
        pub id: Spanned<String>,
        pub name: String,
        pub description: String,
        pub category: Category,
        pub tier: Spanned<Tier>,
        pub triggers: Spanned<Vec<FailureMode>>,
        #[serde(default)]
        pub max_retries: u32,
        pub timeout_ms: Spanned<u64>,
        #[serde(default = "yes")]
        pub verify: bool,
        pub steps: Spanned<Vec<Spanned<Primitive>>>,
    }

    fn yes() -> bool {
        true
    }
}

/// The loaded, checked catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    playbooks: Vec<Playbook>,
}

impl Catalog {
    /// Reads and validates a catalog document; every problem is reported with its position.
    pub fn load(src: &Source<'_>) -> Result<Self, Problems> {
        let parsed: raw::CatalogFile = source::parse(src)?;
        let mut c = Collector::new(src.name);
        let mut seen = std::collections::BTreeSet::new();
        let mut playbooks = Vec::new();
        for p in parsed.playbooks {
            let id = p.id.value.clone();
            if id.is_empty() || !id.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_') {
                c.at(p.id.referenced, format!("playbook id `{id}` must be lowercase letters, digits and _"));
            }
            if !seen.insert(id.clone()) {
                c.at(p.id.referenced, format!("playbook `{id}` is defined twice"));
            }
            if p.steps.value.is_empty() {
                c.at(p.steps.referenced, format!("playbook `{id}` has no steps"));
            }
            for step in &p.steps.value {
                if let Some(problem) = step.value.problem() {
                    c.at(step.referenced, format!("playbook `{id}`: {problem}"));
                }
            }
            let highest = p.steps.value.iter().map(|s| s.value.min_tier()).max().unwrap_or(Tier::OBSERVE);
            if p.tier.value < highest {
                c.at(
                    p.tier.referenced,
                    format!(
                        "playbook `{id}` declares tier {} but its steps need tier {}",
                        p.tier.value.get(),
                        highest.get()
                    ),
                );
            }
            if p.triggers.value.is_empty() {
                c.at(
                    p.triggers.referenced,
                    format!("playbook `{id}` has no triggers: no failure mode would ever run it"),
                );
            }
            if p.timeout_ms.value == 0 {
                c.at(p.timeout_ms.referenced, format!("playbook `{id}`: timeout_ms must be positive"));
            }
            playbooks.push(Playbook {
                id,
                name: p.name,
                description: p.description,
                category: p.category,
                tier: p.tier.value,
                triggers: p.triggers.value,
                max_retries: p.max_retries,
                timeout: Duration::from_millis(p.timeout_ms.value),
                verify: p.verify,
                steps: p.steps.value.into_iter().map(|s| s.value).collect(),
            });
        }
        c.finish(|| Self { playbooks })
    }

    pub fn embedded_default() -> Result<Self, Problems> {
        Self::load(&Source { name: DEFAULT_CATALOG_FILE, dir: Path::new("."), text: DEFAULT_CATALOG_YAML })
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
    pub target: ServiceName,
    pub tier: Tier,
}

/// Binds a playbook's steps to `target`; `tier_of` lets policy raise a step's tier.
pub fn plan(playbook: &Playbook, target: &ServiceName, tier_of: impl Fn(&str, Tier) -> Tier) -> Vec<PlannedStep> {
    playbook
        .steps
        .iter()
        .enumerate()
        .map(|(index, p)| PlannedStep {
            index,
            primitive: p.clone(),
            target: target.clone(),
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
        let api = ServiceName::parse("api").expect("name");
        let steps = plan(pb, &api, |_, t| t);
        assert!(steps.iter().all(|s| s.target == api));
        let restart = steps.iter().find(|s| s.primitive.action() == "restart_service").expect("restart step");
        assert_eq!(restart.tier, Tier::REVERSIBLE);
        // Policy may raise a tier, never lower it below the primitive's own.
        let lowered = plan(pb, &api, |_, _| Tier::OBSERVE);
        assert!(lowered.iter().all(|s| s.tier >= s.primitive.min_tier()));
    }

    fn load(text: &str) -> Result<Catalog, Problems> {
        Catalog::load(&Source { name: "c.yaml", dir: Path::new("."), text })
    }

    #[test]
    fn test_catalog_mistakes_are_all_reported_at_their_position() {
        // An understated tier, a zero playbook timeout and a zero wait: three problems, each
        // on its own line (not 1:1 for the whole file).
        let text = "playbooks:\n  - id: x\n    name: X\n    description: d\n    category: service\n    tier: 1\n    triggers: [api_timeout]\n    timeout_ms: 0\n    steps:\n      - do: restart_service\n      - do: wait_healthy\n        timeout_ms: 0\n";
        let err = load(text).expect_err("three problems");
        let lines: Vec<u64> = err.list().iter().map(|p| p.pos.line).collect();
        assert_eq!(err.len(), 3, "{err}");
        assert!(
            err.to_string().contains("c.yaml:6:11: playbook `x` declares tier 1 but its steps need tier 2"),
            "{err}"
        );
        assert!(lines.contains(&8) && lines.contains(&11), "{err}");
    }

    #[test]
    fn test_unknown_primitive_and_trigger_name_their_line() {
        let base = "playbooks:\n  - id: x\n    name: X\n    description: d\n    category: service\n    tier: 2\n    triggers: [api_timeout]\n    timeout_ms: 100\n    steps:\n      - do: restart_service\n";
        let err = load(&base.replace("do: restart_service", "do: reboot_planet")).expect_err("unknown primitive");
        assert_eq!(err.list()[0].pos.line, 10, "{err}");
        let err = load(&base.replace("[api_timeout]", "[sunspots]")).expect_err("unknown trigger");
        assert_eq!(err.list()[0].pos.line, 7, "{err}");
        let signal = base.replace("do: restart_service", "do: signal_service\n        signal: SIGBOGUS");
        let err = load(&signal).expect_err("unknown signal");
        assert_eq!(err.list()[0].pos.line, 10, "the step that names it: {err}");
        assert!(err.to_string().contains("unknown variant `SIGBOGUS`"), "{err}");
    }

    #[test]
    fn test_action_table_matches_primitives() {
        let every = [
            Primitive::CollectDiagnostics,
            Primitive::SignalService { signal: SignalName::Hup },
            Primitive::RestartService { force: false },
            Primitive::StopService,
            Primitive::StartService,
            Primitive::WaitHealthy { timeout: Duration::from_millis(1) },
            Primitive::QuarantineService,
            Primitive::ReleaseService,
        ];
        let names: Vec<&str> = every.iter().map(Primitive::action).collect();
        assert_eq!(names, Primitive::actions().collect::<Vec<_>>(), "ACTIONS lists every primitive once, in order");
    }
}
