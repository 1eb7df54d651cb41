//! `warden chaos modes`: MTTR per failure mode on the default node (or the node of a config
//! given with `--config`, such as the reference node of real services), by the harness's
//! clock.
//!
//! The node runs in a temporary directory; every injection of
//! [`crate::inject`] is made `--runs` times, one after the other, and each sample is the
//! time from the fault being made to the harness's own checks passing again (not warden's
//! word). Between runs the node is let settle (healthy, no incident open) and what a
//! repair left in place that would hide the next fault is undone (a longer startup
//! deadline is rolled back through the API).
//!
//! Two knobs differ from the default node, both so that ten faults in a row measure the
//! repair and not the node's brakes: governance rate limits are raised (the default allows
//! a few restarts per ten minutes) and the api's startup deadline is 2 s (a slow boot
//! takes 3 s rather than 30). `disk-full` runs when a tmpfs can be mounted under the db's
//! folder (root). `link-down` needs the db across a link: it runs last, on a node of the
//! default node's shape whose db is in a network namespace behind a veth pair, with a
//! standby db on loopback ([`crate::link`]; root and `ip`); between two cuts the link comes
//! back up and the failover is rolled back.
//!
//! With `--config`, the config's folder is copied and run with the harness's limits (no
//! repair budget, raised rate limits; its own deadlines kept), a tmpfs is mounted under
//! the database's folder for `disk-full`, and faults that fit none of its services are
//! reported as skipped. Its report has a section of its own in the benchmarks file.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::BenchError;
use crate::inject::{InjectOptions, Injection, prepare, wait_restored};
use crate::report::Machine;
use crate::stats::{Summary, summarize};
use crate::{procs, services};

pub const START_MARKER: &str = "<!-- bench:modes:start -->";
pub const END_MARKER: &str = "<!-- bench:modes:end -->";

/// The injections measured by default: one per mode that the default node can have.
pub const DEFAULT_INJECTIONS: [Injection; 11] = [
    Injection::DbFreeze,
    Injection::PortHold,
    Injection::SlowBoot,
    Injection::MemoryGrowth,
    Injection::DiskFull,
    Injection::LinkDown,
    Injection::ApiHang,
    Injection::ConfigDelete,
    Injection::BadCredentials,
    Injection::ModelHang,
    Injection::DbCorrupt,
];

#[derive(Debug, Clone)]
pub struct ModesConfig {
    pub runs: u32,
    pub injections: Vec<Injection>,
    /// A node config to run the faults against instead of the default node (with the files
    /// beside it, such as the reference node's app).
    pub config: Option<PathBuf>,
    /// Where the report goes; whether scratch files are kept.
    pub outputs: crate::report::Outputs,
}

