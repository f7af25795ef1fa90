#!/usr/bin/env python3
"""Cluster benchmark: three nats-servers and three pockestrator hosts on
loopback, joined with `serve --cluster`.

Measures, in one run, over --runs rounds:

- the added latency of a request routed through another host's embedded
  proxy against the same request through the instance's own host's proxy
  (the reference, side by side), sequential and with concurrent clients;
- an operation from another host (`GET /api/v1/instances/{name}`, `POST
  …/restart`) against the same on the instance's host;
- the whole fleet's list from one host (every host asked at once);
- failover, over --failovers rounds: a replicated instance under a steady
  write load (one acknowledged write every 20 ms, straight to its port),
  its host killed with every process on it (daemon, PocketBase,
  Litestream); the time from the kill until another host serves it with
  its data, that time less the lease time (the lease ran out at most one
  heartbeat before the kill plus the lease time, so this is how long the
  failover itself took, give or take a heartbeat), and the acknowledged
  writes the new copy lacks, in writes and in seconds of writes. The
  killed host is started again after each round (it archives its copy).

- a drain (`host drain`) of --drain replicated instances (10) of one host,
  each with records written to it: the time the drain took, per instance,
  and that every record is on the instance's new host.

Never fails on a timing.

Run it through scripts/bench-cluster, which builds the release binary and
cleans up after a harness that was killed.
"""

import argparse
import http.client
import json
import os
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
    DEPS, LOOPBACK, BenchError, can_bind, http_request, processes_under, start_serve,
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
    def __init__(self, workdir: Path, name: str, nats: Nats, extra):
        self.name = name
        self.root = workdir / f"host-{name}"
        self.root.mkdir(parents=True)
        self.err = workdir / f"host-{name}.stderr"
        self.args = ["--cluster", nats.urls(), "--host-name", name, "--pool-size", "0", *extra]
        self.start()

    def start(self):
        self.proc, self.api, self.proxy, self.headers = start_serve(self.root, self.err, self.args)

    def kill_everything(self):
        """kill -9 the daemon and every process under its data dir."""
        self.proc.kill()
        self.proc.wait()
        for pid in processes_under(self.root):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

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


EMAIL, PASSWORD = "bench@example.com", "bench-secret-123"


def instance_call(port, method, path, body=None, token=None, timeout=5.0):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = token
    data = json.dumps(body).encode() if body is not None else None
    status, raw = http_request(port, method, path, body=data, headers=headers, timeout=timeout)
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw


def placed(host, name):
    status, v = host.call("GET", "/api/v1/instances", timeout=10)
    if status != 200:
        return None
    for i in v.get("instances", []):
        if i["name"] == name:
            return i
    return None


def titles(port):
    out, page = set(), 1
    while True:
        status, v = instance_call(port, "GET", f"/api/collections/notes/records?perPage=500&page={page}&fields=title")
        if status != 200:
            return None
        out |= {r["title"] for r in v["items"]}
        if page >= v["totalPages"]:
            return out
        page += 1


