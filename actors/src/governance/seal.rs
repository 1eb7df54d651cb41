//! The audit chain's key and signed checkpoints, in files outside the data dir.
//!
//! [`AuditSeal`] holds the key (made at the first start, when the chain is still empty,
//! 0600) and appends signed checkpoints of the chain's head to the checkpoint file (one JSON
//! line each, synced) and to the log. [`ChainTrust`] says whether the chain verified when
//! warden started: while it does not, the gatekeeper grants nothing of tier 2 or more.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden_core::audit::{AuditKey, ChainBreak, ChainId, Checkpoint, CheckpointLine, Hash, Retirement};
use warden_core::config::AuditFiles;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SealError {
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("audit key {path}: {reason}")]
    BadKey { path: PathBuf, reason: String },
    #[error(
        "audit key {path} is missing, but the chain already has entries: restore the key (the chain cannot be \
         checked or continued without it)"
    )]
    Missing { path: PathBuf },
    #[error("checkpoint file {path}, line {line}: {reason}")]
    BadCheckpoint { path: PathBuf, line: usize, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SealError + '_ {
    move |e| SealError::Io { path: path.to_path_buf(), reason: e.to_string() }
}

/// The key that seals the chain and where its checkpoints go.
#[derive(Debug, Clone)]
pub struct AuditSeal {
    key: AuditKey,
    checkpoint_file: PathBuf,
}

impl AuditSeal {
    /// Reads the key; makes one (0600, its folder 0700) when there is none and the chain is
    /// empty. A missing key beside a non-empty chain is refused: a new key would make every
    /// earlier seal look forged.
    pub fn open(files: &AuditFiles, chain_is_empty: bool) -> Result<Self, SealError> {
        let path = &files.key_file;
        let key = match std::fs::read_to_string(path) {
            Ok(text) => AuditKey::parse_hex(&text)
                .map_err(|e| SealError::BadKey { path: path.clone(), reason: e.to_string() })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && chain_is_empty => {
                let key = AuditKey::from_bytes(rand::random());
                write_private(path, &format!("{}\n", key.to_hex()))?;
                tracing::info!(
                    key = %path.display(),
                    "made the audit key: keep a copy off this machine; without it the chain cannot be checked"
                );
                key
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SealError::Missing { path: path.clone() });
            }
            Err(e) => return Err(io(path)(e)),
        };
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(key = %path.display(), "the audit key is readable by others; chmod 600 it");
        }
        Ok(Self { key, checkpoint_file: files.checkpoint_file.clone() })
    }

    /// Reads the key only (for checking a chain; nothing is made).
    pub fn read(files: &AuditFiles) -> Result<Self, SealError> {
        Self::open(files, false)
    }

    pub fn key(&self) -> &AuditKey {
        &self.key
    }

    /// The checkpoints of `chain` (see `warden_core::audit::select`): `Err` when the file
    /// cannot be read, `Ok(Err)` when it shows the chain cannot be trusted (a forged line, an
    /// earlier chain of the same data dir gone and not retired).
    pub fn book(&self, chain: &ChainId, adopt_unnamed: bool) -> Result<Result<Vec<Checkpoint>, ChainBreak>, SealError> {
        Ok(warden_core::audit::select(&self.lines()?, &self.key, chain, adopt_unnamed))
    }

    /// Every line of the checkpoint file so far (none when the file does not exist yet).
    pub fn lines(&self) -> Result<Vec<CheckpointLine>, SealError> {
        let path = &self.checkpoint_file;
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(path)(e)),
        };
        let (whole, torn) = split_torn(&text);
        if !torn.trim().is_empty() {
            // A write cut short by a crash was never acknowledged: it is not a forgery.
            tracing::warn!(file = %path.display(), "the last checkpoint line is incomplete (a crash mid-write); skipped");
        }
        whole
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| SealError::BadCheckpoint {
                    path: path.clone(),
                    line: i + 1,
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// Signs the head (`seq`, `hash`) of `chain` and appends it to the checkpoint file
    /// (synced) and to the log.
    pub fn checkpoint(&self, chain: &ChainId, seq: u64, hash: Hash) -> Result<Checkpoint, SealError> {
        let cp = Checkpoint::of_chain(chain, seq, hash, warden_core::time::now_unix_ms(), &self.key);
        self.append(&CheckpointLine::Checkpoint(cp.clone()))?;
        tracing::info!(seq, hash = hex::encode(hash), mac = hex::encode(cp.mac), "audit checkpoint");
        Ok(cp)
    }

    /// Says chain `chain` is gone on purpose (its data dir was reset): a signed line in the
    /// checkpoint file, after which a fresh chain in that data dir is trusted.
    pub fn retire(&self, chain: &ChainId, by: &str, reason: &str) -> Result<Retirement, SealError> {
        let r = Retirement::new(chain, by, reason, warden_core::time::now_unix_ms(), &self.key);
        self.append(&CheckpointLine::Retirement(r.clone()))?;
        tracing::warn!(chain = chain.id, data_dir = chain.data_dir, by, reason, "audit chain retired");
        Ok(r)
    }

    fn append(&self, line: &CheckpointLine) -> Result<(), SealError> {
        let path = &self.checkpoint_file;
        let line =
            serde_json::to_string(line).map_err(|e| SealError::Io { path: path.clone(), reason: e.to_string() })?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(io(path))?;
        drop_torn_tail(&mut f).map_err(io(path))?;
        f.write_all(format!("{line}\n").as_bytes()).map_err(io(path))?;
        f.sync_data().map_err(io(path))
    }
}

