#!/usr/bin/env python3
"""Deploy benchmark: `pockestrator deploy` against seed 003's way of
deploying (files changed in place, then `supervisorctl restart`), on the
same PocketBase binary, under a request loop.

Run it through `scripts/bench-deploy`, which fetches the pinned PocketBase
binaries, installs supervisord when missing, builds pockestrator in release
mode and then calls this file with a fresh work directory.

The app is a git repository (a working tree and a bare repository it is
pushed to) whose pb_hooks/main.pb.js answers GET /hello with {"v": N}, with
a migration and a page beside it. Each round commits v(N+1), pushes it and
deploys it while K clients send back-to-back GET /hello, each on one
keep-alive connection through the router with `Host: app.localhost`
(reconnecting after any error). Per round: the time from the deploy call
to the first answer from the new hook, the requests, the failed ones
(anything but a 200 with a `v`, or a connection or read error) and the
longest time a client waited between two answers. The loop starts before
the push and runs on for a while after the deploy command returned.

  pockestrator  the daemon with its embedded proxy; the first release by
                `pockestrator deploy app --repo file://…`, each round by
                `pockestrator deploy app` (the recorded repository): new
                requests wait while the instance is switched;
  seed 003      supervisord (nodaemon, a child of this script) running one
                [program:app]: PocketBase with its working directory and
                --hooksDir in a git clone of the repository (PocketBase's
                default --hooksWatch kept), behind Caddy (`reverse_proxy` in
                a site block for app.localhost); each round
                `git fetch origin && git reset --hard origin/main` in the
                clone (seed 003's deploy-app.sh), then
                `supervisorctl restart app`.

One way after the other, never both at once. This is a benchmark, not a
test: it prints figures and never fails on them. All traffic stays on
127.0.0.1, every wait is bounded, and every process it starts is stopped
again, also on failure and Ctrl-C. Python 3 stdlib only; it shares its
process and HTTP helpers with benches/fleet.py.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fleet  # noqa: E402 - the sibling benchmark's helpers
from fleet import (  # noqa: E402
    LOOPBACK, MIRROR, POCKESTRATOR, REPO, BenchError, Interrupted, free_ports, healthy,
    http_request, processes_under, read_lines_until, reap, sha256, short, signals_ignored,
    tail, wait_exit,
)

DEPS = REPO / ".cache" / "deps"
CADDY = DEPS / "caddy"
INSTANCE = "app"
HOST = f"{INSTANCE}.localhost"
BRANCH = "main"
EMAIL = "bench@example.com"
# The first free ports from here (checked by binding); the other benchmarks
# start at 24100, 25100, 26100 and 28100.
PORT_BASE = 29100

# Bounds on every wait.
DAEMON_READY_TIMEOUT = 30.0
CREATE_TIMEOUT = 300.0
CLI_TIMEOUT = 120.0
DEPLOY_TIMEOUT = 600.0
GIT_TIMEOUT = 60.0
CTL_TIMEOUT = 120.0
READY_TIMEOUT = 60.0  # a way's first release answering through its router
NEW_HOOK_TIMEOUT = 60.0  # after the deploy command returned
REQUEST_TIMEOUT = 60.0  # one request (the embedded proxy holds for at most 30 s)
LOOP_WARMUP = 0.5  # the loop runs this long before the push
LOOP_AFTER = 2.0  # and this long after the deploy command returned
ERROR_PAUSE = 0.001  # after a connection error, before reconnecting

STOP = fleet.STOP  # one flag for both modules' waits


def log(msg: str) -> None:
    print(f"bench-deploy: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# The app's repository


def hook(v: int) -> str:
    return f'routerAdd("GET", "/hello", (e) => {{ return e.json(200, {{ "v": {v} }}) }})\n'


MIGRATION = """migrate((app) => {
  const c = new Collection({ type: "base", name: "notes", listRule: "", fields: [{ name: "title", type: "text" }] });
  app.save(c);
}, (app) => {
  app.delete(app.findCollectionByNameOrId("notes"));
});
"""

GIT_ENV = {
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def git(*args, cwd: Path, timeout=GIT_TIMEOUT) -> str:
    cmd = ["git", "-c", "user.name=Bench", "-c", f"user.email={EMAIL}",
           "-c", "init.defaultBranch=main", *args]
    try:
        r = subprocess.run(cmd, cwd=str(cwd), env=dict(os.environ, **GIT_ENV),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"`git {' '.join(args)}` did not finish within {timeout:.0f} s") from None
    if r.returncode != 0:
        raise BenchError(f"`git {' '.join(args)}` exited with {r.returncode}: "
                         f"{short((r.stderr or r.stdout).strip())}")
    return r.stdout.strip()


class AppRepo:
    """A working tree and the bare repository it pushes to."""

    def __init__(self, tree: Path, bare: Path):
        self.tree = tree
        self.bare = bare
        bare.parent.mkdir(parents=True, exist_ok=True)
        git("init", "--bare", "-b", BRANCH, str(bare), cwd=bare.parent)
        tree.mkdir(parents=True)
        git("init", "-b", BRANCH, cwd=tree)
        git("remote", "add", "origin", str(bare), cwd=tree)
        (tree / "pb_hooks").mkdir()
        (tree / "pb_migrations").mkdir()
        (tree / "pb_public").mkdir()
        (tree / "pb_migrations" / "1700000000_notes.js").write_text(MIGRATION)
        (tree / "pb_public" / "index.html").write_text("<p>bench app</p>\n")

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    def release(self, v: int) -> str:
        """Commit the hook answering v and push it; the commit id."""
        (self.tree / "pb_hooks" / "main.pb.js").write_text(hook(v))
        git("add", "-A", cwd=self.tree)
        git("commit", "-q", "-m", f"v{v}", cwd=self.tree)
        git("push", "-q", "origin", BRANCH, cwd=self.tree)
        return git("rev-parse", "HEAD", cwd=self.tree)


# --------------------------------------------------------------------------
# The request loop


@dataclass
class Answer:
    client: int
    sent: float
    done: float
    ok: bool
    v: int | None
    what: str  # "200", "HTTP 502", "ConnectionRefusedError: …"


class RequestLoop:
    """CLIENTS threads, each sending GET /hello back to back on one
    keep-alive connection to 127.0.0.1:PORT with `Host: app.localhost`; on
    any error the connection is closed, the failure counted, and a new
    connection made."""

    def __init__(self, port: int, clients: int):
        self.port = port
        self.answers: list[Answer] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(clients)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        fleet.join_all(self.threads)

    def run(self, n: int):
        conn = None
        while not self.stop.is_set() and not STOP.is_set():
            if conn is None:
                conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=REQUEST_TIMEOUT)
            sent = time.monotonic()
            ok, v = False, None
            try:
                conn.request("GET", "/hello", headers={"Host": HOST, "Accept": "application/json"})
                resp = conn.getresponse()
                raw = resp.read()
                what = str(resp.status) if resp.status == 200 else f"HTTP {resp.status}"
                if resp.status == 200:
                    try:
                        v = json.loads(raw).get("v")
                    except (ValueError, AttributeError):
                        v = None
                    ok = isinstance(v, int)
                    if not ok:
                        what = f"200 without a v: {short(raw.decode(errors='replace'), 80)}"
                elif resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                conn.close()
                conn = None
            done = time.monotonic()
            with self.lock:
                self.answers.append(Answer(n, sent, done, ok, v, what))
            if conn is None and not ok:
                self.stop.wait(ERROR_PAUSE)
        if conn is not None:
            conn.close()

    def snapshot(self) -> list[Answer]:
        with self.lock:
            return list(self.answers)

    def wait_for(self, v: int, timeout: float) -> bool:
        """Until every client has had an answer with V."""
        deadline = time.monotonic() + timeout
        clients = set(range(len(self.threads)))
        while time.monotonic() < deadline and not STOP.is_set():
            seen = {a.client for a in self.snapshot() if a.ok and a.v == v}
            if seen >= clients:
                return True
            time.sleep(0.01)
        return False

    def first(self, v: int, after: float) -> float | None:
        """When the first answer with V came, after AFTER."""
        with self.lock:
            return min((a.done for a in self.answers if a.ok and a.v == v and a.done >= after),
                       default=None)


class LogWatch:
    """Lines of a log file as they are written (polled every 5 ms): the
    times at which lines holding one of MARKS' needles appear."""

    def __init__(self, path: Path, marks: dict[str, str]):
        self.path = path
        self.marks = marks
        self.seen: list[tuple[str, float]] = []
        self.stop = threading.Event()
        try:
            self.offset = path.stat().st_size
        except OSError:
            self.offset = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        partial = b""
        while not self.stop.is_set() and not STOP.is_set():
            try:
                with open(self.path, "rb") as f:
                    f.seek(self.offset)
                    chunk = f.read()
            except OSError:
                chunk = b""
            t = time.monotonic()
            if chunk:
                self.offset += len(chunk)
                *lines, partial = (partial + chunk).split(b"\n")
                for line in lines:
                    text = line.decode(errors="replace")
                    for label, needle in self.marks.items():
                        if needle in text:
                            self.seen.append((label, t))
            self.stop.wait(0.005)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        fleet.join_all([self.thread])
        return False


