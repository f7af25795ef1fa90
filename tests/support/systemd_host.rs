//! A real systemd for the tests, booted as PID 1 of namespaces of its own
//! over a root of its own, so that it can never touch the machine it runs on.
//!
//! Booted on the machine's own root, systemd empties `/tmp`
//! (`systemd-tmpfiles-setup`), edits `/etc/passwd` (`systemd-sysusers`),
//! sets the hostname and kernel parameters. So [`SystemdHost::boot`] gives it:
//!
//! - new PID, mount, UTS, IPC and cgroup namespaces (`unshare`), the mount
//!   namespace private, so no mount below is seen outside;
//! - a root that is an overlay over `/` whose upper layer is a tmpfs of
//!   that mount namespace: every write (useradd's `/etc/passwd`, unit
//!   files, data dirs) lands there and is gone with the namespace;
//!   `pivot_root` into it and the old root unmounted, so the machine's tree
//!   is out of reach;
//! - fresh tmpfs on `/tmp` and `/run`, its own `/dev` with the basic device
//!   nodes and a new `devpts`, its own `/proc` with `/proc/sys` read-only
//!   and `/sys` read-only (no kernel parameter or device of the machine can
//!   be changed), and a cgroup2 hierarchy rooted at a cgroup made for it;
//! - a bounding set without the capabilities that reach the shared kernel
//!   (modules, clock, raw I/O, network administration, audit, syslog, MAC),
//!   close to `systemd-nspawn`'s defaults;
//! - the units of this machine that would reach shared things masked
//!   ([`MASKED`]): timers, avahi (multicast on the shared network), udev,
//!   sysctl, binfmt, module loading; it boots `basic.target`, so services
//!   of `multi-user.target` (databases, exporters) are not started.
//!
//! It keeps the machine's network namespace, so the tests reach daemons and
//! PocketBase inside on 127.0.0.1 (ports must be chosen free on the machine).
//! Paths from the machine that the tests need inside (the pockestrator
//! binary, the fetched PocketBase binaries) are bound read-only at the same
//! place.
//!
//! Dropping the [`SystemdHost`] SIGKILLs its PID 1, which makes the kernel
//! kill every process of the namespace, then removes its cgroup. If the
//! test process dies first, the parent-death signal of `unshare` and its
//! `--kill-child` do the same.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Units of the machine's image not started inside: they would touch the
/// shared network or kernel, or fire during a test.
pub const MASKED: &[&str] = &[
    "timers.target",
    "avahi-daemon.socket",
    "avahi-daemon.service",
    "systemd-timesyncd.service",
    "systemd-pstore.service",
    "systemd-repart.service",
    "systemd-modules-load.service",
    "kmod-static-nodes.service",
    "systemd-sysctl.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-hwdb-update.service",
    "systemd-journald-audit.socket",
    "getty.target",
];

/// Capabilities taken out of the bounding set of the booted systemd.
const DROPPED_CAPABILITIES: &str = "-sys_module,-sys_time,-sys_rawio,-net_admin,-sys_pacct,\
-wake_alarm,-block_suspend,-syslog,-mac_admin,-mac_override,-audit_read,-audit_control";

/// The programs the isolation needs (util-linux, mount, coreutils).
const TOOLS: &[&str] = &[
    "unshare",
    "nsenter",
    "pivot_root",
    "setpriv",
    "mount",
    "umount",
    "mknod",
];

/// How long systemd may take to reach `running` (or `degraded`).
const BOOT_LIMIT: Duration = Duration::from_secs(30);

/// Runs as PID 1 of the new namespaces: builds the root, then becomes
/// systemd. `$1` is the state dir (with `root/` and `scratch/`), `$2` the
/// systemd binary, `$3` the dropped capabilities, then the masked units up
/// to `--`, then the paths to bind read-only.
const INIT_SCRIPT: &str = r#"
set -eu
state=$1 systemd=$2 caps=$3
shift 3
R=$state/root
mount -t tmpfs -o mode=0700 scratch "$state/scratch"
mkdir "$state/scratch/upper" "$state/scratch/work"
mount -t overlay overlay -o "lowerdir=/,upperdir=$state/scratch/upper,workdir=$state/scratch/work" "$R"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$R/run"
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
mount --bind "$R/proc/sys" "$R/proc/sys"
mount -o remount,bind,ro "$R/proc/sys"
if [ -e "$R/proc/sysrq-trigger" ]; then
  mount --bind "$R/proc/sysrq-trigger" "$R/proc/sysrq-trigger"
  mount -o remount,bind,ro "$R/proc/sysrq-trigger"
