//! The node config: services, probes, supervision trees, healing settings.
//!
//! Parse, don't validate: [`NodeConfig::load`] reads the YAML into the raw schema
//! (`deny_unknown_fields`, positions kept) and builds the types below, so the rest of warden
//! sees durations, socket addresses, URLs, checked service names, resolved paths and
//! executables, never strings to interpret again. Whatever cannot work is refused at load,
//! every problem of the file at once with its `file:line:column`: unknown or cyclic
//! dependencies, port 0, an unparsable address or URL, a zero grace period, window,
//! deadline or log size, a command that does not exist or is not executable.
//! Relative paths resolve against the config file's folder; `${data_dir}` is replaced by
//! the node's data dir.

mod build;
mod raw;

pub use build::read_env_file;

use crate::signal::SignalName;
use crate::source::{Problems, Source};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// The embedded default node: the demo db, model server and api.
pub const DEFAULT_NODE_YAML: &str = include_str!("../../../config/node.yaml");
/// The name under which the embedded default config is reported in errors.
pub const DEFAULT_NODE_FILE: &str = "config/node.yaml (embedded)";
/// `command: "@warden"` runs this same binary (the demo services live in it).
pub const SELF_COMMAND: &str = "@warden";
/// The data dir when neither the config nor `--data-dir` names one.
pub const DEFAULT_DATA_DIR: &str = ".warden-data";

/// What the caller knows before the file is read.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `--data-dir`: overrides `node.data_dir` (relative to the working directory).
    pub data_dir: Option<PathBuf>,
}

/// A validated node config.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    /// warden's own HTTP API.
    pub http_listen: SocketAddr,
    /// Absolute; not created by loading.
    pub data_dir: PathBuf,
    /// Budget for the whole node to come up before a slow boot is reported.
    pub startup_deadline: Duration,
    /// Start one service at a time, each once the one before it is ready (a playbook's
    /// override, or `node.staggered_boot`), instead of all whose dependencies are ready.
    pub staggered_boot: bool,
    pub supervision: SupervisionConfig,
    /// In start order: every service comes after the services it depends on.
    pub services: Vec<ServiceSpec>,
    pub probes: Vec<ProbeSpec>,
    pub healing: HealingConfig,
    /// Limits of warden's own HTTP server.
    pub http: HttpLimits,
    /// Who may call the API: the token book.
    pub tokens: TokensFile,
    /// Where alerts go and when state changes count as flapping.
    pub alerts: AlertsConfig,
    /// Targets of the service level objectives.
    pub slo: SloConfig,
    /// Where the audit chain's key and signed checkpoints live (outside the data dir).
    pub audit: AuditFiles,
    /// The governance policy file; `None`: the embedded default.
    pub governance_policies: Option<PathBuf>,
    /// Playbook files that add to or override the embedded catalog (every `*.yaml` in it).
    pub playbooks_dir: Option<PathBuf>,
    /// Whitelisted commands for `run_command` steps: name → program and arguments.
    pub commands: BTreeMap<String, Vec<String>>,
}

impl NodeConfig {
    /// Reads and validates a node config document.
    pub fn load(src: &Source<'_>, opts: &LoadOptions) -> Result<Self, Problems> {
        let raw: raw::NodeFile = crate::source::parse(src)?;
        build::node(src, raw, opts)
    }

    /// The embedded default node; relative paths resolve against `cwd`.
    pub fn embedded_default(cwd: &Path, opts: &LoadOptions) -> Result<Self, Problems> {
        Self::load(&Source { name: DEFAULT_NODE_FILE, dir: cwd, text: DEFAULT_NODE_YAML }, opts)
    }

    pub fn service_names(&self) -> impl Iterator<Item = &ServiceName> {
        self.services.iter().map(|s| &s.name)
    }

    /// The services that depend on `name`, directly or through others, in start order.
    /// Whether `dependent` names `dependency` in its `depends_on`.
    pub fn depends_directly(&self, dependent: &ServiceName, dependency: &ServiceName) -> bool {
        self.services.iter().any(|s| s.name == *dependent && s.depends_on.contains(dependency))
    }

    pub fn dependents_of(&self, name: &ServiceName) -> Vec<ServiceName> {
        let mut found: Vec<ServiceName> = Vec::new();
        // Start order puts every service after what it depends on: one pass finds them all.
        for s in &self.services {
            if s.depends_on.iter().any(|d| d == name || found.contains(d)) {
                found.push(s.name.clone());
            }
        }
        found
    }
}

/// A service's name: letters, digits, `-` and `_`, so it is safe in file names, actor
/// names, metric labels and URLs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct ServiceName(String);

