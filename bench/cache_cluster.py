#!/usr/bin/env python3
"""The shared cache's cost: get_data/set_data through a key's owner and through another node
of a 3-node cluster, against a single node, and the cross-node wake-up latency (standard
library only).

    cargo build --release
    python3 bench/cache_cluster.py --bin target/release/statemanager [--duration 5]

Starts one single node, measures it, stops it; then a 3-node cluster (all on 127.0.0.1, ports
picked free, temp dirs removed at the end, every process stopped by PID). Each timed run keeps
CONNECTIONS keep-alive connections busy for DURATION seconds with requests to NODE 1 only,
for random keys among KEYS (values of VALUE_SIZE bytes, preloaded for the get runs):

  single   set_data / get_data (hits) on the single node;
  owner    keys whose owner is node 1: answered from node 1's own cache;
  forward  keys owned by nodes 2 and 3: node 1 forwards each call over the peer stream.

Wake-up: a caller on node 2 takes the lock of a key owned by node 2; WAITERS callers on node 3
wait for it; a set_data is sent to node 1. Latency: from just before the set_data is sent
until a waiter's answer arrives (median, p99 over TRIALS x WAITERS). The same on the single
node for comparison.

The client is Python (asyncio, raw HTTP/1.1): on a 2-core machine it shares the cores with
the nodes and is itself a bottleneck, so the ratios between runs matter more than the
absolute figures. Prints a Markdown table and a JSON line.
"""

import argparse
import asyncio
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

NS = "PLUGIN#bench_cache"
MASK = (1 << 64) - 1


# --- the owner of a key: the same rendezvous hash as crates/cache/src/owner.rs ---------------
def key_hash(namespace, key):
    h = 0xCBF29CE484222325
    for b in namespace.encode() + b"\xff" + key.encode():
        h ^= b
        h = (h * 0x100000001B3) & MASK
    return h


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def owner(namespace, key, members):
    h = key_hash(namespace, key)
    return max(members, key=lambda m: (mix(h ^ mix((m + 0x9E3779B97F4A7C15) & MASK)), -m))