/// The complete lines of `text` and what follows the last newline (a torn write).
fn split_torn(text: &str) -> (&str, &str) {
    match text.rfind('\n') {
        Some(i) => text.split_at(i + 1),
        None => ("", text),
    }
}

/// Cuts an incomplete last line off the checkpoint file, so the next line starts clean.
fn drop_torn_tail(f: &mut std::fs::File) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    // Checkpoint lines are short: the last newline is within the last few hundred bytes.
    let back = len.min(4096);
    f.seek(SeekFrom::Start(len - back))?;
    let mut tail = Vec::with_capacity(back as usize);
    f.read_to_end(&mut tail)?;
    if tail.last() == Some(&b'\n') {
        return Ok(());
    }
    let keep = match tail.iter().rposition(|&b| b == b'\n') {
        Some(i) => len - back + i as u64 + 1,
        None if back == len => 0,
        None => return Ok(()), // one line longer than 4 KiB: not ours to cut
    };
    f.set_len(keep)?;
    f.sync_data()
}

/// Writes the key file; a folder made for it is 0700.
fn write_private(path: &Path, text: &str) -> Result<(), SealError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    }
    crate::private_file::write(path, text.as_bytes(), None).map_err(io(path))
}

/// The identity of the store's audit chain in `data_dir` (canonical): its id, made and kept
/// when `create` and the store has none (a chain older than ids is adopted: its unnamed
/// checkpoints become its own), and whether unnamed checkpoints are its own. Without
/// `create` (a check from the shell), a store with no id is a fresh chain (id empty) or,
/// when it has entries, an old one that adopts the unnamed checkpoints.
pub async fn chain_identity(
    store: &crate::store::Store,
    data_dir: &Path,
    create: bool,
) -> Result<(ChainId, bool), crate::store::StoreError> {
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf()).display().to_string();
    if let Some((id, adopted)) = store.audit_chain_id().await? {
        return Ok((ChainId { id, data_dir: dir }, adopted));
    }
    let old = store.audit_head().await?.is_some();
    if !create {
        return Ok((ChainId { id: String::new(), data_dir: dir }, old));
    }
    let id = hex::encode(rand::random::<[u8; 8]>());
    store.set_audit_chain_id(id.clone(), old).await?;
    tracing::info!(chain = id, data_dir = dir, adopted = old, "the audit chain is named");
    Ok((ChainId { id, data_dir: dir }, old))
}

/// A check of a store's chain from outside the node's writer (the shell, the API): with the
/// key when it can be read, against this chain's checkpoints. `unsealed` says why the seals
/// could not be checked, if they could not.
pub async fn check(
    store: &crate::store::Store,
    data_dir: &Path,
    files: &AuditFiles,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<(Result<crate::store::Verified, ChainBreak>, Option<String>), crate::store::StoreError> {
    let (key, checkpoints, unsealed) = match AuditSeal::read(files) {
        Ok(seal) => {
            let (chain, adopt) = chain_identity(store, data_dir, false).await?;
            match seal.book(&chain, adopt) {
                Ok(Ok(c)) => (Some(seal.key().clone()), c, None),
                Ok(Err(b)) => return Ok((Err(b), None)),
                Err(e) => (Some(seal.key().clone()), Vec::new(), Some(e.to_string())),
            }
        }
        Err(e) => (None, Vec::new(), Some(e.to_string())),
    };
    Ok((store.verify_chain(key, checkpoints, from, to).await?, unsealed))
}

/// Whether the audit chain verified when warden started, shared with the gatekeeper and
/// the API. It starts unverified: until the committer has read the whole chain, nothing of
/// tier 2 or more may be granted on its word.
#[derive(Debug, Clone)]
pub struct ChainTrust(Arc<tokio::sync::watch::Sender<TrustState>>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustState {
    Unverified,
    Trusted,
    Broken(String),
}

impl Default for ChainTrust {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(TrustState::Unverified)))
    }
}