# --------------------------------------------------------------------------
# Rounds


@dataclass
class Round:
    n: int  # the version deployed
    new_hook_s: float | None = None
    settled_s: float | None = None  # from then on only answers from the new hook
    returned_s: float | None = None  # the deploy command's own time
    requests: int = 0
    failed: int = 0
    longest_wait: float | None = None
    longest_wait_at: tuple[float, float] | None = None  # (from, to), from t0
    stale_after_new: int = 0  # answers with the old v after the first new one
    phases: list[tuple[str, float]] = field(default_factory=list)  # (what, from t0)
    failures: list[tuple[float, float, str]] = field(default_factory=list)  # (sent, done, what)
    error: str | None = None


@dataclass
class Way:
    name: str
    router: str
    rounds: list[Round] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def measured(self):
        return [r for r in self.rounds if r.error is None]


def run_round(n: int, repo: AppRepo, port: int, clients: int, deploy) -> Round:
    """One round: the loop on, v(N) committed and pushed, DEPLOY(t0_wall,
    t0) run (it returns its phases as (what, monotonic time) pairs), the
    first answer with v(N) awaited, the loop on a little longer. A deploy
    that fails is the round's error; its requests are counted all the same."""
    rnd = Round(n)
    loop = RequestLoop(port, clients)
    loop.start()
    try:
        if not loop.wait_for(n - 1, READY_TIMEOUT):
            raise BenchError(f"round v{n}: not every client got v{n - 1} within {READY_TIMEOUT:.0f} s "
                             f"(last answers: {last_whats(loop)})")
        STOP.wait(LOOP_WARMUP)
        repo.release(n)
        t0_wall = datetime.now(timezone.utc)
        t0 = time.monotonic()
        try:
            phases = deploy(t0_wall, t0)
        except BenchError as e:
            rnd.error = str(e)
            phases = []
        returned = time.monotonic()
        rnd.returned_s = returned - t0
        rnd.phases = [(what, at - t0) for what, at in phases]
        deadline = returned + (NEW_HOOK_TIMEOUT if rnd.error is None else 0.0)
        t1 = loop.first(n, t0)
        while t1 is None and time.monotonic() < deadline and not STOP.is_set():
            time.sleep(0.01)
            t1 = loop.first(n, t0)
        left = returned + LOOP_AFTER - time.monotonic()
        if left > 0:
            STOP.wait(left)
    finally:
        loop.finish()
    answers = loop.snapshot()
    if t1 is None:
        if rnd.error is None:
            rnd.error = (f"no answer with v{n} within {NEW_HOOK_TIMEOUT:.0f} s of the deploy command "
                         f"returning (last answers: {last_whats(loop)})")
    else:
        rnd.new_hook_s = t1 - t0
        rnd.stale_after_new = sum(1 for a in answers if a.ok and a.v == n - 1 and a.sent > t1)
        not_new = [a.done for a in answers if not (a.ok and a.v == n)]
        rnd.settled_s = max([t1, *not_new]) - t0
    rnd.requests = len(answers)
    bad = [a for a in answers if not a.ok]
    rnd.failed = len(bad)
    rnd.failures = [(a.sent - t0, a.done - t0, a.what) for a in bad]
    for c in range(clients):
        oks = [a for a in answers if a.client == c and a.ok]
        for prev, cur in zip(oks, oks[1:]):
            gap = cur.done - prev.done
            if rnd.longest_wait is None or gap > rnd.longest_wait:
                rnd.longest_wait = gap
                rnd.longest_wait_at = (prev.done - t0, cur.done - t0)
    return rnd


