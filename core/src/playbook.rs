//! Playbooks as data, and planning them into governed steps.
//!
//! A playbook is metadata plus ordered steps built from typed primitives. Each primitive
//! declares its minimum tier, what it changes and how it is undone; planning binds the
//! steps to a target service so each one can be checked against a permit and run.

use crate::config::{RepairHooks, ServiceName, ServiceSpec};
use crate::mode::FailureMode;
use crate::signal::SignalName;
use crate::source::{self, Collector, Problems, Source};
use crate::tier::Tier;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;
use std::path::Path;
use std::time::Duration;

/// The embedded default catalog, one file per category, as shipped in `config/playbooks/`;
/// file order is preference order, and the last resort comes last.
pub const DEFAULT_CATALOG: &[(&str, &str)] = &[
    ("config/playbooks/service.yaml (embedded)", include_str!("../../config/playbooks/service.yaml")),
    ("config/playbooks/network.yaml (embedded)", include_str!("../../config/playbooks/network.yaml")),
    ("config/playbooks/database.yaml (embedded)", include_str!("../../config/playbooks/database.yaml")),
    ("config/playbooks/resources.yaml (embedded)", include_str!("../../config/playbooks/resources.yaml")),
    ("config/playbooks/config.yaml (embedded)", include_str!("../../config/playbooks/config.yaml")),
    ("config/playbooks/model.yaml (embedded)", include_str!("../../config/playbooks/model.yaml")),
    ("config/playbooks/last_resort.yaml (embedded)", include_str!("../../config/playbooks/last_resort.yaml")),
];

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

/// Which processes a `kill_process` step means. Never warden itself, never pid 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Selector {
    /// Whoever listens on one of the service's ports (or `port`), except the service's
    /// own current process; `stranger: true` keeps only processes that are not the
    /// service's program (a foreign holder), `false` only leftovers of it (an orphan).
    PortOwner {
        #[serde(default)]
        port: Option<u16>,
        stranger: bool,
    },
    /// The process of the service's group with the largest resident set, when it is over
    /// `min_rss_mb`.
    MemoryHog { min_rss_mb: u64 },
    /// Processes whose name (`/proc/PID/comm`) is exactly `name`.
    Name { name: String },
    /// Whoever holds a lock (flock, POSIX or OFD) on the file `path`: a process left over
    /// from an earlier life of the service that keeps its data locked.
    LockHolder { path: String },
}

/// The building blocks of playbooks. Paths may use `${data_dir}` (the node's data dir) and
/// `${service_dir}` (`${data_dir}/services/TARGET`); after expansion they must stay inside
/// the data dir, so a playbook cannot touch what warden does not own.
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
    /// Restart every service that depends on the target, directly or through others, in
    /// start order: planned as one governed `restart_service` step per dependent.
    RestartDependents,
    /// Signal the processes `select` finds (SIGKILL unless told otherwise).
    KillProcess {
        select: Selector,
        #[serde(default = "sigkill")]
        signal: SignalName,
    },
    /// Copy a directory into the node's snapshots (`${data_dir}/snapshots`), keeping it.
    SnapshotDir {
        path: String,
    },
    /// Put back the newest snapshot of a directory (what is there now is snapshotted
    /// first, so the restore itself can be undone).
    RestoreDir {
        path: String,
    },
    /// Rename a file or directory to `NAME.aside-TIMESTAMP` beside it.
    MoveAside {
        path: String,
    },
    /// Gzip the files matching `glob` that were last changed more than `older_than_ms` ago.
    CompressFiles {
        glob: String,
        #[serde(default)]
        older_than_ms: u64,
    },
    /// Delete the files matching `glob` older than `older_than_ms`, keeping the newest `keep`.
    DeleteFiles {
        glob: String,
        #[serde(default)]
        older_than_ms: u64,
        #[serde(default)]
        keep: usize,
    },
    /// Write back a file from the config vault: `path`, or without it every file the
    /// service's config manages. Without `previous`, only a file that is missing or empty
    /// gets its last vaulted version; with it, a file gets the version before its current
    /// content (a change to take back). What is there now is vaulted first, so the restore
    /// itself can be undone.
    RestoreFile {
        #[serde(default)]
        path: Option<String>,
        #[serde(default)]
        previous: bool,
    },
    /// Write one fresh random token into every file of `files` (a shared secret: the
    /// server's password file and its clients' credentials), each vaulted first.
    RotateSecret {
        files: Vec<String>,
    },
    /// An HTTP request that must answer `expect_status` (a reload endpoint, a warm-up).
    HttpCall {
        #[serde(default = "get")]
        method: String,
        url: String,
        #[serde(default)]
        body: Option<String>,
        #[serde(default = "ok_status")]
        expect_status: u16,
        /// Sent for each service that depends on the target instead (each with its own
        /// variables, such as its `${pool_reset_url}`), in start order; a dependent that
        /// lacks what the call needs is left out.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dependents: bool,
    },
    /// A command the node config whitelists under `commands:`, by name.
    RunCommand {
        command: String,
    },
    /// Move the service's first port to `to`, or else to the next free port above it,
    /// wherever the node names it (its arguments, its dependents', ready checks, probes);
    /// what changed restarts (a runtime override, see `overrides`).
    SetPort {
        #[serde(default)]
        to: Option<u16>,
    },
    /// Point the service at the next fallback of an upstream that answers a TCP connect:
    /// the upstream `upstream`, or each of its upstreams that does not answer now.
    SetEndpoint {
        #[serde(default)]
        upstream: Option<String>,
        /// Switch the services that depend on the target instead (those with such an
        /// upstream), in start order: a model server that is down is gone round by its
        /// clients.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dependents: bool,
    },
    /// Multiply the service's startup deadline by `factor`, up to `max_ms`.
    SetStartupDeadline {
        #[serde(default = "two")]
        factor: u32,
        #[serde(default = "ten_minutes")]
        max_ms: u64,
    },
    /// Start the node's services one at a time, each once the one before it is ready.
    StaggerBoot,
}