impl ModesConfig {
    pub fn command(&self) -> String {
        let names: Vec<&str> = self.injections.iter().map(|i| i.name()).collect();
        let on = self.config.as_ref().map(|c| format!(" --config {}", c.display())).unwrap_or_default();
        let cmd = format!("warden chaos modes{on} --runs {} --faults {}", self.runs, names.join(","));
        crate::report::with_outputs(cmd, &self.outputs)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ModeResult {
    pub fault: &'static str,
    pub mode: &'static str,
    pub summary: Summary,
    /// Why runs failed (or why the fault was skipped).
    pub notes: Vec<String>,
    /// The playbooks that resolved its incidents, with counts.
    pub playbooks: Vec<(String, u32)>,
    /// Its mode's incidents as the node diagnosed them: (cause, first playbook tried), with
    /// counts.
    pub diagnosed: Vec<((String, String), u32)>,
    /// What its repairs did that made things worse, every run's ([`crate::harm`]).
    pub harmful: Vec<crate::harm::Harm>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModesReport {
    pub kind: &'static str,
    /// The node's name (`demo` for the default node).
    pub node: String,
    /// Snapshot space at the end, against the data it copies (a node with snapshots).
    pub snapshots: Option<SnapshotUse>,
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub runs: u32,
    pub results: Vec<ModeResult>,
}

/// What the node's snapshots took at the end of the run, beside the data they copy.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotUse {
    pub service: String,
    pub data_bytes: u64,
    pub snapshot_bytes: u64,
    pub snapshots: usize,
    /// Faults made in the whole run.
    pub faults: u32,
}

/// The node under test: its folder, its config and data dir, its API, and what says it is
/// healthy.
pub(crate) struct Target {
    pub dir: PathBuf,
    /// Its config file (`None`: the embedded default node, relative to `dir`).
    pub config_file: Option<PathBuf>,
    pub data: PathBuf,
    pub base: String,
    /// Checks that pass when every service is healthy.
    pub health: Vec<crate::inject::Check>,
}

/// The node the modes run against: the default node with the two knobs turned.
fn node_yaml() -> String {
    let base = warden_core::config::DEFAULT_NODE_YAML
        .replace("/health\" }\n    startup_deadline_ms: 30000", "/health\" }\n    startup_deadline_ms: 2000");
    format!("{}\ngovernance_policies: policy.yaml\n", unbudgeted(&base))
}

/// The repair limits a harness turns off, under the config's `healing:` section: it makes
/// one fault after another on purpose, so the per-service repair budget would escalate
/// the tenth hang of the api to a person, and it acts on the node through the API between
/// faults, which would hold the next repair as an operator's.
pub const HARNESS_HEALING: &str = "  max_repairs_per_hour: 0\n  operator_hold_ms: 0\n";

/// `yaml` (a node config with a top-level `healing:` section, or without one) with
/// [`HARNESS_HEALING`].
pub fn unbudgeted(yaml: &str) -> String {
    with_healing_lines(yaml, HARNESS_HEALING)
}

/// `yaml` with `lines` (keys indented by two spaces) at the top of its `healing:` section,
/// made when there is none.
fn with_healing_lines(yaml: &str, lines: &str) -> String {
    match yaml.find("\nhealing:\n") {
        Some(at) => {
            let cut = at + "\nhealing:\n".len();
            format!("{}{lines}{}", &yaml[..cut], &yaml[cut..])
        }
        None => format!("{}\nhealing:\n{lines}", yaml.trim_end()),
    }
}

/// The default policies with every rate limit raised out of the way, for harnesses that
/// make many faults in a row.
pub fn raised_limits_policy() -> String {
    let mut out = String::new();
    for line in warden_core::policy::DEFAULT_POLICIES_YAML.lines() {
        match line.find("rate_limit:") {
            Some(at) => out.push_str(&format!("{}rate_limit: {{ max: 100000, per_ms: 60000 }}", &line[..at])),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// warden, killed with its process group when dropped.
pub(crate) struct Warden(Child);

impl Warden {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Warden {
    fn drop(&mut self) {
        NODE_PGID.store(0, std::sync::atomic::Ordering::SeqCst);
        let pgid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// A tmpfs the harness mounted, unmounted when dropped (and by [`remove_leftover_mounts`]
/// when the harness is stopped by a signal, where no destructor runs).
struct Unmount(PathBuf);

static MOUNTED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

impl Unmount {
    fn new(at: PathBuf) -> Self {
        MOUNTED.lock().unwrap_or_else(|p| p.into_inner()).push(at.clone());
        Self(at)
    }
}

impl Drop for Unmount {
    fn drop(&mut self) {
        MOUNTED.lock().unwrap_or_else(|p| p.into_inner()).retain(|m| m != &self.0);
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// Unmounts what the harness mounted and has not unmounted yet (stopped by a signal).
pub fn remove_leftover_mounts() {
    let left = std::mem::take(&mut *MOUNTED.lock().unwrap_or_else(|p| p.into_inner()));
    for at in left {
        let _ = Command::new("umount").arg("-l").arg(&at).output();
    }
}

pub(crate) fn get(client: &reqwest::blocking::Client, url: &str) -> Option<serde_json::Value> {
    client.get(url).send().ok()?.json().ok()
}

/// How long the node must stay healthy and quiet before the next fault: longer than a
/// detector's tick, so a new fault is not taken for the last one still being there.
const QUIET_FOR: Duration = Duration::from_millis(1500);

/// Whether an incident (as the API lists it) has not ended: open, awaiting an approval, or
/// mitigated.
pub fn unfinished(incident: &serde_json::Value) -> bool {
    matches!(incident["status"].as_str(), Some("open" | "awaiting_approval" | "mitigated"))
}

/// Healthy, and no incident open, for [`QUIET_FOR`]: the node is ready for the next fault.
pub(crate) fn settle(client: &reqwest::blocking::Client, node: &Target, limit: Duration) -> bool {
    let start = Instant::now();
    let recent = format!("{}/api/incidents?limit=50", node.base);
    let mut quiet_since: Option<Instant> = None;
    while start.elapsed() < limit {
        let healthy = node.health.iter().all(|c| crate::inject::check_once(client, c, Duration::from_secs(1)).is_ok());
        let quiet = get(client, &recent)
            .is_some_and(|v| v["incidents"].as_array().is_some_and(|all| !all.iter().any(unfinished)));
        if healthy && quiet {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= QUIET_FOR {
                return true;
            }
        } else {
            quiet_since = None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The node's process group, for the signal path (where no destructor runs).
pub static NODE_PGID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Stops the node the harness started, if any (Ctrl-C or SIGTERM to the harness): SIGTERM,
/// so warden stops its services, then SIGKILL if it is still there after 15 s.
pub fn kill_node() {
    let pgid = NODE_PGID.swap(0, std::sync::atomic::Ordering::SeqCst);
    if pgid <= 0 {
        return;
    }
    let pid = nix::unistd::Pid::from_raw(pgid);
    let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) && procs::is_alive(pgid as u32) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
}

pub fn run(cfg: &ModesConfig) -> Result<ModesReport, BenchError> {
    let exe = std::env::current_exe().map_err(BenchError::io("finding this executable"))?;
    if let Some(f) = cfg.injections.iter().find(|i| i.node_wide()) {
        return Err(BenchError::NodeConfig(format!(
            "{} is told to a person, not repaired: it has no time to repair; make it in `warden chaos soak --kinds {}`",
            f.name(),
            f.name()
        )));
    }
    if let Some(config) = &cfg.config {
        return config_node(cfg, config, &exe);
    }
    // The default node has no service behind a link: `link-loss` is skipped there and said so.
    let on_default: Vec<Injection> = cfg.injections.iter().copied().filter(|i| *i != Injection::LinkDown).collect();
    let mut results = if on_default.is_empty() { Vec::new() } else { default_node_phase(cfg, &on_default, &exe)? };
    if cfg.injections.contains(&Injection::LinkDown) {
        results.push(link_phase(cfg, &exe)?);
    }
    finish(cfg, "demo".into(), results, None)
}

fn finish(
    cfg: &ModesConfig,
    node: String,
    mut results: Vec<ModeResult>,
    snapshots: Option<SnapshotUse>,
) -> Result<ModesReport, BenchError> {
    let order = |r: &ModeResult| cfg.injections.iter().position(|i| i.name() == r.fault);
    results.sort_by_key(order);
    let report = ModesReport {
        kind: "modes",
        node,
        snapshots,
        date: crate::report::today_utc(),
        command: cfg.command(),
        machine: Machine::detect(),
        runs: cfg.runs,
        results,
    };
    let (start, end) = report.markers();
    cfg.outputs.save(&report, &report.markdown(), (&start, &end))?;
    Ok(report)
}

/// Starts `warden run --config node.yaml --data-dir data` in `dir` and waits until it has
/// settled; stopped when the guard is dropped.
fn start_node(
    node: &Target,
    exe: &Path,
    client: &reqwest::blocking::Client,
    limit: Duration,
) -> Result<Warden, BenchError> {
    let dir = &node.dir;
    let log = std::fs::File::create(dir.join("warden.log")).map_err(BenchError::io("creating warden.log"))?;
    let child = {
        use std::os::unix::process::CommandExt;
        Command::new(exe)
            .args(["run", "--config", "node.yaml", "--data-dir", "data"])
            .current_dir(dir)
            .env("WARDEN_RUNTIME_DIR", dir.join("run"))
            // As the shipped systemd unit runs it (docs/systemd/warden.service): glibc's
            // default arenas keep freed memory and blur what the soak measures.
            .env("MALLOC_ARENA_MAX", std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "2".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|source| BenchError::Spawn { what: "warden".into(), source })?
    };
    NODE_PGID.store(child.id() as i32, std::sync::atomic::Ordering::SeqCst);
    let warden = Warden(child);
    if !settle(client, node, limit) {
        return Err(BenchError::NotHealthy {
            what: "the node".into(),
            secs: limit.as_secs(),
            log: procs::log_tail(&dir.join("warden.log"), 30),
        });
    }
    Ok(warden)
}

/// `runs` injections of `fault` against the node, each followed by [`undo`] and `between`
/// (what else must be put back).
fn series(
    cfg: &ModesConfig,
    client: &reqwest::blocking::Client,
    node: &Target,
    fault: Injection,
    opts: &InjectOptions,
    mut notes: Vec<String>,
    between: &dyn Fn(),
) -> Result<ModeResult, BenchError> {
    let data = node.data.clone();
    let token = std::fs::read_to_string(data.join("admin.token")).map_err(BenchError::io("reading the admin token"))?;
    let token = token.trim().to_string();
    let base = node.base.as_str();
    let mut samples = Vec::new();
    let mut failures = 0usize;
    let mut harmful = Vec::new();
    // Only this fault's incidents: an earlier fault of the same mode (link-down before
    // link-loss) left its own.
    let began = warden_core::time::now_unix_ms();
    if notes.iter().all(|n| !n.starts_with("skipped")) {
        let config =
            crate::inject::running_config(node.config_file.as_deref(), Some(&data)).map_err(BenchError::NodeConfig)?;
        for _ in 0..cfg.runs {
            if !settle(client, node, Duration::from_secs(60)) {
                notes.push("the node did not settle before a run".into());
            }
            // Every service watched from just before the fault until the node settled.
            let from = warden_core::time::now_unix_ms();
            let watch = crate::harm::Watch::start(&config);
            match one(&data, node.config_file.as_deref(), fault, opts) {
                Ok(d) => samples.push(d),
                Err(e) => {
                    failures += 1;
                    if notes.len() < 5 {
                        notes.push(e);
                    }
                }
            }
            between();
            if !settle(client, node, Duration::from_secs(60)) {
                notes.push("the node did not settle after a run".into());
            }
            harmful.extend(crate::harm::judge(client, base, &watch, from, warden_core::time::now_unix_ms()));
            drop(watch);
            undo(client, base, &token, fault);
        }
    }
    Ok(ModeResult {
        fault: fault.name(),
        mode: fault.mode().as_str(),
        summary: summarize(&samples, failures)?,
        notes,
        playbooks: resolved_by(client, base, fault, began),
        diagnosed: diagnosed(client, base, fault, began),
        harmful,
    })
}

/// A tmpfs of `size` at `at`, for `disk-full`; a note on the fault when none can be made.
fn small_volume(at: &Path, size: &str) -> Result<Unmount, String> {
    std::fs::create_dir_all(at).map_err(|e| format!("skipped: creating {}: {e}", at.display()))?;
    let out =
        Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"]).arg(at).output();
    match out {
        Ok(o) if o.status.success() => Ok(Unmount::new(at.to_path_buf())),
        Ok(o) => Err(format!("skipped: cannot mount a tmpfs: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("skipped: mount: {e}")),
    }
}

/// A snapshot of the database through its own playbook, for `db-corrupt` to be restored from.
fn back_up(client: &reqwest::blocking::Client, node: &Target, db: &str) {
    let Ok(token) = std::fs::read_to_string(node.data.join("admin.token")) else { return };
    let _ = client
        .post(format!("{}/api/guardian/playbooks/snapshot_database/run", node.base))
        .bearer_auth(token.trim())
        .timeout(Duration::from_secs(60))
        .json(&serde_json::json!({"target": db, "reason": "the bench's backup"}))
        .send();
    settle(client, node, Duration::from_secs(60));
}

/// A node the harness started in a scratch directory, with what it made for it; all of it
/// is stopped, unmounted and deleted when dropped (fields drop in order: the node first).
pub(crate) struct Launched {
    /// The node's process, when the harness started it (`None`: attached to a node that
    /// runs on its own, which the harness leaves running).
    pub _warden: Option<Warden>,
    /// warden's pid.
    pub pid: u32,
    pub node: Target,
    pub client: reqwest::blocking::Client,
    /// The node's config as it runs.
    pub config: warden_core::config::NodeConfig,
    /// Why a fault cannot be made on it (skipped with this note).
    pub notes_for: Vec<(Injection, String)>,
    /// The service `db-corrupt` goes to, if any.
    pub db: Option<String>,
    _unmount: Option<Unmount>,
    _tmp: Option<tempfile::TempDir>,
}

impl Launched {
    /// The notes on `fault`.
    pub fn notes(&self, fault: Injection) -> Vec<String> {
        self.notes_for.iter().filter(|(f, _)| *f == fault).map(|(_, n)| n.clone()).collect()
    }
}

/// The default node (with the two knobs turned), or the node of `config` (its folder
/// copied, the harness's limits), started in a scratch directory and settled; a tmpfs
/// under the database's folder when `disk-full` is among `injections`, and a snapshot of
/// the database when `db-corrupt` is. `link-down` is left to the link phase.
/// The node of `config` (or the default node) in a scratch directory, with the harness's
/// limits; its alerts also go to `alerts_to`, a webhook of the harness, when given.
pub(crate) fn launch(
    config: Option<&Path>,
    keep_tmp: bool,
    injections: &[Injection],
    exe: &Path,
    alerts_to: Option<&str>,
) -> Result<Launched, BenchError> {
    let tmp = procs::temp_dir(if config.is_some() { "warden-modes-config" } else { "warden-modes" }, keep_tmp)?;
    let dir = tmp.path().to_path_buf();
    // Services that run as their own users (postgres, redis) reach their data through it.
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(BenchError::io("opening the scratch directory"))?;
    let yaml = match config {
        Some(c) => harness_yaml(&copy_node(c, &dir)?),
        None => node_yaml(),
    };
    // A node-wide memory fault needs a floor it can cross without taking the machine's
    // memory: 1 GiB under what is available now (the fault then takes 2 GiB).
    let mut floor_note = None;
    let yaml = if injections.contains(&Injection::NodeMemory) {
        match crate::inject::available_mib() {
            Some(avail) if avail >= 4096 => with_healing_lines(
                &yaml,
                &format!("  node_memory_min_available_pct: 99\n  node_memory_min_available_mb: {}\n", avail - 1024),
            ),
            avail => {
                floor_note = Some(format!(
                    "skipped: {} MiB available; node-memory needs 4096 MiB to take 2 GiB safely",
                    avail.unwrap_or(0)
                ));
                yaml
            }
        }
    } else {
        yaml
    };
    let yaml = match alerts_to {
        Some(url) => crate::alert_sink::with_webhook(&yaml, url)
            .map_err(|e| BenchError::NodeConfig(format!("adding the harness's alert receiver: {e}")))?,
        None => yaml,
    };
    std::fs::write(dir.join("node.yaml"), yaml).map_err(BenchError::io("writing node.yaml"))?;
    std::fs::write(dir.join("policy.yaml"), raised_limits_policy()).map_err(BenchError::io("writing policy.yaml"))?;
    let data = dir.join("data");
    let parsed =
        crate::inject::running_config(Some(&dir.join("node.yaml")), Some(&data)).map_err(BenchError::NodeConfig)?;
    let mut ports: Vec<u16> = parsed.services.iter().flat_map(|s| s.ports.iter().copied()).collect();
    ports.push(parsed.http_listen.port());
    procs::ensure_ports_free(&ports)?;
    let mut notes_for: Vec<(Injection, String)> = Vec::new();
    if let Some(note) = floor_note {
        notes_for.push((Injection::NodeMemory, note));
    }
    let applies = |fault: Injection| fault.default_target(&parsed).map(|s| s.name.to_string());
    let mut unmount = None;
    if injections.contains(&Injection::DiskFull)
        && let Some(db) = applies(Injection::DiskFull)
    {
        let size = if config.is_some() { "256m" } else { "16m" };
        match small_volume(&data.join("services").join(&db), size) {
            Ok(u) => unmount = Some(u),
            Err(note) => notes_for.push((Injection::DiskFull, note)),
        }
    }
    for &fault in injections {
        if fault.on_link() {
            if let Err(why) = crate::link::of_node(&parsed) {
                notes_for.push((fault, format!("skipped: {why}")));
            }
        } else if applies(fault).is_none() {
            notes_for.push((fault, format!("skipped: no service of this node fits {}", fault.name())));
        }
    }
    let health: Vec<crate::inject::Check> = if config.is_some() {
        parsed.services.iter().flat_map(|s| crate::inject::own_checks(&parsed, s)).collect()
    } else {
        vec![crate::inject::Check::Http { url: services::api_health_url(), body: None }]
    };
    let node = Target {
        dir: dir.clone(),
        config_file: Some(dir.join("node.yaml")),
        data: data.clone(),
        base: format!("http://{}", parsed.http_listen),
        health,
    };
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build()?;
    // A first start may build data dirs (initdb).
    let warden = start_node(&node, exe, &client, Duration::from_secs(180))?;
    let db = applies(Injection::DbCorrupt);
    if injections.contains(&Injection::DbCorrupt)
        && let Some(db) = &db
    {
        if config.is_none() {
            // Data in the demo db, so its snapshot holds some.
            let _ =
                client.put(format!("http://127.0.0.1:{}/api/items/greeting", services::API_PORT)).body("hello").send();
        }
        back_up(&client, &node, db);
    }
    let pid = warden.pid();
    Ok(Launched {
        _warden: Some(warden),
        pid,
        node,
        client,
        config: parsed,
        notes_for,
        db,
        _unmount: unmount,
        _tmp: Some(tmp),
    })
}

/// Faults an attached node gets only when asked for by name (`--kinds`): they destroy its
/// data (a restore brings back the last snapshot) or take the machine's memory.
pub(crate) const ATTACHED_ONLY_BY_NAME: [Injection; 2] = [Injection::DbCorrupt, Injection::NodeMemory];

/// A node that runs on its own (under systemd, by hand), reached at the address its config
/// (`None`: the embedded default node, from the working directory) names, its data dir
/// what it says it uses. Nothing of it is copied or changed, and it is left running: the
/// faults meet it under its own policy and limits (a repair budget may send some of them
/// to a person, which the soak counts as escalated). `injections` named by the user (not
/// the default set) may include [`ATTACHED_ONLY_BY_NAME`].
pub(crate) fn attach(
    config: Option<&Path>,
    data_dir: Option<&Path>,
    injections: &[Injection],
    named: bool,
) -> Result<Launched, BenchError> {
    let config_file = config.map(std::path::absolute).transpose().map_err(BenchError::io("finding the config"))?;
    let declared = crate::inject::running_config(config_file.as_deref(), data_dir).map_err(BenchError::NodeConfig)?;
    let base = format!("http://{}", declared.http_listen);
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build()?;
    let status = get(&client, &format!("{base}/api/status")).ok_or_else(|| {
        BenchError::NodeConfig(format!("no node answers at {base} (`--attach` soaks a node that is running)"))
    })?;
    let pid = status["node"]["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .ok_or_else(|| BenchError::NodeConfig(format!("the node at {base} did not say its pid")))?;
    // The data dir it runs with (its `--data-dir` may differ from the config's).
    let data = match (data_dir, status["node"]["data_dir"].as_str().filter(|d| !d.is_empty())) {
        (Some(d), _) => d.to_path_buf(),
        (None, Some(d)) => PathBuf::from(d),
        (None, None) => declared.data_dir.clone(),
    };
    let parsed = crate::inject::running_config(config_file.as_deref(), Some(&data)).map_err(BenchError::NodeConfig)?;
    if !data.join("admin.token").exists() {
        return Err(BenchError::NodeConfig(format!(
            "{} has no admin.token: is {} the node's data dir, and may this user read it?",
            data.display(),
            data.display()
        )));
    }
    let mut notes_for: Vec<(Injection, String)> = Vec::new();
    for &fault in injections {
        let note = if ATTACHED_ONLY_BY_NAME.contains(&fault) && !named {
            Some(format!("skipped: an attached node gets {} only when `--kinds` names it", fault.name()))
        } else if fault == Injection::NodeMemory {
            Some("skipped: node-memory needs the floor a launched node is given; an attached node keeps its own".into())
        } else if fault.on_link() {
            crate::link::of_node(&parsed).err().map(|why| format!("skipped: {why}"))
        } else if fault.default_target(&parsed).is_none() {
            Some(format!("skipped: no service of this node fits {}", fault.name()))
        } else {
            // What cannot be made on it as it is (a data dir on a large disk for disk-full)
            // is said once here, not at each of its turns. Preparing changes nothing.
            let opts = InjectOptions { target: None, secs: fault_secs(fault), interface: None };
            prepare(&parsed, &data, fault, &opts).err().map(|e| format!("skipped: {e}"))
        };
        notes_for.extend(note.map(|n| (fault, n)));
    }
    let health = parsed.services.iter().flat_map(|s| crate::inject::own_checks(&parsed, s)).collect();
    let dir = config_file
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .map_or_else(std::env::current_dir, Ok)
        .map_err(BenchError::io("finding the working directory"))?;
    let node = Target { dir, config_file, data, base, health };
    let db = Injection::DbCorrupt.default_target(&parsed).map(|s| s.name.to_string());
    if injections.contains(&Injection::DbCorrupt)
        && !notes_for.iter().any(|(f, _)| *f == Injection::DbCorrupt)
        && let Some(db) = &db
    {
        back_up(&client, &node, db);
    }
    Ok(Launched { _warden: None, pid, node, client, config: parsed, notes_for, db, _unmount: None, _tmp: None })
}

/// How long a fault's hold lasts: a slow boot the shortest that is still past a short
/// deadline (the injector makes it longer where the deadline is).
pub(crate) fn fault_secs(fault: Injection) -> u64 {
    match fault {
        Injection::SlowBoot => 3,
        // Past the harness's wait for a restore (60 s), so only a repair ends it in time,
        // and past a control's wait, in which it must not end.
        Injection::SlowAnswers => 90,
        // Long enough for the node's two looks and the notification.
        Injection::NodeMemory => 10,
        _ => 5,
    }
}

/// Every injection but `link-down`, on the default node (with the two knobs turned).
fn default_node_phase(cfg: &ModesConfig, injections: &[Injection], exe: &Path) -> Result<Vec<ModeResult>, BenchError> {
    let l = launch(None, cfg.outputs.keep_tmp, injections, exe, None)?;
    let mut results = Vec::new();
    for &fault in injections {
        let opts = InjectOptions { target: None, secs: fault_secs(fault), interface: None };
        results.push(series(cfg, &l.client, &l.node, fault, &opts, l.notes(fault), &|| {})?);
    }
    Ok(results)
}

/// Every injection that applies, on the node of a config (such as the reference node of
/// real services): its folder copied into a scratch directory and run from there, with the
/// harness's limits (no repair budget, raised rate limits).
fn config_node(cfg: &ModesConfig, config: &Path, exe: &Path) -> Result<ModesReport, BenchError> {
    let l = launch(Some(config), cfg.outputs.keep_tmp, &cfg.injections, exe, None)?;
    let mut results = Vec::new();
    for &fault in &cfg.injections {
        let mut opts = InjectOptions { target: None, secs: fault_secs(fault), interface: None };
        let notes = l.notes(fault);
        if fault.on_link() && notes.is_empty() {
            opts.interface = crate::link::of_node(&l.config).ok();
        }
        let up = || {
            if let Some(i) = &opts.interface
                && let Err(e) = crate::link::set_up(i)
            {
                eprintln!("link-down: cannot bring {i} back up: {e}");
            }
        };
        results.push(series(cfg, &l.client, &l.node, fault, &opts, notes, &up)?);
    }
    let faults = cfg.runs * results.iter().filter(|r| r.summary.n + r.summary.failures > 0).count() as u32;
    let data = l.node.data.clone();
    let snapshots = l.db.clone().filter(|_| cfg.injections.contains(&Injection::DbCorrupt)).and_then(|db| {
        let spec = l.config.services.iter().find(|s| s.name.as_str() == db)?;
        let data_dir = spec.hooks.data.as_ref()?;
        let (_, snapshot_bytes) = procs::tree_bytes(&data.join("snapshots").join(&db));
        let count = std::fs::read_dir(data.join("snapshots").join(&db)).map(|d| d.count()).unwrap_or(0);
        Some(SnapshotUse {
            service: db,
            data_bytes: procs::tree_bytes(data_dir).1,
            snapshot_bytes,
            snapshots: count,
            faults,
        })
    });
    finish(cfg, l.config.name.clone(), results, snapshots)
}

/// Copies the config's folder (its regular files, dot files left out: warden's audit key
/// and checkpoints live there) into `dir`; the config's text.
fn copy_node(config: &Path, dir: &Path) -> Result<String, BenchError> {
    let yaml = std::fs::read_to_string(config).map_err(BenchError::io(format!("reading {}", config.display())))?;
    let from = config.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let entries = std::fs::read_dir(from).map_err(BenchError::io(format!("reading {}", from.display())))?;
    for e in entries.flatten() {
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        std::fs::copy(e.path(), dir.join(&name)).map_err(BenchError::io(format!("copying {}", e.path().display())))?;
    }
    Ok(yaml)
}

/// A node config with the harness's limits: no repair budget or operator hold, and its
/// raised rate limits in `policy.yaml` (a `governance_policies:` of its own is replaced).
fn harness_yaml(yaml: &str) -> String {
    let kept: Vec<&str> = yaml.lines().filter(|l| !l.starts_with("governance_policies:")).collect();
    format!("{}\ngovernance_policies: policy.yaml\n", unbudgeted(&kept.join("\n")))
}

/// `link-down`: the db behind a real link ([`crate::link`]), the link cut on the host's end.
fn link_phase(cfg: &ModesConfig, exe: &Path) -> Result<ModeResult, BenchError> {
    let skipped = |why: String| ModeResult {
        fault: Injection::LinkDown.name(),
        mode: Injection::LinkDown.mode().as_str(),
        summary: Summary::default(),
        notes: vec![format!("skipped: {why}")],
        playbooks: Vec::new(),
        diagnosed: Vec::new(),
        harmful: Vec::new(),
    };
    procs::ensure_ports_free(&services::NODE_PORTS)?;
    let k = (std::process::id() % 250 + 1) as u8;
    let link = match crate::link::Link::create(k) {
        Ok(l) => l,
        Err(e) => return Ok(skipped(format!("cannot make a network namespace and a link here: {e}"))),
    };
    let standby = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(BenchError::io("finding a port for the standby db"))?
        .port();
    let tmp = procs::temp_dir("warden-modes-link", cfg.outputs.keep_tmp)?;
    let dir = tmp.path();
    let yaml = link.node_yaml(&exe.to_string_lossy(), standby);
    std::fs::write(dir.join("node.yaml"), yaml).map_err(BenchError::io("writing node.yaml"))?;
    std::fs::write(dir.join("policy.yaml"), raised_limits_policy()).map_err(BenchError::io("writing policy.yaml"))?;
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2)).no_proxy().build()?;
    let node = Target {
        dir: dir.to_path_buf(),
        config_file: Some(dir.join("node.yaml")),
        data: dir.join("data"),
        base: format!("http://127.0.0.1:{}", services::WARDEN_PORT),
        health: vec![crate::inject::Check::Http { url: services::api_health_url(), body: None }],
    };
    let _warden = start_node(&node, exe, &client, Duration::from_secs(60))?;
    let opts = InjectOptions { target: Some("api".into()), secs: 5, interface: Some(link.host_end.clone()) };
    let up = || {
        if let Err(e) = link.up() {
            eprintln!("link-down: cannot bring the link back up: {e}");
        }
    };
    series(cfg, &client, &node, Injection::LinkDown, &opts, Vec::new(), &up)
}

/// One injection, timed from the change to the harness's checks passing.
fn one(data: &Path, config_file: Option<&Path>, fault: Injection, opts: &InjectOptions) -> Result<Duration, String> {
    let config = crate::inject::running_config(config_file, Some(data))?;
    let prepared = prepare(&config, data, fault, opts).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let (injected, checks) = prepared.inject().map_err(|e| e.to_string())?;
    let restored = wait_restored(&checks, t0, Duration::from_secs(60));
    // Restored or not, the fault ends here: a helper left running would undo its fault in
    // the middle of the next run (a link put back up seconds into the next cut).
    let ended = injected.helper_pid.map_or(Ok(()), |pid| crate::inject::end_helper(pid, Duration::from_secs(10)));
    let d = restored?;
    ended?;
    Ok(d)
}

/// Undoes what a repair left that would hide the next fault of the same kind: a runtime
/// override it set (a longer deadline, a moved port, a switched upstream) is rolled back,
/// so the next fault meets the node as it was.
pub(crate) fn undo(client: &reqwest::blocking::Client, base: &str, token: &str, fault: Injection) {
    let overridden = get(client, &format!("{base}/api/guardian/overrides"))
        .is_some_and(|v| v["overrides"].as_object().is_some_and(|o| !o.is_empty()));
    if !overridden {
        return;
    }
    let incidents = get(client, &format!("{base}/api/incidents?mode={}&limit=1", fault.mode().as_str()));
    let runs: Vec<u64> = incidents
        .as_ref()
        .and_then(|v| v["incidents"][0]["attempts"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|a| a["run_id"].as_u64())
        .collect();
    for run in runs {
        let _ = client
            .post(format!("{base}/api/guardian/runs/{run}/rollback"))
            .bearer_auth(token)
            .json(&serde_json::json!({"reason": "the bench undoes the repair before the next fault"}))
            .send();
    }
}

/// The playbooks that resolved this fault's incidents, with counts.
fn resolved_by(client: &reqwest::blocking::Client, base: &str, fault: Injection, since: u64) -> Vec<(String, u32)> {
    let list = get(
        client,
        &format!("{base}/api/incidents?mode={}&status=resolved&since={since}&limit=1000", fault.mode().as_str()),
    );
    let mut counts: std::collections::BTreeMap<String, u32> = std::collections::BTreeMap::new();
    for i in list.as_ref().and_then(|v| v["incidents"].as_array()).into_iter().flatten() {
        if let Some(p) = i["attempts"].as_array().and_then(|a| a.last()).and_then(|a| a["playbook"].as_str()) {
            *counts.entry(p.to_string()).or_default() += 1;
        }
    }
    counts.into_iter().collect()
}

/// This fault's mode's incidents by (cause, first playbook tried), with counts. An incident
/// taken into another (the far end of a cut seen first, its step held) is part of that one,
/// as the harm count has it: not a diagnosis of its own.
fn diagnosed(
    client: &reqwest::blocking::Client,
    base: &str,
    fault: Injection,
    since: u64,
) -> Vec<((String, String), u32)> {
    let list = get(client, &format!("{base}/api/incidents?mode={}&since={since}&limit=1000", fault.mode().as_str()));
    let mut counts: std::collections::BTreeMap<(String, String), u32> = std::collections::BTreeMap::new();
    let incidents = list.as_ref().and_then(|v| v["incidents"].as_array()).into_iter().flatten();
    for i in incidents.filter(|i| i["status"] != "absorbed") {
        let cause = i["cause"].as_str().unwrap_or("-").to_string();
        let first = i["attempts"][0]["playbook"].as_str().unwrap_or("-").to_string();
        *counts.entry((cause, first)).or_default() += 1;
    }
    counts.into_iter().collect()
}

impl ModesReport {
    /// The section of the benchmarks file it (re)writes: the default node's, or its node's.
    pub fn markers(&self) -> (String, String) {
        if self.node == "demo" {
            (START_MARKER.into(), END_MARKER.into())
        } else {
            (format!("<!-- bench:modes:{}:start -->", self.node), format!("<!-- bench:modes:{}:end -->", self.node))
        }
    }

    pub fn markdown(&self) -> String {
        let (start, end) = self.markers();
        let title = if self.node == "demo" {
            "MTTR per failure mode (harness clock)".to_string()
        } else {
            format!("MTTR per failure mode on the `{}` node (harness clock)", self.node)
        };
        let mut s = format!(
            "{start}\n## {title}\n\n{} · {} · {} runs per fault\n\n`{}`\n\n",
            self.date,
            self.machine.describe(),
            self.runs,
            self.command
        );
        s.push_str("| fault | mode | runs | failed | p50 (s) | p99 (s) | max (s) | harmful | resolved by |\n|---|---|---:|---:|---:|---:|---:|---:|---|\n");
        for r in &self.results {
            let by: Vec<String> = r.playbooks.iter().map(|(p, n)| format!("{p} ×{n}")).collect();
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.fault,
                r.mode,
                r.summary.n,
                r.summary.failures,
                crate::stats::fmt_secs(r.summary.median_s),
                crate::stats::fmt_secs(r.summary.p99_s),
                crate::stats::fmt_secs(r.summary.max_s),
                r.harmful.len(),
                by.join(", ")
            ));
        }
        let total: usize = self.results.iter().map(|r| r.harmful.len()).sum();
        s.push_str(&format!(
            "\nHarmful actions, counted by the harness from outside (`chaos/src/harm.rs`): a restart, stop, signal, kill, quarantine, restore or switch of a service whose own checks passed by the harness's last sample before the decision (a finding about the service itself, such as its memory or a stranger on its port, excepted), a service left quarantined or stopped, a second incident for one fault. Total: {total}.\n"
        ));
        let mut notes: Vec<String> =
            self.results.iter().flat_map(|r| r.notes.iter().map(move |n| format!("- {}: {n}", r.fault))).collect();
        notes.extend(self.results.iter().flat_map(|r| {
            r.harmful.iter().take(5).map(move |h| format!("- {}: harmful ({}): {}", r.fault, h.kind, h.detail))
        }));
        if let Some(u) = &self.snapshots {
            s.push_str(&format!(
                "\nSnapshots of `{}` after {} faults: {} kept, {} bytes, against {} bytes of data ({:.2}×).\n",
                u.service,
                u.faults,
                u.snapshots,
                u.snapshot_bytes,
                u.data_bytes,
                u.snapshot_bytes as f64 / u.data_bytes.max(1) as f64
            ));
        }
        if !notes.is_empty() {
            s.push_str(&format!("\n{}\n", notes.join("\n")));
        }
        s.push_str(&format!("{end}\n"));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_harness_node_has_no_repair_budget_and_no_operator_hold() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("node.yaml");
        std::fs::write(&path, node_yaml()).expect("write");
        std::fs::write(dir.path().join("policy.yaml"), raised_limits_policy()).expect("policy");
        let config = crate::inject::running_config(Some(&path), Some(&dir.path().join("data")))
            .unwrap_or_else(|p| panic!("{p}"));
        assert_eq!(config.healing.repair_budget.per_hour, 0);
        assert!(config.healing.operator_hold.is_zero());
        let bare = unbudgeted("node:\n  name: t\n");
        assert!(bare.ends_with("healing:\n  max_repairs_per_hour: 0\n  operator_hold_ms: 0\n"), "{bare}");
    }
}
