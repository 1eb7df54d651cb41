//! The running configuration: the files' config with the runtime overrides over it.
//!
//! Playbooks that move a port, switch an upstream, extend a startup deadline or stagger
//! the boot change one [`Setting`] of the overrides document in the data dir, and the node
//! applies the result the way a reload does: changed services restart, changed probes
//! restart, the rest is untouched. One change at a time (a lock), so two runs never apply
//! half of each other's document. A SIGHUP reload reads the files and the overrides again.

use crate::data_dir::DataDir;
use crate::wiring::{ReloadError, Reloaded, Wiring};
use std::path::PathBuf;
use warden_core::config::NodeConfig;
use warden_core::overrides::{Overrides, Setting};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReconfigureError {
    #[error("{0}")]
    Read(String),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Stale(String),
    #[error(transparent)]
    Apply(#[from] ReloadError),
}

/// The overrides in the data dir; none when the file does not exist.
pub(crate) fn read(data_dir: &DataDir) -> Result<Overrides, ReconfigureError> {
    data_dir.overrides().map_err(ReconfigureError::Read)
}

fn write(data_dir: &DataDir, o: &Overrides) -> Result<(), ReconfigureError> {
    let path = data_dir.overrides_file();
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

/// What `o` makes of `base` with `setting` set, or why not: only a problem the setting
/// brings counts; older ones (an override the files no longer fit) are left out as at start.
fn with_setting(
    o: &Overrides,
    base: &NodeConfig,
    setting: &Setting,
) -> Result<(Overrides, NodeConfig), ReconfigureError> {
    let (_, stale_before) = o.apply(base);
    let mut next = o.clone();
    next.set(setting);
    let (config, stale_after) = next.apply(base);
    match stale_after.into_iter().find(|s| !stale_before.contains(s)) {
        Some(s) => Err(ReconfigureError::Stale(s)),
        None => Ok((next, config)),
    }
}

/// What the overrides would make of the config with `setting` set: the config, or why it
/// does not fit. Changes nothing.
pub(crate) fn preview(w: &Wiring, setting: &Setting) -> Result<NodeConfig, ReconfigureError> {
    Ok(with_setting(&read(&w.views.data_dir)?, &w.base.get(), setting)?.1)
}

/// Sets one value, writes the document (synced) and applies the config it makes; returns
/// the value it replaced. With `expect`, the setting must still have that value (an undo
/// takes back only what is still its step's doing). A config the node refuses puts the
/// document and the config before back.
pub(crate) async fn change(
    w: &Wiring,
    setting: &Setting,
    expect: Option<&Setting>,
) -> Result<(Setting, Reloaded), ReconfigureError> {
    let _one_at_a_time = w.overrides_lock.lock().await;
    let before_doc = read(&w.views.data_dir)?;
    if let Some(expect) = expect {
        let now = before_doc.current(expect);
        if &now != expect {
            return Err(ReconfigureError::Stale(format!(
                "{} since (wanted {}): take back the later change first",
                now.describe(),
                expect.describe()
            )));
        }
    }
    let before = before_doc.current(setting);
    let (doc, config) = with_setting(&before_doc, &w.base.get(), setting)?;
    let before_config = w.views.config.get();
    write(&w.views.data_dir, &doc)?;
    match w.apply_config(config).await {
        Ok(r) => {
            tracing::info!(setting = setting.describe(), "runtime override set");
            Ok((before, r))
        }
        Err(e) => {
            // Back to what ran: the document, and the config (a supervisor that timed out
            // may still take the new one; this reload comes after it).
            if let Err(we) = write(&w.views.data_dir, &before_doc) {
                tracing::error!(error = %we, "alert: cannot write the runtime overrides back; the file and the running config differ until the next reload");
            }
            if let Err(ae) = w.apply_config((*before_config).clone()).await {
                tracing::error!(error = %ae, "alert: cannot re-apply the config before a refused override");
            }
            Err(e.into())
        }
    }
}
