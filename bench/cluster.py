#!/usr/bin/env python3
"""Helpers for bench/cluster.sh (standard library only).

Subcommands:

  free-ports N
      Prints N distinct free TCP ports on 127.0.0.1 (all bound at once, then released).

  sm-leader --urls U1,U2,U3 [--timeout S]
      Waits until every node answers GET /ready with 200 and all agree (GET /status,
      "leader": {"id": N}) on one leader among them; prints the leader's node id. Exit 1 on
      timeout, with the last state seen on stderr.

  etcd-leader --urls U1,U2,U3 [--timeout S]
      Waits until every member answers POST /v3/maintenance/status and all name the same
      leader, which is one of them; prints the 0-based index of the leader in --urls.

  write --urls U1,U2 --connections 16 --duration S --out FILE [--ready-file F] ...
      The failover writer: CONNECTIONS keep-alive connections (spread round-robin over the
      URLs) each store unique keys <prefix><conn>-<seq> continuously for DURATION seconds.
      Every acknowledged store (a 200) is written to FILE as "send_ns ack_ns key" (wall clock,
      time.time_ns(), the same clock as `date +%s%N`). Failures (non-200 answers, refused or
      reset connections, timeouts) are counted by kind; after a failure the connection is
      re-opened and the worker pauses 10 ms so that a down cluster is not hammered. Prints a
      JSON summary.

  analyze --acks FILE --kill-ns N [--end-ns N] [--verify-url URL] [--verify-count K]
      Failover figures from a writer's ack file and the time of the kill -9:
        recovered: whether any store *sent* after the kill was acknowledged;
        gap_ms: the longest interval between consecutive acknowledged stores from 1 s before
                the kill to the end of the run (the "failover gap");
        first_ack_ms: from the kill to the first store acknowledged after it (may be a
                "straggler": a store in flight at the kill that a survivor answered late);
        first_sent_ack_ms: from the kill to the first acknowledgement of a store sent after
                it (the time until the cluster accepted writes again);
      not recovered: gap_ms_at_least, from the last ack to --end-ns (the writer's end).
      With --verify-url, fetches the K acknowledged keys nearest the kill on each side from
      that node and counts those missing (404 or no data: an acknowledged store must survive
      failover) and, apart, those unreadable (an error answer: unavailability, not loss).
      Prints JSON.
"""

import argparse
import asyncio
import http.client
import json
import os
import socket
import sys
import time
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from load import random_value, read_response  # noqa: E402  (bench/load.py)


# --------------------------------------------------------------------------------------------
# small synchronous HTTP helpers


def call(url, method, path, body=None, timeout=2.0):
    """One request on a fresh connection; returns (status, parsed JSON or None)."""
    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw or b"null")
        except ValueError:
            return resp.status, None
    finally:
        conn.close()


def ephemeral_range():
    """The kernel's ephemeral port range (source ports of outgoing connections, bind(0))."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def cmd_free_ports(args):
    """Prints N free ports from outside the ephemeral range: a bind(0) port, released for a
    server to bind, can meanwhile become an outgoing connection's source port ("Address
    already in use" when the node starts). Falls back to bind(0) when there is no room."""
    low, high = ephemeral_range()
    below, above = (10000, low - 1), (high + 1, 65535)
    first, last = max(below, above, key=lambda r: r[1] - r[0])
    socks = []
    try:
        if last - first < 1000:
            for _ in range(args.n):
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                socks.append(s)
        else:
            span = last - first + 1
            start = (os.getpid() * 7919 + int(time.time() * 1000)) % span
            for i in range(span):
                if len(socks) == args.n:
                    break
                s = socket.socket()
                try:
                    s.bind(("127.0.0.1", first + (start + i) % span))
                except OSError:
                    s.close()
                    continue
                socks.append(s)
        if len(socks) < args.n:
            sys.exit(f"no {args.n} free ports in {first}..{last}")
        print(" ".join(str(s.getsockname()[1]) for s in socks))
    finally:
        for s in socks:
            s.close()


