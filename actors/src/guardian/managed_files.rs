//! A service's `files:` with the config as the source of truth.
//!
//! Before each start (and at a reload that changes only them) every managed file is
//! brought to what the config declares: written when missing, rewritten when it still
//! holds what an earlier config declared (the config changed, nobody touched the file),
//! given its declared owner and mode when its content is the config's. A file whose
//! content is neither (someone edited it, or a rotation wrote a new secret) is left as it
//! is and reported: warden does not overwrite a person's fix in the middle of it. Every
//! version is kept in the vault.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use warden_core::config::ManagedFile;

use super::vault::Vault;

/// What [`settle`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Written with the config's content (it was missing, or held an older declaration).
    Written,
    /// It already held the config's content (owner and mode made right).
    Current,
    /// It holds content the config never declared: left alone.
    Edited,
}

/// Brings `f` to what the config declares, as far as that is the config's to do.
pub fn settle(vault: &Vault, f: &ManagedFile) -> io::Result<Settled> {
    let declared = f.content.as_bytes();
    let owner = owner(f);
    let settled = match std::fs::read(&f.path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            write(f, owner)?;
            Settled::Written
        }
        Err(e) => return Err(e),
        Ok(now) if now == declared => {
            let m = std::fs::metadata(&f.path)?;
            if let Some((uid, gid)) = owner
                && (uid.is_some_and(|u| u != m.uid()) || gid != m.gid())
            {
                std::os::unix::fs::chown(&f.path, uid, Some(gid))?;
            }
            if m.permissions().mode() & 0o777 != f.mode {
                std::fs::set_permissions(&f.path, std::fs::Permissions::from_mode(f.mode))?;
            }
            Settled::Current
        }
        Ok(now) if vault.was_declared(&f.path, &now)? => {
            write(f, owner)?;
            Settled::Written
        }
        Ok(_) => Settled::Edited,
    };
    if settled != Settled::Edited {
        vault.mark_declared(&f.path, declared)?;
    }
    // Every version it is started with, edits too, so a restore has one to use.
    vault.keep(&f.path)?;
    Ok(settled)
}

/// Writes the config's content, whole or not at all, with its owner and mode.
pub fn write(f: &ManagedFile, owner: Option<(Option<u32>, u32)>) -> io::Result<()> {
    if let Some(dir) = f.path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::private_file::write_with_mode(&f.path, f.content.as_bytes(), f.mode, owner)
}

/// Its declared owner, where it is not warden's own.
pub fn owner(f: &ManagedFile) -> Option<(Option<u32>, u32)> {
    match (f.uid, f.gid) {
        (None, None) => None,
        (uid, gid) => Some((uid, gid.unwrap_or_else(|| nix::unistd::getegid().as_raw()))),
    }
}

/// Makes a service's declared data directory when it does not exist yet: owned by the
/// user it runs as, mode 0700, so a program that fills its own data dir at first start
/// (`initdb`, Redis) can. One that exists is never touched.
pub fn make_data_dir(spec: &warden_core::config::ServiceSpec) -> io::Result<bool> {
    let Some(dir) = &spec.hooks.data else { return Ok(false) };
    if std::fs::symlink_metadata(dir).is_ok() {
        return Ok(false);
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::create_dir(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    if let Some(id) = &spec.identity {
        std::os::unix::fs::chown(dir, id.user.as_ref().map(|u| u.uid), Some(id.gid))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn file(dir: &Path, content: &str, mode: u32) -> ManagedFile {
        ManagedFile { path: dir.join("app/nginx.conf"), content: content.into(), mode, uid: None, gid: None }
    }

    #[test]
    fn test_the_config_is_the_source_of_truth_but_a_hand_edit_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = Vault::new(dir.path().join("vault"));
        let v1 = file(dir.path(), "one\n", 0o644);
        assert_eq!(settle(&vault, &v1).expect("settle"), Settled::Written);
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&v1.path), 0o644, "readable by the service's workers");
        assert_eq!(settle(&vault, &v1).expect("settle"), Settled::Current);
        // The config changes: the file still holds the old declaration, so it is rewritten.
        let v2 = file(dir.path(), "two\n", 0o640);
        assert_eq!(settle(&vault, &v2).expect("settle"), Settled::Written);
        assert_eq!(std::fs::read_to_string(&v2.path).expect("read"), "two\n");
        assert_eq!(mode(&v2.path), 0o640);
        // Someone edits it: kept as they left it, and vaulted.
        std::fs::write(&v2.path, "fixing\n").expect("edit");
        assert_eq!(settle(&vault, &v2).expect("settle"), Settled::Edited);
        assert_eq!(std::fs::read_to_string(&v2.path).expect("read"), "fixing\n");
        assert!(vault.versions(&v2.path).expect("versions").len() >= 3);
        // A mode changed by hand on the config's content is put back.
        std::fs::write(&v2.path, "two\n").expect("edit back");
        std::fs::set_permissions(&v2.path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(settle(&vault, &v2).expect("settle"), Settled::Current);
        assert_eq!(mode(&v2.path), 0o640);
    }
}
