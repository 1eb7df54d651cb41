//! The audit trail's entries, its SHA-256 hash chain, its seals and its checkpoints.
//!
//! Each entry is hashed over a canonical encoding (postcard: fixed field order, no maps) of
//! the entry itself, which includes the previous entry's hash. Changing, deleting or
//! reordering any stored entry breaks the chain at that point, and a [`Verifier`] walking
//! the stored entries names it.
//!
//! A chain alone does not stop someone who can write the store: they can rewrite an entry
//! and re-hash everything after it, append a well-chained forgery, or cut the tail. So each
//! entry is also sealed with an HMAC under an [`AuditKey`] kept outside the data dir, and
//! the head is written now and then as a signed [`Checkpoint`] to a second place. With the
//! key, a forgery or a re-hashed rewrite fails its seal, and a chain that ends before a
//! checkpoint (truncated or wiped) is named as such ([`ChainCheck`]).

use hmac::{Hmac, Mac};
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
    /// What supervision did by its own rules, without a request (a crash restart, a
    /// quarantine): recorded so that an outage leaves a trace.
    Supervision,
    /// An approver's vote on an approval request, or its expiry (`decision` says which
    /// way); the grant it leads to is a decision of its own.
    Approval,
    /// A person's (or the node's own) word on healing itself: a pause or a resume, a
    /// service put in maintenance or back, an incident acknowledged or closed, the
    /// circuit breaker opening, an audit chain retired.
    Control,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    Allow,
    Deny,
    PendingApproval,
}

impl DecisionKind {
    pub const ALL: [DecisionKind; 3] = [DecisionKind::Allow, DecisionKind::Deny, DecisionKind::PendingApproval];

    /// As the API and the audit trail name it.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Allow => "allow",
            DecisionKind::Deny => "deny",
            DecisionKind::PendingApproval => "pending_approval",
        }
    }
}

/// Who, as the log names them: `system` or `user:<name>`.
impl std::fmt::Display for AuditActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditActor::System => f.write_str("system"),
            AuditActor::User(name) => write!(f, "user:{name}"),
        }
    }
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

/// An entry with its own hash and its seal, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedEntry {
    pub entry: AuditEntry,
    #[serde(with = "hex_hash")]
    pub hash: Hash,
    /// HMAC-SHA256 of the hash under the audit key.
    #[serde(with = "hex_hash")]
    pub seal: Hash,
}

impl SealedEntry {
    /// The entry as the API lists it and `warden audit export` writes it: times in Unix ms
    /// and RFC 3339, hashes and seal in hex.
    pub fn to_json(&self) -> serde_json::Value {
        let e = &self.entry;
        let r = &e.record;
        serde_json::json!({
            "seq": e.seq,
            "ts_unix_ms": e.ts_unix_ms,
            "ts": crate::time::rfc3339(e.ts_unix_ms),
            "kind": r.kind,
            "actor": match &r.actor {
                AuditActor::System => "system",
                AuditActor::User(u) => u.as_str(),
            },
            "action": r.action,
            "tier": r.tier,
            "target": r.target,
            "rationale": r.rationale,
            "decision": r.decision,
            "outcome": r.outcome,
            "detail": r.detail,
            "incident_id": r.incident_id,
            "run_id": r.run_id,
            "prev_hash": hex::encode(e.prev_hash),
            "hash": hex::encode(self.hash),
            "seal": hex::encode(self.seal),
        })
    }
}

/// The secret that seals the chain (32 bytes). Kept outside the data dir: whoever can
/// write the store but not read the key cannot forge a seal. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AuditKey([u8; 32]);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(…)")
    }
}

