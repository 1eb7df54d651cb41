//! `warden chaos soak`: many faults, one after another at a fixed interval, each one
//! accounted for. The plan's 7-day soak injects a fault every hour (168 faults);
//! `--interval 20s --faults 168` is the same count compressed into about an hour.
//!
//! The node is started by the harness in a scratch directory (the default node, or the
//! node of `--config`, as `warden chaos modes` does), or, with `--attach`, it is a node
//! already running (under systemd, by hand), soaked as it is and left running: its own
//! policy and limits, its alerts received where its webhooks point (`--alerts-listen`), and
//! the faults that destroy data or take the machine's memory only when named. The fault sequence comes from
//! `--seed`, so a run can be repeated. Before every fault the node must be in its steady
//! state (every service healthy by the harness's own checks, no incident open); then one
//! fault is made and followed until the harness's checks pass again. Each fault gets one
//! JSON line, appended and flushed as it ends, so a soak that is killed leaves what it did:
//! when it was made, the node's incident for it (matched by service, mode and time), when
//! it was restored, which playbooks ran, what was harmful.
//!
//! A **silent failure** is a fault with no incident for it in the node, or one neither
//! restored nor escalated to a person within 2 minutes. The verifier checks itself with
//! **control faults**: healing is paused for the target (a person's pause, audited) during
//! the fault, so it must not heal; the harness must report it not restored and the node
//! must show it waiting for a person. A soak whose control comes back healed fails, as does
//! one in which a scheduled fault kind never fired.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use serde::Serialize;

use crate::error::BenchError;
use crate::inject::{InjectOptions, Injection, check_once, prepare};
use crate::stats::{Summary, summarize};

/// How long a control fault is left unhealed, with healing paused for its target.
const CONTROL_FOR: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// A node config (with the files beside it); `None`: the default node.
    pub config: Option<PathBuf>,
    pub faults: u32,
    pub interval: Duration,
    pub seed: u64,
    /// The kinds to choose from (empty: every one that applies to the node).
    pub kinds: Vec<Injection>,
    /// Control faults among them.
    pub controls: u32,
    /// A fault neither restored nor escalated within this is a silent failure.
    pub silent_after: Duration,
    /// The JSON report; the fault records go beside it (`.jsonl`), the summary too (`.md`).
    pub out: PathBuf,
    pub keep_tmp: bool,
    /// Carry on a soak that was stopped or killed: the faults its records hold are kept,
    /// the rest of the same sequence is made on a fresh node.
    pub resume: bool,
    /// Peer supervisors given the same sequence on the demo services after warden's part.
    pub peers: Vec<crate::bench::Peer>,
    /// Soak the node that runs at the config's address (started elsewhere) instead of
    /// starting one; it is left running.
    pub attach: bool,
    /// The attached node's data dir (default: the one it says it uses).
    pub data_dir: Option<PathBuf>,
    /// Where the harness's alert receiver listens (default: a free loopback port). An
    /// attached node's alerts reach it only when its config names it among its webhooks.
    pub alerts_listen: Option<std::net::SocketAddr>,
}

/// Set by the first SIGINT or SIGTERM: the soak ends after the fault in progress (undone
/// and recorded), with its report.
pub static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl SoakConfig {
    /// A file whose appearance ends the soak as a signal does: beside the report.
    pub fn stop_file(&self) -> PathBuf {
        self.out.with_extension("stop")
    }

    fn stop_asked(&self) -> bool {
        STOP.load(std::sync::atomic::Ordering::SeqCst) || self.stop_file().exists()
    }

    pub fn command(&self) -> String {
        let on = self.config.as_ref().map(|c| format!(" --config {}", c.display())).unwrap_or_default();
        let kinds = if self.kinds.is_empty() {
            String::new()
        } else {
            format!(" --kinds {}", self.kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(","))
        };
        let peers: String = self.peers.iter().map(|p| format!(" --peer {}", p.name())).collect();
        let on = if self.attach { format!("{on} --attach") } else { on };
        format!(
            "warden chaos soak{on} --faults {} --interval {}ms --seed {} --controls {}{kinds} --silent-after {}s{peers} --out {}",
            self.faults,
            self.interval.as_millis(),
            self.seed,
            self.controls,
            self.silent_after.as_secs(),
            self.out.display()
        )
    }
}

