//! `warden audit verify`: walk the stored chain and name the first broken entry.

use anyhow::Context;
use std::path::PathBuf;
use std::process::ExitCode;
use warden_actors::store::Store;
use warden_core::audit::{self, SealedEntry};

pub fn verify(data_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = match data_dir {
        Some(d) => d,
        None => {
            PathBuf::from(warden_core::config::NodeConfig::embedded_default().context("embedded config")?.node.data_dir)
        }
    };
    if !dir.join("store").exists() {
        anyhow::bail!("no warden store in {}", dir.display());
    }
    let store = Store::open(&dir)?;
    let mut entries: Vec<SealedEntry> = Vec::new();
    for (position, e) in store.audit_entries().enumerate() {
        match e {
            Ok(e) => entries.push(e),
            Err(err) => {
                println!("audit chain broken at entry {position}: {err}");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    match audit::verify(entries) {
        Ok(n) => {
            println!("audit chain verified: {n} entries");
            Ok(ExitCode::SUCCESS)
        }
        Err(b) => {
            println!("{b}");
            Ok(ExitCode::FAILURE)
        }
    }
}
