"""plugnpy's Cache Manager client, reproduced on the wire, against statemanager.

Standard library only. ``CacheManagerClient`` below sends what plugnpy 2.1.0's client sends
(``POST /get_data`` / ``/set_data`` with ``Referer`` and ``Content-Type: application/json``,
2xx bodies parsed as JSON, non-2xx raising ``ResultError("<code>: <reason> - <body>")``), and
``get_via_cachemanager`` follows ``CacheManagerUtils.get_via_cachemanager``: hash the key
(SHA-256 hex), ``get_data`` with a 30 s wait; if granted the lock, compute, JSON-encode,
``set_data`` and return it; else JSON-decode the data.

Run: OPSVIEW_CACHE_MANAGER_HOST=127.0.0.1 OPSVIEW_CACHE_MANAGER_PORT=8184 \\
     OPSVIEW_CACHE_MANAGER_NAMESPACE='PLUGIN#check_example' python3 cache_compat.py
"""

import hashlib
import http.client
import json
import multiprocessing
import os
import time
import unittest


class ResultError(Exception):
    """plugnpy's exception."""


class CacheManagerClient:
    def __init__(self):
        self.host = os.environ["OPSVIEW_CACHE_MANAGER_HOST"]
        self.port = int(os.environ["OPSVIEW_CACHE_MANAGER_PORT"])
        self.namespace = os.environ["OPSVIEW_CACHE_MANAGER_NAMESPACE"]
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def _post(self, path, payload):
        headers = {"Referer": self.host, "Content-Type": "application/json"}
        try:
            self.conn.request("POST", path, body=json.dumps(payload), headers=headers)
            resp = self.conn.getresponse()
            body = resp.read().decode("utf-8")
        except (OSError, http.client.HTTPException) as exc:
            raise ResultError("Failed to connect to cache manager: {}".format(exc))
        if not 200 <= resp.status < 300:
            raise ResultError("{}: {} - {}".format(resp.status, resp.reason, body))
        return json.loads(body) if body else None

    def get_data(self, key, max_wait_time=30):
        return self._post(
            "/get_data",
            {"namespace": self.namespace, "key": key, "max_wait_time": max_wait_time},
        )

    def set_data(self, key, data, ttl=900):
        return self._post(
            "/set_data", {"namespace": self.namespace, "key": key, "data": data, "ttl": ttl}
        )


def get_via_cachemanager(key, ttl, func, *args):
    client = CacheManagerClient()
    hashed = hashlib.sha256(key.encode("utf-8")).hexdigest()
    response = client.get_data(hashed, max_wait_time=30)
    if response["lock"]:
        try:
            value = func(*args)
        except Exception as exc:  # plugnpy caches the error like data
            value = {"error": str(exc)}
        client.set_data(hashed, json.dumps(value), ttl)
        return value
    if response["data"] is None:
        raise ResultError("Failed to retrieve data from cache manager")
    return json.loads(response["data"])


def expensive(marker_dir, value):
    """Computes slowly and leaves a file per computation, so the test can count them."""
    with open(os.path.join(marker_dir, "computed-{}".format(os.getpid())), "w") as f:
        f.write(str(value))
    time.sleep(1.0)
    return {"value": value}


def plugin_run(args):
    key, marker_dir = args
    return get_via_cachemanager(key, 60, expensive, marker_dir, 42)


class CacheCompat(unittest.TestCase):
    def test_set_then_get(self):
        c = CacheManagerClient()
        self.assertEqual(c.set_data("k-{}".format(time.time()), "v", 60), "ok")

    def test_concurrent_plugins_compute_once(self):
        import tempfile

        key = "shared-{}".format(time.time())
        with tempfile.TemporaryDirectory() as marker_dir:
            with multiprocessing.Pool(6) as pool:
                results = pool.map(plugin_run, [(key, marker_dir)] * 6)
            computed = [n for n in os.listdir(marker_dir) if n.startswith("computed-")]
        self.assertEqual(results, [{"value": 42}] * 6)
        self.assertEqual(len(computed), 1, "exactly one plugin computed the value")

    def test_cached_value_is_reused(self):
        key = "reuse-{}".format(time.time())
        self.assertEqual(get_via_cachemanager(key, 60, lambda: [1, 2]), [1, 2])
        self.assertEqual(get_via_cachemanager(key, 60, lambda: self.fail("recomputed")), [1, 2])

    def test_error_body_is_json(self):
        c = CacheManagerClient()
        with self.assertRaises(ResultError) as ctx:
            c.set_data("k", "v", ttl=0)
        self.assertTrue(str(ctx.exception).startswith("400: Bad Request - {"))


if __name__ == "__main__":
    unittest.main(verbosity=2)
