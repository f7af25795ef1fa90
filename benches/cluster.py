#!/usr/bin/env python3
"""Cluster benchmark: three nats-servers and three pockestrator hosts on
loopback, joined with `serve --cluster`.

Measures, in one run, over --runs rounds:

- the added latency of a request routed through another host's embedded
  proxy against the same request through the instance's own host's proxy
  (the reference, side by side), sequential and with concurrent clients;
- an operation from another host (`GET /api/v1/instances/{name}`, `POST
  …/restart`) against the same on the instance's host;
- the whole fleet's list from one host (every host asked at once).

The issue's other targets (failover from a replica, records lost under a
write load, a drain of 10 instances) need leases, failover and drain,
which are not built yet: the report says so instead of inventing figures.
Never fails on a timing.

Run it through scripts/bench-cluster, which builds the release binary and
cleans up after a harness that was killed.
"""

import argparse
import http.client
import json
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
    DEPS, LOOPBACK, BenchError, can_bind, http_request, start_serve,
)

PORT_BASE = 23100


def log(msg):
    print(f"bench-cluster: {msg}", file=sys.stderr, flush=True)


def pct(xs, p):
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


def ports(n, start):
    out, p = [], start
    while len(out) < n:
        if can_bind(p):
            out.append(p)
        p += 1
    return out


