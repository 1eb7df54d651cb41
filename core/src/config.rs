//! The node config: services, probes, supervision trees, healing settings.
//!
//! Two layers, as users need them: the raw schema (`deny_unknown_fields`, so a typo is an
//! error with its line and column) and [`validate`], which checks what the schema cannot
//! (unknown dependencies, cycles, duplicate names, bad addresses) and reports every problem
//! at once, each with its position.

use crate::yaml::{self, SourcePos, YamlError};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

/// The embedded default node: the demo db, model server and api.
pub const DEFAULT_NODE_YAML: &str = include_str!("../../config/node.yaml");
/// The name under which the embedded default config is reported in errors.
pub const DEFAULT_NODE_FILE: &str = "config/node.yaml (embedded)";
/// `command: "@warden"` runs this same binary (the demo services live in it).
pub const SELF_COMMAND: &str = "@warden";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    pub node: NodeSection,
    #[serde(default)]
    pub supervision: SupervisionConfig,
    pub services: Vec<ServiceConfig>,
    #[serde(default)]
    pub probes: Vec<ProbeConfig>,
    #[serde(default)]
    pub healing: HealingConfig,
    /// Path of the governance policy file; `None` uses the embedded default.
    #[serde(default)]
    pub governance_policies: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub name: String,
    /// warden's own HTTP API.
    pub http_listen: Spanned<String>,
    /// Default data dir, relative to the working directory; `--data-dir` overrides it.
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    /// Budget for the whole node to come up before a slow boot is reported.
    #[serde(default = "default_node_startup_deadline_ms")]
    pub startup_deadline_ms: u64,
}

fn default_data_dir() -> String {
    ".warden-data".into()
}
fn default_node_startup_deadline_ms() -> u64 {
    30_000
}

/// Erlang/OTP restart strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    OneForOne,
    OneForAll,
    RestForOne,
}

/// A supervisor's strategy and restart intensity: more than `max_restarts` within
/// `period_ms` and the supervisor gives up and fails upward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeSpec {
    pub strategy: Strategy,
    pub max_restarts: usize,
    pub period_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisionConfig {
    #[serde(default = "tree_node")]
    pub node: TreeSpec,
    #[serde(default = "tree_governance")]
    pub governance: TreeSpec,
    #[serde(default = "tree_guardian")]
    pub guardian: TreeSpec,
    #[serde(default = "tree_healing")]
    pub healing: TreeSpec,
    #[serde(default = "tree_http")]
    pub http: TreeSpec,
}

fn tree(strategy: Strategy) -> TreeSpec {
    TreeSpec { strategy, max_restarts: 5, period_ms: 10_000 }
}
fn tree_node() -> TreeSpec {
    TreeSpec { max_restarts: 10, ..tree(Strategy::OneForOne) }
}
fn tree_governance() -> TreeSpec {
    tree(Strategy::RestForOne)
}
fn tree_guardian() -> TreeSpec {
    tree(Strategy::OneForOne)
}
fn tree_healing() -> TreeSpec {
    tree(Strategy::OneForOne)
}
fn tree_http() -> TreeSpec {
    tree(Strategy::OneForOne)
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        Self {
            node: tree_node(),
            governance: tree_governance(),
            guardian: tree_guardian(),
            healing: tree_healing(),
            http: tree_http(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: Spanned<String>,
    /// Program to run; `@warden` is this binary.
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub workdir: Option<String>,
    /// Ports the service listens on (used by port probes and who-holds-the-port checks).
    #[serde(default)]
    pub ports: Vec<u16>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    /// Ready check used for dependency ordering and the startup deadline.
    #[serde(default)]
    pub ready: Option<ReadyCheck>,
    /// Past this without being ready, the service is marked as a slow boot.
    #[serde(default = "default_startup_deadline_ms")]
    pub startup_deadline_ms: u64,
    /// Time between SIGTERM and SIGKILL when stopping.
    #[serde(default = "default_stop_grace_ms")]
    pub stop_grace_ms: u64,
    #[serde(default)]
    pub restart: RestartPolicy,
    #[serde(default)]
    pub logs: LogPolicy,
    #[serde(default)]
    pub memory_limit_mb: Option<u64>,
    /// Files the service needs, written when missing and kept in the vault for restores.
    #[serde(default)]
    pub files: Vec<ManagedFile>,
}

fn default_startup_deadline_ms() -> u64 {
    30_000
}
fn default_stop_grace_ms() -> u64 {
    3_000
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "kind")]
pub enum ReadyCheck {
    Tcp { addr: String },
    Http { url: String },
}

/// Capped exponential backoff and crash-loop quarantine (like systemd's StartLimitBurst).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartPolicy {
    /// Delay before the second restart in a window; the first is immediate.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// More than this many restarts within `window_ms` quarantines the service.
    #[serde(default = "default_max_restarts")]
    pub max_restarts: usize,
    #[serde(default = "default_window_ms")]
    pub window_ms: u64,
    /// A process ready for this long was no crash loop: its exit starts a fresh history.
    #[serde(default = "default_stable_after_ms")]
    pub stable_after_ms: u64,
}

