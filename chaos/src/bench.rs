//! `warden chaos bench`: time to restore, warden against the peer supervisors, in one run on
//! the same demo services. Each part leaves no process behind:
//!
//! 1. warden: `<this exe> run --config <tmp>/node.yaml` (the embedded default node with
//!    governance rate limits raised, so a series of faults measures the repair and not the
//!    brakes); its idle RSS and CPU are sampled before any fault, then `runs` faults of
//!    each kind.
//! 2. the api's own start time: db and model started by hand, the api spawned directly,
//!    spawn to first `200` on `/health`.
//! 3. each peer (Monit, supervisord) supervising the same db, model and api, the same
//!    faults. A fault a peer cannot see at all (a process alive but silent, for
//!    supervisord, which checks no health) is not run against it; the report says so.
//!
//! The harness is a child subreaper, so a service that Monit starts through `sh -c '... &'`
//! is reaped as soon as it dies, like under a real init.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::{Instant, sleep};

use crate::error::BenchError;
use crate::monit::{self, MonitCheck, MonitRc, MonitService};
use crate::procs::{self, Group};
use crate::report::{Idle, Machine, Method, PeerInfo, Report, SeriesReport, Skipped};
use crate::restore::{self, Fault, Probe, Target, Timing};
use crate::services::{self, API_PORT, DB_PORT, DemoFiles, DemoPorts, MODEL_PORT, NODE_PORTS, WARDEN_PORT};
use crate::supervisord::{self, SupervisordConf};

/// A supervisor warden is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    /// Monit (Debian package `monit`): polls health checks.
    Monit,
    /// supervisord (PyPI package `supervisor`): restarts processes that exit.
    Supervisord,
    /// No peer: warden and the api's start time only.
    None,
}

impl Peer {
    pub fn name(self) -> &'static str {
        match self {
            Self::Monit => "monit",
            Self::Supervisord => "supervisord",
            Self::None => "none",
        }
    }

    /// Why this peer cannot see `fault` at all, if it cannot.
    pub fn blind_to(self, fault: Fault) -> Option<&'static str> {
        match self {
            Self::Supervisord if fault.needs_health_check() => {
                Some("supervisord checks no health: a process that is alive but silent (SIGSTOP) is never restarted")
            }
            _ => None,
        }
    }
}

/// Everything a benchmark run needs to know.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub runs: u32,
    pub peers: Vec<Peer>,
    pub faults: Vec<Fault>,
    /// Monit's `set daemon` cycle, seconds.
    pub monit_cycle: u32,
    /// Measure the peers and the api only (for working on the harness).
    pub skip_warden: bool,
    /// How long warden idles before its RSS and CPU are read.
    pub idle: Duration,
    /// Where the report goes; whether scratch files are kept.
    pub outputs: crate::report::Outputs,
    pub timing: Timing,
}

impl BenchConfig {
    /// The command line that reproduces this run.
    pub fn command(&self) -> String {
        let peers: Vec<&str> = self.peers().map(Peer::name).collect();
        let peers = if peers.is_empty() { "none".to_string() } else { peers.join(",") };
        let faults: Vec<&str> = self.faults.iter().map(|f| f.name()).collect();
        let mut cmd = format!("warden chaos bench --runs {} --peers {peers} --faults {}", self.runs, faults.join(","));
        if self.peers.contains(&Peer::Monit) && self.monit_cycle != 1 {
            cmd.push_str(&format!(" --monit-cycle {}", self.monit_cycle));
        }
        if !self.timing.settle.is_zero() {
            cmd.push_str(&format!(" --settle {}", self.timing.settle.as_secs()));
        }
        if self.idle != Duration::from_secs(5) {
            cmd.push_str(&format!(" --idle-secs {}", self.idle.as_secs()));
        }
        if self.skip_warden {
            cmd.push_str(" --skip-warden");
        }
        crate::report::with_outputs(cmd, &self.outputs)
    }

    /// The peers, without `none` and duplicates, in the order given.
    fn peers(&self) -> impl Iterator<Item = Peer> + '_ {
        self.peers
            .iter()
            .enumerate()
            .filter(|&(i, p)| *p != Peer::None && !self.peers[..i].contains(p))
            .map(|(_, &p)| p)
    }
}