def last_whats(loop: RequestLoop, k: int = 3) -> str:
    answers = loop.snapshot()[-k:]
    return ", ".join(f"{a.what}" + (f" v{a.v}" if a.v is not None else "") for a in answers) or "none"


def run_rounds(args, way: Way, repo: AppRepo, port: int, deploy):
    for i in range(args.rounds):
        if STOP.is_set():
            break
        n = i + 2
        log(f"{way.name}: round {i + 1}/{args.rounds}: v{n}")
        rnd = run_round(n, repo, port, args.clients, deploy)
        way.rounds.append(rnd)
        if rnd.error:
            log(f"{way.name}: round {i + 1}: {rnd.error}")
            way.errors.append(f"round {i + 1} (v{n}): {rnd.error}")
            break
        log(f"{way.name}: round {i + 1}: new hook after {rnd.new_hook_s:.3f} s, "
            f"{rnd.requests} requests, {rnd.failed} failed, longest wait {rnd.longest_wait or 0:.3f} s")


# --------------------------------------------------------------------------
# pockestrator


class Daemon:
    def __init__(self, root: Path, work: Path, allow: Path, builds: Path):
        self.root = root
        self.stderr_path = root.parent / f"{root.name}.stderr"
        root.mkdir(parents=True)
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [
                    str(POCKESTRATOR), "--data-dir", str(root), "serve",
                    "--listen", f"{LOOPBACK}:0",
                    "--proxy-listen", f"{LOOPBACK}:0",
                    "--release-source", str(MIRROR),
                    "--git-allow-dir", str(allow),
                    "--build-dir", str(builds),
                ],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True, cwd=str(work),
                env=dict(os.environ, POCKESTRATOR_LOG="info"),
            )
        try:
            lines = read_lines_until(self.stderr_path, self.proc, {
                "proxy": lambda l: "pockestrator: proxy on http://" in l,
                "ready": lambda l: "pockestrator is ready" in l,
            }, DAEMON_READY_TIMEOUT)
        except BenchError as e:
            raise BenchError(f"the daemon {e}") from None
        addr = lines["proxy"].split("http://", 1)[1].split()[0]
        self.proxy_port = int(addr.rsplit(":", 1)[1])

    def run(self, *args, timeout=CLI_TIMEOUT) -> subprocess.CompletedProcess:
        cmd = [str(POCKESTRATOR), "--data-dir", str(self.root), *args]
        try:
            return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"`pockestrator {' '.join(args)}` did not finish within {timeout:.0f} s") from None

    def cli(self, *args, timeout=CLI_TIMEOUT):
        """`pockestrator --data-dir ROOT ARGS… --json`: its JSON answer."""
        r = self.run(*args, "--json", timeout=timeout)
        if r.returncode != 0:
            raise BenchError(f"`pockestrator {' '.join(args)}` exited with {r.returncode}: "
                             f"{short((r.stderr or r.stdout).strip())}")
        try:
            return json.loads(r.stdout) if r.stdout.strip() else None
        except ValueError:
            return r.stdout

    def deploy(self, *args) -> str:
        """`pockestrator deploy app ARGS…`: its log (stderr)."""
        r = self.run("deploy", INSTANCE, *args, timeout=DEPLOY_TIMEOUT)
        if r.returncode != 0:
            raise BenchError(f"`pockestrator deploy {INSTANCE} {' '.join(args)}` exited with "
                             f"{r.returncode}:\n{r.stderr.strip()}\n{r.stdout.strip()}")
        return r.stderr

    def shutdown(self, notes: list[str]):
        """Stop the instance (it outlives the daemon by design), then the
        daemon, then whatever else still runs under the daemon's data dir."""
        with signals_ignored():
            if self.proc.poll() is None:
                try:
                    self.cli("stop", INSTANCE, timeout=60.0)
                except BenchError as e:
                    if "not found" not in str(e).lower() and "does not exist" not in str(e).lower():
                        notes.append(f"stop {INSTANCE} at the end: {e}")
            if not wait_exit(self.proc, signal.SIGTERM, 10.0):
                notes.append("the daemon did not exit within 10 s of SIGTERM; killed")
                wait_exit(self.proc, signal.SIGKILL, 5.0)
            left = reap(self.root)
            if left:
                notes.append(f"could not kill pids {left}")


