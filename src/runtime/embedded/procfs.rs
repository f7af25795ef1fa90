//! What `/proc` says about a process, and the pidfile that names it.
//!
//! A pid alone does not identify a process across a daemon restart: the pid
//! may have been reused. The pidfile therefore records the pid together with
//! the process's start time (field 22 of `/proc/PID/stat`, in clock ticks
//! since boot), and a process is only taken for ours when both match.

use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::procstat::{self, StatLine};

/// The fields of `/proc/PID/stat` the supervisor needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// `R`, `S`, `D`, `Z`, `X`, …
    pub state: char,
    /// The process group id.
    pub pgrp: i32,
    /// Start time in clock ticks after boot.
    pub starttime: u64,
}

impl ProcStat {
    /// A zombie (or a process being torn down) is dead for our purposes.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

impl From<StatLine> for ProcStat {
    fn from(line: StatLine) -> ProcStat {
        ProcStat {
            state: line.state,
            pgrp: line.pgrp,
            starttime: line.starttime,
        }
    }
}

/// Read `/proc/PID/stat` (parsed by [`procstat::parse_stat_line`], which
/// copes with spaces and parentheses in the command name); `None` when the
/// process does not exist (any more).
pub fn read_stat(pid: u32) -> Option<ProcStat> {
    procstat::read_stat_line(pid).map(ProcStat::from)
}

/// Whether `pid` names a live (not zombie) process.
pub fn is_alive(pid: u32) -> bool {
    read_stat(pid).is_some_and(|s| !s.is_dead())
}

/// Whether `pid` is alive and is the process that started at `starttime`.
pub fn is_same_live_process(pid: u32, starttime: u64) -> bool {
    read_stat(pid).is_some_and(|s| !s.is_dead() && s.starttime == starttime)
}

/// The contents of a pidfile: `"{pid} {starttime}\n"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PidRecord {
    pub pid: u32,
    pub starttime: u64,
}

impl PidRecord {
    pub fn render(&self) -> String {
        format!("{} {}\n", self.pid, self.starttime)
    }

    pub fn parse(text: &str) -> Option<PidRecord> {
        let mut parts = text.split_ascii_whitespace();
        let pid: u32 = parts.next()?.parse().ok()?;
        let starttime: u64 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || pid == 0 {
            return None;
        }
        Some(PidRecord { pid, starttime })
    }
}

/// Write the pidfile (0644) atomically: a temporary file beside it, then a
/// rename, so a reader never sees half a line.
pub fn write_pidfile(path: &Path, record: PidRecord) -> io::Result<()> {
    crate::fsutil::atomic_write_mode(path, record.render().as_bytes(), 0o644)
}

/// Read and parse a pidfile. `Ok(None)` when it is missing or unreadable as
/// a pid record (a torn or foreign file is treated as stale).
pub fn read_pidfile(path: &Path) -> io::Result<Option<PidRecord>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(PidRecord::parse(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Ok(None),
        Err(e) => Err(e),
    }
}

/// Remove a pidfile; a missing one is fine.
pub fn remove_pidfile(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The `btime` line of `/proc/stat`: boot time in seconds since the epoch.
pub fn parse_boot_time(proc_stat: &str) -> Option<i64> {
    proc_stat
        .lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// How many clock ticks `/proc` counts per second.
fn clock_ticks_per_second() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(n)) if n > 0 => n as u64,
        // Linux has used 100 on every architecture for a long time.
        _ => 100,
    }
}