/// Where a playbook's paths may start: inside the data dir, or a path the target service
/// declares (its lock file, data, credentials, secret files).
pub const PATH_ROOTS: &[&str] = &[
    "${data_dir}",
    "${service_dir}",
    "${snapshot_dir}",
    "${lock_file}",
    "${data}",
    "${credentials_file}",
    "${secret_files}",
];

/// What a playbook's text may name of its target: `${data_dir}` (the node's data dir),
/// `${service_dir}` (the target's folder under `services/`), `${snapshot_dir}` (the
/// target's snapshots), `${service}`, `${port}` (its first port), and what the service
/// declares: `${lock_file}`, `${data}`, `${credentials_file}`, `${pool_reset_url}`,
/// `${model}` (and `${secret_files}`, a list, as a whole entry of `rotate_secret.files`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vars {
    pub data_dir: std::path::PathBuf,
    pub service: ServiceName,
    pub port: Option<u16>,
    pub hooks: RepairHooks,
}

impl Vars {
    pub fn of(data_dir: &Path, spec: &ServiceSpec) -> Self {
        Self {
            data_dir: data_dir.to_path_buf(),
            service: spec.name.clone(),
            port: spec.ports.first().copied(),
            hooks: spec.hooks.clone(),
        }
    }

    /// `text` with every variable the target has filled in; one it lacks stays as written.
    pub fn expand(&self, text: &str) -> String {
        let data = self.data_dir.display().to_string();
        let service = self.service.as_str();
        let mut out = text
            .replace("${service_dir}", &format!("{data}/services/{service}"))
            .replace("${snapshot_dir}", &format!("{data}/snapshots/{service}"))
            .replace("${data_dir}", &data)
            .replace("${service}", service)
            .replace("${port}", &self.port.map_or_else(|| "0".to_string(), |p| p.to_string()));
        let h = &self.hooks;
        let declared = [
            ("${lock_file}", h.lock_file.as_ref().map(|p| p.display().to_string())),
            ("${data}", h.data.as_ref().map(|p| p.display().to_string())),
            ("${credentials_file}", h.credentials_file.as_ref().map(|p| p.display().to_string())),
            ("${pool_reset_url}", h.pool_reset_url.as_ref().map(|u| u.to_string())),
            ("${model}", h.model.clone()),
        ];
        for (var, value) in declared {
            if let Some(v) = value {
                out = out.replace(var, &v);
            }
        }
        out
    }

    /// The files of a `rotate_secret` step: `${secret_files}` stands for every secret file
    /// the service declares.
    pub fn expand_files(&self, files: &[String]) -> Vec<String> {
        files
            .iter()
            .flat_map(|f| {
                if f.trim() == "${secret_files}" {
                    self.hooks.secret_files.iter().map(|p| p.display().to_string()).collect()
                } else {
                    vec![self.expand(f)]
                }
            })
            .collect()
    }
}

fn sigkill() -> SignalName {
    SignalName::Kill
}

fn two() -> u32 {
    2
}

fn ten_minutes() -> u64 {
    600_000
}

fn get() -> String {
    "GET".into()
}