fn default_backoff_initial_ms() -> u64 {
    100
}
fn default_backoff_max_ms() -> u64 {
    5_000
}
fn default_max_restarts() -> usize {
    5
}
fn default_window_ms() -> u64 {
    60_000
}
fn default_stable_after_ms() -> u64 {
    1_000
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            max_restarts: default_max_restarts(),
            window_ms: default_window_ms(),
            stable_after_ms: default_stable_after_ms(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPolicy {
    /// A log file past this size is rotated.
    #[serde(default = "default_log_max_bytes")]
    pub max_bytes: u64,
    /// How many rotated files to keep.
    #[serde(default = "default_log_keep")]
    pub keep: usize,
}

fn default_log_max_bytes() -> u64 {
    1024 * 1024
}
fn default_log_keep() -> usize {
    3
}

impl Default for LogPolicy {
    fn default() -> Self {
        Self { max_bytes: default_log_max_bytes(), keep: default_log_keep() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagedFile {
    pub path: String,
    pub content: String,
}

/// OSI layer of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    L2,
    L3,
    L4,
    L5,
    L6,
    L7,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    pub name: Spanned<String>,
    pub layer: Layer,
    /// The service this probe watches.
    pub target: Spanned<String>,
    pub check: ProbeCheck,
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Consecutive failures before the probe reports the target down.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// Consecutive successes before a down target is reported up again.
    #[serde(default = "default_success_threshold")]
    pub success_threshold: u32,
}

fn default_interval_ms() -> u64 {
    1_000
}
fn default_timeout_ms() -> u64 {
    500
}
fn default_failure_threshold() -> u32 {
    3
}
fn default_success_threshold() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "kind")]
pub enum ProbeCheck {
    /// HTTP GET; healthy when the status matches (any 2xx if unset).
    Http {
        url: String,
        #[serde(default)]
        expect_status: Option<u16>,
    },
    /// TCP connect.
    Tcp { addr: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealingConfig {
    /// An incident open longer than this raises an alert (SPEC: 2 minutes).
    #[serde(default = "default_mttr_alert_ms")]
    pub mttr_alert_ms: u64,
    /// Incidents averaged for the rolling MTTR.
    #[serde(default = "default_mttr_window")]
    pub mttr_window: usize,
}

fn default_mttr_alert_ms() -> u64 {
    120_000
}
fn default_mttr_window() -> usize {
    10
}

impl Default for HealingConfig {
    fn default() -> Self {
        Self { mttr_alert_ms: default_mttr_alert_ms(), mttr_window: default_mttr_window() }
    }
}

/// Everything wrong with a config file, each problem with its position.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Yaml(#[from] YamlError),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// One validation problem at a position in the file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{pos}: {message}")]
pub struct Problem {
    pub pos: SourcePos,
    pub message: String,
}

impl NodeConfig {
    /// Parses and validates a node config read from `file`.
    pub fn load(file: &str, text: &str) -> Result<Self, ConfigError> {
        let cfg: NodeConfig = yaml::parse(file, text)?;
        validate(file, &cfg).map_err(ConfigError::Invalid)?;
        Ok(cfg)
    }

    /// The embedded default node.
    pub fn embedded_default() -> Result<Self, ConfigError> {
        Self::load(DEFAULT_NODE_FILE, DEFAULT_NODE_YAML)
    }

    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name.value == name)
    }

    /// Services in an order where each comes after its dependencies (validated acyclic).
    pub fn start_order(&self) -> Vec<&ServiceConfig> {
        let mut done: BTreeSet<&str> = BTreeSet::new();
        let mut order = Vec::with_capacity(self.services.len());
        // Bounded: each pass places at least one service when the graph is acyclic.
        for _ in 0..=self.services.len() {
            for s in &self.services {
                let name = s.name.value.as_str();
                if !done.contains(name) && s.depends_on.iter().all(|d| done.contains(d.value.as_str())) {
                    done.insert(name);
                    order.push(s);
                }
            }
        }
        order
    }
}

fn pos(file: &str, loc: serde_saphyr::Location) -> SourcePos {
    SourcePos { file: file.to_string(), line: loc.line(), column: loc.column() }
}

/// Checks what the schema cannot; returns every problem found.
pub fn validate(file: &str, cfg: &NodeConfig) -> Result<(), Vec<Problem>> {
    let mut problems = Vec::new();
    let mut problem =
        |loc: serde_saphyr::Location, message: String| problems.push(Problem { pos: pos(file, loc), message });
    if cfg.node.http_listen.value.parse::<SocketAddr>().is_err() {
        problem(
            cfg.node.http_listen.referenced,
            format!("http_listen `{}` is not an address like 127.0.0.1:7700", cfg.node.http_listen.value),
        );
    }
    let mut names = BTreeSet::new();
    for s in &cfg.services {
        let name = &s.name.value;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            problem(s.name.referenced, format!("service name `{name}` must be letters, digits, - or _"));
        }
        if !names.insert(name.as_str()) {
            problem(s.name.referenced, format!("service `{name}` is defined twice"));
        }
        if s.restart.max_restarts == 0 {
            problem(s.name.referenced, format!("service `{name}`: restart.max_restarts must be at least 1"));
        }
    }
    let mut unknown_deps = false;
    for s in &cfg.services {
        for d in &s.depends_on {
            if !names.contains(d.value.as_str()) {
                unknown_deps = true;
                problem(d.referenced, format!("service `{}` depends on unknown service `{}`", s.name.value, d.value));
            }
        }
    }
    if cfg.start_order().len() != cfg.services.len() && !unknown_deps {
        let placed: BTreeSet<&str> = cfg.start_order().iter().map(|s| s.name.value.as_str()).collect();
        for s in cfg.services.iter().filter(|s| !placed.contains(s.name.value.as_str())) {
            problem(s.name.referenced, format!("service `{}` is part of a dependency cycle", s.name.value));
        }
    }
    let mut probe_names = BTreeSet::new();
    for p in &cfg.probes {
        if !probe_names.insert(p.name.value.as_str()) {
            problem(p.name.referenced, format!("probe `{}` is defined twice", p.name.value));
        }
        if !names.contains(p.target.value.as_str()) {
            problem(
                p.target.referenced,
                format!("probe `{}` targets unknown service `{}`", p.name.value, p.target.value),
            );
        }
        if p.failure_threshold == 0 || p.success_threshold == 0 {
            problem(p.name.referenced, format!("probe `{}`: thresholds must be at least 1", p.name.value));
        }
        if p.interval_ms == 0 || p.timeout_ms == 0 {
            problem(
                p.name.referenced,
                format!("probe `{}`: interval_ms and timeout_ms must be positive", p.name.value),
            );
        }
        if let ProbeCheck::Tcp { addr } = &p.check
            && addr.parse::<SocketAddr>().is_err()
        {
            problem(p.name.referenced, format!("probe `{}`: `{addr}` is not an address", p.name.value));
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}

/// Replaces `${data_dir}` in a config string.
pub fn expand(value: &str, data_dir: &str) -> String {
    value.replace("${data_dir}", data_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "node:\n  name: t\n  http_listen: 127.0.0.1:7700\nservices:\n  - name: a\n    command: /bin/true\n  - name: b\n    command: /bin/true\n    depends_on: [a]\n";

    #[test]
    fn test_embedded_default_node_is_valid() {
        let cfg = NodeConfig::embedded_default().expect("embedded default must load");
        let order: Vec<_> = cfg.start_order().iter().map(|s| s.name.value.clone()).collect();
        assert_eq!(order, ["db", "model", "api"], "dependency order");
        assert!(cfg.probes.iter().any(|p| p.layer == Layer::L7 && p.target.value == "api"));
    }

    #[test]
    fn test_start_order_puts_dependencies_first() {
        let cfg = NodeConfig::load(
            "t.yaml",
            &MINIMAL.replace(
                "- name: a\n    command: /bin/true\n  - name: b\n    command: /bin/true\n    depends_on: [a]",
                "- name: b\n    command: /bin/true\n    depends_on: [a]\n  - name: a\n    command: /bin/true",
            ),
        )
        .expect("valid");
        let order: Vec<_> = cfg.start_order().iter().map(|s| s.name.value.clone()).collect();
        assert_eq!(order, ["a", "b"]);
    }

    #[test]
    fn test_validate_unknown_dependency_names_its_position() {
        let text = MINIMAL.replace("depends_on: [a]", "depends_on: [zz]");
        let err = NodeConfig::load("t.yaml", &text).expect_err("unknown dep");
        let s = err.to_string();
        assert!(s.starts_with("t.yaml:9:"), "{s}");
        assert!(s.contains("unknown service `zz`"), "{s}");
    }

    #[test]
    fn test_validate_cycle_is_reported() {
        let text = MINIMAL
            .replace("- name: a\n    command: /bin/true\n", "- name: a\n    command: /bin/true\n    depends_on: [b]\n");
        let err = NodeConfig::load("t.yaml", &text).expect_err("cycle");
        assert!(err.to_string().contains("dependency cycle"), "{err}");
    }

    #[test]
    fn test_validate_reports_every_problem_at_once() {
        let text = MINIMAL.replace("127.0.0.1:7700", "nowhere").replace("depends_on: [a]", "depends_on: [zz]");
        match NodeConfig::load("t.yaml", &text) {
            Err(ConfigError::Invalid(p)) => assert_eq!(p.len(), 2, "{p:?}"),
            other => panic!("expected two problems, got {other:?}"),
        }
    }

    #[test]
    fn test_unknown_key_is_a_yaml_error_with_position() {
        let text = MINIMAL
            .replace("    command: /bin/true\n  - name: b", "    command: /bin/true\n    colour: red\n  - name: b");
        let err = NodeConfig::load("t.yaml", &text).expect_err("unknown key");
        assert!(err.to_string().starts_with("t.yaml:7:5: unknown field `colour`"), "{err}");
    }

    #[test]
    fn test_expand_replaces_data_dir() {
        assert_eq!(expand("${data_dir}/db", "/d"), "/d/db");
    }
}
