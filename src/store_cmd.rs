//! `warden store check` and `warden store recover`: look at a stopped node's store, and
//! repair a corrupt journal keeping every intact entry.

use crate::load;
use crate::load::NodeArgs;
use anyhow::Context;
use std::process::ExitCode;
use warden_actors::data_dir::DataDir;
use warden_actors::store::{self, Store, journal};

#[derive(clap::Subcommand)]
pub enum StoreCommand {
    /// Check every journal file batch by batch, then open the store and verify the audit
    /// chain. Exit 1 on any problem.
    Check(NodeArgs),
    /// Repair a corrupt journal: keep a copy of the store, cut out the bad batches (every
    /// intact one before and after them is kept), and say what was lost.
    Recover(NodeArgs),
}

fn data_dir(t: &NodeArgs) -> anyhow::Result<DataDir> {
    Ok(match &t.data_dir {
        Some(d) => DataDir::new(d),
        None => {
            DataDir::new(load::load(t.config.as_deref(), None).map_err(|p| anyhow::anyhow!("{p}"))?.config.data_dir)
        }
    })
}

pub async fn run(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    let (target, recover) = match &cmd {
        StoreCommand::Check(t) => (t, false),
        StoreCommand::Recover(t) => (t, true),
    };
    let dir = data_dir(target)?;
    if !dir.has_store() {
        anyhow::bail!("no warden store in {}", dir.root().display());
    }
    // The store belongs to one process at a time: stop the node first.
    let _lock = dir.lock(None)?;
    let mut problems = 0;
    for file in journal::files(&dir.store()) {
        let scan = journal::scan_file(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let torn = if scan.torn_tail > 0 {
            format!(", an unfinished last batch of {} bytes (a write cut short; dropped on open)", scan.torn_tail)
        } else {
            String::new()
        };
        println!("{}: {} intact batches{torn}", file.display(), scan.batches);
        if let Some(c) = scan.corruption {
            problems += 1;
            println!("  corrupt: {c} ({} items)", c.items.len());
        }
    }
    if recover && problems > 0 {
        let repair = store::repair(&dir)?;
        println!("copied the store as it was to {}", repair.backup.display());
        for c in &repair.cut {
            let what = match c.end {
                Some(end) => format!("cut bytes {}..{end}", c.offset),
                None => format!("cut everything from byte {} on (the batch's end could not be found)", c.offset),
            };
            println!("{}: {what}", c.file.display());
        }
        let mut lost = repair.lost.clone();
        lost.dedup();
        if lost.is_empty() {
            println!("cut records: none warden can name");
        } else {
            // A record written again later (an incident updated) is kept in its later form.
            println!("cut records (kept where a later write holds them again): {}", lost.join(", "));
        }
        problems = 0;
    } else if problems > 0 {
        println!("run `warden store recover` to cut the bad batches out and keep every intact entry");
        return Ok(ExitCode::FAILURE);
    } else if recover {
        println!("nothing to recover: every journal batch is intact");
    }
    let store = Store::open(&dir)?;
    let files = load::load(target.config.as_deref(), target.data_dir.as_deref()).map(|l| l.config.audit).ok();
    let (result, unsealed) = match &files {
        Some(files) => warden_actors::governance::seal::check(&store, dir.root(), files, None, None).await?,
        None => (
            store.verify_chain(None, Vec::new(), None, None).await?,
            Some("the node config could not be read for the audit key".to_string()),
        ),
    };
    if crate::audit_cmd::report(&result, unsealed.as_deref()) != ExitCode::SUCCESS {
        problems += 1;
    }
    Ok(if problems == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
