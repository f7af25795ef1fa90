#!/usr/bin/env python3
"""Replication benchmark (run by scripts/bench-replication).

1. RPO over N kills: one pockestrator instance replicated with Litestream to
   a directory; a writer creates records at a steady rate; then the daemon,
   PocketBase and Litestream are all killed with SIGKILL, the replica is
   restored into a fresh file with `litestream restore`, and the writes
   acknowledged but missing from it are counted and reported in seconds of
   writes. The daemon is started again (PocketBase and Litestream with it)
   before the next round.

2. Overhead at M replicated databases: RSS and CPU of Litestream, idle and
   under a light write load (W writes per second per database), with one
   Litestream process per database (what pockestrator runs) and with one
   Litestream for all of them (one config with M `dbs:` entries).

Prints a Markdown table. Never fails because of a figure.
"""

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def http(method, url, body=None, token=None, timeout=5):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", token)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


class Daemon:
    def __init__(self, binary, data, litestream):
        self.binary, self.data, self.litestream = binary, data, litestream
        self.proc = None

    def start(self):
        log = open(os.path.join(self.data, "daemon.log"), "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--data-dir", self.data, "serve", "--listen", "none",
             "--litestream", self.litestream, "--release-source",
             os.path.join(ROOT, ".cache", "mirror")],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        sock = os.path.join(self.data, "pockestrator.sock")
        for _ in range(600):
            if os.path.exists(sock) and self.cli("list").returncode == 0:
                return
            time.sleep(0.05)
        raise SystemExit("the daemon did not come up")

    def cli(self, *args):
        return subprocess.run([self.binary, "--data-dir", self.data, *args],
                              capture_output=True, text=True)

    def json(self, *args):
        out = self.cli(*args, "--json")
        if out.returncode != 0:
            raise SystemExit(f"pockestrator {args}: {out.stderr}")
        return json.loads(out.stdout)

    def kill9(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def pidfile(path):
    try:
        return int(open(path).read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def restore_count(litestream, location):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "data.db")
        env = dict(os.environ)
        env.pop("AWS_CA_BUNDLE", None)
        r = subprocess.run([litestream, "restore", "-o", out, location],
                           capture_output=True, text=True, env=env)
        if r.returncode != 0:
            return None
        c = sqlite3.connect(out)
        n = c.execute("select count(*) from notes").fetchone()[0]
        c.close()
        return n


def rpo(args, litestream, binary, work):
    data = os.path.join(work, "rpo")
    os.makedirs(data)
    d = Daemon(binary, data, litestream)
    d.start()
    try:
        created = d.json("create", "rpo", "--version", args.version,
                         "--superuser-email", "bench@example.com")
        port, password = created["port"], created["superuser"]["password"]
        token = http("POST", f"http://127.0.0.1:{port}/api/collections/_superusers/auth-with-password",
                     {"identity": "bench@example.com", "password": password})["token"]
        http("POST", f"http://127.0.0.1:{port}/api/collections", {
            "name": "notes", "type": "base", "createRule": "", "listRule": "",
            "fields": [{"name": "seq", "type": "number"}]}, token)
        d.json("replicate", "rpo", "--to", "file://" + os.path.join(work, "replica"))
        location = d.json("status", "rpo")["replica"]["location"]
        acked, rows = 0, []
        interval = 1.0 / args.rate
        for round_ in range(args.kills):
            start = time.monotonic()
            next_at = start
            while time.monotonic() - start < args.write_seconds:
                try:
                    http("POST", f"http://127.0.0.1:{port}/api/collections/notes/records",
                         {"seq": acked + 1}, timeout=2)
                    acked += 1
                except Exception:
                    pass
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))
            elapsed = time.monotonic() - start
            d.kill9()
            pids = [pidfile(os.path.join(data, "instances", "rpo", "pocketbase.pid")),
                    pidfile(os.path.join(data, "replication", "litestream.pid"))]
            for pid in pids:
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            got = restore_count(litestream, location)
            missing = acked - (got or 0)
            rows.append((round_ + 1, acked, got, missing, missing / args.rate))
            print(f"  kill {round_ + 1}: {acked} acknowledged, {got} restored, "
                  f"{missing} missing ({missing / args.rate:.2f} s of writes)", file=sys.stderr)
            d.start()
            for _ in range(600):
                st = d.json("status", "rpo")
                if st["status"] == "running" and (st.get("replica") or {}).get("state") == "running":
                    break
                time.sleep(0.05)
            # PocketBase and Litestream are back; the writes of this round
            # that were missing are in the WAL and now reach the replica.
            for _ in range(200):
                if restore_count(litestream, location) == acked:
                    break
                time.sleep(0.1)
            time.sleep(0.5)
        return rows
    finally:
        d.kill9()
        for f in ("instances/rpo/pocketbase.pid", "replication/litestream.pid"):
            pid = pidfile(os.path.join(data, f))
            if pid:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def stat(pid):
    try:
        text = open(f"/proc/{pid}/stat").read()
        fields = text[text.rindex(")") + 2:].split()
        ticks = int(fields[11]) + int(fields[12])
        rss = int(open(f"/proc/{pid}/statm").read().split()[1]) * PAGE
        return ticks, rss
    except (OSError, ValueError):
        return 0, 0


