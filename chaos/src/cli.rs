//! `warden chaos ...` subcommands: argument parsing and the hand-off to the library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::bench::{self, BenchConfig, Peer};
use crate::probe_cost::{self, ProbeCostConfig};
use crate::reliability::{self, ReliabilityConfig};
use crate::restore::{Fault, Timing};

#[derive(clap::Subcommand)]
pub enum ChaosCommand {
    /// Time to restore: warden and the peer supervisors (Monit, supervisord) on the same
    /// demo services, in one run.
    Bench(BenchArgs),
    /// Faults to warden itself on the default node: a flood of idle connections, and
    /// repeated kill -9 with the time back to healthy.
    Reliability(ReliabilityArgs),
    /// What probing costs: warden's CPU and RSS with all 20 default probes at 1 Hz, and
    /// optionally Monit checking the same services in the same window.
    Probes(ProbesArgs),
    /// What trace export costs: two 1 Hz nodes healing the same faults in one window, one
    /// exporting its traces with OTLP/HTTP to a receiver run by the harness.
    Tracing(TracingArgs),
    /// Make one real fault in a running node (its addresses from its config), then time
    /// its recovery with the harness's own checks. A fault that cannot be made here, or a
    /// target that does not exist, is refused and changes nothing.
    Inject(InjectArgs),
    /// MTTR per failure mode on the default node: every fault `--runs` times, timed by the
    /// harness from the fault to its own checks passing again.
    Modes(ModesArgs),
    /// Many faults in a row at a fixed interval (seeded), each one accounted for: the
    /// node's incident, the harness's own restore check, playbooks, harmful actions; control
    /// faults that must not heal; a silent failure fails the soak. One JSON line per fault
    /// as it ends, a JSON report and a Markdown summary.
    Soak(SoakArgs),
    /// The long half of an injection, run by `inject` in a process of its own.
    /// Draw a soak's time-to-restore plot (SVG) from its fault records (`.jsonl`), as a
    /// soak that was killed leaves them; the soak draws its own when it ends.
    PlotSoak {
        /// The `.jsonl` of fault records.
        records: PathBuf,
        /// The SVG (default: beside the records).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    #[command(subcommand, hide = true)]
    Helper(crate::helper::HelperCommand),
}

#[derive(clap::Args)]
pub struct ModesArgs {
    /// Injections per fault.
    #[arg(long, default_value_t = 10)]
    runs: u32,
    /// Faults, comma-separated (default: one per mode the default node can have).
    #[arg(long, value_enum, value_delimiter = ',')]
    faults: Vec<crate::inject::Injection>,
    /// Run against this node config (with the files beside it) instead of the default
    /// node, e.g. the reference node of real services; faults that fit none of its
    /// services are skipped and said so.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    #[command(flatten)]
    outputs: crate::report::Outputs,
}

#[derive(clap::Args)]
pub struct SoakArgs {
    /// Faults to make (default: `--duration` over `--interval`, else 168: the plan's seven
    /// days at one an hour).
    #[arg(long)]
    faults: Option<u32>,
    /// How long the soak runs (with `--interval`: how many faults), e.g. `7d`, `2h`.
    #[arg(long, value_parser = duration_arg)]
    duration: Option<std::time::Duration>,
    /// Time from one fault to the next, e.g. `1h`, `20s`.
    #[arg(long, value_parser = duration_arg, default_value = "20s")]
    interval: std::time::Duration,
    /// Seed of the fault sequence (the same seed, the same sequence).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fault kinds to choose from (default: every one that applies to the node).
    #[arg(long, value_enum, value_delimiter = ',')]
    kinds: Vec<crate::inject::Injection>,
    /// Control faults (healing paused for the target: they must not heal). A soak with
    /// none fails: its verifier was not checked.
    #[arg(long, default_value_t = 1)]
    controls: u32,
    /// A fault neither restored nor escalated within this is a silent failure.
    #[arg(long, value_parser = duration_arg, default_value = "2m")]
    silent_after: std::time::Duration,
    /// A node config (with the files beside it) instead of the default node.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The JSON report; the fault records (`.jsonl`) and the summary (`.md`) go beside it.
    #[arg(long, default_value = "reports/soak_test_7day.json")]
    out: PathBuf,
    /// Keep the node's scratch directory.
    #[arg(long)]
    keep_tmp: bool,
    /// Carry on a soak that was stopped or killed (its `.jsonl` beside `--out`), with the
    /// same sequence options: its records are kept, the rest is made on a fresh node.
    #[arg(long)]
    resume: bool,
    /// Give the same sequence to a peer supervisor on the demo services after warden's
    /// part (repeatable): `monit` (Debian), `supervisord` (PyPI).
    #[arg(long, value_enum)]
    peer: Vec<crate::bench::Peer>,
    /// Soak the node already running at the address of `--config` (or of the default
    /// node), started elsewhere (systemd, by hand), instead of starting one: its own policy
    /// and limits, left running. `db-corrupt` and `node-memory` only when `--kinds` names them.
    #[arg(long, conflicts_with_all = ["resume", "peer", "keep_tmp"])]
    attach: bool,
    /// The attached node's data dir (default: the one it says it uses).
    #[arg(long, requires = "attach")]
    data_dir: Option<PathBuf>,
    /// Where the soak's alert receiver listens (default: a free loopback port); an attached
    /// node's alerts reach it when its `alerts.webhooks` names `http://ADDR/alerts`.
    #[arg(long)]
    alerts_listen: Option<std::net::SocketAddr>,
}

#[derive(clap::Args)]
pub struct InjectArgs {
    #[arg(value_enum)]
    fault: crate::inject::Injection,
    /// The service to hit (default: the one the fault is about: the database, the model
    /// server, the application service).
    #[arg(long)]
    target: Option<String>,
    /// How long the fault lasts: a held port, a slow boot, a cut link (put back up after
    /// it), slow answers.
    #[arg(long, default_value_t = 5)]
    secs: u64,
    /// The interface `link-down` takes down.
    #[arg(long)]
    interface: Option<String>,
    /// Node config file (default: the one node running here, else the embedded demo node).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The node's data dir (default: the one the node answering at the config's address
    /// says it uses, else the config's).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// How long to wait for recovery, seconds.
    #[arg(long, default_value_t = 120)]
    verify_secs: u64,
    /// Inject and return at once, without waiting for recovery.
    #[arg(long)]
    no_verify: bool,
    /// Say what would be done and whether it can be done here; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct ProbesArgs {
    /// The measured window, seconds.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// Seconds between the node being healthy and the window.
    #[arg(long, default_value_t = 5)]
    warmup_secs: u64,
    /// Measure a peer in the same window (needs `monit`: `.ci/install-deps.sh --bench`).
    #[arg(long, value_enum)]
    peer: Option<Peer>,
    #[command(flatten)]
    outputs: crate::report::Outputs,
}

#[derive(clap::Args)]
pub struct TracingArgs {
    /// The measured window of each round, seconds.
    #[arg(long, default_value_t = 120)]
    secs: u64,
    /// Seconds between hangs of both nodes' api.
    #[arg(long, default_value_t = 10)]
    fault_every: u64,
    /// Rounds; each starts both nodes afresh and swaps which one exports.
    #[arg(long, default_value_t = 2)]
    rounds: u32,
    /// Seconds between both nodes being healthy and the window.
    #[arg(long, default_value_t = 5)]
    warmup_secs: u64,
    #[command(flatten)]
    outputs: crate::report::Outputs,
}

#[derive(clap::Args)]
pub struct ReliabilityArgs {
    /// Idle connections held open against warden's API during the flood.
    #[arg(long, default_value_t = 5000)]
    connections: usize,
    /// API requests timed before and during the flood.
    #[arg(long, default_value_t = 200)]
    requests: u32,
    /// Times warden is killed with SIGKILL and started again.
    #[arg(long, default_value_t = 10)]
    restarts: u32,
    #[command(flatten)]
    outputs: crate::report::Outputs,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Faults of each kind per supervisor.
    #[arg(long, default_value_t = 20)]
    runs: u32,
    /// The supervisors to compare with, comma-separated (`none` for warden alone).
    #[arg(long, alias = "peer", value_enum, value_delimiter = ',', default_values = ["monit", "supervisord"])]
    peers: Vec<Peer>,
    /// Faults to inject, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["kill", "hang", "hold5", "hold20", "freeze"])]
    faults: Vec<Fault>,
    /// Monit's poll cycle (`set daemon`), seconds.
    #[arg(long, default_value_t = 1)]
    monit_cycle: u32,
    /// Extra seconds between two faults, for supervisors whose crash-loop window would
    /// otherwise count the faults as one loop (warden's default node: 5 restarts in 60 s).
    #[arg(long, default_value_t = 0)]
    settle: u64,
    /// Seconds warden idles before its RSS and CPU are read.
    #[arg(long, default_value_t = 5)]
    idle_secs: u64,
    /// Skip warden: measure the api's start time and the peer only.
    #[arg(long)]
    skip_warden: bool,
    #[command(flatten)]
    outputs: crate::report::Outputs,
}

/// A duration as people write it (`20s`, `1h`, `7d`; a day is 24 hours).
fn duration_arg(text: &str) -> Result<std::time::Duration, String> {
    let span: jiff::Span = text.trim().parse().map_err(|e| format!("`{text}` is not a duration (20s, 1h, 7d): {e}"))?;
    let d = span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()).map_err(|e| format!("`{text}`: {e}"))?;
    std::time::Duration::try_from(d).map_err(|_| format!("`{text}` must be positive"))
}