/// One fault, as it ended.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct FaultRecord {
    pub n: u32,
    pub fault: String,
    pub mode: String,
    pub target: String,
    /// Healing was paused for the target: it must not heal.
    pub control: bool,
    /// Whether the node was in its steady state before it.
    pub steady_before: bool,
    pub injected_unix_ms: u64,
    /// The node's incident for it.
    pub incident: Option<u64>,
    /// For a fault plain supervision heals (a killed process) and no incident was opened
    /// for: the seq of the node's audit entry of its supervision restart.
    #[serde(default)]
    pub restart_audit_seq: Option<u64>,
    pub detected_ms: Option<u64>,
    pub cause: Option<String>,
    /// The mode of the node's incident when it is not the fault's.
    #[serde(default)]
    pub seen_as: Option<String>,
    pub status: Option<String>,
    /// Restored by the harness's own checks, from the fault.
    pub restored_ms: Option<u64>,
    /// The node said a person must act (a hold, an approval, no playbook left).
    pub escalated: bool,
    pub playbooks: Vec<String>,
    pub harmful: Vec<crate::harm::Harm>,
    /// Why this fault is a silent failure, if it is one.
    pub silent: Option<String>,
    /// Why the fault could not be made (nothing was changed).
    pub not_made: Option<String>,
    /// The alerts the node sent while it lasted, as the harness's webhook received them.
    #[serde(default)]
    pub alerts: Vec<crate::alert_sink::SeenAlert>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KindSummary {
    pub fault: String,
    pub made: u32,
    pub detect: Summary,
    pub restore: Summary,
    /// Firing alerts the node sent during these faults.
    pub alerts_firing: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub kind: &'static str,
    pub date: String,
    pub command: String,
    pub node: String,
    pub version: &'static str,
    pub seed: u64,
    pub interval_ms: u64,
    /// What the interval stands for: the plan's one fault per hour.
    pub compression: String,
    pub wall_secs: f64,
    /// Faults planned.
    pub faults: u32,
    /// Faults made (fewer when the soak was stopped early).
    pub faults_done: u32,
    /// Why it ended before its last fault (a signal, the stop file).
    pub stopped_early: Option<String>,
    /// How it was run, where that changes what the report can say: an attached node, alerts
    /// not received, kinds that cannot be made on this node (each with why).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Faults kept from an earlier run it resumed (`--resume`); warden's own health and
    /// the wall time are this run's.
    pub resumed_after: u32,
    pub kinds: Vec<KindSummary>,
    /// Kinds in the sequence of which no fault could be made.
    pub never_fired: Vec<String>,
    pub silent: Vec<FaultRecord>,
    pub harmful: Vec<crate::harm::Harm>,
    pub controls: Vec<FaultRecord>,
    pub node_health: crate::soak_watch::NodeHealth,
    /// The peers' parts: the same sequence on the demo services under each.
    pub peers: Vec<crate::soak_peer::PeerSoak>,
    /// Faults whose incident was of another mode than the fault's: (n, fault, mode seen).
    pub records_seen_otherwise: Vec<(u32, String, String)>,
    /// Why the soak failed; empty: it passed.
    pub failed: Vec<String>,
}

/// The sequence of faults for `seed`: (kind, whether it is a control), `faults` long, every
/// kind at least once when there are enough faults.
pub fn schedule(seed: u64, kinds: &[Injection], faults: u32, controls: u32) -> Vec<(Injection, bool)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = faults as usize;
    let mut seq: Vec<Injection> = kinds.iter().copied().cycle().take(kinds.len().min(n)).collect();
    while seq.len() < n {
        seq.push(kinds[rng.random_range(0..kinds.len())]);
    }
    // Shuffled (Fisher–Yates), so the first ones are not always in catalog order.
    for i in (1..seq.len()).rev() {
        let j = rng.random_range(0..=i);
        seq.swap(i, j);
    }
    // Controls go to faults that stay without a repair (a held port is let go, a slow boot
    // ends: those heal by themselves and would prove nothing).
    let mut candidates: Vec<usize> = (0..n).filter(|&i| !heals_by_itself(seq[i])).collect();
    let mut control = vec![false; n];
    for _ in 0..controls.min(candidates.len() as u32) {
        let at = candidates.swap_remove(rng.random_range(0..candidates.len()));
        control[at] = true;
    }
    seq.into_iter().zip(control).collect()
}

/// Faults that end without any repair: no control fault can be made of them.
fn heals_by_itself(k: Injection) -> bool {
    matches!(
        k,
        Injection::PortHold
            | Injection::SlowBoot
            | Injection::ModelKill
            | Injection::LinkDown
            | Injection::LinkLoss
            | Injection::NodeMemory
    )
}

/// For a node-wide fault, which the node tells a person of and repairs nothing for: when
/// its alert (`NodeMemoryLow`, firing) reached the harness's receiver, from `from`.
fn told_at(alerts: &crate::alert_sink::AlertSink, from: u64) -> Option<u64> {
    alerts
        .since(from)
        .iter()
        .find(|a| a.name == "NodeMemoryLow" && a.status == "firing")
        .map(|a| a.received_unix_ms.saturating_sub(from))
}

/// Faults plain supervision heals (a killed process restarts at once): the node may open
/// no incident for them, but its audit trail records the restart.
fn healed_by_supervision(k: Injection) -> bool {
    matches!(k, Injection::ModelKill)
}

/// The seq of the node's audit entry of a supervision restart of `target` at or after `at`.
fn restart_record(client: &reqwest::blocking::Client, base: &str, token: &str, target: &str, at: u64) -> Option<u64> {
    let url = format!(
        "{base}/api/governance/audit?kind=supervision&action=restart_service&target={target}&since_unix_ms={at}&limit=5"
    );
    let page: serde_json::Value = client.get(url).bearer_auth(token).send().ok()?.json().ok()?;
    page["entries"].as_array()?.iter().filter_map(|e| e["seq"].as_u64()).min()
}

/// The node's incident for a fault on `target` of `mode` made at `at`: the first of that
/// mode (from 2 s before it, for the detector's clock), else the first of any mode detected
/// after it: the fault showed as another mode (a starved boot that got ready and then did
/// not answer is a hang to the node), which the record says (`seen_as`).
fn incident_for(
    client: &reqwest::blocking::Client,
    base: &str,
    target: &str,
    mode: &str,
    at: u64,
) -> Option<serde_json::Value> {
    // One request for both: this runs every 100 ms while a fault is followed.
    let since = at.saturating_sub(2000);
    let list = crate::modes::get(client, &format!("{base}/api/incidents?service={target}&since={since}&limit=20"))?;
    let incidents = list["incidents"].as_array()?;
    let detected = |i: &&serde_json::Value| i["detected_unix_ms"].as_u64().unwrap_or(u64::MAX);
    let first_of_mode = incidents.iter().filter(|i| i["mode"] == mode).min_by_key(detected);
    first_of_mode.or_else(|| incidents.iter().filter(|i| detected(i) >= at).min_by_key(detected)).cloned()
}

