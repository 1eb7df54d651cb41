//! `warden slo ...`: the service level objectives' files for Prometheus.

use std::path::PathBuf;
use std::process::ExitCode;
use warden_core::slo::{SloKind, prometheus_rules};

#[derive(clap::Subcommand)]
pub enum SloCommand {
    /// Write a Prometheus rule file for the objectives (recording rules and multiwindow,
    /// multi-burn-rate alerts), with the targets of the node's config.
    Rules(RulesArgs),
}

#[derive(clap::Args)]
pub struct RulesArgs {
    #[command(flatten)]
    node: crate::load::NodeArgs,
    /// Where to write it (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(cmd: SloCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SloCommand::Rules(args) => {
            let loaded = match args.node.load() {
                Ok(l) => l,
                Err(problems) => {
                    eprintln!("error: invalid configuration:\n{problems}");
                    return Ok(ExitCode::from(crate::node::EXIT_CONFIG));
                }
            };
            let targets: Vec<(SloKind, f64)> =
                SloKind::ALL.iter().map(|&k| (k, k.target(&loaded.config.slo))).collect();
            let text = prometheus_rules(&targets);
            match &args.out {
                Some(path) => {
                    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                }
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
