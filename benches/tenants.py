#!/usr/bin/env python3
"""Scale-to-zero benchmark: many seed 001 users on one host, most asleep.

Registers USERS seed 001 users (`POST /api/users/{id}/init_pb`) on one
daemon with a short `--user-idle-timeout`, lets them fall asleep, then
drives a Zipf-distributed request load through the embedded proxy so that a
few hundred are awake at a time while the rest sleep and wake. Reports, in
one run: the wake latency (a sleeping instance's first request answered,
measured by the client), beside a plain `start` of a stopped instance and a
fresh create (the registrations) and PocketHost's published 600-1000 ms;
`GET /api/v1/instances` and `GET /api/pb_instances` at that size; the
daemon's RSS and the fleet's memory. Never fails on a timing.

Run it through scripts/bench-tenants, which builds the release binary and
cleans up after a harness that was killed.
"""

import argparse
import bisect
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fleet import (  # noqa: E402
    LOOPBACK, BenchError, http_request, processes_under,
    reap, start_serve, status_kb,
)

PB_VERSION = "0.40.6"
POCKETHOST_WAKE = "600-1000 ms (published)"
STOP = threading.Event()


def log(msg):
    print(f"bench-tenants: {msg}", file=sys.stderr, flush=True)


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


def ms(v):
    return "-" if v is None else f"{v * 1000:.1f} ms"


class Daemon:
    def __init__(self, root: Path, args):
        self.root = root
        root.mkdir(parents=True)
        self.err = root.parent / "daemon.stderr"
        self.proc, self.api, self.proxy, self.headers = start_serve(
            root, self.err,
            ["--user-idle-timeout", args.idle_timeout,
             "--pool-size", str(args.pool_size),
             # Below Linux's ephemeral range (32768-60999): 10,000 users
             # take ports from here up.
             "--pb-base-port", "20000",
             "--health-interval", "30s"],
            env=dict(os.environ, POCKESTRATOR_LOG=os.environ.get("POCKESTRATOR_LOG", "info")),
        )

    def call(self, method, path, body=None, timeout=120.0):
        data = json.dumps(body).encode() if body is not None else None
        status, raw = http_request(self.api, method, path, body=data, headers=self.headers,
                                   timeout=timeout)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def rss_kb(self):
        return status_kb(self.proc.pid, "VmRSS")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def timed(fn):
    t0 = time.monotonic()
    out = fn()
    return time.monotonic() - t0, out


def register(d: Daemon, users: int, workers: int):
    lat = []
    failed = []
    lock = threading.Lock()
    done = [0]
    t_start = time.monotonic()

    def one(i):
        if STOP.is_set():
            return
        took, (status, body) = timed(lambda: d.call("POST", f"/api/users/t{i}/init_pb", {}))
        with lock:
            done[0] += 1
            if status == 200:
                lat.append(took)
            else:
                failed.append((i, status, str(body)[:200]))
            if done[0] % 250 == 0:
                rate = done[0] / (time.monotonic() - t_start)
                log(f"registered {done[0]}/{users} ({rate:.1f}/s)")

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(users)))
    return lat, failed, time.monotonic() - t_start


def instances(d: Daemon):
    status, body = d.call("GET", "/api/v1/instances")
    if status != 200:
        raise BenchError(f"GET /api/v1/instances answered {status}")
    return body["instances"]


