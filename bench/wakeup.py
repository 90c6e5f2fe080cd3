#!/usr/bin/env python3
"""Wake-up latency of /get_data waiters after /set_data (standard library only).

Each trial: one caller takes the lock (get_data, max_wait_time 10); WAITERS threads, each on
its own keep-alive connection, call get_data on the same key and block; after they have had
time to block, set_data is sent. A waiter's latency is the time from just before set_data was
sent until its own answer arrived. Prints a JSON summary (median, p99, max in ms), and fails
if any waiter did not get the value.

    python3 bench/wakeup.py --url http://127.0.0.1:8184 --trials 100 --waiters 8
"""

import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse


def connect(url):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)


def post(conn, path, payload):
    conn.request("POST", path, body=json.dumps(payload), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read() or b"null")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--waiters", type=int, default=8)
    ap.add_argument("--settle", type=float, default=0.05, help="seconds for waiters to block")
    args = ap.parse_args()

    setter = connect(args.url)
    conns = [connect(args.url) for _ in range(args.waiters)]
    latencies, failures = [], 0
    for trial in range(args.trials):
        key = "wake-{}-{}".format(time.time(), trial)
        status, body = post(setter, "/get_data", {"namespace": "bench", "key": key, "max_wait_time": 10})
        if status != 200 or not body["lock"]:
            raise SystemExit("trial {}: no lock: {} {}".format(trial, status, body))
        answers = [None] * args.waiters

        def wait(i):
            answers[i] = (post(conns[i], "/get_data", {"namespace": "bench", "key": key, "max_wait_time": 10}), time.perf_counter())

        threads = [threading.Thread(target=wait, args=(i,)) for i in range(args.waiters)]
        for t in threads:
            t.start()
        time.sleep(args.settle)
        sent = time.perf_counter()
        post(setter, "/set_data", {"namespace": "bench", "key": key, "data": "value", "ttl": 60})
        for t in threads:
            t.join(timeout=15)
        for answer in answers:
            if answer is None or answer[0][1].get("data") != "value":
                failures += 1
                continue
            latencies.append((answer[1] - sent) * 1000.0)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else None
    print(json.dumps({
        "trials": args.trials,
        "waiters": args.waiters,
        "woken": len(latencies),
        "failures": failures,
        "median_ms": round(statistics.median(latencies), 3) if latencies else None,
        "p99_ms": round(p99, 3) if p99 is not None else None,
        "max_ms": round(latencies[-1], 3) if latencies else None,
    }))
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