def log_phases(text: str, t0_wall: datetime, t0: float) -> list[tuple[str, float]]:
    """The deploy log's `[HH:MM:SS.mmm] text` lines as (text, monotonic time)
    pairs (the daemon stamps them in UTC); a line printed twice counts once."""
    out = []
    for line in dict.fromkeys(text.splitlines()):
        if not (line.startswith("[") and "] " in line):
            continue
        stamp, what = line[1:].split("] ", 1)
        try:
            t = datetime.strptime(stamp, "%H:%M:%S.%f").time()
        except ValueError:
            continue
        at = datetime.combine(t0_wall.date(), t, tzinfo=timezone.utc)
        delta = (at - t0_wall).total_seconds()
        if delta < -43200:  # past midnight
            delta += 86400
        elif delta > 43200:
            delta -= 86400
        out.append((deploy_label(what), t0 + delta))
    return out


def repeated_lines(text: str) -> list[str]:
    seen, again = set(), []
    for line in text.splitlines():
        if line in seen and line.startswith("["):
            again.append(line)
        seen.add(line)
    return again


def healthy_pid(text: str) -> int | None:
    """The pid in the deploy log's last `healthy (pid N)` line."""
    pid = None
    for line in text.splitlines():
        if "] healthy (pid " in line:
            try:
                pid = int(line.split("] healthy (pid ", 1)[1].split(")", 1)[0])
            except ValueError:
                pass
    return pid


class ExitWatch:
    """When a process exits (polled every 2 ms)."""

    def __init__(self, pid: int | None):
        st = fleet.proc_stat(pid) if pid else None
        self.pid = pid
        self.starttime = st[1] if st else None
        self.exited = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        if self.starttime is None:
            return
        while not self.stop.is_set() and not STOP.is_set():
            if not fleet.alive(self.pid, self.starttime):
                self.exited = time.monotonic()
                return
            self.stop.wait(0.002)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        fleet.join_all([self.thread])
        return False


def deploy_label(what: str) -> str:
    """A deploy log line, shortened for the report (no paths)."""
    if what.startswith("fetching "):
        return what.split(" from ", 1)[0]
    if what.startswith("commit "):
        return what[:19]
    if what.startswith("switching"):
        return "switching (requests held)"
    if what.startswith("backup of pb_data"):
        return "pb_data backed up"
    if what.startswith("healthy"):
        return "healthy (held requests go on)"
    if what.startswith("succeeded"):
        return "succeeded"
    return what