def wait_asleep(d: Daemon, users: int, limit: float):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and not STOP.is_set():
        awake = sum(1 for i in instances(d) if i["status"] != "sleeping")
        log(f"{awake} of {users} awake")
        if awake <= max(5, users // 100):
            return awake
        time.sleep(5)
    return awake


def zipf_cdf(n, s):
    weights = [1.0 / (k ** s) for k in range(1, n + 1)]
    total = sum(weights)
    cdf, acc = [], 0.0
    for w in weights:
        acc += w / total
        cdf.append(acc)
    return cdf


def load(d: Daemon, names, seconds, clients, s, idle_secs, rate):
    """Zipf load through the proxy. A request to an instance nobody asked
    for within its idle timeout (plus a margin) meets it asleep: the first
    such request's latency is a wake sample."""
    cdf = zipf_cdf(len(names), s)
    order = list(range(len(names)))
    random.Random(7).shuffle(order)  # the popular ones spread over the ports
    last = {}
    lock = threading.Lock()
    wakes, plain, errors = [], [], []
    samples = []
    end = time.monotonic() + seconds

    def client(seed):
        rnd = random.Random(seed)
        import http.client
        gap = clients / rate  # each client's share of the request rate
        due = time.monotonic() + rnd.random() * gap
        while time.monotonic() < end and not STOP.is_set():
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            due += rnd.expovariate(1.0 / gap)
            k = order[bisect.bisect_left(cdf, rnd.random())]
            host = f"{names[k]}.localhost"
            now = time.monotonic()
            with lock:
                prev = last.get(k)
                cold = prev is None or now - prev > idle_secs + 3
                last[k] = now
            t0 = time.monotonic()
            try:
                conn = http.client.HTTPConnection(LOOPBACK, d.proxy, timeout=60)
                conn.request("GET", "/api/collections/nope/records", headers={"Host": host})
                resp = conn.getresponse()
                resp.read()
                conn.close()
                took = time.monotonic() - t0
                if resp.status != 404:
                    errors.append((host, resp.status))
                elif cold:
                    wakes.append(took)
                else:
                    plain.append(took)
            except OSError as e:
                errors.append((host, str(e)))

    def sampler():
        while time.monotonic() < end and not STOP.is_set():
            try:
                awake = sum(1 for i in instances(d) if i["status"] != "sleeping")
                samples.append((awake, d.rss_kb()))
            except BenchError:
                pass
            time.sleep(5)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    threads.append(threading.Thread(target=sampler))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return wakes, plain, errors, samples


def list_latency(d: Daemon, path, n=30):
    """Until the whole body is read; the client's JSON parsing (of 10,000
    instances, seconds in Python) is not the server's time."""
    lat = []
    for _ in range(n):
        took, (status, _) = timed(lambda: http_request(d.api, "GET", path, headers=d.headers,
                                                       timeout=60.0))
        if status == 200:
            lat.append(took)
    return lat


def plain_starts(d: Daemon, names, n=10):
    lat = []
    for name in names[:n]:
        d.call("POST", f"/api/v1/instances/{name}/stop")
        took, (status, _) = timed(lambda: d.call("POST", f"/api/v1/instances/{name}/start"))
        if status == 200:
            lat.append(took)
        d.call("POST", f"/api/v1/instances/{name}/sleep")
    return lat


def fleet_rss_kb(root: Path, daemon_pid: int):
    total, count = 0, 0
    for pid in processes_under(root):
        if pid == daemon_pid:
            continue
        kb = status_kb(pid, "VmRSS")
        if kb:
            total += kb
            count += 1
    return total, count


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=10000)
    p.add_argument("--idle-timeout", default="20s")
    p.add_argument("--pool-size", type=int, default=4)
    p.add_argument("--register-workers", type=int, default=4)
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--rate", type=float, default=200.0, help="requests per second, all clients")
    p.add_argument("--zipf", type=float, default=1.1)
    p.add_argument("--workdir", type=Path, required=True)
    args = p.parse_args(argv)
    idle_secs = float(args.idle_timeout.rstrip("s"))
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: STOP.set())

    d = Daemon(args.workdir / "root", args)
    try:
        log(f"daemon up; registering {args.users} seed 001 users")
        reg, failed, reg_total = register(d, args.users, args.register_workers)
        if failed:
            log(f"{len(failed)} registrations failed, first: {failed[0]}")
        names = sorted(i["name"] for i in instances(d))
        awake_after = wait_asleep(d, len(names), idle_secs * 3 + 120)
        rss_idle = d.rss_kb()
        log(f"load: {args.seconds} s, {args.rate:.0f}/s from {args.clients} clients, "
            f"Zipf s={args.zipf}")
        wakes, warm, errors, samples = load(d, names, args.seconds, args.clients, args.zipf,
                                            idle_secs, args.rate)
        fleet_kb, fleet_n = fleet_rss_kb(args.workdir / "root", d.proc.pid)
        v1 = list_latency(d, "/api/v1/instances")
        pb = list_latency(d, "/api/pb_instances")
        starts = plain_starts(d, [n for n in names[-20:]])
        rss_end = d.rss_kb()
    finally:
        d.stop()
        reap(args.workdir)

    awake = [a for a, _ in samples]
    rss = [r for _, r in samples if r]
    print()
    print(f"## bench-tenants: {len(names)} seed 001 users, idle timeout {args.idle_timeout}, "
          f"pool {args.pool_size}, {args.rate:.0f} requests/s from {args.clients} clients for "
          f"{args.seconds} s, Zipf s={args.zipf}")
    print()
    print("| measure | p50 | p99 | n | goal |")
    print("|---|---:|---:|---:|---|")
    print(f"| wake: a sleeping instance's first request answered | {ms(pct(wakes, 50))} | "
          f"{ms(pct(wakes, 99))} | {len(wakes)} | p50 ≤ 60 ms, p99 ≤ 150 ms |")
    print(f"| request to an awake instance | {ms(pct(warm, 50))} | {ms(pct(warm, 99))} | "
          f"{len(warm)} | |")
    print(f"| plain `start` of a stopped instance (API) | {ms(pct(starts, 50))} | "
          f"{ms(pct(starts, 99))} | {len(starts)} | |")
    print(f"| fresh create (`init_pb` of a new user) | {ms(pct(reg, 50))} | {ms(pct(reg, 99))} | "
          f"{len(reg)} | |")
    print(f"| PocketHost wake (reference) | {POCKETHOST_WAKE} | | | |")
    print(f"| `GET /api/v1/instances` | {ms(pct(v1, 50))} | {ms(pct(v1, 99))} | {len(v1)} | "
          f"p99 ≤ 50 ms |")
    print(f"| `GET /api/pb_instances` | {ms(pct(pb, 50))} | {ms(pct(pb, 99))} | {len(pb)} | "
          f"p99 ≤ 50 ms |")
    print()
    print(f"- registrations: {len(reg)} in {reg_total:.0f} s, {len(failed)} failed")
    print(f"- awake before the load: {awake_after}; during it: "
          f"{min(awake) if awake else '-'}–{max(awake) if awake else '-'} "
          f"(median {statistics.median(awake) if awake else '-'})")
    print(f"- daemon RSS: {rss_idle / 1024:.1f} MiB with {len(names)} registered and asleep; "
          f"{(max(rss) if rss else rss_end) / 1024:.1f} MiB at most under load (goal ≤ 100 MB)")
    print(f"- PocketBase processes at the end of the load: {fleet_n}, "
          f"{fleet_kb / 1024:.0f} MiB RSS together")
    print(f"- request errors under load: {len(errors)}" +
          (f" (first: {errors[0]})" if errors else ""))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        log(str(e))
        sys.exit(1)
