//! The store's journal files (`store/N.jnl`), checked batch by batch before the store opens.
//!
//! fjall replays its journals when it opens; a journal file is preallocated, so its data is
//! followed by zeros. A batch cut short (the rest of the file zeros, or its end) is a write
//! that never completed and was never acknowledged: fjall drops it, and so do we. Anything
//! else that does not read as a batch is corruption: a complete batch whose checksum does
//! not match makes fjall refuse to open without saying where, and a damaged marker makes it
//! silently drop the rest of the file. This module
//! walks the files with fjall 3's journal framing (start marker with item count and
//! sequence number, items, end marker with an xxh3 checksum and the `FJL\x03` magic) to
//! name the file and offset of every bad batch, and can cut bad batches out so every
//! intact batch before and after them is kept.

use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3;

const TAG_START: u8 = 1;
const TAG_ITEM: u8 = 2;
const TAG_END: u8 = 3;
const TAG_CLEAR: u8 = 4;
const MAGIC: &[u8] = &[b'F', b'J', b'L', 3];

/// One item of a batch: which keyspace (fjall's id) and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    pub keyspace_id: u64,
    pub key: Vec<u8>,
}

/// A complete batch that cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    pub file: PathBuf,
    /// Where the batch starts.
    pub offset: u64,
    /// Where it ends (exclusive), when its framing could be followed that far.
    pub end: Option<u64>,
    pub reason: String,
    pub seqno: Option<u64>,
    /// What it held, as far as it could be read.
    pub items: Vec<BatchItem>,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte offset {}: {}", self.file.display(), self.offset, self.reason)
    }
}

/// What a journal file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileScan {
    pub batches: u64,
    /// Bytes of an unfinished last batch (a write that never completed).
    pub torn_tail: u64,
    pub corruption: Option<Corruption>,
}

/// The journal files of a store, oldest first.
pub fn files(store: &Path) -> Vec<PathBuf> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(store)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_str()?.to_string();
                    let n = name.strip_suffix(".jnl")?.parse().ok()?;
                    Some((n, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// A cursor over a journal's bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(slice)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
    }
}

/// How reading one batch ended.
enum Batch {
    Ok,
    /// The file ends inside it.
    Torn,
    /// It does not read as a batch; `at` is where reading failed.
    Unreadable {
        at: usize,
        reason: String,
        seqno: Option<u64>,
        items: Vec<BatchItem>,
    },
    /// It reads as a complete batch, but cannot be trusted.
    Bad {
        reason: String,
        end: u64,
        seqno: u64,
        items: Vec<BatchItem>,
    },
}

fn read_batch(c: &mut Cursor<'_>) -> Batch {
    let at = c.pos;
    let Some(tag) = c.u8() else { return Batch::Torn };
    if tag != TAG_START {
        let reason = format!("expected a batch start, found tag {tag}");
        return Batch::Unreadable { at, reason, seqno: None, items: vec![] };
    }
    let (Some(count), Some(seqno)) = (c.u32(), c.u64()) else { return Batch::Torn };
    let mut hasher = Xxh3::new();
    let mut items = Vec::new();
    for _ in 0..count {
        let item_start = c.pos;
        let Some(tag) = c.u8() else { return Batch::Torn };
        match tag {
            TAG_ITEM => {
                // value type, compression, keyspace id, key length, value length, stored length
                let (Some(_), Some(_), Some(keyspace_id), Some(key_len), Some(_), Some(stored)) =
                    (c.u8(), c.u8(), c.u64(), c.u16(), c.u32(), c.u32())
                else {
                    return Batch::Torn;
                };
                let Some(key) = c.take(usize::from(key_len)) else { return Batch::Torn };
                let key = key.to_vec();
                if c.take(stored as usize).is_none() {
                    return Batch::Torn;
                }
                items.push(BatchItem { keyspace_id, key });
            }
            TAG_CLEAR => {
                if c.u64().is_none() {
                    return Batch::Torn;
                }
            }
            other => {
                let reason = format!("item {} has unknown tag {other}", items.len());
                return Batch::Unreadable { at: item_start, reason, seqno: Some(seqno), items };
            }
        }
        hasher.update(&c.bytes[item_start..c.pos]);
    }
    let marker = c.pos;
    let Some(tag) = c.u8() else { return Batch::Torn };
    let (Some(expected), Some(magic)) = (c.u64(), c.take(MAGIC.len())) else { return Batch::Torn };
    if tag != TAG_END || magic != MAGIC {
        // A marker whose magic is still zeros was being written when the write was cut.
        let at = if tag == TAG_END { c.pos - MAGIC.len() } else { marker };
        let reason = "batch end marker damaged".to_string();
        return Batch::Unreadable { at, reason, seqno: Some(seqno), items };
    }
    if hasher.digest() != expected {
        let reason = "checksum mismatch (content changed)".to_string();
        return Batch::Bad { reason, end: c.pos as u64, seqno, items };
    }
    Batch::Ok
}