fn ok_status() -> u16 {
    200
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
    ("restart_dependents", Tier::REVERSIBLE),
    // A killed process cannot be brought back: whoever it was, it is gone.
    ("kill_process", Tier::DESTRUCTIVE),
    ("snapshot_dir", Tier::OBSERVE),
    // Overwrites live data (undoable only through the snapshot taken first).
    ("restore_dir", Tier::DESTRUCTIVE),
    ("move_aside", Tier::REVERSIBLE),
    ("compress_files", Tier::REVERSIBLE),
    ("delete_files", Tier::DESTRUCTIVE),
    ("restore_file", Tier::REVERSIBLE),
    ("rotate_secret", Tier::REVERSIBLE),
    ("http_call", Tier::REVERSIBLE),
    ("run_command", Tier::DESTRUCTIVE),
    ("set_port", Tier::REVERSIBLE),
    ("set_endpoint", Tier::REVERSIBLE),
    ("set_startup_deadline", Tier::REVERSIBLE),
    ("stagger_boot", Tier::REVERSIBLE),
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
            Primitive::RestartDependents => "restart_dependents",
            Primitive::KillProcess { .. } => "kill_process",
            Primitive::SnapshotDir { .. } => "snapshot_dir",
            Primitive::RestoreDir { .. } => "restore_dir",
            Primitive::MoveAside { .. } => "move_aside",
            Primitive::CompressFiles { .. } => "compress_files",
            Primitive::DeleteFiles { .. } => "delete_files",
            Primitive::RestoreFile { .. } => "restore_file",
            Primitive::RotateSecret { .. } => "rotate_secret",
            Primitive::HttpCall { .. } => "http_call",
            Primitive::RunCommand { .. } => "run_command",
            Primitive::SetPort { .. } => "set_port",
            Primitive::SetEndpoint { .. } => "set_endpoint",
            Primitive::SetStartupDeadline { .. } => "set_startup_deadline",
            Primitive::StaggerBoot => "stagger_boot",
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

    /// Whether it acts on the target service itself (its process, its budget), rather
    /// than on files, other processes or endpoints.
    pub fn is_service_op(&self) -> bool {
        matches!(
            self,
            Primitive::SignalService { .. }
                | Primitive::RestartService { .. }
                | Primitive::StopService
                | Primitive::StartService
                | Primitive::QuarantineService
                | Primitive::ReleaseService
        )
    }

    /// What running it changes, for people and for the rollback document.
    pub fn changes(&self) -> String {
        match self {
            Primitive::CollectDiagnostics | Primitive::WaitHealthy { .. } => "nothing".into(),
            Primitive::SignalService { signal } => {
                format!("delivers {} to the service's process group", signal.as_str())
            }
            Primitive::RestartService { force: true } => {
                "kills the service's process group and starts it (new pid)".into()
            }
            Primitive::RestartService { force: false } => "replaces the service's process (new pid)".into(),
            Primitive::StopService => "stops the service".into(),
            Primitive::StartService => "starts the service".into(),
            Primitive::QuarantineService => "stops the service and stops restarting it".into(),
            Primitive::ReleaseService => "starts a quarantined service again with a fresh restart budget".into(),
            Primitive::RestartDependents => "replaces the processes of the services that depend on it".into(),
            Primitive::KillProcess { select, signal } => format!("sends {} to {}", signal.as_str(), select.describe()),
            Primitive::SnapshotDir { path } => format!("adds a copy of `{path}` to the snapshots"),
            Primitive::RestoreDir { path } => format!("replaces `{path}` with its newest snapshot"),
            Primitive::MoveAside { path } => format!("renames `{path}` aside"),
            Primitive::CompressFiles { glob, .. } => format!("gzips the files matching `{glob}`"),
            Primitive::DeleteFiles { glob, keep, .. } => {
                format!("deletes the files matching `{glob}` (keeping the newest {keep})")
            }
            Primitive::RestoreFile { path, previous } => format!(
                "{} of {}",
                if *previous {
                    "writes back the version before the current one"
                } else {
                    "writes back the last vaulted version, if missing or empty,"
                },
                path.as_ref().map_or("every file the service's config manages".to_string(), |p| format!("`{p}`"))
            ),
            Primitive::RotateSecret { files } => format!("writes a new random token into {}", files.join(", ")),
            Primitive::HttpCall { method, url, dependents: true, .. } => {
                format!("{method} {url} of each service that depends on it")
            }
            Primitive::HttpCall { method, url, .. } => format!("{method} {url}"),
            Primitive::RunCommand { command } => format!("runs the whitelisted command `{command}`"),
            Primitive::SetPort { to } => format!(
                "moves the service's first port to {} wherever the node names it; restarts the services that name it",
                to.map_or("the next free port above it".to_string(), |p| p.to_string())
            ),
            Primitive::SetEndpoint { upstream, dependents } => format!(
                "points {} at the next answering fallback of {}; restarts {}",
                if *dependents { "each service that depends on it" } else { "the service" },
                upstream
                    .as_ref()
                    .map_or("each upstream that does not answer".to_string(), |u| format!("upstream `{u}`")),
                if *dependents { "them" } else { "it" }
            ),
            Primitive::SetStartupDeadline { factor, max_ms } => {
                format!("multiplies the service's startup deadline by {factor} (at most {max_ms} ms)")
            }
            Primitive::StaggerBoot => "starts the node's services one at a time from now on".into(),
        }
    }

    /// How a run of it is rolled back, and what the rollback does or why it cannot.
    pub fn rollback(&self) -> Rollback {
        use Rollback::*;
        match self {
            Primitive::CollectDiagnostics | Primitive::WaitHealthy { .. } | Primitive::SnapshotDir { .. } => {
                NothingToUndo("it changes nothing a rollback should take back")
            }
            Primitive::RestartService { .. } | Primitive::RestartDependents => {
                NothingToUndo("the services run either way (with new pids)")
            }
            Primitive::StopService => Automated("starts the service again"),
            Primitive::QuarantineService => Automated("releases the service (it starts with a fresh restart budget)"),
            Primitive::StartService => Automated("stops the service again"),
            Primitive::ReleaseService => Automated("quarantines the service again"),
            Primitive::RestoreDir { .. } => Automated("puts back the snapshot taken just before the restore"),
            Primitive::MoveAside { .. } => Automated("renames it back"),
            Primitive::CompressFiles { .. } => Automated("decompresses the files it compressed"),
            Primitive::RestoreFile { .. } | Primitive::RotateSecret { .. } => {
                Automated("writes back the versions that were there before (vaulted first)")
            }
            Primitive::SetPort { .. } => Automated("moves the port back (restarting what names it)"),
            Primitive::SetEndpoint { .. } => {
                Automated("points the service at the address it used before (restarting it)")
            }
            Primitive::SetStartupDeadline { .. } => Automated("sets the deadline it had before"),
            Primitive::StaggerBoot => Automated("starts services in parallel again"),
            Primitive::SignalService { .. } => Impossible("a delivered signal cannot be taken back"),
            Primitive::KillProcess { .. } => Impossible("a killed process cannot be brought back"),
            Primitive::DeleteFiles { .. } => Impossible("deleted files are gone (snapshot first if they matter)"),
            Primitive::HttpCall { .. } => Impossible("the remote side's change is its own"),
            Primitive::RunCommand { .. } => Impossible("a command's effects are its own"),
        }
    }

    /// What is wrong with this step's own parameters, if anything.
    fn problem(&self) -> Option<String> {
        let path_problem = |what: &str, p: &str| {
            if p.trim().is_empty() {
                Some(format!("{what} must not be empty"))
            } else if !PATH_ROOTS.iter().any(|r| p.starts_with(r)) {
                Some(format!("{what} `{p}` must start with one of {}", PATH_ROOTS.join(", ")))
            } else if p.split('/').any(|c| c == "..") {
                Some(format!("{what} `{p}` must not contain `..`"))
            } else {
                None
            }
        };
        match self {
            Primitive::WaitHealthy { timeout } if timeout.is_zero() => {
                Some("wait_healthy.timeout_ms must be positive".into())
            }
            Primitive::SnapshotDir { path } | Primitive::RestoreDir { path } | Primitive::MoveAside { path } => {
                path_problem("path", path)
            }
            Primitive::RestoreFile { path: Some(path), .. } => path_problem("path", path),
            Primitive::RotateSecret { files } if files.is_empty() => {
                Some("rotate_secret.files must not be empty".into())
            }
            Primitive::RotateSecret { files } => files.iter().find_map(|f| path_problem("file", f)),
            Primitive::KillProcess { select: Selector::LockHolder { path }, .. } => path_problem("lock path", path),
            Primitive::CompressFiles { glob, .. } | Primitive::DeleteFiles { glob, .. } => path_problem("glob", glob)
                .or_else(|| glob::Pattern::new(glob).err().map(|e| format!("glob `{glob}`: {e}"))),
            Primitive::KillProcess { select: Selector::Name { name }, .. } if name.is_empty() || name.len() > 15 => {
                Some("kill_process.select.name must be 1 to 15 characters (a process name)".into())
            }
            Primitive::KillProcess { select: Selector::MemoryHog { min_rss_mb }, .. }
                if *min_rss_mb == 0 || *min_rss_mb > 1 << 30 =>
            {
                Some("kill_process.select.memory_hog.min_rss_mb must be 1 to 2^30".into())
            }
            // A stop or continue is no kill: the step waits for the process to be gone.
            Primitive::KillProcess { signal, .. }
                if !matches!(signal, SignalName::Term | SignalName::Int | SignalName::Quit | SignalName::Kill) =>
            {
                Some(format!(
                    "kill_process.signal {} does not end a process (SIGTERM, SIGINT, SIGQUIT or SIGKILL)",
                    signal.as_str()
                ))
            }
            Primitive::HttpCall { method, url, expect_status, .. } => {
                if !["GET", "POST", "PUT", "DELETE", "HEAD"].contains(&method.as_str()) {
                    Some(format!("http_call.method `{method}` is not one of GET, POST, PUT, DELETE, HEAD"))
                } else if url::Url::parse(
                    &url.replace("${pool_reset_url}", "http://x/").replace("${port}", "1").replace("${service}", "x"),
                )
                .map(|u| !matches!(u.scheme(), "http" | "https"))
                .unwrap_or(true)
                {
                    Some(format!("http_call.url `{url}` is not an http(s) URL"))
                } else if !(100..=599).contains(expect_status) {
                    Some(format!("http_call.expect_status {expect_status} is no HTTP status"))
                } else {
                    None
                }
            }
            Primitive::SetPort { to: Some(0) } => Some("set_port.to must be a port from 1 to 65535".into()),
            Primitive::SetStartupDeadline { factor, max_ms } if *factor < 2 || *max_ms == 0 => {
                Some("set_startup_deadline needs factor ≥ 2 and a positive max_ms".into())
            }
            Primitive::RunCommand { command } if command.is_empty() => {
                Some("run_command.command must name a command of the node config".into())
            }
            _ => None,
        }
    }
}