def config(dbs):
    out = ["logging:", "  level: warn", "dbs:"]
    for db, meta, replica in dbs:
        out += [f'  - path: "{db}"', f'    meta-path: "{meta}"', "    replica:",
                "      type: file", f'      path: "{replica}"', "      sync-interval: 1s"]
    return "\n".join(out) + "\n"


def overhead(args, litestream, work):
    base = os.path.join(work, "overhead")
    dbs = []
    for i in range(args.instances):
        d = os.path.join(base, f"i{i:03}")
        os.makedirs(d)
        path = os.path.join(d, "data.db")
        c = sqlite3.connect(path)
        c.execute("pragma journal_mode=wal")
        c.execute("create table notes(id integer primary key, body text)")
        c.executemany("insert into notes(body) values (?)", [("x" * 200,)] * 2000)
        c.commit()
        c.close()
        dbs.append(path)
    results = []
    for model in ("per-instance", "per-host"):
        procs = []
        root = os.path.join(work, f"run-{model}")
        os.makedirs(root)
        entries = [(db, os.path.join(root, f"meta{i}"), os.path.join(root, f"replica{i}"))
                   for i, db in enumerate(dbs)]
        groups = [[e] for e in entries] if model == "per-instance" else [entries]
        log = open(os.path.join(root, "litestream.log"), "ab")
        for n, group in enumerate(groups):
            cfg = os.path.join(root, f"litestream{n}.yml")
            open(cfg, "w").write(config(group))
            procs.append(subprocess.Popen([litestream, "replicate", "-config", cfg, "-no-expand-env"],
                                          stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                          start_new_session=True))
        try:
            time.sleep(args.settle)
            for phase in ("idle", "writes"):
                stop = threading.Event()
                writers = []
                if phase == "writes":
                    def writer(paths):
                        conns = [sqlite3.connect(p, timeout=5) for p in paths]
                        gap = 1.0 / args.write_rate
                        while not stop.is_set():
                            for c in conns:
                                c.execute("insert into notes(body) values (?)", ("y" * 200,))
                                c.commit()
                            stop.wait(gap)
                    writers = [threading.Thread(target=writer, args=(dbs,))]
                    for w in writers:
                        w.start()
                    time.sleep(2)
                before = [stat(p.pid) for p in procs]
                t0 = time.monotonic()
                time.sleep(args.measure)
                after = [stat(p.pid) for p in procs]
                wall = time.monotonic() - t0
                stop.set()
                for w in writers:
                    w.join()
                cpu = sum(a[0] - b[0] for a, b in zip(after, before)) / CLK / wall * 100
                rss = sum(a[1] for a in after)
                results.append((model, phase, len(procs), rss, cpu))
                print(f"  {model} {phase}: {len(procs)} processes, RSS {rss / 2**20:.1f} MiB, "
                      f"CPU {cpu:.2f}% of one core", file=sys.stderr)
        finally:
            for p in procs:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--rate", type=float, default=20.0, help="writes per second in the RPO rounds")
    ap.add_argument("--write-seconds", type=float, default=3.0)
    ap.add_argument("--instances", type=int, default=50)
    ap.add_argument("--write-rate", type=float, default=2.0, help="writes per second per database under load")
    ap.add_argument("--settle", type=float, default=5.0)
    ap.add_argument("--measure", type=float, default=15.0)
    ap.add_argument("--version", default="0.28.4")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "pockestrator"))
    ap.add_argument("--litestream", default=os.path.join(ROOT, ".cache", "deps", "litestream"))
    ap.add_argument("--skip-rpo", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="pockestrator-bench-replication.")
    try:
        rows = [] if args.skip_rpo else rpo(args, args.litestream, args.binary, work)
        over = overhead(args, args.litestream, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if rows:
        lost = [r[4] for r in rows]
        print(f"\n### RPO over {len(rows)} kills ({args.rate:g} writes/s, sync-interval 1 s)\n")
        print("| kill | acknowledged | restored | missing | seconds of writes |")
        print("|---:|---:|---:|---:|---:|")
        for k, acked, got, missing, secs in rows:
            print(f"| {k} | {acked} | {got} | {missing} | {secs:.2f} |")
        print(f"\nmean {sum(lost) / len(lost):.2f} s, worst {max(lost):.2f} s of writes lost")
    print(f"\n### Litestream at {args.instances} replicated databases "
          f"(load: {args.write_rate:g} writes/s each)\n")
    print("| model | phase | processes | RSS total | RSS per db | CPU (% of a core) | CPU per db |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for model, phase, n, rss, cpu in over:
        print(f"| {model} | {phase} | {n} | {rss / 2**20:.1f} MiB | {rss / 2**20 / args.instances:.2f} MiB "
              f"| {cpu:.2f} | {cpu / args.instances:.3f} |")


if __name__ == "__main__":
    main()