def run_pockestrator(args, work: Path, ports: list[int], binary: Path, way: Way):
    root = work / "pockestrator"
    allow = work / "repos"
    repo = AppRepo(work / "src-pockestrator", allow / "pockestrator.git")
    repo.release(1)
    # Build workspaces under the work dir too, not in the host's shared
    # default; a daemon running as root builds as `nobody`, who must be
    # able to pass through (not list) the work dir to reach them.
    builds = work / "builds"
    if os.geteuid() == 0:
        os.chmod(work, 0o711)
    daemon = None
    try:
        log("pockestrator: starting the daemon")
        daemon = Daemon(root, work, allow, builds)
        way.router = f"embedded proxy on 127.0.0.1:{daemon.proxy_port}"
        created = daemon.cli("create", INSTANCE, "--version", args.version, "--port", str(ports[0]),
                             timeout=CREATE_TIMEOUT)
        installed = Path(created["binary"]) if isinstance(created, dict) and created.get("binary") else None
        if installed and installed.is_file():
            same = sha256(installed) == sha256(binary)
            way.notes.append(
                f"runs its installed copy of PocketBase {args.version} ({installed.relative_to(work)}), "
                + ("byte-identical to the binary supervisord runs" if same
                   else "WHICH DIFFERS from the binary supervisord runs"))
        else:
            way.notes.append(f"create did not name its binary: {short(created)}")
        log(f"pockestrator: deploy {INSTANCE} --repo file://…/{repo.bare.name} (v1)")
        t = time.monotonic()
        text = daemon.deploy("--repo", repo.url, "--branch", BRANCH)
        way.notes.append(f"first deploy (v1, --repo) took {time.monotonic() - t:.2f} s")
        serving = {"pid": healthy_pid(text)}

        def deploy(t0_wall, t0):
            # The old PocketBase's exit splits the switch into its stop and
            # the pre-deploy backup.
            with ExitWatch(serving["pid"]) as old:
                text = daemon.deploy()
                STOP.wait(0.01)
            serving["pid"] = healthy_pid(text)
            for line in repeated_lines(text):
                way.notes.append(f"round {len(way.rounds) + 1}: the deploy log as `pockestrator deploy` "
                                 f"printed it holds this line twice: {short(line, 120)}")
            phases = log_phases(text, t0_wall, t0)
            if old.exited is not None:
                phases.append(("old PocketBase exited", old.exited))
            return phases

        run_rounds(args, way, repo, daemon.proxy_port, deploy)
        split = switch_split(way.measured)
        if split:
            way.notes.append(split)
        status = daemon.cli("status", INSTANCE)
        if isinstance(status, dict) and status.get("restarts"):
            way.notes.append(f"the instance's record counts {status['restarts']} restarts (crashes)")
    finally:
        if daemon is not None:
            daemon.shutdown(way.errors)


def switch_split(rounds: list[Round]) -> str | None:
    """Where the hold goes, from the deploy logs' times (medians)."""
    spans = {"stop": [], "backup": [], "start": [], "hold": [], "tail": []}
    for r in rounds:
        at = {}
        for what, t in r.phases:
            at.setdefault(what, t)
        held = at.get("switching (requests held)")
        exited = at.get("old PocketBase exited")
        backed = at.get("pb_data backed up")
        up = at.get("healthy (held requests go on)")
        done = at.get("succeeded")
        if held is not None and up is not None:
            spans["hold"].append(up - held)
        if held is not None and exited is not None:
            spans["stop"].append(exited - held)
        if exited is not None and backed is not None:
            spans["backup"].append(backed - exited)
        if backed is not None and up is not None:
            spans["start"].append(up - backed)
        if done is not None and r.returned_s is not None:
            spans["tail"].append(r.returned_s - done)
    if not spans["hold"]:
        return None
    m = {k: median(v) for k, v in spans.items()}
    return (f"medians: requests held {fmt_s(m['hold'])} (stopping the old PocketBase {fmt_s(m['stop'])}, "
            f"the pre-deploy backup {fmt_s(m['backup'])}, the new one started until healthy "
            f"{fmt_s(m['start'])}); `pockestrator deploy` returned {fmt_s(m['tail'])} after the log's "
            f"`succeeded` line")


# --------------------------------------------------------------------------
# seed 003: supervisord and Caddy


def supervisord_conf(sdir: Path, binary: Path, clone: Path, data: Path, port: int) -> str:
    command = [
        str(binary), "serve", f"--http={LOOPBACK}:{port}", f"--dir={data}",
        f"--hooksDir={clone}/pb_hooks", f"--migrationsDir={clone}/pb_migrations",
        f"--publicDir={clone}/pb_public",
    ]
    return "\n".join([
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
        f"[program:{INSTANCE}]",
        "command=" + " ".join(shlex.quote(c) for c in command).replace("%", "%%"),
        f"directory={clone}",
        "autostart=true",
        "autorestart=true",
        "startsecs=1",
        "stopsignal=TERM",
        "stopwaitsecs=10",
        f"stdout_logfile={sdir}/logs/pocketbase.log",
        "redirect_stderr=true",
        "",
    ])


def caddyfile(port: int, upstream: int) -> str:
    # Seed 003's site block (its upstream `localhost:PORT` written as
    # 127.0.0.1:PORT, where PocketBase listens), on a plain-HTTP loopback
    # port, with no admin endpoint.
    return "\n".join([
        "{",
        "\tadmin off",
        "\tauto_https off",
        "\tpersist_config off",
        "\tdefault_bind 127.0.0.1",
        "}",
        "",
        f"http://{HOST}:{port} {{",
        f"\treverse_proxy {LOOPBACK}:{upstream}",
        "}",
        "",
    ])