def poll_until(timeout, probe):
    """Calls probe() every 50 ms until it returns a non-None value or `timeout` s pass."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            result, last = probe()
        except Exception as e:  # a node not up yet: keep polling
            result, last = None, repr(e)
        if result is not None:
            return result
        time.sleep(0.05)
    print(f"timed out after {timeout}s; last state: {last}", file=sys.stderr)
    sys.exit(1)


def cmd_sm_leader(args):
    urls = args.urls.split(",")

    def probe():
        state = []
        for u in urls:
            try:
                ready, _ = call(u, "GET", "/ready")
                _, st = call(u, "GET", "/status")
                leader = (st.get("leader") or {}).get("id") if st else None
                state.append((u, ready, st.get("role") if st else None, leader))
            except OSError as e:
                state.append((u, repr(e), None, None))
        leaders = {s[3] for s in state}
        if all(s[1] == 200 for s in state) and len(leaders) == 1:
            (leader,) = leaders
            if leader is not None:
                return leader, state
        return None, state

    print(poll_until(args.timeout, probe))


def cmd_etcd_leader(args):
    urls = args.urls.split(",")

    def probe():
        members, leaders = [], set()
        for u in urls:
            status, st = call(u, "POST", "/v3/maintenance/status", {})
            if status != 200 or not st:
                return None, (u, status, st)
            members.append(st["header"]["member_id"])
            leaders.add(st.get("leader"))
        if len(leaders) == 1:
            (leader,) = leaders
            if leader in members:
                return members.index(leader), (members, leaders)
        return None, (members, leaders)

    print(poll_until(args.timeout, probe))


# --------------------------------------------------------------------------------------------
# failover writer


async def writer_worker(n, url, args, deadline, acks, errors):
    u = urlsplit(url)
    host, port = u.hostname, u.port
    reader = writer = None
    seq = 0
    while time.monotonic() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), timeout=args.request_timeout
                )
            key = f"{args.prefix}{n}-{seq}"
            seq += 1
            body = json.dumps(
                {"namespace": "bench", "key": key, "data": random_value(args.value_size), "ttl": args.ttl}
            ).encode()
            req = (
                f"POST /store_data HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            sent = time.time_ns()
            writer.write(req)
            status, reply = await asyncio.wait_for(read_response(reader), timeout=args.request_timeout)
            if status == 200:
                acks.append((sent, time.time_ns(), key))
                continue
            kind = f"http {status}"
            try:
                kind += " " + json.loads(reply)["error"]["code"]
            except (ValueError, KeyError, TypeError):
                pass
        except asyncio.TimeoutError:
            kind = "timeout"
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
            kind = type(e).__name__
        errors[kind] = errors.get(kind, 0) + 1
        if writer is not None:
            writer.close()
        reader = writer = None
        await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def writer_main(args):
    urls = args.urls.split(",")
    acks, errors = [], {}
    deadline = time.monotonic() + args.duration
    tasks = [
        asyncio.create_task(writer_worker(n, urls[n % len(urls)], args, deadline, acks, errors))
        for n in range(args.connections)
    ]
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write(f"{time.time_ns()}\n")
    # Bounded: every request is bounded by --request-timeout, so this ends shortly after the
    # deadline; the extra margin is a safety net.
    done, pending = await asyncio.wait(tasks, timeout=args.duration + 2 * args.request_timeout + 5)
    for t in pending:
        t.cancel()
    return acks, errors, len(pending)


def cmd_write(args):
    started = time.monotonic()
    acks, errors, stuck = asyncio.run(writer_main(args))
    acks.sort(key=lambda a: a[1])
    with open(args.out, "w") as f:
        for sent, acked, key in acks:
            f.write(f"{sent} {acked} {key}\n")
    secs = time.monotonic() - started
    print(json.dumps({"acks": len(acks), "rate": round(len(acks) / secs, 1), "errors": errors,
                      "stuck_workers": stuck, "end_ns": time.time_ns()}))


# --------------------------------------------------------------------------------------------
# failover analysis


def cmd_analyze(args):
    acks = []
    with open(args.acks) as f:
        for line in f:
            sent, acked, key = line.split()
            acks.append((int(sent), int(acked), key))
    acks.sort(key=lambda a: a[1])
    kill = args.kill_ns
    before = [a for a in acks if a[1] <= kill]
    after = [a for a in acks if a[1] > kill]
    # Stores sent before the kill but answered after it (a survivor relaying the old leader's
    # answer, within a millisecond or so) do not show that the cluster recovered; a store
    # *sent* after the kill and acknowledged does.
    sent_after = [a for a in after if a[0] > kill]
    out = {
        "acks_before_kill": len(before),
        "acks_after_kill": len(after),
        "stragglers": len(after) - len(sent_after),
        "recovered": bool(sent_after),
    }
    if not before:
        out["error"] = "no acknowledged store before the kill"
        print(json.dumps(out))
        sys.exit(1)
    if after:
        out["first_ack_ms"] = round((after[0][1] - kill) / 1e6, 1)
    if not sent_after:
        # Writes never resumed while the writer ran: the gap is at least from the last ack
        # to the writer's end.
        if args.end_ns:
            out["gap_ms_at_least"] = round((args.end_ns - acks[-1][1]) / 1e6, 1)
        print(json.dumps(out))
        return
    out["first_sent_ack_ms"] = round((sent_after[0][1] - kill) / 1e6, 1)
    # The longest interval between consecutive acks, from 1 s before the kill to the end
    # (including the interval from the last ack to the writer's end, if --end-ns is given).
    window = [a[1] for a in acks if a[1] >= kill - 1_000_000_000]
    if args.end_ns:
        window.append(args.end_ns)
    gaps = [(window[i + 1] - window[i], window[i]) for i in range(len(window) - 1)]
    gap, gap_start = max(gaps)
    out["gap_ms"] = round(gap / 1e6, 1)
    out["gap_starts_ms_after_kill"] = round((gap_start - kill) / 1e6, 1)
    if args.verify_url:
        sample = before[-args.verify_count:] + after[: args.verify_count]
        # Missing: the node answered that the key is not there (404) or without its data.
        # Unreadable: the node did not answer the read (an error status or no answer); that
        # is unavailability, not loss, and is reported apart.
        missing, unreadable = [], []
        for _, _, key in sample:
            status, body = call(args.verify_url, "POST", "/fetch_data", {"namespace": "bench", "key": key}, timeout=5)
            if status == 200 and isinstance(body, dict) and "data" in body:
                continue
            found = f"{key}: {status} {str(body)[:100]}"
            (missing if status in (200, 404) else unreadable).append(found)
        out["verified"] = len(sample)
        out["missing"] = len(missing)
        out["missing_samples"] = missing[:3]
        out["unreadable"] = len(unreadable)
        out["unreadable_samples"] = unreadable[:3]
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("free-ports")
    s.add_argument("n", type=int)
    s.set_defaults(func=cmd_free_ports)

    for name, func in (("sm-leader", cmd_sm_leader), ("etcd-leader", cmd_etcd_leader)):
        s = sub.add_parser(name)
        s.add_argument("--urls", required=True)
        s.add_argument("--timeout", type=float, default=60)
        s.set_defaults(func=func)

    s = sub.add_parser("write")
    s.add_argument("--urls", required=True)
    s.add_argument("--connections", type=int, default=16)
    s.add_argument("--duration", type=float, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--ready-file")
    s.add_argument("--prefix", default="fo-")
    s.add_argument("--value-size", type=int, default=1024)
    s.add_argument("--ttl", type=int, default=3600)
    s.add_argument("--request-timeout", type=float, default=5.0)
    s.set_defaults(func=cmd_write)

    s = sub.add_parser("analyze")
    s.add_argument("--acks", required=True)
    s.add_argument("--kill-ns", type=int, required=True)
    s.add_argument("--end-ns", type=int, help="when the writer stopped (its summary's end_ns)")
    s.add_argument("--verify-url")
    s.add_argument("--verify-count", type=int, default=100)
    s.set_defaults(func=cmd_analyze)

    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
