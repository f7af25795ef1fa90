#!/usr/bin/env python3
"""Backup benchmark: pockestrator's backups against PocketBase's own, under
a steady write load.

Run it through `scripts/bench-backup`, which fetches the pinned PocketBase
binaries, builds pockestrator in release mode and then calls this file with
a fresh work directory.

For each data.db size (default 100 MB and 1000 MB, MB = 10^6 bytes), with a
daemon and one instance of its own:

  fill         a collection `items` (text field `body`, public create rule)
               is filled to the size by writing rows straight into the
               stopped instance's data.db; PocketBase must then list them;
  write load   threads POST small records to the instance's port at a
               steady pace and record each request's latency (send to
               response); it runs through both backups;
  backups      `pockestrator backup create NAME --json`, then PocketBase's
               own `POST /api/backups` with the superuser's token: wall time,
               archive size, writes/s, the median write latency and the
               longest write (the stall) during each backup, against the
               same figures under the load alone just before;
  restore      with the load stopped, `pockestrator backup restore NAME ID
               --json` (it answers once PocketBase is healthy again): wall
               time, how long /api/health did not answer, and whether the
               restored record count fits the backup's window.

This is a benchmark, not a test: it prints figures and never fails on them.
All traffic stays on 127.0.0.1, every wait is bounded, and every process it
starts is stopped again, also on failure and Ctrl-C. Python 3 stdlib only;
it shares its process and HTTP helpers with benches/fleet.py.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import string
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in the tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fleet  # noqa: E402 - the sibling benchmark's helpers
from fleet import (  # noqa: E402
    LOOPBACK, MIRROR, POCKESTRATOR, REPO, BenchError, Interrupted, healthy,
    http_request, processes_under, read_lines_until, reap, short, signals_ignored,
    wait_exit,
)

DEPS = REPO / ".cache" / "deps"
INSTANCE = "bench"
EMAIL = "bench@example.com"
PORT_BASE = 25100

# Bounds on every wait.
DAEMON_READY_TIMEOUT = 30.0
CREATE_TIMEOUT = 300.0
CLI_TIMEOUT = 120.0
COUNT_TIMEOUT = 300.0
BACKUP_TIMEOUT = 1800.0
RESTORE_TIMEOUT = 1800.0
WRITE_TIMEOUT = 1800.0  # one write may wait as long as a backup blocks it
LOAD_HARD_LIMIT = 3600.0  # the load stops by itself after this long

BODY_CHARS = 4096  # per row written by the fill
FILL_BATCH_ROWS = 2500  # rows per transaction (about 10 MB)

STOP = fleet.STOP  # one flag for both modules' waits


def log(msg: str) -> None:
    print(f"bench-backup: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# The daemon, its CLI and the instance


class Daemon:
    def __init__(self, root: Path, work: Path):
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
                ],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True, cwd=str(work),
                env=dict(os.environ, POCKESTRATOR_LOG="info"),
            )
        try:
            read_lines_until(self.stderr_path, self.proc, {
                "ready": lambda l: "pockestrator is ready" in l,
            }, DAEMON_READY_TIMEOUT)
        except BenchError as e:
            raise BenchError(f"the daemon {e}") from None

    def cli(self, *args, timeout=CLI_TIMEOUT):
        """Run `pockestrator --data-dir ROOT ARGS… --json`; its JSON answer."""
        cmd = [str(POCKESTRATOR), "--data-dir", str(self.root), *args, "--json"]
        try:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"`pockestrator {' '.join(args)}` did not answer within {timeout:.0f} s") from None
        if r.returncode != 0:
            raise BenchError(f"`pockestrator {' '.join(args)}` exited with {r.returncode}: "
                             f"{short((r.stderr or r.stdout).strip())}")
        try:
            return json.loads(r.stdout) if r.stdout.strip() else None
        except ValueError:
            return r.stdout

    def shutdown(self, notes: list[str]):
        """Stop the instance (it outlives the daemon by design), then the
        daemon, then whatever else still runs under the daemon's data dir."""
        with signals_ignored():
            if self.proc.poll() is None:
                try:
                    self.cli("stop", INSTANCE, timeout=60.0)
                except BenchError as e:
                    if "not found" not in str(e).lower():
                        notes.append(f"stop {INSTANCE} at the end: {e}")
            if not wait_exit(self.proc, signal.SIGTERM, 10.0):
                notes.append("the daemon did not exit within 10 s of SIGTERM; killed")
                wait_exit(self.proc, signal.SIGKILL, 5.0)
            left = reap(self.root)
            if left:
                notes.append(f"could not kill pids {left}")


