//! The holds on automatic repair (`warden_core::holds`), kept in the data dir and shared:
//! the executor asks before every tier 2+ step, the incident manager before it starts a
//! repair, the alerter before it pages about a service in maintenance, the API shows and
//! changes them. Every change is written (synced) before it counts, so a restart of warden
//! neither forgets a pause nor closes an open breaker.

use crate::data_dir::DataDir;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use warden_core::config::ServiceName;
use warden_core::holds::{Hold, Holds};

/// The node's holds, shared.
#[derive(Debug, Clone)]
pub struct HoldBoard {
    inner: Arc<Mutex<Holds>>,
    file: PathBuf,
}

impl HoldBoard {
    /// The holds kept in `data_dir` (none when it has none). A file that cannot be read
    /// is said in the log and kept aside; healing then starts with no holds.
    pub fn open(data_dir: &DataDir) -> Self {
        let file = data_dir.holds_file();
        let holds = match std::fs::read_to_string(&file) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                let aside = file.with_extension(format!("unreadable-{}", warden_core::time::now_unix_ms()));
                let _ = std::fs::rename(&file, &aside);
                tracing::error!(file = %file.display(), kept = %aside.display(), error = %e, "alert: the holds on healing cannot be read; starting without them");
                Holds::default()
            }),
            Err(_) => Holds::default(),
        };
        Self { inner: Arc::new(Mutex::new(holds)), file }
    }

    /// A board kept nowhere (tests of actors).
    pub fn in_memory() -> Self {
        Self { inner: Arc::default(), file: PathBuf::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Holds> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The hold that stops automatic repair of `service` now, if any.
    pub fn blocking(&self, service: &ServiceName) -> Option<Hold> {
        self.lock().blocking(service, warden_core::time::now_unix_ms()).cloned()
    }

    /// Whether `service` is in maintenance now (no alerts about it).
    pub fn in_maintenance(&self, service: &ServiceName) -> bool {
        self.lock().in_maintenance(service, warden_core::time::now_unix_ms())
    }

    /// The holds in force now.
    pub fn active(&self) -> Vec<Hold> {
        self.lock().active(warden_core::time::now_unix_ms()).into_iter().cloned().collect()
    }

    /// Whether the breaker is open.
    pub fn breaker_open(&self) -> bool {
        self.lock().breaker_open()
    }

    /// Changes the holds with `f` and writes them (synced) before anyone sees the change;
    /// a write that fails changes nothing.
    pub fn update<R>(&self, f: impl FnOnce(&mut Holds) -> R) -> Result<R, String> {
        let mut holds = self.lock();
        let mut next = holds.clone();
        let r = f(&mut next);
        if next != *holds {
            if !self.file.as_os_str().is_empty() {
                let text = serde_json::to_vec_pretty(&next).map_err(|e| e.to_string())?;
                crate::private_file::write(&self.file, &text, None)
                    .map_err(|e| format!("cannot write {}: {e}", self.file.display()))?;
            }
            *holds = next;
        }
        Ok(r)
    }
}
