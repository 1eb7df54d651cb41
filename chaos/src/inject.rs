//! Fault injectors, one or more per failure mode, and their verifiers.
//!
//! Each injector makes a real fault from outside the node, as an operator's bad day would:
//! signals to the service's process, bytes flipped in its data file, a stranger on its
//! port, a memory balloon inside its cgroup, a full volume under its data, a link taken
//! down, a file deleted, credentials garbled. Everything about the target comes from the
//! node's config (with the runtime overrides in its data dir): its ports, its files, its
//! probes' addresses. [`prepare`] checks that the fault can be made here and changes
//! nothing; only [`Prepared::inject`] changes anything.
//!
//! The verifier checks recovery with the harness's own checks (an HTTP GET, a line
//! exchange with its own login, a file's presence, free space), never the node's word.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use warden_core::config::{NodeConfig, ProbeCheck, ReadyCheck, ServiceRole, ServiceSpec};
use warden_core::mode::FailureMode;

use crate::procs;

/// A fault `warden chaos inject` can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Injection {
    /// (1) SIGSTOP the database: it holds its port and answers nothing.
    DbFreeze,
    /// (1) Flip bytes in the middle of the database's data file; for PostgreSQL, in its
    /// control file (`global/pg_control`, read only at start), then SIGKILL it.
    DbCorrupt,
    /// (2) SIGKILL the service, then a stranger holds its port for `--secs`.
    PortHold,
    /// (3) SIGKILL the service and starve its next boot of CPU (0.1 % of one) for `--secs`
    /// or past its startup deadline, whichever is longer; then let it go on at full speed.
    /// It runs all along, only slowly; nothing of its config is changed.
    SlowBoot,
    /// (4) A process inside the service's cgroup grows past its memory limit.
    MemoryGrowth,
    /// (5) Fill the small volume under the service's data with a stale temporary file.
    DiskFull,
    /// (6) Take a network interface down (`--interface`), as a cut cable would.
    LinkDown,
    /// (6) Drop every packet sent out of a network interface (`--interface`) with an
    /// nftables rule: the link stays up (its carrier is there) and carries nothing.
    LinkLoss,
    /// (7) SIGSTOP an application service (the api).
    ApiHang,
    /// (7) Make an application service answer late, past its probes' timeouts: stopped
    /// nine tenths of every second and let run the rest, for `--secs`. It answers, slowly.
    SlowAnswers,
    /// (8) Delete the first file the service's config manages.
    ConfigDelete,
    /// (9) Overwrite the service's credentials file with a token nobody accepts.
    BadCredentials,
    /// (10) SIGSTOP the model server.
    ModelHang,
    /// (10) SIGKILL the model server.
    ModelKill,
    /// (4, node-wide) A process warden does not run takes the node's available memory 1 GiB
    /// under the node's floor (`healing.node_memory_min_available_mb`) for `--secs`: told
    /// to a person (`NodeMemoryLow`), never repaired by a kill.
    NodeMemory,
}

impl Injection {
    pub const ALL: [Injection; 15] = [
        Injection::DbFreeze,
        Injection::DbCorrupt,
        Injection::PortHold,
        Injection::SlowBoot,
        Injection::MemoryGrowth,
        Injection::DiskFull,
        Injection::LinkDown,
        Injection::LinkLoss,
        Injection::ApiHang,
        Injection::SlowAnswers,
        Injection::ConfigDelete,
        Injection::BadCredentials,
        Injection::ModelHang,
        Injection::ModelKill,
        Injection::NodeMemory,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Injection::DbFreeze => "db-freeze",
            Injection::DbCorrupt => "db-corrupt",
            Injection::PortHold => "port-hold",
            Injection::SlowBoot => "slow-boot",
            Injection::MemoryGrowth => "memory-growth",
            Injection::DiskFull => "disk-full",
            Injection::LinkDown => "link-down",
            Injection::LinkLoss => "link-loss",
            Injection::ApiHang => "api-hang",
            Injection::SlowAnswers => "slow-answers",
            Injection::ConfigDelete => "config-delete",
            Injection::BadCredentials => "bad-credentials",
            Injection::ModelHang => "model-hang",
            Injection::ModelKill => "model-kill",
            Injection::NodeMemory => "node-memory",
        }
    }

    /// The failure mode the fault is one of.
    pub fn mode(self) -> FailureMode {
        match self {
            Injection::DbFreeze | Injection::DbCorrupt => FailureMode::DatabaseUnavailable,
            Injection::PortHold => FailureMode::PortInUse,
            Injection::SlowBoot => FailureMode::SlowBoot,
            Injection::MemoryGrowth | Injection::NodeMemory => FailureMode::OutOfMemory,
            Injection::DiskFull => FailureMode::DiskFull,
            Injection::LinkDown | Injection::LinkLoss => FailureMode::NetworkUnreachable,
            Injection::ApiHang | Injection::SlowAnswers => FailureMode::ApiTimeout,
            Injection::ConfigDelete => FailureMode::MissingConfig,
            Injection::BadCredentials => FailureMode::InvalidCredentials,
            Injection::ModelHang | Injection::ModelKill => FailureMode::ModelServerDown,
        }
    }

    /// Whether the fault is made on the link into a service's network namespace.
    pub fn on_link(self) -> bool {
        matches!(self, Injection::LinkDown | Injection::LinkLoss)
    }

    /// Whether the fault is on the node as a whole: told to a person, not an incident of a
    /// service's.
    pub fn node_wide(self) -> bool {
        self == Injection::NodeMemory
    }

    /// The service the fault goes to when no `--target` is given; `None`: no service fits
    /// (a node-wide fault: the node's first service stands for the node).
    pub fn default_target(self, config: &NodeConfig) -> Option<&ServiceSpec> {
        let by_role = |role| config.services.iter().find(|s| s.role == Some(role));
        let app = || {
            config
                .services
                .iter()
                .filter(|s| s.role.is_none() && !s.ports.is_empty())
                .max_by_key(|s| s.depends_on.len())
        };
        match self {
            Injection::DbFreeze | Injection::DbCorrupt | Injection::DiskFull => by_role(ServiceRole::Database),
            Injection::ModelHang | Injection::ModelKill => by_role(ServiceRole::ModelServer),
            Injection::NodeMemory => config.services.first(),
            Injection::ConfigDelete => config.services.iter().find(|s| s.role.is_none() && !s.files.is_empty()),
            Injection::BadCredentials => config.services.iter().find(|s| credentials_file(s).is_some()),
            Injection::PortHold
            | Injection::SlowBoot
            | Injection::MemoryGrowth
            | Injection::LinkDown
            | Injection::LinkLoss
            | Injection::ApiHang
            | Injection::SlowAnswers => app(),
        }
    }
}