impl Selector {
    pub fn describe(&self) -> String {
        match self {
            Selector::PortOwner { port, stranger } => {
                let port = port.map_or("the service's ports".to_string(), |p| format!("port {p}"));
                let who = if *stranger { "a foreign process" } else { "a leftover of the service's own program" };
                format!("{who} listening on {port}")
            }
            Selector::MemoryHog { min_rss_mb } => {
                format!("the largest process of the service's group, if over {min_rss_mb} MiB resident")
            }
            Selector::Name { name } => format!("processes named `{name}`"),
            Selector::LockHolder { path } => format!("whoever holds a lock on `{path}`"),
        }
    }
}

/// How a step's change is taken back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollback {
    /// From the undo data the step records as it runs.
    Automated(&'static str),
    /// It leaves nothing to take back.
    NothingToUndo(&'static str),
    /// It cannot be taken back: why.
    Impossible(&'static str),
}

impl Rollback {
    pub fn how(self) -> &'static str {
        match self {
            Rollback::Automated(s) | Rollback::NothingToUndo(s) | Rollback::Impossible(s) => s,
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Rollback::Automated(_) => "automated",
            Rollback::NothingToUndo(_) => "nothing_to_undo",
            Rollback::Impossible(_) => "impossible",
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
    /// What it needs from a service beyond what its steps show (see [`crate::fit`]).
    pub requires: Vec<crate::fit::Need>,
    /// A run that only mitigated (the service serves again, a lower layer still fails):
    /// what to do once that layer recovers.
    pub on_recovery: OnRecovery,
}

/// What becomes of a mitigation once the lower layer it went round recovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRecovery {
    /// Leave it as it is (a standby in use stays in use); a person may roll it back.
    #[default]
    Keep,
    /// Roll the run back (fail back to the primary), through governance like any rollback.
    Rollback,
}

impl Playbook {
    /// It quarantines the service: a last resort that stops trying, not a repair.
    pub fn gives_up(&self) -> bool {
        self.steps.iter().any(|s| matches!(s, Primitive::QuarantineService))
    }
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
        #[serde(default)]
        pub requires: Vec<crate::fit::Need>,
        #[serde(default)]
        pub on_recovery: OnRecovery,
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
    /// Reads and validates one catalog document; every problem is reported with its position.
    pub fn load(src: &Source<'_>) -> Result<Self, Problems> {
        Self::load_all(std::slice::from_ref(src), &[])
    }

    /// The catalog of `base` (ids unique across its files) with `overrides` on top: a
    /// playbook of an override file replaces the base one of the same id, or adds one.
    /// Every problem of every file is reported at once.
    pub fn load_all(base: &[Source<'_>], overrides: &[Source<'_>]) -> Result<Self, Problems> {
        let mut problems: Option<Problems> = None;
        let mut playbooks: Vec<Playbook> = Vec::new();
        let mut base_ids = std::collections::BTreeSet::new();
        let mut override_ids = std::collections::BTreeSet::new();
        for (src, overriding) in base.iter().map(|s| (s, false)).chain(overrides.iter().map(|s| (s, true))) {
            let ids = if overriding { &mut override_ids } else { &mut base_ids };
            match load_file(src, ids) {
                Ok(loaded) => {
                    for p in loaded {
                        match playbooks.iter_mut().find(|b| b.id == p.id) {
                            Some(b) if overriding => *b = p,
                            _ => playbooks.push(p),
                        }
                    }
                }
                Err(p) => match &mut problems {
                    Some(all) => all.extend(p),
                    None => problems = Some(p),
                },
            }
        }
        match problems {
            Some(p) => Err(p),
            None => Ok(Self { playbooks }),
        }
    }

    /// The embedded default catalog.
    pub fn embedded_default() -> Result<Self, Problems> {
        Self::embedded_with(&[])
    }

    /// The embedded default catalog with a node's own playbook files over it.
    pub fn embedded_with(overrides: &[Source<'_>]) -> Result<Self, Problems> {
        let base: Vec<Source<'_>> =
            DEFAULT_CATALOG.iter().map(|(name, text)| Source { name, dir: Path::new("."), text }).collect();
        Self::load_all(&base, overrides)
    }

    pub fn get(&self, id: &str) -> Option<&Playbook> {
        self.playbooks.iter().find(|p| p.id == id)
    }

    pub fn all(&self) -> &[Playbook] {
        &self.playbooks
    }

    /// Playbooks for a failure mode, in catalog order (first = first choice).
    /// (See [`Playbook::gives_up`] for the ones that only ever come last.)
    pub fn for_mode(&self, mode: FailureMode) -> Vec<&Playbook> {
        self.playbooks.iter().filter(|p| p.triggers.contains(&mode)).collect()
    }
}

/// The playbooks of one catalog file, checked; `seen`: ids met so far in the same layer.
fn load_file(src: &Source<'_>, seen: &mut std::collections::BTreeSet<String>) -> Result<Vec<Playbook>, Problems> {
    let parsed: raw::CatalogFile = source::parse(src)?;
    let mut c = Collector::new(src.name);
    let mut playbooks = Vec::new();
    for p in parsed.playbooks {
        let id = p.id.value.clone();
        if id.is_empty() || !id.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_') {
            c.at(p.id.referenced, format!("playbook id `{id}` must be lowercase letters, digits and _"));
        }
        if !seen.insert(id.clone()) {
            c.at(p.id.referenced, format!("playbook `{id}` is defined twice in the catalog"));
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
            c.at(p.triggers.referenced, format!("playbook `{id}` has no triggers: no failure mode would ever run it"));
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
            requires: p.requires,
            on_recovery: p.on_recovery,
        });
    }
    c.finish(|| playbooks)
}

/// `docs/playbook_rollbacks.md`: for every playbook of `catalog`, what each step changes
/// and how a run is rolled back (automated from the undo data, or not and why). A test
/// compares it with the file, so the document cannot go stale.
pub fn rollback_doc(catalog: &Catalog) -> String {
    let mut out = String::from(
        "# Playbook rollbacks\n\n\
         Generated from the playbook catalog (`config/playbooks/`) by `warden playbooks docs`; do not \
         edit by hand. A run records undo data for each step as it goes; `warden playbooks rollback \
         RUN_ID` (or `POST /api/guardian/runs/{id}/rollback`) runs the undos newest first, each through \
         the gatekeeper and audited. A step whose change cannot be undone says so below; a run of such \
         a playbook is rolled back as far as its other steps allow.\n\n\
         | playbook | tier | triggers | rollback |\n| --- | --- | --- | --- |\n",
    );
    for p in catalog.all() {
        let kinds: Vec<Rollback> = p.steps.iter().map(Primitive::rollback).collect();
        let automated = kinds.iter().any(|k| matches!(k, Rollback::Automated(_)));
        let impossible = kinds.iter().any(|k| matches!(k, Rollback::Impossible(_)));
        let verdict = match (automated, impossible) {
            (true, false) => "automated",
            (true, true) => "partly: some steps cannot be undone",
            (false, true) => "cannot be undone (see its steps)",
            (false, false) => "nothing to undo",
        };
        let triggers: Vec<&str> = p.triggers.iter().map(|t| t.as_str()).collect();
        out.push_str(&format!(
            "| [`{}`](#{}) | {} | {} | {verdict} |\n",
            p.id,
            p.id,
            p.tier.get(),
            triggers.join(", ")
        ));
    }
    for p in catalog.all() {
        out.push_str(&format!("\n## {}\n\n{} — {}\n\n", p.id, p.name, p.description));
        let needs: Vec<String> = crate::fit::needs(p).iter().map(crate::fit::Need::describe).collect();
        out.push_str(&match needs.is_empty() {
            true => "Applies to any service of its triggers.\n\n".to_string(),
            false => format!("Applies only to a service that declares: {}.\n\n", needs.join(", ")),
        });
        if p.on_recovery == OnRecovery::Rollback {
            out.push_str("A run that only mitigated is rolled back once the lower layer recovers.\n\n");
        }
        out.push_str("| step | changes | rollback |\n| --- | --- | --- |\n");
        for (i, s) in p.steps.iter().enumerate() {
            let rollback = match s.rollback() {
                Rollback::Automated(how) => format!("automated: {how}"),
                Rollback::NothingToUndo(why) => format!("nothing to undo: {why}"),
                Rollback::Impossible(why) => format!("**not possible**: {why}"),
            };
            out.push_str(&format!("| {i} `{}` | {} | {rollback} |\n", s.action(), s.changes()));
        }
    }
    out
}

/// One step bound to its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedStep {
    pub index: usize,
    pub primitive: Primitive,
    pub target: ServiceName,
    pub tier: Tier,
}

