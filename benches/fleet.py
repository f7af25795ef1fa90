#!/usr/bin/env python3
"""Fleet benchmark: pockestrator against supervisord on one PocketBase binary.

Run it through `scripts/bench`, which fetches the pinned PocketBase binaries,
installs supervisord when missing, builds pockestrator in release mode and
then calls this file with a fresh work directory.

For each manager, one after the other (never both fleets at once):

  bring-up     start N new instances and time until every port answers
               GET /api/health with 200 (polled here, independently of what
               the manager says);
  RSS          VmRSS of the manager process with the N instances running;
  kill -9      for K different instances: SIGKILL the PocketBase process and
               time until its port answers /api/health with 200 again, served
               by a new process (the old one is checked dead before every
               probe); median and max;
  stop-all     stop every instance and time until the manager is done and no
               port accepts a connection any more.

Then, for reference, the same fleet is spawned directly with no manager:
what this machine needs to bring N fresh PocketBase servers up at all.

This is a benchmark, not a test: it prints figures and never fails on them.
All traffic stays on 127.0.0.1, every wait is bounded, and every process it
starts is stopped again, also on failure and Ctrl-C. Python 3 stdlib only.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parent.parent
POCKESTRATOR = REPO / "target" / "release" / "pockestrator"
DEPS = REPO / ".cache" / "deps"
MIRROR = REPO / ".cache" / "mirror"

# Port ranges (the first free ports from these bases are used, checked by
# binding), far apart so the two fleets never share a port.
POCKESTRATOR_PORT_BASE = 24100
SUPERVISORD_PORT_BASE = 26100
BASELINE_PORT_BASE = 28100

# Bounds on every wait.
DAEMON_READY_TIMEOUT = 30.0
INSTALL_TIMEOUT = 300.0
BRING_UP_TIMEOUT = 180.0
AFTER_CREATES_GRACE = 15.0  # keep polling this long after every create returned
KILL_TIMEOUT = 30.0
STABLE_TIMEOUT = 30.0
STOP_TIMEOUT = 300.0
KILL_POLL_INTERVAL = 0.002
FLEET_POLL_INTERVAL = 0.01
FLEET_POLL_THREADS = 8

# Targets from the issue, checked against pockestrator's figures.
TARGET_BRING_UP_RATIO = 4.0
TARGET_RESTART_MEDIAN = 0.100
TARGET_STOP_ALL = 2.0
TARGET_RSS_BYTES = 20 * 1000 * 1000

# /proc/loadavg's 1-minute figure when the benchmark started (other work on
# the machine skews every figure).
LOADAVG_AT_START = ""

# Set when the benchmark is being interrupted: background threads give up.
STOP = threading.Event()


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived (not an Exception: nothing may
    swallow it on the way up)."""


class BenchError(Exception):
    """A run could not go on; the message says why."""


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# HTTP on the loopback (http.client: no proxy settings can reroute it)


def http_request(port, method, path, body=None, headers=None, timeout=5.0):
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def healthy(port: int, timeout: float = 1.0) -> bool:
    """Whether 127.0.0.1:PORT answers GET /api/health with 200."""
    try:
        status, _ = http_request(port, "GET", "/api/health", timeout=timeout)
        return status == 200
    except (OSError, http.client.HTTPException):
        return False


