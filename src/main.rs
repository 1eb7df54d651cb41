//! `warden`: the command line. Parses arguments, sets up logging and hands off to the
//! node, the demo services, the audit tools or the chaos harness.

mod api_client;
mod audit_cmd;
mod demo;
mod governance_cmd;
mod healing_cmd;
mod http;
mod incidents_cmd;
mod load;
mod node;
mod otlp;
mod playbooks_cmd;
mod probes_cmd;
mod runtime_file;
mod slo_cmd;
mod store_cmd;
mod systemd;
mod telemetry;
mod tokens_cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// The system allocator, counted: what is allocated and not freed is on `/metrics`
/// (`warden_heap_allocated_bytes`), so a soak tells a leak from memory the allocator keeps.
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

#[derive(Parser)]
#[command(name = "warden", version, about = "A self-healing, governed supervisor for one node")]
struct Cli {
    /// How warden logs on stderr: `human` lines, or `json` (one object per line).
    #[arg(long, global = true, value_enum, default_value = "human")]
    log_format: telemetry::LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Supervise a node (the embedded default demo node unless --config is given).
    Run(node::RunArgs),
    /// Check a node config and the files it names; start nothing (like `monit -t`).
    CheckConfig(load::NodeArgs),
    /// Run probe checks once from this shell.
    #[command(subcommand)]
    Probes(probes_cmd::ProbesCommand),
    /// The approval queue: list, approve, reject (through the running node's API).
    #[command(subcommand)]
    Approvals(governance_cmd::ApprovalsCommand),
    /// Restart, stop, start or release a service, as an operator, through governance.
    #[command(subcommand)]
    Services(governance_cmd::ServicesCommand),
    /// API tokens: make one for a person or a program.
    #[command(subcommand)]
    Tokens(tokens_cmd::TokensCommand),
    /// Automatic repair: what blocks or holds it; pause and resume it (the node's or a
    /// service's).
    #[command(subcommand)]
    Healing(healing_cmd::HealingCommand),
    /// Work with the audit trail.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// The playbook catalog: list, show, run (or dry-run), roll back, audit, docs.
    #[command(subcommand)]
    Playbooks(playbooks_cmd::PlaybooksCommand),
    /// The running node's incidents: list (filtered) and show one.
    #[command(subcommand)]
    Incidents(incidents_cmd::IncidentsCommand),
    /// Service level objectives: the Prometheus rule file for their alerts.
    #[command(subcommand)]
    Slo(slo_cmd::SloCommand),
    /// Check or repair a stopped node's store.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// Run the embedded demo services (started by the default node).
    #[command(subcommand)]
    Demo(demo::DemoCommand),
    /// Drive a node from outside: fault injection and timing harness.
    #[command(subcommand)]
    Chaos(warden_chaos::cli::ChaosCommand),
    /// Internal: the first process of every service (joins its cgroup, sets limits and
    /// identity, then execs the program). Started by warden, not by people.
    #[command(hide = true)]
    Launch {
        /// The launch plan (JSON), from warden.
        plan: String,
        /// The program and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The launcher execs the service at once: no logging set-up, no runtime.
    if let Some(Command::Launch { plan, command }) = &cli.command {
        let (program, args) = command.split_first().map_or(("", &[][..]), |(p, a)| (p.as_str(), a));
        let code = warden_actors::process::launch::run(plan, program, args);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    warden_actors::metrics::count_heap_with(|| ALLOCATOR.allocated());
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Only a node traces; the other commands are its clients.
    let runs_node = matches!(cli.command, None | Some(Command::Run(_)));
    let export = (runs_node && otlp::wanted()).then(|| otlp::start(rt.handle().clone()));
    let (export, export_error) = match export {
        Some(Ok(e)) => (Some(e), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    telemetry::init(cli.log_format, export.as_ref());
    if let Some(e) = &export {
        e.announce();
    }
    if let Some(e) = export_error {
        // Observability never stops a node from healing: it runs without traces.
        tracing::error!(error = %e, "traces are not exported");
    }
    let result = match cli.command {
        None => rt.block_on(node::run(node::RunArgs::default())),
        Some(Command::Run(args)) => rt.block_on(node::run(args)),
        Some(Command::CheckConfig(args)) => Ok(check_config(args)),
        Some(Command::Audit(cmd)) => rt.block_on(audit_cmd::run(cmd)),
        Some(Command::Playbooks(cmd)) => rt.block_on(playbooks_cmd::run(cmd)),
        Some(Command::Incidents(cmd)) => rt.block_on(incidents_cmd::run(cmd)),
        Some(Command::Store(cmd)) => rt.block_on(store_cmd::run(cmd)),
        Some(Command::Probes(cmd)) => rt.block_on(probes_cmd::run(cmd)),
        Some(Command::Tokens(cmd)) => tokens_cmd::run(cmd),
        Some(Command::Slo(cmd)) => slo_cmd::run(cmd),
        Some(Command::Approvals(cmd)) => rt.block_on(governance_cmd::approvals(cmd)),
        Some(Command::Services(cmd)) => rt.block_on(governance_cmd::services(cmd)),
        Some(Command::Healing(cmd)) => rt.block_on(healing_cmd::run(cmd)),
        Some(Command::Demo(cmd)) => rt.block_on(demo::run(cmd)).map(|_| ExitCode::SUCCESS),
        Some(Command::Chaos(mut cmd)) => {
            // `chaos inject` without --config goes to the one node running here, as other
            // commands do.
            if let Ok(Some(one)) = runtime_file::the_running_node() {
                cmd.default_node(one.config, one.data_dir);
            }
            rt.block_on(warden_chaos::cli::run(cmd)).map(|_| ExitCode::SUCCESS)
        }
        Some(Command::Launch { .. }) => Ok(ExitCode::FAILURE),
    };
    // The spans still queued leave before the runtime that sends them stops.
    drop(export);
    // Don't wait for blocking tasks (a hung probe) on the way out.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(code) => code,
        Err(e) => {
            if telemetry::is_json() {
                tracing::error!(error = format!("{e:#}"), "warden failed");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `warden check-config`: every problem of every file, or a summary of what would run.
fn check_config(args: load::NodeArgs) -> ExitCode {
    match args.load() {
        Ok(l) => {
            let c = &l.config;
            let services: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
            println!("configuration ok: node `{}`", c.name);
            println!("  services (start order): {}", services.join(", "));
            println!("  probes: {}", c.probes.len());
            println!("  api: http://{}", c.http_listen);
            println!("  data dir: {}", c.data_dir.display());
            println!(
                "  governance: {} ({} mode, {} whitelist entries)",
                l.policies_from,
                l.policies.mode.as_str(),
                l.policies.whitelist.len()
            );
            println!("  playbooks: {}", l.catalog.all().len());
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprintln!("error: invalid configuration:\n{problems}");
            ExitCode::from(node::EXIT_CONFIG)
        }
    }
}
