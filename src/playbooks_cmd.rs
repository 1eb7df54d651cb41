//! `warden playbooks ...`: the catalog (list, show, the rollback document) read from the
//! node's files, and runs, dry runs, rollbacks and the catalog audit through the running
//! node's API, so every step passes the gatekeeper under the token's name.

use crate::api_client::{Api, error_message};
use crate::load::NodeArgs;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum PlaybooksCommand {
    /// Every playbook of the node's catalog: id, tier, category, triggers.
    List(NodeArgs),
    /// One playbook: its steps, what each changes and how it is rolled back.
    Show {
        id: String,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Run a playbook on a service of the running node (`--dry-run`: change nothing, say
    /// what would happen and what governance would decide).
    Run {
        id: String,
        #[arg(long)]
        target: String,
        #[arg(long)]
        dry_run: bool,
        /// Why (kept in the audit trail).
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Undo a finished run, its steps newest first, each through governance.
    Rollback {
        run_id: u64,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        node: NodeArgs,
    },
    /// Check the whole catalog: load and validate it, dry-run every playbook against the
    /// running node's services, one row each; exit 1 if any cannot run anywhere.
    Audit(NodeArgs),
    /// Write the rollback document generated from the catalog (stdout without `--out`).
    Docs {
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        node: NodeArgs,
    },
}

pub async fn run(cmd: PlaybooksCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PlaybooksCommand::List(node) => {
            let loaded = node.load().map_err(|p| anyhow::anyhow!("{p}"))?;
            for p in loaded.catalog.all() {
                let triggers: Vec<&str> = p.triggers.iter().map(|t| t.as_str()).collect();
                println!(
                    "{:<28} tier {}  {:<10} {:<40} {}",
                    p.id,
                    p.tier.get(),
                    format!("{:?}", p.category).to_lowercase(),
                    triggers.join(","),
                    p.name
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        PlaybooksCommand::Show { id, node } => {
            let loaded = node.load().map_err(|p| anyhow::anyhow!("{p}"))?;
            let Some(p) = loaded.catalog.get(&id) else {
                eprintln!("no playbook `{id}` (warden playbooks list)");
                return Ok(ExitCode::FAILURE);
            };
            let v = crate::http::playbooks::playbook_json(p, None);
            println!("{} — {}\n{}", p.id, p.name, p.description);
            println!(
                "tier {}, triggers {}, max retries {}, timeout {} ms, verify {}",
                p.tier.get(),
                v["triggers"],
                p.max_retries,
                p.timeout.as_millis(),
                p.verify
            );
            for (i, s) in v["steps"].as_array().into_iter().flatten().enumerate() {
                println!(
                    "  {i}. {} (tier {}): {}\n     rollback ({}): {}",
                    s["do"].as_str().unwrap_or("?"),
                    s["min_tier"],
                    s["changes"].as_str().unwrap_or(""),
                    s["rollback"]["kind"].as_str().unwrap_or("?").replace('_', " "),
                    s["rollback"]["how"].as_str().unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        PlaybooksCommand::Run { id, target, dry_run, reason, node } => {
            let api = Api::for_node(&node)?;
            let body = json!({ "target": target, "dry_run": dry_run, "reason": reason });
            let (status, v) = api.post(&format!("/api/guardian/playbooks/{id}/run"), body).await?;
            let (status, v) = follow(&api, status, v).await?;
            Ok(print_run(status, &v))
        }
        PlaybooksCommand::Rollback { run_id, reason, node } => {
            let api = Api::for_node(&node)?;
            let (status, v) =
                api.post(&format!("/api/guardian/runs/{run_id}/rollback"), json!({ "reason": reason })).await?;
            let (status, v) = follow(&api, status, v).await?;
            Ok(print_run(status, &v))
        }
        PlaybooksCommand::Audit(node) => audit(node).await,
        PlaybooksCommand::Docs { out, node } => {
            let loaded = node.load().map_err(|p| anyhow::anyhow!("{p}"))?;
            let doc = warden_core::playbook::rollback_doc(&loaded.catalog);
            match out {
                Some(path) => std::fs::write(&path, doc)?,
                None => print!("{doc}"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A run the node answered 202 for (still running): followed until it ends.
async fn follow(api: &Api, status: u16, v: Value) -> anyhow::Result<(u16, Value)> {
    if status != 202 {
        return Ok((status, v));
    }
    let Some(poll) = v["poll"].as_str() else { return Ok((status, v)) };
    let deadline = std::time::Instant::now() + FOLLOW_LIMIT;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let (status, now) = api.get(poll).await?;
        if status != 200 || now["outcome"] != "running" || std::time::Instant::now() >= deadline {
            return Ok((status, now));
        }
    }
}

/// Longest a run or rollback is followed from the shell.
const FOLLOW_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Prints a run (each step with its detail); exit 0 when it succeeded.
fn print_run(status: u16, v: &Value) -> ExitCode {
    if !(200..300).contains(&status) {
        eprintln!("{status}: {}", error_message(v));
        return ExitCode::FAILURE;
    }
    let kind = if v["dry_run"] == true {
        "dry run"
    } else if v["rollback_of"].is_u64() {
        "rollback"
    } else {
        "run"
    };
    println!(
        "{kind} {} of `{}` on `{}`: {} in {} ms — {}",
        v["run_id"],
        v["playbook"].as_str().unwrap_or("?"),
        v["target"].as_str().unwrap_or("?"),
        v["outcome"].as_str().unwrap_or("?"),
        v["duration_ms"],
        v["detail"].as_str().unwrap_or("")
    );
    for s in v["steps"].as_array().into_iter().flatten() {
        let seq = s["permit_audit_seq"].as_u64().map(|q| format!(", audit #{q}")).unwrap_or_default();
        println!(
            "  {} {} (tier {}{seq}): {}",
            if s["ok"] == true { "ok  " } else { "FAIL" },
            s["action"].as_str().unwrap_or("?"),
            s["tier"],
            s["detail"].as_str().unwrap_or("")
        );
    }
    if v["outcome"] == "succeeded" { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// Every playbook on every service: `not applicable` (with why) where the service lacks
/// what it needs, else dry-run: `ok` where the dry run says what it would do, `FAIL` where
/// a step cannot run at all on a service it applies to. A playbook that applies to no
/// service of this node is `n/a`, not `ok`: it cannot help here (not a failure either).
async fn audit(node: NodeArgs) -> anyhow::Result<ExitCode> {
    let loaded = node.load().map_err(|p| anyhow::anyhow!("{p}"))?;
    println!("catalog: {} playbooks, metadata valid", loaded.catalog.all().len());
    let api = Api::at(loaded.config.http_listen, &loaded.config.data_dir)?;
    let mut failed = 0;
    for p in loaded.catalog.all() {
        let (mut ok, mut problems, mut not_applicable) = (Vec::new(), Vec::new(), Vec::new());
        for spec in &loaded.config.services {
            let s = spec.name.as_str();
            let why = warden_core::fit::unmet_on(p, &loaded.config, &spec.name);
            if !why.is_empty() {
                not_applicable.push(format!("{s} ({})", why.join("; ")));
                continue;
            }
            let body = json!({ "target": s, "dry_run": true, "reason": "playbooks audit" });
            let (status, v) = api.post(&format!("/api/guardian/playbooks/{}/run", p.id), body).await?;
            let (status, v) = follow(&api, status, v).await?;
            if !(200..300).contains(&status) {
                anyhow::bail!("the node answered {status}: {}", error_message(&v));
            }
            match v["outcome"].as_str() {
                Some("succeeded") => ok.push(s),
                // The running node's config may differ from the files (a reload pending).
                Some("not_applicable") => not_applicable.push(format!("{s} ({})", v["detail"].as_str().unwrap_or("?"))),
                _ => problems.push(format!("{s}: {}", v["detail"].as_str().unwrap_or("?"))),
            }
        }
        let elsewhere = if not_applicable.is_empty() {
            String::new()
        } else {
            format!("; not applicable to {}", not_applicable.join(", "))
        };
        let verdict = if !problems.is_empty() {
            failed += 1;
            format!("FAIL  cannot run on {}{elsewhere}", problems.join("; "))
        } else if ok.is_empty() {
            format!("n/a   applies to no service here: {}", not_applicable.join(", "))
        } else {
            format!("ok    dry-runs on {}{elsewhere}", ok.join(", "))
        };
        println!("{:<28} tier {}  {verdict}", p.id, p.tier.get());
    }
    if failed > 0 {
        println!("{failed} playbooks cannot run on a service they apply to");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