/// Leaves out a stop and start that only bracket a snapshot, for a target whose snapshots
/// are consistent while it runs (`snapshot.method` live or command, as `pg_basebackup`
/// makes): stopping it would be an outage that buys nothing.
pub fn keep_running_for_snapshot(steps: Vec<PlannedStep>, copies_while_running: bool) -> Vec<PlannedStep> {
    if !copies_while_running {
        return steps;
    }
    let is = |s: Option<&PlannedStep>, f: fn(&Primitive) -> bool| s.is_some_and(|s| f(&s.primitive));
    let stop = |p: &Primitive| matches!(p, Primitive::StopService);
    let snap = |p: &Primitive| matches!(p, Primitive::SnapshotDir { .. });
    let start = |p: &Primitive| matches!(p, Primitive::StartService);
    let mut out: Vec<PlannedStep> = Vec::with_capacity(steps.len());
    let mut i = 0;
    while i < steps.len() {
        let same = |j: usize| steps.get(j).is_some_and(|s| s.target == steps[i].target);
        if is(steps.get(i), stop)
            && is(steps.get(i + 1), snap)
            && is(steps.get(i + 2), start)
            && same(i + 1)
            && same(i + 2)
        {
            out.push(steps[i + 1].clone());
            i += 3;
        } else {
            out.push(steps[i].clone());
            i += 1;
        }
    }
    out
}

