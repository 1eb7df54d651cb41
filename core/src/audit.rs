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
/// Checkpoints that name their chain sign the chain and its data dir too.
const CHAIN_CHECKPOINT_DOMAIN: &[u8] = b"warden-audit-chain-checkpoint\0";
const RETIREMENT_DOMAIN: &[u8] = b"warden-audit-retirement\0";

/// Which chain a checkpoint belongs to: a random id made when the chain began (kept in the
/// store) and the data dir it lives in. Two nodes sharing a checkpoint file (one config
/// folder, two data dirs) keep two chains apart; a data dir whose chain vanished (wiped,
/// or replaced by a fresh store) is told from a new data dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainId {
    pub id: String,
    pub data_dir: String,
}

/// A person said a chain is gone on purpose (its data dir was reset): its checkpoints no
/// longer expect it there. Signed with the audit key, like a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retirement {
    /// The chain retired.
    pub retire: String,
    pub data_dir: String,
    pub ts_unix_ms: u64,
    pub by: String,
    pub reason: String,
    #[serde(with = "hex_hash")]
    pub mac: Hash,
}

impl Retirement {
    pub fn new(chain: &ChainId, by: &str, reason: &str, ts_unix_ms: u64, key: &AuditKey) -> Self {
        let mut r = Self {
            retire: chain.id.clone(),
            data_dir: chain.data_dir.clone(),
            ts_unix_ms,
            by: by.to_string(),
            reason: reason.to_string(),
            mac: [0; 32],
        };
        let ts = ts_unix_ms.to_be_bytes();
        r.mac = key.mac(RETIREMENT_DOMAIN, &r.parts(&ts));
        r
    }

    fn parts<'a>(&'a self, ts: &'a [u8; 8]) -> [&'a [u8]; 5] {
        [self.retire.as_bytes(), self.data_dir.as_bytes(), ts, self.by.as_bytes(), self.reason.as_bytes()]
    }

    pub fn is_signed_by(&self, key: &AuditKey) -> bool {
        let ts = self.ts_unix_ms.to_be_bytes();
        key.mac_matches(RETIREMENT_DOMAIN, &self.parts(&ts), &self.mac)
    }
}

/// One line of the checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CheckpointLine {
    Retirement(Retirement),
    Checkpoint(Checkpoint),
}

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
    /// The chain it is of (`None`: written before chains were named; see [`select`]).
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainId>,
}

impl Checkpoint {
    /// A checkpoint of no named chain (as written before chains had ids).
    pub fn new(seq: u64, hash: Hash, ts_unix_ms: u64, key: &AuditKey) -> Self {
        Self { seq, hash, ts_unix_ms, mac: key.checkpoint_mac(seq, &hash, ts_unix_ms), chain: None }
    }

    /// A checkpoint of `chain`, which its signature covers.
    pub fn of_chain(chain: &ChainId, seq: u64, hash: Hash, ts_unix_ms: u64, key: &AuditKey) -> Self {
        let parts = Self::chain_parts(chain, seq, &hash, ts_unix_ms);
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let mac = key.mac(CHAIN_CHECKPOINT_DOMAIN, &refs);
        Self { seq, hash, ts_unix_ms, mac, chain: Some(chain.clone()) }
    }

    fn chain_parts<'a>(chain: &'a ChainId, seq: u64, hash: &'a Hash, ts: u64) -> [Vec<u8>; 5] {
        [
            seq.to_be_bytes().to_vec(),
            hash.to_vec(),
            ts.to_be_bytes().to_vec(),
            chain.id.as_bytes().to_vec(),
            chain.data_dir.as_bytes().to_vec(),
        ]
    }

    /// Whether `key` signed it (its chain too, when it names one).
    pub fn is_signed_by(&self, key: &AuditKey) -> bool {
        match &self.chain {
            None => key.mac_matches(
                CHECKPOINT_DOMAIN,
                &[&self.seq.to_be_bytes(), &self.hash, &self.ts_unix_ms.to_be_bytes()],
                &self.mac,
            ),
            Some(c) => {
                let parts = Self::chain_parts(c, self.seq, &self.hash, self.ts_unix_ms);
                let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                key.mac_matches(CHAIN_CHECKPOINT_DOMAIN, &refs, &self.mac)
            }
        }
    }
}

