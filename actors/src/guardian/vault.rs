//! The config vault: versioned copies of the files services need (configs, credentials).
//!
//! A file is vaulted when warden writes it or first sees it at a service's start, and
//! before any playbook step changes it, so `restore_file` always has a version to put
//! back and its own change can be undone. Each file has a folder under `vault/` named by
//! the hash of its path, holding `path` (the original path) and one file per version,
//! `<unix ms>-<sha256 prefix>`, 0600 like the secrets they copy. A version equal to the
//! newest one is not stored twice.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone)]
pub struct Vault {
    root: PathBuf,
}

impl Vault {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn folder(&self, path: &Path) -> PathBuf {
        let digest = Sha256::digest(path.as_os_str().as_encoded_bytes());
        self.root.join(hex::encode(&digest[..12]))
    }

    /// Keeps the current content of `path`; the version it is stored as (`None` when the
    /// file does not exist).
    pub fn keep(&self, path: &Path) -> io::Result<Option<String>> {
        let content = match std::fs::read(path) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        self.keep_content(path, &content).map(Some)
    }

    /// Keeps `content` as a version of `path` (unless the newest version is the same).
    pub fn keep_content(&self, path: &Path, content: &[u8]) -> io::Result<String> {
        let hash = hex::encode(&Sha256::digest(content)[..8]);
        if let Some(newest) = self.versions(path)?.pop()
            && newest.ends_with(&hash)
            && self.read(path, &newest)? == content
        {
            return Ok(newest);
        }
        let folder = self.folder(path);
        if !folder.exists() {
            std::fs::create_dir_all(&folder)?;
            std::fs::set_permissions(&self.root, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
            std::fs::write(folder.join("path"), path.as_os_str().as_encoded_bytes())?;
        }
        // A version's name sorts by time, strictly after the newest (two in the same
        // millisecond would otherwise sort by hash).
        let newest_ms = self.versions(path)?.last().and_then(|v| v[..13].parse::<u64>().ok()).unwrap_or(0);
        let version = format!("{:013}-{hash}", warden_core::time::now_unix_ms().max(newest_ms + 1));
        crate::private_file::write(&folder.join(&version), content, None)?;
        Ok(version)
    }

    /// Every version of `path`, oldest first.
    pub fn versions(&self, path: &Path) -> io::Result<Vec<String>> {
        let folder = self.folder(path);
        let mut v: Vec<String> = match std::fs::read_dir(&folder) {
            Ok(rd) => rd
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.len() > 14 && n.as_bytes()[13] == b'-' && n[..13].bytes().all(|b| b.is_ascii_digit()))
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        v.sort();
        Ok(v)
    }

    pub fn read(&self, path: &Path, version: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.folder(path).join(version))
    }

    /// The version a restore of `path` would write back: the newest; or with `previous`
    /// the newest one before the file's current content (the change to take back), from
    /// the newest when the current content was never vaulted. A `previous` restore never
    /// picks content that an earlier one took back ([`Vault::reject`]): after a bad token
    /// was vaulted on its way out, putting it back would only be refused again.
    pub fn pick(&self, path: &Path, previous: bool) -> io::Result<Option<String>> {
        let mut versions = self.versions(path)?;
        if !previous {
            return Ok(versions.pop());
        }
        let now = std::fs::read(path).ok();
        let rejected = self.rejected(path)?;
        let mut end = versions.len();
        if let Some(now) = &now {
            for (i, v) in versions.iter().enumerate().rev() {
                if &self.read(path, v)? == now {
                    end = i;
                    break;
                }
            }
        }
        for v in versions[..end].iter().rev() {
            let content = self.read(path, v)?;
            if Some(&content) != now.as_ref() && !rejected.contains(&content_hash(&content)) {
                return Ok(Some(v.clone()));
            }
        }
        Ok(None)
    }

    /// Marks `content` of `path` as taken back by a restore: no `previous` restore picks it
    /// again.
    pub fn reject(&self, path: &Path, content: &[u8]) -> io::Result<()> {
        self.add_hash(path, "rejected", content)
    }

    fn rejected(&self, path: &Path) -> io::Result<Vec<String>> {
        self.hashes(path, "rejected")
    }

    /// Adds `content`'s hash to `path`'s list `list` (once).
    fn add_hash(&self, path: &Path, list: &str, content: &[u8]) -> io::Result<()> {
        let hash = content_hash(content);
        let mut all = self.hashes(path, list)?;
        if all.contains(&hash) {
            return Ok(());
        }
        all.push(hash);
        let folder = self.folder(path);
        std::fs::create_dir_all(&folder)?;
        crate::private_file::write(&folder.join(list), all.join("\n").as_bytes(), None)
    }