/// A peer found on this machine.
struct FoundPeer {
    peer: Peer,
    binary: PathBuf,
}

/// Runs the benchmark and writes `--out` / `--json` when given.
pub async fn run(cfg: &BenchConfig) -> Result<Report, BenchError> {
    let exe = std::env::current_exe().map_err(BenchError::io("locating this executable"))?;
    let mut found = Vec::new();
    for peer in cfg.peers() {
        if let Some(binary) = find_peer(peer, &exe)? {
            found.push(FoundPeer { peer, binary });
        }
    }
    procs::become_subreaper()?;
    let mut report = Report {
        kind: "restore_bench",
        date: crate::report::today_utc(),
        command: cfg.command(),
        machine: Machine::detect(),
        runs: cfg.runs,
        faults: cfg.faults.clone(),
        method: Method {
            request_timeout_ms: cfg.timing.request_timeout.as_millis() as u64,
            poll_every_ms: cfg.timing.poll_every.as_millis() as u64,
            run_limit_s: cfg.timing.run_limit.as_secs(),
            stable_for_ms: cfg.timing.stable_for.as_millis() as u64,
            max_jitter_ms: 1000,
            settle_s: cfg.timing.settle.as_secs(),
        },
        peers: found.iter().map(|f| peer_info(f.peer, &f.binary, cfg.monit_cycle)).collect(),
        api_start: None,
        warden_idle: None,
        results: Vec::new(),
        skipped: Vec::new(),
        notes: Vec::new(),
    };

    if !cfg.skip_warden {
        warden_part(cfg, &exe, &mut report).await?;
    }
    api_start_part(cfg, &exe, &mut report).await?;
    for peer in &found {
        peer_part(cfg, &exe, peer, &mut report).await?;
    }

    if let Some(out) = &cfg.outputs.out {
        crate::report::write_markdown(out, &report)?;
    }
    if let Some(json) = &cfg.outputs.json {
        crate::report::write_json(json, &report)?;
    }
    Ok(report)
}

/// The peer's program on this machine (`None` for `none`), or why it is missing.
pub(crate) fn find_peer(peer: Peer, exe: &Path) -> Result<Option<PathBuf>, BenchError> {
    Ok(match peer {
        Peer::Monit => Some(monit::find_monit()?),
        Peer::Supervisord => Some(supervisord::find(exe)?),
        Peer::None => None,
    })
}

/// The peer's version and how it is set up, for reports.
pub(crate) fn peer_info(peer: Peer, binary: &Path, monit_cycle: u32) -> PeerInfo {
    match peer {
        Peer::Monit => PeerInfo {
            name: "monit".to_string(),
            version: monit::version(binary),
            setup: format!("`set daemon {}`", monit_cycle.max(1)),
        },
        _ => PeerInfo {
            name: peer.name().to_string(),
            version: supervisord::version(binary),
            setup: format!("`startretries={}`", supervisord::START_RETRIES),
        },
    }
}

/// The port of the service a fault hits.
fn port_of(fault: Fault) -> u16 {
    match fault.target() {
        Target::Api => API_PORT,
        Target::Db => DB_PORT,
    }
}