impl ChaosCommand {
    /// The node `inject` goes to when it names none (no `--config`, no `--data-dir`): the
    /// one running here, by its config file (`None`: the embedded default) and data dir.
    pub fn default_node(&mut self, config: Option<PathBuf>, data_dir: PathBuf) {
        if let ChaosCommand::Inject(a) = self
            && a.config.is_none()
            && a.data_dir.is_none()
        {
            a.config = config;
            a.data_dir = Some(data_dir);
        }
    }
}

pub async fn run(cmd: ChaosCommand) -> anyhow::Result<()> {
    match cmd {
        ChaosCommand::Bench(args) => run_bench(args).await,
        ChaosCommand::Reliability(args) => run_reliability(args).await,
        ChaosCommand::Probes(args) => run_probe_cost(args).await,
        ChaosCommand::Tracing(args) => run_trace_cost(args).await,
        ChaosCommand::Inject(args) => tokio::task::spawn_blocking(move || run_inject(args)).await?,
        ChaosCommand::Modes(args) => {
            anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
            let injections =
                if args.faults.is_empty() { crate::modes::DEFAULT_INJECTIONS.to_vec() } else { args.faults };
            let cfg =
                crate::modes::ModesConfig { runs: args.runs, injections, config: args.config, outputs: args.outputs };
            let report = match until_signal(tokio::task::spawn_blocking(move || crate::modes::run(&cfg))).await {
                Ok(r) => r??,
                Err(e) => {
                    // No destructor runs on this path: the node and the link go here.
                    crate::modes::kill_node();
                    crate::link::remove_leftover();
                    crate::modes::remove_leftover_mounts();
                    return Err(e);
                }
            };
            println!("{}", report.markdown());
            Ok(())
        }
        ChaosCommand::Soak(args) => {
            let faults = match (args.faults, args.duration) {
                (Some(n), _) => n,
                (None, Some(d)) => (d.as_secs_f64() / args.interval.as_secs_f64().max(0.001)).round() as u32,
                (None, None) => 168,
            };
            anyhow::ensure!(faults > 0, "a soak needs at least one fault");
            let cfg = crate::soak::SoakConfig {
                config: args.config,
                faults,
                interval: args.interval,
                seed: args.seed,
                kinds: args.kinds,
                controls: args.controls,
                silent_after: args.silent_after,
                out: args.out,
                keep_tmp: args.keep_tmp,
                resume: args.resume,
                peers: args.peer.into_iter().filter(|p| *p != crate::bench::Peer::None).collect(),
                attach: args.attach,
                data_dir: args.data_dir,
                alerts_listen: args.alerts_listen,
            };
            let stop_file = cfg.stop_file();
            let mut task = tokio::task::spawn_blocking(move || crate::soak::run(&cfg));
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("installing the SIGTERM handler")?;
            // The first signal ends the soak after the fault in progress, with its report;
            // a second one stops everything at once.
            let mut asked = false;
            let report = loop {
                let signalled = tokio::select! {
                    r = &mut task => break r??,
                    _ = tokio::signal::ctrl_c() => true,
                    _ = term.recv() => true,
                };
                if signalled && asked {
                    crate::modes::kill_node();
                    crate::modes::remove_leftover_mounts();
                    anyhow::bail!("stopped at once; all started processes were killed");
                }
                asked = true;
                crate::soak::STOP.store(true, std::sync::atomic::Ordering::SeqCst);
                eprintln!(
                    "stopping after the fault in progress (a second signal stops at once; `touch {}` does the same as the first)",
                    stop_file.display()
                );
            };
            println!("{}", report.markdown());
            anyhow::ensure!(report.failed.is_empty(), "the soak failed: {}", report.failed.join("; "));
            Ok(())
        }
        ChaosCommand::PlotSoak { records, out } => {
            let out = out.unwrap_or_else(|| records.with_extension("svg"));
            let n = crate::soak_plot::plot_records(&records, &out).map_err(anyhow::Error::msg)?;
            println!("{n} faults drawn into {}", out.display());
            Ok(())
        }
        ChaosCommand::Helper(cmd) => {
            // A signal asks it to put back what it changed, not to die with it changed.
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("installing the SIGTERM handler")?;
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                crate::helper::STOP.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            tokio::task::spawn_blocking(move || crate::helper::run(cmd)).await?
        }
    }
}