class Nats:
    def __init__(self, workdir: Path):
        bin_ = DEPS / "nats-server"
        if not bin_.exists():
            raise BenchError("nats-server is missing: run scripts/fetch-test-deps")
        ps = ports(9, PORT_BASE)
        self.client_ports = ps[0:3]
        cluster_ports, monitor_ports = ps[3:6], ps[6:9]
        routes = ", ".join(f'"nats-route://{LOOPBACK}:{p}"' for p in cluster_ports)
        self.procs = []
        for i in range(3):
            conf = workdir / f"nats{i}.conf"
            conf.write_text(
                f"server_name: n{i}\nlisten: {LOOPBACK}:{self.client_ports[i]}\n"
                f"http: {LOOPBACK}:{monitor_ports[i]}\n"
                f'jetstream {{ store_dir: "{workdir}/nats{i}" }}\n'
                f"cluster {{ name: bench, listen: {LOOPBACK}:{cluster_ports[i]}, routes: [{routes}] }}\n")
            self.procs.append(subprocess.Popen(
                [str(bin_), "-c", str(conf)], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + 60
        for port in monitor_ports:
            while True:
                try:
                    status, _ = http_request(port, "GET", "/healthz", timeout=2)
                    _, jsz = http_request(port, "GET", "/jsz", timeout=2)
                    if status == 200 and json.loads(jsz).get("meta_cluster", {}).get("leader"):
                        break
                except (OSError, http.client.HTTPException, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise BenchError("the NATS cluster did not become ready")
                time.sleep(0.2)

    def urls(self):
        return ",".join(f"nats://{LOOPBACK}:{p}" for p in self.client_ports)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


class Host:
    def __init__(self, workdir: Path, name: str, nats: Nats):
        self.name = name
        root = workdir / f"host-{name}"
        root.mkdir(parents=True)
        self.err = workdir / f"host-{name}.stderr"
        self.proc, self.api, self.proxy, self.headers = start_serve(
            root, self.err,
            ["--cluster", nats.urls(), "--host-name", name, "--pool-size", "0"])

    def call(self, method, path, body=None, timeout=120.0):
        data = json.dumps(body).encode() if body is not None else None
        status, raw = http_request(self.api, method, path, body=data, headers=self.headers,
                                   timeout=timeout)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def through_proxy(port, host, n, clients):
    """n GET /api/health through the proxy on `port` for `host`, by
    `clients` keep-alive connections; latencies in seconds."""
    lat, errors = [], []
    lock = threading.Lock()
    per = n // clients

    def client(_):
        conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
        mine = []
        for _ in range(per):
            t0 = time.perf_counter()
            try:
                conn.request("GET", "/api/health", headers={"Host": host})
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    errors.append(resp.status)
                    continue
            except (OSError, http.client.HTTPException) as e:
                errors.append(str(e))
                conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
                continue
            mine.append(time.perf_counter() - t0)
        conn.close()
        with lock:
            lat.extend(mine)

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return lat, errors


def timed_calls(host, method, path, n):
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        status, body = host.call(method, path, {} if method == "POST" else None)
        if status != 200:
            raise BenchError(f"{method} {path} on host {host.name} answered {status}: {str(body)[:200]}")
        lat.append(time.perf_counter() - t0)
    return lat


def row(label, xs, ref=None):
    p50, p99 = pct(xs, 50) * 1000, pct(xs, 99) * 1000
    added = "" if ref is None else f"{(p50 - pct(ref, 50) * 1000):+.2f} ms"
    return f"| {label} | {len(xs)} | {p50:.2f} ms | {p99:.2f} ms | {added} |"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=10, help="rounds of each measurement (10)")
    ap.add_argument("--requests", type=int, default=2000, help="proxied requests per round (2000)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients for the loaded rows (8)")
    ap.add_argument("--instances", type=int, default=30, help="instances spread over the hosts (30)")
    args = ap.parse_args()

    nats, hosts = None, []
    try:
        log("starting a three-node NATS cluster")
        nats = Nats(args.workdir)
        for name in ("a", "b", "c"):
            log(f"starting host {name}")
            hosts.append(Host(args.workdir, name, nats))
        a, b, c = hosts
        deadline = time.monotonic() + 30
        while True:
            status, v = a.call("GET", "/api/v1/hosts")
            if status == 200 and sum(h["health"] == "up" for h in v["hosts"]) == 3:
                break
            if time.monotonic() > deadline:
                raise BenchError(f"the hosts did not all come up: {v}")
            time.sleep(0.2)
        log(f"creating {args.instances} instances over the three hosts")
        for i in range(args.instances):
            host = ("a", "b", "c")[i % 3]
            status, body = a.call("POST", "/api/v1/instances", {"name": f"i{i}", "host": host})
            if status != 201:
                raise BenchError(f"create i{i} on {host}: {status} {str(body)[:300]}")
        # The routed hosts learn of the names through the claims' watch.
        time.sleep(2)

        local_seq, routed_seq, local_conc, routed_conc = [], [], [], []
        errors = []
        op_local, op_remote, get_local, get_remote = [], [], [], []
        list_all = []
        for run in range(args.runs):
            log(f"round {run + 1} of {args.runs}")
            # i0 lives on a: a's proxy is its own, b's routes it on.
            lat, err = through_proxy(a.proxy, "i0.localhost", args.requests // 4, 1)
            local_seq += lat; errors += err
            lat, err = through_proxy(b.proxy, "i0.localhost", args.requests // 4, 1)
            routed_seq += lat; errors += err
            lat, err = through_proxy(a.proxy, "i0.localhost", args.requests, args.clients)
            local_conc += lat; errors += err
            lat, err = through_proxy(b.proxy, "i0.localhost", args.requests, args.clients)
            routed_conc += lat; errors += err
            get_local += timed_calls(a, "GET", "/api/v1/instances/i0", 20)
            get_remote += timed_calls(b, "GET", "/api/v1/instances/i0", 20)
            op_local += timed_calls(a, "POST", "/api/v1/instances/i0/restart", 1)
            op_remote += timed_calls(b, "POST", "/api/v1/instances/i0/restart", 1)
            for _ in range(5):
                t0 = time.perf_counter()
                status, body = a.call("GET", "/api/v1/instances")
                list_all.append(time.perf_counter() - t0)
                if status != 200 or body.get("unreachable_hosts"):
                    raise BenchError(f"list: {status} {str(body)[:300]}")

        print()
        print(f"Cluster benchmark: 3 NATS nodes, 3 hosts, {args.instances} instances, {args.runs} rounds, "
              f"loopback, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores")
        print()
        print("| what | n | p50 | p99 | added (p50) |")
        print("|---|---|---|---|---|")
        print(row("GET /api/health via the instance's own host's proxy (reference), 1 client", local_seq))
        print(row("same, via another host's proxy, 1 client", routed_seq, local_seq))
        print(row(f"via the instance's own host's proxy, {args.clients} clients", local_conc))
        print(row(f"via another host's proxy, {args.clients} clients", routed_conc, local_conc))
        print(row("GET /api/v1/instances/NAME on its host (reference)", get_local))
        print(row("same, asked of another host (NATS request)", get_remote, get_local))
        print(row("POST …/restart on its host (reference)", op_local))
        print(row("same, asked of another host", op_remote, op_local))
        print(row(f"GET /api/v1/instances, the whole fleet ({args.instances}) from one host", list_all))
        print()
        print(f"Errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
        print()
        print("Not measured, not built yet: failover time from kill to healthy elsewhere, "
              "records lost under a steady write load, a drain of 10 instances.")
    finally:
        for h in hosts:
            h.stop()
        if nats:
            nats.stop()


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        log(f"failed: {e}")
        sys.exit(1)