/// warden's half: start the default node, sample it idle, inject the faults, stop it.
async fn warden_part(cfg: &BenchConfig, exe: &Path, report: &mut Report) -> Result<(), BenchError> {
    procs::ensure_ports_free(&NODE_PORTS)?;
    let tmp = procs::temp_dir("warden-bench-node", cfg.outputs.keep_tmp)?;
    let config = tmp.path().join("node.yaml");
    let node_yaml = format!(
        "{}\ngovernance_policies: policy.yaml\n",
        crate::modes::unbudgeted(warden_core::config::DEFAULT_NODE_YAML)
    );
    std::fs::write(&config, node_yaml).map_err(BenchError::io("writing node.yaml"))?;
    std::fs::write(tmp.path().join("policy.yaml"), crate::modes::raised_limits_policy())
        .map_err(BenchError::io("writing policy.yaml"))?;
    let data = tmp.path().join("data");
    let args = ["run", "--config", &config.to_string_lossy(), "--data-dir", &data.to_string_lossy()]
        .map(str::to_string)
        .to_vec();
    let mut node = Group::spawn("warden run", exe, &args, &tmp.path().join("warden.log"))?;
    eprintln!("warden: started node pid {}", node.pid());

    let healthz = Probe::new(&services::warden_health_url(), cfg.timing)?;
    let api = Probe::new(&services::api_health_url(), cfg.timing)?;
    let boot_limit = Duration::from_secs(60);
    let booted = healthz.first_ok(Instant::now(), boot_limit).await.is_some();
    if !booted || !api.wait_stable().await {
        let what = if booted { "the demo api under warden" } else { "warden's API (GET /healthz)" };
        let log = node.log_tail(30);
        node.kill_group().await;
        return Err(BenchError::NotHealthy { what: what.to_string(), secs: boot_limit.as_secs(), log });
    }

    let probes = probe_count().await;
    report.warden_idle = Some(sample_idle(node.pid(), cfg.idle, probes).await);
    eprintln!("warden: idle RSS {} KiB", report.warden_idle.as_ref().map_or(0, |i| i.rss_kib));

    for &fault in &cfg.faults {
        let series = restore::measure_series(&api, port_of(fault), fault, cfg.runs, "warden", exe).await?;
        report.results.push(SeriesReport::new("warden", Some(fault), &series.samples, series.failures)?);
    }

    if !node.is_running() {
        report.notes.push("warden itself exited during the faults (see the run's log)".to_string());
    }
    let clean = node.stop_leader(Duration::from_secs(20)).await;
    let mut left = Vec::new();
    for port in [API_PORT, DB_PORT, MODEL_PORT, WARDEN_PORT] {
        if !procs::holders(port)?.is_empty() {
            left.push(port);
        }
    }
    node.kill_group().await;
    procs::kill_our_listeners(&NODE_PORTS);
    if !clean {
        report.notes.push("warden did not exit within 20 s of SIGTERM and was killed".to_string());
    }
    if !left.is_empty() {
        report.notes.push(format!(
            "after warden exited, ports {left:?} were still held by its services (killed by the harness)"
        ));
    }
    wait_ports_free(&NODE_PORTS).await;
    Ok(())
}

/// How many probes the node under test runs (`GET /api/guardian/probes`), 0 if unknown.
async fn probe_count() -> usize {
    let url = format!("http://127.0.0.1:{WARDEN_PORT}/api/guardian/probes");
    let Ok(client) = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build() else { return 0 };
    let body = match client.get(url).send().await {
        Ok(r) => r.json::<serde_json::Value>().await.ok(),
        Err(_) => None,
    };
    body.and_then(|b| b["probes"].as_array().map(Vec::len)).unwrap_or(0)
}

/// RSS and CPU share of `pid` over an idle window.
async fn sample_idle(pid: u32, window: Duration, probes: usize) -> Idle {
    let ticks0 = procs::stat_of(pid).map_or(0, |s| s.cpu_ticks);
    let start = Instant::now();
    sleep(window).await;
    let elapsed = start.elapsed().as_secs_f64();
    let ticks1 = procs::stat_of(pid).map_or(ticks0, |s| s.cpu_ticks);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().filter(|&hz| hz > 0).unwrap_or(100)
        as f64;
    Idle {
        probes,
        rss_kib: procs::rss_kib(pid).unwrap_or(0),
        cpu_percent: (ticks1.saturating_sub(ticks0)) as f64 / hz / elapsed.max(1e-9) * 100.0,
        window_s: window.as_secs(),
    }
}

/// The api's own start time, with a db and a model started by hand.
async fn api_start_part(cfg: &BenchConfig, exe: &Path, report: &mut Report) -> Result<(), BenchError> {
    procs::ensure_ports_free(&[API_PORT, DB_PORT, MODEL_PORT])?;
    let tmp = procs::temp_dir("warden-bench-api", cfg.outputs.keep_tmp)?;
    let files = DemoFiles::create(tmp.path())?;
    let (mut db, mut model) = files.start_dependencies(exe).await?;
    eprintln!("deps: db pid {}, model pid {}", db.pid(), model.pid());
    let api = Probe::new(&services::api_health_url(), cfg.timing)?;
    let (samples, failures) = api_start_times(exe, &files, &api, cfg.runs).await?;
    report.api_start.replace(SeriesReport::new("api", None, &samples, failures)?);
    db.terminate(Duration::from_secs(5)).await;
    model.terminate(Duration::from_secs(5)).await;
    procs::reap_orphans();
    wait_ports_free(&[API_PORT, DB_PORT, MODEL_PORT]).await;
    Ok(())
}

