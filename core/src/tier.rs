//! Autonomy tiers: 1 observe or trivially reversible (autonomous), 2 reversible change
//! (needs a whitelist entry), 3 destructive or hard to reverse (whitelist and approval),
//! 4 never autonomous (a person acts).

use serde::{Deserialize, Serialize};

/// Autonomy tier of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Tier(u8);

impl Tier {
    pub const OBSERVE: Tier = Tier(1);
    pub const REVERSIBLE: Tier = Tier(2);
    pub const DESTRUCTIVE: Tier = Tier(3);
    pub const HUMAN_ONLY: Tier = Tier(4);

    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Tier {
    type Error = TierError;
    fn try_from(v: u8) -> Result<Self, TierError> {
        if (1..=4).contains(&v) { Ok(Tier(v)) } else { Err(TierError(v)) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("tier must be 1, 2, 3 or 4, not {0}")]
pub struct TierError(pub u8);

impl From<Tier> for u8 {
    fn from(t: Tier) -> u8 {
        t.0
    }
}