/// Why a fault is not made: nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("no service `{0}` in the node's config")]
    NoSuchTarget(String),
    #[error("{fault}: no service fits; name one with --target")]
    NoTarget { fault: &'static str },
    #[error("{fault} cannot be made here: {why}")]
    Refused { fault: &'static str, why: String },
    #[error("{fault} on `{target}` failed part-way: {why}")]
    Failed { fault: &'static str, target: String, why: String },
}

/// What the caller asks for.
#[derive(Debug, Clone)]
pub struct InjectOptions {
    pub target: Option<String>,
    /// How long a hold or a boot freeze lasts.
    pub secs: u64,
    /// For `link-down`.
    pub interface: Option<String>,
}

/// A fault checked and ready to be made.
#[derive(Debug)]
pub struct Prepared {
    pub fault: Injection,
    pub target: String,
    /// What will be done, in words.
    pub what: String,
    action: Action,
    /// The harness's own checks that say the target is restored.
    pub checks: Vec<Check>,
}

#[derive(Debug)]
enum Action {
    Signal {
        pids: Vec<u32>,
        signal: Signal,
    },
    Corrupt {
        file: PathBuf,
    },
    /// PostgreSQL's control file: bytes its checksum covers, then the postmaster killed.
    CorruptControl {
        file: PathBuf,
        pids: Vec<u32>,
    },
    Hold {
        pids: Vec<u32>,
        port: u16,
        secs: u64,
    },
    SlowBoot {
        pids: Vec<u32>,
        cgroup_procs: Vec<PathBuf>,
        cpu_cgroup: PathBuf,
        secs: u64,
    },
    Balloon {
        cgroup_procs: Vec<PathBuf>,
        mb: u64,
    },
    Fill {
        dir: PathBuf,
        bytes: u64,
    },
    LinkDown {
        interface: String,
        secs: u64,
    },
    LinkLoss {
        interface: String,
        secs: u64,
    },
    SlowAnswers {
        pids: Vec<u32>,
        secs: u64,
        stop: Duration,
    },
    Delete {
        file: PathBuf,
    },
    Garble {
        file: PathBuf,
    },
    /// A process of no service's takes `mb` MiB for `secs`.
    NodeBalloon {
        mb: u64,
        secs: u64,
    },
}

/// One check of the harness's own.
#[derive(Debug, Clone)]
pub enum Check {
    /// `GET url` answers 2xx (with `body` in it, if given).
    Http {
        url: String,
        body: Option<String>,
    },
    /// One line sent (after `AUTH <token>` when a password file is given), an answer
    /// starting with `expect`.
    Line {
        addr: SocketAddr,
        send: String,
        expect: String,
        password_file: Option<PathBuf>,
    },
    /// PostgreSQL answers `SELECT 1` (logged in with the password in `password_file`).
    Postgres {
        addr: SocketAddr,
        user: String,
        dbname: String,
        password_file: Option<PathBuf>,
    },
    FileExists(PathBuf),
    /// The filesystem of `path` has at least `pct` % free.
    FreeSpace {
        path: PathBuf,
        pct: u8,
    },
    /// `pid` no longer listens on `port`.
    NotHolding {
        port: u16,
        pid: u32,
    },
    /// Process `pid` is gone (a balloon killed with its service, or by itself).
    Gone(u32),
    /// The node has at least `mib` MiB available (`MemAvailable`).
    MemAvailable {
        mib: u64,
    },
    /// `check` passes `times` times in a row, a quarter second apart, each within
    /// `within`: the service answers promptly again, not just at some moment.
    Prompt {
        check: Box<Check>,
        within: Duration,
        times: u32,
    },
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Check::Http { url, .. } => write!(f, "GET {url}"),
            Check::Line { addr, send, .. } => write!(f, "{send} to {addr}"),
            Check::Postgres { addr, .. } => write!(f, "SELECT 1 on {addr}"),
            Check::FileExists(p) => write!(f, "{} exists", p.display()),
            Check::FreeSpace { path, pct } => write!(f, "{} has {pct} % free", path.display()),
            Check::NotHolding { port, pid } => write!(f, "pid {pid} off port {port}"),
            Check::Gone(pid) => write!(f, "pid {pid} gone"),
            Check::MemAvailable { mib } => write!(f, "{mib} MiB of memory available"),
            Check::Prompt { check, within, times } => {
                write!(f, "{check}, {times} times in a row within {} ms", within.as_millis())
            }
        }
    }
}