def run_seed(args, work: Path, ports: list[int], binary: Path, way: Way):
    sdir = work / "supervisord"
    (sdir / "logs").mkdir(parents=True)
    pb_port, caddy_port = ports
    repo = AppRepo(work / "src-seed", work / "repos" / "seed.git")
    repo.release(1)
    clone = sdir / "app"
    git("clone", "-q", "--branch", BRANCH, repo.url, str(clone), cwd=sdir)
    data = sdir / "pb_data"
    # A superuser first, as an installed app has one (and so PocketBase
    # does not try to open its installer in a browser).
    r = subprocess.run([str(binary), "superuser", "upsert", EMAIL, "bench-password-0123",
                        f"--dir={data}", f"--migrationsDir={clone}/pb_migrations",
                        f"--hooksDir={clone}/pb_hooks"],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=CLI_TIMEOUT,
                       cwd=str(clone))
    if r.returncode != 0:
        raise BenchError(f"superuser upsert: exit {r.returncode}: {short((r.stderr or r.stdout).strip())}")
    conf = sdir / "supervisord.conf"
    conf.write_text(supervisord_conf(sdir, binary, clone, data, pb_port))
    cfile = sdir / "Caddyfile"
    cfile.write_text(caddyfile(caddy_port, pb_port))
    way.router = f"Caddy on 127.0.0.1:{caddy_port}"

    def ctl(*cmd, timeout=CTL_TIMEOUT):
        try:
            return subprocess.run(["supervisorctl", "-c", str(conf), *cmd],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"`supervisorctl {' '.join(cmd)}` did not finish within {timeout:.0f} s") from None

    sv = caddy = None
    try:
        log("seed 003: starting supervisord")
        with open(sdir / "supervisord.out", "wb") as out:
            sv = subprocess.Popen(["supervisord", "-c", str(conf)],
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True, cwd=str(sdir))
        deadline = time.monotonic() + READY_TIMEOUT
        while not healthy(pb_port) and time.monotonic() < deadline and not STOP.is_set():
            if sv.poll() is not None:
                raise BenchError(f"supervisord exited with {sv.returncode}:\n{tail(sdir / 'supervisord.out')}")
            time.sleep(0.05)
        if not healthy(pb_port):
            raise BenchError(f"PocketBase under supervisord not healthy within {READY_TIMEOUT:.0f} s:\n"
                             f"{tail(sdir / 'logs' / 'pocketbase.log')}")
        # Running as supervisord counts it (startsecs) before the first round.
        while time.monotonic() < deadline and not STOP.is_set():
            words = ctl("status", INSTANCE).stdout.split()
            if len(words) >= 2 and words[1] == "RUNNING":
                break
            time.sleep(0.1)
        else:
            raise BenchError(f"supervisord did not report {INSTANCE} RUNNING within {READY_TIMEOUT:.0f} s")
        log("seed 003: starting Caddy")
        caddy_env = dict(os.environ, HOME=str(sdir), XDG_CONFIG_HOME=str(sdir / "caddy-config"),
                         XDG_DATA_HOME=str(sdir / "caddy-data"))
        with open(sdir / "caddy.log", "wb") as out:
            caddy = subprocess.Popen([str(CADDY), "run", "--config", str(cfile), "--adapter", "caddyfile"],
                                     stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=str(sdir), env=caddy_env)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and not STOP.is_set():
            if caddy.poll() is not None:
                raise BenchError(f"caddy exited with {caddy.returncode}:\n{tail(sdir / 'caddy.log')}")
            try:
                status, body = http_request(caddy_port, "GET", "/hello", headers={"Host": HOST}, timeout=1.0)
                if status == 200 and json.loads(body).get("v") == 1:
                    break
            except (OSError, http.client.HTTPException, ValueError):
                pass
            time.sleep(0.05)
        else:
            raise BenchError(f"v1 not served through Caddy within {READY_TIMEOUT:.0f} s:\n{tail(sdir / 'caddy.log')}")

        pb_log = sdir / "logs" / "pocketbase.log"

        def deploy(_t0_wall, _t0):
            # PocketBase's own output says when its hooks watcher restarts
            # it and when a server is up again (those lines are all it has).
            with LogWatch(pb_log, {
                "PocketBase: hooks changed, restarting": "changed, restarting",
                "PocketBase: server started": "Server started at",
            }) as watch, LogWatch(sdir / "supervisord.log", {
                f"supervisord: waiting for {INSTANCE} to stop": f"waiting for {INSTANCE} to stop",
                f"supervisord: {INSTANCE} stopped": f"stopped: {INSTANCE} ",
                f"supervisord: {INSTANCE} spawned": f"spawned: '{INSTANCE}'",
                f"supervisord: {INSTANCE} RUNNING": "entered RUNNING state",
            }) as sv_watch:
                phases = [("git fetch origin && git reset --hard origin/main", time.monotonic())]
                git("fetch", "-q", "origin", cwd=clone)
                git("reset", "-q", "--hard", f"origin/{BRANCH}", cwd=clone)
                phases.append((f"supervisorctl restart {INSTANCE}", time.monotonic()))
                r = ctl("restart", INSTANCE)
                if r.returncode != 0 or "started" not in r.stdout:
                    raise BenchError(f"supervisorctl restart {INSTANCE}: exit {r.returncode}: "
                                     f"{short((r.stdout + r.stderr).strip())}")
                phases.append(("supervisorctl returned", time.monotonic()))
                STOP.wait(0.05)
            return phases + watch.seen + sv_watch.seen

        run_rounds(args, way, repo, caddy_port, deploy)
        restarts = watcher_restarts(sdir / "logs" / "pocketbase.log")
        if restarts:
            way.notes.append(f"PocketBase's log shows {restarts} restarts by its own hooks watcher")
    finally:
        with signals_ignored():
            if caddy is not None and not wait_exit(caddy, signal.SIGTERM, 10.0):
                way.errors.append("caddy did not exit within 10 s of SIGTERM; killed")
                wait_exit(caddy, signal.SIGKILL, 5.0)
            if sv is not None and not wait_exit(sv, signal.SIGTERM, 30.0):
                way.errors.append("supervisord did not exit within 30 s of SIGTERM; killed")
            left = reap(sdir)
            if left:
                way.errors.append(f"could not kill pids {left}")