/// The checkpoints that vouch for chain `me`, from every line of a checkpoint file: those
/// of its own id (wherever its data dir was), and, for a chain that took over a store made
/// before chains had ids (`adopt_unnamed`), the unnamed ones. Refused (a break to report):
/// a line not signed by `key`; another chain that lived in `me`'s data dir and was not
/// retired (its store was wiped or replaced: the chain that proved what happened is gone).
pub fn select(
    lines: &[CheckpointLine],
    key: &AuditKey,
    me: &ChainId,
    adopt_unnamed: bool,
) -> Result<Vec<Checkpoint>, ChainBreak> {
    let forged = |seq: u64, what: &str| ChainBreak {
        position: seq.saturating_sub(1),
        seq,
        reason: format!("a {what} is not signed by the audit key (forged, or another key)"),
    };
    let mut retired: Vec<(&str, &str)> = Vec::new();
    for l in lines {
        if let CheckpointLine::Retirement(r) = l {
            if !r.is_signed_by(key) {
                return Err(forged(0, "retirement"));
            }
            retired.push((r.retire.as_str(), r.data_dir.as_str()));
        }
    }
    let mut mine = Vec::new();
    let mut gone: Option<&Checkpoint> = None;
    for l in lines {
        let CheckpointLine::Checkpoint(c) = l else { continue };
        if !c.is_signed_by(key) {
            return Err(forged(c.seq, "checkpoint"));
        }
        match &c.chain {
            None if adopt_unnamed => mine.push(c.clone()),
            None => {}
            Some(chain) if chain.id == me.id => mine.push(c.clone()),
            Some(chain)
                if chain.data_dir == me.data_dir
                    && !retired.contains(&(chain.id.as_str(), chain.data_dir.as_str()))
                    && gone.is_none_or(|g| c.seq > g.seq) =>
            {
                gone = Some(c);
            }
            Some(_) => {}
        }
    }
    if let Some(g) = gone {
        let id = g.chain.as_ref().map_or("", |c| c.id.as_str());
        return Err(ChainBreak {
            position: 0,
            seq: 1,
            reason: format!(
                "the audit chain {id} of this data dir ({} entries as of {}) is gone: its store was wiped or \
                 replaced. If the data dir was reset on purpose, say so: `warden audit retire {id} --reason ...`",
                g.seq,
                crate::time::rfc3339(g.ts_unix_ms)
            ),
        });
    }
    Ok(mine)
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

    fn chain_id(id: &str, dir: &str) -> ChainId {
        ChainId { id: id.into(), data_dir: dir.into() }
    }

    fn line(c: &ChainId, seq: u64) -> CheckpointLine {
        CheckpointLine::Checkpoint(Checkpoint::of_chain(c, seq, [seq as u8; 32], 1_000 + seq, &key()))
    }

    #[test]
    fn test_each_chain_has_its_checkpoints_and_a_new_data_dir_starts_clean() {
        // Two nodes share one checkpoint file: A in data dir /a, B (new) in /b.
        let (a, b) = (chain_id("aaa", "/a"), chain_id("bbb", "/b"));
        let lines = vec![line(&a, 3), line(&a, 9)];
        let mine = select(&lines, &key(), &a, false).expect("a's own");
        assert_eq!(mine.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![3, 9]);
        assert!(select(&lines, &key(), &b, false).expect("b is another dir").is_empty(), "b starts its own chain");
        // A moved to /c keeps its checkpoints (by id).
        assert_eq!(select(&lines, &key(), &chain_id("aaa", "/c"), false).expect("moved").len(), 2);
    }

    #[test]
    fn test_a_data_dir_whose_chain_vanished_is_caught_until_retired() {
        let (old, fresh) = (chain_id("old", "/a"), chain_id("new", "/a"));
        let mut lines = vec![line(&old, 5)];
        let err = select(&lines, &key(), &fresh, false).expect_err("wiped");
        assert!(err.reason.contains("chain old of this data dir") && err.reason.contains("audit retire old"), "{err}");
        lines.push(CheckpointLine::Retirement(Retirement::new(&old, "alice", "reset for the demo", 2_000, &key())));
        assert!(select(&lines, &key(), &fresh, false).expect("retired").is_empty());
        // A forged retirement retires nothing.
        let mut forged = Retirement::new(&old, "mallory", "hide it", 2_000, &key());
        forged.reason = "changed".into();
        let err =
            select(&[line(&old, 5), CheckpointLine::Retirement(forged)], &key(), &fresh, false).expect_err("forged");
        assert!(err.reason.contains("retirement is not signed"), "{err}");
    }

    #[test]
    fn test_a_checkpoint_signs_its_chain_and_unnamed_ones_go_to_the_adopting_chain() {
        let a = chain_id("aaa", "/a");
        let CheckpointLine::Checkpoint(mut cp) = line(&a, 4) else { unreachable!() };
        assert!(cp.is_signed_by(&key()));
        cp.chain = Some(chain_id("aaa", "/elsewhere"));
        assert!(!cp.is_signed_by(&key()), "the data dir is signed too");
        let text = serde_json::to_string(&line(&a, 4)).expect("json");
        assert_eq!(serde_json::from_str::<CheckpointLine>(&text).expect("back"), line(&a, 4), "{text}");
        let legacy = CheckpointLine::Checkpoint(Checkpoint::new(2, [2; 32], 5, &key()));
        assert_eq!(select(std::slice::from_ref(&legacy), &key(), &a, true).expect("adopted").len(), 1);
        assert!(select(&[legacy], &key(), &a, false).expect("not adopted").is_empty());
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
