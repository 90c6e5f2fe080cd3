#!/usr/bin/env python3
"""Bulk loader for the benchmarks: stores keys <prefix>0 .. <prefix>(count-1) exactly once each.

Used to preload data before the timed wrk runs, and to fill a server for the memory and
restart measurements. wrk cannot do this: it runs for a duration, not a number of requests,
and cannot tell which key a response belongs to.

Plain asyncio over raw HTTP/1.1 keep-alive connections (stdlib only, no extra packages):
`--concurrency` connections, each taking the next key from a shared counter. Every response
is checked: anything but 200 (and, for etcd, a body that is not a put response) is counted as
a failure. The whole run is bounded by `--timeout` seconds.

Values are random (base64 of os.urandom), different for every key, so that storage-level
compression cannot shrink them.

Prints one JSON line: {"ok": N, "failed": N, "seconds": S, "rate": R, "samples": [...]}.
Exit status 0 only if every key was stored.

Examples:
  load.py --kind statemanager --url http://127.0.0.1:8184 --count 10000
  load.py --kind etcd --url http://127.0.0.1:2379 --count 10000
"""

import argparse
import asyncio
import base64
import json
import os
import sys
import time
from urllib.parse import urlsplit


def random_value(size):
    """`size` random characters from the base64 alphabet (plain ASCII, JSON-safe)."""
    raw = base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode("ascii")
    return raw[:size]


def body_statemanager(args, key):
    return json.dumps(
        {
            "namespace": args.namespace,
            "key": key,
            "data": random_value(args.value_size),
            "ttl": args.ttl,
        }
    ).encode()


def body_etcd(args, key):
    b64 = lambda s: base64.b64encode(s.encode()).decode("ascii")
    return json.dumps({"key": b64(key), "value": b64(random_value(args.value_size))}).encode()


async def read_response(reader):
    """Reads one HTTP/1.1 response with a Content-Length body; returns (status, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            body += chunk[:-2]
        return status, body
    body = await reader.readexactly(length) if length else b""
    return status, body


async def worker(args, host, port, path, make_body, state):
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while True:
            i = state["next"]
            if i >= args.start + args.count:
                return
            state["next"] = i + 1
            body = make_body(args, f"{args.prefix}{i}")
            request = (
                f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body
            writer.write(request)
            status, reply = await read_response(reader)
            good = status == 200
            if good and args.kind == "etcd":
                good = b'"header"' in reply
            if good:
                state["ok"] += 1
            else:
                state["failed"] += 1
                if len(state["samples"]) < 5:
                    state["samples"].append(f"{status} {reply[:200]!r}")
    finally:
        writer.close()


async def main_async(args):
    url = urlsplit(args.url)
    host, port = url.hostname, url.port
    if args.kind == "statemanager":
        path, make_body = "/store_data", body_statemanager
    else:
        path, make_body = "/v3/kv/put", body_etcd
    state = {"next": args.start, "ok": 0, "failed": 0, "samples": []}
    started = time.monotonic()
    tasks = [
        asyncio.create_task(worker(args, host, port, path, make_body, state))
        for _ in range(args.concurrency)
    ]
    timed_out = False
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=args.timeout)
    except asyncio.TimeoutError:
        timed_out = True
    except Exception as e:  # a connection error: report it, do not hide it
        state["samples"].append(f"error: {e!r}")
        for t in tasks:
            t.cancel()
    seconds = time.monotonic() - started
    return state, seconds, timed_out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=["statemanager", "etcd"], required=True)
    p.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8184")
    p.add_argument("--count", type=int, required=True, help="number of distinct keys")
    p.add_argument("--start", type=int, default=0, help="first key number")
    p.add_argument("--prefix", default="k")
    p.add_argument("--namespace", default="bench")
    p.add_argument("--value-size", type=int, default=1024)
    p.add_argument("--ttl", type=int, default=3600, help="statemanager ttl, seconds")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--timeout", type=float, default=900, help="whole-run limit, seconds")
    args = p.parse_args()

    state, seconds, timed_out = asyncio.run(main_async(args))
    result = {
        "ok": state["ok"],
        "failed": state["failed"],
        "seconds": round(seconds, 2),
        "rate": round(state["ok"] / seconds, 1) if seconds > 0 else 0,
        "timed_out": timed_out,
        "samples": state["samples"],
    }
    print(json.dumps(result), flush=True)
    complete = state["ok"] == args.count and not timed_out
    sys.exit(0 if complete else 1)


if __name__ == "__main__":
    main()