# --- processes -------------------------------------------------------------------------------
def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Node:
    def __init__(self, binary, workdir, config):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, "config.yaml"), "w") as f:
            f.write(config)
        addr = os.path.join(workdir, "addr.json")
        self.log = open(os.path.join(workdir, "server.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--config", os.path.join(workdir, "config.yaml"), "--port", "0",
             "--data-dir", os.path.join(workdir, "data"), "--log-stderr", "--addr-file", addr],
            stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while not os.path.exists(addr):
            if time.time() > deadline or self.proc.poll() is not None:
                raise SystemExit("node in {} did not start".format(workdir))
            time.sleep(0.05)
        with open(addr) as f:
            host, port = json.load(f)["http"].rsplit(":", 1)
        self.host, self.port = host, int(port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # our own child, by PID
            self.proc.wait()
        self.log.close()


def request(node, method, path, payload=None, timeout=30):
    conn = http.client.HTTPConnection(node.host, node.port, timeout=timeout)
    body = None if payload is None else json.dumps(payload)
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, json.loads(data or b"null")


def wait_cluster(nodes, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            ready = all(request(n, "GET", "/ready", timeout=2)[0] == 200 for n in nodes)
            leaders = {request(n, "GET", "/status", timeout=2)[1]["leader"]["id"] for n in nodes}
            if ready and len(leaders) == 1:
                return
        except (OSError, TypeError, KeyError, http.client.HTTPException):
            pass
        time.sleep(0.1)
    raise SystemExit("the nodes never agreed on a leader")


# --- load ------------------------------------------------------------------------------------
async def worker(node, make, end, latencies, errors):
    reader, writer = await asyncio.open_connection(node.host, node.port)
    head = "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n"
    while time.perf_counter() < end:
        path, body = make()
        raw = json.dumps(body).encode()
        t = time.perf_counter()
        writer.write(head.format(path, len(raw)).encode() + raw)
        status = int((await reader.readline()).split()[1])
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        answer = await reader.readexactly(length)
        latencies.append(time.perf_counter() - t)
        if status != 200 or (path == "/get_data" and json.loads(answer)["data"] is None):
            errors.append((status, answer[:200]))
    writer.close()


def timed(node, make, duration, connections):
    latencies, errors = [], []

    async def run():
        end = time.perf_counter() + duration
        await asyncio.gather(*(worker(node, make, end, latencies, errors) for _ in range(connections)))

    asyncio.run(run())
    latencies.sort()
    return {
        "rps": round(len(latencies) / duration),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "errors": len(errors),
        "first_error": repr(errors[0]) if errors else None,
    }


def measure(node, keys, value, args):
    def setter():
        return "/set_data", {"namespace": NS, "key": random.choice(keys), "data": value, "ttl": 3600}

    def getter():
        return "/get_data", {"namespace": NS, "key": random.choice(keys), "max_wait_time": 0}

    for k in keys:  # preload: every get below is a hit
        assert request(node, "POST", "/set_data", {"namespace": NS, "key": k, "data": value, "ttl": 3600})[0] == 200
    return {
        "set": timed(node, setter, args.duration, args.connections),
        "get": timed(node, getter, args.duration, args.connections),
    }


# --- wake-up ---------------------------------------------------------------------------------
def wakeup(locker, waiters_node, setter, key_of, args):
    samples, failures = [], 0
    for trial in range(args.trials):
        key = key_of(trial)
        status, body = request(locker, "POST", "/get_data", {"namespace": NS, "key": key, "max_wait_time": 10})
        if status != 200 or not body["lock"]:
            raise SystemExit("trial {}: no lock: {} {}".format(trial, status, body))
        answers = [None] * args.waiters
        conns = [http.client.HTTPConnection(waiters_node.host, waiters_node.port, timeout=30) for _ in range(args.waiters)]

        def wait(i):
            payload = json.dumps({"namespace": NS, "key": key, "max_wait_time": 10})
            conns[i].request("POST", "/get_data", body=payload, headers={"Content-Type": "application/json"})
            got = json.loads(conns[i].getresponse().read())
            answers[i] = (got, time.perf_counter())

        threads = [threading.Thread(target=wait, args=(i,)) for i in range(args.waiters)]
        for t in threads:
            t.start()
        time.sleep(args.settle)
        sent = time.perf_counter()
        request(setter, "POST", "/set_data", {"namespace": NS, "key": key, "data": "value", "ttl": 60})
        for t in threads:
            t.join()
        for got, at in answers:
            if got["data"] != "value":
                failures += 1
            else:
                samples.append(at - sent)
        for c in conns:
            c.close()
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples) * 1000, 2),
        "p99_ms": round(samples[int(len(samples) * 0.99)] * 1000, 2),
        "max_ms": round(samples[-1] * 1000, 2),
        "samples": len(samples),
        "failures": failures,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/statemanager")
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--keys", type=int, default=3000)
    ap.add_argument("--value-size", type=int, default=1024)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--waiters", type=int, default=4)
    ap.add_argument("--settle", type=float, default=0.05)
    args = ap.parse_args()
    value = "".join(random.choice("abcdefghij") for _ in range(args.value_size))
    keys = ["k{}".format(i) for i in range(args.keys)]
    tmp = tempfile.mkdtemp(prefix="cache-bench-")
    nodes = []
    results = {}
    try:
        single = Node(args.bin, os.path.join(tmp, "single"), "log_level: warning\n")
        nodes.append(single)
        wait_cluster([single])
        results["single"] = measure(single, keys, value, args)
        results["single"]["wakeup"] = wakeup(single, single, single, lambda t: "wake-{}".format(t), args)
        single.stop()

        ports = free_ports(3)
        peers = "".join("  {}: 127.0.0.1:{}\n".format(i + 1, p) for i, p in enumerate(ports))
        cluster = []
        for i, p in enumerate(ports):
            config = "node_id: {}\npeer_listen: 127.0.0.1:{}\npeers:\n{}log_level: warning\n".format(i + 1, p, peers)
            cluster.append(Node(args.bin, os.path.join(tmp, "node{}".format(i + 1)), config))
        nodes.extend(cluster)
        wait_cluster(cluster)
        owned = [k for k in keys if owner(NS, k, [1, 2, 3]) == 1]
        others = [k for k in keys if owner(NS, k, [1, 2, 3]) != 1]
        results["owner"] = measure(cluster[0], owned, value, args)
        # The Python hash above must be the server's: node 1 holds every key it owns, the
        # others hold none of them.
        held = [request(n, "GET", "/status")[1]["cache_items"] for n in cluster]
        if held != [len(owned), 0, 0]:
            raise SystemExit("owner hash disagrees with the server: items held {}".format(held))
        results["forward"] = measure(cluster[0], others, value, args)
        wake_keys = [k for k in ("wake-{}".format(i) for i in range(100 * args.trials)) if owner(NS, k, [1, 2, 3]) == 2]
        results["forward"]["wakeup"] = wakeup(cluster[1], cluster[2], cluster[0], lambda t: wake_keys[t], args)
    finally:
        for n in nodes:
            n.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    s = results["single"]
    print("| run | set_data req/s (p50 / p99 ms) | get_data hits req/s (p50 / p99 ms) | ratio to single node (set, get) |")
    print("|---|---|---|---|")
    for name in ("single", "owner", "forward"):
        r = results[name]
        print("| {} | {} ({} / {}) | {} ({} / {}) | {:.2f}, {:.2f} |".format(
            name, r["set"]["rps"], r["set"]["p50_ms"], r["set"]["p99_ms"],
            r["get"]["rps"], r["get"]["p50_ms"], r["get"]["p99_ms"],
            r["set"]["rps"] / s["set"]["rps"], r["get"]["rps"] / s["get"]["rps"]))
    for name in ("single", "forward"):
        w = results[name]["wakeup"]
        print("wake-up {}: median {} ms, p99 {} ms, max {} ms ({} samples, {} failures)".format(
            name, w["median_ms"], w["p99_ms"], w["max_ms"], w["samples"], w["failures"]))
    print(json.dumps(results))
    errors = sum(results[n][op]["errors"] for n in ("single", "owner", "forward") for op in ("set", "get"))
    if errors:
        sys.exit("{} requests failed".format(errors))


if __name__ == "__main__":
    main()