/// The offset of the first complete batch with a matching checksum at or after `from`.
/// Most offsets fail at their first byte, so the search is about one pass over the rest.
fn next_intact_batch(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len())
        .find(|&at| bytes[at] == TAG_START && matches!(read_batch(&mut Cursor { bytes, pos: at }), Batch::Ok))
}

/// Writes `bytes` over `file` atomically: a crash leaves the old file or the new one.
fn replace_file(file: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = file.with_extension("jnl.recovering");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)?;
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Walks one journal file; stops at the first corruption.
pub fn scan_file(path: &Path) -> std::io::Result<FileScan> {
    let bytes = std::fs::read(path)?;
    let mut c = Cursor { bytes: &bytes, pos: 0 };
    let zeros_from = |at: usize| bytes.get(at..).is_none_or(|rest| rest.iter().all(|&b| b == 0));
    let mut scan = FileScan::default();
    while c.pos < bytes.len() {
        let start = c.pos;
        // The preallocated rest of the file: the data ends here.
        if zeros_from(start) {
            break;
        }
        let corruption = match read_batch(&mut c) {
            Batch::Ok => {
                scan.batches += 1;
                continue;
            }
            // A batch that runs past the end of the file is a write cut short only if
            // nothing intact follows it; a damaged length that skips over later batches
            // is corruption, and it ends where the next intact batch starts.
            Batch::Torn => match next_intact_batch(&bytes, start + 1) {
                None => {
                    scan.torn_tail = (bytes.len() - start) as u64;
                    break;
                }
                Some(next) => Corruption {
                    file: path.to_path_buf(),
                    offset: start as u64,
                    end: Some(next as u64),
                    reason: format!(
                        "batch framing runs past the end of the file, yet an intact batch starts at offset {next}"
                    ),
                    seqno: None,
                    items: Vec::new(),
                },
            },
            // Only zeros after the point where it stopped reading: a write cut short.
            Batch::Unreadable { at, .. } if zeros_from(at) => {
                scan.torn_tail = (at - start) as u64;
                break;
            }
            Batch::Unreadable { reason, seqno, items, .. } => {
                Corruption { file: path.to_path_buf(), offset: start as u64, end: None, reason, seqno, items }
            }
            Batch::Bad { reason, end, seqno, items } => Corruption {
                file: path.to_path_buf(),
                offset: start as u64,
                end: Some(end),
                reason,
                seqno: Some(seqno),
                items,
            },
        };
        scan.corruption = Some(corruption);
        break;
    }
    Ok(scan)
}