impl AuditKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A key file's text: 64 hex digits (surrounding whitespace ignored).
    pub fn parse_hex(text: &str) -> Result<Self, AuditError> {
        let bytes = hex::decode(text.trim()).map_err(|_| AuditError::Key("not hex".into()))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| AuditError::Key("not 32 bytes (64 hex digits)".into()))?;
        Ok(Self(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    fn hmac(&self, domain: &[u8], parts: &[&[u8]]) -> Option<Hmac<Sha256>> {
        // An HMAC accepts keys of any length; 32 bytes is always fine.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).ok()?;
        m.update(domain);
        for p in parts {
            m.update(p);
        }
        Some(m)
    }

    fn mac(&self, domain: &[u8], parts: &[&[u8]]) -> Hash {
        self.hmac(domain, parts).map(|m| m.finalize().into_bytes().into()).unwrap_or([0; 32])
    }

    /// Compares in constant time, so a forger learns nothing from how long a check takes.
    fn mac_matches(&self, domain: &[u8], parts: &[&[u8]], tag: &Hash) -> bool {
        self.hmac(domain, parts).is_some_and(|m| m.verify_slice(tag).is_ok())
    }

    /// The seal of an entry whose hash is `hash`.
    pub fn seal_of(&self, hash: &Hash) -> Hash {
        self.mac(ENTRY_DOMAIN, &[hash])
    }

    /// Whether `seal` is this key's seal of `hash`.
    pub fn seals(&self, hash: &Hash, seal: &Hash) -> bool {
        self.mac_matches(ENTRY_DOMAIN, &[hash], seal)
    }

    fn checkpoint_mac(&self, seq: u64, hash: &Hash, ts_unix_ms: u64) -> Hash {
        self.mac(CHECKPOINT_DOMAIN, &[&seq.to_be_bytes(), hash, &ts_unix_ms.to_be_bytes()])
    }
}

const ENTRY_DOMAIN: &[u8] = b"warden-audit-entry\0";
const CHECKPOINT_DOMAIN: &[u8] = b"warden-audit-checkpoint\0";

/// The chain's head at a moment, signed with the audit key: kept outside the data dir (a
/// file, the log), it proves how long the chain was and what it ended with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    #[serde(with = "hex_hash")]
    pub hash: Hash,
    pub ts_unix_ms: u64,
    #[serde(with = "hex_hash")]
    pub mac: Hash,
}

impl Checkpoint {
    pub fn new(seq: u64, hash: Hash, ts_unix_ms: u64, key: &AuditKey) -> Self {
        Self { seq, hash, ts_unix_ms, mac: key.checkpoint_mac(seq, &hash, ts_unix_ms) }
    }