fi
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$R/dev"
mknod -m 666 "$R/dev/null" c 1 3
mknod -m 666 "$R/dev/zero" c 1 5
mknod -m 666 "$R/dev/full" c 1 7
mknod -m 666 "$R/dev/random" c 1 8
mknod -m 666 "$R/dev/urandom" c 1 9
mknod -m 666 "$R/dev/tty" c 5 0
mknod -m 600 "$R/dev/console" c 1 3
mkdir "$R/dev/pts" "$R/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
mkdir -p "$R/etc/systemd/system"
while [ "$1" != "--" ]; do
  ln -sf /dev/null "$R/etc/systemd/system/$1"
  shift
done
shift
for path in "$@"; do
  if [ -d "$path" ]; then mkdir -p "$R$path"; else mkdir -p "$(dirname "$R$path")"; touch "$R$path"; fi
  mount --bind "$path" "$R$path"
  mount -o remount,bind,ro "$R$path"
done
mkdir "$R/.oldroot"
cd "$R"
pivot_root . .oldroot
umount -l /.oldroot
rmdir /.oldroot
exec setpriv --bounding-set "$caps" env -i container=pockestrator-test "$systemd" --system --unit=basic.target
"#;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A systemd booted in namespaces of its own; see the module doc.
pub struct SystemdHost {
    /// On the machine: `root/` and `scratch/` (mount points inside the
    /// namespace only) and the init script's output.
    state: tempfile::TempDir,
    unshare: Option<Child>,
    /// The systemd's PID as the machine sees it, and a pidfd on it (opened
    /// before checking that it is systemd, so a signal through it can only
    /// reach that process, never one that reused the number).
    pid1: i32,
    pidfd: Option<std::os::fd::OwnedFd>,
    /// The cgroup made for it, on the machine's cgroup2 hierarchy.
    cgroup: PathBuf,
    /// From the spawn to `systemctl is-system-running` saying so.
    pub boot_time: Duration,
}