/// The service's credentials file: a managed file named like one.
fn credentials_file(s: &ServiceSpec) -> Option<PathBuf> {
    s.files.iter().map(|f| f.path.clone()).find(|p| {
        let name = p.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
        name.contains("credential") || name.contains("token")
    })
}

/// The data dir the node running at `config`'s address says it uses (`GET /api/status`),
/// if one answers.
pub fn node_data_dir(config: &NodeConfig) -> Option<std::path::PathBuf> {
    let client =
        reqwest::blocking::Client::builder().no_proxy().timeout(std::time::Duration::from_secs(2)).build().ok()?;
    let status: serde_json::Value =
        client.get(format!("http://{}/api/status", config.http_listen)).send().ok()?.json().ok()?;
    status["node"]["data_dir"].as_str().filter(|d| !d.is_empty()).map(std::path::PathBuf::from)
}

/// The node's config as it runs: the file (or the embedded default, relative to the working
/// directory) with the runtime overrides in its data dir over it. Where the harness takes
/// every address from.
pub fn running_config(config: Option<&Path>, data_dir: Option<&Path>) -> Result<NodeConfig, String> {
    use warden_core::config::LoadOptions;
    use warden_core::source::Source;
    let opts = LoadOptions { data_dir: data_dir.map(Path::to_path_buf) };
    let base = match config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let dir = std::path::absolute(dir).map_err(|e| e.to_string())?;
            NodeConfig::load(&Source { name: &path.display().to_string(), dir: &dir, text: &text }, &opts)
        }
        None => NodeConfig::embedded_default(&std::env::current_dir().map_err(|e| e.to_string())?, &opts),
    }
    .map_err(|p| format!("invalid configuration:\n{p}"))?;
    let overrides = base.data_dir.join("overrides.json");
    Ok(match std::fs::read_to_string(&overrides) {
        Ok(text) => {
            warden_core::overrides::Overrides::parse(&text)
                .map_err(|e| format!("{}: {e}", overrides.display()))?
                .apply(&base)
                .0
        }
        Err(_) => base,
    })
}

/// How long a slow service runs between two stops: long enough to answer a request or two.
const SLOW_ANSWERS_RUN: Duration = Duration::from_millis(100);

/// How long a slow service is stopped in each cycle: four times its longest L7 probe
/// deadline (at least 900 ms, at most 10 s), so about three answers in four come after the
/// deadline the node judges it by. A fixed 900 ms was within a 550 ms deadline half the
/// time, and the node rightly saw nothing wrong.
pub fn slow_answers_stop(config: &NodeConfig, spec: &ServiceSpec) -> Duration {
    let deadline = config
        .probes
        .iter()
        .filter(|p| p.target == spec.name && p.layer == warden_core::config::Layer::L7)
        .map(|p| p.timeout)
        .max()
        .unwrap_or(Duration::ZERO);
    (deadline * 4).clamp(Duration::from_millis(900), Duration::from_secs(10))
}

/// The most a node-memory fault takes: it is sized from the node's floor, and a floor far
/// under what is free would make it take the machine's memory.
const NODE_BALLOON_MAX_MIB: u64 = 8192;

/// `MemAvailable` now, in MiB.
pub fn available_mib() -> Option<u64> {
    use procfs::Current as _;
    procfs::Meminfo::current().ok()?.mem_available.map(|b| b >> 20)
}

/// `node-memory`: a balloon 1 GiB past what takes the node to its floor.
fn prepare_node_memory(config: &NodeConfig, opts: &InjectOptions) -> Result<Prepared, InjectError> {
    let refuse = |why: String| InjectError::Refused { fault: "node-memory", why };
    let floor = config.healing.node_memory_min_available_mb;
    let avail = available_mib().ok_or_else(|| refuse("/proc/meminfo says no MemAvailable".into()))?;
    if avail <= floor {
        return Err(refuse(format!("the node is under its floor already ({avail} MiB available, floor {floor} MiB)")));
    }
    let mb = avail - floor + 1024;
    if mb > NODE_BALLOON_MAX_MIB {
        return Err(refuse(format!(
            "taking the node under its floor ({floor} MiB; {avail} MiB available) needs {mb} MiB, over the {NODE_BALLOON_MAX_MIB} MiB this fault takes at most; raise healing.node_memory_min_available_mb"
        )));
    }
    Ok(Prepared {
        fault: Injection::NodeMemory,
        target: "node".into(),
        what: format!(
            "a process of no service's takes {mb} MiB for {} s ({avail} MiB available, the node's floor {floor} MiB)",
            opts.secs
        ),
        action: Action::NodeBalloon { mb, secs: opts.secs },
        checks: vec![Check::MemAvailable { mib: floor }],
    })
}

