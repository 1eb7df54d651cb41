//! `warden probes check [NAME...]`: runs probe checks once, from this shell, and prints
//! what each found: the way to try a probe's settings (or this machine's permissions, such
//! as ICMP) before a node relies on it. Nothing is started and nothing is stored.
//!
//! Without `--config`, the probes are those of the one node running here (the config and
//! data dir it published), so a user checks their own node's probes, not the demo's.
//!
//! Port-owner checks need to know the service's processes: they are read from the run
//! records a node keeps in its data dir, so on a machine where the node runs, its own
//! listeners are not reported as strangers.

use crate::load::NodeArgs;
use serde_json::json;
use std::process::ExitCode;
use warden_actors::data_dir::DataDir;
use warden_actors::guardian::checks::Prober;
use warden_actors::guardian::service_table::ServiceTable;
use warden_actors::process::record;
use warden_core::config::ProbeSpec;
use warden_core::probe::Outcome;

#[derive(clap::Subcommand)]
pub enum ProbesCommand {
    /// Run probe checks once and print each outcome; exit 1 unless every check passed.
    Check(CheckArgs),
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Probes to run (default: all of the config's).
    names: Vec<String>,
    #[command(flatten)]
    node: NodeArgs,
    /// One JSON object per probe instead of the table.
    #[arg(long)]
    json: bool,
}

/// The node whose probes are checked: `--config`/`--data-dir` as given; without them, the
/// one node running here (its config file and data dir, as it published them), else the
/// embedded default. Several running: the user must say which.
fn chosen_node(args: &NodeArgs) -> anyhow::Result<(NodeArgs, Option<String>)> {
    if args.config.is_some() || args.data_dir.is_some() {
        return Ok((args.clone(), None));
    }
    Ok(match crate::runtime_file::the_running_node()? {
        None => (args.clone(), None),
        Some(one) => (
            NodeArgs { config: one.config.clone(), data_dir: Some(one.data_dir.clone()), url: None },
            Some(format!("checking the probes of the running node `{}` (pid {})", one.name, one.pid)),
        ),
    })
}

pub async fn run(cmd: ProbesCommand) -> anyhow::Result<ExitCode> {
    let ProbesCommand::Check(args) = cmd;
    let (node, said) = chosen_node(&args.node)?;
    if let Some(said) = said {
        eprintln!("{said}");
    }
    let loaded = node.load().map_err(|p| anyhow::anyhow!("invalid configuration:\n{p}"))?;
    let config = loaded.config;
    let unknown: Vec<&String> = args.names.iter().filter(|n| !config.probes.iter().any(|p| &&p.name == n)).collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = config.probes.iter().map(|p| p.name.as_str()).collect();
        anyhow::bail!("no probe named {unknown:?} in the config (probes: {})", known.join(", "));
    }
    let chosen: Vec<&ProbeSpec> =
        config.probes.iter().filter(|p| args.names.is_empty() || args.names.contains(&p.name)).collect();
    let table = ServiceTable::new(&config.services);
    let run_dir = DataDir::new(&config.data_dir).run_dir();
    {
        let mut t = table.lock();
        for (name, entry) in t.services.iter_mut() {
            if let Some(r) = record::read(&run_dir, name.as_str()).filter(|r| r.is_running()) {
                entry.pid = Some(r.pid);
                entry.start_ticks = Some(r.start_ticks);
            }
        }
    }
    let mut all_passed = true;
    if !args.json {
        println!("{:<20} {:<5} {:<12} {:<11} {:>10}  detail", "probe", "layer", "target", "result", "latency");
    }
    for spec in chosen {
        let mut prober = Prober::new(spec, table.clone());
        let outcome = prober.check().await;
        all_passed &= matches!(outcome, Outcome::Pass { .. });
        let (result, latency, detail) = match &outcome {
            Outcome::Pass { latency, warning } => {
                ("ok", Some(latency.as_secs_f64() * 1000.0), warning.clone().unwrap_or_default())
            }
            Outcome::Fail(f) => ("fail", None, f.to_string()),
            Outcome::Unsupported(why) => ("unsupported", None, why.clone()),
        };
        let method = prober.method();
        if args.json {
            let failure = match &outcome {
                Outcome::Fail(f) => serde_json::to_value(f).unwrap_or_default(),
                _ => serde_json::Value::Null,
            };
            let line = json!({
                "probe": spec.name,
                "layer": spec.layer,
                "target": spec.target,
                "kind": spec.check.kind(),
                "method": method,
                "result": result,
                "latency_ms": latency,
                "failure": failure,
                "detail": detail,
            });
            println!("{line}");
        } else {
            let latency = latency.map(|ms| format!("{ms:.2} ms")).unwrap_or_else(|| "-".into());
            let detail = match method {
                Some(m) if detail.is_empty() => m,
                Some(m) => format!("{detail} [{m}]"),
                None => detail,
            };
            println!(
                "{:<20} {:<5} {:<12} {:<11} {:>10}  {detail}",
                spec.name,
                spec.layer.as_str(),
                spec.target.as_str(),
                result,
                latency
            );
        }
    }
    Ok(if all_passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