impl ChainTrust {
    /// Why the chain is not trusted (yet), if it is not.
    pub fn broken(&self) -> Option<String> {
        match &*self.0.borrow() {
            TrustState::Unverified => Some("the audit chain is not verified yet".into()),
            TrustState::Trusted => None,
            TrustState::Broken(why) => Some(why.clone()),
        }
    }

    /// Whether the start-up verification is still under way.
    pub fn verifying(&self) -> bool {
        *self.0.borrow() == TrustState::Unverified
    }

    /// Like [`broken`](Self::broken), but first waits (up to `limit`) for the start-up
    /// verification to end, so a request that comes early is judged, not refused.
    pub async fn settled(&self, limit: std::time::Duration) -> Option<String> {
        let mut rx = self.0.subscribe();
        let _ = tokio::time::timeout(limit, rx.wait_for(|s| *s != TrustState::Unverified)).await;
        self.broken()
    }

    pub fn set_broken(&self, why: String) {
        self.0.send_replace(TrustState::Broken(why));
    }

    pub fn set_trusted(&self) {
        self.0.send_replace(TrustState::Trusted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> AuditFiles {
        AuditFiles { key_file: dir.join("keys/audit.key"), checkpoint_file: dir.join("keys/checkpoints") }
    }

    #[test]
    fn test_a_key_is_made_private_for_an_empty_chain_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = files(dir.path());
        let made = AuditSeal::open(&f, true).expect("made");
        let mode = std::fs::metadata(&f.key_file).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = AuditSeal::open(&f, false).expect("read back");
        assert_eq!(made.key(), again.key(), "the same key, not a new one");
    }

    #[test]
    fn test_a_missing_key_beside_a_chain_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = AuditSeal::open(&files(dir.path()), false).expect_err("missing");
        assert!(matches!(err, SealError::Missing { .. }), "{err}");
    }

    #[test]
    fn test_a_torn_last_checkpoint_is_skipped_and_cut_before_the_next() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = files(dir.path());
        let seal = AuditSeal::open(&f, true).expect("seal");
        let c = chain();
        seal.checkpoint(&c, 3, [1; 32]).expect("write");
        let mut file = std::fs::OpenOptions::new().append(true).open(&f.checkpoint_file).expect("open");
        file.write_all(b"{\"seq\":4,\"ha").expect("torn");
        drop(file);
        assert_eq!(mine(&seal).len(), 1, "the torn line is skipped");
        seal.checkpoint(&c, 5, [2; 32]).expect("write after");
        let cps = mine(&seal);
        assert_eq!(cps.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![3, 5]);
        let text = std::fs::read_to_string(&f.checkpoint_file).expect("text");
        assert!(!text.contains("\"ha{"), "the torn fragment is gone: {text}");
    }

    #[tokio::test]
    async fn test_trust_starts_unverified_and_settles_once_checked() {
        let trust = ChainTrust::default();
        assert!(trust.broken().is_some(), "nothing is trusted before the chain is read");
        let limit = std::time::Duration::from_millis(20);
        assert!(trust.settled(limit).await.is_some(), "still unverified after the wait");
        let later = trust.clone();
        let waiter = tokio::spawn(async move { later.settled(std::time::Duration::from_secs(30)).await });
        tokio::task::yield_now().await;
        trust.set_trusted();
        assert_eq!(waiter.await.expect("joined"), None, "the waiter sees the verdict");
        trust.set_broken("forged".into());
        assert_eq!(trust.broken().as_deref(), Some("forged"));
    }

    #[test]
    fn test_checkpoints_are_appended_and_read_back_signed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seal = AuditSeal::open(&files(dir.path()), true).expect("seal");
        seal.checkpoint(&chain(), 3, [1; 32]).expect("write");
        seal.checkpoint(&chain(), 7, [2; 32]).expect("write");
        let cps = mine(&seal);
        assert_eq!(cps.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![3, 7]);
        assert!(cps.iter().all(|c| c.is_signed_by(seal.key())));
    }

    #[test]
    fn test_a_retired_chain_no_longer_holds_a_fresh_one_in_its_data_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seal = AuditSeal::open(&files(dir.path()), true).expect("seal");
        seal.checkpoint(&chain(), 9, [1; 32]).expect("write");
        let fresh = ChainId { id: "fresh".into(), data_dir: "/d".into() };
        assert!(seal.book(&fresh, false).expect("read").is_err(), "the old chain is gone, not retired");
        seal.retire(&chain(), "alice", "reset on purpose").expect("retire");
        assert_eq!(seal.book(&fresh, false).expect("read"), Ok(vec![]), "retired: the fresh chain starts clean");
    }

    fn chain() -> ChainId {
        ChainId { id: "c1".into(), data_dir: "/d".into() }
    }

    fn mine(seal: &AuditSeal) -> Vec<Checkpoint> {
        seal.book(&chain(), false).expect("read").expect("trusted")
    }
}