/// Checks that `fault` can be made on the node of `config` (whose data dir is
/// `data_dir`), and says how; changes nothing.
pub fn prepare(
    config: &NodeConfig,
    data_dir: &Path,
    fault: Injection,
    opts: &InjectOptions,
) -> Result<Prepared, InjectError> {
    let name = fault.name();
    if fault == Injection::NodeMemory {
        return prepare_node_memory(config, opts);
    }
    let spec = match &opts.target {
        Some(t) => {
            config.services.iter().find(|s| s.name.as_str() == t).ok_or_else(|| InjectError::NoSuchTarget(t.clone()))?
        }
        None => fault.default_target(config).ok_or(InjectError::NoTarget { fault: name })?,
    };
    let refuse = |why: String| InjectError::Refused { fault: name, why };
    let target = spec.name.to_string();
    let pids = listeners(spec);
    let running = || {
        if pids.is_empty() {
            Err(refuse(format!("nothing of `{target}` listens on its ports {:?}: is the node running?", spec.ports)))
        } else {
            Ok(pids.clone())
        }
    };
    let mut checks = own_checks(config, spec);
    let service_dir = data_dir.join("services").join(spec.name.as_str());
    if fault == Injection::SlowAnswers {
        // A slow service answers now and then: restored means prompt, every time.
        checks = checks
            .into_iter()
            .map(|c| Check::Prompt { check: Box::new(c), within: Duration::from_millis(300), times: 6 })
            .collect();
    }
    let (what, action) = match fault {
        Injection::DbFreeze | Injection::ApiHang | Injection::ModelHang => (
            format!("SIGSTOP `{target}` (pids {pids:?})"),
            Action::Signal { pids: running()?, signal: Signal::SIGSTOP },
        ),
        Injection::SlowAnswers => {
            let stop = slow_answers_stop(config, spec);
            (
                format!(
                    "stop `{target}` (pids {pids:?}) {} ms of every {} ms for {} s: most answers come after its probes' deadline",
                    stop.as_millis(),
                    (stop + SLOW_ANSWERS_RUN).as_millis(),
                    opts.secs
                ),
                Action::SlowAnswers { pids: running()?, secs: opts.secs, stop },
            )
        }
        Injection::NodeMemory => return prepare_node_memory(config, opts),
        Injection::ModelKill => (
            format!("SIGKILL `{target}` (pids {pids:?})"),
            Action::Signal { pids: running()?, signal: Signal::SIGKILL },
        ),
        Injection::DbCorrupt => {
            let data = spec.hooks.data.clone().unwrap_or_else(|| service_dir.join("data"));
            let control = data.join("global/pg_control");
            if control.is_file() {
                let pids = running()?;
                (
                    format!(
                        "flip bytes of {} under its checksum, then SIGKILL `{target}` (pids {pids:?})",
                        control.display()
                    ),
                    Action::CorruptControl { file: control, pids },
                )
            } else {
                let file =
                    largest_file(&data).ok_or_else(|| refuse(format!("no data file under {}", data.display())))?;
                (format!("flip bytes in the middle of {}", file.display()), Action::Corrupt { file })
            }
        }
        Injection::PortHold => {
            let port = *spec.ports.first().ok_or_else(|| refuse(format!("`{target}` declares no port")))?;
            let pids = running()?;
            (
                format!("SIGKILL `{target}` and hold port {port} for {} s", opts.secs),
                Action::Hold { pids, port, secs: opts.secs },
            )
        }
        Injection::SlowBoot => {
            let pids = running()?;
            let pid = *pids.first().unwrap_or(&0);
            let procs = memory_cgroup_procs(pid);
            let cpu_cgroup = cpu_cgroup(pid);
            let (false, Some(cpu_cgroup)) = (procs.is_empty(), cpu_cgroup) else {
                return Err(refuse(format!(
                    "`{target}` is not in a cgroup of its own with a CPU controller, where its next boot could be slowed"
                )));
            };
            // Past the deadline it is judged by, or it is no slow boot to warden at all.
            let secs = opts.secs.max(spec.startup_deadline.as_secs() + 1);
            (
                format!(
                    "SIGKILL `{target}` (pids {pids:?}) and starve its next boot of CPU for {secs} s (its startup deadline: {} ms)",
                    spec.startup_deadline.as_millis()
                ),
                Action::SlowBoot { pids, cgroup_procs: procs, cpu_cgroup, secs },
            )
        }
        Injection::MemoryGrowth => {
            let limit = spec.memory_limit_mb.ok_or_else(|| refuse(format!("`{target}` has no memory_limit_mb")))?;
            let pid = *running()?.first().unwrap_or(&0);
            let procs = memory_cgroup_procs(pid);
            if procs.is_empty() {
                return Err(refuse(format!("`{target}` (pid {pid}) is not in a memory cgroup of its own")));
            }
            (
                format!("a balloon in `{target}`'s cgroup grows to {} MiB (its limit: {limit} MiB)", limit + 64),
                Action::Balloon { cgroup_procs: procs, mb: limit + 64 },
            )
        }
        Injection::DiskFull => {
            let (dir, free, total) = small_volume(&service_dir).ok_or_else(|| {
                refuse(format!(
                    "`{target}`'s data is not on a small volume of its own (mount one, e.g. a tmpfs, at {} or a folder in it)",
                    service_dir.display()
                ))
            })?;
            checks.push(Check::FreeSpace { path: dir.clone(), pct: 10 });
            // Leave 1 % of it: under the node's threshold, and room for what the service
            // itself must write to recover.
            let bytes = free.saturating_sub(total / 100);
            (
                format!(
                    "fill {} ({} KiB free of {} KiB) with a stale temporary file",
                    dir.display(),
                    free >> 10,
                    total >> 10
                ),
                Action::Fill { dir, bytes },
            )
        }
        Injection::LinkDown | Injection::LinkLoss => {
            // Unnamed: the link into the network namespace a service of the node runs in.
            let interface = match &opts.interface {
                Some(i) => i.clone(),
                None => crate::link::of_node(config).map_err(refuse)?,
            };
            if !Path::new("/sys/class/net").join(&interface).exists() {
                return Err(refuse(format!("no interface `{interface}`")));
            }
            if interface == "lo" {
                return Err(refuse("taking `lo` down would cut the harness off from the node too".into()));
            }
            if fault == Injection::LinkLoss {
                if procs::find_program("nft", None).is_none() {
                    return Err(refuse("`nft` is not installed (Debian package nftables)".into()));
                }
                (
                    format!("drop every packet sent out of `{interface}` for {} s (the link stays up)", opts.secs),
                    Action::LinkLoss { interface, secs: opts.secs },
                )
            } else {
                (
                    format!("take `{interface}` down for {} s", opts.secs),
                    Action::LinkDown { interface, secs: opts.secs },
                )
            }
        }
        Injection::ConfigDelete => {
            let file = spec
                .files
                .first()
                .map(|f| f.path.clone())
                .ok_or_else(|| refuse(format!("`{target}` manages no files")))?;
            if !file.exists() {
                return Err(refuse(format!("{} is already missing", file.display())));
            }
            checks.push(Check::FileExists(file.clone()));
            (format!("delete {}", file.display()), Action::Delete { file })
        }
        Injection::BadCredentials => {
            let file =
                credentials_file(spec).ok_or_else(|| refuse(format!("`{target}` manages no credentials file")))?;
            (format!("overwrite {} with a token nobody accepts", file.display()), Action::Garble { file })
        }
    };
    Ok(Prepared { fault, target, what, action, checks })
}

