//! Backup schedules and their retention, as pure functions of time: when
//! the next run is due, and which scheduled backups a run leaves behind
//! (keep-last and grandfather-father-son: daily, weekly, monthly).

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Utc};

use super::names::shown;

/// What is wrong with a schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("invalid cron expression {shown}: {why}; write five fields (minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\" for 03:00 every day) or six with seconds first")]
    BadCron { shown: String, why: String },
    #[error("a retention that keeps nothing would delete every scheduled backup: keep at least one (--keep-last 1)")]
    KeepsNothing,
    #[error("keep counts go up to {max}: {field} {value} is more than any schedule needs")]
    TooMany {
        field: &'static str,
        value: u32,
        max: u32,
    },
}

/// A cron expression that parsed.
#[derive(Debug, Clone)]
pub struct CronExpr {
    text: String,
    cron: croner::Cron,
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for CronExpr {}

impl CronExpr {
    pub fn parse(raw: &str) -> Result<Self, ScheduleError> {
        let text = raw.trim();
        let bad = |why: String| ScheduleError::BadCron {
            shown: shown(raw),
            why,
        };
        if text.is_empty() || text.len() > 200 || text.contains(['\n', '\0']) {
            return Err(bad("it is empty, too long or holds a newline".into()));
        }
        let cron = croner::Cron::from_str(text).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            text: text.to_string(),
            cron,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first time strictly after `after` that the expression matches.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }
}

/// How many scheduled backups to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The newest N, whatever their age.
    pub keep_last: u32,
    /// The newest of each of the last N days that have a backup.
    pub keep_daily: u32,
    /// The newest of each of the last N ISO weeks that have one.
    pub keep_weekly: u32,
    /// The newest of each of the last N months that have one.
    pub keep_monthly: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep_last: 7,
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 12,
        }
    }
}

impl Retention {
    /// The largest keep count accepted.
    pub const MAX_KEEP: u32 = 10_000;

    pub fn check(self) -> Result<Self, ScheduleError> {
        for (field, value) in [
            ("keep_last", self.keep_last),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
            ("keep_monthly", self.keep_monthly),
        ] {
            if value > Self::MAX_KEEP {
                return Err(ScheduleError::TooMany {
                    field,
                    value,
                    max: Self::MAX_KEEP,
                });
            }
        }
        if self.keep_last + self.keep_daily + self.keep_weekly + self.keep_monthly == 0 {
            Err(ScheduleError::KeepsNothing)
        } else {
            Ok(self)
        }
    }

    /// Which of `backups` (any order) to delete: those no rule keeps.
    pub fn to_prune<K: Clone + Ord>(&self, backups: &[(K, DateTime<Utc>)]) -> Vec<K> {
        let mut newest_first: Vec<&(K, DateTime<Utc>)> = backups.iter().collect();
        newest_first.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        let mut keep: BTreeSet<K> = BTreeSet::new();
        for (k, _) in newest_first.iter().take(self.keep_last as usize) {
            keep.insert(k.clone());
        }
        let mut by_period = |n: u32, period: &dyn Fn(&DateTime<Utc>) -> (i32, u32)| {
            let mut seen = BTreeSet::new();
            for (k, at) in &newest_first {
                if seen.len() as u32 >= n {
                    break;
                }
                if seen.insert(period(at)) {
                    keep.insert(k.clone());
                }
            }
        };
        by_period(self.keep_daily, &|t| (t.year(), t.ordinal()));
        by_period(self.keep_weekly, &|t| {
            let w = t.iso_week();
            (w.year(), w.week())
        });
        by_period(self.keep_monthly, &|t| (t.year(), t.month()));
        newest_first
            .into_iter()
            .filter(|(k, _)| !keep.contains(k))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn cron_expressions() {
        let daily = CronExpr::parse("0 3 * * *").unwrap();
        assert_eq!(
            daily.next_after(t("2026-12-01T10:00:00Z")),
            Some(t("2026-12-02T03:00:00Z"))
        );
        assert_eq!(
            daily.next_after(t("2026-12-02T03:00:00Z")),
            Some(t("2026-12-03T03:00:00Z")),
            "strictly after"
        );
        let every_2s = CronExpr::parse("*/2 * * * * *").unwrap();
        assert_eq!(
            every_2s.next_after(t("2026-12-01T10:00:01Z")),
            Some(t("2026-12-01T10:00:02Z"))
        );
        for bad in [
            "",
            "nonsense",
            "61 * * * *",
            "* * *",
            "0 3 * * *\nrm -rf /",
            "0 0 32 * *",
        ] {
            let e = CronExpr::parse(bad).unwrap_err().to_string();
            assert!(e.contains("five fields"), "{e}");
        }
    }

    #[test]
    fn keep_last_keeps_the_newest() {
        let r = Retention {
            keep_last: 2,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
        };
        let b = [
            (1, t("2026-12-01T01:00:00Z")),
            (3, t("2026-12-01T03:00:00Z")),
            (2, t("2026-12-01T02:00:00Z")),
        ];
        assert_eq!(r.to_prune(&b), [1]);
        assert_eq!(r.to_prune::<u32>(&[]), Vec::<u32>::new());
    }

    #[test]
    fn grandfather_father_son() {
        // Four backups a day, every day for 90 days.
        let start = t("2026-09-01T00:00:00Z");
        let mut b = Vec::new();
        for i in 0..(90 * 4) {
            b.push((i, start + chrono::Duration::hours(6 * i as i64)));
        }
        let r = Retention {
            keep_last: 3,
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 3,
        };
        let pruned: BTreeSet<_> = r.to_prune(&b).into_iter().collect();
        let kept: Vec<_> = b.iter().filter(|(k, _)| !pruned.contains(k)).collect();
        // Newest three, plus the newest of each of 7 days (the newest day's
        // is already among the three), 4 weeks, 3 months, overlapping.
        assert!(kept.len() <= 3 + 7 + 4 + 3, "{}", kept.len());
        assert!(kept.len() >= 7 + 2, "{}", kept.len());
        let newest = b.iter().map(|(k, _)| *k).max().unwrap();
        for k in [newest, newest - 1, newest - 2] {
            assert!(!pruned.contains(&k), "the newest are kept");
        }
        // One per month for the last three months that have backups.
        let months: BTreeSet<_> = kept.iter().map(|(_, at)| at.month()).collect();
        assert!(months.len() >= 3, "{months:?}");
        // The oldest backup is not kept (older than every rule reaches).
        assert!(pruned.contains(&0));
        assert!(Retention {
            keep_last: 0,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0
        }
        .check()
        .is_err());
    }
}
