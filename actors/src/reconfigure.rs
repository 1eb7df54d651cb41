//! The running configuration: the files' config with the runtime overrides over it.
//!
//! Playbooks that move a port, switch an upstream, extend a startup deadline or stagger
//! the boot change one [`Setting`] of the overrides document in the data dir, and the node
//! applies the result the way a reload does: changed services restart, changed probes
//! restart, the rest is untouched. One change at a time (a lock), so two runs never apply
//! half of each other's document. A SIGHUP reload reads the files and the overrides again.

use crate::data_dir::DataDir;
use crate::node::{ReloadError, Reloaded};
use crate::wiring::Wiring;
use std::path::PathBuf;
use warden_core::config::NodeConfig;
use warden_core::overrides::{self, OverrideError, Overrides, Setting};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReconfigureError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: OverrideError },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Stale(String),
    #[error(transparent)]
    Apply(#[from] ReloadError),
}

fn path(data_dir: &DataDir) -> PathBuf {
    data_dir.root().join(overrides::FILE)
}

/// The overrides in the data dir; none when the file does not exist.
pub(crate) fn read(data_dir: &DataDir) -> Result<Overrides, ReconfigureError> {
    let path = path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => Overrides::parse(&text).map_err(|source| ReconfigureError::Parse { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Overrides::default()),
        Err(source) => Err(ReconfigureError::Read { path, source }),
    }
}

fn write(data_dir: &DataDir, o: &Overrides) -> Result<(), ReconfigureError> {
    let path = path(data_dir);
    crate::private_file::write(&path, o.to_json().as_bytes(), None)
        .map_err(|source| ReconfigureError::Write { path, source })
}

/// `base` with the data dir's overrides over it. An unreadable document or an override
/// that no longer fits the files is logged and left out: the files' config runs.
pub(crate) fn effective(data_dir: &DataDir, base: &NodeConfig) -> NodeConfig {
    match read(data_dir) {
        Ok(o) if o.is_empty() => base.clone(),
        Ok(o) => {
            let (config, stale) = o.apply(base);
            for s in stale {
                tracing::warn!("runtime override left out: {s}");
            }
            tracing::info!(overrides = %o.to_json().replace('\n', " "), "runtime overrides applied over the config files");
            config
        }
        Err(e) => {
            tracing::error!(error = %e, "alert: runtime overrides not applied; the config files run as written");
            base.clone()
        }
    }
}

/// The current value of `like`'s setting.
pub(crate) fn current(data_dir: &DataDir, like: &Setting) -> Result<Setting, ReconfigureError> {
    Ok(read(data_dir)?.current(like))
}

/// What the overrides would make of the config with `setting` set: the config, or why it
/// does not fit. Changes nothing.
pub(crate) fn preview(w: &Wiring, setting: &Setting) -> Result<NodeConfig, ReconfigureError> {
    let mut o = read(&w.views.data_dir)?;
    o.set(setting);
    let (config, stale) = o.apply(&w.base.get());
    match stale.into_iter().next() {
        Some(s) => Err(ReconfigureError::Stale(s)),
        None => Ok(config),
    }
}

/// Sets one value, writes the document (synced) and applies the config it makes; returns
/// the value it replaced. A config the node refuses puts the document back.
pub(crate) async fn change(w: &Wiring, setting: &Setting) -> Result<(Setting, Reloaded), ReconfigureError> {
    let _one_at_a_time = w.overrides_lock.lock().await;
    let before_doc = read(&w.views.data_dir)?;
    let mut o = before_doc.clone();
    let before = o.set(setting);
    let (config, stale) = o.apply(&w.base.get());
    if let Some(s) = stale.into_iter().next() {
        return Err(ReconfigureError::Stale(s));
    }
    write(&w.views.data_dir, &o)?;
    match w.apply_config(config).await {
        Ok(r) => {
            tracing::info!(setting = setting.describe(), "runtime override set");
            Ok((before, r))
        }
        Err(e) => {
            write(&w.views.data_dir, &before_doc)?;
            Err(e.into())
        }
    }
}