/// Whether the node shows the incident waiting for a person: its repair held (a pause,
/// maintenance, the breaker), waiting for an approver, acknowledged by someone, or failed
/// (nothing left to try). Read from the incident's fields, never from its words.
fn escalated(i: &serde_json::Value) -> bool {
    !i["on_hold"].is_null()
        || !i["acknowledged"].is_null()
        || matches!(i["status"].as_str(), Some("failed" | "awaiting_approval"))
}

fn post(client: &reqwest::blocking::Client, url: &str, token: &str, body: serde_json::Value) -> Result<(), String> {
    let resp = client.post(url).bearer_auth(token).json(&body).send().map_err(|e| e.to_string())?;
    if resp.status().is_success() { Ok(()) } else { Err(format!("{url} answered {}", resp.status())) }
}

pub fn run(cfg: &SoakConfig) -> Result<SoakReport, BenchError> {
    // Everything this soak starts comes from a copy of this executable: a rebuild during an
    // hour-long run replaced the file, and the helpers could no longer be started.
    let pinned = crate::procs::temp_dir("warden-soak-exe", false)?;
    std::fs::set_permissions(pinned.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(BenchError::io("opening the executable's directory"))?;
    let exe = crate::procs::pin_exe(pinned.path())?;
    // A missing peer is said before the hour of warden's part, not after it.
    for &peer in &cfg.peers {
        crate::bench::find_peer(peer, &exe)?;
    }
    let wanted: Vec<Injection> = if cfg.kinds.is_empty() {
        // Every kind; those that fit no service of the node drop out below.
        crate::modes::DEFAULT_INJECTIONS
            .iter()
            .copied()
            .chain([Injection::SlowAnswers, Injection::LinkLoss, Injection::NodeMemory])
            .collect()
    } else {
        cfg.kinds.clone()
    };
    // The node's alerts reach the harness as they would reach a person's pager.
    let alerts = match cfg.alerts_listen {
        Some(addr) => crate::alert_sink::AlertSink::start_at(addr)?,
        None => crate::alert_sink::AlertSink::start()?,
    };
    let mut notes = Vec::new();
    let l = if cfg.attach {
        if !cfg.peers.is_empty() {
            return Err(BenchError::NodeConfig(
                "`--peer` gives the sequence to a peer on the demo services of a node the soak started; \
                 not with `--attach`"
                    .into(),
            ));
        }
        let l = crate::modes::attach(cfg.config.as_deref(), cfg.data_dir.as_deref(), &wanted, !cfg.kinds.is_empty())?;
        notes.push(format!(
            "attached to the node running at {} (pid {}): its own policy and limits, left running",
            l.node.base, l.pid
        ));
        if !l.config.alerts.webhooks.iter().any(|w| w.url.as_str() == alerts.url) {
            notes.push(format!(
                "alerts not received: the node's `alerts.webhooks` does not name the harness's receiver ({}; \
                 choose its address with `--alerts-listen`)",
                alerts.url
            ));
        }
        l
    } else {
        crate::modes::launch(cfg.config.as_deref(), cfg.keep_tmp, &wanted, &exe, Some(&alerts.url))?
    };
    for (k, why) in &l.notes_for {
        notes.push(format!("{}: {why}", k.name()));
    }
    let kinds: Vec<Injection> = wanted.into_iter().filter(|k| l.notes(*k).is_empty()).collect();
    // The peers are set up for the demo services (db, model, api), on the node's ports.
    let peer_ports = crate::services::DemoPorts::of(&l.config);
    if !cfg.peers.is_empty() && peer_ports.is_none() {
        return Err(BenchError::NodeConfig(
            "`--peer` gives the sequence to a peer set up for the demo services (api, db and model with a port each); \
             this node has not got them"
                .into(),
        ));
    }
    if kinds.is_empty() {
        return Err(BenchError::NodeConfig("no fault kind applies to this node".into()));
    }
    let data = l.node.data.clone();
    let token = std::fs::read_to_string(data.join("admin.token")).map_err(BenchError::io("reading the admin token"))?;
    let token = token.trim().to_string();
    let base = l.node.base.clone();
    let client = &l.client;
    let warden_pid = l.pid;
    let records_path = cfg.out.with_extension("jsonl");
    if let Some(dir) = records_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(BenchError::io(format!("creating {}", dir.display())))?;
    }
    let plan = schedule(cfg.seed, &kinds, cfg.faults, cfg.controls);
    let (mut records, kept_bytes) = if cfg.resume { earlier(&records_path, &plan)? } else { (Vec::new(), 0) };
    let mut records_file = std::fs::OpenOptions::new()
        .create(true)
        .append(cfg.resume)
        .write(true)
        .truncate(!cfg.resume)
        .open(&records_path)
        .map_err(BenchError::io(format!("opening {}", records_path.display())))?;
    // A line cut short by a kill goes: the next record starts on a line of its own.
    records_file.set_len(kept_bytes).map_err(BenchError::io(format!("trimming {}", records_path.display())))?;
    let resumed_at = records.len();
    if cfg.resume {
        eprintln!("resuming after {resumed_at} of {} faults", plan.len());
    }
    let started = Instant::now();
    // Latency windows: an hour, or a quarter of a run planned shorter than two hours.
    let planned = cfg.interval.saturating_mul(cfg.faults);
    let window = if planned >= Duration::from_secs(7200) {
        Duration::from_secs(3600)
    } else {
        (planned / 4).max(Duration::from_secs(60))
    };
    let every = (cfg.interval / 2).clamp(Duration::from_secs(2), Duration::from_secs(30));
    let watch = crate::soak_watch::Watch::start(warden_pid, base.clone(), data.clone(), every, window);
    let mut stopped_early = None;
    let _ = std::fs::remove_file(cfg.stop_file());
    for (i, (fault, control)) in plan.iter().copied().enumerate().skip(resumed_at) {
        let tick = started + cfg.interval * (i - resumed_at) as u32;
        while Instant::now() < tick && !cfg.stop_asked() {
            std::thread::sleep((tick - Instant::now()).min(Duration::from_millis(200)));
        }
        if cfg.stop_asked() {
            stopped_early =
                Some(format!("stopped after {i} of {} faults (a signal or {})", plan.len(), cfg.stop_file().display()));
            break;
        }
        let steady_before = crate::modes::settle(client, &l.node, cfg.silent_after);
        watch.fault_in_progress(true);
        let record = one_fault(&l, &alerts, &token, (i as u32 + 1, fault, control), steady_before, cfg.silent_after);
        watch.fault_in_progress(false);
        let line = serde_json::to_string(&record).unwrap_or_default();
        let _ = writeln!(records_file, "{line}").and_then(|()| records_file.flush());
        let silent = records.iter().chain(std::iter::once(&record)).filter(|r| r.silent.is_some()).count();
        let done = i + 1;
        // The interval, or what a fault has taken so far if that is longer.
        let per_fault = cfg.interval.max(started.elapsed() / (done - resumed_at) as u32);
        let eta = per_fault.saturating_mul((plan.len() - done) as u32);
        eprintln!(
            "[{done}/{}] {}{} on `{}`: {} · silent so far: {silent} · ETA {} s",
            plan.len(),
            record.fault,
            if control { " (control)" } else { "" },
            record.target,
            outcome(&record),
            eta.as_secs()
        );
        records.push(record);
    }
    let health = watch.finish();
    let wall = started.elapsed();
    let node_name = l.config.name.clone();
    // The node goes before the peers take the demo services' ports.
    drop(l);
    let end = End { wall, stopped_early, resumed_after: resumed_at as u32, notes };
    let mut report = summarize_soak(cfg, &node_name, &kinds, records, health, end)?;
    // warden's part is written before the peers run: a peer that cannot run loses nothing.
    write_reports(cfg, &report, &records_path)?;
    if cfg.peers.is_empty() {
        return Ok(report);
    }
    let sequence: Vec<Injection> = plan.iter().take(report.faults_done as usize).map(|(k, _)| *k).collect();
    for &peer in &cfg.peers {
        if cfg.stop_asked() {
            break;
        }
        let path = cfg.out.with_extension(format!("{}.jsonl", peer.name()));
        let stop = || cfg.stop_asked();
        let ports = peer_ports.unwrap_or(crate::services::DemoPorts::DEFAULT);
        let part = crate::soak_peer::run(peer, ports, &exe, &sequence, cfg.silent_after, &path, cfg.keep_tmp, &stop);
        let part = match tokio::runtime::Handle::try_current() {
            Ok(h) => h.block_on(part),
            Err(_) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(BenchError::io("starting a runtime for the peer"))?
                .block_on(part),
        };
        match part {
            Ok(p) => report.peers.push(p),
            Err(e) => {
                eprintln!("{}: {e}", peer.name());
                report.failed.push(format!("the peer {} could not run: {e}", peer.name()));
            }
        }
    }
    write_reports(cfg, &report, &records_path)?;
    Ok(report)
}