/// Spawns the api `runs` times by hand: spawn to first 200 on `/health`.
async fn api_start_times(
    exe: &Path,
    files: &DemoFiles,
    probe: &Probe,
    runs: u32,
) -> Result<(Vec<Duration>, Vec<String>), BenchError> {
    let mut samples = Vec::new();
    let mut failures = Vec::new();
    let log = files.dir.join("api-direct.log");
    let limit = Duration::from_secs(30);
    for run in 1..=runs {
        wait_ports_free(&[API_PORT]).await;
        let t0 = Instant::now();
        let mut child = Group::spawn("demo api", exe, &files.api_args(), &log)?;
        match probe.first_ok(t0, limit).await {
            Some(after) => {
                eprintln!("api start {run}/{runs}: {:.3} s", after.as_secs_f64());
                samples.push(after);
            }
            None => {
                let reason = format!("no 200 within {} s{}", limit.as_secs(), child.log_tail(5));
                eprintln!("api start {run}/{runs}: FAILED: {reason}");
                failures.push(reason);
            }
        }
        child.kill_group().await;
    }
    wait_ports_free(&[API_PORT]).await;
    Ok((samples, failures))
}

/// A peer's half: its config for the db, model and api, the peer in the foreground, the
/// faults it can see, then stop everything.
async fn peer_part(cfg: &BenchConfig, exe: &Path, found: &FoundPeer, report: &mut Report) -> Result<(), BenchError> {
    let peer = found.peer;
    let name = peer.name();
    procs::ensure_ports_free(&[API_PORT, DB_PORT, MODEL_PORT])?;
    let tmp = procs::temp_dir(&format!("warden-bench-{name}"), cfg.outputs.keep_tmp)?;
    let dir = tmp.path().to_path_buf();
    // Dropped last: kills what the peer started, on every way out of this function.
    let _guard = Leftovers(DemoPorts::DEFAULT);
    let mut daemon = spawn_peer(peer, &found.binary, exe, &dir, cfg.monit_cycle, DemoPorts::DEFAULT)?;
    eprintln!("{name}: started pid {}", daemon.pid());
    let api = Probe::new(&services::api_health_url(), cfg.timing)?;
    if !api.wait_stable().await {
        let mut log = daemon.log_tail(10);
        for file in [format!("{name}.log"), "demo-api.log".to_string(), "demo-db.log".to_string()] {
            log.push_str(&procs::log_tail(&dir.join(file), 10));
        }
        daemon.kill_group().await;
        return Err(BenchError::NotHealthy {
            what: format!("the demo api under {name}"),
            secs: cfg.timing.stable_limit.as_secs(),
            log,
        });
    }
    for &fault in &cfg.faults {
        if let Some(why) = peer.blind_to(fault) {
            eprintln!("{name} {}: not run: {why}", fault.name());
            report.skipped.push(Skipped { supervisor: name.to_string(), fault, why: why.to_string() });
            continue;
        }
        let series = restore::measure_series(&api, port_of(fault), fault, cfg.runs, name, exe).await?;
        report.results.push(SeriesReport::new(name, Some(fault), &series.samples, series.failures)?);
    }
    daemon.terminate(Duration::from_secs(10)).await;
    Ok(())
}

