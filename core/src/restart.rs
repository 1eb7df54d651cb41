//! Service restart decisions: capped exponential backoff and crash-loop quarantine.
//!
//! The first exit in a quiet window is restarted at once (a crash should cost no more than
//! the service's own boot); each further exit inside the window doubles the delay up to a
//! cap; more than `max_restarts` exits inside the window quarantine the service, as
//! Kubernetes' CrashLoopBackOff and systemd's StartLimitBurst do. A process that was ready
//! and stayed up for `stable_after` was no crash loop: its exit starts a fresh history
//! (as supervisord's `startsecs` and Kubernetes' backoff reset do), so a healthy service
//! killed from outside again and again is restarted at once every time. Time is tokio's
//! monotonic clock so tests run on paused time.

use crate::config::RestartPolicy;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartDecision {
    /// Start the service again after this delay.
    Restart { delay: Duration, attempt: usize },
    /// Too many restarts in the window: leave it stopped and alert.
    Quarantine { restarts_in_window: usize },
}

/// The restart history of one service.
#[derive(Debug, Clone)]
pub struct RestartTracker {
    policy: RestartPolicy,
    exits: VecDeque<Instant>,
}

impl RestartTracker {
    pub fn new(policy: RestartPolicy) -> Self {
        Self { policy, exits: VecDeque::new() }
    }

    /// Records an exit at `now` and decides what to do about it. `stable_for` is how long
    /// the process had been ready when it exited (`None`: it never became ready).
    pub fn on_exit(&mut self, now: Instant, stable_for: Option<Duration>) -> RestartDecision {
        if stable_for.is_some_and(|d| d >= self.policy.stable_after) {
            self.exits.clear();
        }
        let window = self.policy.window;
        while let Some(&first) = self.exits.front() {
            if now.duration_since(first) > window {
                self.exits.pop_front();
            } else {
                break;
            }
        }
        self.exits.push_back(now);
        let n = self.exits.len();
        if n > self.policy.max_restarts {
            return RestartDecision::Quarantine { restarts_in_window: n };
        }
        RestartDecision::Restart { delay: backoff(&self.policy, n), attempt: n }
    }

    /// Exits counted towards the budget now (within the window, since it was last stable).
    pub fn recent_exits(&self, now: Instant) -> usize {
        self.exits.iter().filter(|t| now.duration_since(**t) <= self.policy.window).count()
    }

    /// When a repair may start this service's process again without going past its
    /// backoff: the process now running was `started` after the exits in the window; a
    /// deliberate restart of it counts as the next restart, so it waits as long after that
    /// start as the supervisor would wait after an exit. `None`: at once (it has been
    /// stable, or has no exits in its window).
    pub fn repair_restart_at(&self, now: Instant, started: Instant) -> Option<Instant> {
        let n = self.recent_exits(now);
        if n == 0 {
            return None;
        }
        let at = started + backoff(&self.policy, n + 1);
        (at > now).then_some(at)
    }

    /// Forgets the history (an operator released the quarantine).
    pub fn reset(&mut self) {
        self.exits.clear();
    }
}

/// Delay before the `n`th restart within a window (1-based): 0, initial, 2×initial, … ≤ max.
pub fn backoff(policy: &RestartPolicy, n: usize) -> Duration {
    if n <= 1 {
        return Duration::ZERO;
    }
    let shift = (n - 2).min(20) as u32;
    policy.backoff_initial.saturating_mul(1u32 << shift).min(policy.backoff_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn test_a_repair_restart_of_a_crash_looping_service_keeps_the_backoff() {
        let policy = RestartPolicy {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            max_restarts: 10,
            window: Duration::from_secs(60),
            stable_after: Duration::from_secs(1),
        };
        let mut t = RestartTracker::new(policy);
        let start = Instant::now();
        assert_eq!(t.repair_restart_at(start, start), None, "no exits: at once");
        t.on_exit(start, None);
        t.on_exit(start, None);
        // Two exits: the supervisor waited 100 ms before this start; a third restart waits 200 ms.
        let started = start + Duration::from_millis(100);
        assert_eq!(t.repair_restart_at(started, started), Some(started + Duration::from_millis(200)));
        let later = started + Duration::from_secs(1);
        assert_eq!(t.repair_restart_at(later, started), None, "the backoff is over");
    }

    fn policy() -> RestartPolicy {
        RestartPolicy {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
            max_restarts: 3,
            window: Duration::from_secs(10),
            stable_after: Duration::from_secs(1),
        }
    }

    #[test]
    fn test_backoff_is_immediate_then_doubles_to_cap() {
        let p = policy();
        let ms: Vec<u128> = (1..=7).map(|n| backoff(&p, n).as_millis()).collect();
        assert_eq!(ms, [0, 100, 200, 400, 800, 1000, 1000]);
    }

    #[tokio::test(start_paused = true)]
    async fn test_tracker_quarantines_past_max_restarts_in_window() {
        let mut t = RestartTracker::new(policy());
        let now = Instant::now();
        for attempt in 1..=3 {
            assert!(matches!(t.on_exit(now, None), RestartDecision::Restart { attempt: a, .. } if a == attempt));
        }
        assert_eq!(t.on_exit(now, None), RestartDecision::Quarantine { restarts_in_window: 4 });
    }

    #[tokio::test(start_paused = true)]
    async fn test_exit_after_a_stable_run_starts_a_fresh_history() {
        // Killed from outside after running fine: never quarantined, always restarted at once.
        let mut t = RestartTracker::new(policy());
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(
                t.on_exit(now, Some(Duration::from_millis(1_500))),
                RestartDecision::Restart { delay: Duration::ZERO, attempt: 1 }
            );
        }
        // Dying soon after becoming ready still counts toward the crash loop.
        for _ in 0..3 {
            t.on_exit(now, Some(Duration::from_millis(200)));
        }
        assert!(matches!(t.on_exit(now, Some(Duration::from_millis(200))), RestartDecision::Quarantine { .. }));
    }

    #[tokio::test(start_paused = true)]
    async fn test_tracker_forgets_exits_older_than_window() {
        let mut t = RestartTracker::new(policy());
        let start = Instant::now();
        for _ in 0..3 {
            t.on_exit(start, None);
        }
        let later = start + Duration::from_secs(11);
        assert_eq!(
            t.on_exit(later, None),
            RestartDecision::Restart { delay: Duration::ZERO, attempt: 1 },
            "old exits fall out of the window"
        );
    }
}