    fn hashes(&self, path: &Path, list: &str) -> io::Result<Vec<String>> {
        match std::fs::read_to_string(self.folder(path).join(list)) {
            Ok(text) => Ok(text.lines().map(str::to_string).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// Marks `content` of `path` as written by warden itself (a rotated secret): a roll-back
    /// of changes to a service's files leaves it alone, it is no change to take back. A
    /// restore is not marked: it wrote back an older version, which a later roll-back may
    /// rightly take back in turn.
    pub fn mark_written(&self, path: &Path, content: &[u8]) -> io::Result<()> {
        self.add_hash(path, "written", content)
    }

    /// Whether `path`'s current content is one warden wrote itself.
    pub fn written_by_warden(&self, path: &Path) -> io::Result<bool> {
        let Ok(now) = std::fs::read(path) else { return Ok(false) };
        Ok(self.hashes(path, "written")?.contains(&content_hash(&now)))
    }

    /// Writes version `version` of `path` back, whole or not at all, with the owner and
    /// mode the file has now (0600 when it is gone).
    pub fn restore(&self, path: &Path, version: &str) -> io::Result<u64> {
        use std::os::unix::fs::PermissionsExt;
        let content = self.read(path, version)?;
        let mode = std::fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o777);
        crate::private_file::write_with_mode(path, &content, mode, owner_of(path))?;
        Ok(content.len() as u64)
    }

    /// Marks `content` as what the config declared for `path` (written by warden from the
    /// config): a file that still holds an earlier declaration is the config's to update,
    /// any other content is someone's edit.
    pub fn mark_declared(&self, path: &Path, content: &[u8]) -> io::Result<()> {
        self.add_hash(path, "declared", content)
    }

    /// Whether `content` is one the config declared for `path` at some time.
    pub fn was_declared(&self, path: &Path, content: &[u8]) -> io::Result<bool> {
        Ok(self.hashes(path, "declared")?.contains(&content_hash(content)))
    }
}

/// Who owns `path` now, so a restore keeps the service's user as the owner.
fn owner_of(path: &Path) -> Option<(Option<u32>, u32)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    // Only worth a chown when it is not ours already.
    (m.uid() != nix::unistd::geteuid().as_raw() || m.gid() != nix::unistd::getegid().as_raw())
        .then(|| (Some(m.uid()), m.gid()))
}

fn content_hash(content: &[u8]) -> String {
    hex::encode(Sha256::digest(content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_versions_are_kept_once_and_the_previous_differs_from_now() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = Vault::new(dir.path().join("vault"));
        let file = dir.path().join("app.json");
        assert_eq!(vault.keep(&file).expect("missing"), None);
        std::fs::write(&file, "one").expect("write");
        let first = vault.keep(&file).expect("keep").expect("version");
        assert_eq!(vault.keep(&file).expect("again").as_deref(), Some(first.as_str()), "not stored twice");
        std::fs::write(&file, "two").expect("write");
        vault.keep(&file).expect("keep");
        assert_eq!(vault.versions(&file).expect("list").len(), 2);
        assert_eq!(vault.pick(&file, true).expect("pick").as_deref(), Some(first.as_str()), "before the change");
        std::fs::write(&file, "one").expect("write");
        assert_eq!(vault.pick(&file, true).expect("pick"), None, "nothing before the first version");
        std::fs::write(&file, "three").expect("write");
        assert!(vault.pick(&file, true).expect("pick").is_some_and(|v| v != first), "never vaulted: the newest");
        // "two" was taken back once: a later restore of a never-vaulted "four" skips it.
        vault.reject(&file, b"two").expect("reject");
        std::fs::write(&file, "four").expect("write");
        assert_eq!(vault.pick(&file, true).expect("pick").as_deref(), Some(first.as_str()), "skips the rejected");
        std::fs::remove_file(&file).expect("rm");
        let newest = vault.pick(&file, false).expect("pick").expect("some");
        assert_eq!(vault.restore(&file, &newest).expect("restore"), 3);
        assert_eq!(std::fs::read_to_string(&file).expect("read"), "two");
        assert!(!vault.written_by_warden(&file).expect("marks"), "a restore writes an older version back");
        vault.mark_written(&file, b"six").expect("mark");
        std::fs::write(&file, "six").expect("write");
        assert!(vault.written_by_warden(&file).expect("marks"), "a rotation is warden's own write");
        std::fs::write(&file, "five").expect("write");
        assert!(!vault.written_by_warden(&file).expect("marks"), "a change from outside is not");
    }
}
