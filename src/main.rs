//! `warden`: the command line. Parses arguments, sets up logging and hands off to the
//! node, the demo services, the audit tools or the chaos harness.

mod demo;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "warden", version, about = "A self-healing, governed supervisor for one node")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the embedded demo services (started by the default node).
    #[command(subcommand)]
    Demo(demo::DemoCommand),
    /// Drive a node from outside: fault injection and timing harness.
    #[command(subcommand)]
    Chaos(warden_chaos::cli::ChaosCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.command {
        Some(Command::Demo(cmd)) => rt.block_on(demo::run(cmd)),
        Some(Command::Chaos(cmd)) => rt.block_on(warden_chaos::cli::run(cmd)),
        None => Ok(()),
    }
}