def accepts(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:PORT."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=timeout):
            return True
    except OSError:
        return False


def can_bind(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As servers do (PocketBase included): TIME_WAIT leftovers do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
            return True
        except OSError:
            return False


def free_ports(n: int, base: int, avoid: set[int]) -> list[int]:
    ports = []
    port = base
    while len(ports) < n and port < 65000:
        if port not in avoid and can_bind(port):
            ports.append(port)
        port += 1
    if len(ports) < n:
        raise BenchError(f"found only {len(ports)} free ports from {base}, need {n}")
    return ports


class Api:
    """pockestrator's TCP API with its bearer token."""

    def __init__(self, port: int, token: str):
        self.port = port
        self.token = token

    def call(self, method, path, body=None, timeout=30.0):
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        status, raw = http_request(self.port, method, path, data, headers, timeout)
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return status, parsed


def short(value, limit=300) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "…"


# --------------------------------------------------------------------------
# Processes


def proc_stat(pid: int):
    """(state, starttime) of a process, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return fields[0], int(fields[19])


def alive(pid: int, starttime: int | None) -> bool:
    """Whether that process (same pid and start time) still runs. A zombie
    has already closed its sockets, so it counts as gone."""
    st = proc_stat(pid)
    if st is None or st[0] in ("Z", "X", "x"):
        return False
    return starttime is None or st[1] == starttime


def status_kb(pid: int, key: str) -> int | None:
    return proc_field(f"/proc/{pid}/status", key)


def proc_field(path, key) -> int | None:
    """The number after `KEY:` in a /proc file (kB for sizes)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def processes_under(root: Path) -> list[int]:
    """Processes whose command line names ROOT or a path below it: the
    managers started with a data dir or config there, and their PocketBase
    servers (data dirs there). Our own process and its parent excluded."""
    root_s = str(root)
    prefix = root_s.rstrip("/") + "/"
    mine = {os.getpid(), os.getppid()}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid in mine:
            continue
        args = cmdline(pid)
        if any(a == root_s or prefix in a for a in args):
            found.append(pid)
    return found


def is_manager(pid: int) -> bool:
    args = cmdline(pid)
    if not args:
        return False
    names = {Path(args[0]).name}
    names.update(Path(a).name for a in args[1:2])  # python3 /usr/bin/supervisord
    return bool(names & {"pockestrator", "supervisord"})


def reap(root: Path, timeout: float = 15.0) -> list[int]:
    """SIGKILL every process started under ROOT, the managers first (so that
    none restarts what is being stopped). Returns what is still there after
    TIMEOUT (normally nothing)."""
    deadline = time.monotonic() + timeout
    for pid in processes_under(root):
        if is_manager(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    while True:
        left = [p for p in processes_under(root) if alive(p, None)]
        if not left or time.monotonic() > deadline:
            return left
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def wait_exit(proc: subprocess.Popen, sig: int, timeout: float) -> bool:
    """Signal a child we started and wait for it (bounded)."""
    if proc.poll() is not None:
        return True
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        return True
    try:
        proc.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def inotify_usage() -> tuple[int | None, int]:
    """(fs.inotify.max_user_instances, inotify instances our user holds)."""
    try:
        limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    except (OSError, ValueError):
        limit = None
    uid = os.getuid()
    used = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{entry}/fd/{fd}") == "anon_inode:inotify":
                    used += 1
            except OSError:
                pass
    return limit, used


INOTIFY_HINT = (
    "PocketBase ran out of inotify instances (its hooks watcher needs them): "
    "raise fs.inotify.max_user_instances, e.g. `sysctl -w fs.inotify.max_user_instances=1024`, "
    "and run the benchmark again"
)


def logs_mention_inotify(paths: list[Path]) -> bool:
    needles = ("too many open files", "inotify", "max_user_instances")
    for path in paths:
        try:
            text = path.read_text(errors="replace").lower()
        except OSError:
            continue
        if any(n in text for n in needles):
            return True
    return False


# --------------------------------------------------------------------------
# Measuring


def poll_ports(ports, check, deadline, interval=FLEET_POLL_INTERVAL, give_up=None):
    """Run CHECK(port) on every port until it returns True once. Returns
    {port: monotonic time when it first did}; ports missing from the answer
    never did before DEADLINE (or before GIVE_UP() said so)."""
    done: dict[int, float] = {}
    lock = threading.Lock()

    def worker(mine):
        pending = list(mine)
        while pending and not STOP.is_set() and time.monotonic() < deadline:
            if give_up is not None and give_up():
                return
            for port in list(pending):
                if check(port):
                    t = time.monotonic()
                    with lock:
                        done[port] = t
                    pending.remove(port)
            if pending:
                time.sleep(interval)

    workers = min(FLEET_POLL_THREADS, len(ports)) or 1
    threads = [
        threading.Thread(target=worker, args=(ports[i::workers],), daemon=True)
        for i in range(workers)
    ]
    for t in threads:
        t.start()
    join_all(threads)
    return done


def join_all(threads):
    # Short joins keep the main thread responsive to signals.
    for t in threads:
        while t.is_alive():
            t.join(0.1)


def time_kill(port: int, pid: int) -> float | None:
    """SIGKILL PID and time until PORT answers /api/health with 200 from
    another process. None when it does not within KILL_TIMEOUT."""
    st = proc_stat(pid)
    if st is None:
        raise BenchError(f"pid {pid} (port {port}) is not running")
    starttime = st[1]
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    deadline = t0 + KILL_TIMEOUT
    while time.monotonic() < deadline and not STOP.is_set():
        # The old process must be gone before a probe starts, so a 200 can
        # only come from its replacement.
        if not alive(pid, starttime):
            if healthy(port, timeout=0.5):
                return time.monotonic() - t0
        time.sleep(KILL_POLL_INTERVAL)
    return None


def spread(n: int, k: int) -> list[int]:
    """K distinct indices spread evenly over range(N)."""
    k = min(k, n)
    return sorted({(i * n) // k for i in range(k)})


@dataclass
class Result:
    manager: str
    bring_up: float | None = None
    creates_returned: float | None = None
    rss_bytes: int | None = None
    hwm_bytes: int | None = None
    kills: list[float] = field(default_factory=list)
    stop_all: float | None = None
    stop_returned: float | None = None
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def kill_median(self):
        return statistics.median(self.kills) if self.kills else None

    @property
    def kill_max(self):
        return max(self.kills) if self.kills else None


def note_missing(res: Result, what: str, ports: list[int], done: dict[int, float]):
    missing = [p for p in ports if p not in done]
    if missing:
        shown = ", ".join(str(p) for p in missing[:10]) + (" …" if len(missing) > 10 else "")
        res.errors.append(f"{what}: {len(missing)} of {len(ports)} ports never did ({shown})")
    return missing


def run_kills(res: Result, names: list[str], ports: list[int], kills: int, get_pid, wait_stable):
    for i in spread(len(names), kills):
        if STOP.is_set():
            break
        name, port = names[i], ports[i]
        pid = get_pid(name)
        if not pid:
            res.errors.append(f"kill -9 {name}: the manager reports no pid")
            continue
        elapsed = time_kill(port, pid)
        if elapsed is None:
            res.errors.append(f"kill -9 {name}: not healthy again within {KILL_TIMEOUT:.0f} s")
            continue
        res.kills.append(elapsed)
        log(f"{res.manager}: kill -9 {name} (pid {pid}) → healthy in {elapsed * 1000:.1f} ms")
        new_pid = wait_stable(name, pid)
        if new_pid is None:
            res.errors.append(f"kill -9 {name}: not reported running again within {STABLE_TIMEOUT:.0f} s")
        elif new_pid == pid:
            res.errors.append(f"kill -9 {name}: the manager still reports the killed pid {pid}")
        time.sleep(0.2)


# --------------------------------------------------------------------------
# pockestrator


def read_lines_until(path: Path, proc: subprocess.Popen, wanted, timeout: float):
    """Wait until the file holds a line for each predicate in WANTED; returns
    the matching lines. Fails when the process exits first."""
    deadline = time.monotonic() + timeout
    found = {}
    while time.monotonic() < deadline and not STOP.is_set():
        text = path.read_text(errors="replace") if path.exists() else ""
        for line in text.splitlines():
            for key, pred in wanted.items():
                if key not in found and pred(line):
                    found[key] = line
        if len(found) == len(wanted):
            return found
        if proc.poll() is not None:
            raise BenchError(f"exited with {proc.returncode}:\n{tail(path)}")
        time.sleep(0.02)
    raise BenchError(f"not ready within {timeout:.0f} s:\n{tail(path)}")


def start_serve(root: Path, err_path: Path, extra: list[str], env=None):
    """`pockestrator serve` on ROOT with a TCP API and an embedded proxy on
    loopback ports the system picks, plus EXTRA flags, its stderr into
    ERR_PATH. Returns the process, the API and proxy ports, and the headers
    that carry its token."""
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [str(POCKESTRATOR), "--data-dir", str(root), "serve",
             "--listen", f"{LOOPBACK}:0", "--proxy-listen", f"{LOOPBACK}:0",
             "--release-source", str(MIRROR), *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            start_new_session=True, env=env)
    lines = read_lines_until(err_path, proc, {
        "api": lambda l: "pockestrator: API on http://" in l,
        "proxy": lambda l: "pockestrator: proxy on http://" in l,
        "ready": lambda l: "pockestrator is ready" in l,
    }, 60.0)
    port = lambda line: int(line.split("http://", 1)[1].split()[0].rsplit(":", 1)[1])  # noqa: E731
    token = subprocess.run([str(POCKESTRATOR), "--data-dir", str(root), "token"],
                           capture_output=True, text=True, check=True).stdout.strip()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return proc, port(lines["api"]), port(lines["proxy"]), headers


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def run_pockestrator(args, work: Path, ports: list[int], binary: Path, res: Result):
    root = work / "pockestrator"
    root.mkdir()
    stderr_path = work / "pockestrator.stderr"
    names = [f"b{i}" for i in range(len(ports))]
    proc = None
    try:
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                [
                    str(POCKESTRATOR), "--data-dir", str(root), "serve",
                    "--listen", f"{LOOPBACK}:0",
                    # The default router (embedded proxy) on a free port, so
                    # a busy 8080 does not stop the benchmark.
                    "--proxy-listen", f"{LOOPBACK}:0",
                    "--release-source", str(MIRROR),
                    "--pool-size", str(args.pool_size),
                ],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True, cwd=str(work),
                # The ready line is an info-level log line.
                env=dict(os.environ, POCKESTRATOR_LOG="info"),
            )
        try:
            lines = read_lines_until(stderr_path, proc, {
                "api": lambda l: "pockestrator: API on http://" in l,
                "ready": lambda l: "pockestrator is ready" in l,
            }, DAEMON_READY_TIMEOUT)
        except BenchError as e:
            raise BenchError(f"the daemon {e}") from None
        addr = lines["api"].split("http://", 1)[1].split()[0]
        api_port = int(addr.rsplit(":", 1)[1])
        api = Api(api_port, (root / "token").read_text().strip())

        log(f"pockestrator: daemon pid {proc.pid}, API on {addr}; installing PocketBase {args.version}")
        status, body = api.call("POST", "/api/v1/versions/install", {"version": args.version},
                                timeout=INSTALL_TIMEOUT)
        if status != 200:
            raise BenchError(f"install {args.version}: HTTP {status}: {short(body)}")
        installed = Path(body["binary"]) if isinstance(body, dict) and body.get("binary") else None
        if installed and installed.exists():
            same = sha256(installed) == sha256(binary)
            res.notes.append(
                f"runs its installed copy of the release ({installed.relative_to(root)}), "
                + ("byte-identical to the binary supervisord runs" if same else "WHICH DIFFERS from the binary supervisord runs")
            )

        if args.pool_size:
            warm_pool(api, root, args)

        # Bring-up.
        log(f"pockestrator: bring-up of {len(ports)} instances")
        create_results: dict[str, tuple] = {}
        creates_done = threading.Event()
        creates_done_at = [None]

        def create(name, port):
            try:
                out = api.call("POST", "/api/v1/instances",
                               {"name": name, "version": args.version, "port": port},
                               timeout=BRING_UP_TIMEOUT)
            except (OSError, http.client.HTTPException) as e:
                out = (None, str(e))
            create_results[name] = (time.monotonic(),) + out

        def give_up():
            at = creates_done_at[0]
            return at is not None and time.monotonic() > at + AFTER_CREATES_GRACE

        threads = [threading.Thread(target=create, args=(n, p), daemon=True) for n, p in zip(names, ports)]
        t0 = time.monotonic()
        for t in threads:
            t.start()

        def watch_creates():
            join_all(threads)
            creates_done_at[0] = time.monotonic()
            creates_done.set()

        watcher = threading.Thread(target=watch_creates, daemon=True)
        watcher.start()
        done = poll_ports(ports, healthy, t0 + BRING_UP_TIMEOUT, give_up=give_up)
        join_all([watcher])
        if creates_done_at[0] is not None:
            res.creates_returned = creates_done_at[0] - t0
        failed = {n: r for n, r in create_results.items() if r[1] != 201}
        for n, r in sorted(failed.items(), key=lambda kv: int(kv[0][1:])):
            res.errors.append(f"create {n}: HTTP {r[1]}: {short(r[2])}")
        missing = note_missing(res, "bring-up: answer /api/health", ports, done)
        if missing:
            logs = list((root / "instances").glob("*/logs/*.log")) + [stderr_path]
            if logs_mention_inotify(logs):
                res.errors.append(INOTIFY_HINT)
            raise BenchError("not every instance came up")
        res.bring_up = max(done.values()) - t0
        log(f"pockestrator: all {len(ports)} healthy in {res.bring_up:.2f} s")

        # Memory with the fleet running.
        time.sleep(1.0)
        rss, hwm = status_kb(proc.pid, "VmRSS"), status_kb(proc.pid, "VmHWM")
        res.rss_bytes = rss * 1024 if rss is not None else None
        res.hwm_bytes = hwm * 1024 if hwm is not None else None

        # kill -9 → healthy.
        def get_pid(name):
            status, body = api.call("GET", f"/api/v1/instances/{name}")
            return body.get("pid") if status == 200 and isinstance(body, dict) else None

        def wait_stable(name, old_pid):
            deadline = time.monotonic() + STABLE_TIMEOUT
            while time.monotonic() < deadline and not STOP.is_set():
                status, body = api.call("GET", f"/api/v1/instances/{name}")
                if (status == 200 and isinstance(body, dict) and body.get("status") == "running"
                        and body.get("pid") not in (None, old_pid)):
                    return body["pid"]
                time.sleep(0.05)
            return None

        run_kills(res, names, ports, args.kills, get_pid, wait_stable)

        # Stop all.
        pids = [get_pid(n) for n in names]
        log(f"pockestrator: stopping all {len(ports)}")
        stop_results: dict[str, tuple] = {}

        def stop(name):
            try:
                out = api.call("POST", f"/api/v1/instances/{name}/stop", timeout=STOP_TIMEOUT)
            except (OSError, http.client.HTTPException) as e:
                out = (None, str(e))
            stop_results[name] = (time.monotonic(),) + out

        threads = [threading.Thread(target=stop, args=(n,), daemon=True) for n in names]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        down = poll_ports(ports, lambda p: not accepts(p), t0 + STOP_TIMEOUT)
        join_all(threads)
        for n in names:
            r = stop_results.get(n)
            if r is None or r[1] != 200:
                res.errors.append(f"stop {n}: HTTP {r[1] if r else None}: {short(r[2]) if r else ''}")
        if stop_results:
            res.stop_returned = max(r[0] for r in stop_results.values()) - t0
        if not note_missing(res, "stop-all: stop accepting connections", ports, down):
            res.stop_all = max([max(down.values()), *(r[0] for r in stop_results.values())]) - t0
            log(f"pockestrator: all stopped in {res.stop_all:.2f} s")
        left = [p for p in pids if p and alive(p, None)]
        if left:
            res.errors.append(f"stop-all: {len(left)} PocketBase processes still alive after the stop requests returned")
    finally:
        shutdown_pockestrator(proc, root, res)


def pool_ready(root: Path) -> int:
    """Finished pool directories (what `pool/<binary>/<id>/pb_data` holds)."""
    return sum(1 for d in (root / "pool").glob("*/*")
               if not d.name.startswith(".") and (d / "pb_data" / "data.db").is_file())


def warm_pool(api, root: Path, args):
    """Fill the pool before the timed bring-up: a create (then deleted)
    starts the refill for the version's binary; wait until it is full."""
    log(f"pockestrator: filling a pool of {args.pool_size} data directories")
    status, body = api.call("POST", "/api/v1/instances",
                            {"name": "pool-warmer", "version": args.version},
                            timeout=BRING_UP_TIMEOUT)
    if status != 201:
        raise BenchError(f"create pool-warmer: HTTP {status}: {short(body)}")
    status, body = api.call("DELETE", "/api/v1/instances/pool-warmer", timeout=STOP_TIMEOUT)
    if status not in (200, 204):
        raise BenchError(f"delete pool-warmer: HTTP {status}: {short(body)}")
    deadline = time.monotonic() + 60 + 2 * args.pool_size
    while pool_ready(root) < args.pool_size:
        if time.monotonic() > deadline or STOP.is_set():
            raise BenchError(f"the pool holds {pool_ready(root)} of {args.pool_size} "
                             "directories after waiting")
        time.sleep(0.5)
    time.sleep(1.0)  # the last refill's process has exited
    log(f"pockestrator: pool of {pool_ready(root)} ready")


def shutdown_pockestrator(proc, root: Path, res: Result):
    with signals_ignored():
        if proc is not None and not wait_exit(proc, signal.SIGTERM, 10.0):
            res.errors.append("the daemon did not exit within 10 s of SIGTERM; killed")
            wait_exit(proc, signal.SIGKILL, 5.0)
        # Instances outlive the daemon by design: stop whatever still runs.
        left = reap(root)
        if left:
            res.errors.append(f"could not kill pids {left}")


# --------------------------------------------------------------------------
# supervisord


def supervisord_conf(sdir: Path, binary: Path, names, ports) -> str:
    parts = [
        "[unix_http_server]",
        f"file={sdir}/supervisor.sock",
        "chmod=0700",
        "",
        "[supervisord]",
        "nodaemon=true",
        f"pidfile={sdir}/supervisord.pid",
        f"logfile={sdir}/supervisord.log",
        f"childlogdir={sdir}/logs",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{sdir}/supervisor.sock",
        "",
    ]
    for name, port in zip(names, ports):
        d = sdir / "instances" / name
        command = [
            str(binary), "serve", f"--http={LOOPBACK}:{port}",
            f"--dir={d}/pb_data", f"--hooksDir={d}/pb_hooks",
            f"--migrationsDir={d}/pb_migrations", f"--publicDir={d}/pb_public",
        ]
        parts += [
            f"[program:{name}]",
            "command=" + " ".join(shlex.quote(c) for c in command).replace("%", "%%"),
            f"directory={d}",
            "autostart=true",
            "autorestart=true",
            "startsecs=1",
            "stopsignal=TERM",
            "stopwaitsecs=10",
            f"stdout_logfile={d}/logs/pocketbase.log",
            "redirect_stderr=true",
            "",
        ]
    return "\n".join(parts)


def run_supervisord(args, work: Path, ports: list[int], binary: Path, res: Result):
    sdir = work / "supervisord"
    names = [f"b{i}" for i in range(len(ports))]
    for name in names:
        for sub in ("pb_data", "pb_hooks", "pb_migrations", "pb_public", "logs"):
            (sdir / "instances" / name / sub).mkdir(parents=True)
    (sdir / "logs").mkdir()
    conf = sdir / "supervisord.conf"
    conf.write_text(supervisord_conf(sdir, binary, names, ports))
    out_path = work / "supervisord.out"

    def ctl(*cmd, timeout=30.0):
        return subprocess.run(
            ["supervisorctl", "-c", str(conf), *cmd],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
        )

    proc = None
    try:
        log(f"supervisord: bring-up of {len(ports)} instances")
        with open(out_path, "wb") as out:
            t0 = time.monotonic()
            proc = subprocess.Popen(
                ["supervisord", "-c", str(conf)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=str(sdir),
            )

        def give_up():
            return proc.poll() is not None

        done = poll_ports(ports, healthy, t0 + BRING_UP_TIMEOUT, give_up=give_up)
        if proc.poll() is not None:
            raise BenchError(f"supervisord exited with {proc.returncode}:\n{tail(out_path)}")
        missing = note_missing(res, "bring-up: answer /api/health", ports, done)
        if missing:
            logs = [sdir / "instances" / n / "logs" / "pocketbase.log" for n in names]
            if logs_mention_inotify(logs):
                res.errors.append(INOTIFY_HINT)
            raise BenchError("not every instance came up")
        res.bring_up = max(done.values()) - t0
        log(f"supervisord: all {len(ports)} healthy in {res.bring_up:.2f} s")

        time.sleep(1.0)
        rss, hwm = status_kb(proc.pid, "VmRSS"), status_kb(proc.pid, "VmHWM")
        res.rss_bytes = rss * 1024 if rss is not None else None
        res.hwm_bytes = hwm * 1024 if hwm is not None else None

        def get_pid(name):
            r = ctl("pid", name)
            try:
                pid = int(r.stdout.strip())
            except ValueError:
                return None
            return pid or None

        def wait_stable(name, old_pid):
            deadline = time.monotonic() + STABLE_TIMEOUT
            while time.monotonic() < deadline and not STOP.is_set():
                r = ctl("status", name)
                words = r.stdout.split()
                if len(words) >= 4 and words[1] == "RUNNING" and words[2] == "pid":
                    pid = int(words[3].rstrip(","))
                    if pid != old_pid:
                        return pid
                time.sleep(0.1)
            return None

        run_kills(res, names, ports, args.kills, get_pid, wait_stable)

        pids = [get_pid(n) for n in names]
        log(f"supervisord: stopping all {len(ports)} (supervisorctl stop all)")
        ctl_result = {}

        def stop_all():
            try:
                r = ctl("stop", "all", timeout=STOP_TIMEOUT)
                ctl_result["rc"] = r.returncode
                ctl_result["out"] = r.stdout + r.stderr
            except subprocess.TimeoutExpired:
                ctl_result["rc"] = None
                ctl_result["out"] = f"timed out after {STOP_TIMEOUT:.0f} s"
            ctl_result["at"] = time.monotonic()

        t0 = time.monotonic()
        stopper = threading.Thread(target=stop_all, daemon=True)
        stopper.start()
        down = poll_ports(ports, lambda p: not accepts(p), t0 + STOP_TIMEOUT)
        join_all([stopper])
        if ctl_result.get("rc") != 0:
            res.errors.append(f"supervisorctl stop all: exit {ctl_result.get('rc')}: {short(ctl_result.get('out', ''))}")
        res.stop_returned = ctl_result["at"] - t0
        if not note_missing(res, "stop-all: stop accepting connections", ports, down):
            res.stop_all = max(max(down.values()), ctl_result["at"]) - t0
            log(f"supervisord: all stopped in {res.stop_all:.2f} s")
        left = [p for p in pids if p and alive(p, None)]
        if left:
            res.errors.append(f"stop-all: {len(left)} PocketBase processes still alive after supervisorctl returned")
    finally:
        with signals_ignored():
            if proc is not None and not wait_exit(proc, signal.SIGTERM, 30.0):
                res.errors.append("supervisord did not exit within 30 s of SIGTERM; killed")
            left = reap(sdir)
            if left:
                res.errors.append(f"could not kill pids {left}")


# --------------------------------------------------------------------------
# Baseline: no manager


def run_baseline(work: Path, ports: list[int], binary: Path, res: Result):
    """The same fleet spawned directly by this script: what the machine
    itself needs to bring N fresh PocketBase servers up, manager aside."""
    bdir = work / "baseline"
    names = [f"b{i}" for i in range(len(ports))]
    for name in names:
        for sub in ("pb_data", "pb_hooks", "pb_migrations", "pb_public", "logs"):
            (bdir / name / sub).mkdir(parents=True)
    procs = []
    try:
        log(f"no manager: {len(ports)} PocketBase spawned directly")
        t0 = time.monotonic()
        for name, port in zip(names, ports):
            d = bdir / name
            with open(d / "logs" / "pocketbase.log", "wb") as out:
                procs.append(subprocess.Popen(
                    [str(binary), "serve", f"--http={LOOPBACK}:{port}",
                     f"--dir={d}/pb_data", f"--hooksDir={d}/pb_hooks",
                     f"--migrationsDir={d}/pb_migrations", f"--publicDir={d}/pb_public"],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True, cwd=str(d),
                ))
        done = poll_ports(ports, healthy, t0 + BRING_UP_TIMEOUT,
                          give_up=lambda: any(p.poll() is not None for p in procs))
        if not note_missing(res, "bring-up: answer /api/health", ports, done):
            res.bring_up = max(done.values()) - t0
            log(f"no manager: all {len(ports)} healthy in {res.bring_up:.2f} s")
        elif logs_mention_inotify([bdir / n / "logs" / "pocketbase.log" for n in names]):
            res.errors.append(INOTIFY_HINT)
    finally:
        with signals_ignored():
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10.0
            for p in procs:
                try:
                    p.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            left = reap(bdir)
            if left:
                res.errors.append(f"could not kill pids {left}")


# --------------------------------------------------------------------------
# Report


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def command_output(cmd, cwd=None, env=None) -> str:
    try:
        r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
        return (r.stdout or r.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = proc_field("/proc/meminfo", "MemTotal")
    nproc = len(os.sched_getaffinity(0))
    parts = [f"{nproc} CPUs" + (f" ({cpu})" if cpu else "")]
    if mem:
        parts.append(f"{mem / 1024 / 1024:.1f} GiB RAM")
    parts.append(f"Linux {platform.release()}")
    if LOADAVG_AT_START:
        parts.append(f"load average {LOADAVG_AT_START} before the runs")
    return ", ".join(parts)


def git_commit() -> str:
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")  # read only: no index refresh
    commit = command_output(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, env=env)
    if not commit:
        return "unknown"
    dirty = command_output(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, env=env)
    return commit + (" (built with uncommitted changes)" if dirty else "")


def fmt_s(v, digits=2):
    return "n/a" if v is None else f"{v:.{digits}f} s"


def fmt_mb(v):
    return "n/a" if v is None else f"{v / 1e6:.1f} MB"


def times(r):
    return "n/a" if r is None else (f"{r:.1f}×" if r < 10 else f"{r:.0f}×")


def ratio(pk, sv, better="faster", worse="slower"):
    if not pk or not sv:
        return "n/a", None
    r = sv / pk
    return (f"{times(r)} {better}" if r >= 1 else f"{times(1 / r)} {worse}"), r


def verdict(ok):
    return "n/a" if ok is None else ("met" if ok else "NOT MET")


def report(args, pk: Result, sv: Result, base: Result, binary: Path, ports_pk, ports_sv):
    bring_ratio, bring_r = ratio(pk.bring_up, sv.bring_up)
    rows = [
        ("metric", "pockestrator", "supervisord", "ratio", "target", "verdict"),
        (f"bring-up {args.instances} → all healthy", fmt_s(pk.bring_up), fmt_s(sv.bring_up),
         bring_ratio, f"≥ {TARGET_BRING_UP_RATIO:g}× faster",
         verdict(None if bring_r is None else bring_r >= TARGET_BRING_UP_RATIO)),
        (f"kill -9 → healthy (median of {len(pk.kills)}/{len(sv.kills)})",
         fmt_s(pk.kill_median, 3), fmt_s(sv.kill_median, 3),
         ratio(pk.kill_median, sv.kill_median)[0], f"≤ {TARGET_RESTART_MEDIAN:.3f} s",
         verdict(None if pk.kill_median is None else pk.kill_median <= TARGET_RESTART_MEDIAN)),
        ("  max", fmt_s(pk.kill_max, 3), fmt_s(sv.kill_max, 3),
         ratio(pk.kill_max, sv.kill_max)[0], "", ""),
        (f"stop all {args.instances}", fmt_s(pk.stop_all), fmt_s(sv.stop_all),
         ratio(pk.stop_all, sv.stop_all)[0], f"≤ {TARGET_STOP_ALL:g} s",
         verdict(None if pk.stop_all is None else pk.stop_all <= TARGET_STOP_ALL)),
        (f"manager RSS with {args.instances} running", fmt_mb(pk.rss_bytes), fmt_mb(sv.rss_bytes),
         ratio(pk.rss_bytes, sv.rss_bytes, "smaller", "larger")[0], f"≤ {TARGET_RSS_BYTES / 1e6:g} MB",
         verdict(None if pk.rss_bytes is None else pk.rss_bytes <= TARGET_RSS_BYTES)),
        ("  peak RSS (VmHWM)", fmt_mb(pk.hwm_bytes), fmt_mb(sv.hwm_bytes),
         ratio(pk.hwm_bytes, sv.hwm_bytes, "smaller", "larger")[0], "", ""),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(r):
        return "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()

    sv_version = command_output(["supervisord", "--version"]) or "?"
    pb_version = (command_output([str(binary), "--version"]).split() or [args.version])[-1]
    out = [
        "",
        "Pockestrator fleet benchmark",
        f"  machine       {machine()}",
        f"  PocketBase    {pb_version} ({binary.relative_to(REPO)}, sha256 {sha256(binary)[:16]}…)",
        f"  pockestrator  commit {git_commit()}, {POCKESTRATOR.relative_to(REPO)}",
        f"  supervisord   {sv_version}",
        f"  fleet         {args.instances} instances on 127.0.0.1, ports {port_span(ports_pk)} (pockestrator) "
        f"and {port_span(ports_sv)} (supervisord), one manager after the other",
        "",
        line(rows[0]),
        line(tuple("-" * w for w in widths)),
        *(line(r) for r in rows[1:]),
        "",
        "Bring-up for supervisord includes its own start (it starts its programs itself);",
        "pockestrator's daemon was already up and the release installed. MB = 10^6 bytes (VmRSS).",
        (f"pockestrator's pool of pre-initialised data directories held {args.pool_size} before "
         "the bring-up (filled beforehand, not timed): each create started on one."
         if args.pool_size else
         "No pool of pre-initialised data directories (--pool-size 0): each create ran "
         "PocketBase's first migrations."),
    ]
    if base.bring_up is not None:
        floor = (f"No manager, for reference: the same {args.instances} PocketBase spawned directly "
                 f"by the benchmark were all healthy in {base.bring_up:.2f} s on this machine")
        if sv.bring_up:
            floor += (f"; {TARGET_BRING_UP_RATIO:g}× faster than supervisord means "
                      f"≤ {sv.bring_up / TARGET_BRING_UP_RATIO:.2f} s")
        out.append(floor + ".")
    for e in base.errors:
        out.append(f"No-manager reference: ERROR: {e}")
    for res in (pk, sv):
        details = []
        if res.creates_returned is not None:
            details.append(f"all create requests returned after {res.creates_returned:.2f} s")
        if res.stop_returned is not None:
            details.append(f"stop request(s) returned after {res.stop_returned:.2f} s")
        if res.kills:
            details.append("kill -9 → healthy (ms): " + ", ".join(f"{k * 1000:.0f}" for k in res.kills))
        details += res.notes
        if details or res.errors:
            out.append("")
            out.append(f"{res.manager}:")
            out += [f"  {d}" for d in details]
            out += [f"  ERROR: {e}" for e in res.errors]
    print("\n".join(out), flush=True)


def port_span(ports):
    return f"{ports[0]}–{ports[-1]}" if ports else "-"


# --------------------------------------------------------------------------


class signals_ignored:
    """Let cleanup finish: a second Ctrl-C must not cut it short."""

    def __enter__(self):
        self.saved = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def __exit__(self, *exc):
        for s, h in self.saved.items():
            signal.signal(s, h)
        return False


def on_signal(signum, _frame):
    STOP.set()
    raise Interrupted(signal.Signals(signum).name)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Benchmark pockestrator against supervisord on the same PocketBase binary "
        "(bring-up, kill -9 → healthy, stop-all, manager RSS). Prints figures; never fails on timings.",
    )
    p.add_argument("--instances", type=int, default=50, metavar="N", help="fleet size (default 50)")
    p.add_argument("--kills", type=int, default=10, metavar="N",
                   help="instances killed with SIGKILL, each a different one (default 10)")
    p.add_argument("--version", default="0.40.6", metavar="X.Y.Z",
                   help="PocketBase version, one of the pinned binaries in .cache/deps (default 0.40.6)")
    p.add_argument("--pool-size", type=int, default=0, metavar="N",
                   help="pockestrator's pool of pre-initialised data directories per version, "
                   "filled before the bring-up is timed (default 0: no pool, every create "
                   "runs PocketBase's first migrations)")
    p.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--reap", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.reap is None:
        if a.workdir is None:
            p.error("run it through scripts/bench (it passes --workdir)")
        if not 1 <= a.instances <= 1000:
            p.error("--instances must be between 1 and 1000")
        if not 0 <= a.pool_size <= 1000:
            p.error("--pool-size must be between 0 and 1000")
        if not 1 <= a.kills:
            p.error("--kills must be at least 1")
        a.kills = min(a.kills, a.instances)
    return a


def main(argv) -> int:
    args = parse_args(argv)
    if args.reap is not None:
        left = reap(args.reap.resolve())
        if left:
            log(f"could not kill pids {left}")
        return 0
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    global LOADAVG_AT_START
    try:
        LOADAVG_AT_START = Path("/proc/loadavg").read_text().split()[0]
    except (OSError, IndexError):
        pass
    work = args.workdir.resolve()
    binary = DEPS / f"pocketbase-{args.version}"
    if not binary.is_file():
        pinned = sorted(p.name.removeprefix("pocketbase-") for p in DEPS.glob("pocketbase-*"))
        log(f"no PocketBase binary {binary}; pinned versions: {', '.join(pinned) or 'none'}")
        return 2
    if not POCKESTRATOR.is_file():
        log(f"{POCKESTRATOR} is missing: run cargo build --release")
        return 2
    if not shutil.which("supervisord") or not shutil.which("supervisorctl"):
        log("supervisord/supervisorctl not found: apt-get install supervisor")
        return 2
    sock = work / "pockestrator" / "pockestrator.sock"
    if len(str(sock)) > 100:
        log(f"the work dir {work} is too deep for a unix socket path; set TMPDIR to a shorter dir")
        return 2

    limit, used = inotify_usage()
    if limit is not None:
        log(f"inotify instances: {used} in use of fs.inotify.max_user_instances={limit}")
        if limit - used < 2 * args.instances:
            log(f"warning: {args.instances} PocketBase servers may need about {2 * args.instances} inotify "
                f"instances and only {limit - used} are free; if instances fail to start, raise it with "
                f"`sysctl -w fs.inotify.max_user_instances=1024`")

    ports_pk = free_ports(args.instances, POCKESTRATOR_PORT_BASE, set())
    ports_sv = free_ports(args.instances, max(SUPERVISORD_PORT_BASE, ports_pk[-1] + 100), set(ports_pk))
    ports_base = free_ports(args.instances, max(BASELINE_PORT_BASE, ports_sv[-1] + 100),
                            set(ports_pk) | set(ports_sv))

    pk, sv, base = Result("pockestrator"), Result("supervisord"), Result("no manager")
    try:
        try:
            run_pockestrator(args, work, ports_pk, binary, pk)
        except BenchError as e:
            pk.errors.append(str(e))
        except Exception as e:  # noqa: BLE001 - reported, and the other run still goes
            pk.errors.append(f"{type(e).__name__}: {e}")
        # Never two fleets at once: the first must be entirely gone.
        left = processes_under(work / "pockestrator")
        if left:
            sv.errors.append(f"not run: processes of the pockestrator run are still alive ({left})")
        elif not STOP.is_set():
            if limit is not None:
                log(f"inotify instances in use between the runs: {inotify_usage()[1]}")
            try:
                run_supervisord(args, work, ports_sv, binary, sv)
            except BenchError as e:
                sv.errors.append(str(e))
            except Exception as e:  # noqa: BLE001 - reported with the figures
                sv.errors.append(f"{type(e).__name__}: {e}")
        left = processes_under(work / "supervisord")
        if left:
            base.errors.append(f"not run: processes of the supervisord run are still alive ({left})")
        elif not STOP.is_set():
            try:
                run_baseline(work, ports_base, binary, base)
            except Exception as e:  # noqa: BLE001 - reported with the figures
                base.errors.append(f"{type(e).__name__}: {e}")
    except Interrupted as e:
        log(f"interrupted ({e}); everything started was stopped")
        return 130
    except BaseException:
        STOP.set()
        raise
    finally:
        with signals_ignored():
            left = reap(work)
            if left:
                log(f"could not kill pids {left}")
    report(args, pk, sv, base, binary, ports_pk, ports_sv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