fn run_inject(args: InjectArgs) -> anyhow::Result<()> {
    use crate::inject::{InjectOptions, prepare, wait_restored};
    let mut config =
        crate::inject::running_config(args.config.as_deref(), args.data_dir.as_deref()).map_err(anyhow::Error::msg)?;
    // Without --data-dir, the node that answers at the config's address says where its data
    // is (it may have been started with a --data-dir of its own).
    if args.data_dir.is_none()
        && let Some(dir) = crate::inject::node_data_dir(&config)
        && dir != config.data_dir
    {
        config = crate::inject::running_config(args.config.as_deref(), Some(&dir)).map_err(anyhow::Error::msg)?;
    }
    let opts = InjectOptions { target: args.target.clone(), secs: args.secs, interface: args.interface.clone() };
    let prepared = prepare(&config, &config.data_dir, args.fault, &opts)?;
    if args.dry_run {
        let checks: Vec<String> = prepared.checks.iter().map(ToString::to_string).collect();
        if args.json {
            println!(
                "{}",
                serde_json::json!({"fault": args.fault.name(), "target": prepared.target, "would": prepared.what, "verify": checks})
            );
        } else {
            println!("would {} (verified by: {})", prepared.what, checks.join("; "));
        }
        return Ok(());
    }
    let t0 = std::time::Instant::now();
    let (injected, checks) = prepared.inject()?;
    if !args.json {
        println!("injected {} on `{}`: {}", injected.fault, injected.target, injected.what);
    }
    let outcome =
        if args.no_verify { None } else { Some(wait_restored(&checks, t0, Duration::from_secs(args.verify_secs))) };
    let restored_ms = outcome.as_ref().and_then(|o| o.as_ref().ok()).map(|d| d.as_millis() as u64);
    let error = outcome.as_ref().and_then(|o| o.as_ref().err()).cloned();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "fault": injected.fault,
                "mode": injected.mode,
                "target": injected.target,
                "what": injected.what,
                "injected_unix_ms": injected.at_unix_ms,
                "helper_pid": injected.helper_pid,
                "verified": !args.no_verify,
                "restored": restored_ms.is_some(),
                "restored_after_ms": restored_ms,
                "error": error,
                "checks": checks.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        );
    } else if let Some(ms) = restored_ms {
        println!("restored after {ms} ms (by the harness's own checks)");
    }
    match error {
        Some(e) => anyhow::bail!("{e}"),
        None => Ok(()),
    }
}

