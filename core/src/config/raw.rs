//! The node config as written in YAML: every key, its default, and the positions of the
//! values that validation checks. Nothing outside [`super`] sees these types.

use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::BTreeMap;

use super::{Layer, Strategy};
use crate::signal::SignalName;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    pub node: NodeSection,
    #[serde(default)]
    pub supervision: SupervisionSection,
    pub services: Spanned<Vec<ServiceSection>>,
    #[serde(default)]
    pub probes: Vec<ProbeSection>,
    #[serde(default)]
    pub healing: HealingSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub alerts: AlertsSection,
    #[serde(default)]
    pub slo: SloSection,
    #[serde(default)]
    pub audit: AuditSection,
    /// Path of the governance policy file; absent: the embedded default.
    #[serde(default)]
    pub governance_policies: Option<Spanned<String>>,
    /// A folder of playbook files that add to or override the embedded catalog.
    #[serde(default)]
    pub playbooks_dir: Option<Spanned<String>>,
    /// Commands a playbook's `run_command` may run, by name: the program and its arguments.
    #[serde(default)]
    pub commands: BTreeMap<String, Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub name: Spanned<String>,
    pub http_listen: Spanned<String>,
    #[serde(default)]
    pub data_dir: Option<Spanned<String>>,
    #[serde(default)]
    pub startup_deadline_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub staggered_boot: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeSection {
    pub strategy: Strategy,
    pub max_restarts: usize,
    pub period_ms: Spanned<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisionSection {
    pub node: Option<TreeSection>,
    pub governance: Option<TreeSection>,
    pub guardian: Option<TreeSection>,
    pub healing: Option<TreeSection>,
    pub http: Option<TreeSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    pub name: Spanned<String>,
    pub command: Spanned<String>,
    #[serde(default)]
    pub args: Vec<Spanned<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub workdir: Option<Spanned<String>>,
    /// Run in this network namespace: a name under `/run/netns` or a path to one.
    #[serde(default)]
    pub network_namespace: Option<Spanned<String>>,
    #[serde(default)]
    pub ports: Vec<Spanned<u16>>,
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
    #[serde(default)]
    pub ready: Option<CheckSection>,
    #[serde(default)]
    pub startup_deadline_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub stop_grace_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub restart: Option<RestartSection>,
    #[serde(default)]
    pub logs: Option<LogSection>,
    #[serde(default)]
    pub memory_limit_mb: Option<Spanned<u64>>,
    #[serde(default)]
    pub files: Vec<FileSection>,
    /// Run as this user (name), with its groups.
    #[serde(default)]
    pub user: Option<Spanned<String>>,
    /// Run with this primary group (name) instead of the user's.
    #[serde(default)]
    pub group: Option<Spanned<String>>,
    /// File mode creation mask, octal digits as a string (`"027"`).
    #[serde(default)]
    pub umask: Option<Spanned<String>>,
    /// The signal that asks the service to stop (default SIGTERM).
    #[serde(default)]
    pub stop_signal: Option<Spanned<SignalName>>,
    /// `KEY=VALUE` lines added to the environment, read at every start.
    #[serde(default)]
    pub env_file: Option<Spanned<String>>,
    #[serde(default)]
    pub limits: Option<LimitsSection>,
    #[serde(default)]
    pub upstreams: Vec<UpstreamSection>,
    #[serde(default)]
    pub role: Option<Spanned<crate::config::ServiceRole>>,
    /// Signals it handles, by what they ask of it (`reload: SIGHUP`).
    #[serde(default)]
    pub signals: BTreeMap<String, Spanned<SignalName>>,
    /// The file it holds a lock on while it runs.
    #[serde(default)]
    pub lock_file: Option<Spanned<String>>,
    /// Its data directory (snapshots, restores, compaction).
    #[serde(default)]
    pub data: Option<Spanned<String>>,
    /// How its data is copied consistently, and how many copies are kept.
    #[serde(default)]
    pub snapshot: Option<SnapshotSection>,
    /// Log lines that say why it failed (added to the built-in ones).
    #[serde(default)]
    pub diagnose: Vec<DiagnoseSection>,
    /// The file it reads its credentials from.
    #[serde(default)]
    pub credentials_file: Option<Spanned<String>>,
    /// Every file that holds the secret it shares (rotated together).
    #[serde(default)]
    pub secret_files: Vec<Spanned<String>>,
    /// An HTTP endpoint that drops its pooled connections.
    #[serde(default)]
    pub pool_reset_url: Option<Spanned<String>>,
    /// The model a model server must serve.
    #[serde(default)]
    pub model: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSection {
    pub name: Spanned<String>,
    pub address: Spanned<String>,
    #[serde(default)]
    pub fallbacks: Vec<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// Open file descriptors (RLIMIT_NOFILE).
    pub open_files: Option<Spanned<u64>>,
    /// Processes and threads in the service (cgroup pids.max; RLIMIT_NPROC without cgroups).
    pub processes: Option<Spanned<u64>>,
}

/// A check's kind; its fields are checked against it (so each mistake has its own line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    Tcp,
    Http,
}

/// A ready check (`{kind: tcp, addr}` / `{kind: http, url}`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSection {
    pub kind: Spanned<CheckKind>,
    #[serde(default)]
    pub addr: Option<Spanned<String>>,
    #[serde(default)]
    pub url: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartSection {
    pub backoff_initial_ms: Option<Spanned<u64>>,
    pub backoff_max_ms: Option<Spanned<u64>>,
    pub max_restarts: Option<Spanned<usize>>,
    pub window_ms: Option<Spanned<u64>>,
    pub stable_after_ms: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    pub max_bytes: Option<Spanned<u64>>,
    pub keep: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSection {
    pub path: Spanned<String>,
    pub content: String,
    /// Octal digits as a string (`"0640"`).
    #[serde(default)]
    pub mode: Option<Spanned<String>>,
    /// A secret: 0600 unless `mode` says otherwise.
    #[serde(default)]
    pub secret: Option<Spanned<bool>>,
    /// Owner (a user name); default the service's user.
    #[serde(default)]
    pub user: Option<Spanned<String>>,
    /// Group (a group name); default the service's group.
    #[serde(default)]
    pub group: Option<Spanned<String>>,
}

/// `snapshot:` of a service: how its data is copied consistently while it runs.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotSection {
    #[serde(default)]
    pub method: Option<Spanned<crate::config::SnapshotMethodName>>,
    /// With `method: command`: the program and its arguments (`${snapshot}`: the folder to fill).
    #[serde(default)]
    pub command: Vec<Spanned<String>>,
    #[serde(default)]
    pub keep: Option<Spanned<usize>>,
    #[serde(default)]
    pub max_mb: Option<Spanned<u64>>,
}

/// One `diagnose:` pattern: a log line matching `pattern` (a regular expression) means `cause`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagnoseSection {
    pub pattern: Spanned<String>,
    pub cause: Spanned<crate::diagnose::Cause>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeSection {
    pub name: Spanned<String>,
    pub layer: Spanned<Layer>,
    pub target: Spanned<String>,
    pub check: ProbeCheckSection,
    #[serde(default)]
    pub interval_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub failure_threshold: Option<Spanned<u32>>,
    #[serde(default)]
    pub success_threshold: Option<Spanned<u32>>,
}

/// What a probe checks, by layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    Link,
    Route,
    Tcp,
    Udp,
    Session,
    Tls,
    Encoding,
    Http,
    Dns,
    Postgres,
    Ollama,
    Line,
}