def watcher_restarts(path: Path) -> int:
    try:
        text = path.read_text(errors="replace").lower()
    except OSError:
        return 0
    return text.count("restarting")


# --------------------------------------------------------------------------
# Report


def median(xs):
    return statistics.median(xs) if xs else None


def fmt_s(v, digits=3):
    return "-" if v is None else f"{v:.{digits}f} s"


def describe_failures(rnd: Round, limit=6) -> list[str]:
    """The failures of a round, grouped by what they were and by phase."""
    if not rnd.failures:
        return []
    bounds = sorted(rnd.phases, key=lambda p: p[1])

    def phase_of(t):
        name = "(before the deploy call)"
        for what, at in bounds:
            if at <= t:
                name = what
        return name

    groups: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for sent, done, what in sorted(rnd.failures):
        kind = what.split(":", 1)[0] if not what.startswith("HTTP") else what
        groups.setdefault((phase_of(sent), kind), []).append((sent, done))
    out = []
    for (phase, kind), items in sorted(groups.items(), key=lambda kv: kv[1][0][0])[:limit]:
        out.append(f"{len(items)} × {kind}, sent from {items[0][0]:+.3f} s to {items[-1][0]:+.3f} s "
                   f"(answered by {max(d for _, d in items):+.3f} s), after: {phase}")
    examples = sorted({w for _, _, w in rnd.failures})[:3]
    out.append("e.g. " + " | ".join(short(e, 120) for e in examples))
    return out


def report(args, ways: list[Way], binary: Path):
    head = ("way", "router", "rounds", "time to new hook median", "max", "settled median",
            "requests", "failed total", "failed per switch max", "longest wait median",
            "longest wait max")
    rows = [head]
    for w in ways:
        ms = w.measured
        hooks = [r.new_hook_s for r in ms]
        settled = [r.settled_s for r in ms]
        waits = [r.longest_wait for r in ms if r.longest_wait is not None]
        rows.append((
            w.name, w.router or "-", f"{len(ms)}/{args.rounds}",
            fmt_s(median(hooks)), fmt_s(max(hooks, default=None)), fmt_s(median(settled)),
            str(sum(r.requests for r in w.rounds)), str(sum(r.failed for r in w.rounds)),
            str(max((r.failed for r in w.rounds), default=0)) if w.rounds else "-",
            fmt_s(median(waits)), fmt_s(max(waits, default=None)),
        ))

    def line(r):
        return "| " + " | ".join(r) + " |"

    pb_version = (fleet.command_output([str(binary), "--version"]).split() or [args.version])[-1]
    sv_version = fleet.command_output(["supervisord", "--version"]) or "?"
    caddy_version = (fleet.command_output([str(CADDY), "version"]).split() or ["?"])[0]
    git_version = fleet.command_output(["git", "--version"]).removeprefix("git version ") or "?"
    out = [
        "",
        "Pockestrator deploy benchmark",
        f"  machine       {fleet.machine()}",
        f"  PocketBase    {pb_version} ({binary.relative_to(REPO)}, sha256 {sha256(binary)[:16]}…)",
        f"  pockestrator  commit {fleet.git_commit()}, {POCKESTRATOR.relative_to(REPO)}",
        f"  seed 003      supervisord {sv_version}, Caddy {caddy_version}, git {git_version}",
        f"  load          {args.clients} clients, back-to-back GET /hello on keep-alive connections "
        f"with Host: {HOST}; {args.rounds} redeploys each changing the hook",
        "",
        line(head),
        line(tuple("---" if i < 3 else "---:" for i in range(len(head)))),
        *(line(r) for r in rows[1:]),
        "",
        "time to new hook: from the deploy call (`pockestrator deploy app`; for seed 003 the",
        "git fetch + reset --hard in the clone, then `supervisorctl restart app`) to the first",
        "answer from the new hook; settled: from the call to the last answer that was not from",
        "the new hook (failed or old). failed: answers other than a 200 with a v, and connection or",
        "read errors, from the loop's start (before the push) to its end (2 s after the deploy",
        "command returned). longest wait: the longest time between two answers one client got.",
        "Seed 003's PocketBase keeps its default --hooksWatch: the reset's change to pb_hooks makes",
        "it restart itself at once (its first new answers), then `supervisorctl restart` stops and",
        "starts it once more. Times in the rounds below are from the deploy call.",
    ]
    goal = []
    for w in ways:
        total = sum(r.failed for r in w.rounds)
        if not w.measured:
            goal.append(f"{w.name}: not measured")
        else:
            goal.append(f"{w.name}: {'met' if total == 0 and not w.errors else 'NOT MET'} "
                        f"({total} failed of {sum(r.requests for r in w.rounds)} requests "
                        f"over {len(w.rounds)} switches)")
    out += ["", "Goal, 0 failed requests during a switch: " + "; ".join(goal) + "."]
    for w in ways:
        out.append("")
        out.append(f"{w.name}:")
        out += [f"  {n}" for n in w.notes]
        for i, r in enumerate(w.rounds):
            phases = ", ".join(f"{what} {at:+.3f} s" for what, at in sorted(r.phases, key=lambda p: p[1])
                               if short_phase(what))
            wait = ("" if r.longest_wait_at is None
                    else f", longest wait {r.longest_wait:.3f} s ({r.longest_wait_at[0]:+.3f} → "
                         f"{r.longest_wait_at[1]:+.3f} s)")
            out.append(f"  round {i + 1} (v{r.n}): new hook {fmt_s(r.new_hook_s)}, settled "
                       f"{fmt_s(r.settled_s)}, command returned "
                       f"{fmt_s(r.returned_s)}, {r.requests} requests, {r.failed} failed{wait}"
                       + (f", {r.stale_after_new} answers with the old v after the first new one"
                          if r.stale_after_new else ""))
            if phases:
                out.append(f"    timeline from the call: {phases}")
            out += [f"    failed: {d}" for d in describe_failures(r)]
        out += [f"  ERROR: {e}" for e in w.errors]
    print("\n".join(out), flush=True)


