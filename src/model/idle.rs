//! Scale to zero, as pure decisions: how long an instance may sit idle
//! before it sleeps (`--idle-timeout`), whether it is time to put it to
//! sleep, and when a `--wake-schedule` wakes it for its own cron jobs.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::names::shown;
use super::schedule::CronExpr;

/// The shortest idle timeout: shorter than this an instance would sleep
/// between the requests of one page load.
pub const MIN_IDLE: Duration = Duration::from_secs(1);
/// The longest: thirty days (longer is the same as never).
pub const MAX_IDLE: Duration = Duration::from_secs(30 * 24 * 3600);
/// A scheduled wake comes this long before the cron time, so that
/// PocketBase's own minute ticker is running when the minute begins.
pub const WAKE_LEAD: Duration = Duration::from_secs(5);

/// What is wrong with an idle timeout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdleError {
    #[error("invalid idle timeout {shown}: write a duration such as 15m, 90s or 2h, or off")]
    Unparsable { shown: String },
    #[error("idle timeout {shown} is out of range: between 1s and 30 days, or off")]
    OutOfRange { shown: String },
}

/// How long an instance may receive no request through the router before
/// it is stopped and marked `sleeping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdleTimeout(Duration);

impl IdleTimeout {
    /// A duration as people write it (`15m`, `90s`, `1h30m`); `off`, `0`
    /// or an empty string are `None` (never sleeps).
    pub fn parse(raw: &str) -> Result<Option<Self>, IdleError> {
        let text = raw.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("off") || text == "0" {
            return Ok(None);
        }
        if text.len() > 40 {
            return Err(IdleError::Unparsable { shown: shown(raw) });
        }
        let duration = humantime::parse_duration(text)
            .map_err(|_| IdleError::Unparsable { shown: shown(raw) })?;
        Self::from_duration(duration)
            .map(Some)
            .ok_or_else(|| IdleError::OutOfRange { shown: shown(raw) })
    }

    /// A whole number of seconds (as stored and sent), if in range.
    pub fn from_secs(secs: u64) -> Option<Self> {
        Self::from_duration(Duration::from_secs(secs))
    }

    fn from_duration(d: Duration) -> Option<Self> {
        let whole = Duration::from_secs(d.as_secs());
        (MIN_IDLE..=MAX_IDLE)
            .contains(&whole)
            .then_some(Self(whole))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl std::fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// What the router saw of an instance's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    /// How long ago the last request through the router began or ended.
    pub quiet_for: Duration,
    /// Requests, realtime (SSE) streams and WebSockets open now.
    pub open: usize,
}

/// Whether an awake instance should be put to sleep now: nothing open, and
/// neither a request nor its own start within the timeout.
pub fn should_sleep(timeout: IdleTimeout, activity: Option<Activity>, awake_for: Duration) -> bool {
    let quiet_for = match activity {
        Some(a) if a.open > 0 => return false,
        Some(a) => a.quiet_for.min(awake_for),
        None => awake_for,
    };
    quiet_for >= timeout.as_duration()
}

/// When a sleeping instance with `schedule` is next woken: `WAKE_LEAD`
/// before the schedule's first time after `now + WAKE_LEAD`.
pub fn next_wake(schedule: &CronExpr, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let lead = chrono::Duration::from_std(WAKE_LEAD).ok()?;
    schedule.next_after(now + lead).map(|at| at - lead)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_off() {
        assert_eq!(
            IdleTimeout::parse("15m").unwrap().unwrap().as_secs(),
            15 * 60
        );
        assert_eq!(IdleTimeout::parse(" 90s ").unwrap().unwrap().as_secs(), 90);
        assert_eq!(
            IdleTimeout::parse("1h30m").unwrap().unwrap().as_secs(),
            5400
        );
        for off in ["off", "OFF", "0", ""] {
            assert_eq!(IdleTimeout::parse(off).unwrap(), None, "{off:?}");
        }
        assert_eq!(
            IdleTimeout::parse("15m").unwrap().unwrap().to_string(),
            "15m"
        );
    }

    #[test]
    fn refuses_nonsense_and_out_of_range() {
        for bad in ["15", "fifteen", "-5m", "1e9s", "15m; rm -rf /", "\u{0}1s"] {
            assert!(
                matches!(IdleTimeout::parse(bad), Err(IdleError::Unparsable { .. })),
                "{bad:?}"
            );
        }
        for far in ["500ms", "31days", "100y"] {
            assert!(
                matches!(IdleTimeout::parse(far), Err(IdleError::OutOfRange { .. })),
                "{far:?}"
            );
        }
        let long = "9".repeat(100);
        let err = IdleTimeout::parse(&long).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
        assert_eq!(IdleTimeout::from_secs(0), None);
        assert_eq!(IdleTimeout::from_secs(60).unwrap().as_secs(), 60);
    }

    #[test]
    fn sleeps_only_when_quiet_and_nothing_open() {
        let t = IdleTimeout::from_secs(60).unwrap();
        let quiet = |secs, open| {
            Some(Activity {
                quiet_for: Duration::from_secs(secs),
                open,
            })
        };
        let long = Duration::from_secs(3600);
        assert!(should_sleep(t, quiet(61, 0), long));
        assert!(should_sleep(t, quiet(60, 0), long));
        assert!(!should_sleep(t, quiet(59, 0), long));
        // An open realtime stream keeps it awake however long it is quiet.
        assert!(!should_sleep(t, quiet(3600, 1), long));
        // Just woken (or started): the timeout runs from the start.
        assert!(!should_sleep(t, quiet(3600, 0), Duration::from_secs(10)));
        // The router saw nothing at all: the time awake decides.
        assert!(should_sleep(t, None, long));
        assert!(!should_sleep(t, None, Duration::from_secs(30)));
    }

    #[test]
    fn scheduled_wakes_come_early() {
        let cron = CronExpr::parse("0 3 * * *").unwrap();
        let now = DateTime::parse_from_rfc3339("2026-01-01T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let wake = next_wake(&cron, now).unwrap();
        assert_eq!(wake.to_rfc3339(), "2026-01-01T02:59:55+00:00");
        // Inside the lead of one run: the next run's wake, not a past one.
        let inside = DateTime::parse_from_rfc3339("2026-01-01T02:59:58Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            next_wake(&cron, inside).unwrap().to_rfc3339(),
            "2026-01-02T02:59:55+00:00"
        );
    }
}
