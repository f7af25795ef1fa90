//! Per-process CPU, memory and uptime read from `/proc`, for the dashboard.
//!
//! The dashboard shows, for each supervised instance, how long its process
//! has been running, how much CPU it used since the previous refresh and how
//! much memory it holds. The kernel already keeps all of that, so this module
//! reads it rather than asking the instances:
//!
//! - `/proc/<pid>/stat`: `utime` + `stime` (CPU time used, in clock ticks)
//!   and `starttime` (when the process started, in clock ticks after boot);
//! - `/proc/<pid>/statm`: resident pages, times the page size = RSS bytes;
//! - `/proc/uptime`: seconds since boot, to turn `starttime` into an age.
//!
//! CPU usage is a rate, so it needs two samples: [`Sampler`] keeps the
//! previous [`ProcSample`] of each pid and turns each new one into
//! [`ProcStats`]. A pid reused by another process is recognised by its start
//! time and counted as a first sample.
//!
//! The parser of `/proc/<pid>/stat` ([`parse_stat_line`]) is also the
//! embedded supervisor's, which reads the state, process group and start
//! time from it.
//!
//! Split as the rest of the code: the parsers ([`parse_stat`],
//! [`parse_statm_rss`], [`parse_uptime`]) and the math ([`cpu_percent`],
//! [`process_uptime`], [`stats`]) are pure and unit-tested with fixed texts;
//! [`read_sample`] and [`Sampler::sample`] are the thin layer that reads
//! `/proc`. Nothing here panics on malformed input: it yields `None`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The fields of `/proc/<pid>/stat` this program reads: the supervisor's
/// (state, process group, start time) and the dashboard's (CPU times).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatLine {
    /// Field 3: `R`, `S`, `D`, `Z`, `X`, …
    pub state: char,
    /// Field 5: the process group id.
    pub pgrp: i32,
    /// Field 14: time scheduled in user mode, in clock ticks.
    pub utime: u64,
    /// Field 15: time scheduled in kernel mode, in clock ticks.
    pub stime: u64,
    /// Field 22: when the process started, in clock ticks after boot.
    pub starttime: u64,
}

/// Parses the text of `/proc/<pid>/stat`: the one parser of that file.
///
/// Field 2 (`comm`) is in parentheses and may itself hold spaces, `(` and
/// `)` (a process names itself), so the fields after it are found after
/// the *last* `)`. Returns `None` on anything malformed.
pub fn parse_stat_line(text: &str) -> Option<StatLine> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    // Fields 3.. (1-based, as in proc(5)): index 0 here is field 3 (state).
    let fields: Vec<&str> = text[close + 1..].split_ascii_whitespace().collect();
    let field = |n: usize| -> Option<&str> { fields.get(n.checked_sub(3)?).copied() };
    let number = |n: usize| -> Option<u64> { field(n)?.parse().ok() };
    Some(StatLine {
        state: field(3)?.chars().next()?,
        pgrp: field(5)?.parse().ok()?,
        utime: number(14)?,
        stime: number(15)?,
        starttime: number(22)?,
    })
}

/// Reads and parses `/proc/<pid>/stat`; `None` when the process does not
/// exist (any more) or the file cannot be parsed.
pub fn read_stat_line(pid: u32) -> Option<StatLine> {
    parse_stat_line(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The CPU and start times of one process, from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatTimes {
    /// Field 14: time scheduled in user mode, in clock ticks.
    pub utime: u64,
    /// Field 15: time scheduled in kernel mode, in clock ticks.
    pub stime: u64,
    /// Field 22: when the process started, in clock ticks after boot.
    pub starttime: u64,
}

impl From<StatLine> for StatTimes {
    fn from(line: StatLine) -> StatTimes {
        StatTimes {
            utime: line.utime,
            stime: line.stime,
            starttime: line.starttime,
        }
    }
}

/// The CPU and start times in the text of `/proc/<pid>/stat` (see
/// [`parse_stat_line`]).
pub fn parse_stat(text: &str) -> Option<StatTimes> {
    parse_stat_line(text).map(StatTimes::from)
}

/// Parses the text of `/proc/<pid>/statm` into the resident set size in
/// bytes: its second field (resident pages) times `page_size`.
///
/// Returns `None` on anything malformed or if the product overflows.
pub fn parse_statm_rss(text: &str, page_size: u64) -> Option<u64> {
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    pages.checked_mul(page_size)
}

/// Parses the text of `/proc/uptime` into the seconds since boot (its first
/// field). Returns `None` on anything malformed, negative or not finite.
pub fn parse_uptime(text: &str) -> Option<f64> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs)
}