def short_phase(what: str) -> bool:
    keep = ("fetching", "commit", "assembling", "switching", "pb_data", "healthy", "succeeded", "old",
            "git fetch", "supervisorctl", "PocketBase", "supervisord")
    return what.startswith(keep)


# --------------------------------------------------------------------------


def on_signal(signum, _frame):
    STOP.set()
    raise Interrupted(signal.Signals(signum).name)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="scripts/bench-deploy",
        description="Benchmark `pockestrator deploy` against seed 003's deploys (git reset in place, "
        "supervisorctl restart, behind Caddy) under a request loop: time to the new hook and "
        "failed requests. Prints figures; never fails on timings.",
    )
    p.add_argument("--rounds", type=int, default=5, metavar="N", help="redeploys per way (default 5)")
    p.add_argument("--clients", type=int, default=4, metavar="N",
                   help="client threads of the request loop (default 4)")
    p.add_argument("--version", default="0.40.6", metavar="X.Y.Z",
                   help="PocketBase version (0.23 or later), one of the pinned binaries in "
                   ".cache/deps (default 0.40.6)")
    p.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--reap", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.reap is None:
        if a.workdir is None:
            p.error("run it through scripts/bench-deploy (it passes --workdir)")
        if not 1 <= a.rounds <= 100:
            p.error("--rounds must be between 1 and 100")
        if not 1 <= a.clients <= 64:
            p.error("--clients must be between 1 and 64")
    return a


def reap_all(work: Path):
    """Whatever a harness killed outright left behind: the daemon's
    instance stopped through it first, then every process under WORK."""
    root = work / "pockestrator"
    if (root / "pockestrator.sock").exists() and processes_under(root):
        subprocess.run([str(POCKESTRATOR), "--data-dir", str(root), "stop", INSTANCE],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    left = reap(work)
    if left:
        log(f"could not kill pids {left}")


def main(argv) -> int:
    args = parse_args(argv)
    if args.reap is not None:
        try:
            reap_all(args.reap.resolve())
        except (OSError, subprocess.TimeoutExpired):
            reap(args.reap.resolve())
        return 0
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    try:
        fleet.LOADAVG_AT_START = Path("/proc/loadavg").read_text().split()[0]
    except (OSError, IndexError):
        pass
    work = args.workdir.resolve()
    binary = DEPS / f"pocketbase-{args.version}"
    for what, path in (("PocketBase binary", binary), ("Caddy", CADDY), ("pockestrator", POCKESTRATOR)):
        if not path.is_file():
            log(f"no {what} at {path}" + (": run cargo build --release" if what == "pockestrator" else ""))
            return 2
    for tool in ("supervisord", "supervisorctl", "git"):
        if not shutil.which(tool):
            log(f"{tool} not found" + (": apt-get install supervisor" if tool != "git" else ""))
            return 2
    if len(str(work / "pockestrator" / "pockestrator.sock")) > 100:
        log(f"the work dir {work} is too deep for a unix socket path; set TMPDIR to a shorter dir")
        return 2

    pk = Way("pockestrator deploy", "")
    sd = Way("seed 003 (git reset + supervisorctl restart)", "")
    try:
        ports = free_ports(3, PORT_BASE, set())
        try:
            run_pockestrator(args, work, ports[:1], binary, pk)
        except BenchError as e:
            pk.errors.append(str(e))
        except Exception as e:  # noqa: BLE001 - reported, and the other way still runs
            pk.errors.append(f"{type(e).__name__}: {e}")
        # Never both at once: the first must be entirely gone.
        left = processes_under(work / "pockestrator")
        if left:
            sd.errors.append(f"not run: processes of the pockestrator run are still alive ({left})")
        elif not STOP.is_set():
            try:
                run_seed(args, work, ports[1:], binary, sd)
            except BenchError as e:
                sd.errors.append(str(e))
            except Exception as e:  # noqa: BLE001 - reported with the figures
                sd.errors.append(f"{type(e).__name__}: {e}")
    except Interrupted as e:
        log(f"interrupted ({e}); everything started was stopped")
        return 130
    except BaseException:
        STOP.set()
        raise
    finally:
        with signals_ignored():
            reap_all(work)
    report(args, [pk, sd], binary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