impl TryFrom<String> for ServiceName {
    type Error = NameError;
    fn try_from(s: String) -> Result<Self, NameError> {
        Self::parse(&s)
    }
}

/// A name that cannot be a service's (or a probe's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("name `{0}` must be 1 to 64 letters, digits, - or _")]
pub struct NameError(pub String);

impl From<ServiceName> for String {
    fn from(n: ServiceName) -> String {
        n.0
    }
}

impl ServiceName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() || s.len() > 64 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(NameError(s.to_string()));
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for ServiceName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ServiceName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ServiceName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Erlang/OTP restart strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    OneForOne,
    OneForAll,
    RestForOne,
}

/// A supervisor's strategy and restart intensity: more than `max_restarts` within `period`
/// and the supervisor gives up and fails upward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeSpec {
    pub strategy: Strategy,
    pub max_restarts: usize,
    pub period: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupervisionConfig {
    pub node: TreeSpec,
    pub governance: TreeSpec,
    pub guardian: TreeSpec,
    pub healing: TreeSpec,
    pub http: TreeSpec,
}

/// What to run: this binary (`@warden`) or a resolved executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    SelfExe,
    Path(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub name: ServiceName,
    pub program: Program,
    /// With `${data_dir}` replaced.
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<PathBuf>,
    /// The network namespace it runs in (as systemd's `NetworkNamespacePath=`); `None`:
    /// warden's own.
    pub network_namespace: Option<PathBuf>,
    /// Ports the service listens on (port probes, who holds a port).
    pub ports: Vec<u16>,
    pub depends_on: Vec<ServiceName>,
    /// Used for dependency ordering and the startup deadline; `None`: ready when started.
    pub ready: Option<ReadyCheck>,
    /// Past this without being ready, the service is marked as a slow boot.
    pub startup_deadline: Duration,
    /// Time between SIGTERM and SIGKILL when stopping.
    pub stop_grace: Duration,
    pub restart: RestartPolicy,
    pub logs: LogPolicy,
    /// The kernel's memory limit for everything in the service's cgroup.
    pub memory_limit_mb: Option<u64>,
    /// Files the service needs, written when missing.
    pub files: Vec<ManagedFile>,
    /// Who it runs as; `None`: as warden runs.
    pub identity: Option<Identity>,
    pub umask: Option<u32>,
    pub stop_signal: SignalName,
    /// Read at every start (like systemd's `EnvironmentFile=`); `env` wins over it.
    pub env_file: Option<PathBuf>,
    pub limits: Limits,
    /// Addresses of what it talks to, with fallbacks a playbook may switch it to.
    pub upstreams: Vec<Upstream>,
    /// What the service is to the node, where a failure mode is about that kind of
    /// service (a database, a model server); `None`: an application service.
    pub role: Option<ServiceRole>,
    /// What it offers repairs: the signals it handles, its lock file, its data... A
    /// playbook that needs something a service does not declare does not apply to it.
    pub hooks: RepairHooks,
    /// Its own log patterns, tried before the built-in ones.
    pub diagnose: Vec<crate::logcause::LogPattern>,
}

/// What a service declares that playbooks may use. Nothing is assumed: a service that does
/// not say it handles SIGHUP is never sent one by a playbook (many programs die of it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepairHooks {
    /// Signals it handles, by what they ask of it (`reload: SIGHUP`, `compact: SIGUSR1`).
    pub signals: BTreeMap<String, SignalName>,
    /// The file it holds a lock on while it runs (a leftover holding it blocks its start).
    pub lock_file: Option<PathBuf>,
    /// Its data directory: what snapshots copy and restores put back.
    pub data: Option<PathBuf>,
    /// How that data is copied and how many copies are kept.
    pub snapshot: SnapshotPolicy,
    /// The file it reads its credentials from.
    pub credentials_file: Option<PathBuf>,
    /// Every file holding the secret it shares with another (a server's password file and
    /// its clients' credentials), written together by a rotation.
    pub secret_files: Vec<PathBuf>,
    /// An HTTP endpoint that makes it drop its pooled connections.
    pub pool_reset_url: Option<Url>,
    /// The model a model server must serve (what a warm-up pulls and loads).
    pub model: Option<String>,
}

impl RepairHooks {
    /// Whether it says it handles `signal`.
    pub fn handles(&self, signal: SignalName) -> bool {
        self.signals.values().any(|s| *s == signal)
    }
}

/// The kinds of service the failure modes name: a failing database is mode 1, a failing
/// model server mode 10, any other service failing to answer mode 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceRole {
    Database,
    ModelServer,
}