/// The JSON report, the plot of the records and the Markdown summary beside it.
fn write_reports(cfg: &SoakConfig, report: &SoakReport, records_path: &Path) -> Result<(), BenchError> {
    let json = serde_json::to_vec_pretty(&report).map_err(|e| BenchError::NodeConfig(e.to_string()))?;
    std::fs::write(&cfg.out, json).map_err(BenchError::io(format!("writing {}", cfg.out.display())))?;
    let svg = cfg.out.with_extension("svg");
    let plotted = crate::soak_plot::plot_records(records_path, &svg);
    if let Err(e) = &plotted {
        eprintln!("no plot: {e}");
    }
    let md = cfg.out.with_extension("md");
    let mut text = report.markdown();
    if plotted.is_ok()
        && let Some(name) = svg.file_name()
    {
        text.push_str(&format!("\n![time to restore per fault over the soak]({})\n", name.to_string_lossy()));
    }
    std::fs::write(&md, text).map_err(BenchError::io(format!("writing {}", md.display())))?;
    Ok(())
}

fn outcome(r: &FaultRecord) -> String {
    if let Some(why) = &r.not_made {
        return format!("not made ({why})");
    }
    let incident = match (r.incident, r.restart_audit_seq) {
        (Some(i), _) => format!(
            "incident #{i} {}{}",
            r.cause.as_deref().unwrap_or("?"),
            r.seen_as.as_deref().map(|m| format!(" (seen as {m})")).unwrap_or_default()
        ),
        (None, Some(seq)) => format!("supervision restart, audit entry {seq}"),
        (None, None) => "no incident".into(),
    };
    let restored = match r.restored_ms {
        Some(ms) => format!("restored in {:.2} s", ms as f64 / 1000.0),
        None if r.escalated => "not restored, escalated".into(),
        None => "not restored".into(),
    };
    match &r.silent {
        Some(why) => format!("{restored}, {incident} · SILENT: {why}"),
        None => format!("{restored}, {incident}"),
    }
}