/// When a process with this start time started, as wall-clock time. `None`
/// if the boot time cannot be read.
pub fn start_time_to_wall(starttime: u64) -> Option<DateTime<Utc>> {
    let boot = parse_boot_time(&fs::read_to_string("/proc/stat").ok()?)?;
    let ticks = clock_ticks_per_second();
    let after_boot = Duration::from_secs(starttime / ticks)
        + Duration::from_nanos((starttime % ticks) * 1_000_000_000 / ticks);
    let boot = DateTime::<Utc>::from_timestamp(boot, 0)?;
    boot.checked_add_signed(chrono::TimeDelta::from_std(after_boot).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};

    /// What the supervisor sees of a `/proc/PID/stat` text.
    fn parse_stat(text: &str) -> Option<ProcStat> {
        procstat::parse_stat_line(text).map(ProcStat::from)
    }

    fn check_stat(text: &str, expect: Expect) {
        expect.assert_eq(&format!("{:?}", parse_stat(text)));
    }

    #[test]
    fn stat_lines() {
        check_stat(
            "4242 (pocketbase) S 1 4242 4242 0 -1 4194560 1234 0 0 0 10 5 0 0 20 0 9 0 987654 1266614272 7000 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0",
            expect!["Some(ProcStat { state: 'S', pgrp: 4242, starttime: 987654 })"],
        );
        // A command name with spaces and parentheses.
        check_stat(
            "77 (evil) S 1 2 (x) Z 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5555 0 0",
            expect!["Some(ProcStat { state: 'Z', pgrp: 77, starttime: 5555 })"],
        );
        check_stat(
            "78 (a b) c) R 1 80 80 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 12 0 0",
            expect!["Some(ProcStat { state: 'R', pgrp: 80, starttime: 12 })"],
        );
        check_stat("", expect!["None"]);
        check_stat("12 (short) S 1 2 3", expect!["None"]);
        check_stat("12 no parens S 1 2 3", expect!["None"]);
        check_stat(
            "12 (x) S 1 2 3 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 notanumber 0",
            expect!["None"],
        );
    }

    #[test]
    fn zombies_are_dead() {
        let stat = |state| ProcStat {
            state,
            pgrp: 1,
            starttime: 1,
        };
        assert!(stat('Z').is_dead());
        assert!(stat('X').is_dead());
        assert!(!stat('S').is_dead());
        assert!(!stat('R').is_dead());
        assert!(!stat('D').is_dead());
        assert!(!stat('T').is_dead());
    }

    fn check_pid_record(text: &str, expect: Expect) {
        expect.assert_eq(&format!("{:?}", PidRecord::parse(text)));
    }

    #[test]
    fn pid_records() {
        let record = PidRecord {
            pid: 123,
            starttime: 456789,
        };
        expect![[r#""123 456789\n""#]].assert_eq(&format!("{:?}", record.render()));
        check_pid_record(
            &record.render(),
            expect!["Some(PidRecord { pid: 123, starttime: 456789 })"],
        );
        check_pid_record(
            "123 456789",
            expect!["Some(PidRecord { pid: 123, starttime: 456789 })"],
        );
        check_pid_record("123", expect!["None"]);
        check_pid_record("", expect!["None"]);
        check_pid_record("0 5", expect!["None"]);
        check_pid_record("-1 5", expect!["None"]);
        check_pid_record("12 34 56", expect!["None"]);
        check_pid_record("abc def", expect!["None"]);
    }

    #[test]
    fn pidfiles_round_trip_and_removal_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pocketbase.pid");
        assert_eq!(read_pidfile(&path).unwrap(), None);
        let record = PidRecord {
            pid: 99,
            starttime: 1000,
        };
        write_pidfile(&path, record).unwrap();
        assert_eq!(read_pidfile(&path).unwrap(), Some(record));
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary file left behind");
        remove_pidfile(&path).unwrap();
        remove_pidfile(&path).unwrap();
        assert_eq!(read_pidfile(&path).unwrap(), None);
    }

    #[test]
    fn boot_time() {
        expect!["Some(1700000000)"].assert_eq(&format!(
            "{:?}",
            parse_boot_time("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n")
        ));
        expect!["None"].assert_eq(&format!("{:?}", parse_boot_time("cpu 1 2 3\n")));
    }

    #[test]
    fn this_process_is_alive_and_matches_its_own_start_time() {
        let me = std::process::id();
        let stat = read_stat(me).unwrap();
        assert!(is_alive(me));
        assert!(is_same_live_process(me, stat.starttime));
        assert!(!is_same_live_process(me, stat.starttime + 1));
        let started = start_time_to_wall(stat.starttime).unwrap();
        let age = Utc::now() - started;
        assert!(
            age >= chrono::TimeDelta::zero() - chrono::TimeDelta::seconds(2),
            "{age}"
        );
    }
}