/// Whoever listens on the service's ports now.
fn listeners(spec: &ServiceSpec) -> Vec<u32> {
    let mut pids: Vec<u32> = spec.ports.iter().flat_map(|p| procs::holders(*p).unwrap_or_default()).collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// The target's own L7 checks and ready check, done by the harness itself.
pub fn own_checks(config: &NodeConfig, spec: &ServiceSpec) -> Vec<Check> {
    let mut out: Vec<Check> = config
        .probes
        .iter()
        .filter(|p| p.target == spec.name)
        .filter_map(|p| match &p.check {
            ProbeCheck::Http { url, body, .. } => Some(Check::Http { url: url.to_string(), body: body.clone() }),
            ProbeCheck::Ollama { url, .. } => {
                Some(Check::Http { url: format!("{}/api/tags", url.as_str().trim_end_matches('/')), body: None })
            }
            ProbeCheck::Line { addr, send, expect, password_file } => Some(Check::Line {
                addr: *addr,
                send: send.clone(),
                expect: expect.clone(),
                password_file: password_file.clone(),
            }),
            ProbeCheck::Postgres { addr, user, dbname, password_file } => Some(Check::Postgres {
                addr: *addr,
                user: user.clone(),
                dbname: dbname.clone(),
                password_file: password_file.clone(),
            }),
            _ => None,
        })
        .collect();
    if let Some(ReadyCheck::Http { url }) = &spec.ready
        && !out.iter().any(|c| matches!(c, Check::Http { url: u, .. } if u == url.as_str()))
    {
        out.push(Check::Http { url: url.to_string(), body: None });
    }
    out
}

fn largest_file(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| Some((e.metadata().ok().filter(|m| m.is_file())?.len(), e.path())))
        .filter(|(len, p)| *len > 0 && p.file_name().is_some_and(|n| n != "LOCK" && n != "RESERVE"))
        .max()
        .map(|(_, p)| p)
}

/// The `cgroup.procs` files of the memory cgroup `pid` is in (v1 memory hierarchy, or v2).
fn memory_cgroup_procs(pid: u32) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else { return Vec::new() };
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let dir = match controllers {
            "" => PathBuf::from("/sys/fs/cgroup").join(path.trim_start_matches('/')),
            c if c.split(',').any(|x| x == "memory") => {
                PathBuf::from("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'))
            }
            _ => continue,
        };
        // Only a cgroup of the service's own (warden's `warden.ID/SERVICE`), never a shared one.
        if path.contains("warden.") && dir.join("cgroup.procs").exists() {
            out.push(dir.join("cgroup.procs"));
        }
    }
    out
}

/// The CPU cgroup `pid` is in: its folder in the v1 `cpu` hierarchy, or its v2 cgroup when
/// that has a `cpu.max`.
fn cpu_cgroup(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let path = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "cpu") {
            let dir = PathBuf::from("/sys/fs/cgroup").join(controllers).join(path);
            if dir.join("cpu.cfs_quota_us").exists() {
                return Some(dir);
            }
        } else if controllers.is_empty() {
            let dir = PathBuf::from("/sys/fs/cgroup").join(path);
            if dir.join("cpu.max").exists() && path.contains("warden.") {
                v2 = Some(dir);
            }
        }
    }
    v2
}