/// Binds a playbook's steps to `target`; `tier_of` lets policy raise a step's tier.
/// `dependents`: the services that depend on the target, in start order, for which a
/// `restart_dependents` step becomes one `restart_service` step each.
pub fn plan(
    playbook: &Playbook,
    target: &ServiceName,
    dependents: &[ServiceName],
    tier_of: impl Fn(&str, Tier) -> Tier,
) -> Vec<PlannedStep> {
    let bind = |index: usize, primitive: Primitive, target: &ServiceName| {
        let own = primitive.min_tier();
        PlannedStep { index, tier: tier_of(primitive.action(), own).max(own), primitive, target: target.clone() }
    };
    let mut steps = Vec::new();
    for (index, p) in playbook.steps.iter().enumerate() {
        match p {
            Primitive::RestartDependents => {
                for d in dependents {
                    steps.push(bind(index, Primitive::RestartService { force: false }, d));
                }
            }
            Primitive::SetEndpoint { upstream, dependents: true } => {
                for d in dependents {
                    steps.push(bind(
                        index,
                        Primitive::SetEndpoint { upstream: upstream.clone(), dependents: false },
                        d,
                    ));
                }
            }
            Primitive::HttpCall { method, url, body, expect_status, dependents: true } => {
                for d in dependents {
                    let call = Primitive::HttpCall {
                        method: method.clone(),
                        url: url.clone(),
                        body: body.clone(),
                        expect_status: *expect_status,
                        dependents: false,
                    };
                    steps.push(bind(index, call, d));
                }
            }
            p => steps.push(bind(index, p.clone(), target)),
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_embedded_catalog_loads_and_covers_api_timeout() {
        let c = Catalog::embedded_default().expect("catalog");
        let first = c.for_mode(FailureMode::ApiTimeout);
        assert_eq!(first.first().map(|p| p.id.as_str()), Some("restart_hung_service"));
        for mode in FailureMode::ALL {
            if mode != FailureMode::NetworkUnreachable {
                assert!(!c.for_mode(mode).is_empty(), "no playbook for {}", mode.as_str());
            }
        }
    }

    #[test]
    fn test_paths_must_stay_in_the_data_dir_and_overrides_replace_by_id() {
        let base = "playbooks:\n  - id: x\n    name: X\n    description: d\n    category: resources\n    tier: 3\n    triggers: [disk_full]\n    timeout_ms: 100\n    steps:\n      - do: delete_files\n        glob: \"/etc/*\"\n";
        let err = load(base).expect_err("outside the data dir");
        assert!(err.to_string().contains("must start with one of"), "{err}");
        assert_eq!(err.list()[0].pos.line, 10, "{err}");
        let err = load(&base.replace("/etc/*", "${data_dir}/../*")).expect_err("dot-dot");
        assert!(err.to_string().contains("must not contain `..`"), "{err}");
        let ok = base.replace("/etc/*", "${service_dir}/tmp/*");
        let over = ok.replace("name: X", "name: Mine");
        let src = |text| Source { name: "o.yaml", dir: Path::new("."), text };
        let c = Catalog::load_all(&[src(&ok)], &[src(&over)]).expect("override");
        assert_eq!(c.all().len(), 1);
        assert_eq!(c.get("x").map(|p| p.name.as_str()), Some("Mine"));
        let err = Catalog::load_all(&[src(&ok), src(&ok)], &[]).expect_err("twice in the base");
        assert!(err.to_string().contains("defined twice"), "{err}");
    }

    #[test]
    fn test_the_rollback_document_is_generated_from_the_catalog() {
        let c = Catalog::embedded_default().expect("catalog");
        let written = include_str!("../../docs/playbook_rollbacks.md");
        assert!(
            written == rollback_doc(&c),
            "docs/playbook_rollbacks.md is stale: run `cargo run -- playbooks docs --out docs/playbook_rollbacks.md`"
        );
    }

    #[test]
    fn test_restart_dependents_plans_one_governed_restart_per_dependent() {
        let c = Catalog::embedded_default().expect("catalog");
        let pb = c.get("restart_dependency_chain").expect("playbook");
        let (db, api) = (ServiceName::parse("db").expect("name"), ServiceName::parse("api").expect("name"));
        let steps = plan(pb, &db, std::slice::from_ref(&api), |_, t| t);
        let last = steps.last().expect("steps");
        assert_eq!((last.primitive.action(), &last.target), ("restart_service", &api));
        assert_eq!(steps.len(), pb.steps.len(), "one dependent: one step in place of the expansion");
        assert_eq!(plan(pb, &db, &[], |_, t| t).len(), pb.steps.len() - 1, "no dependents: no step");
    }

    #[test]
    fn test_expand_fills_in_the_target_and_what_it_declares() {
        let mut vars = Vars {
            data_dir: "/d".into(),
            service: ServiceName::parse("api").expect("name"),
            port: Some(8000),
            hooks: RepairHooks::default(),
        };
        let got = vars.expand("${service_dir}/a ${snapshot_dir} ${service}:${port}");
        assert_eq!(got, "/d/services/api/a /d/snapshots/api api:8000");
        assert_eq!(vars.expand("${lock_file}"), "${lock_file}", "not declared: left as written");
        vars.hooks.lock_file = Some("/d/services/api/LOCK".into());
        vars.hooks.secret_files = vec!["/d/a".into(), "/d/b".into()];
        assert_eq!(vars.expand("${lock_file}"), "/d/services/api/LOCK");
        assert_eq!(vars.expand_files(&["${secret_files}".into()]), ["/d/a", "/d/b"]);
    }

    #[test]
    fn test_a_snapshot_made_while_running_keeps_the_database_running() {
        let c = Catalog::embedded_default().expect("catalog");
        let pb = c.get("snapshot_database").expect("playbook");
        let db = ServiceName::parse("db").expect("name");
        let actions = |steps: Vec<PlannedStep>| steps.iter().map(|s| s.primitive.action()).collect::<Vec<_>>();
        let stopped = keep_running_for_snapshot(plan(pb, &db, &[], |_, t| t), false);
        assert_eq!(actions(stopped), ["stop_service", "snapshot_dir", "start_service", "wait_healthy"]);
        let live = keep_running_for_snapshot(plan(pb, &db, &[], |_, t| t), true);
        assert_eq!(actions(live.clone()), ["snapshot_dir", "wait_healthy"]);
        assert_eq!(live.iter().map(|s| s.index).collect::<Vec<_>>(), [1, 3], "the playbook's step numbers stay");
        let restart = c.get("restart_hung_service").expect("playbook");
        assert_eq!(
            actions(keep_running_for_snapshot(plan(restart, &db, &[], |_, t| t), true)),
            actions(plan(restart, &db, &[], |_, t| t)),
            "a stop that brackets no snapshot stays"
        );
    }

    #[test]
    fn test_plan_binds_target_and_keeps_min_tier() {
        let c = Catalog::embedded_default().expect("catalog");
        let pb = c.get("restart_hung_service").expect("playbook");
        let api = ServiceName::parse("api").expect("name");
        let steps = plan(pb, &api, &[], |_, t| t);
        assert!(steps.iter().all(|s| s.target == api));
        let restart = steps.iter().find(|s| s.primitive.action() == "restart_service").expect("restart step");
        assert_eq!(restart.tier, Tier::REVERSIBLE);
        // Policy may raise a tier, never lower it below the primitive's own.
        let lowered = plan(pb, &api, &[], |_, _| Tier::OBSERVE);
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
        let path = || "${service_dir}/x".to_string();
        let every = [
            Primitive::CollectDiagnostics,
            Primitive::SignalService { signal: SignalName::Hup },
            Primitive::RestartService { force: false },
            Primitive::StopService,
            Primitive::StartService,
            Primitive::WaitHealthy { timeout: Duration::from_millis(1) },
            Primitive::QuarantineService,
            Primitive::ReleaseService,
            Primitive::RestartDependents,
            Primitive::KillProcess { select: Selector::Name { name: "x".into() }, signal: SignalName::Kill },
            Primitive::SnapshotDir { path: path() },
            Primitive::RestoreDir { path: path() },
            Primitive::MoveAside { path: path() },
            Primitive::CompressFiles { glob: path(), older_than_ms: 0 },
            Primitive::DeleteFiles { glob: path(), older_than_ms: 0, keep: 0 },
            Primitive::RestoreFile { path: None, previous: false },
            Primitive::RotateSecret { files: vec![path()] },
            Primitive::HttpCall {
                method: "GET".into(),
                url: "http://x/".into(),
                body: None,
                expect_status: 200,
                dependents: false,
            },
            Primitive::RunCommand { command: "x".into() },
            Primitive::SetPort { to: None },
            Primitive::SetEndpoint { upstream: None, dependents: false },
            Primitive::SetStartupDeadline { factor: 2, max_ms: 1 },
            Primitive::StaggerBoot,
        ];
        let names: Vec<&str> = every.iter().map(Primitive::action).collect();
        assert_eq!(names, Primitive::actions().collect::<Vec<_>>(), "ACTIONS lists every primitive once, in order");
    }
}