/// The first corruption in a store's journals, if any.
pub fn first_corruption(store: &Path) -> std::io::Result<Option<Corruption>> {
    for file in files(store) {
        if let Some(c) = scan_file(&file)?.corruption {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// Cuts every bad batch out of the store's journals (the rest of a file when a bad batch's
/// end cannot be found), keeping every intact batch; returns what was cut.
pub fn cut_corruption(store: &Path) -> std::io::Result<Vec<Corruption>> {
    let mut cut = Vec::new();
    for file in files(store) {
        // Bounded: each pass removes at least one byte of the file.
        for _ in 0..10_000 {
            let Some(c) = scan_file(&file)?.corruption else { break };
            let mut bytes = std::fs::read(&file)?;
            let start = c.offset as usize;
            match c.end {
                Some(end) => {
                    bytes.drain(start..(end as usize).min(bytes.len()));
                }
                // Zeros from there: fjall reads that as the end of the journal.
                None => bytes[start..].fill(0),
            }
            replace_file(&file, &bytes)?;
            cut.push(c);
        }
    }
    Ok(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A journal of `n` one-item batches in fjall's framing.
    fn journal(n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for seq in 0..n {
            let mut item = vec![TAG_ITEM, 0, 0];
            item.extend(7u64.to_le_bytes());
            item.extend(8u16.to_le_bytes());
            item.extend(5u32.to_le_bytes());
            item.extend(5u32.to_le_bytes());
            item.extend(seq.to_be_bytes());
            item.extend(b"hello");
            out.push(TAG_START);
            out.extend(1u32.to_le_bytes());
            out.extend(seq.to_le_bytes());
            out.extend(&item);
            out.push(TAG_END);
            out.extend(xxhash_rust::xxh3::xxh3_64(&item).to_le_bytes());
            out.extend(MAGIC);
        }
        out
    }

    #[test]
    fn test_a_flipped_byte_is_named_and_cut_out_keeping_the_batches_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("0.jnl");
        let mut bytes = journal(5);
        let batch = bytes.len() / 5;
        let flip = 2 * batch + 13 + 21 + 8 + 2; // inside the third batch's value
        bytes[flip] ^= 0x20;
        std::fs::write(&file, &bytes).expect("write");
        let bad = first_corruption(dir.path()).expect("scan").expect("corruption found");
        assert_eq!((bad.offset, bad.end), (2 * batch as u64, Some(3 * batch as u64)), "{bad}");
        assert_eq!(bad.items[0].key, 2u64.to_be_bytes(), "it says what was in the batch");
        let cut = cut_corruption(dir.path()).expect("cut");
        assert_eq!(cut.len(), 1);
        let after = scan_file(&file).expect("scan");
        assert_eq!((after.batches, after.corruption), (4, None), "the other four batches are kept");
    }

    #[test]
    fn test_a_damaged_length_that_skips_later_batches_is_corruption_not_a_torn_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("0.jnl");
        let mut bytes = journal(4);
        let batch = bytes.len() / 4;
        // The second batch's stored value length (start 13 bytes, item tag, 2 flags,
        // keyspace 8, key length 2, value length 4, then the stored length): far too long.
        let stored_len = batch + 13 + 1 + 2 + 8 + 2 + 4;
        bytes[stored_len + 3] = 0x40;
        std::fs::write(&file, &bytes).expect("write");
        let scan = scan_file(&file).expect("scan");
        let bad = scan.corruption.clone().expect("corruption, not a torn tail");
        assert_eq!((bad.offset, bad.end), (batch as u64, Some(2 * batch as u64)), "{bad}");
        cut_corruption(dir.path()).expect("cut");
        let after = scan_file(&file).expect("scan");
        assert_eq!((after.batches, after.corruption, after.torn_tail), (3, None, 0), "the other three are kept");
    }

    #[test]
    fn test_an_unfinished_last_batch_is_a_torn_tail_not_corruption() {
        // Cut short at the end of the file, or followed by the preallocated zeros.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("0.jnl");
        let mut bytes = journal(3);
        bytes.truncate(bytes.len() - 6);
        std::fs::write(&file, &bytes).expect("write");
        let scan = scan_file(&file).expect("scan");
        assert_eq!(scan.batches, 2);
        assert!(scan.torn_tail > 0 && scan.corruption.is_none(), "{scan:?}");
        bytes.extend(vec![0u8; 4096]);
        std::fs::write(&file, &bytes).expect("write");
        let scan = scan_file(&file).expect("scan");
        assert!(scan.batches == 2 && scan.torn_tail > 0 && scan.corruption.is_none(), "{scan:?}");
    }

    #[test]
    fn test_the_preallocated_zeros_are_the_end_of_the_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("0.jnl");
        let mut bytes = journal(3);
        bytes.extend(vec![0u8; 4096]);
        std::fs::write(&file, &bytes).expect("write");
        assert_eq!(scan_file(&file).expect("scan"), FileScan { batches: 3, torn_tail: 0, corruption: None });
    }
}
