//! `warden audit verify` and `warden audit export`: check the stored chain (hashes, links,
//! seals with the audit key, the signed checkpoints; the whole chain or a range) and name
//! the first bad entry or the missing tail; write the entries as JSON lines. On a data dir
//! a running warden holds, both ask that warden through its API instead.

use crate::api_client::Api;
use crate::load::NodeArgs;
use anyhow::Context;
use serde_json::Value;
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use warden_actors::data_dir::{DataDir, DataDirError};
use warden_actors::governance::seal::AuditSeal;
use warden_actors::store::{Store, Verified};
use warden_core::audit::ChainBreak;
use warden_core::config::AuditFiles;

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Check the chain: every entry's hash, link and seal (with the audit key), and that
    /// nothing a signed checkpoint names is missing. Names the first bad entry; exit 1 on
    /// any problem. On a data dir in use, asks the running warden.
    Verify(VerifyArgs),
    /// Write entries as JSON lines (oldest first) to stdout.
    Export(ExportArgs),
    /// Say an earlier audit chain of this data dir is gone on purpose (the data dir was
    /// reset): a signed line in the checkpoint file (and an entry on the chain), after which
    /// the fresh chain is trusted. A wipe nobody retired keeps tier 2+ actions refused.
    Retire(RetireArgs),
}

#[derive(clap::Args)]
pub struct RetireArgs {
    /// The gone chain's id, as the node's log and `/readyz` name it (never the chain the
    /// store holds now).
    chain: String,
    /// Why (kept with the retirement).
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    target: NodeArgs,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    target: NodeArgs,
    /// First seq to check; checking starts at the newest signed checkpoint before it.
    #[arg(long)]
    from: Option<u64>,
    /// Last seq to check (default: the end, where a missing tail is looked for).
    #[arg(long)]
    to: Option<u64>,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    target: NodeArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: Format,
    /// First seq to export.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// Last seq to export (default: the end).
    #[arg(long)]
    to: Option<u64>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Jsonl,
}

pub async fn run(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify(args) => verify(args).await,
        AuditCommand::Export(args) => export(args).await,
        AuditCommand::Retire(args) => retire(args).await,
    }
}