def failover_round(run, hosts, workdir, lease_ttl):
    """One failover: an instance on hosts[run % 3], written to, its host
    killed; the kill-to-served time and the acknowledged writes lost."""
    victim = hosts[run % 3]
    watcher = hosts[(run + 1) % 3]
    name = f"f{run}"
    status, made = watcher.call("POST", "/api/v1/instances", {
        "name": name, "host": victim.name, "superuser_email": EMAIL, "superuser_password": PASSWORD})
    if status != 201:
        raise BenchError(f"create {name} on {victim.name}: {status} {str(made)[:300]}")
    port = made["port"]
    status, auth = instance_call(port, "POST", "/api/collections/_superusers/auth-with-password",
                                 {"identity": EMAIL, "password": PASSWORD})
    if status != 200:
        raise BenchError(f"superuser auth on {name}: {status}")
    status, body = instance_call(port, "POST", "/api/collections", {
        "name": "notes", "type": "base", "listRule": "", "viewRule": "", "createRule": "",
        "fields": [{"name": "title", "type": "text"}]}, token=auth["token"])
    if status != 200:
        raise BenchError(f"notes collection on {name}: {status} {str(body)[:200]}")
    target = f"file://{workdir}/replicas/{name}"
    status, body = victim.call("PUT", f"/api/v1/instances/{name}/replication", {"to": target})
    if status != 200:
        raise BenchError(f"replicate {name}: {status} {str(body)[:300]}")
    # Until the cluster knows the replica, the instance cannot be taken over.
    deadline = time.monotonic() + 30
    while True:
        status, raw = http_request(victim.api, "GET", f"/api/v1/instances/{name}",
                                   headers=victim.headers)
        i = placed(watcher, name)
        if i and i.get("host") == victim.name and status == 200:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"{name} never listed on {victim.name}")
        time.sleep(0.2)
    acked, stop = [], threading.Event()

    def writer():
        n = 0
        while not stop.is_set():
            n += 1
            try:
                status, _ = instance_call(port, "POST", "/api/collections/notes/records",
                                          {"title": f"w{n:06d}"}, timeout=1.0)
                if status == 200:
                    acked.append((time.monotonic(), f"w{n:06d}"))
            except OSError:
                pass
            time.sleep(0.02)

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(4 + lease_ttl / 5)  # writes flowing, replicated, and the desired state published
    killed = time.monotonic()
    victim.kill_everything()
    stop.set()
    t.join()
    acked = [(ts, title) for ts, title in acked if ts <= killed]
    span = acked[-1][0] - acked[0][0] if len(acked) > 1 else 1.0
    rate = len(acked) / span if span > 0 else 0.0
    # A failover keeps the port when it is free on the new host, as it is
    # here (one loopback): whatever answers on it after the kill is the new
    # copy. A list would ask the dead host too and wait for it.
    served, got = None, None
    deadline = killed + lease_ttl + 120
    while time.monotonic() < deadline:
        try:
            got = titles(port)
        except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
            got = None
        if got is not None:
            served = time.monotonic()
            break
        time.sleep(0.05)
    if served is None:
        raise BenchError(f"{name} was not served by another host within {lease_ttl + 120:.0f} s of the kill")
    i = placed(watcher, name)
    if not i or i.get("host") in (None, victim.name):
        raise BenchError(f"{name} answers on its port but is not listed on another host: {i}")
    missing = [title for _, title in acked if title not in got]
    victim.start()
    return served - killed, len(missing), len(acked), (len(missing) / rate if rate else 0.0)