async fn run_probe_cost(args: ProbesArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.secs > 0, "--secs must be at least 1");
    anyhow::ensure!(
        args.peer != Some(Peer::Supervisord),
        "supervisord checks no health, so it has no probes to compare; use --peer monit"
    );
    let cfg = ProbeCostConfig {
        window: Duration::from_secs(args.secs),
        warmup: Duration::from_secs(args.warmup_secs),
        monit: matches!(args.peer, Some(Peer::Monit)),
        outputs: args.outputs,
    };
    let report = until_signal(probe_cost::run(&cfg)).await?.context("probe cost benchmark failed")?;
    println!("{}", report.markdown());
    Ok(())
}

async fn run_trace_cost(args: TracingArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    anyhow::ensure!(args.fault_every > 0, "--fault-every must be at least 1");
    anyhow::ensure!(args.secs >= args.fault_every, "--secs must be at least --fault-every");
    let cfg = crate::trace_cost::TraceCostConfig {
        window: Duration::from_secs(args.secs),
        warmup: Duration::from_secs(args.warmup_secs),
        fault_every: Duration::from_secs(args.fault_every),
        rounds: args.rounds,
        outputs: args.outputs,
    };
    let report = until_signal(crate::trace_cost::run(&cfg)).await?.context("tracing benchmark failed")?;
    println!("{}", report.markdown());
    Ok(())
}

async fn run_reliability(args: ReliabilityArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.requests > 0, "--requests must be at least 1");
    let cfg = ReliabilityConfig {
        connections: args.connections,
        requests: args.requests,
        restarts: args.restarts,
        outputs: args.outputs,
    };
    let report = until_signal(reliability::run(&cfg)).await?.context("reliability benchmark failed")?;
    println!("{}", report.markdown());
    Ok(())
}

/// Runs `fut` until it ends or Ctrl-C/SIGTERM arrives. On a signal the future is dropped:
/// every process group it owns is killed by its guard on the way out.
async fn until_signal<T>(fut: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = fut => Ok(r),
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted; all started processes were killed"),
        _ = term.recv() => anyhow::bail!("terminated; all started processes were killed"),
    }
}

async fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    anyhow::ensure!(!args.faults.is_empty(), "--faults needs at least one fault");
    let mut faults = args.faults;
    faults.dedup();
    let cfg = BenchConfig {
        runs: args.runs,
        peers: args.peers,
        faults,
        outputs: args.outputs,
        monit_cycle: args.monit_cycle,
        skip_warden: args.skip_warden,
        idle: Duration::from_secs(args.idle_secs),
        timing: Timing { settle: Duration::from_secs(args.settle), ..Timing::default() },
    };
    let report = until_signal(bench::run(&cfg)).await?.context("restore benchmark failed")?;
    println!("{}", report.markdown());
    Ok(())
}
