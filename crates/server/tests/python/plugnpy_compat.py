"""Sends exactly the requests Opsview's plugnpy sends, and checks plugnpy's view of the answers.

Standard library only. ``PlugnpyStateManager`` below reproduces plugnpy's
``StateManagerUtils``/``StateManagerClient`` wire behaviour (plugnpy/statemanager.py): a
keep-alive HTTP connection to OPSVIEW_STATE_MANAGER_HOST:PORT, headers ``Referer: <host>`` and
``Content-Type: application/json``, ``POST /store_data`` with ``timestamp`` always sent
(``time.time()`` when the caller gave none or 0), any 2xx is success, 404 on fetch means None,
anything else raises ``StateManagerStoreError("{status}: {reason} - {body}")``.

Run: OPSVIEW_STATE_MANAGER_HOST=127.0.0.1 OPSVIEW_STATE_MANAGER_PORT=8184 \
     OPSVIEW_STATE_MANAGER_NAMESPACE='PLUGIN#check_example' python3 plugnpy_compat.py
"""

import http.client
import json
import os
import time
import unittest


class StateManagerStoreError(Exception):
    """plugnpy's exception for every failure."""


class PlugnpyStateManager:
    """The wire behaviour of plugnpy's StateManagerUtils."""

    def __init__(self):
        self.host = os.environ["OPSVIEW_STATE_MANAGER_HOST"]
        self.port = int(os.environ["OPSVIEW_STATE_MANAGER_PORT"])
        self.namespace = os.environ["OPSVIEW_STATE_MANAGER_NAMESPACE"]
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def _post(self, path, payload):
        headers = {"Referer": self.host, "Content-Type": "application/json"}
        try:
            self.conn.request("POST", path, body=json.dumps(payload), headers=headers)
            resp = self.conn.getresponse()
            body = resp.read().decode("utf-8")
        except (OSError, http.client.HTTPException) as exc:
            raise StateManagerStoreError("Failed to connect to state manager: {}".format(exc))
        return resp.status, resp.reason, body

    def store_data(self, key, data, ttl=3600, timestamp=None):
        if not timestamp:
            timestamp = time.time()
        payload = {
            "namespace": self.namespace,
            "key": key,
            "data": data,
            "ttl": ttl,
            "timestamp": timestamp,
        }
        status, reason, body = self._post("/store_data", payload)
        if not 200 <= status < 300:
            raise StateManagerStoreError("{}: {} - {}".format(status, reason, body))

    def fetch_data(self, key):
        status, reason, body = self._post(
            "/fetch_data", {"namespace": self.namespace, "key": key}
        )
        if status == 404:
            return None
        if not 200 <= status < 300:
            raise StateManagerStoreError("{}: {} - {}".format(status, reason, body))
        return json.loads(body)["data"]


class PlugnpyCompat(unittest.TestCase):
    def setUp(self):
        self.client = PlugnpyStateManager()
        self.key = "key-{}-{}".format(self.id(), time.time())

    def test_store_then_fetch(self):
        self.client.store_data(self.key, "hello", ttl=3600)
        self.assertEqual(self.client.fetch_data(self.key), "hello")

    def test_structured_data_round_trips_as_json_text(self):
        value = json.dumps({"counter": 42, "when": 1700000000.5, "name": "ünïcode ✓"})
        self.client.store_data(self.key, value, ttl=60)
        self.assertEqual(json.loads(self.client.fetch_data(self.key))["counter"], 42)

    def test_missing_key_is_none(self):
        self.assertIsNone(self.client.fetch_data(self.key + "-never-stored"))

    def test_update_replaces(self):
        self.client.store_data(self.key, "one", ttl=60)
        self.client.store_data(self.key, "two", ttl=60)
        self.assertEqual(self.client.fetch_data(self.key), "two")

    def test_future_timestamp_is_accepted_as_now(self):
        self.client.store_data(self.key, "future", ttl=60, timestamp=time.time() + 86400)
        self.assertEqual(self.client.fetch_data(self.key), "future")

    def test_older_timestamp_raises_with_readable_body(self):
        self.client.store_data(self.key, "new", ttl=60)
        with self.assertRaises(StateManagerStoreError) as ctx:
            self.client.store_data(self.key, "old", ttl=60, timestamp=time.time() - 3600)
        message = str(ctx.exception)
        self.assertTrue(message.startswith("409: Conflict - "), message)
        self.assertIn('"code":"conflict"', message)
        self.assertEqual(self.client.fetch_data(self.key), "new")

    def test_bad_ttl_raises_400(self):
        with self.assertRaises(StateManagerStoreError) as ctx:
            self.client.store_data(self.key, "x", ttl=0)
        self.assertTrue(str(ctx.exception).startswith("400: Bad Request - "))
        self.assertIn("ttl", str(ctx.exception))

    def test_expiry(self):
        self.client.store_data(self.key, "brief", ttl=1)
        self.assertEqual(self.client.fetch_data(self.key), "brief")
        deadline = time.time() + 10
        while self.client.fetch_data(self.key) is not None:
            self.assertLess(time.time(), deadline, "item never expired")
            time.sleep(0.1)

    def test_keep_alive_connection_is_reused(self):
        for i in range(50):
            self.client.store_data(self.key, str(i), ttl=60)
        self.assertEqual(self.client.fetch_data(self.key), "49")


if __name__ == "__main__":
    unittest.main(verbosity=2)
