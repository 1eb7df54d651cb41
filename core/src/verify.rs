//! Verification: a service counts as restored only once it stayed healthy for a while.
//!
//! A repair is verified by checks run after it ended (never the probe board as it stood):
//! rounds of the service's own checks, run again and again. One passing round proves
//! little: a process the kernel kills at every start answers for a few milliseconds. The
//! service is restored once its checks passed at least [`MIN_PASSES`] rounds in a row, the
//! streak lasted its stability window (its `stable_after`), and its process stayed the same
//! one all along. The restore time is the streak's first pass (what MTTR counts to); the
//! incident is resolved at its end. A lower layer still failing then makes it mitigated.

use crate::harm::Health;

/// Passing rounds in a row a restore needs, however short its window.
pub const MIN_PASSES: u32 = 2;

/// Time for a verification past its stability window (a round or two of checks).
pub const WINDOW_SLACK: std::time::Duration = std::time::Duration::from_secs(3);

/// How long a playbook run on a service may take at most: the playbook's own time, and the
/// service's stability window with its slack on top (a long window would otherwise never
/// fit in a verification). The executor stops a run there; the incident manager believes a
/// run still marked running past it (and a grace for putting its service back) is gone.
pub fn run_limit(playbook_timeout: std::time::Duration, stable_after: std::time::Duration) -> std::time::Duration {
    playbook_timeout + stable_after + WINDOW_SLACK
}

/// One round's result, as the verification loop saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    pub at_unix_ms: u64,
    pub own: Health,
    /// Its process now (a new pid in the streak means it died and came back).
    pub pid: Option<u32>,
    /// Its L2/L3 checks failing now.
    pub lower_failing: Vec<String>,
}

/// What the rounds so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not yet: `last` says why (the last failure, or the window not yet over).
    Pending { last: String },
    /// Stable since `since_unix_ms`; `lower_failing` non-empty means mitigated only.
    Restored { since_unix_ms: u64, lower_failing: Vec<String> },
}

/// The stability check of one verification.
#[derive(Debug, Clone)]
pub struct Stability {
    window_ms: u64,
    streak: Option<(u64, Option<u32>)>,
    passes: u32,
}

impl Stability {
    /// A verification that needs the service healthy for `window_ms` (and [`MIN_PASSES`]).
    pub fn new(window_ms: u64) -> Self {
        Self { window_ms, streak: None, passes: 0 }
    }

    /// Takes one round into account.
    pub fn observe(&mut self, round: &Round) -> Progress {
        match &round.own {
            Health::Failing(what) => {
                self.streak = None;
                self.passes = 0;
                return Progress::Pending { last: what.clone() };
            }
            // The caller decides what "no check" means (its ready state) before it asks.
            Health::Passing | Health::Unknown => {}
        }
        match self.streak {
            Some((_, pid)) if pid != round.pid => {
                self.streak = Some((round.at_unix_ms, round.pid));
                self.passes = 1;
                return Progress::Pending { last: "its process was replaced during the window".into() };
            }
            Some(_) => self.passes += 1,
            None => {
                self.streak = Some((round.at_unix_ms, round.pid));
                self.passes = 1;
            }
        }
        let since = self.streak.map_or(round.at_unix_ms, |(s, _)| s);
        let lasted = round.at_unix_ms.saturating_sub(since);
        if self.passes >= MIN_PASSES && lasted >= self.window_ms {
            return Progress::Restored { since_unix_ms: since, lower_failing: round.lower_failing.clone() };
        }
        Progress::Pending {
            last: format!(
                "healthy for {lasted} ms of its {} ms stability window ({} passing round(s))",
                self.window_ms, self.passes
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(at: u64, own: Health, pid: u32) -> Round {
        Round { at_unix_ms: at, own, pid: Some(pid), lower_failing: vec![] }
    }

    #[test]
    fn test_one_pass_is_not_a_restore_two_over_the_window_are() {
        let mut s = Stability::new(1_000);
        assert!(matches!(s.observe(&round(0, Health::Passing, 7)), Progress::Pending { .. }));
        assert!(matches!(s.observe(&round(500, Health::Passing, 7)), Progress::Pending { .. }), "window not over");
        assert_eq!(
            s.observe(&round(1_000, Health::Passing, 7)),
            Progress::Restored { since_unix_ms: 0, lower_failing: vec![] },
            "restored since the streak's first pass"
        );
    }

    #[test]
    fn test_a_zero_window_still_needs_two_passes() {
        let mut s = Stability::new(0);
        assert!(matches!(s.observe(&round(0, Health::Passing, 7)), Progress::Pending { .. }));
        assert!(matches!(s.observe(&round(1, Health::Passing, 7)), Progress::Restored { .. }));
    }

    #[test]
    fn test_a_failure_or_a_new_process_in_the_window_starts_it_again() {
        // A service the kernel kills at every start answers between its deaths: never stable.
        let mut s = Stability::new(1_000);
        s.observe(&round(0, Health::Passing, 7));
        assert_eq!(
            s.observe(&round(400, Health::Failing("refused".into()), 7)),
            Progress::Pending { last: "refused".into() }
        );
        s.observe(&round(800, Health::Passing, 8));
        assert!(
            matches!(s.observe(&round(1_200, Health::Passing, 9)), Progress::Pending { last } if last.contains("replaced"))
        );
        assert!(matches!(s.observe(&round(2_000, Health::Passing, 9)), Progress::Pending { .. }));
        assert!(matches!(
            s.observe(&round(2_200, Health::Passing, 9)),
            Progress::Restored { since_unix_ms: 1_200, .. }
        ));
    }

    #[test]
    fn test_a_lower_layer_still_failing_makes_the_restore_a_mitigation() {
        let mut s = Stability::new(0);
        let cut = |at| Round { lower_failing: vec!["link down".into()], ..round(at, Health::Passing, 7) };
        s.observe(&cut(0));
        assert_eq!(
            s.observe(&cut(5)),
            Progress::Restored { since_unix_ms: 0, lower_failing: vec!["link down".into()] }
        );
    }
}