/// An address a service is given (in its arguments or environment) of something it talks
/// to, and the addresses it may use instead when that one does not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// A label (often the name of the service it is).
    pub name: String,
    /// `HOST:PORT` or an http(s) URL, exactly as the arguments or environment carry it.
    pub address: String,
    pub fallbacks: Vec<String>,
}

impl Upstream {
    /// The address, then the fallbacks, in order.
    pub fn candidates(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.address.as_str()).chain(self.fallbacks.iter().map(String::as_str))
    }
}

/// The host and port an upstream address connects to: `HOST:PORT` or an http(s) URL.
pub fn host_port(address: &str) -> Option<(String, u16)> {
    if address.contains("://") {
        let url = Url::parse(address).ok().filter(|u| matches!(u.scheme(), "http" | "https"))?;
        let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_string();
        return Some((host, url.port_or_known_default()?));
    }
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok().filter(|p| *p != 0)?))
}

/// A user and groups resolved at load, so a typo is a config error, not a failed start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `None` when only `group` was given: the user stays warden's.
    pub user: Option<UserId>,
    pub gid: u32,
    /// Supplementary groups (the user's groups, or just `gid`).
    pub groups: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserId {
    pub name: String,
    pub uid: u32,
    pub home: PathBuf,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub open_files: Option<u64>,
    pub processes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadyCheck {
    Tcp { addr: SocketAddr },
    Http { url: Url },
}

/// Capped exponential backoff and crash-loop quarantine (like systemd's StartLimitBurst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Delay before the second restart in a window; the first is immediate.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// More than this many restarts within `window` quarantines the service.
    pub max_restarts: usize,
    pub window: Duration,
    /// A process ready for this long was no crash loop: its exit starts a fresh history.
    pub stable_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            max_restarts: 5,
            window: Duration::from_secs(60),
            stable_after: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPolicy {
    /// A log file past this size is rotated.
    pub max_bytes: u64,
    /// How many rotated files to keep.
    pub keep: usize,
}

impl Default for LogPolicy {
    fn default() -> Self {
        Self { max_bytes: 1024 * 1024, keep: 3 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedFile {
    pub path: PathBuf,
    pub content: String,
    /// Its permission bits (0600 for a secret, else 0644, unless declared).
    pub mode: u32,
    /// Its owner and group; `None`: warden's (each falls back to the service's identity).
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// How a service's data is copied while it runs, so a copy is consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotMethod {
    /// Stopped first (a snapshot of a running service is refused: stop, copy, start).
    Stop,
    /// Copied as it is: the service writes so that any moment's files are consistent.
    Live,
    /// A program that makes the copy (`pg_basebackup`, `redis-cli --rdb`), run as the
    /// service's user; `${snapshot}` in its arguments is the folder to fill.
    Command(Vec<String>),
}

/// `snapshot.method` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMethodName {
    Stop,
    Live,
    Command,
}

/// How snapshots of a service's data are made and how many are kept: the oldest are
/// deleted as a new one is made, past `keep` or past `max_bytes` in all (the newest one
/// always stays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPolicy {
    pub method: SnapshotMethod,
    pub keep: usize,
    pub max_bytes: u64,
}

pub const DEFAULT_SNAPSHOT_KEEP: usize = 3;
pub const DEFAULT_SNAPSHOT_MAX_MB: u64 = 1024;

impl SnapshotPolicy {
    /// Whether a snapshot is consistent while the service runs (copied live, or made by
    /// its own program such as `pg_basebackup`): no stop and start around it.
    pub fn copies_while_running(&self) -> bool {
        !matches!(self.method, SnapshotMethod::Stop)
    }
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        Self { method: SnapshotMethod::Stop, keep: DEFAULT_SNAPSHOT_KEEP, max_bytes: DEFAULT_SNAPSHOT_MAX_MB << 20 }
    }
}

/// OSI layer of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    L2,
    L3,
    L4,
    L5,
    L6,
    L7,
}

impl Layer {
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::L2 => "l2",
            Layer::L3 => "l3",
            Layer::L4 => "l4",
            Layer::L5 => "l5",
            Layer::L6 => "l6",
            Layer::L7 => "l7",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Letters, digits, `-` and `_` (it names an actor and a metric label).
    pub name: String,
    pub layer: Layer,
    /// The service this probe watches.
    pub target: ServiceName,
    pub check: ProbeCheck,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures before the probe reports the target down.
    pub failure_threshold: u32,
    /// Consecutive successes before a down target is reported up again.
    pub success_threshold: u32,
}