/// The response format an `encoding` check expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormatName {
    Utf8,
    Json,
}

/// A probe's check: `kind` and the keys that kind uses (any other key is refused at its
/// line, so a key meant for another kind is not silently ignored).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeCheckSection {
    pub kind: Spanned<ProbeKind>,
    #[serde(default)]
    pub interface: Option<Spanned<String>>,
    #[serde(default)]
    pub gateway: Option<Spanned<bool>>,
    #[serde(default)]
    pub min_mtu: Option<Spanned<u32>>,
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    #[serde(default)]
    pub port: Option<Spanned<u16>>,
    #[serde(default)]
    pub addr: Option<Spanned<String>>,
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    #[serde(default)]
    pub expect_status: Option<Spanned<u16>>,
    #[serde(default)]
    pub body: Option<Spanned<String>>,
    #[serde(default)]
    pub max_latency_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub send: Option<Spanned<String>>,
    #[serde(default)]
    pub expect: Option<Spanned<String>>,
    #[serde(default)]
    pub requests: Option<Spanned<u32>>,
    #[serde(default)]
    pub max_established: Option<Spanned<u32>>,
    #[serde(default)]
    pub max_time_wait: Option<Spanned<u32>>,
    #[serde(default)]
    pub owner: Option<Spanned<bool>>,
    #[serde(default)]
    pub server_name: Option<Spanned<String>>,
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    #[serde(default)]
    pub warn_days: Option<Spanned<u32>>,
    #[serde(default)]
    pub fail_days: Option<Spanned<u32>>,
    #[serde(default)]
    pub format: Option<Spanned<FormatName>>,
    #[serde(default)]
    pub query: Option<Spanned<String>>,
    #[serde(default)]
    pub resolver: Option<Spanned<String>>,
    #[serde(default)]
    pub user: Option<Spanned<String>>,
    #[serde(default)]
    pub dbname: Option<Spanned<String>>,
    #[serde(default)]
    pub password_file: Option<Spanned<String>>,
    #[serde(default)]
    pub model: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealingSection {
    #[serde(default)]
    pub mttr_alert_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub mttr_window: Option<Spanned<usize>>,
    #[serde(default)]
    pub memory_pressure_pct: Option<Spanned<u8>>,
    #[serde(default)]
    pub disk_min_free_pct: Option<Spanned<u8>>,
    #[serde(default)]
    pub disk_min_free_mb: Option<Spanned<u64>>,
    #[serde(default)]
    pub node_memory_min_available_pct: Option<Spanned<u8>>,
    #[serde(default)]
    pub node_memory_min_available_mb: Option<Spanned<u64>>,
    #[serde(default)]
    pub enabled: Option<bool>,
    /// How many services may fail at once before automatic repair stops: a count, a
    /// share (`"50%"`), or `off`.
    #[serde(default)]
    pub max_unhealthy: Option<Spanned<CountOrShare>>,
    /// Automatic repairs of one service within an hour before a person is asked (0: no
    /// budget).
    #[serde(default)]
    pub max_repairs_per_hour: Option<Spanned<u32>>,
    /// How long an operator's action on a service holds its automatic repair.
    #[serde(default)]
    pub operator_hold_ms: Option<Spanned<u64>>,
}