/// One reading of a process, by [`read_sample`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// The process read.
    pub pid: u32,
    /// CPU time used so far (`utime` + `stime`), in clock ticks.
    pub cpu_ticks: u64,
    /// When the process started, in clock ticks after boot; tells a reused
    /// pid from the process seen before.
    pub start_ticks: u64,
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
    /// When `cpu_ticks` was read.
    pub taken_at: Instant,
    /// The system's uptime when the sample was taken, in seconds.
    pub uptime_secs: f64,
}

/// What the dashboard shows for one process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcStats {
    /// How long the process has been running.
    pub uptime: Duration,
    /// CPU used since the previous sample, in percent of one core (so above
    /// 100 on several cores); `None` on the first sample of a process.
    pub cpu_percent: Option<f64>,
    /// Resident set size, in bytes.
    pub rss_bytes: u64,
}

/// CPU used between two samples of the same process, in percent of one core.
///
/// `None` if the samples are of different processes (pid or start time
/// differ), if no time passed between them, if the CPU time went backwards
/// or if `ticks_per_sec` is 0.
pub fn cpu_percent(prev: &ProcSample, cur: &ProcSample, ticks_per_sec: u64) -> Option<f64> {
    if prev.pid != cur.pid || prev.start_ticks != cur.start_ticks || ticks_per_sec == 0 {
        return None;
    }
    let ticks = cur.cpu_ticks.checked_sub(prev.cpu_ticks)?;
    let elapsed = cur.taken_at.checked_duration_since(prev.taken_at)?;
    let elapsed = elapsed.as_secs_f64();
    if elapsed <= 0.0 {
        return None;
    }
    Some(ticks as f64 / ticks_per_sec as f64 / elapsed * 100.0)
}

/// How long the process had been running when `sample` was taken: system
/// uptime minus its start time, clamped at zero.
pub fn process_uptime(sample: &ProcSample, ticks_per_sec: u64) -> Duration {
    if ticks_per_sec == 0 {
        return Duration::ZERO;
    }
    let started = sample.start_ticks as f64 / ticks_per_sec as f64;
    Duration::try_from_secs_f64(sample.uptime_secs - started).unwrap_or(Duration::ZERO)
}

/// The stats of `cur`, with CPU usage measured since `prev` (the previous
/// sample of that pid, if any).
pub fn stats(prev: Option<&ProcSample>, cur: &ProcSample, ticks_per_sec: u64) -> ProcStats {
    ProcStats {
        uptime: process_uptime(cur, ticks_per_sec),
        cpu_percent: prev.and_then(|prev| cpu_percent(prev, cur, ticks_per_sec)),
        rss_bytes: cur.rss_bytes,
    }
}

/// Reads one sample of `pid` from `/proc`; `None` if the process is gone
/// (or its files could not be read or parsed).
pub fn read_sample(pid: u32) -> Option<ProcSample> {
    read_sample_with(pid, read_uptime()?, page_size())
}

fn read_uptime() -> Option<f64> {
    parse_uptime(&std::fs::read_to_string("/proc/uptime").ok()?)
}

fn page_size() -> u64 {
    u64::try_from(rustix::param::page_size()).unwrap_or(u64::MAX)
}

fn read_sample_with(pid: u32, uptime_secs: f64, page_size: u64) -> Option<ProcSample> {
    let times = StatTimes::from(read_stat_line(pid)?);
    let taken_at = Instant::now();
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    Some(ProcSample {
        pid,
        cpu_ticks: times.utime.saturating_add(times.stime),
        start_ticks: times.starttime,
        rss_bytes: parse_statm_rss(&statm, page_size)?,
        taken_at,
        uptime_secs,
    })
}

/// Samples a set of processes again and again, keeping the previous sample
/// of each pid to measure CPU usage between calls.
#[derive(Debug)]
pub struct Sampler {
    previous: HashMap<u32, ProcSample>,
    ticks_per_sec: u64,
    page_size: u64,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

impl Sampler {
    /// A sampler that has seen nothing yet.
    pub fn new() -> Self {
        Self {
            previous: HashMap::new(),
            ticks_per_sec: rustix::param::clock_ticks_per_second(),
            page_size: page_size(),
        }
    }