def drain_round(hosts, workdir, n):
    """n replicated instances on host c, 20 records each; `host drain c`
    from host a; the time it took and the records missing afterwards."""
    a, c = hosts[0], hosts[2]
    names = [f"d{i}" for i in range(n)]
    for name in names:
        status, made = a.call("POST", "/api/v1/instances", {
            "name": name, "host": c.name, "superuser_email": EMAIL, "superuser_password": PASSWORD})
        if status != 201:
            raise BenchError(f"create {name} on c: {status} {str(made)[:300]}")
        port = made["port"]
        status, auth = instance_call(port, "POST", "/api/collections/_superusers/auth-with-password",
                                     {"identity": EMAIL, "password": PASSWORD})
        status, body = instance_call(port, "POST", "/api/collections", {
            "name": "notes", "type": "base", "listRule": "", "viewRule": "", "createRule": "",
            "fields": [{"name": "title", "type": "text"}]}, token=auth["token"])
        if status != 200:
            raise BenchError(f"notes collection on {name}: {status} {str(body)[:200]}")
        for k in range(20):
            instance_call(port, "POST", "/api/collections/notes/records", {"title": f"r{k:02d}"})
        status, body = c.call("PUT", f"/api/v1/instances/{name}/replication",
                              {"to": f"file://{workdir}/replicas/{name}"})
        if status != 200:
            raise BenchError(f"replicate {name}: {status} {str(body)[:300]}")
    time.sleep(6)  # the replicas published as the instances' desired state
    t0 = time.perf_counter()
    status, report = a.call("POST", f"/api/v1/hosts/{c.name}/drain", {}, timeout=900)
    took = time.perf_counter() - t0
    # The unreplicated instances of the first rows stay on c, and say why.
    stuck = [l for l in report.get("left", []) if l["name"] in names] if status == 200 else []
    if status != 200 or stuck:
        raise BenchError(f"drain: {status} {str(report)[:500]}")
    moved = len(report["moved"])
    stayed = len(report.get("left", []))
    lost, per = 0, []
    for name in names:
        i = placed(a, name)
        if not i or i.get("host") == c.name:
            raise BenchError(f"{name} still on c after the drain: {i}")
        got = titles(i["port"]) or set()
        lost += sum(1 for k in range(20) if f"r{k:02d}" not in got)
    status, events = c.call("GET", "/api/v1/events?limit=1000")
    for e in (events.get("events", []) if isinstance(events, dict) else []):
        if e.get("action") != "move":
            continue
        detail = e.get("detail", "")
        if " in " in detail and " s;" in detail:
            try:
                per.append(float(detail.split(" in ", 1)[1].split(" s;", 1)[0]))
            except ValueError:
                pass
    c.call("POST", f"/api/v1/hosts/{c.name}/undrain", {})
    return took, lost, per, moved, stayed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=10, help="rounds of each measurement (10)")
    ap.add_argument("--requests", type=int, default=2000, help="proxied requests per round (2000)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients for the loaded rows (8)")
    ap.add_argument("--instances", type=int, default=30, help="instances spread over the hosts (30)")
    ap.add_argument("--failovers", type=int, default=10, help="failover rounds (10; 0: none)")
    ap.add_argument("--drain", type=int, default=10, help="replicated instances a drain moves (10; 0: none)")
    ap.add_argument("--lease-ttl", type=float, default=10.0,
                    help="the hosts' --lease-ttl in seconds (10, the default)")
    args = ap.parse_args()
    litestream = DEPS / "litestream"
    if (args.failovers or args.drain) and not litestream.exists():
        raise BenchError("litestream is missing: run scripts/fetch-test-deps")
    extra = ["--litestream", str(litestream), "--lease-ttl", f"{args.lease_ttl}s"]

    nats, hosts = None, []
    try:
        log("starting a three-node NATS cluster")
        nats = Nats(args.workdir)
        for name in ("a", "b", "c"):
            log(f"starting host {name}")
            hosts.append(Host(args.workdir, name, nats, extra))
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
        if args.failovers:
            rounds = []
            for run in range(args.failovers):
                log(f"failover {run + 1} of {args.failovers}")
                rounds.append(failover_round(run, hosts, args.workdir, args.lease_ttl))
            took = [r[0] for r in rounds]
            after = [r[0] - args.lease_ttl for r in rounds]
            lost_s = [r[3] for r in rounds]
            print()
            print(f"Failover: {args.failovers} rounds, lease time {args.lease_ttl:g} s, heartbeat 2 s, "
                  "a write every 20 ms")
            print()
            print("| what | min | p50 | max |")
            print("|---|---|---|---|")
            print(f"| kill → served by another host with its data | {min(took):.2f} s | {pct(took, 50):.2f} s | {max(took):.2f} s |")
            print(f"| same, less the lease time (goal ≤ 10 s) | {min(after):.2f} s | {pct(after, 50):.2f} s | {max(after):.2f} s |")
            print(f"| acknowledged writes lost, in seconds of writes (goal ≤ 1 s) | {min(lost_s):.2f} s | {pct(lost_s, 50):.2f} s | {max(lost_s):.2f} s |")
            print()
            print("Per round (kill → served, writes lost of acknowledged): " + ", ".join(
                f"{r[0]:.1f} s {r[1]}/{r[2]}" for r in rounds))
        if args.drain:
            log(f"drain: {args.drain} replicated instances on host c")
            took, lost, per, moved, stayed = drain_round(hosts, args.workdir, args.drain)
            print()
            print(f"Drain of host c: {args.drain} replicated instances made for it (20 records each), "
                  f"{moved} moved in all (with the replicated ones earlier rounds left there), "
                  f"{stayed} unreplicated left there, as they must be")
            print()
            print("| what | value |")
            print("|---|---|")
            print(f"| `host drain c`, whole ({moved} moves) | {took:.2f} s |")
            print(f"| per instance moved | {took / max(moved, 1):.2f} s |")
            print(f"| slowest move (from the audit log) | {max(per) if per else 0:.2f} s |")
            print(f"| records missing after the drain | {lost} of {args.drain * 20} |")
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
