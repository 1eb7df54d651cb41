//! `warden incidents list|show ID`: the running node's incidents, from its API.

use crate::api_client::{Api, error_message};
use crate::load::NodeArgs;
use serde_json::Value;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum IncidentsCommand {
    /// Incidents, newest first: id, status, mode, service, MTTR, playbooks tried.
    List {
        /// open, awaiting_approval, mitigated, resolved, failed, cleared, absorbed or closed.
        #[arg(long)]
        status: Option<String>,
        /// A failure mode (database_unavailable, port_in_use, ...).
        #[arg(long)]
        mode: Option<String>,
        #[arg(long)]
        service: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// The API's JSON instead of the table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Say you are on it: automatic repair of it waits for you (audited).
    Ack {
        id: u64,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Close it, saying why (audited); a failed incident too.
    Close {
        id: u64,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// One incident: evidence, diagnosis, plan, every run with its steps, MTTR.
    Show {
        id: u64,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
}

pub async fn run(cmd: IncidentsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        IncidentsCommand::Ack { id, reason, node } | IncidentsCommand::Close { id, reason, node }
            if reason.trim().is_empty() =>
        {
            let _ = (id, node);
            anyhow::bail!("--reason must say why (it goes into the audit trail)")
        }
        IncidentsCommand::Ack { id, reason, node } => verb(&node, id, "ack", &reason).await,
        IncidentsCommand::Close { id, reason, node } => verb(&node, id, "close", &reason).await,
        IncidentsCommand::List { status, mode, service, limit, json, node } => {
            let api = Api::for_node(&node)?;
            let mut query = vec![format!("limit={limit}")];
            for (k, v) in [("status", status), ("mode", mode), ("service", service)] {
                if let Some(v) = v {
                    // Names only (modes, states, service names): nothing to escape.
                    if !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                        anyhow::bail!("--{k} `{v}`: letters, digits, `_` and `-` only");
                    }
                    query.push(format!("{k}={v}"));
                }
            }
            let (code, body) = api.get(&format!("/api/incidents?{}", query.join("&"))).await?;
            if code != 200 {
                eprintln!("{}", error_message(&body));
                return Ok(ExitCode::FAILURE);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:>5}  {:<18} {:<20} {:<8} {:>9}  {:<10} {:<24} playbooks",
                "id", "status", "mode", "service", "mttr", "from", "detected"
            );
            for i in body["incidents"].as_array().into_iter().flatten() {
                println!(
                    "{:>5}  {:<18} {:<20} {:<8} {:>9}  {:<10} {:<24} {}",
                    i["id"].as_u64().unwrap_or_default(),
                    text(&i["status"]),
                    text(&i["mode"]),
                    text(&i["service"]),
                    i["mttr"]["ms"].as_u64().map_or("-".into(), |ms| format!("{ms} ms")),
                    text(&i["mttr"]["from"]),
                    text(&i["detected_at"]),
                    i["playbooks_tried"]
                        .as_array()
                        .map(|p| p.iter().map(text).collect::<Vec<_>>().join(" → "))
                        .unwrap_or_default(),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        IncidentsCommand::Show { id, json, node } => {
            let api = Api::for_node(&node)?;
            let (code, i) = api.get(&format!("/api/incidents/{id}")).await?;
            if code != 200 {
                eprintln!("{}", error_message(&i));
                return Ok(ExitCode::FAILURE);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&i)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "incident {} — {} on `{}`: {}",
                i["id"],
                text(&i["mode"]),
                text(&i["service"]),
                text(&i["status"])
            );
            println!("evidence:  {}", text(&i["evidence"]));
            println!("cause:     {}", text(&i["cause"]));
            println!(
                "plan:      {}",
                i["plan"].as_array().map(|p| p.iter().map(text).collect::<Vec<_>>().join(" → ")).unwrap_or_default()
            );
            println!("onset:     {}", text(&i["fault_onset_at"]));
            println!("detected:  {}", text(&i["detected_at"]));
            println!("resolved:  {}", text(&i["resolved_at"]));
            println!(
                "mttr:      {} (from {}; from detection {})",
                i["mttr"]["ms"].as_u64().map_or("-".into(), |ms| format!("{ms} ms")),
                text(&i["mttr"]["from"]),
                i["mttr"]["from_detection_ms"].as_u64().map_or("-".into(), |ms| format!("{ms} ms")),
            );
            if !i["detail"].as_str().unwrap_or_default().is_empty() {
                println!("detail:    {}", text(&i["detail"]));
            }
            for s in i["suppressed"].as_array().into_iter().flatten() {
                println!("explains:  {}", text(s));
            }
            for r in i["runs"].as_array().into_iter().flatten() {
                println!(
                    "run {} `{}`: {} {}",
                    r["run_id"],
                    text(&r["playbook"]),
                    text(&r["outcome"]),
                    text(&r["detail"])
                );
                for s in r["steps"].as_array().into_iter().flatten() {
                    println!(
                        "    {} {} {}",
                        if s["ok"] == true { "ok  " } else { "FAIL" },
                        text(&s["action"]),
                        text(&s["detail"])
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn verb(node: &NodeArgs, id: u64, verb: &str, reason: &str) -> anyhow::Result<ExitCode> {
    let (code, body) = Api::for_node(node)?
        .post(&format!("/api/incidents/{id}/{verb}"), serde_json::json!({ "reason": reason }))
        .await?;
    if !(200..300).contains(&code) {
        eprintln!("error ({code}): {}", error_message(&body));
        return Ok(ExitCode::FAILURE);
    }
    let i = &body["incident"];
    println!(
        "incident {} — {} on `{}`: {} ({})",
        i["id"],
        text(&i["mode"]),
        text(&i["service"]),
        text(&i["status"]),
        text(&i["detail"])
    );
    Ok(ExitCode::SUCCESS)
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}
