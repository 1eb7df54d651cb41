//! `warden audit verify`: walk the stored chain and name the first broken entry. On a data
//! dir a running warden holds, it asks that warden through its API instead.

use crate::load;
use anyhow::Context;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use warden_actors::data_dir::{DataDir, DataDirError};
use warden_actors::store::Store;
use warden_core::audit::ChainBreak;

pub async fn verify(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = match data_dir {
        Some(d) => DataDir::new(d),
        None => DataDir::new(load::load(config.as_deref(), None).map_err(|p| anyhow::anyhow!("{p}"))?.config.data_dir),
    };
    if !dir.has_store() {
        anyhow::bail!("no warden store in {}", dir.root().display());
    }
    let _lock = match dir.lock(None) {
        Ok(lock) => lock,
        Err(DataDirError::Locked { pid, http, .. }) => return verify_running(&dir, pid, http).await,
        Err(e) => return Err(e.into()),
    };
    let store = Store::open(&dir).with_context(|| format!("cannot open the store in {}", dir.root().display()))?;
    Ok(report(store.verify_chain().await?))
}

fn report(result: Result<u64, ChainBreak>) -> ExitCode {
    match result {
        Ok(n) => {
            println!("audit chain verified: {n} entries");
            ExitCode::SUCCESS
        }
        Err(b) => {
            println!("{b}");
            ExitCode::FAILURE
        }
    }
}

/// The dir belongs to a running warden: its store is its own, so ask it.
async fn verify_running(dir: &DataDir, pid: Option<u32>, http: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    let who = pid.map(|p| format!("warden pid {p}")).unwrap_or_else(|| "another warden".into());
    let Some(mut addr) = http else {
        anyhow::bail!(
            "data dir {} is in use by {who}; verify it through that warden's API: GET /api/audit/verify",
            dir.root().display()
        );
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("http://{addr}/api/audit/verify");
    let answer: anyhow::Result<serde_json::Value> = async {
        let client = reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_secs(30)).build()?;
        Ok(client.get(&url).send().await?.json().await?)
    }
    .await;
    let body = answer.map_err(|e| {
        anyhow::anyhow!(
            "data dir {} is in use by {who}, whose API did not answer ({e}); verify with: curl {url}",
            dir.root().display()
        )
    })?;
    println!("data dir {} is in use by {who}; asked it (GET {url})", dir.root().display());
    let result = match (body["ok"].as_bool(), body["verified"].as_u64()) {
        (Some(true), Some(n)) => Ok(n),
        _ => Err(ChainBreak {
            position: body["position"].as_u64().unwrap_or(0),
            seq: body["seq"].as_u64().unwrap_or(0),
            reason: body["reason"].as_str().unwrap_or("the node did not say").to_string(),
        }),
    };
    Ok(report(result))
}
