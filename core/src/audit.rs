//! The audit trail's entries and its SHA-256 hash chain.
//!
//! Each entry is hashed over a canonical encoding (postcard: fixed field order, no maps) of
//! the entry itself, which includes the previous entry's hash. Changing, deleting or
//! reordering any stored entry breaks the chain at that point, and a [`Verifier`] walking
//! the stored entries names it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];
/// The `prev_hash` of the first entry.
pub const GENESIS: Hash = [0u8; 32];

/// Who caused an action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Externally tagged (the serde default): postcard cannot decode self-describing forms.
#[serde(rename_all = "snake_case")]
pub enum AuditActor {
    System,
    User(String),
}

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// The gatekeeper's decision on a request, written before it answers.
    Decision,
    /// What happened when the permitted action ran.
    Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Allow,
    Deny,
    PendingApproval,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    Succeeded,
    Failed,
    RolledBack,
}

/// What an entry says. Field order is part of the canonical encoding: do not reorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub kind: EntryKind,
    pub actor: AuditActor,
    pub action: String,
    pub tier: u8,
    pub target: String,
    pub rationale: String,
    pub decision: DecisionKind,
    pub outcome: Option<OutcomeKind>,
    /// Free text: the deny reason, the error of a failed step.
    pub detail: String,
    pub incident_id: Option<u64>,
    pub run_id: Option<u64>,
}

/// A record placed on the chain: its position, time and the previous entry's hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: u64,
    pub ts_unix_ms: u64,
    pub record: AuditRecord,
    #[serde(with = "hex_hash")]
    pub prev_hash: Hash,
}

/// An entry with its own hash, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedEntry {
    pub entry: AuditEntry,
    #[serde(with = "hex_hash")]
    pub hash: Hash,
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() { s.serialize_str(&hex::encode(h)) } else { serde::Serialize::serialize(h, s) }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
            v.try_into().map_err(|_| serde::de::Error::custom("hash must be 32 bytes"))
        } else {
            <[u8; 32]>::deserialize(d)
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error("cannot encode audit entry: {0}")]
    Encode(#[from] postcard::Error),
}

/// The canonical bytes of an entry.
pub fn canonical(entry: &AuditEntry) -> Result<Vec<u8>, AuditError> {
    Ok(postcard::to_stdvec(entry)?)
}

/// SHA-256 over the canonical encoding (which includes `prev_hash`).
pub fn hash_entry(entry: &AuditEntry) -> Result<Hash, AuditError> {
    Ok(Sha256::digest(canonical(entry)?).into())
}

/// Seals `entry` onto a chain whose last entry has `seq` = `entry.seq - 1` and hash `prev`.
pub fn seal(mut entry: AuditEntry, prev: Hash) -> Result<SealedEntry, AuditError> {
    entry.prev_hash = prev;
    let hash = hash_entry(&entry)?;
    Ok(SealedEntry { entry, hash })
}

/// Where and why a chain stops verifying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("audit chain broken at entry {position} (seq {seq}): {reason}")]
pub struct ChainBreak {
    /// 0-based position in the stored order.
    pub position: u64,
    pub seq: u64,
    pub reason: String,
}

/// Checks a chain one entry at a time, in stored order (so a store can stream it).
#[derive(Debug, Clone)]
pub struct Verifier {
    prev: Hash,
    count: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Self { prev: GENESIS, count: 0 }
    }
}

impl Verifier {
    /// Checks the next stored entry against everything before it.
    pub fn push(&mut self, sealed: &SealedEntry) -> Result<(), ChainBreak> {
        let position = self.count;
        let seq = sealed.entry.seq;
        let broken = |reason: String| ChainBreak { position, seq, reason };
        if seq != position + 1 {
            return Err(broken(format!("expected seq {}, found {seq} (deleted or reordered entry)", position + 1)));
        }
        if sealed.entry.prev_hash != self.prev {
            return Err(broken("prev_hash does not match the previous entry's hash".into()));
        }
        let actual = hash_entry(&sealed.entry).map_err(|e| broken(e.to_string()))?;
        if actual != sealed.hash {
            return Err(broken("content does not match its hash (entry modified)".into()));
        }
        self.prev = sealed.hash;
        self.count += 1;
        Ok(())
    }

    /// The break for a stored entry at the next position that cannot even be decoded.
    pub fn undecodable(&self, reason: String) -> ChainBreak {
        ChainBreak { position: self.count, seq: self.count + 1, reason: format!("entry cannot be decoded: {reason}") }
    }

    /// Entries verified so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// A plain decision entry for other modules' tests.
#[cfg(test)]
pub(crate) fn tests_support_entry() -> AuditEntry {
    tests::entry(1, "restart_service")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn entry(seq: u64, action: &str) -> AuditEntry {
        AuditEntry {
            seq,
            ts_unix_ms: 1_700_000_000_000 + seq,
            record: AuditRecord {
                kind: EntryKind::Decision,
                actor: AuditActor::System,
                action: action.into(),
                tier: 2,
                target: "api".into(),
                rationale: "api /health timed out".into(),
                decision: DecisionKind::Allow,
                outcome: None,
                detail: String::new(),
                incident_id: Some(1),
                run_id: Some(1),
            },
            prev_hash: GENESIS,
        }
    }

    /// How many entries verify, or the first break.
    fn verify(entries: Vec<SealedEntry>) -> Result<u64, ChainBreak> {
        let mut v = Verifier::default();
        for e in &entries {
            v.push(e)?;
        }
        Ok(v.count())
    }

    fn chain(n: u64) -> Vec<SealedEntry> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|seq| {
                let s = seal(entry(seq, "restart_service"), prev).expect("seal");
                prev = s.hash;
                s
            })
            .collect()
    }

    #[test]
    fn test_verify_accepts_intact_chain() {
        assert_eq!(verify(chain(5)), Ok(5));
    }

    #[test]
    fn test_verify_names_modified_entry() {
        let mut c = chain(5);
        c[2].entry.record.target = "db".into();
        let err = verify(c).expect_err("modified");
        assert_eq!((err.position, err.seq), (2, 3));
        assert!(err.reason.contains("modified"), "{err}");
    }

    #[test]
    fn test_verify_names_deleted_entry() {
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify(c).expect_err("deleted").position, 1);
    }

    #[test]
    fn test_verify_names_reordered_entries() {
        let mut c = chain(5);
        c.swap(3, 4);
        assert_eq!(verify(c).expect_err("reordered").position, 3);
    }

    #[test]
    fn test_verify_rejects_rehashed_forgery() {
        // Rewriting an entry and recomputing its own hash still breaks the next link.
        let mut c = chain(4);
        c[1].entry.record.rationale = "forged".into();
        c[1].hash = hash_entry(&c[1].entry).expect("hash");
        assert_eq!(verify(c).expect_err("forged").position, 2);
    }

    #[test]
    fn test_sealed_entry_round_trips_through_postcard() {
        let mut e = entry(1, "x");
        e.record.actor = AuditActor::User("alice".into());
        let sealed = seal(e, GENESIS).expect("seal");
        let bytes = postcard::to_stdvec(&sealed).expect("encode");
        let back: SealedEntry = postcard::from_bytes(&bytes).expect("decode");
        assert_eq!(back, sealed);
    }

    #[test]
    fn test_canonical_encoding_is_stable() {
        let a = canonical(&entry(1, "x")).expect("encode");
        let b = canonical(&entry(1, "x")).expect("encode");
        assert_eq!(a, b);
    }
}
