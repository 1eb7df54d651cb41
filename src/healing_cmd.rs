//! `warden healing status|pause|resume`: what holds automatic repair, and an operator's
//! pause of it (the node's or one service's), through the running node's API (audited
//! under the token's name).

use crate::api_client::Api;
use crate::governance_cmd::done;
use crate::load::NodeArgs;
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum HealingCommand {
    /// Whether automatic repair runs, and what blocks or holds it (pauses, maintenance,
    /// operators at work, the circuit breaker, the audit chain, the store).
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Pause automatic repair of the node (or of one service): no tier 2+ step runs
    /// until it is resumed or its time is over. Probes and alerts go on.
    Pause {
        /// One service; without it, the whole node.
        service: Option<String>,
        /// For how long (`30m`, `2h`, `1h30m`); without it, until resumed.
        #[arg(long = "for", value_parser = parse_duration)]
        for_: Option<std::time::Duration>,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Resume automatic repair of the node (this also closes an open circuit breaker) or
    /// of one service (its pause, and the hold an operator's action set).
    Resume {
        service: Option<String>,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        node: NodeArgs,
    },
}

/// A duration as people write it: `90s`, `30m`, `2h`, `1h30m`, `1 day`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let d: jiff::SignedDuration =
        text.trim().parse().map_err(|e| format!("`{text}` is not a duration (30m, 2h): {e}"))?;
    std::time::Duration::try_from(d).map_err(|_| format!("`{text}` must be positive"))
}

pub fn print_status(h: &Value) {
    println!("automatic repair: {}", h["automatic_repair"].as_str().unwrap_or("?"));
    for b in h["blocked"].as_array().into_iter().flatten() {
        let on = b["service"].as_str().map_or("node".to_string(), |s| format!("`{s}`"));
        println!("  {:<15} {:<8} {}", b["reason"].as_str().unwrap_or("?"), on, b["detail"].as_str().unwrap_or(""));
    }
}

pub async fn run(cmd: HealingCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        HealingCommand::Status { json, node } => {
            let (status, body) = Api::for_node(&node)?.get("/api/healing").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else if status == 200 {
                print_status(&body);
            }
            Ok(done(status, &body))
        }
        HealingCommand::Pause { service, for_, reason, node } => {
            let for_ms = for_.map(|d| d.as_millis() as u64);
            let body = json!({ "service": service, "for_ms": for_ms, "reason": reason });
            let (status, body) = Api::for_node(&node)?.post("/api/healing/pause", body).await?;
            if status == 200 {
                println!("{}", body["hold"]["detail"].as_str().unwrap_or("paused"));
            }
            Ok(done(status, &body))
        }
        HealingCommand::Resume { service, reason, node } => {
            let body = json!({ "service": service, "reason": reason });
            let (status, body) = Api::for_node(&node)?.post("/api/healing/resume", body).await?;
            if status == 200 {
                for h in body["lifted"].as_array().into_iter().flatten() {
                    println!("lifted: {}", h["detail"].as_str().unwrap_or("?"));
                }
                print_status(&body["healing"]);
            }
            Ok(done(status, &body))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn test_durations_read_as_people_write_them() {
        assert_eq!(super::parse_duration("30m"), Ok(std::time::Duration::from_secs(1800)));
        assert_eq!(super::parse_duration("1h30m"), Ok(std::time::Duration::from_secs(5400)));
        assert_eq!(super::parse_duration("90s"), Ok(std::time::Duration::from_secs(90)));
        assert!(super::parse_duration("soon").is_err());
        assert!(super::parse_duration("-5m").is_err());
    }
}