    /// Samples `pids` and returns the stats of those still running.
    ///
    /// Only the samples of `pids` are kept for the next call: pids not given
    /// (or gone) are forgotten, so memory follows the current set.
    pub fn sample(&mut self, pids: &[u32]) -> HashMap<u32, ProcStats> {
        let mut current = HashMap::with_capacity(pids.len());
        let mut out = HashMap::with_capacity(pids.len());
        if let Some(uptime_secs) = read_uptime() {
            for &pid in pids {
                if current.contains_key(&pid) {
                    continue;
                }
                let Some(sample) = read_sample_with(pid, uptime_secs, self.page_size) else {
                    continue;
                };
                out.insert(
                    pid,
                    stats(self.previous.get(&pid), &sample, self.ticks_per_sec),
                );
                current.insert(pid, sample);
            }
        }
        self.previous = current;
        out
    }
}

pub use crate::model::human::{human_bytes, human_duration};

/// The inodes of the sockets listening on TCP `port`, from the text of
/// `/proc/net/tcp` or `/proc/net/tcp6`.
pub fn parse_listeners(text: &str, port: u16) -> Vec<u64> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?;
            let local_port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
            (*state == "0A" && local_port == port)
                .then(|| inode.parse::<u64>().ok())
                .flatten()
        })
        .collect()
}

/// From a `/proc/net/tcp{,6}` table: for each port of `ports`, the
/// inodes of the established connections that go *to* it (the client's
/// end: remote port in `ports`).
pub fn parse_clients(text: &str, ports: &std::collections::HashSet<u16>) -> Vec<(u16, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote = fields.get(2)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?;
            let remote_port = u16::from_str_radix(remote.rsplit_once(':')?.1, 16).ok()?;
            (*state == "01" && ports.contains(&remote_port))
                .then(|| inode.parse::<u64>().ok().map(|i| (remote_port, i)))
                .flatten()
        })
        .collect()
}

/// How many established TCP connections go to each of `ports` from other
/// processes than this one (a Caddy in front of the instances; not the
/// daemon's own health probes). Instances listen on loopback, so both
/// ends of every such connection are on this host.
pub fn clients_of(ports: &std::collections::HashSet<u16>) -> std::collections::HashMap<u16, usize> {
    let mut conns = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            conns.extend(parse_clients(&text, ports));
        }
    }
    let mut counts = std::collections::HashMap::new();
    if conns.is_empty() {
        return counts;
    }
    let own: std::collections::HashSet<u64> = std::fs::read_dir("/proc/self/fd")
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| {
                    let target = std::fs::read_link(fd.path()).ok()?;
                    let text = target.to_str()?;
                    text.strip_prefix("socket:[")?
                        .strip_suffix(']')?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    for (port, inode) in conns {
        if !own.contains(&inode) {
            *counts.entry(port).or_insert(0) += 1;
        }
    }
    counts
}

/// Whether a `/proc/PID/cmdline` (arguments separated by NUL bytes) holds
/// `arg` as one of the program's arguments.
pub fn cmdline_has_arg(raw: &[u8], arg: &str) -> bool {
    raw.split(|b| *b == 0).skip(1).any(|a| a == arg.as_bytes())
}

/// This user's processes whose command line holds `arg` as an argument:
/// a PocketBase by its `--dir=…`, whether or not a pidfile names it (a
/// process started just before the daemon died, with its pidfile not
/// written yet).
pub fn processes_with_arg(arg: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|raw| cmdline_has_arg(&raw, arg))
        })
        .collect()
}

/// Whether process `pid` holds the socket listening on TCP `port`:
/// `None` when that cannot be told (no `/proc`, another user's process).
/// A health answer on a port another program took is not the instance's.
///
/// The listening sockets come from the kernel's sock_diag netlink (a dump
/// of listening sockets only, which is quick), else from `/proc/net/tcp*`:
/// reading those walks every bucket of the kernel's connection tables, some
/// milliseconds each on a big host, and this runs once per start or wake.
pub fn listens_on(pid: u32, port: u16) -> Option<bool> {
    let inodes = listening_inodes(port).unwrap_or_else(|| {
        let mut inodes = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(text) = std::fs::read_to_string(table) {
                inodes.extend(parse_listeners(&text, port));
            }
        }
        inodes
    });
    if inodes.is_empty() {
        return Some(false);
    }
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    Some(fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .map(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
            .unwrap_or(false)
    }))
}