class Pb:
    """One PocketBase instance's HTTP API, with the superuser's token."""

    def __init__(self, port: int):
        self.port = port
        self.token = ""

    def call(self, method, path, body=None, timeout=30.0, auth=True):
        headers = {"Accept": "application/json"}
        if auth and self.token:
            headers["Authorization"] = self.token
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

    def login(self, password: str):
        status, body = self.call("POST", "/api/collections/_superusers/auth-with-password",
                                 {"identity": EMAIL, "password": password}, auth=False)
        if status != 200 or not isinstance(body, dict) or "token" not in body:
            raise BenchError(f"superuser login: HTTP {status}: {short(body)}")
        self.token = body["token"]

    def count(self, timeout=COUNT_TIMEOUT) -> int:
        status, body = self.call("GET", "/api/collections/items/records?perPage=1&fields=id",
                                 timeout=timeout)
        if status != 200 or not isinstance(body, dict):
            raise BenchError(f"list items: HTTP {status}: {short(body)}")
        return int(body["totalItems"])


def wait_healthy(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not STOP.is_set():
        if healthy(port):
            return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------
# Filling data.db


ID_CHARS = string.ascii_lowercase + string.digits


def fill(db_path: Path, target_bytes: int) -> tuple[int, float]:
    """Write rows into `items` until data.db holds TARGET_BYTES. Returns
    (rows written, seconds)."""
    t0 = time.monotonic()
    conn = sqlite3.connect(str(db_path), isolation_level=None, timeout=30.0)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        cols = conn.execute("PRAGMA table_info(items)").fetchall()
        if not cols:
            raise BenchError("data.db has no table items")
        # (cid, name, type, notnull, dflt_value, pk)
        names = [c[1] for c in cols]
        for needed in ("id", "body"):
            if needed not in names:
                raise BenchError(f"items has no column {needed} (columns: {', '.join(names)})")
        insert = ["id", "body"]
        for c in cols:
            if c[1] in ("created", "updated"):
                insert.append(c[1])
            elif c[1] not in insert and c[3] and c[4] is None:
                raise BenchError(f"items.{c[1]} is NOT NULL without a default; the fill cannot set it")
        sql = f"INSERT INTO items ({', '.join(insert)}) VALUES ({', '.join('?' * len(insert))})"
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        rng = random.Random(11)
        # Base64 of random bytes, cut into words: text that zips about 3:4.
        raw_len = BODY_CHARS * 3 // 4
        rows = 0
        while True:
            if STOP.is_set():
                raise BenchError("interrupted during the fill")
            size = conn.execute("PRAGMA page_count").fetchone()[0] * page_size
            if size >= target_bytes:
                break
            now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.") + "000Z"
            blob = base64.b64encode(os.urandom(raw_len * FILL_BATCH_ROWS)).decode()
            batch = []
            for i in range(FILL_BATCH_ROWS):
                body = blob[i * BODY_CHARS:(i + 1) * BODY_CHARS].replace("+", " ")
                rid = "".join(rng.choices(ID_CHARS, k=15))
                row = [rid, body]
                row += [now] * (len(insert) - 2)
                batch.append(row)
            conn.execute("BEGIN")
            conn.executemany(sql.replace("INSERT", "INSERT OR IGNORE", 1), batch)
            conn.execute("COMMIT")
            rows += len(batch)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return rows, time.monotonic() - t0


# --------------------------------------------------------------------------
# The write load


@dataclass
class Write:
    sent: float
    done: float
    ok: bool

    @property
    def latency(self):
        return self.done - self.sent


class WriteLoad:
    """THREADS threads, each POSTing one small record every 1/RATE s
    (a late write is followed by the next one at once, with no catch-up
    burst), each on its own keep-alive connection to the instance."""

    def __init__(self, port: int, threads: int, rate: float):
        self.port = port
        self.interval = threads / rate
        self.writes: list[Write] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True)
                        for i in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        fleet.join_all(self.threads)

    def run(self, n: int):
        rng = random.Random(n)
        conn = None
        started = time.monotonic()
        next_at = started + rng.random() * self.interval
        i = 0
        while not self.stop.is_set() and not STOP.is_set():
            now = time.monotonic()
            if now - started > LOAD_HARD_LIMIT:
                break
            if next_at > now:
                self.stop.wait(next_at - now)
                continue
            body = json.dumps({"body": f"load {n}-{i} " + "".join(rng.choices(ID_CHARS, k=200))}).encode()
            i += 1
            if conn is None:
                conn = http.client.HTTPConnection(LOOPBACK, self.port, timeout=WRITE_TIMEOUT)
            sent = time.monotonic()
            ok = False
            try:
                conn.request("POST", "/api/collections/items/records", body=body,
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                raw = resp.read()
                ok = resp.status == 200
                if not ok:
                    self.note(f"HTTP {resp.status}: {short(raw.decode(errors='replace'), 200)}")
            except (OSError, http.client.HTTPException) as e:
                self.note(f"{type(e).__name__}: {e}")
                conn.close()
                conn = None
            done = time.monotonic()
            with self.lock:
                self.writes.append(Write(sent, done, ok))
            next_at = max(next_at + self.interval, done)
        if conn is not None:
            conn.close()

    def note(self, msg):
        with self.lock:
            if len(self.errors) < 5:
                self.errors.append(msg)

    def window(self, t0: float, t1: float) -> dict:
        """The writes that overlap [T0, T1]: rate of those done in it, the
        median and the longest latency, failures."""
        with self.lock:
            over = [w for w in self.writes if w.sent < t1 and w.done > t0]
        done_in = [w for w in over if t0 <= w.done <= t1 and w.ok]
        lat = [w.latency for w in over]
        worst = max(over, key=lambda w: w.latency, default=None)
        return {
            # When the longest write was sent, from T0 (negative: before).
            "longest_at": None if worst is None else worst.sent - t0,
            "rate": len(done_in) / (t1 - t0) if t1 > t0 else None,
            "median": statistics.median(lat) if lat else None,
            "longest": max(lat) if lat else None,
            "failed": sum(1 for w in over if not w.ok),
            "n": len(over),
        }

    def ok_done_before(self, t: float) -> int:
        with self.lock:
            return sum(1 for w in self.writes if w.ok and w.done < t)

    def ok_sent_before(self, t: float) -> int:
        with self.lock:
            return sum(1 for w in self.writes if w.ok and w.sent < t)


class HealthWatch:
    """Probe /api/health every few ms; the longest run of failed probes."""

    def __init__(self, port: int):
        self.port = port
        self.stop = threading.Event()
        self.longest = 0.0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        down_since = None
        while not self.stop.is_set() and not STOP.is_set():
            t = time.monotonic()
            if healthy(self.port, timeout=0.5):
                if down_since is not None:
                    self.longest = max(self.longest, t - down_since)
                    down_since = None
            elif down_since is None:
                down_since = t
            self.stop.wait(0.02)
        if down_since is not None:
            self.longest = max(self.longest, time.monotonic() - down_since)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        fleet.join_all([self.thread])
        return False


class PhaseWatch:
    """Watch the backup directory while `backup create` runs, to tell its
    phases apart: the database copies (a `.backup-*` staging dir with
    data.db), the zip (a temporary file beside the archive), and after it
    the archive's hash. Times from T0, polled every 10 ms."""

    def __init__(self, backup_dir: Path, t0: float):
        self.dir = backup_dir
        self.t0 = t0
        self.stop = threading.Event()
        self.copy_seen = None
        self.zip_seen = None
        self.zip_gone = None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set() and not STOP.is_set():
            t = time.monotonic() - self.t0
            try:
                names = os.listdir(self.dir)
            except OSError:
                names = []
            staging = any(n.startswith(".backup-") and os.path.exists(self.dir / n / "data.db")
                          for n in names)
            zipping = any(n.endswith(".zip.tmp") or (n.startswith(".") and n.endswith(".tmp"))
                          for n in names)  # `.ID.zip.XXXXXX.tmp`
            if staging and self.copy_seen is None:
                self.copy_seen = t
            if zipping and self.zip_seen is None:
                self.zip_seen = t
            if self.zip_seen is not None and not zipping and self.zip_gone is None:
                self.zip_gone = t
            self.stop.wait(0.01)

    def describe(self, total: float) -> str:
        def at(v):
            return "?" if v is None else f"{v:+.2f} s"
        return (f"database copies from {at(self.copy_seen)}, zip from {at(self.zip_seen)} "
                f"to {at(self.zip_gone)}, then the archive's hash until {total:+.2f} s")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        fleet.join_all([self.thread])
        return False


# --------------------------------------------------------------------------
# One size


@dataclass
class Row:
    method: str
    backup_s: float | None = None
    archive_bytes: int | None = None
    load: dict | None = None
    restore_s: float | None = None
    restore_down_s: float | None = None


@dataclass
class SizeResult:
    mb: int
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def disk_free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def run_size(args, work: Path, mb: int, port: int, res: SizeResult):
    target = mb * 1_000_000
    root = work / f"d{mb}"
    # data.db, its WAL growth, two archives and a restore's extraction.
    need = 5 * target + 500_000_000
    free = disk_free(work)
    if free < need:
        raise BenchError(f"not run: {free / 1e9:.1f} GB free under {work}, about {need / 1e9:.1f} GB needed")
    daemon = None
    load = None
    try:
        log(f"{mb} MB: starting a daemon in {root}")
        daemon = Daemon(root, work)
        created = daemon.cli("create", INSTANCE, "--version", args.version, "--port", str(port),
                             "--superuser-email", EMAIL, timeout=CREATE_TIMEOUT)
        password = (created.get("superuser") or {}).get("password") if isinstance(created, dict) else None
        if not password:
            raise BenchError(f"create gave no superuser password: {short(created)}")
        pb = Pb(port)
        pb.login(password)
        status, body = pb.call("POST", "/api/collections", {
            "name": "items", "type": "base", "createRule": "",
            "fields": [
                {"name": "body", "type": "text"},
                {"name": "created", "type": "autodate", "onCreate": True},
                {"name": "updated", "type": "autodate", "onCreate": True, "onUpdate": True},
            ],
        })
        if status != 200:
            raise BenchError(f"create collection items: HTTP {status}: {short(body)}")

        # Fill, with the instance stopped.
        daemon.cli("stop", INSTANCE)
        db = root / "instances" / INSTANCE / "pb_data" / "data.db"
        if not db.is_file():
            found = list(root.glob(f"**/{INSTANCE}/**/pb_data/data.db"))
            if not found:
                raise BenchError(f"cannot find the instance's data.db under {root}")
            db = found[0]
        log(f"{mb} MB: filling {db.relative_to(work)}")
        filled, fill_s = fill(db, target)
        db_bytes = db.stat().st_size
        log(f"{mb} MB: {filled} rows, data.db {db_bytes / 1e6:.0f} MB in {fill_s:.1f} s")
        daemon.cli("start", INSTANCE, timeout=CREATE_TIMEOUT)
        pb.login(password)
        t = time.monotonic()
        rows0 = pb.count()
        count_s = time.monotonic() - t
        if rows0 < filled:
            raise BenchError(f"PocketBase lists {rows0} items, {filled} were written")
        res.notes.append(f"data.db {db_bytes / 1e6:.0f} MB: {rows0} records "
                         f"(filled in {fill_s:.0f} s; PocketBase counted them in {count_s:.1f} s)")

        # The load, then the backups under it.
        load = WriteLoad(port, args.threads, args.rate)
        load.start()
        t_base0 = time.monotonic()
        log(f"{mb} MB: write load of {args.rate:g} writes/s over {args.threads} threads; "
            f"{args.settle:g} s of load alone")
        STOP.wait(args.settle)
        t_base1 = time.monotonic()

        log(f"{mb} MB: pockestrator backup create")
        t0 = time.monotonic()
        with PhaseWatch(root / "backups" / INSTANCE, t0) as phases:
            backup = daemon.cli("backup", "create", INSTANCE, timeout=BACKUP_TIMEOUT)
            t1 = time.monotonic()
        res.notes.append(f"pockestrator backup create: {phases.describe(t1 - t0)}")
        pk_row = Row("pockestrator backup create", t1 - t0, int(backup["size"]))
        pk_window = (t0, t1)
        log(f"{mb} MB: pockestrator: {t1 - t0:.2f} s, {int(backup['size']) / 1e6:.0f} MB")

        STOP.wait(args.settle)
        t_mid0 = time.monotonic()
        STOP.wait(args.settle)
        t_mid1 = time.monotonic()

        log(f"{mb} MB: PocketBase POST /api/backups")
        name = f"bench_{mb}.zip"
        t0 = time.monotonic()
        status, body = pb.call("POST", "/api/backups", {"name": name}, timeout=BACKUP_TIMEOUT)
        t1 = time.monotonic()
        pb_row = Row("PocketBase POST /api/backups", t1 - t0)
        pb_window = (t0, t1)
        if status not in (200, 204):
            res.errors.append(f"POST /api/backups: HTTP {status}: {short(body)}")
            pb_row.backup_s = None
        else:
            status, listing = pb.call("GET", "/api/backups")
            for b in listing if isinstance(listing, list) else []:
                if b.get("key") == name:
                    pb_row.archive_bytes = int(b.get("size", 0))
            log(f"{mb} MB: PocketBase: {t1 - t0:.2f} s")

        STOP.wait(args.settle)
        load.finish()
        w_end = time.monotonic()
        base_row = Row("load alone (before, between)")
        base_row.load = merge(load.window(t_base0, t_base1), load.window(t_mid0, t_mid1))
        pk_row.load = load.window(*pk_window)
        pb_row.load = load.window(*pb_window)
        res.rows += [base_row, pk_row, pb_row]
        for row in (pk_row, pb_row):
            ld = row.load
            if ld["longest"] is not None and row.backup_s:
                res.notes.append(
                    f"{row.method}: its longest write ({ld['longest'] * 1000:.0f} ms) was sent "
                    f"{ld['longest_at']:+.2f} s into the {row.backup_s:.2f} s call")
        total = load.window(t_base0, w_end)
        res.notes.append(f"write load: {total['n']} writes, {total['failed']} failed, "
                         f"{args.rate:g}/s asked over {args.threads} threads")
        for e in load.errors:
            res.notes.append(f"a failed write: {e}")
        # The pockestrator backup's snapshot was taken inside its window.
        low = rows0 + load.ok_done_before(pk_window[0])
        high = rows0 + load.ok_sent_before(pk_window[1])

        # Restore, with the load stopped.
        if pb_row.archive_bytes is not None:
            pb.call("DELETE", f"/api/backups/{name}")  # room on the disk
        log(f"{mb} MB: pockestrator backup restore {backup['id']}")
        with HealthWatch(port) as watch:
            t0 = time.monotonic()
            daemon.cli("backup", "restore", INSTANCE, backup["id"], timeout=RESTORE_TIMEOUT)
            t1 = time.monotonic()
        pk_row.restore_s = t1 - t0
        pk_row.restore_down_s = watch.longest
        log(f"{mb} MB: restore {t1 - t0:.2f} s (health down {watch.longest:.2f} s)")
        if not wait_healthy(port, 30.0):
            res.errors.append("not healthy within 30 s after the restore answered")
        else:
            pb.login(password)
            after = pb.count()
            fits = low <= after <= high
            res.notes.append(
                f"after the restore PocketBase lists {after} records; the backup window allows "
                f"{low}–{high}" + ("" if fits else "  ← OUTSIDE THE WINDOW"))
        try:
            daemon.cli("backup", "delete", INSTANCE, backup["id"])
        except BenchError as e:
            res.notes.append(f"backup delete: {e}")
    finally:
        if load is not None:
            load.finish()
        if daemon is not None:
            daemon.shutdown(res.errors)
        shutil.rmtree(root, ignore_errors=True)


def merge(a: dict, b: dict) -> dict:
    """Two load-alone windows as one (medians approximated by their mean)."""
    vals = [x for x in (a, b) if x["n"]]
    if not vals:
        return a
    return {
        "rate": statistics.mean(v["rate"] for v in vals),
        "median": statistics.mean(v["median"] for v in vals),
        "longest": max(v["longest"] for v in vals),
        "failed": sum(v["failed"] for v in vals),
        "n": sum(v["n"] for v in vals),
        "longest_at": None,
    }


# --------------------------------------------------------------------------
# Report


def fmt(v, scale=1.0, digits=2):
    return "-" if v is None else f"{v * scale:.{digits}f}"


def report(args, results: list[SizeResult], binary: Path):
    head = ("size", "method", "backup s", "archive MB", "writes/s", "median write ms",
            "longest write ms", "failed writes", "restore s", "restore downtime s")
    rows = [head]
    for r in results:
        for row in r.rows:
            ld = row.load or {}
            rows.append((
                f"{r.mb} MB", row.method, fmt(row.backup_s),
                fmt(row.archive_bytes, 1e-6, 0) if row.archive_bytes else "-",
                fmt(ld.get("rate"), 1, 0), fmt(ld.get("median"), 1000, 1),
                fmt(ld.get("longest"), 1000, 0), str(ld.get("failed", "-")),
                fmt(row.restore_s), fmt(row.restore_down_s),
            ))
        if not r.rows:
            rows.append((f"{r.mb} MB", "(not measured: see below)", *("-",) * (len(head) - 2)))
    widths = [max(len(x[i]) for x in rows) for i in range(len(head))]

    def line(x):
        return "  ".join(c.ljust(w) for c, w in zip(x, widths)).rstrip()

    pb_version = (fleet.command_output([str(binary), "--version"]).split() or [args.version])[-1]
    out = [
        "",
        "Pockestrator backup benchmark",
        f"  machine       {fleet.machine()}",
        f"  PocketBase    {pb_version} ({binary.relative_to(REPO)})",
        f"  pockestrator  commit {fleet.git_commit()}, {POCKESTRATOR.relative_to(REPO)}",
        f"  write load    {args.rate:g} small records/s asked, {args.threads} threads, "
        f"straight to the instance's port; {args.settle:g} s of load alone before each backup",
        "",
        line(head),
        line(tuple("-" * w for w in widths)),
        *(line(x) for x in rows[1:]),
        "",
        "writes/s, median and longest write: the writes overlapping the backup call (for the",
        "first row: the load alone, before and between the backups). Longest write = the",
        "longest time one write waited: the write stall. Restore: the load stopped; until",
        "the CLI answered (PocketBase healthy again); downtime = longest run of failed",
        "/api/health probes. MB = 10^6 bytes.",
        "Litestream's RPO over kills and its overhead per instance: scripts/bench-replication.",
    ]
    for r in results:
        if r.notes or r.errors:
            out.append("")
            out.append(f"{r.mb} MB:")
            out += [f"  {n}" for n in r.notes]
            out += [f"  ERROR: {e}" for e in r.errors]
    print("\n".join(out), flush=True)


# --------------------------------------------------------------------------


def on_signal(signum, _frame):
    STOP.set()
    raise Interrupted(signal.Signals(signum).name)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="scripts/bench-backup",
        description="Benchmark pockestrator's backups and restores against PocketBase's own "
        "POST /api/backups under a steady write load. Prints figures; never fails on timings.",
    )
    p.add_argument("--sizes", default="100,1000", metavar="MB,MB",
                   help="data.db sizes in MB (10^6 bytes), comma-separated (default 100,1000)")
    p.add_argument("--rate", type=float, default=50.0, metavar="N",
                   help="writes per second asked of the load, all threads together (default 50)")
    p.add_argument("--threads", type=int, default=2, metavar="N", help="load threads (default 2)")
    p.add_argument("--settle", type=float, default=5.0, metavar="S",
                   help="seconds of load alone before and between the backups (default 5)")
    p.add_argument("--version", default="0.40.6", metavar="X.Y.Z",
                   help="PocketBase version, one of the pinned binaries in .cache/deps (default 0.40.6)")
    p.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--reap", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.reap is None:
        if a.workdir is None:
            p.error("run it through scripts/bench-backup (it passes --workdir)")
        try:
            a.sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
        except ValueError:
            p.error("--sizes takes whole numbers of MB, e.g. 100,1000")
        if not a.sizes or any(s < 1 or s > 100_000 for s in a.sizes):
            p.error("--sizes: each between 1 and 100000 MB")
        if not 1 <= a.threads <= 16 or a.rate <= 0:
            p.error("--threads between 1 and 16, --rate above 0")
    return a


