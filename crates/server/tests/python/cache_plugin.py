"""One monitoring plugin: speaks exactly plugnpy's Cache Manager requests to its LOCAL node.

Standard library only. Used by tests/cache_cluster.rs and bench/cache_cluster.py: one process
per plugin, each started with the plugnpy environment (OPSVIEW_CACHE_MANAGER_HOST, _PORT,
_NAMESPACE) of the node it runs on. Prints one JSON line:
{"ok": true, "result": ..., "secs": elapsed} or {"ok": false, "error": "...", "secs": ...}.

    cache_plugin.py get KEY MAX_WAIT_TIME        plugnpy's get_data
    cache_plugin.py set KEY DATA TTL             plugnpy's set_data
    cache_plugin.py compute KEY MARKER_DIR       CacheManagerUtils.get_via_cachemanager
    cache_plugin.py loop SECONDS KEY...          get_data then set_data on each key, again and
                                                 again; result: {"calls", "hits", "errors",
                                                 "slowest"}
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cache_compat import (  # noqa: E402  (plugnpy's client, reproduced on the wire)
    CacheManagerClient,
    ResultError,
    expensive,
    get_via_cachemanager,
)


def loop(seconds, keys):
    calls = hits = 0
    errors = []
    slowest = 0.0
    end = time.time() + seconds
    n = 0
    while time.time() < end:
        for key in keys:
            # A fresh client per call, as a plugin run is: a dead connection is not reused.
            for call in ("get", "set"):
                t = time.time()
                try:
                    client = CacheManagerClient()
                    if call == "get":
                        got = client.get_data(key, max_wait_time=0)
                        if got["data"] is not None:
                            hits += 1
                    else:
                        client.set_data(key, "value-{}".format(n), 60)
                except ResultError as exc:
                    errors.append(str(exc))
                calls += 1
                slowest = max(slowest, time.time() - t)
                n += 1
    return {"calls": calls, "hits": hits, "errors": errors[:5], "slowest": slowest}


def main():
    cmd = sys.argv[1]
    started = time.time()
    try:
        if cmd == "get":
            client = CacheManagerClient()
            result = client.get_data(sys.argv[2], max_wait_time=int(sys.argv[3]))
        elif cmd == "set":
            client = CacheManagerClient()
            result = client.set_data(sys.argv[2], sys.argv[3], ttl=int(sys.argv[4]))
        elif cmd == "compute":
            result = get_via_cachemanager(sys.argv[2], 60, expensive, sys.argv[3], 42)
        elif cmd == "loop":
            result = loop(float(sys.argv[2]), sys.argv[3:])
        else:
            raise SystemExit("unknown command {}".format(cmd))
        out = {"ok": True, "result": result}
    except ResultError as exc:
        out = {"ok": False, "error": str(exc)}
    out["secs"] = time.time() - started
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