/// The inodes of the TCP sockets (IPv4 and IPv6) listening on `port`, from
/// sock_diag; `None` if the kernel's netlink does not answer.
fn listening_inodes(port: u16) -> Option<Vec<u64>> {
    use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload};
    use netlink_packet_sock_diag::constants::{AF_INET, AF_INET6, IPPROTO_TCP};
    use netlink_packet_sock_diag::inet::{ExtensionFlags, InetRequest, SocketId, StateFlags};
    use netlink_packet_sock_diag::SockDiagMessage;
    use netlink_sys::{protocols::NETLINK_SOCK_DIAG, Socket, SocketAddr};

    let mut socket = Socket::new(NETLINK_SOCK_DIAG).ok()?;
    socket.bind_auto().ok()?;
    socket.connect(&SocketAddr::new(0, 0)).ok()?;
    let mut inodes = Vec::new();
    for (family, id) in [
        (AF_INET, SocketId::new_v4()),
        (AF_INET6, SocketId::new_v6()),
    ] {
        let mut header = NetlinkHeader::default();
        header.flags = netlink_packet_core::NLM_F_REQUEST | netlink_packet_core::NLM_F_DUMP;
        let mut request = NetlinkMessage::new(
            header,
            SockDiagMessage::InetRequest(InetRequest {
                family,
                protocol: IPPROTO_TCP,
                extensions: ExtensionFlags::empty(),
                states: StateFlags::LISTEN,
                socket_id: id,
            })
            .into(),
        );
        request.finalize();
        let mut out = vec![0; request.buffer_len()];
        request.serialize(&mut out);
        socket.send(&out, 0).ok()?;
        let mut buf = vec![0u8; 32 * 1024];
        'dump: loop {
            let size = socket.recv(&mut &mut buf[..], 0).ok()?;
            let mut offset = 0;
            while offset < size {
                let answer =
                    NetlinkMessage::<SockDiagMessage>::deserialize(&buf[offset..size]).ok()?;
                let length = answer.header.length as usize;
                match answer.payload {
                    NetlinkPayload::InnerMessage(SockDiagMessage::InetResponse(r))
                        if r.header.socket_id.source_port == port =>
                    {
                        inodes.push(u64::from(r.header.inode));
                    }
                    NetlinkPayload::Done(_) => break 'dump,
                    NetlinkPayload::Error(_) => return None,
                    _ => {}
                }
                if length == 0 {
                    return None;
                }
                offset += length;
            }
        }
    }
    Some(inodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_names_the_listener_of_a_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let Some(inodes) = listening_inodes(port) else {
            eprintln!("SKIP: no sock_diag netlink here; listens_on reads /proc/net/tcp instead");
            assert_eq!(listens_on(std::process::id(), port), Some(true));
            return;
        };
        assert_eq!(inodes.len(), 1, "{inodes:?}");
        assert_eq!(listens_on(std::process::id(), port), Some(true));
        // A connection to it is not a listener, and a closed port has none.
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert_eq!(listening_inodes(port).unwrap().len(), 1);
        drop(listener);
        assert_eq!(listening_inodes(port).unwrap(), Vec::<u64>::new());
        assert_eq!(listens_on(std::process::id(), port), Some(false));
    }

    #[test]
    fn listeners_and_their_owner() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F9B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F9B 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F9C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
