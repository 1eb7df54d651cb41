//! Files only their owner may read (the audit key, API tokens, a service's credentials),
//! written whole or not at all.
//!
//! The text goes to a fresh temporary file beside the target (created, never reused, so a
//! planted file or symlink is not written through), mode 0600 from the start, synced, then
//! renamed over the target, and the folder synced: a crash leaves the old file or the new
//! one, never half of one.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes `content` to `path`, mode 0600, owned by `owner` (uid, gid) when given.
pub fn write(path: &Path, content: &[u8], owner: Option<(Option<u32>, u32)>) -> std::io::Result<()> {
    write_with_mode(path, content, 0o600, owner)
}

/// [`write`] with another mode (a config its workers must read: 0644). The file is 0600
/// until it is whole, then given `mode`, then renamed into place.
pub fn write_with_mode(
    path: &Path,
    content: &[u8],
    mode: u32,
    owner: Option<(Option<u32>, u32)>,
) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().create_new(true).write(true).mode(0o600).open(&tmp)?;
        f.write_all(content)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, uid, Some(gid))?;
        }
        if mode != 0o600 {
            f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn test_a_private_file_replaces_the_old_one_and_is_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/secret");
        super::write(&path, b"one", None).expect("first");
        super::write(&path, b"two", None).expect("again");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(path.parent().expect("dir")).expect("list").collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
    }
}