impl SystemdHost {
    /// Boot a systemd, with `binds` (paths of this machine, files or
    /// directories) visible read-only at the same place inside. Call it from
    /// the test's own thread: `unshare` gets SIGKILL when the thread that
    /// spawned it ends. An `Err` says why this machine cannot host it: the
    /// caller skips.
    pub fn boot(binds: &[PathBuf]) -> Result<SystemdHost, String> {
        if !nix::unistd::Uid::effective().is_root() {
            return Err("booting systemd in namespaces of its own needs root".to_string());
        }
        let systemd = ["/lib/systemd/systemd", "/usr/lib/systemd/systemd"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or("no systemd at /lib/systemd/systemd (Debian's package `systemd`)")?;
        for tool in TOOLS {
            which(tool).ok_or_else(|| {
                format!("{tool} is missing (util-linux / mount / coreutils): scripts/fetch-test-deps installs them as root")
            })?;
        }
        let mut bound = Vec::new();
        for path in binds {
            let canonical = path
                .canonicalize()
                .map_err(|e| format!("cannot resolve {}: {e}", path.display()))?;
            let text = canonical
                .to_str()
                .filter(|t| !t.contains(['\n', '"', '\\']))
                .ok_or_else(|| format!("cannot bind {} into the root", canonical.display()))?;
            bound.push(text.to_string());
        }
        let state = tempfile::Builder::new()
            .prefix("pk-systemd")
            .tempdir()
            .map_err(|e| format!("cannot make a state dir: {e}"))?;
        for dir in ["root", "scratch"] {
            std::fs::create_dir(state.path().join(dir))
                .map_err(|e| format!("cannot make {dir}/: {e}"))?;
        }
        let log = std::fs::File::create(state.path().join("init.log"))
            .map_err(|e| format!("cannot create the init log: {e}"))?;
        let log2 = log
            .try_clone()
            .map_err(|e| format!("cannot clone the init log: {e}"))?;
        let cgroup = make_cgroup()?;
        let procs = cgroup.join("cgroup.procs");
        let mut cmd = Command::new("sh");
        // The shell moves itself into the new cgroup, then becomes unshare,
        // whose cgroup namespace is rooted there.
        cmd.arg("-c")
            .arg(r#"echo $$ > "$1" && shift && exec "$@""#)
            .arg("sh")
            .arg(&procs)
            .args([
                "unshare",
                "--pid",
                "--fork",
                "--kill-child=SIGKILL",
                "--mount",
                "--propagation",
                "private",
                "--uts",
                "--ipc",
                "--cgroup",
                "--",
                "sh",
                "-c",
                INIT_SCRIPT,
                "init",
            ])
            .arg(state.path())
            .arg(&systemd)
            .arg(DROPPED_CAPABILITIES)
            .args(MASKED)
            .arg("--")
            .args(&bound)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // SAFETY: prctl is async-signal-safe; nothing else runs between
        // fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let started = Instant::now();
        let child = cmd.spawn().map_err(|e| {
            let _ = std::fs::remove_dir(&cgroup);
            format!("cannot run unshare: {e}")
        })?;
        let unshare_pid = child.id() as i32;
        let mut host = SystemdHost {
            state,
            unshare: Some(child),
            pid1: 0,
            pidfd: None,
            cgroup,
            boot_time: Duration::ZERO,
        };
        let deadline = started + BOOT_LIMIT;
        // PID 1 is unshare's child, and is systemd once the script has built
        // the root.
        loop {
            if let Some((pid, fd)) = child_of(unshare_pid).and_then(|pid| {
                let fd = rustix::process::pidfd_open(
                    rustix::process::Pid::from_raw(pid)?,
                    rustix::process::PidfdFlags::empty(),
                )
                .ok()?;
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "systemd")
                    .then_some((pid, fd))
            }) {
                host.pid1 = pid;
                host.pidfd = Some(fd);
                break;
            }
            if let Some(why) = host.exited() {
                return Err(why);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "systemd was not started within {BOOT_LIMIT:?}: {}",
                    host.init_log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let last = loop {
            let out = host.run("systemctl", &["is-system-running"]);
            let last = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if last == "running" || last == "degraded" {
                break last;
            }
            if let Some(why) = host.exited() {
                return Err(why);
            }
            if Instant::now() > deadline {
                let jobs = host.run("systemctl", &["list-jobs", "--no-pager"]);
                return Err(format!(
                    "systemd did not finish booting within {BOOT_LIMIT:?} (is-system-running: {last:?}; jobs: {})",
                    String::from_utf8_lossy(&jobs.stdout).replace('\n', "; ")
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        host.boot_time = started.elapsed();
        if last == "degraded" {
            let failed = host.run("systemctl", &["--failed", "--no-legend", "--plain"]);
            eprintln!(
                "systemd booted degraded; failed units: {}",
                String::from_utf8_lossy(&failed.stdout).trim()
            );
        }
        Ok(host)
    }

    /// The systemd's PID, as this machine sees it.
    pub fn pid1(&self) -> i32 {
        self.pid1
    }

    /// Where a path inside is reached from this machine (through
    /// `/proc/PID/root`), to read and write files in the root.
    pub fn path(&self, inside: impl AsRef<Path>) -> PathBuf {
        let inside = inside.as_ref();
        let relative = inside.strip_prefix("/").unwrap_or(inside);
        PathBuf::from(format!("/proc/{}/root", self.pid1)).join(relative)
    }

    /// The command prefix that runs a program inside (its namespaces, root
    /// and working directory), for fixtures that build their own command.
    pub fn enter(&self) -> Vec<std::ffi::OsString> {
        [
            "nsenter",
            "-t",
            &self.pid1.to_string(),
            "-m",
            "-p",
            "-u",
            "-i",
            "-r",
            "-w",
            "--",
        ]
        .iter()
        .map(Into::into)
        .collect()
    }

    /// A program to run inside.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let enter = self.enter();
        let mut cmd = Command::new(&enter[0]);
        cmd.args(&enter[1..]).arg(program);
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Run a program inside and wait for it.
    pub fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run nsenter for {program}: {e}"))
    }

    /// `systemctl ARGS` inside; panics with its stderr when it fails.
    pub fn systemctl(&self, args: &[&str]) -> String {
        let out = self.run("systemctl", args);
        assert!(
            out.status.success(),
            "systemctl {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// One property of a unit, as `systemctl show --value` gives it.
    pub fn show(&self, unit: &str, property: &str) -> String {
        self.systemctl(&["show", "--value", &format!("--property={property}"), unit])
            .trim()
            .to_string()
    }

    /// The end of the journal inside, for failure messages.
    pub fn journal(&self, lines: usize) -> String {
        let out = self.run(
            "journalctl",
            &[
                "--no-pager",
                "-o",
                "short-monotonic",
                "-n",
                &lines.to_string(),
            ],
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn init_log(&self) -> String {
        std::fs::read_to_string(self.state.path().join("init.log"))
            .unwrap_or_default()
            .trim()
            .replace('\n', "; ")
    }

    /// Why the namespace ended, if it has.
    fn exited(&mut self) -> Option<String> {
        let child = self.unshare.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.unshare = None;
                Some(format!(
                    "the isolated root could not be built ({status}): {}",
                    self.init_log()
                ))
            }
            Ok(None) => None,
            Err(e) => Some(format!("cannot wait for unshare: {e}")),
        }
    }
}

impl Drop for SystemdHost {
    fn drop(&mut self) {
        if std::thread::panicking() && self.pid1 > 0 {
            eprintln!(
                "--- journal of the test's systemd ---\n{}",
                self.journal(150)
            );
        }
        if let Some(fd) = self.pidfd.take() {
            // Killing a PID namespace's init kills everything in it.
            let _ = rustix::process::pidfd_send_signal(&fd, rustix::process::Signal::KILL);
        }
        if let Some(mut child) = self.unshare.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        remove_cgroup(&self.cgroup, Duration::from_secs(10));
    }
}

/// A new cgroup below ours on the machine's cgroup2 hierarchy.
fn make_cgroup() -> Result<PathBuf, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    let mount = mountinfo
        .lines()
        .find_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
        })
        .ok_or("no cgroup2 hierarchy is mounted: systemd needs one")?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("this process has no cgroup2 cgroup")?
        .trim_start_matches('/');
    let parent = mount.join(own);
    // Those of test processes that were killed before they could clean up.
    if let Ok(entries) = std::fs::read_dir(&parent) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.strip_prefix("pockestrator-test-"))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok());
            if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                remove_cgroup(&entry.path(), Duration::ZERO);
            }
        }
    }
    let dir = parent.join(format!(
        "pockestrator-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir)
        .map_err(|e| format!("cannot create the cgroup {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Remove a cgroup and those below it, once their processes are gone
/// (waiting for them at most `patience`).
fn remove_cgroup(dir: &Path, patience: Duration) {
    let deadline = Instant::now() + patience;
    loop {
        let mut dirs: Vec<PathBuf> = walkdir(dir);
        // Deepest first.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        let all_gone = dirs
            .iter()
            .all(|d| std::fs::remove_dir(d).is_ok() || !d.exists());
        if all_gone || Instant::now() > deadline {
            if !all_gone && !patience.is_zero() {
                eprintln!("cannot remove the test cgroup {}", dir.display());
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walkdir(&e.path()));
            }
        }
    }
    out
}

/// The first child of `parent`, by the `PPid:` of every process.
fn child_of(parent: i32) -> Option<i32> {
    let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children"));
    if let Ok(text) = children {
        return text.split_whitespace().next()?.parse().ok();
    }
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let status = std::fs::read_to_string(e.path().join("status")).ok()?;
        let ppid: i32 = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))?
            .trim()
            .parse()
            .ok()?;
        (ppid == parent).then_some(pid)
    })
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.exists())
}