/// A number, or text such as `"50%"` or `off`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum CountOrShare {
    Count(u64),
    /// A bare `off` (or `false`), which YAML reads as a boolean.
    Switch(bool),
    Text(String),
}

/// Targets of the four service level objectives, in percent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloSection {
    #[serde(default)]
    pub health_target_pct: Option<Spanned<f64>>,
    #[serde(default)]
    pub trust_target_pct: Option<Spanned<f64>>,
    #[serde(default)]
    pub confidence_target_pct: Option<Spanned<f64>>,
    #[serde(default)]
    pub mttr_target_pct: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    #[serde(default)]
    pub max_connections: Option<Spanned<usize>>,
    #[serde(default)]
    pub header_read_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub request_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub max_body_bytes: Option<Spanned<usize>>,
    /// The API's token book (hashes and roles); default `api-tokens.yaml` in the data dir.
    #[serde(default)]
    pub tokens_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    #[serde(default)]
    pub flap_window_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub flap_max_changes: Option<Spanned<usize>>,
    #[serde(default)]
    pub group_wait_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub webhooks: Vec<WebhookSection>,
    #[serde(default)]
    pub email: Option<EmailSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    pub url: Spanned<String>,
    #[serde(default)]
    pub timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub max_attempts: Option<Spanned<u32>>,
}

/// Alerts by email, through an SMTP server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSection {
    /// `HOST:PORT` of the SMTP server.
    pub server: Spanned<String>,
    /// `none`, `starttls` (the default) or `tls`.
    #[serde(default)]
    pub tls: Option<Spanned<String>>,
    pub from: Spanned<String>,
    pub to: Spanned<Vec<String>>,
    #[serde(default)]
    pub username: Option<Spanned<String>>,
    /// A file holding the password (never the password itself in the config).
    #[serde(default)]
    pub password_file: Option<Spanned<String>>,
    #[serde(default)]
    pub timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub max_attempts: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    #[serde(default)]
    pub key_file: Option<Spanned<String>>,
    #[serde(default)]
    pub checkpoint_file: Option<Spanned<String>>,
}
