//! The per-member health state machine: pure, driven by check results and client reports with
//! explicit `now` instants, so it is tested with a virtual clock.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::HealthConfig;

/// The thresholds of [`HealthMachine`], from [`HealthConfig`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thresholds {
    pub(crate) fall: u32,
    pub(crate) rise: u32,
    pub(crate) passive_failures: u32,
    pub(crate) passive_window: Duration,
}

impl From<&HealthConfig> for Thresholds {
    fn from(c: &HealthConfig) -> Self {
        Self {
            fall: c.fall.max(1),
            rise: c.rise.max(1),
            passive_failures: c.passive_failures.max(1),
            passive_window: c.passive_window,
        }
    }
}

/// A change of a member's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Healthy → unhealthy.
    Down(Reason),
    /// Unhealthy → healthy, after `rise` consecutive passed checks.
    Up,
}

/// Why a member went down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// `fall` consecutive active checks failed.
    Checks(u32),
    /// `passive_failures` client-reported failures within the window.
    Passive(u32),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Checks(n) => write!(f, "{n} consecutive health checks failed"),
            Self::Passive(n) => write!(f, "{n} request failures reported"),
        }
    }
}

/// One member's health: hysteresis over active checks (down after `fall` consecutive failures,
/// up after `rise` consecutive passes) plus passive marks (`passive_failures` reported failures
/// within `passive_window`, with no reported success in between, bring it down; only active
/// checks bring it back).
#[derive(Debug, Clone)]
pub(crate) struct HealthMachine {
    healthy: bool,
    /// Consecutive failed active checks.
    fails: u32,
    /// Consecutive passed active checks (since the last failure of any kind).
    passes: u32,
    /// Instants of recent reported failures, oldest first; at most `passive_failures` long.
    passive: VecDeque<Instant>,
}

impl Default for HealthMachine {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthMachine {
    /// A new member: healthy, with no history.
    pub(crate) fn new() -> Self {
        Self {
            healthy: true,
            fails: 0,
            passes: 0,
            passive: VecDeque::new(),
        }
    }

    /// Whether the member is healthy.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Whether reported failures are pending (a reported success would clear them).
    pub(crate) fn has_passive_failures(&self) -> bool {
        !self.passive.is_empty()
    }

    /// The result of one active check.
    pub(crate) fn on_check(&mut self, passed: bool, t: &Thresholds) -> Option<Transition> {
        if passed {
            self.fails = 0;
            self.passes = self.passes.saturating_add(1);
            if !self.healthy && self.passes >= t.rise {
                self.healthy = true;
                self.passive.clear();
                return Some(Transition::Up);
            }
        } else {
            self.passes = 0;
            self.fails = self.fails.saturating_add(1);
            if self.healthy && self.fails >= t.fall {
                self.healthy = false;
                self.passive.clear();
                return Some(Transition::Down(Reason::Checks(self.fails)));
            }
        }
        None
    }

    /// A failure reported by a client at `now`. On an unhealthy member it restarts the count of
    /// passes needed to come back.
    pub(crate) fn on_failure(&mut self, now: Instant, t: &Thresholds) -> Option<Transition> {
        self.passes = 0;
        if !self.healthy {
            return None;
        }
        while let Some(&oldest) = self.passive.front() {
            if now.saturating_duration_since(oldest) > t.passive_window {
                self.passive.pop_front();
            } else {
                break;
            }
        }
        self.passive.push_back(now);
        let count = u32::try_from(self.passive.len()).unwrap_or(u32::MAX);
        if count >= t.passive_failures {
            self.healthy = false;
            self.passive.clear();
            return Some(Transition::Down(Reason::Passive(count)));
        }
        None
    }