/// The service's folder, or a folder in it, on a filesystem of its own under 1 GiB: (where,
/// free bytes, total bytes).
fn small_volume(service_dir: &Path) -> Option<(PathBuf, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let parent_dev = std::fs::metadata(service_dir.parent()?).ok()?.dev();
    let mut candidates = vec![service_dir.to_path_buf()];
    if let Ok(d) = std::fs::read_dir(service_dir) {
        candidates.extend(d.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    candidates.into_iter().find_map(|dir| {
        let dev = std::fs::metadata(&dir).ok()?.dev();
        if dev == parent_dev {
            return None;
        }
        let st = nix::sys::statvfs::statvfs(&dir).ok()?;
        let frag = st.fragment_size() as u64;
        let (free, total) = (st.blocks_available() as u64 * frag, st.blocks() as u64 * frag);
        (total > 0 && total < (1 << 30)).then_some((dir, free, total))
    })
}

/// What an injection did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Injected {
    pub fault: &'static str,
    pub mode: FailureMode,
    pub target: String,
    pub what: String,
    /// Wall clock of the change.
    pub at_unix_ms: u64,
    /// A helper process the fault left running (a stranger, a balloon, a freezer).
    pub helper_pid: Option<u32>,
}

impl Prepared {
    /// Makes the fault. Long faults (a hold, a boot freeze, a balloon) run in a helper
    /// process of their own (`warden chaos helper ...`), so the fault outlives this call.
    pub fn inject(self) -> Result<(Injected, Vec<Check>), InjectError> {
        let fail = |why: String| InjectError::Failed { fault: self.fault.name(), target: self.target.clone(), why };
        let at_unix_ms = warden_core::time::now_unix_ms();
        let mut checks = self.checks.clone();
        let helper_pid = match &self.action {
            Action::Signal { pids, signal } => {
                for &p in pids {
                    procs::signal(p, *signal).map_err(|e| fail(e.to_string()))?;
                }
                None
            }
            Action::Corrupt { file } => {
                corrupt(file).map_err(|e| fail(format!("{}: {e}", file.display())))?;
                None
            }
            Action::CorruptControl { file, pids } => {
                corrupt_at(file, 16, 32).map_err(|e| fail(format!("{}: {e}", file.display())))?;
                for &p in pids {
                    procs::signal(p, Signal::SIGKILL).map_err(|e| fail(e.to_string()))?;
                }
                None
            }
            Action::Hold { pids, port, secs } => {
                let pid =
                    helper(&["hold", "--port", &port.to_string(), "--secs", &secs.to_string(), "--kill", &join(pids)])
                        .map_err(fail)?;
                checks.push(Check::NotHolding { port: *port, pid });
                Some(pid)
            }
            Action::SlowBoot { pids, cgroup_procs, cpu_cgroup, secs } => {
                let files: Vec<String> = cgroup_procs.iter().map(|p| p.display().to_string()).collect();
                let cpu = cpu_cgroup.display().to_string();
                let pid = helper(&[
                    "slow-boot",
                    "--secs",
                    &secs.to_string(),
                    "--kill",
                    &join(pids),
                    "--cgroup-procs",
                    &files.join(","),
                    "--cpu-cgroup",
                    &cpu,
                ])
                .map_err(fail)?;
                Some(pid)
            }
            Action::Balloon { cgroup_procs, mb } => {
                let files: Vec<String> = cgroup_procs.iter().map(|p| p.display().to_string()).collect();
                let pid =
                    helper(&["balloon", "--mb", &mb.to_string(), "--cgroup-procs", &files.join(",")]).map_err(fail)?;
                checks.push(Check::Gone(pid));
                Some(pid)
            }
            Action::NodeBalloon { mb, secs } => {
                let pid =
                    helper(&["node-memory", "--mb", &mb.to_string(), "--secs", &secs.to_string()]).map_err(fail)?;
                Some(pid)
            }
            Action::Fill { dir, bytes } => {
                fill(dir, *bytes).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
                None
            }
            Action::LinkDown { interface, secs } => {
                // The helper brings it back up after its time, whoever else does not.
                Some(helper(&["link-down", "--interface", interface, "--secs", &secs.to_string()]).map_err(fail)?)
            }
            Action::LinkLoss { interface, secs } => {
                // The helper removes its rule after its time, or when asked to stop.
                Some(helper(&["link-loss", "--interface", interface, "--secs", &secs.to_string()]).map_err(fail)?)
            }
            Action::SlowAnswers { pids, secs, stop } => {
                let stop_ms = stop.as_millis().to_string();
                let pid = helper(&[
                    "slow-answers",
                    "--pids",
                    &join(pids),
                    "--secs",
                    &secs.to_string(),
                    "--stop-ms",
                    &stop_ms,
                ])
                .map_err(fail)?;
                Some(pid)
            }
            Action::Delete { file } => {
                std::fs::remove_file(file).map_err(|e| fail(format!("{}: {e}", file.display())))?;
                None
            }
            Action::Garble { file } => {
                std::fs::write(file, format!("wrong-token-{at_unix_ms}\n"))
                    .map_err(|e| fail(format!("{}: {e}", file.display())))?;
                None
            }
        };
        let injected = Injected {
            fault: self.fault.name(),
            mode: self.fault.mode(),
            target: self.target,
            what: self.what,
            at_unix_ms,
            helper_pid,
        };
        Ok((injected, checks))
    }
}

fn join(pids: &[u32]) -> String {
    pids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// Starts `warden chaos helper ARGS` in a session of its own and waits (bounded) for its
/// first line, `ready`, which it prints once the fault is in place; its pid.
fn helper(args: &[&str]) -> Result<u32, String> {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    let exe = procs::own_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let mut child = Command::new(exe)
        .args(["chaos", "helper"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the helper: {e}"))?;
    let pid = child.id();
    let stdout = child.stdout.take().ok_or("the helper has no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(line) if line.trim() == "ready" => {
            // Reaped by whoever outlives it; it runs on its own.
            std::mem::forget(child);
            Ok(pid)
        }
        Ok(line) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("the helper did not get ready: {}", line.trim()))
        }
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            Err("the helper did not get ready within 10 s".into())
        }
    }
}