/// `warden audit retire CHAIN --reason R`: through the running node (which records it and
/// checks its chain again), or, on a stopped node, in the checkpoint file itself.
async fn retire(args: RetireArgs) -> anyhow::Result<ExitCode> {
    if args.reason.trim().is_empty() {
        anyhow::bail!("--reason must say why the chain is gone");
    }
    let loaded = args.target.load().map_err(|p| anyhow::anyhow!("{p}"))?;
    let dir = DataDir::new(&loaded.config.data_dir);
    std::fs::create_dir_all(dir.root()).with_context(|| format!("cannot make {}", dir.root().display()))?;
    let _lock = match dir.lock(None) {
        Ok(lock) => lock,
        Err(DataDirError::Locked { pid, http, .. }) => {
            let (api, who) = running_api(&dir, pid, http)?;
            let body = serde_json::json!({ "chain": args.chain, "reason": args.reason });
            let (status, body) = api.post("/api/audit/retire", body).await?;
            if status != 200 {
                anyhow::bail!("{who} answered {status}: {}", crate::api_client::error_message(&body));
            }
            println!(
                "chain {} retired; the node's audit chain is {}",
                args.chain,
                match body["trusted"].as_bool() {
                    Some(true) => "trusted again".to_string(),
                    _ => format!("still not trusted: {}", body["reason"].as_str().unwrap_or("?")),
                }
            );
            return Ok(if body["trusted"] == true { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
        Err(e) => return Err(e.into()),
    };
    let seal = AuditSeal::read(&loaded.config.audit)?;
    let data_dir = std::fs::canonicalize(dir.root()).unwrap_or_else(|_| dir.root().to_path_buf()).display().to_string();
    let known = seal.lines()?.iter().any(|l| {
        matches!(l, warden_core::audit::CheckpointLine::Checkpoint(c)
            if c.chain.as_ref().is_some_and(|c| c.id == args.chain && c.data_dir == data_dir))
    });
    if !known {
        anyhow::bail!("no checkpoints of a chain {} in data dir {data_dir}: nothing to retire", args.chain);
    }
    // The chain the store holds now is not gone: retiring it would hide its next wipe.
    if dir.store().exists() {
        let store = Store::open(&dir).with_context(|| format!("cannot open the store in {}", dir.root().display()))?;
        let (live, _) = warden_actors::governance::seal::chain_identity(&store, dir.root(), false).await?;
        if live.id == args.chain {
            anyhow::bail!(
                "chain {} is the one the store in {data_dir} holds now, not a gone one: only a chain whose entries are gone can be retired",
                args.chain
            );
        }
    }
    let by = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    let chain = warden_core::audit::ChainId { id: args.chain.clone(), data_dir };
    seal.retire(&chain, &format!("{by} (shell)"), &args.reason)?;
    println!("chain {} retired; the node trusts its fresh chain at its next start", args.chain);
    Ok(ExitCode::SUCCESS)
}

/// The data dir and the audit files of `t`.
fn resolve(t: &NodeArgs) -> anyhow::Result<(DataDir, AuditFiles)> {
    let loaded = t.load().map_err(|p| anyhow::anyhow!("{p}"))?;
    let dir = DataDir::new(&loaded.config.data_dir);
    if !dir.has_store() {
        anyhow::bail!("no warden store in {}", dir.root().display());
    }
    Ok((dir, loaded.config.audit))
}

/// The API of the running warden that holds `dir`, or an error saying whose it is.
fn running_api(dir: &DataDir, pid: Option<u32>, http: Option<SocketAddr>) -> anyhow::Result<(Api, String)> {
    let who = pid.map(|p| format!("warden pid {p}")).unwrap_or_else(|| "another warden".into());
    let Some(addr) = http else {
        anyhow::bail!("data dir {} is in use by {who}, which did not record its API address", dir.root().display());
    };
    Ok((Api::at(addr, dir.root())?, who))
}

async fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let (dir, files) = resolve(&args.target)?;
    let _lock = match dir.lock(None) {
        Ok(lock) => lock,
        Err(DataDirError::Locked { pid, http, .. }) => {
            let (api, who) = running_api(&dir, pid, http)?;
            let mut path = "/api/audit/verify".to_string();
            let q: Vec<String> = [("from", args.from), ("to", args.to)]
                .iter()
                .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
                .collect();
            if !q.is_empty() {
                path = format!("{path}?{}", q.join("&"));
            }
            let (status, body) = api.get(&path).await.with_context(|| {
                format!("data dir {} is in use by {who}, whose API did not answer", dir.root().display())
            })?;
            // 200: verified; 409: a break, named. Anything else says nothing of the chain.
            if status != 200 && status != 409 {
                anyhow::bail!("{who} answered {status} to GET {path}: {}", crate::api_client::error_message(&body));
            }
            println!("data dir {} is in use by {who}; asked it (GET {}{path})", dir.root().display(), api.base());
            return Ok(report_json(&body));
        }
        Err(e) => return Err(e.into()),
    };
    let store = Store::open(&dir).with_context(|| format!("cannot open the store in {}", dir.root().display()))?;
    let (result, unsealed) =
        warden_actors::governance::seal::check(&store, dir.root(), &files, args.from, args.to).await?;
    Ok(report(&result, unsealed.as_deref()))
}

/// Prints what a check found; exit 1 on a break, or when the seals could not be checked.
pub fn report(result: &Result<Verified, ChainBreak>, unsealed: Option<&str>) -> ExitCode {
    match result {
        Ok(v) => {
            println!(
                "audit chain verified: entries {}..{} ({} checked), {}, {} signed checkpoints",
                v.first,
                v.last,
                v.count(),
                if v.sealed { "seals checked" } else { "seals NOT checked" },
                v.checkpoints
            );
            match unsealed {
                Some(why) => {
                    println!("cannot check the seals: {why}");
                    ExitCode::FAILURE
                }
                None => ExitCode::SUCCESS,
            }
        }
        Err(b) => {
            println!("{b}");
            ExitCode::FAILURE
        }
    }
}

fn report_json(body: &Value) -> ExitCode {
    let result = match body["ok"].as_bool() {
        Some(true) => Ok(Verified {
            first: body["first"].as_u64().unwrap_or(0),
            last: body["last"].as_u64().unwrap_or(0),
            sealed: body["sealed"].as_bool().unwrap_or(false),
            checkpoints: body["checkpoints"].as_u64().unwrap_or(0) as usize,
        }),
        _ => Err(ChainBreak {
            position: body["position"].as_u64().unwrap_or(0),
            seq: body["seq"].as_u64().unwrap_or(0),
            reason: body["reason"].as_str().unwrap_or("the node did not say").to_string(),
        }),
    };
    report(&result, body["unsealed"].as_str())
}

async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let Format::Jsonl = args.format;
    let (dir, _) = resolve(&args.target)?;
    let mut out = std::io::stdout().lock();
    let _lock = match dir.lock(None) {
        Ok(lock) => lock,
        Err(DataDirError::Locked { pid, http, .. }) => {
            let (api, who) = running_api(&dir, pid, http)?;
            let mut from = args.from;
            // The node answers in pages; each names where the next starts.
            loop {
                let mut path = format!("/api/governance/audit/export?from={from}");
                if let Some(to) = args.to {
                    path.push_str(&format!("&to={to}"));
                }
                let resp = api.get_raw(&path).await.with_context(|| format!("data dir in use by {who}"))?;
                if !resp.status().is_success() {
                    let status = resp.status();
                    anyhow::bail!("{who} answered {status} to GET {path}: {}", resp.text().await.unwrap_or_default());
                }
                let next = resp
                    .headers()
                    .get(crate::http::governance::NEXT_FROM)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                out.write_all(&resp.bytes().await?)?;
                match next {
                    Some(n) if n > from => from = n,
                    _ => return Ok(ExitCode::SUCCESS),
                }
            }
        }
        Err(e) => return Err(e.into()),
    };
    let store = Store::open(&dir).with_context(|| format!("cannot open the store in {}", dir.root().display()))?;
    let mut from = args.from.max(1);
    loop {
        let page = store.audit_range(from, 1000).await?;
        let Some(last) = page.last().map(|e| e.entry.seq) else { break };
        for s in page.iter().filter(|s| args.to.is_none_or(|t| s.entry.seq <= t)) {
            writeln!(out, "{}", s.to_json())?;
        }
        if args.to.is_some_and(|t| last >= t) {
            break;
        }
        from = last + 1;
    }
    Ok(ExitCode::SUCCESS)
}