/// The records of the soak being resumed; each must be the fault the sequence has at its
/// place (the same seed, kinds, count and controls), else this is another soak.
/// With the length of the file those records take (what follows is cut off).
fn earlier(path: &Path, plan: &[(Injection, bool)]) -> Result<(Vec<FaultRecord>, u64), BenchError> {
    let text =
        std::fs::read_to_string(path).map_err(BenchError::io(format!("reading {} to resume", path.display())))?;
    let mut out = Vec::new();
    let mut kept = 0u64;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        // A line cut short by a kill is the fault in progress: it is made again.
        let Ok(r) = serde_json::from_str::<FaultRecord>(line.trim_end()) else { break };
        if !line.ends_with('\n') {
            break;
        }
        match plan.get(i) {
            Some((k, c)) if k.name() == r.fault && *c == r.control && r.n as usize == i + 1 => {
                kept += line.len() as u64;
                out.push(r);
            }
            _ => {
                return Err(BenchError::NodeConfig(format!(
                    "{} line {}: {} (control: {}) is not fault {} of this soak's sequence: resume with the same --seed, --kinds, --faults and --controls",
                    path.display(),
                    i + 1,
                    r.fault,
                    r.control,
                    i + 1
                )));
            }
        }
    }
    Ok((out, kept))
}