/// Flips 16 bytes in the middle of `file` (in place: the file keeps its inode and size):
/// each becomes `#` (`%` where it was one), which breaks a record's checksum.
fn corrupt(file: &Path) -> std::io::Result<()> {
    let len = std::fs::metadata(file)?.len();
    rewrite_bytes(file, len / 2, 16, |b| if b == b'#' { b'%' } else { b'#' })
}

/// Inverts `len` bytes of `file` at `at` (in place).
fn corrupt_at(file: &Path, at: u64, len: usize) -> std::io::Result<()> {
    rewrite_bytes(file, at, len, |b| !b)
}

/// Rewrites `len` bytes of `file` at `at` through `each`, and syncs it.
fn rewrite_bytes(file: &Path, at: u64, len: usize, each: impl Fn(u8) -> u8) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(file)?;
    let mut buf = vec![0u8; len];
    f.seek(SeekFrom::Start(at))?;
    let n = f.read(&mut buf)?;
    for b in &mut buf[..n] {
        *b = each(*b);
    }
    f.seek(SeekFrom::Start(at))?;
    f.write_all(&buf[..n])?;
    f.sync_all()
}

/// Writes `bytes` of filler into `dir/tmp/` as a file last touched two days ago (a
/// leftover of a job that crashed), stopping quietly when the volume is full.
fn fill(dir: &Path, bytes: u64) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    let path = tmp.join(format!("leftover-{}.part", std::process::id()));
    let mut f = std::fs::File::create(&path)?;
    let chunk = vec![0x5au8; 64 * 1024];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        match f.write_all(&chunk[..n]) {
            Ok(()) => left -= n as u64,
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(e) => return Err(e),
        }
    }
    let _ = f.sync_all();
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 86_400);
    f.set_modified(two_days_ago)?;
    Ok(())
}

/// Whether every check passes now.
pub fn restored(checks: &[Check], timeout: Duration) -> Result<(), String> {
    let client = reqwest::blocking::Client::builder().timeout(timeout).no_proxy().build().map_err(|e| e.to_string())?;
    all_pass(&client, checks, timeout)
}

fn all_pass(client: &reqwest::blocking::Client, checks: &[Check], timeout: Duration) -> Result<(), String> {
    for c in checks {
        check_once(client, c, timeout).map_err(|e| format!("{c}: {e}"))?;
    }
    Ok(())
}

/// Polls until every check passes (the time since `since`) or `limit` passes (the checks
/// that still fail). Checks that pass at the first look mean the fault never took (a link
/// put back by someone else, a service that was not where the fault went): that is an
/// error, not a restore in no time.
pub fn wait_restored(checks: &[Check], since: Instant, limit: Duration) -> Result<Duration, String> {
    let mut last = String::new();
    let timeout = Duration::from_millis(500);
    // One client for the whole wait (a client per poll would cost more than the checks).
    let client = reqwest::blocking::Client::builder().timeout(timeout).no_proxy().build().map_err(|e| e.to_string())?;
    let mut first = true;
    while since.elapsed() < limit {
        // Restored when the checks that passed began (a prompt check takes a while).
        let at = since.elapsed();
        match all_pass(&client, checks, timeout) {
            Ok(()) if first => return Err(NOT_MADE.into()),
            Ok(()) => return Ok(at),
            Err(e) => last = e,
        }
        first = false;
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("not restored within {} s: {last}", limit.as_secs()))
}

/// Why a fault counts as not made: the harness's checks never saw it.
pub const NOT_MADE: &str = "not made: its checks passed at the first look after it was put in place";