/// What a probe checks. Each kind belongs to one layer (see [`ProbeCheck::layer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeCheck {
    /// L2: the interface is up with carrier, has a MAC (loopback aside) and at least
    /// `min_mtu`; with `gateway`, the default gateway has a reachable neighbour entry.
    Link { interface: String, gateway: bool, min_mtu: Option<u32> },
    /// L3: a route to `host` exists and it answers ICMP echo; where ICMP may not be used, a
    /// TCP connect to `port` (a refusal proves reachability too).
    Route { host: IpAddr, port: Option<u16> },
    /// L4: a TCP connect; with `owner`, the listener must be the target service's own
    /// process (a stranger on the port is a finding in itself).
    Tcp { addr: SocketAddr, owner: bool },
    /// L4: a UDP datagram is answered (with a reply starting `expect`, if set).
    Udp { addr: SocketAddr, send: String, expect: Option<String> },
    /// L5: `requests` exchanges on one connection, and the port's connection counts under
    /// their limits.
    Session { exchange: Exchange, requests: u32, max_established: Option<u32>, max_time_wait: Option<u32> },
    /// L6: a TLS handshake whose chain verifies (system roots, or `ca_file`) and whose leaf
    /// certificate expires in more than `fail_days` (a warning under `warn_days`).
    Tls { addr: SocketAddr, server_name: String, ca_file: Option<PathBuf>, warn_days: u32, fail_days: u32 },
    /// L6: the response is valid UTF-8, or JSON that parses.
    Encoding { exchange: Exchange, format: Format },
    /// L7: HTTP GET; the status (any 2xx unless `expect_status`), the body (contains
    /// `body`) and the latency (under `max_latency`).
    Http { url: Url, expect_status: Option<u16>, body: Option<String>, max_latency: Option<Duration> },
    /// L7: `query` resolves (A and AAAA) through `resolver`, or the system's resolvers; to
    /// `expect` among the answers, if set.
    Dns { query: String, resolver: Option<SocketAddr>, expect: Option<IpAddr> },
    /// L7: PostgreSQL answers `SELECT 1`.
    Postgres { addr: SocketAddr, user: String, dbname: String, password_file: Option<PathBuf> },
    /// L7: an Ollama server's `/api/tags` answers, listing `model` if set.
    Ollama { url: Url, model: Option<String> },
    /// L7: a line protocol: `send` one line to `addr`, the answer line starts with `expect`.
    /// With `password_file`, `AUTH <its trimmed content>` is sent first and must be
    /// answered `OK` (or Redis's `+OK`); anything else is a refused login.
    Line { addr: SocketAddr, send: String, expect: String, password_file: Option<PathBuf> },
}

impl ProbeCheck {
    /// The kind's name, as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeCheck::Link { .. } => "link",
            ProbeCheck::Route { .. } => "route",
            ProbeCheck::Tcp { .. } => "tcp",
            ProbeCheck::Udp { .. } => "udp",
            ProbeCheck::Session { .. } => "session",
            ProbeCheck::Tls { .. } => "tls",
            ProbeCheck::Encoding { .. } => "encoding",
            ProbeCheck::Http { .. } => "http",
            ProbeCheck::Dns { .. } => "dns",
            ProbeCheck::Postgres { .. } => "postgres",
            ProbeCheck::Ollama { .. } => "ollama",
            ProbeCheck::Line { .. } => "line",
        }
    }

    /// The layer this kind of check belongs to.
    pub fn layer(&self) -> Layer {
        match self {
            ProbeCheck::Link { .. } => Layer::L2,
            ProbeCheck::Route { .. } => Layer::L3,
            ProbeCheck::Tcp { .. } | ProbeCheck::Udp { .. } => Layer::L4,
            ProbeCheck::Session { .. } => Layer::L5,
            ProbeCheck::Tls { .. } | ProbeCheck::Encoding { .. } => Layer::L6,
            ProbeCheck::Http { .. }
            | ProbeCheck::Dns { .. }
            | ProbeCheck::Postgres { .. }
            | ProbeCheck::Ollama { .. }
            | ProbeCheck::Line { .. } => Layer::L7,
        }
    }
}

/// One request and its answer, over HTTP or a line protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exchange {
    /// `GET url`.
    Http { url: Url },
    /// `send` as a line to `addr`; one line back, starting with `expect` if set.
    Line { addr: SocketAddr, send: String, expect: Option<String> },
}

impl Exchange {
    /// Where it connects.
    pub fn port(&self) -> Option<u16> {
        match self {
            Exchange::Http { url } => url.port_or_known_default(),
            Exchange::Line { addr, .. } => Some(addr.port()),
        }
    }
}

/// What an `encoding` check expects a response to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Utf8,
    Json,
}