    /// A success reported by a client: forgets pending reported failures. It never makes an
    /// unhealthy member healthy (only active checks do).
    pub(crate) fn on_success(&mut self) {
        self.passive.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Thresholds {
        Thresholds {
            fall: 3,
            rise: 2,
            passive_failures: 3,
            passive_window: Duration::from_secs(10),
        }
    }

    #[test]
    fn new_members_are_healthy() {
        assert!(HealthMachine::new().is_healthy());
        assert!(HealthMachine::default().is_healthy());
    }

    #[test]
    fn active_hysteresis() {
        let t = t();
        let mut m = HealthMachine::new();
        // Fewer than `fall` failures, interrupted by a pass, never demote.
        assert_eq!(m.on_check(false, &t), None);
        assert_eq!(m.on_check(false, &t), None);
        assert_eq!(m.on_check(true, &t), None);
        assert_eq!(m.on_check(false, &t), None);
        assert_eq!(m.on_check(false, &t), None);
        assert!(m.is_healthy());
        assert_eq!(
            m.on_check(false, &t),
            Some(Transition::Down(Reason::Checks(3)))
        );
        assert!(!m.is_healthy());
        // Further failures change nothing.
        assert_eq!(m.on_check(false, &t), None);
        // One pass then a failure restarts the rise count.
        assert_eq!(m.on_check(true, &t), None);
        assert_eq!(m.on_check(false, &t), None);
        assert_eq!(m.on_check(true, &t), None);
        assert!(!m.is_healthy());
        assert_eq!(m.on_check(true, &t), Some(Transition::Up));
        assert!(m.is_healthy());
        assert_eq!(m.on_check(true, &t), None);
    }

    #[test]
    fn fall_and_rise_of_one() {
        let t = Thresholds {
            fall: 1,
            rise: 1,
            ..t()
        };
        let mut m = HealthMachine::new();
        assert!(matches!(m.on_check(false, &t), Some(Transition::Down(_))));
        assert_eq!(m.on_check(true, &t), Some(Transition::Up));
    }

    #[test]
    fn passive_failures_within_the_window_demote() {
        let t = t();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut m = HealthMachine::new();
        assert_eq!(m.on_failure(t0, &t), None);
        assert_eq!(m.on_failure(t0 + s(5), &t), None);
        assert!(m.has_passive_failures());
        // The first failure is out of the window by now: only two count.
        assert_eq!(m.on_failure(t0 + s(11), &t), None);
        assert!(m.is_healthy());
        // Exactly at the window's edge still counts.
        assert_eq!(
            m.on_failure(t0 + s(15), &t),
            Some(Transition::Down(Reason::Passive(3)))
        );
        assert!(!m.is_healthy());
        assert!(!m.has_passive_failures());
    }

    #[test]
    fn reported_success_clears_pending_failures() {
        let t = t();
        let t0 = Instant::now();
        let mut m = HealthMachine::new();
        m.on_failure(t0, &t);
        m.on_failure(t0, &t);
        m.on_success();
        assert!(!m.has_passive_failures());
        assert_eq!(m.on_failure(t0, &t), None);
        assert_eq!(m.on_failure(t0, &t), None);
        assert!(m.is_healthy());
        assert!(m.on_failure(t0, &t).is_some());
        // A reported success does not bring an unhealthy member back.
        m.on_success();
        assert!(!m.is_healthy());
    }

    #[test]
    fn passive_demotion_needs_rise_fresh_passes() {
        let t = t();
        let t0 = Instant::now();
        let mut m = HealthMachine::new();
        // Passes while healthy do not count towards recovery from a later mark.
        for _ in 0..5 {
            assert_eq!(m.on_check(true, &t), None);
        }
        for _ in 0..3 {
            m.on_failure(t0, &t);
        }
        assert!(!m.is_healthy());
        assert_eq!(m.on_check(true, &t), None);
        // A failure reported while unhealthy restarts the count.
        assert_eq!(m.on_failure(t0, &t), None);
        assert_eq!(m.on_check(true, &t), None);
        assert_eq!(m.on_check(true, &t), Some(Transition::Up));
        // Back up with a clean passive record.
        assert!(!m.has_passive_failures());
        assert_eq!(m.on_failure(t0, &t), None);
        assert!(m.is_healthy());
    }

    #[test]
    fn failures_out_of_order_do_not_panic() {
        let t = t();
        let t0 = Instant::now();
        let mut m = HealthMachine::new();
        m.on_failure(t0 + Duration::from_secs(20), &t);
        // An earlier instant (a late report): saturating arithmetic, still counted.
        m.on_failure(t0, &t);
        assert!(m.on_failure(t0, &t).is_some());
    }
}