    /// Whether `key` signed it.
    pub fn is_signed_by(&self, key: &AuditKey) -> bool {
        key.mac_matches(
            CHECKPOINT_DOMAIN,
            &[&self.seq.to_be_bytes(), &self.hash, &self.ts_unix_ms.to_be_bytes()],
            &self.mac,
        )
    }
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
    #[error("audit key: {0}")]
    Key(String),
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
pub fn seal(mut entry: AuditEntry, prev: Hash, key: &AuditKey) -> Result<SealedEntry, AuditError> {
    entry.prev_hash = prev;
    let hash = hash_entry(&entry)?;
    Ok(SealedEntry { seal: key.seal_of(&hash), entry, hash })
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

/// Checks a chain one entry at a time, in stored order (so a store can stream it). With a
/// key, each entry's seal is checked too.
#[derive(Debug, Clone)]
pub struct Verifier {
    prev: Hash,
    count: u64,
    key: Option<AuditKey>,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Verifier {
    pub fn new(key: Option<AuditKey>) -> Self {
        Self { prev: GENESIS, count: 0, key }
    }

    /// Goes on from a trusted point: `count` entries before, the last with hash `prev`
    /// (a signed checkpoint), so a range is checked without walking what came before.
    pub fn resume(key: Option<AuditKey>, count: u64, prev: Hash) -> Self {
        Self { prev, count, key }
    }

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
        if let Some(key) = &self.key
            && !key.seals(&actual, &sealed.seal)
        {
            return Err(broken(
                "its seal does not match: written without the audit key (a forgery or a rewrite)".into(),
            ));
        }
        self.prev = sealed.hash;
        self.count += 1;
        Ok(())
    }

    /// The break for a stored entry at the next position that cannot even be decoded.
    pub fn undecodable(&self, reason: String) -> ChainBreak {
        ChainBreak { position: self.count, seq: self.count + 1, reason: format!("entry cannot be decoded: {reason}") }
    }

    /// Entries verified so far (the seq of the last one).
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sealed(&self) -> bool {
        self.key.is_some()
    }
}

/// A whole check: the chain and its seals ([`Verifier`]) against the signed checkpoints.
/// An entry at a checkpoint's seq must have the checkpoint's hash; a chain that ends before
/// a checkpoint's seq lost its tail (truncated, or wiped when nothing is left).
#[derive(Debug, Clone)]
pub struct ChainCheck {
    verifier: Verifier,
    /// Signed checkpoints ahead of the verifier, by seq.
    ahead: std::collections::VecDeque<Checkpoint>,
}

impl ChainCheck {
    /// Checks from the start. Checkpoints not signed by `key` are refused (a forged
    /// checkpoint proves nothing); without a key none is used.
    pub fn new(key: Option<AuditKey>, checkpoints: &[Checkpoint]) -> Result<Self, ChainBreak> {
        Self::from(Verifier::new(key), checkpoints)
    }

    /// Checks from the newest signed checkpoint at or before `seq` (entries after it); the
    /// checkpoint itself vouches for everything before.
    pub fn from_checkpoint(key: AuditKey, checkpoints: &[Checkpoint], seq: u64) -> Result<Self, ChainBreak> {
        let start = checkpoints.iter().filter(|c| c.seq <= seq && c.is_signed_by(&key)).max_by_key(|c| c.seq);
        let verifier = match start {
            Some(c) => Verifier::resume(Some(key), c.seq, c.hash),
            None => Verifier::new(Some(key)),
        };
        Self::from(verifier, checkpoints)
    }

    fn from(verifier: Verifier, checkpoints: &[Checkpoint]) -> Result<Self, ChainBreak> {
        let mut ahead: Vec<Checkpoint> = Vec::new();
        if let Some(key) = &verifier.key {
            for c in checkpoints {
                if !c.is_signed_by(key) {
                    return Err(ChainBreak {
                        position: c.seq.saturating_sub(1),
                        seq: c.seq,
                        reason: "a checkpoint is not signed by the audit key (forged, or another key)".into(),
                    });
                }
                if c.seq > verifier.count {
                    ahead.push(c.clone());
                }
            }
        }
        ahead.sort_by_key(|c| c.seq);
        Ok(Self { verifier, ahead: ahead.into() })
    }

    /// Where the check starts (entries before it are vouched for by a checkpoint).
    pub fn starts_after(&self) -> u64 {
        self.verifier.count
    }

    pub fn push(&mut self, sealed: &SealedEntry) -> Result<(), ChainBreak> {
        self.verifier.push(sealed)?;
        while let Some(c) = self.ahead.front().filter(|c| c.seq <= sealed.entry.seq) {
            if c.seq == sealed.entry.seq && c.hash != sealed.hash {
                return Err(ChainBreak {
                    position: c.seq - 1,
                    seq: c.seq,
                    reason: format!(
                        "does not match the signed checkpoint of {} (rewritten since)",
                        crate::time::rfc3339(c.ts_unix_ms)
                    ),
                });
            }
            self.ahead.pop_front();
        }
        Ok(())
    }

    pub fn undecodable(&self, reason: String) -> ChainBreak {
        self.verifier.undecodable(reason)
    }

    /// The end of the stored chain: how many entries verified, or the missing tail.
    pub fn finish(self) -> Result<u64, ChainBreak> {
        let count = self.verifier.count;
        match self.ahead.back() {
            Some(last) => Err(ChainBreak {
                position: count,
                seq: count + 1,
                reason: if count == 0 {
                    format!(
                        "the chain is empty, but a signed checkpoint of {} names {} entries (wiped)",
                        crate::time::rfc3339(last.ts_unix_ms),
                        last.seq
                    )
                } else {
                    format!(
                        "missing tail: the chain ends at seq {count}, but a signed checkpoint of {} names seq {} (truncated)",
                        crate::time::rfc3339(last.ts_unix_ms),
                        last.seq
                    )
                },
            }),
            None => Ok(count),
        }
    }
}

/// Which entries an audit query wants; `None` fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// At or after this time (Unix ms).
    pub since_unix_ms: Option<u64>,
    /// Before this time (Unix ms).
    pub until_unix_ms: Option<u64>,
    pub tier: Option<u8>,
    pub action: Option<String>,
    pub kind: Option<EntryKind>,
    pub decision: Option<DecisionKind>,
    pub outcome: Option<OutcomeKind>,
    /// `system`, or a user's name.
    pub actor: Option<String>,
    pub target: Option<String>,
}

impl AuditFilter {
    pub fn matches(&self, e: &AuditEntry) -> bool {
        let r = &e.record;
        let actor = match &r.actor {
            AuditActor::System => "system",
            AuditActor::User(name) => name.as_str(),
        };
        self.since_unix_ms.is_none_or(|t| e.ts_unix_ms >= t)
            && self.until_unix_ms.is_none_or(|t| e.ts_unix_ms < t)
            && self.tier.is_none_or(|t| r.tier == t)
            && self.action.as_deref().is_none_or(|a| r.action == a)
            && self.kind.is_none_or(|k| r.kind == k)
            && self.decision.is_none_or(|d| r.decision == d)
            && self.outcome.is_none_or(|o| r.outcome == Some(o))
            && self.actor.as_deref().is_none_or(|a| actor == a)
            && self.target.as_deref().is_none_or(|t| r.target == t)
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

    fn key() -> AuditKey {
        AuditKey::from_bytes([7; 32])
    }

    /// How many entries verify (with the key), or the first break.
    fn verify(entries: Vec<SealedEntry>) -> Result<u64, ChainBreak> {
        check(entries, &[])
    }

    fn check(entries: Vec<SealedEntry>, checkpoints: &[Checkpoint]) -> Result<u64, ChainBreak> {
        let mut c = ChainCheck::new(Some(key()), checkpoints)?;
        for e in &entries {
            c.push(e)?;
        }
        c.finish()
    }

    /// Entries `from..=to` chained on `prev`, sealed with `k`.
    fn chain_with(k: &AuditKey, from: u64, to: u64, mut prev: Hash) -> Vec<SealedEntry> {
        (from..=to)
            .map(|seq| {
                let s = seal(entry(seq, "restart_service"), prev, k).expect("seal");
                prev = s.hash;
                s
            })
            .collect()
    }

    fn chain(n: u64) -> Vec<SealedEntry> {
        chain_with(&key(), 1, n, GENESIS)
    }

    fn checkpoint_of(s: &SealedEntry) -> Checkpoint {
        Checkpoint::new(s.entry.seq, s.hash, 1_700_000_100_000, &key())
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
        assert_eq!(verify(c).expect_err("forged").position, 1, "the seal no longer matches");
    }

    #[test]
    fn test_a_rewrite_rehashed_to_the_end_fails_its_seal() {
        // Whoever can write the store but not read the key re-chains everything after a
        // rewritten entry: every hash links, but the seals are not the key's.
        let mut c = chain(5);
        let forger = AuditKey::from_bytes([9; 32]);
        let mut rewritten = c[2].entry.clone();
        rewritten.record.detail = "nothing happened".into();
        let tail = {
            let mut prev = c[1].hash;
            let mut out = Vec::new();
            for (i, e) in std::iter::once(rewritten).chain(c[3..].iter().map(|s| s.entry.clone())).enumerate() {
                let s = seal(e, prev, &forger).expect("seal");
                prev = s.hash;
                out.push((i, s));
            }
            out
        };
        for (i, s) in tail {
            c[2 + i] = s;
        }
        let err = verify(c).expect_err("rewritten");
        assert_eq!((err.position, err.seq), (2, 3), "{err}");
        assert!(err.reason.contains("seal"), "{err}");
    }

    #[test]
    fn test_a_chained_forgery_appended_fails_its_seal() {
        let mut c = chain(3);
        let forged = chain_with(&AuditKey::from_bytes([1; 32]), 4, 4, c[2].hash).remove(0);
        c.push(forged);
        let err = verify(c).expect_err("forged append");
        assert_eq!(err.seq, 4, "{err}");
    }

    #[test]
    fn test_a_truncated_chain_misses_its_checkpointed_tail() {
        let c = chain(6);
        let cp = checkpoint_of(&c[4]);
        let err = check(c[..3].to_vec(), std::slice::from_ref(&cp)).expect_err("truncated");
        assert_eq!((err.position, err.seq), (3, 4), "{err}");
        assert!(err.reason.contains("missing tail") && err.reason.contains("seq 5"), "{err}");
        // The whole chain passes its checkpoint.
        assert_eq!(check(c, &[cp]), Ok(6));
    }

    #[test]
    fn test_a_wiped_chain_is_named_wiped() {
        let cp = checkpoint_of(&chain(2)[1]);
        let err = check(vec![], &[cp]).expect_err("wiped");
        assert!(err.reason.contains("wiped"), "{err}");
    }

    #[test]
    fn test_a_forged_checkpoint_is_refused_and_a_moved_head_named() {
        let c = chain(4);
        let forged = Checkpoint::new(4, c[3].hash, 1, &AuditKey::from_bytes([2; 32]));
        assert!(check(c.clone(), &[forged]).expect_err("forged checkpoint").reason.contains("not signed"));
        // A checkpoint that names another hash at its seq: the entry was rewritten since.
        let mut other = c.clone();
        other[3].entry.record.detail = "x".into();
        let resealed = seal(other[3].entry.clone(), other[2].hash, &key()).expect("seal");
        let cp = checkpoint_of(&c[3]);
        let mut rewritten = c[..3].to_vec();
        rewritten.push(resealed);
        let err = check(rewritten, &[cp]).expect_err("moved");
        assert!(err.reason.contains("does not match the signed checkpoint"), "{err}");
    }

    #[test]
    fn test_a_range_check_starts_at_a_checkpoint() {
        let c = chain(10);
        let cps = [checkpoint_of(&c[3]), checkpoint_of(&c[7])];
        let mut from = ChainCheck::from_checkpoint(key(), &cps, 6).expect("signed");
        assert_eq!(from.starts_after(), 4, "the newest checkpoint at or before 6");
        for e in &c[4..] {
            from.push(e).expect("verifies");
        }
        assert_eq!(from.finish(), Ok(10));
    }

    #[test]
    fn test_the_key_is_never_printed() {
        assert_eq!(format!("{:?}", key()), "AuditKey(…)");
        assert_eq!(AuditKey::parse_hex(&key().to_hex()).expect("hex"), key());
        assert!(AuditKey::parse_hex("abcd").is_err());
    }

    #[test]
    fn test_sealed_entry_round_trips_through_postcard() {
        let mut e = entry(1, "x");
        e.record.actor = AuditActor::User("alice".into());
        let sealed = seal(e, GENESIS, &key()).expect("seal");
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