/// Ends a fault's helper, if it still runs: SIGTERM, on which it puts back what it changed
/// (a link up, a port let go, a process let run) and leaves; waited for (bounded) and
/// reaped, so the next fault never meets the last one's helper, nor its late undo.
pub fn end_helper(pid: u32, limit: Duration) -> Result<(), String> {
    if !procs::is_alive(pid) {
        procs::reap(pid);
        return Ok(());
    }
    let _ = procs::signal(pid, Signal::SIGTERM);
    let start = Instant::now();
    while procs::is_alive(pid) {
        if start.elapsed() > limit {
            let _ = procs::signal(pid, Signal::SIGKILL);
            procs::reap(pid);
            return Err(format!("the helper (pid {pid}) did not leave within {} s of SIGTERM", limit.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    procs::reap(pid);
    Ok(())
}

/// One check, once.
pub fn check_once(client: &reqwest::blocking::Client, c: &Check, timeout: Duration) -> Result<(), String> {
    match c {
        Check::MemAvailable { mib } => match available_mib() {
            Some(a) if a >= *mib => Ok(()),
            Some(a) => Err(format!("{a} MiB available, under {mib} MiB")),
            None => Err("/proc/meminfo says no MemAvailable".into()),
        },
        Check::Prompt { check, within, times } => {
            for i in 0..*times {
                let start = Instant::now();
                check_once(client, check, timeout)?;
                if start.elapsed() > *within {
                    return Err(format!("{check} answered after {} ms", start.elapsed().as_millis()));
                }
                if i + 1 < *times {
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
            Ok(())
        }
        Check::Http { url, body } => {
            let resp = client.get(url).send().map_err(|e| e.to_string())?;
            let status = resp.status();
            let text = resp.text().unwrap_or_default();
            if !status.is_success() {
                return Err(format!("answered {status}"));
            }
            match body {
                Some(want) if !text.contains(want.as_str()) => Err(format!("body lacks {want:?}")),
                _ => Ok(()),
            }
        }
        Check::Line { addr, send, expect, password_file } => {
            line(*addr, send, expect, password_file.as_deref(), timeout)
        }
        Check::Postgres { addr, user, dbname, password_file } => {
            postgres(*addr, user, dbname, password_file.as_deref(), timeout)
        }
        Check::FileExists(p) => {
            if p.exists() {
                Ok(())
            } else {
                Err("missing".into())
            }
        }
        Check::FreeSpace { path, pct } => {
            let st = nix::sys::statvfs::statvfs(path).map_err(|e| e.to_string())?;
            let (free, total) = (st.blocks_available() as u64, st.blocks() as u64);
            if total > 0 && free * 100 >= total * u64::from(*pct) {
                Ok(())
            } else {
                Err(format!("{free} of {total} blocks free"))
            }
        }
        Check::Gone(pid) => {
            // Reaped by whoever is its parent now; a zombie counts as gone.
            if procs::is_alive(*pid) { Err("still running".into()) } else { Ok(()) }
        }
        Check::NotHolding { port, pid } => {
            if procs::holders(*port).map_err(|e| e.to_string())?.contains(pid) {
                Err("still holds it".into())
            } else {
                Ok(())
            }
        }
    }
}

fn line(
    addr: SocketAddr,
    send: &str,
    expect: &str,
    password_file: Option<&Path>,
    timeout: Duration,
) -> Result<(), String> {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut writer = stream;
    let mut answer = String::new();
    if let Some(file) = password_file {
        let token = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        writer.write_all(format!("AUTH {}\n", token.trim()).as_bytes()).map_err(|e| e.to_string())?;
        reader.read_line(&mut answer).map_err(|e| e.to_string())?;
        // The demo db answers `OK`, Redis `+OK`.
        if !answer.starts_with("OK") && !answer.starts_with("+OK") {
            return Err(format!("login refused: {}", answer.trim()));
        }
        answer.clear();
    }
    writer.write_all(format!("{send}\n").as_bytes()).map_err(|e| e.to_string())?;
    reader.read_line(&mut answer).map_err(|e| e.to_string())?;
    if answer.starts_with(expect) { Ok(()) } else { Err(format!("answered {:?}", answer.trim())) }
}

/// `SELECT 1` on PostgreSQL, within `timeout` (on a thread of its own with its own small
/// runtime: the harness is blocking code).
fn postgres(
    addr: SocketAddr,
    user: &str,
    dbname: &str,
    password_file: Option<&Path>,
    timeout: Duration,
) -> Result<(), String> {
    let mut config = tokio_postgres::Config::new();
    config.host(addr.ip().to_string()).port(addr.port()).user(user).dbname(dbname).connect_timeout(timeout);
    if let Some(file) = password_file {
        let password = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        config.password(password.trim_end_matches(['\n', '\r']));
    }
    let run = move || -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let session = async {
                let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
                let driver = tokio::spawn(connection);
                let answer = client.simple_query("SELECT 1").await.map_err(|e| e.to_string()).map(|_| ());
                driver.abort();
                answer
            };
            tokio::time::timeout(timeout, session).await.map_err(|_| format!("no answer within {timeout:?}"))?
        })
    };
    std::thread::spawn(run).join().map_err(|_| "the check's thread panicked".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::config::{LoadOptions, NodeConfig};

    #[test]
    fn test_slow_answers_stop_a_service_past_its_probes_deadline() {
        let mut config = NodeConfig::embedded_default(Path::new("."), &LoadOptions::default()).expect("default node");
        let api = config.services.iter().find(|s| s.name.as_str() == "api").expect("api").clone();
        let l7: Vec<usize> = (0..config.probes.len())
            .filter(|&i| {
                config.probes[i].target == api.name && config.probes[i].layer == warden_core::config::Layer::L7
            })
            .collect();
        assert!(!l7.is_empty(), "the default node probes its api at L7");
        for &i in &l7 {
            config.probes[i].timeout = Duration::from_millis(550);
        }
        assert_eq!(slow_answers_stop(&config, &api), Duration::from_millis(2200), "four deadlines");
        config.probes[l7[0]].timeout = Duration::from_millis(50);
        for &i in &l7[1..] {
            config.probes[i].timeout = Duration::from_millis(50);
        }
        assert_eq!(slow_answers_stop(&config, &api), Duration::from_millis(900), "never shorter than 900 ms");
        config.probes[l7[0]].timeout = Duration::from_secs(30);
        assert_eq!(slow_answers_stop(&config, &api), Duration::from_secs(10), "at most 10 s");
    }
}