/// What one client, or many, may hold of warden's HTTP server: supervision must never wait
/// for a file descriptor a flood of idle connections took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Open connections at most; past it the oldest idle one is closed for a new one.
    pub max_connections: usize,
    /// A connection that has not sent a request's headers within this is closed.
    pub header_read_timeout: Duration,
    /// A request not answered within this gets 408.
    pub request_timeout: Duration,
    /// A request body larger than this gets 413.
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 64 * 1024,
        }
    }
}

/// Where the API's token book is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokensFile {
    pub path: PathBuf,
    /// Named by the config (then it must exist); else the data dir's, made at the first
    /// start with one admin token.
    pub explicit: bool,
}

/// The token book in the data dir when the config names none.
pub const DEFAULT_TOKENS_FILE: &str = "api-tokens.yaml";

/// The audit chain's secret and its checkpoints: files outside the data dir, so that
/// whoever can write the store cannot also forge seals or rewrite the checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFiles {
    /// 64 hex digits; made (0600) at the first start when missing and the chain is empty.
    pub key_file: PathBuf,
    /// One signed checkpoint of the chain's head per line (JSON), appended.
    pub checkpoint_file: PathBuf,
}

/// The key file when the config names none: beside the data dir, not in it.
pub const DEFAULT_AUDIT_KEY_FILE: &str = ".warden-audit.key";
pub const DEFAULT_AUDIT_CHECKPOINT_FILE: &str = ".warden-audit.checkpoints";

/// Alert sinks beside the log, and flap damping.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlertsConfig {
    pub flap: crate::alert::FlapPolicy,
    /// How long a new failing probe waits before its alert is sent (Alertmanager's
    /// `group_wait`): time for the incident that explains it to open, so its repair holds
    /// the alert back, and for a blip to pass unsent. Zero sends at once.
    pub group_wait: Duration,
    pub webhooks: Vec<Webhook>,
    pub email: Option<Email>,
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (a relay on loopback, a test sink).
    None,
    /// Upgraded with STARTTLS (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// Alerts by email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub from: String,
    pub to: Vec<String>,
    /// User name and the file holding the password, read at each send.
    pub login: Option<(String, PathBuf)>,
    pub timeout: Duration,
    pub max_attempts: u32,
}

/// `alerts.group_wait_ms` when not given.
pub const DEFAULT_GROUP_WAIT_MS: u64 = 2_000;

/// A receiver of Alertmanager's webhook payload (version 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: Url,
    /// One delivery attempt's limit.
    pub timeout: Duration,
    /// Attempts per notification, with exponential backoff in between.
    pub max_attempts: u32,
}

/// Targets of the service level objectives (`crate::slo`), in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SloConfig {
    pub health_target_pct: f64,
    pub trust_target_pct: f64,
    pub confidence_target_pct: f64,
    pub mttr_target_pct: f64,
}

/// The spec's targets: 85 % each.
pub const DEFAULT_SLO_TARGET_PCT: f64 = 85.0;

impl Default for SloConfig {
    fn default() -> Self {
        Self {
            health_target_pct: DEFAULT_SLO_TARGET_PCT,
            trust_target_pct: DEFAULT_SLO_TARGET_PCT,
            confidence_target_pct: DEFAULT_SLO_TARGET_PCT,
            mttr_target_pct: DEFAULT_SLO_TARGET_PCT,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealingConfig {
    /// An incident open longer than this raises an alert (SPEC: 2 minutes).
    pub mttr_alert: Duration,
    /// Incidents averaged for the rolling MTTR.
    pub mttr_window: usize,
    /// A service using this share of its memory limit is about to be OOM-killed (mode 4).
    pub memory_pressure_pct: u8,
    /// The data dir's filesystem with less free space than this share and than
    /// `disk_min_free_mb` is full (mode 5).
    pub disk_min_free_pct: u8,
    pub disk_min_free_mb: u64,
    /// The node's memory is low when its available memory (`MemAvailable`) is under this
    /// share of the total and under `node_memory_min_available_mb`: told to a person,
    /// never repaired by killing what warden does not run.
    pub node_memory_min_available_pct: u8,
    pub node_memory_min_available_mb: u64,
    /// Automatic repair; off, detectors still open incidents but no playbook runs.
    pub enabled: bool,
    /// The node's circuit breaker: more services failing at once than this stops automatic
    /// repair until an operator resumes it.
    pub max_unhealthy: crate::holds::MaxUnhealthy,
    /// Automatic repairs of one service within an hour before a person is asked instead.
    pub repair_budget: crate::holds::RepairBudget,
    /// How long an operator's action on a service holds its automatic repair.
    pub operator_hold: Duration,
}

#[cfg(test)]
mod tests;
