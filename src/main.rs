//! `warden`: the command line. Parses arguments, sets up logging and hands off to the
//! node, the demo services, the audit tools or the chaos harness.

mod audit_cmd;
mod demo;
mod http;
mod node;
mod telemetry;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "warden", version, about = "A self-healing, governed supervisor for one node")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Supervise a node (the embedded default demo node unless --config is given).
    Run(node::RunArgs),
    /// Work with the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run the embedded demo services (started by the default node).
    #[command(subcommand)]
    Demo(demo::DemoCommand),
    /// Drive a node from outside: fault injection and timing harness.
    #[command(subcommand)]
    Chaos(warden_chaos::cli::ChaosCommand),
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain; report the first broken entry or how many verified.
    Verify {
        /// The node's data dir (default: the config's, `.warden-data`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        None => rt.block_on(node::run(node::RunArgs::default())),
        Some(Command::Run(args)) => rt.block_on(node::run(args)),
        Some(Command::Audit(AuditCommand::Verify { data_dir })) => audit_cmd::verify(data_dir),
        Some(Command::Demo(cmd)) => rt.block_on(demo::run(cmd)).map(|_| ExitCode::SUCCESS),
        Some(Command::Chaos(cmd)) => rt.block_on(warden_chaos::cli::run(cmd)).map(|_| ExitCode::SUCCESS),
    };
    // Don't wait for blocking tasks (a hung probe) on the way out.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
