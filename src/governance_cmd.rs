//! `warden approvals ...` and `warden services ...`: the approval queue and operator
//! actions from the shell, through the running node's API (so they pass the same
//! gatekeeper and land in the same audit trail, under the token's name).

use crate::api_client::{Api, error_message};
use crate::load::NodeArgs;
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum ApprovalsCommand {
    /// Requests waiting for approvers (`--all`: the recent ones, decided or not).
    List {
        #[command(flatten)]
        node: NodeArgs,
        #[arg(long)]
        all: bool,
    },
    /// Approve a request (an approved operator's request then runs).
    Approve {
        id: u64,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Reject a request, saying why.
    Reject {
        id: u64,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

#[derive(clap::Subcommand)]
pub enum ServicesCommand {
    /// Restart a service (stop, then start).
    Restart(ServiceArgs),
    /// Stop a service; it stays stopped.
    Stop(ServiceArgs),
    /// Start a stopped service.
    Start(ServiceArgs),
    /// Lift a service's quarantine: it starts again with a fresh restart budget.
    Release(ServiceArgs),
    /// Maintenance: no automatic repair of the service and no alerts about it (its probes
    /// still run and show) until `monitor` or the time given is over.
    Unmonitor {
        name: String,
        /// For how long (`30m`, `2h`); without it, until `monitor`.
        #[arg(long = "for", value_parser = crate::healing_cmd::parse_duration)]
        for_: Option<std::time::Duration>,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// End a service's maintenance: it is healed and alerted on again.
    Monitor(ServiceArgs),
}

#[derive(clap::Args)]
pub struct ServiceArgs {
    name: String,
    /// Why (kept in the audit trail).
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    node: NodeArgs,
}

fn print_approval(a: &Value) {
    println!(
        "#{} {} {} on {} (tier {}) — {} of {} approvals, requested by {}, expires {}\n    plan: {}",
        a["id"],
        a["status"].as_str().unwrap_or("?"),
        a["action"].as_str().unwrap_or("?"),
        a["target"].as_str().unwrap_or("?"),
        a["tier"],
        a["approvals"],
        a["required"],
        a["requested_by"].as_str().unwrap_or("?"),
        a["expires_at"].as_str().unwrap_or("?"),
        a["plan"].as_str().unwrap_or("")
    );
}

/// Exit 0 for a 2xx answer, 1 otherwise, printing the error.
pub fn done(status: u16, body: &Value) -> ExitCode {
    if (200..300).contains(&status) {
        ExitCode::SUCCESS
    } else {
        eprintln!("error ({status}): {}", error_message(body));
        ExitCode::FAILURE
    }
}

pub async fn approvals(cmd: ApprovalsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ApprovalsCommand::List { node, all } => {
            let path = if all { "/api/governance/approvals?status=all" } else { "/api/governance/approvals" };
            let (status, body) = Api::for_node(&node)?.get(path).await?;
            if let Some(list) = body["approvals"].as_array() {
                if list.is_empty() {
                    println!("no approval requests");
                }
                list.iter().for_each(print_approval);
            }
            Ok(done(status, &body))
        }
        ApprovalsCommand::Approve { id, reason, node } => {
            let (status, body) = Api::for_node(&node)?
                .post(&format!("/api/governance/approvals/{id}/approve"), json!({ "reason": reason }))
                .await?;
            if (200..300).contains(&status) {
                print_approval(&body);
                if !body["ran"].is_null() {
                    println!("    ran: {}", body["ran"]);
                }
            }
            Ok(done(status, &body))
        }
        ApprovalsCommand::Reject { id, reason, node } => {
            let (status, body) = Api::for_node(&node)?
                .post(&format!("/api/governance/approvals/{id}/reject"), json!({ "reason": reason }))
                .await?;
            if (200..300).contains(&status) {
                print_approval(&body);
            }
            Ok(done(status, &body))
        }
    }
}

pub async fn services(cmd: ServicesCommand) -> anyhow::Result<ExitCode> {
    let (op, args) = match cmd {
        ServicesCommand::Restart(a) => ("restart", a),
        ServicesCommand::Stop(a) => ("stop", a),
        ServicesCommand::Start(a) => ("start", a),
        ServicesCommand::Release(a) => ("release", a),
        ServicesCommand::Monitor(a) => ("monitor", a),
        ServicesCommand::Unmonitor { name, for_, reason, node } => {
            let body = json!({ "for_ms": for_.map(|d| d.as_millis() as u64), "reason": reason });
            let (status, body) = Api::for_node(&node)?.post(&format!("/api/services/{name}/unmonitor"), body).await?;
            if status == 200 {
                println!("{}", body["hold"]["detail"].as_str().unwrap_or("in maintenance"));
            }
            return Ok(done(status, &body));
        }
    };
    if op == "monitor" {
        let (status, body) = Api::for_node(&args.node)?
            .post(&format!("/api/services/{}/monitor", args.name), json!({ "reason": args.reason }))
            .await?;
        if status == 200 {
            println!("`{}` is monitored again", args.name);
        }
        return Ok(done(status, &body));
    }
    let (status, body) = Api::for_node(&args.node)?
        .post(&format!("/api/services/{}/{op}", args.name), json!({ "reason": args.reason }))
        .await?;
    match body["status"].as_str() {
        Some("done") => println!("{op} {}: {}", args.name, body["detail"].as_str().unwrap_or("")),
        Some("pending_approval") => {
            println!("{op} {} waits for approvers: approval #{}", args.name, body["approval_id"]);
        }
        _ => {}
    }
    Ok(done(status, &body))
}
