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
    /// Time to restore: warden and a peer supervisor on the same demo api, in one run.
    Bench(BenchArgs),
    /// Faults to warden itself on the default node: a flood of idle connections, and
    /// repeated kill -9 with the time back to healthy.
    Reliability(ReliabilityArgs),
    /// What probing costs: warden's CPU and RSS with all 18 default probes at 1 Hz, and
    /// optionally Monit checking the same services in the same window.
    Probes(ProbesArgs),
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
    /// Markdown file whose probe-cost section is (re)written.
    #[arg(long)]
    out: Option<PathBuf>,
    /// JSON file with the figures.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the temporary data directory and logs.
    #[arg(long)]
    keep_tmp: bool,
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
    /// Markdown file whose reliability section is (re)written.
    #[arg(long)]
    out: Option<PathBuf>,
    /// JSON file with every sample.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the temporary data directory and logs.
    #[arg(long)]
    keep_tmp: bool,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Faults of each kind per supervisor.
    #[arg(long, default_value_t = 20)]
    runs: u32,
    /// The supervisor to compare with.
    #[arg(long, value_enum, default_value = "monit")]
    peer: Peer,
    /// Faults to inject, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["kill", "hang"])]
    faults: Vec<Fault>,
    /// Markdown file whose restore section is (re)written.
    #[arg(long)]
    out: Option<PathBuf>,
    /// JSON file with every sample.
    #[arg(long)]
    json: Option<PathBuf>,
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
    /// Keep the temporary directories (logs, monitrc).
    #[arg(long)]
    keep_tmp: bool,
}

pub async fn run(cmd: ChaosCommand) -> anyhow::Result<()> {
    match cmd {
        ChaosCommand::Bench(args) => run_bench(args).await,
        ChaosCommand::Reliability(args) => run_reliability(args).await,
        ChaosCommand::Probes(args) => run_probe_cost(args).await,
    }
}

async fn run_probe_cost(args: ProbesArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.secs > 0, "--secs must be at least 1");
    let cfg = ProbeCostConfig {
        window: Duration::from_secs(args.secs),
        warmup: Duration::from_secs(args.warmup_secs),
        monit: matches!(args.peer, Some(Peer::Monit)),
        out: args.out,
        json: args.json,
        keep_tmp: args.keep_tmp,
    };
    let report = until_signal(probe_cost::run(&cfg)).await?.context("probe cost benchmark failed")?;
    println!("{}", report.markdown());
    Ok(())
}

async fn run_reliability(args: ReliabilityArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.requests > 0, "--requests must be at least 1");
    let cfg = ReliabilityConfig {
        connections: args.connections,
        requests: args.requests,
        restarts: args.restarts,
        out: args.out,
        json: args.json,
        keep_tmp: args.keep_tmp,
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
        peer: args.peer,
        faults,
        out: args.out,
        json: args.json,
        monit_cycle: args.monit_cycle,
        skip_warden: args.skip_warden,
        idle: Duration::from_secs(args.idle_secs),
        keep_tmp: args.keep_tmp,
        timing: Timing { settle: Duration::from_secs(args.settle), ..Timing::default() },
    };
    let report = until_signal(bench::run(&cfg)).await?.context("restore benchmark failed")?;
    println!("{}", report.markdown());
    Ok(())
}