/// Makes fault `n` (a control or not) and follows it to its end.
fn one_fault(
    l: &crate::modes::Launched,
    alerts: &crate::alert_sink::AlertSink,
    token: &str,
    (n, fault, control): (u32, Injection, bool),
    steady_before: bool,
    silent_after: Duration,
) -> FaultRecord {
    let client = &l.client;
    let base = l.node.base.as_str();
    let data = l.node.data.as_path();
    let mut r = FaultRecord {
        n,
        fault: fault.name().into(),
        mode: fault.mode().as_str().into(),
        target: String::new(),
        control,
        steady_before,
        injected_unix_ms: 0,
        incident: None,
        restart_audit_seq: None,
        detected_ms: None,
        cause: None,
        seen_as: None,
        status: None,
        restored_ms: None,
        escalated: false,
        playbooks: Vec::new(),
        harmful: Vec::new(),
        silent: None,
        not_made: None,
        alerts: Vec::new(),
    };
    let config = match crate::inject::running_config(l.node.config_file.as_deref(), Some(data)) {
        Ok(c) => c,
        Err(e) => {
            r.not_made = Some(e);
            return r;
        }
    };
    let opts = InjectOptions { target: None, secs: crate::modes::fault_secs(fault), interface: None };
    let prepared = match prepare(&config, data, fault, &opts) {
        Ok(p) => p,
        Err(e) => {
            r.not_made = Some(e.to_string());
            return r;
        }
    };
    r.target = prepared.target.clone();
    if control {
        let body =
            serde_json::json!({"service": r.target, "for_ms": 600_000, "reason": "soak control fault: must not heal"});
        if let Err(e) = post(client, &format!("{base}/api/healing/pause"), token, body) {
            r.not_made = Some(format!("cannot pause healing for the control: {e}"));
            return r;
        }
    }
    if fault.node_wide() {
        // The node tells each low-memory spell once: the last one must be over (its
        // resolve received) or this fault's would be no news to it.
        let start = Instant::now();
        while alerts.last("NodeMemoryLow").is_some_and(|a| a.status == "firing") && start.elapsed() < silent_after {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let watch = crate::harm::Watch::start(&config);
    let from = warden_core::time::now_unix_ms();
    r.injected_unix_ms = from;
    let t0 = Instant::now();
    let (helper, checks) = match prepared.inject() {
        Ok((injected, checks)) => (injected.helper_pid, checks),
        Err(e) => {
            r.not_made = Some(e.to_string());
            return r;
        }
    };
    let limit = if control { CONTROL_FOR } else { silent_after };
    let check_client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(500))
        .no_proxy()
        .build()
        .unwrap_or_else(|_| client.clone());
    let mut incident = serde_json::Value::Null;
    let mut first = true;
    while t0.elapsed() < limit {
        let at = t0.elapsed().as_millis() as u64;
        if r.restored_ms.is_none()
            && checks.iter().all(|c| check_once(&check_client, c, Duration::from_millis(500)).is_ok())
        {
            if first {
                r.not_made = Some(crate::inject::NOT_MADE.into());
                break;
            }
            r.restored_ms = Some(at);
        }
        first = false;
        if fault.node_wide() {
            if r.detected_ms.is_none() {
                r.detected_ms = told_at(alerts, from);
            }
        } else if let Some(i) = incident_for(client, base, &r.target, &r.mode, from) {
            incident = i;
        }
        if incident.is_null() && r.restart_audit_seq.is_none() && healed_by_supervision(fault) {
            r.restart_audit_seq = restart_record(client, base, token, &r.target, from);
        }
        let detected = !incident.is_null() || r.restart_audit_seq.is_some() || r.detected_ms.is_some();
        // Restored and seen: done. A restore the node has no incident for gets a few
        // seconds more for its detector to report it.
        if detected && r.restored_ms.is_some() {
            break;
        }
        if r.restored_ms.is_some_and(|ms| t0.elapsed().as_millis() as u64 > ms + 10_000) {
            break;
        }
        if control && detected && escalated(&incident) && t0.elapsed() > Duration::from_secs(5) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !incident.is_null() {
        r.incident = incident["id"].as_u64();
        r.detected_ms = incident["detected_unix_ms"].as_u64().map(|d| d.saturating_sub(from));
        r.cause = incident["cause"].as_str().map(String::from);
        r.seen_as = incident["mode"].as_str().filter(|m| *m != r.mode).map(String::from);
        r.status = incident["status"].as_str().map(String::from);
        r.escalated = escalated(&incident);
        r.playbooks = incident["attempts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a["playbook"].as_str().map(String::from))
            .collect();
    }
    // A slow boot ready within its deadline was not slowed past it: the new boot escaped
    // the starvation (it got through its start between two looks of the helper, or the
    // restart came late, after a backoff, and the starvation was over before the deadline).
    // The boot is timed as the node sees it: from the new process's start to the restore.
    let deadline = config.services.iter().find(|s| s.name.as_str() == r.target).map(|s| s.startup_deadline);
    if fault == Injection::SlowBoot
        && r.incident.is_none()
        && let (Some(ms), Some(deadline)) = (r.restored_ms, deadline)
    {
        let ready_at = from + ms;
        let started = crate::modes::get(client, &format!("{base}/api/status")).and_then(|s| {
            s["services"].as_array()?.iter().find(|x| x["name"] == r.target.as_str())?["started_unix_ms"].as_u64()
        });
        let boot = started.filter(|&t| t >= from && t <= ready_at).map_or(ms, |t| ready_at - t);
        if Duration::from_millis(boot) < deadline {
            r.not_made = Some(format!(
                "the new boot escaped the starvation: ready {boot} ms after it started, within its {} ms deadline",
                deadline.as_millis()
            ));
        }
    }
    if fault.node_wide() && r.detected_ms.is_some() {
        // Told to a person is what the node does for it; it repairs nothing.
        r.escalated = true;
        r.cause = Some("node_memory_low".into());
    }
    r.silent = match (control, r.incident.is_some(), r.restored_ms.is_some(), r.escalated) {
        _ if r.not_made.is_some() => None,
        _ if fault.node_wide() && !r.escalated => Some("the node told no one: no NodeMemoryLow alert".into()),
        _ if fault.node_wide() => None,
        (false, false, true, _) if r.restart_audit_seq.is_some() => None,
        (_, false, _, _) if healed_by_supervision(fault) => {
            Some("the node opened no incident for it and recorded no supervision restart".into())
        }
        (_, false, _, _) => Some("the node opened no incident for it".into()),
        (true, true, true, _) => {
            Some("a control fault healed with healing paused: the verifier cannot be trusted".into())
        }
        (true, true, false, false) => Some("a control fault was not shown as waiting for a person".into()),
        (false, true, false, false) => {
            Some(format!("neither restored nor escalated within {} s", silent_after.as_secs()))
        }
        _ => None,
    };
    if control {
        let body = serde_json::json!({"service": r.target, "reason": "soak control fault over"});
        let _ = post(client, &format!("{base}/api/healing/resume"), token, body);
        // Healed now, so the next fault meets a steady node.
        let _ = crate::inject::wait_restored(&checks, Instant::now(), silent_after);
    }
    // The fault ends here, so the next one never meets this one's helper (nor its late undo).
    if let Some(pid) = helper
        && let Err(e) = crate::inject::end_helper(pid, Duration::from_secs(10))
    {
        eprintln!("soak: fault {n} ({}): {e}", r.fault);
    }
    crate::modes::settle(client, &l.node, silent_after);
    r.harmful = crate::harm::judge(client, base, &watch, from, warden_core::time::now_unix_ms());
    crate::modes::undo(client, base, token, fault);
    // What a person was told of it: the alerts that reached the harness's receiver from
    // the injection to the end of the settle (a notification still in its group wait
    // then is counted with the next fault).
    r.alerts = alerts.since(from);
    r
}

/// The firing alerts the node sent during a fault.
fn firing(r: &FaultRecord) -> u32 {
    r.alerts.iter().filter(|a| a.status == "firing").count() as u32
}

/// How the run went: its wall time, why it ended early, what it resumed.
struct End {
    wall: Duration,
    stopped_early: Option<String>,
    resumed_after: u32,
    notes: Vec<String>,
}

fn summarize_soak(
    cfg: &SoakConfig,
    node: &str,
    kinds: &[Injection],
    records: Vec<FaultRecord>,
    node_health: crate::soak_watch::NodeHealth,
    end: End,
) -> Result<SoakReport, BenchError> {
    let End { wall, stopped_early, resumed_after, notes } = end;
    let mut per_kind = Vec::new();
    let mut never_fired = Vec::new();
    for k in kinds {
        let made: Vec<&FaultRecord> =
            records.iter().filter(|r| r.fault == k.name() && !r.control && r.not_made.is_none()).collect();
        let scheduled = records.iter().any(|r| r.fault == k.name());
        if scheduled && !records.iter().any(|r| r.fault == k.name() && r.not_made.is_none()) {
            never_fired.push(k.name().to_string());
        }
        let detect: Vec<Duration> = made.iter().filter_map(|r| r.detected_ms.map(Duration::from_millis)).collect();
        let restore: Vec<Duration> = made.iter().filter_map(|r| r.restored_ms.map(Duration::from_millis)).collect();
        let unrestored = made.len() - restore.len();
        per_kind.push(KindSummary {
            fault: k.name().into(),
            made: made.len() as u32,
            detect: summarize(&detect, made.len() - detect.len())?,
            restore: summarize(&restore, unrestored)?,
            alerts_firing: made.iter().map(|r| firing(r)).sum(),
        });
    }
    let silent: Vec<FaultRecord> = records.iter().filter(|r| r.silent.is_some()).cloned().collect();
    let harmful: Vec<crate::harm::Harm> = records.iter().flat_map(|r| r.harmful.clone()).collect();
    let controls: Vec<FaultRecord> = records.iter().filter(|r| r.control).cloned().collect();
    let mut failed = Vec::new();
    if !silent.is_empty() {
        failed.push(format!("{} silent failures", silent.len()));
    }
    if !harmful.is_empty() {
        failed.push(format!("{} harmful actions", harmful.len()));
    }
    if !never_fired.is_empty() {
        failed.push(format!("scheduled kinds that never fired: {}", never_fired.join(", ")));
    }
    if node_health.failed {
        failed.push(format!("warden itself: leak {}; degradation {}", node_health.leak, node_health.degradation));
    }
    if controls.iter().all(|c| c.not_made.is_some()) {
        failed.push("no control fault was made: the verifier was not checked".into());
    }
    let interval_s = cfg.interval.as_secs_f64();
    Ok(SoakReport {
        kind: "soak",
        date: crate::report::today_utc(),
        command: cfg.command(),
        node: node.to_string(),
        version: env!("CARGO_PKG_VERSION"),
        seed: cfg.seed,
        interval_ms: cfg.interval.as_millis() as u64,
        compression: format!(
            "one fault every {interval_s:.0} s stands for the plan's one every hour: {:.0}× compressed; {} faults stand for {:.1} days",
            3600.0 / interval_s.max(0.001),
            cfg.faults,
            f64::from(cfg.faults) / 24.0
        ),
        wall_secs: wall.as_secs_f64(),
        faults: cfg.faults,
        faults_done: records.len() as u32,
        stopped_early,
        notes,
        resumed_after,
        kinds: per_kind,
        never_fired,
        silent,
        harmful,
        controls,
        node_health,
        peers: Vec::new(),
        records_seen_otherwise: records
            .iter()
            .filter_map(|r| r.seen_as.as_ref().map(|m| (r.n, r.fault.clone(), m.clone())))
            .collect(),
        failed,
    })
}

impl SoakReport {
    fn node_health_markdown(&self) -> String {
        let h = &self.node_health;
        let t = |name: &str, t: &Option<crate::soak_watch::Trend>| match t {
            Some(t) => format!("| {name} | {:+.1} | {:+.1} … {:+.1} |\n", t.per_hour, t.low, t.high),
            None => format!("| {name} | — | — |\n"),
        };
        let mut s = format!(
            "\n## warden itself\n\nSampled every {:.0} s ({} samples); slopes per hour by least squares after the first tenth (warm-up), with their 95 % interval.\n\n| gauge | slope per hour | 95 % interval |\n|---|---:|---|\n",
            h.every_s,
            h.samples.len()
        );
        s.push_str(&t("RSS (KiB)", &h.rss_kib));
        s.push_str(&t("heap in use (KiB)", &h.heap_kib));
        s.push_str(&t("open fds", &h.fds));
        s.push_str(&t("threads", &h.threads));
        s.push_str(&t("store (bytes)", &h.store_bytes));
        let cpu: Vec<f64> = h.samples.iter().skip(1).map(|x| x.cpu_pct).collect();
        if !cpu.is_empty() {
            s.push_str(&format!(
                "\nCPU: {:.2} % of one core on average.\n",
                cpu.iter().sum::<f64>() / cpu.len() as f64
            ));
        }
        s.push_str("\n| window (s) | API p50 (ms) | API p99 (ms) | probe p50 (ms) | probe p99 (ms) | probe samples |\n|---|---:|---:|---:|---:|---:|\n");
        let ms = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.2}"));
        for w in &h.windows {
            s.push_str(&format!(
                "| {:.0}–{:.0} | {} | {} | {} | {} | {} |\n",
                w.from_s,
                w.to_s,
                ms(w.api.p50_ms),
                ms(w.api.p99_ms),
                ms(w.probes.p50_ms),
                ms(w.probes.p99_ms),
                w.probes.n
            ));
        }
        s.push_str(&format!("\nLeak: {}. Degradation: {}.\n", h.leak, h.degradation));
        s
    }

    pub fn markdown(&self) -> String {
        let verdict =
            if self.failed.is_empty() { "passed".to_string() } else { format!("FAILED: {}", self.failed.join("; ")) };
        let stopped = self.stopped_early.as_ref().map(|w| format!(" {w}.")).unwrap_or_default();
        let resumed = if self.resumed_after > 0 {
            format!(
                " Resumed after {} faults of an earlier run (warden's own health and the wall time are this run's).",
                self.resumed_after
            )
        } else {
            String::new()
        };
        let mut s = format!(
            "# Soak on the `{}` node: {verdict}\n\n{} · warden {} · seed {} · {} of {} faults in {:.0} s\n\n`{}`\n\n{}.{stopped}{resumed}\n\n",
            self.node,
            self.date,
            self.version,
            self.seed,
            self.faults_done,
            self.faults,
            self.wall_secs,
            self.command,
            self.compression,
        );
        if !self.notes.is_empty() {
            s.push_str("Notes:\n\n");
            for n in &self.notes {
                s.push_str(&format!("- {n}\n"));
            }
            s.push('\n');
        }
        s.push_str("| fault | made | detect p50 (s) | detect p99 (s) | restore p50 (s) | restore p99 (s) | restore max (s) | not restored | alerts |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for k in &self.kinds {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                k.fault,
                k.made,
                crate::stats::fmt_secs(k.detect.median_s),
                crate::stats::fmt_secs(k.detect.p99_s),
                crate::stats::fmt_secs(k.restore.median_s),
                crate::stats::fmt_secs(k.restore.p99_s),
                crate::stats::fmt_secs(k.restore.max_s),
                k.restore.failures,
                k.alerts_firing
            ));
        }
        s.push_str(&format!(
            "\nAlerts: the firing alerts the node sent to the harness's webhook (as a pager gets them) during each kind's faults; a repair that holds in time sends none. Control faults that told a person by an alert: {} of {}.\n",
            self.controls.iter().filter(|c| firing(c) > 0).count(),
            self.controls.len()
        ));
        s.push_str(&format!(
            "\nSilent failures: {}. Harmful actions: {}. Control faults (healing paused for the target): {}, each reported not healed and waiting for a person: {}.\n",
            self.silent.len(),
            self.harmful.len(),
            self.controls.len(),
            self.controls.iter().all(|c| c.restored_ms.is_none() && c.escalated)
        ));
        s.push_str(&self.node_health_markdown());
        for r in &self.silent {
            s.push_str(&format!(
                "\n- silent: fault {} ({} on `{}`): {}",
                r.n,
                r.fault,
                r.target,
                r.silent.as_deref().unwrap_or("")
            ));
        }
        let other: Vec<String> = self
            .records_seen_otherwise
            .iter()
            .map(|(n, fault, mode)| format!("\n- fault {n} ({fault}) was seen by the node as {mode}"))
            .collect();
        if !other.is_empty() {
            s.push_str("\n\nFaults the node saw as another mode (detected and repaired, under that mode's playbooks):");
            s.push_str(&other.concat());
        }
        s.push('\n');
        s.push_str(&self.peers_markdown());
        s
    }

    fn peers_markdown(&self) -> String {
        let mut s = String::new();
        for p in &self.peers {
            let warden_silent = |kind: &str| self.silent.iter().filter(|r| r.fault == kind).count();
            s.push_str(&format!(
                "\n## {} {} ({}) beside it\n\nThe same sequence on the demo services under {}, after warden's part: {} faults made, {} silent.\n\n| fault | made | restore p50 (s) | restore p99 (s) | restore max (s) | silent | warden's silent |\n|---|---:|---:|---:|---:|---:|---:|\n",
                p.peer.name, p.peer.version, p.peer.setup, p.peer.name, p.faults_made, p.silent.len()
            ));
            for k in &p.kinds {
                s.push_str(&format!(
                    "| {} | {} | {} | {} | {} | {} | {} |\n",
                    k.fault,
                    k.made,
                    crate::stats::fmt_secs(k.restore.median_s),
                    crate::stats::fmt_secs(k.restore.p99_s),
                    crate::stats::fmt_secs(k.restore.max_s),
                    k.restore.failures,
                    warden_silent(&k.fault)
                ));
            }
            for (kind, n, why) in &p.not_run {
                s.push_str(&format!("\n- not run against {}: {kind} ×{n}: {why}", p.peer.name));
            }
            for r in &p.silent {
                s.push_str(&format!(
                    "\n- {} silent: fault {} ({}): {}",
                    p.peer.name,
                    r.n,
                    r.fault,
                    r.silent.as_deref().unwrap_or("")
                ));
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_the_schedule_is_repeatable_fires_every_kind_and_places_the_controls() {
        let kinds = [Injection::DbFreeze, Injection::ApiHang, Injection::PortHold];
        let a = schedule(7, &kinds, 12, 2);
        assert_eq!(a, schedule(7, &kinds, 12, 2), "the same seed, the same sequence");
        assert_ne!(a, schedule(8, &kinds, 12, 2), "another seed, another sequence");
        assert_eq!(a.len(), 12);
        for k in kinds {
            assert!(a.iter().any(|(f, _)| *f == k), "{k:?} fires");
        }
        assert_eq!(a.iter().filter(|(_, c)| *c).count(), 2);
        assert!(a.iter().all(|(f, c)| !c || *f != Injection::PortHold), "a held port heals by itself: no control");
    }

    #[test]
    fn test_escalated_is_read_from_the_incidents_fields_not_its_words() {
        let open = serde_json::json!({"status": "open", "detail": "a person restarted it by hand", "on_hold": null});
        assert!(!escalated(&open), "words about a person are not an escalation");
        assert!(escalated(&serde_json::json!({"status": "open", "on_hold": "restart_service"})));
        assert!(escalated(&serde_json::json!({"status": "open", "acknowledged": {"by": "ops"}})));
        assert!(escalated(&serde_json::json!({"status": "awaiting_approval"})));
        assert!(escalated(&serde_json::json!({"status": "failed"})));
        assert!(!escalated(&serde_json::json!({"status": "resolved"})));
    }
}
