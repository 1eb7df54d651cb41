//! The silences people made: alerts matching an active one go to the log only, not to the
//! sinks (rules: `warden_core::alert::Silence`). Shared by the notifier, which applies
//! them, and the API, which makes, lists and expires them; kept in the data dir
//! (`silences.json`, written whole through a rename) so a restart forgets none. Silences
//! that ended more than a week ago are forgotten.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use warden_core::alert::{Alert, Silence, SilenceError, silenced_by};

/// How long an ended silence is still listed.
const KEEP_ENDED_MS: u64 = 7 * 86_400_000;

#[derive(Debug, Clone)]
pub struct SilenceBook {
    inner: Arc<Mutex<Vec<Silence>>>,
    file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum SilenceBookError {
    #[error(transparent)]
    Invalid(#[from] SilenceError),
    #[error("cannot save the silences: {0}")]
    Save(std::io::Error),
}

impl SilenceBook {
    /// The book kept in `file`, read now (an unreadable file is said and started afresh).
    pub fn load(file: PathBuf) -> Self {
        let silences = match std::fs::read_to_string(&file) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(file = %file.display(), error = %e, "the silences file is unreadable; starting with none");
                Vec::new()
            }),
            Err(_) => Vec::new(),
        };
        Self { inner: Arc::new(Mutex::new(silences)), file }
    }

    /// Every silence not long ended, newest first.
    pub fn list(&self, now_unix_ms: u64) -> Vec<Silence> {
        let mut all: Vec<Silence> = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| now_unix_ms.saturating_sub(s.ends_unix_ms) < KEEP_ENDED_MS)
            .cloned()
            .collect();
        all.reverse();
        all
    }

    /// The active silence muting `alert` now, if any.
    pub fn muting(&self, alert: &Alert, now_unix_ms: u64) -> Option<Silence> {
        silenced_by(alert, &self.inner.lock().unwrap_or_else(|p| p.into_inner()), now_unix_ms).cloned()
    }

    /// Makes a silence; it takes effect once saved (a silence the file does not have would
    /// come back unmade after a restart).
    pub fn add(
        &self,
        matchers: std::collections::BTreeMap<String, String>,
        duration_ms: u64,
        by: &str,
        comment: &str,
        now_unix_ms: u64,
    ) -> Result<Silence, SilenceBookError> {
        let mut all = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let id = all.iter().map(|s| s.id).max().unwrap_or(0) + 1;
        let silence = Silence::new(id, matchers, now_unix_ms, duration_ms, by, comment)?;
        let mut next: Vec<Silence> = all.clone();
        // Ended long ago: forgotten (the newest is kept, so ids keep growing).
        let newest = next.iter().map(|s| s.id).max();
        next.retain(|s| now_unix_ms.saturating_sub(s.ends_unix_ms) < KEEP_ENDED_MS || Some(s.id) == newest);
        next.push(silence.clone());
        self.save(&next).map_err(SilenceBookError::Save)?;
        *all = next;
        Ok(silence)
    }

    /// Ends silence `id` now; the silence as it ends, `None` if there is no such silence.
    pub fn expire(&self, id: u64, now_unix_ms: u64) -> Result<Option<Silence>, SilenceBookError> {
        let mut all = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = all.clone();
        let Some(s) = next.iter_mut().find(|s| s.id == id) else { return Ok(None) };
        s.ends_unix_ms = s.ends_unix_ms.min(now_unix_ms);
        let ended = s.clone();
        self.save(&next).map_err(SilenceBookError::Save)?;
        *all = next;
        Ok(Some(ended))
    }

    fn save(&self, all: &[Silence]) -> std::io::Result<()> {
        let tmp = self.file.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(all).map_err(std::io::Error::other)?)?;
        std::fs::rename(&tmp, &self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::alert::{AlertStatus, Severity};

    #[test]
    fn test_silences_survive_a_reload_and_expire_on_request() {
        let dir = tempfile::tempdir().expect("tmp");
        let book = SilenceBook::load(dir.path().join("silences.json"));
        let m = std::collections::BTreeMap::from([("target".to_string(), "api".to_string())]);
        let s = book.add(m, 60_000, "ops", "deploy", 1_000).expect("added");
        let alert = Alert::new("ProbeFailing", Severity::Warning, AlertStatus::Firing, 0).label("target", "api");
        assert_eq!(book.muting(&alert, 2_000).map(|s| s.id), Some(s.id));
        let again = SilenceBook::load(dir.path().join("silences.json"));
        assert_eq!(again.list(2_000).len(), 1, "kept in the data dir");
        assert!(again.expire(s.id, 3_000).expect("saved").is_some());
        assert!(again.muting(&alert, 3_001).is_none(), "ended");
        assert!(again.expire(99, 3_000).expect("saved").is_none());
        assert!(matches!(
            again.add(std::collections::BTreeMap::new(), 1, "ops", "x", 0),
            Err(SilenceBookError::Invalid(SilenceError::NoMatchers))
        ));
    }
}
