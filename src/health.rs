//! Health checking, the pure part: the verdict on one probe and the bounded
//! history of probes. The manager's health rounds (`manager::health`)
//! probe `GET /api/health` of every instance that should run and whose
//! process is alive, all at once, and apply these verdicts.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};

use crate::model::Status;

/// One probe's result, kept in a short per-instance history for the
/// dashboard (in memory: it starts empty when the daemon starts).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HealthSample {
    pub at: DateTime<Utc>,
    pub healthy: bool,
    /// How long the probe took, in milliseconds.
    pub latency_ms: u32,
}

/// How many probes per instance the history keeps.
pub const HISTORY_LEN: usize = 60;

/// Append to a bounded history, dropping the oldest.
pub fn remember(history: &mut VecDeque<HealthSample>, sample: HealthSample) {
    while history.len() >= HISTORY_LEN {
        history.pop_front();
    }
    history.push_back(sample);
}

/// What to do after one probe of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Healthy: make sure it shows `running`.
    Running,
    /// Failing, but still within its start-up grace period.
    Wait,
    /// Failing: show `unhealthy`.
    Unhealthy,
    /// Failed too many times in a row: restart it.
    Restart,
}

/// Decide from one probe result, the count of consecutive failures
/// (including this one), the current state and whether the process is
/// still within its start-up grace period.
pub fn verdict(
    healthy: bool,
    failures: u32,
    status: Status,
    in_grace: bool,
    threshold: u32,
) -> Verdict {
    if healthy {
        Verdict::Running
    } else if status == Status::Starting && in_grace {
        Verdict::Wait
    } else if failures >= threshold {
        Verdict::Restart
    } else {
        Verdict::Unhealthy
    }
}

#[cfg(test)]
mod history_tests {
    use super::*;

    #[test]
    fn history_is_bounded() {
        let mut h = VecDeque::new();
        for i in 0..(HISTORY_LEN as u32 + 5) {
            remember(
                &mut h,
                HealthSample {
                    at: Utc::now(),
                    healthy: i % 2 == 0,
                    latency_ms: i,
                },
            );
        }
        assert_eq!(h.len(), HISTORY_LEN);
        assert_eq!(h.front().unwrap().latency_ms, 5);
        assert_eq!(h.back().unwrap().latency_ms, HISTORY_LEN as u32 + 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        use Status::*;
        assert_eq!(verdict(true, 0, Unhealthy, false, 3), Verdict::Running);
        assert_eq!(verdict(false, 1, Starting, true, 3), Verdict::Wait);
        assert_eq!(verdict(false, 5, Starting, true, 3), Verdict::Wait);
        assert_eq!(verdict(false, 1, Starting, false, 3), Verdict::Unhealthy);
        assert_eq!(verdict(false, 1, Running, false, 3), Verdict::Unhealthy);
        assert_eq!(verdict(false, 2, Unhealthy, false, 3), Verdict::Unhealthy);
        assert_eq!(verdict(false, 3, Unhealthy, false, 3), Verdict::Restart);
        assert_eq!(verdict(false, 1, Running, false, 1), Verdict::Restart);
    }
}
