//! Service output: both streams of a service go straight into its log file (opened for
//! append), not through a pipe warden reads. So a service never blocks or dies on a full
//! or broken pipe, its output outlives a `kill -9` of warden, and warden copies no bytes.
//! Rotation copies the file to `.1` (shifting older ones) and truncates it in place, as
//! logrotate's `copytruncate` does: the service keeps writing through the same descriptor.
//! Lines written between the copy and the truncation are lost; that window is
//! microseconds, and the price of not needing the service's help to reopen its log.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use warden_core::config::LogPolicy;

/// Opens (creating it and its folder) the log file for appending.
pub fn open(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

fn rotated(path: &Path, i: usize) -> PathBuf {
    PathBuf::from(format!("{}.{i}", path.display()))
}

/// Rotates `path` if it has reached the policy's size; true when it did.
pub fn rotate_if_full(path: &Path, policy: LogPolicy) -> io::Result<bool> {
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if size < policy.max_bytes {
        return Ok(false);
    }
    let keep = policy.keep.max(1);
    let _ = std::fs::remove_file(rotated(path, keep));
    for i in (1..keep).rev() {
        let _ = std::fs::rename(rotated(path, i), rotated(path, i + 1));
    }
    std::fs::copy(path, rotated(path, 1))?;
    OpenOptions::new().write(true).open(path)?.set_len(0)?;
    Ok(true)
}

/// The last `lines` lines of the log (reads at most the last 16 KiB).
pub fn tail(path: &Path, lines: usize) -> Vec<String> {
    const WINDOW: u64 = 16 * 1024;
    let Ok(mut f) = File::open(path) else { return Vec::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(WINDOW)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    // The first line of a cut window may be partial.
    let skip = usize::from(len > WINDOW && !all.is_empty());
    all[skip..].iter().rev().take(lines).rev().map(|l| l.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn test_rotation_keeps_the_writer_and_the_configured_files() {
        // The writer keeps its descriptor across rotations (copytruncate); only `keep`
        // rotated files stay.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.log");
        let mut writer = open(&path).expect("open");
        let policy = LogPolicy { max_bytes: 100, keep: 2 };
        for i in 0..50 {
            writeln!(writer, "line {i:04} padding padding").expect("write");
            rotate_if_full(&path, policy).expect("rotate");
        }
        assert!(dir.path().join("s.log.1").exists() && dir.path().join("s.log.2").exists());
        assert!(!dir.path().join("s.log.3").exists(), "only `keep` rotated files");
        assert!(std::fs::metadata(&path).expect("meta").len() < 100, "current file was truncated");
        writeln!(writer, "after").expect("write after rotation");
        assert_eq!(tail(&path, 1), ["after"], "the same descriptor still writes at the end");
    }
}