def reap_all(work: Path):
    """Whatever a harness killed outright left behind: each daemon's
    instance stopped through it first, then every process under WORK."""
    for root in sorted(work.glob("d*")):
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
    if not binary.is_file():
        log(f"no PocketBase binary {binary}")
        return 2
    if not POCKESTRATOR.is_file():
        log(f"{POCKESTRATOR} is missing: run cargo build --release")
        return 2
    if len(str(work / f"d{max(args.sizes)}" / "pockestrator.sock")) > 100:
        log(f"the work dir {work} is too deep for a unix socket path; set TMPDIR to a shorter dir")
        return 2

    results = []
    try:
        for i, mb in enumerate(args.sizes):
            if STOP.is_set():
                break
            res = SizeResult(mb)
            results.append(res)
            try:
                port = fleet.free_ports(1, PORT_BASE + 10 * i, set())[0]
                run_size(args, work, mb, port, res)
            except BenchError as e:
                res.errors.append(str(e))
            except Exception as e:  # noqa: BLE001 - reported, and the next size still runs
                res.errors.append(f"{type(e).__name__}: {e}")
    except Interrupted as e:
        log(f"interrupted ({e}); everything started was stopped")
        return 130
    except BaseException:
        STOP.set()
        raise
    finally:
        with signals_ignored():
            reap_all(work)
    report(args, results, binary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