";
        assert_eq!(parse_listeners(table, 8091), vec![4242]);
        let ports = [0xD2F0u16, 0x1F9C].into_iter().collect();
        assert_eq!(parse_clients(table, &ports), vec![(0xD2F0, 4343)]);
        assert_eq!(parse_listeners(table, 8092), vec![4444]);
        assert!(parse_listeners(table, 80).is_empty());
        // A real listener of this very process.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(listens_on(std::process::id(), port), Some(true));
        let mut other = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert_eq!(listens_on(other.id(), port), Some(false));
        let _ = other.kill();
        let _ = other.wait();
        drop(listener);
        assert_eq!(listens_on(std::process::id(), port), Some(false));
    }

    // A line laid out as in proc(5): 52 fields, comm "(bash)".
    const STAT: &str = "1234 (bash) S 1 1234 1234 34816 5678 4194304 2000 30000 5 10 \
        150 42 7 3 20 0 1 0 987654 12345678 900 18446744073709551615 1 1 0 0 0 0 \
        65536 3686404 1266761467 0 0 0 17 3 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn clients_from_other_processes_are_counted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ports = [port].into_iter().collect();
        // Our own connection (as the daemon's health probes) is not counted.
        let _own = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _accepted = listener.accept().unwrap();
        assert_eq!(clients_of(&ports).get(&port), None);
        // Another process's (as Caddy's) is.
        let mut other = std::process::Command::new("bash")
            .args([
                "-c",
                &format!("exec 3<>/dev/tcp/127.0.0.1/{port}; sleep 30"),
            ])
            .spawn()
            .unwrap();
        let _theirs = listener.accept().unwrap();
        let mut seen = None;
        for _ in 0..500 {
            seen = clients_of(&ports).get(&port).copied();
            if seen.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = other.kill();
        let _ = other.wait();
        assert_eq!(seen, Some(1));
    }

    #[test]
    fn stat_fields_by_proc5_numbering() {
        assert_eq!(
            parse_stat(STAT),
            Some(StatTimes {
                utime: 150,
                stime: 42,
                starttime: 987654
            })
        );
    }

    #[test]
    fn stat_comm_with_spaces_and_parens() {
        let text = STAT.replace("(bash)", "(a) b) c)");
        assert_eq!(parse_stat(&text).map(|t| t.starttime), Some(987654));
        let text = STAT.replace("(bash)", "((a) b) c)");
        assert_eq!(parse_stat(&text).map(|t| t.starttime), Some(987654));
        let text = STAT.replace("(bash)", "(pocket base) )");
        assert_eq!(parse_stat(&text).map(|t| t.utime), Some(150));
        let text = STAT.replace("(bash)", "()");
        assert_eq!(parse_stat(&text).map(|t| t.stime), Some(42));
    }

    #[test]
    fn stat_malformed_is_none() {
        // Truncated just before starttime.
        let cut = STAT.find(" 987654").unwrap_or(STAT.len());
        assert_eq!(parse_stat(&STAT[..cut]), None);
        // Cut inside comm: no closing parenthesis.
        assert_eq!(parse_stat("1234 (ba"), None);
        // A ")" before any "(".
        assert_eq!(
            parse_stat("1234 ) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14"),
            None
        );
        // A field that is not a number.
        assert_eq!(parse_stat(&STAT.replace(" 150 ", " x ")), None);
        assert_eq!(parse_stat(&STAT.replace(" 42 ", " -42 ")), None);
        for garbage in ["", "()", ")(", "garbage", "\u{0}\u{fffd}(", "1 (a) S"] {
            assert_eq!(parse_stat(garbage), None, "{garbage:?}");
        }
    }

    fn start_of(comm: &str) -> Option<(char, i32, u64)> {
        let text = STAT.replace("(bash)", comm);
        parse_stat_line(&text).map(|s| (s.state, s.pgrp, s.starttime))
    }

    #[test]
    fn stat_line_has_every_field_we_read() {
        assert_eq!(
            parse_stat_line(STAT),
            Some(StatLine {
                state: 'S',
                pgrp: 1234,
                utime: 150,
                stime: 42,
                starttime: 987654
            })
        );
    }

    #[test]
    fn stat_line_survives_hostile_command_names() {
        let fine = Some(('S', 1234, 987654));
        for comm in [
            "(bash)",
            "()",
            "( )",
            "(a b)",
            "(a) b)",
            "(a) S 1 2 3)",
            "())",
            "(()",
            "((a) b) c)",
            "(pocket base) )",
            "(x) Z 1 77 77 0)",
            "(\u{1b}[31m)",
            "(tab\there)",
            "(пб)",
            "(a\nb)",
        ] {
            assert_eq!(start_of(comm), fine, "{comm:?}");
        }
        // A name that fakes the fields after it cannot shift them: the
        // real ones start after the last `)`.
        let text = "9 (x) R 1 5 5 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 111) S 1 6 6 0 -1 0 0 0 0 0 \
            7 8 0 0 20 0 1 0 222 0 0";
        let line = parse_stat_line(text).unwrap();
        assert_eq!((line.state, line.pgrp), ('S', 6));
        assert_eq!((line.utime, line.stime, line.starttime), (7, 8, 222));
        // Cut inside the name, or no name at all.
        assert_eq!(start_of("(a"), None);
        assert_eq!(parse_stat_line("9 x) R 1 5"), None);
        assert_eq!(parse_stat_line(")9 (x"), None);
        // A state that is not there, a process group that is not a number.
        assert_eq!(parse_stat_line("9 (x)"), None);
        assert_eq!(
            parse_stat_line(&STAT.replace(" 1 1234 1234 ", " 1 g 1234 ")),
            None
        );
    }

    #[test]
    fn statm_rss_is_second_field_in_pages() {
        assert_eq!(
            parse_statm_rss("5000 1200 300 10 0 800 0\n", 4096),
            Some(1200 * 4096)
        );
        assert_eq!(parse_statm_rss("0 0 0 0 0 0 0", 4096), Some(0));
        assert_eq!(parse_statm_rss("5000", 4096), None);
        assert_eq!(parse_statm_rss("", 4096), None);
        assert_eq!(parse_statm_rss("5000 lots", 4096), None);
        assert_eq!(
            parse_statm_rss(&format!("1 {}", u64::MAX), 4096),
            None,
            "overflow"
        );
    }

    #[test]
    fn uptime_is_first_field() {
        assert_eq!(parse_uptime("350735.47 234388.90\n"), Some(350735.47));
        assert_eq!(parse_uptime("12 3"), Some(12.0));
        for garbage in ["", "\n", "abc 1.0", "-1.0 2.0", "NaN 1", "inf 1"] {
            assert_eq!(parse_uptime(garbage), None, "{garbage:?}");
        }
    }

    fn sample(cpu_ticks: u64, start_ticks: u64, taken_at: Instant) -> ProcSample {
        ProcSample {
            pid: 42,
            cpu_ticks,
            start_ticks,
            rss_bytes: 1 << 20,
            taken_at,
            uptime_secs: 1000.0,
        }
    }

    #[test]
    fn cpu_percent_of_one_core() {
        let t0 = Instant::now();
        let t2 = t0 + Duration::from_secs(2);
        let prev = sample(1000, 500, t0);
        // 100 ticks at 100 Hz over 2 s: half a core.
        assert_eq!(cpu_percent(&prev, &sample(1100, 500, t2), 100), Some(50.0));
        // 400 ticks: two cores.
        assert_eq!(cpu_percent(&prev, &sample(1400, 500, t2), 100), Some(200.0));
        assert_eq!(cpu_percent(&prev, &sample(1000, 500, t2), 100), Some(0.0));
    }

    #[test]
    fn cpu_percent_none_when_not_comparable() {
        let t0 = Instant::now();
        let t2 = t0 + Duration::from_secs(2);
        let prev = sample(1000, 500, t0);
        // Pid reused by a new process: fewer ticks, different start.
        assert_eq!(cpu_percent(&prev, &sample(10, 900, t2), 100), None);
        assert_eq!(cpu_percent(&prev, &sample(5000, 900, t2), 100), None);
        let other = ProcSample {
            pid: 43,
            ..sample(1100, 500, t2)
        };
        assert_eq!(cpu_percent(&prev, &other, 100), None);
        // No time passed, time went backwards, ticks went backwards.
        assert_eq!(cpu_percent(&prev, &sample(1100, 500, t0), 100), None);
        assert_eq!(cpu_percent(&sample(900, 500, t2), &prev, 100), None);
        assert_eq!(cpu_percent(&prev, &sample(900, 500, t2), 100), None);
        assert_eq!(cpu_percent(&prev, &sample(1100, 500, t2), 0), None);
    }

    #[test]
    fn uptime_from_start_ticks() {
        let now = Instant::now();
        // Booted 1000 s ago, started at tick 25_000 at 100 Hz = 250 s.
        assert_eq!(
            process_uptime(&sample(0, 25_000, now), 100),
            Duration::from_secs(750)
        );
        assert_eq!(
            process_uptime(&sample(0, 0, now), 100),
            Duration::from_secs(1000)
        );
        // Started "after" the uptime was read: clamped at zero.
        assert_eq!(
            process_uptime(&sample(0, 200_000, now), 100),
            Duration::ZERO
        );
        assert_eq!(process_uptime(&sample(0, 0, now), 0), Duration::ZERO);
        let odd = ProcSample {
            uptime_secs: f64::NAN,
            ..sample(0, 0, now)
        };
        assert_eq!(process_uptime(&odd, 100), Duration::ZERO);
    }

    #[test]
    fn stats_first_sample_and_reused_pid() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let first = sample(100, 500, t0);
        let s = stats(None, &first, 100);
        assert_eq!(s.cpu_percent, None);
        assert_eq!(s.rss_bytes, 1 << 20);
        assert_eq!(s.uptime, Duration::from_secs(995));
        assert_eq!(
            stats(Some(&first), &sample(125, 500, t1), 100).cpu_percent,
            Some(25.0)
        );
        assert_eq!(
            stats(Some(&first), &sample(3, 90_000, t1), 100).cpu_percent,
            None
        );
    }

    #[test]
    fn live_sample_of_this_process() {
        let pid = std::process::id();
        let mut sampler = Sampler::new();
        let first = sampler.sample(&[pid]);
        let first = first.get(&pid).expect("this process is running");
        assert_eq!(first.cpu_percent, None);

        // Busy work, so some CPU time passes between the samples.
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            for i in 0..10_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }

        let second = sampler.sample(&[pid]);
        let second = second.get(&pid).expect("this process is running");
        assert!(second.rss_bytes > 0);
        assert!(second.uptime < Duration::from_secs(86_400), "{second:?}");
        let cpu = second.cpu_percent.expect("a second sample has a CPU rate");
        assert!(cpu >= 0.0, "{second:?}");

        assert!(read_sample(pid).is_some());
        // Beyond the kernel's pid limit: never a process.
        assert_eq!(read_sample(u32::MAX), None);
        let gone = sampler.sample(&[pid, u32::MAX, pid]);
        assert_eq!(gone.len(), 1);
        // Pids not asked for are forgotten.
        assert!(sampler.sample(&[]).is_empty());
        assert!(sampler.previous.is_empty());
    }
}

