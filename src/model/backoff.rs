//! Restart back-off and crash-loop policy of the embedded supervisor (pure).
//!
//! After an instance exits without being asked to, the supervisor asks
//! [`BackoffPolicy::decide`] what to do: restart at once the first time (a
//! one-off crash should cost as little downtime as possible), then wait
//! exponentially longer on each further crash, and give up once the crashes
//! come too thick within a window: that is a crash loop, reported as
//! `failed`, and only an explicit start tries again. A run that stayed up
//! for a while (`stable_after`) wipes the slate clean.
//!
//! The policy works on durations only ("how long ago", "how long up"), so it
//! needs no clock and is tested exhaustively below.

use std::time::Duration;

/// The knobs of the restart policy. [`Default`] gives the product defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Delay before the restart that follows the first crash (0: at once).
    pub first_delay: Duration,
    /// Delay after the second crash; doubles on each crash after that.
    pub base: Duration,
    /// The longest delay between a crash and its restart.
    pub max: Duration,
    /// This many crashes within `crash_loop_window` is a crash loop: give up.
    /// 0 turns crash-loop detection off.
    pub crash_loop_crashes: u32,
    /// How far back crashes count towards a crash loop and the back-off.
    pub crash_loop_window: Duration,
    /// A run that lasted at least this long resets the crash count.
    pub stable_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            first_delay: Duration::ZERO,
            base: Duration::from_millis(100),
            max: Duration::from_secs(30),
            crash_loop_crashes: 5,
            crash_loop_window: Duration::from_secs(60),
            stable_after: Duration::from_secs(30),
        }
    }
}

/// What to do after an unexpected exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start the instance again after this delay.
    RestartAfter(Duration),
    /// Crash loop: stop restarting until someone starts the instance again.
    GiveUp,
}

impl BackoffPolicy {
    /// Decide after a crash.
    ///
    /// `recent_crashes` holds how long ago each remembered crash happened,
    /// including the one being decided on (ago 0); crashes older than the
    /// window are ignored, so the caller may pass more than it needs to.
    /// `uptime_of_last_run` is how long the process that just exited ran.
    pub fn decide(&self, recent_crashes: &[Duration], uptime_of_last_run: Duration) -> Decision {
        let crashes = if self.is_stable(uptime_of_last_run) {
            1
        } else {
            recent_crashes
                .iter()
                .filter(|ago| self.in_window(**ago))
                .count()
                .max(1)
        };
        let crashes = u32::try_from(crashes).unwrap_or(u32::MAX);
        if self.crash_loop_crashes > 0 && crashes >= self.crash_loop_crashes {
            return Decision::GiveUp;
        }
        Decision::RestartAfter(self.delay_for(crashes))
    }

    /// Whether a run that lasted `uptime` resets the crash count. The
    /// supervisor forgets its crash history when it does.
    pub fn is_stable(&self, uptime: Duration) -> bool {
        uptime >= self.stable_after
    }

    /// Whether a crash this long ago still counts. The supervisor forgets
    /// crashes that no longer do.
    pub fn in_window(&self, ago: Duration) -> bool {
        ago <= self.crash_loop_window
    }