/// Starts `peer` (its `binary`) supervising the demo db, model and api, from files it
/// writes in `dir`: the same services, checks and start commands for every use.
pub(crate) fn spawn_peer(
    peer: Peer,
    binary: &Path,
    exe: &Path,
    dir: &Path,
    monit_cycle: u32,
    ports: DemoPorts,
) -> Result<Group, BenchError> {
    let name = peer.name();
    let files = DemoFiles::create_on(dir, ports)?;
    let services = [
        ("demo-db", files.db_args(), MonitCheck::Line { port: ports.db, send: "PING".into(), expect: "PONG".into() }),
        ("demo-model", files.model_args(), MonitCheck::Http { port: ports.model, path: "/api/tags".into() }),
        ("demo-api", files.api_args(), MonitCheck::Http { port: ports.api, path: "/health".into() }),
    ];
    let (program, args) = match peer {
        Peer::Monit => {
            let rc = MonitRc {
                cycle_secs: monit_cycle,
                program_timeout_secs: 1,
                dir: dir.to_path_buf(),
                services: services
                    .into_iter()
                    .map(|(name, args, check)| MonitService {
                        name: name.to_string(),
                        pidfile: dir.join(format!("{name}.pid")),
                        program: exe.to_path_buf(),
                        args,
                        log: dir.join(format!("{name}.log")),
                        check,
                    })
                    .collect(),
            };
            let path = dir.join("monitrc");
            monit::write_and_check(binary, &path, &rc.render()?)?;
            (binary.to_path_buf(), monit::args(&path))
        }
        Peer::Supervisord | Peer::None => {
            let conf = SupervisordConf {
                dir: dir.to_path_buf(),
                programs: services
                    .into_iter()
                    .map(|(name, args, _)| supervisord::Program {
                        name: name.to_string(),
                        program: exe.to_path_buf(),
                        args,
                        log: dir.join(format!("{name}.log")),
                    })
                    .collect(),
            };
            let path = dir.join("supervisord.conf");
            services::write_private(&path, &conf.render()?)?;
            (binary.to_path_buf(), supervisord::args(&path))
        }
    };
    Group::spawn(name, &program, &args, &dir.join(format!("{name}.out")))
}

/// Kills what a peer left of the demo services (whatever of ours still listens on their
/// ports), then reaps it; the peers' own processes die with their groups.
pub(crate) struct Leftovers(pub DemoPorts);

impl Drop for Leftovers {
    fn drop(&mut self) {
        procs::kill_our_listeners(&self.0.all());
        procs::reap_orphans();
    }
}

/// Waits (up to 10 s) until nothing listens on `ports`.
async fn wait_ports_free(ports: &[u16]) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let busy = ports.iter().any(|&p| procs::holders(p).is_ok_and(|h| !h.is_empty()));
        if !busy {
            return;
        }
        procs::reap_orphans();
        sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BenchConfig {
        BenchConfig {
            runs: 20,
            peers: vec![Peer::Monit, Peer::Supervisord],
            faults: vec![Fault::Kill, Fault::Hang],
            outputs: crate::report::Outputs {
                out: Some("docs/benchmarks.md".into()),
                json: Some("reports/bench_restore.json".into()),
                keep_tmp: false,
            },
            monit_cycle: 1,
            skip_warden: false,
            idle: Duration::from_secs(5),
            timing: Timing::default(),
        }
    }

    #[test]
    fn test_command_reproduces_the_run() {
        assert_eq!(
            config().command(),
            "warden chaos bench --runs 20 --peers monit,supervisord --faults kill,hang \
             --out docs/benchmarks.md --json reports/bench_restore.json"
        );
        let mut cfg = config();
        cfg.peers = vec![Peer::Monit, Peer::None, Peer::Monit];
        cfg.monit_cycle = 30;
        cfg.faults = vec![Fault::Hang];
        cfg.outputs.out = None;
        cfg.outputs.json = None;
        cfg.skip_warden = true;
        cfg.timing.settle = Duration::from_secs(61);
        assert_eq!(
            cfg.command(),
            "warden chaos bench --runs 20 --peers monit --faults hang --monit-cycle 30 --settle 61 --skip-warden"
        );
        cfg.peers = vec![Peer::None];
        assert!(cfg.command().contains("--peers none"));
    }

    #[test]
    fn test_supervisord_is_blind_to_silent_processes_only() {
        for fault in [Fault::Hang, Fault::Freeze] {
            assert!(Peer::Supervisord.blind_to(fault).is_some());
            assert!(Peer::Monit.blind_to(fault).is_none());
        }
        for fault in [Fault::Kill, Fault::Hold5, Fault::Hold20] {
            assert!(Peer::Supervisord.blind_to(fault).is_none());
        }
    }
}