/// The host's memory, `(MemTotal, MemAvailable)` in bytes, from
/// `/proc/meminfo`.
pub fn host_memory() -> Option<(u64, u64)> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// `(MemTotal, MemAvailable)` in bytes from the text of `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kb| kb * 1024)
    };
    Some((field("MemTotal")?, field("MemAvailable")?))
}

/// The one-minute load average, from `/proc/loadavg`.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod host_tests {
    #[test]
    fn an_argument_is_found_whole_and_never_as_the_program() {
        let raw = b"/bin/pocketbase\0serve\0--dir=/srv/i/one/pb_data\0--http=127.0.0.1:1\0";
        assert!(super::cmdline_has_arg(raw, "--dir=/srv/i/one/pb_data"));
        assert!(!super::cmdline_has_arg(raw, "--dir=/srv/i/one"));
        assert!(!super::cmdline_has_arg(raw, "--dir=/srv/i/one/pb_data/x"));
        assert!(!super::cmdline_has_arg(raw, "/bin/pocketbase"));
        assert!(!super::cmdline_has_arg(b"", "serve"));
    }

    #[test]
    fn a_process_is_found_by_one_of_its_arguments() {
        let mut child = std::process::Command::new("sleep")
            .arg("30.0271828")
            .spawn()
            .unwrap();
        // Until it has run `exec`, the child still shows this command line.
        let mut found = Vec::new();
        for _ in 0..200 {
            found = super::processes_with_arg("30.0271828");
            if found.contains(&child.id()) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()), "{found:?}");
        assert!(!super::processes_with_arg("30.027182").contains(&child.id()));
    }

    #[test]
    fn meminfo_in_bytes() {
        let text = "MemTotal:       24546880 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(
            super::parse_meminfo(text),
            Some((24546880 * 1024, 20000000 * 1024))
        );
        assert_eq!(super::parse_meminfo("MemTotal: 1 kB\n"), None);
        assert!(super::host_memory().is_some_and(|(t, a)| t > 0 && a <= t));
    }
}