    /// The delay before the restart that follows the `crashes`-th crash in a
    /// row (1-based): `first_delay`, then `base`, `2·base`, `4·base`, … up to
    /// `max`.
    pub fn delay_for(&self, crashes: u32) -> Duration {
        if crashes <= 1 {
            return self.first_delay;
        }
        let doublings = crashes - 2;
        1u32.checked_shl(doublings)
            .and_then(|f| self.base.checked_mul(f))
            .map_or(self.max, |d| d.min(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn show(decision: Decision) -> String {
        match decision {
            Decision::RestartAfter(d) => format!("restart after {d:?}"),
            Decision::GiveUp => "give up".to_string(),
        }
    }

    fn check(policy: &BackoffPolicy, crashes_ago: &[f64], uptime: f64, expect: Expect) {
        let agos: Vec<Duration> = crashes_ago.iter().map(|s| secs(*s)).collect();
        expect.assert_eq(&show(policy.decide(&agos, secs(uptime))));
    }

    #[test]
    fn first_crash_restarts_at_once() {
        let p = BackoffPolicy::default();
        check(&p, &[0.0], 0.0, expect!["restart after 0ns"]);
        check(&p, &[0.0], 5.0, expect!["restart after 0ns"]);
        // An empty history still means this crash happened.
        check(&p, &[], 0.0, expect!["restart after 0ns"]);
    }

    #[test]
    fn crashes_in_a_row_back_off_then_give_up() {
        let p = BackoffPolicy::default();
        check(&p, &[0.0, 0.1], 0.1, expect!["restart after 100ms"]);
        check(&p, &[0.0, 0.2, 0.3], 0.1, expect!["restart after 200ms"]);
        check(
            &p,
            &[0.0, 0.4, 0.6, 0.7],
            0.1,
            expect!["restart after 400ms"],
        );
        check(&p, &[0.0, 0.8, 1.2, 1.4, 1.5], 0.1, expect!["give up"]);
        check(&p, &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], 0.1, expect!["give up"]);
    }

    #[test]
    fn crashes_outside_the_window_do_not_count() {
        let p = BackoffPolicy::default();
        check(
            &p,
            &[0.0, 61.0, 62.0, 63.0, 64.0],
            1.0,
            expect!["restart after 0ns"],
        );
        check(
            &p,
            &[0.0, 10.0, 61.0, 62.0, 63.0],
            1.0,
            expect!["restart after 100ms"],
        );
        check(&p, &[0.0, 10.0, 20.0, 30.0, 60.0], 1.0, expect!["give up"]);
        check(
            &p,
            &[0.0, 10.0, 20.0, 30.0, 60.001],
            1.0,
            expect!["restart after 400ms"],
        );
    }

    #[test]
    fn a_stable_run_resets_the_count() {
        let p = BackoffPolicy::default();
        check(
            &p,
            &[0.0, 31.0, 32.0, 33.0, 34.0],
            30.0,
            expect!["restart after 0ns"],
        );
        check(&p, &[0.0, 31.0, 32.0, 33.0, 34.0], 29.9, expect!["give up"]);
        check(&p, &[0.0, 40.0], 3600.0, expect!["restart after 0ns"]);
        assert!(p.is_stable(secs(30.0)));
        assert!(!p.is_stable(secs(29.999)));
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let p = BackoffPolicy::default();
        let delays: Vec<String> = (0..=14)
            .map(|n| format!("{n}: {:?}", p.delay_for(n)))
            .collect();
        expect![[r#"
            0: 0ns
            1: 0ns
            2: 100ms
            3: 200ms
            4: 400ms
            5: 800ms
            6: 1.6s
            7: 3.2s
            8: 6.4s
            9: 12.8s
            10: 25.6s
            11: 30s
            12: 30s
            13: 30s
            14: 30s"#]]
        .assert_eq(&delays.join("\n"));
        // Huge counts saturate instead of overflowing.
        expect!["30s"].assert_eq(&format!("{:?}", p.delay_for(33)));
        expect!["30s"].assert_eq(&format!("{:?}", p.delay_for(u32::MAX)));
    }

    #[test]
    fn crash_loop_detection_can_be_turned_off_or_tightened() {
        let never = BackoffPolicy {
            crash_loop_crashes: 0,
            ..BackoffPolicy::default()
        };
        let many: Vec<f64> = (0..100).map(|i| i as f64 * 0.1).collect();
        check(&never, &many, 0.0, expect!["restart after 30s"]);

        let once = BackoffPolicy {
            crash_loop_crashes: 1,
            ..BackoffPolicy::default()
        };
        check(&once, &[0.0], 0.0, expect!["give up"]);

        let slow_start = BackoffPolicy {
            first_delay: Duration::from_millis(50),
            base: Duration::from_secs(1),
            max: Duration::from_secs(3),
            crash_loop_crashes: 10,
            ..BackoffPolicy::default()
        };
        let lines: Vec<String> = (1..=10)
            .map(|n| {
                let agos: Vec<Duration> = (0..n).map(|i| secs(i as f64)).collect();
                format!("{n}: {}", show(slow_start.decide(&agos, secs(0.5))))
            })
            .collect();
        expect![[r#"
            1: restart after 50ms
            2: restart after 1s
            3: restart after 2s
            4: restart after 3s
            5: restart after 3s
            6: restart after 3s
            7: restart after 3s
            8: restart after 3s
            9: restart after 3s
            10: give up"#]]
        .assert_eq(&lines.join("\n"));
    }
}
