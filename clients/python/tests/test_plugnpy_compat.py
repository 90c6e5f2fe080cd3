"""The plugnpy-compatible surface: same names, arguments, environment, requests, results.

A plugin ported from plugnpy changes one import line; everything below is what it relies on.
"""

import importlib.util
import json
import subprocess
import sys
import time
import unittest
from typing import Any, Callable, List

import statemanager
import statemanager.exception
from statemanager import StateManagerClient, StateManagerStoreError, StateManagerUtils

from support import (
    HOST,
    NAMESPACE,
    PORT,
    REPO,
    FakeServer,
    UtilsState,
    closed_port,
    needs_server,
    plain_client,
    response,
    subprocess_env,
    unique_key,
)


@needs_server
class UtilsAgainstServer(unittest.TestCase):
    """``StateManagerUtils``, configured from the environment, against the real server."""

    def setUp(self) -> None:
        self.state = UtilsState()
        StateManagerUtils.host, StateManagerUtils.port = HOST, PORT
        StateManagerUtils.namespace = NAMESPACE
        self.key = unique_key(self)

    def tearDown(self) -> None:
        self.state.restore()

    def test_store_then_fetch(self) -> None:
        self.assertIsNone(StateManagerUtils.store_data(self.key, "hello", 3600))
        self.assertEqual(StateManagerUtils.fetch_data(self.key), "hello")

    def test_utils_can_be_instantiated_like_plugnpy(self) -> None:
        utils = StateManagerUtils()
        utils.store_data(self.key, "via instance", 60)
        self.assertEqual(utils.fetch_data(self.key), "via instance")
        self.assertIsInstance(StateManagerUtils.client, StateManagerClient)

    def test_structured_data_round_trips_as_json_text(self) -> None:
        value = json.dumps({"counter": 42, "when": 1700000000.5, "name": "ünïcode ✓"})
        StateManagerUtils.store_data(self.key, value, ttl=60)
        self.assertEqual(json.loads(StateManagerUtils.fetch_data(self.key) or "")["counter"], 42)
        self.assertEqual(StateManagerUtils.fetch_data(self.key), value)

    def test_missing_key_is_none(self) -> None:
        self.assertIsNone(StateManagerUtils.fetch_data(self.key + "-never-stored"))

    def test_update_replaces(self) -> None:
        StateManagerUtils.store_data(self.key, "one", ttl=60)
        StateManagerUtils.store_data(self.key, "two", ttl=60)
        self.assertEqual(StateManagerUtils.fetch_data(self.key), "two")

    def test_future_timestamp_is_accepted_as_now(self) -> None:
        StateManagerUtils.store_data(self.key, "future", 60, time.time() + 86400)
        self.assertEqual(StateManagerUtils.fetch_data(self.key), "future")

    def test_older_timestamp_raises_with_readable_body(self) -> None:
        StateManagerUtils.store_data(self.key, "new", ttl=60)
        with self.assertRaises(StateManagerStoreError) as ctx:
            StateManagerUtils.store_data(self.key, "old", ttl=60, timestamp=time.time() - 3600)
        message = str(ctx.exception)
        self.assertTrue(message.startswith("409: Conflict - "), message)
        self.assertIn('"code":"conflict"', message)
        self.assertEqual(StateManagerUtils.fetch_data(self.key), "new")

    def test_bad_ttl_raises_400(self) -> None:
        with self.assertRaises(StateManagerStoreError) as ctx:
            StateManagerUtils.store_data(self.key, "x", ttl=0)
        self.assertTrue(str(ctx.exception).startswith("400: Bad Request - "), ctx.exception)
        self.assertIn("ttl", str(ctx.exception))

    def test_data_must_be_a_str(self) -> None:
        for bad in (b"bytes", 123, 123.909, None, {"a": 1}):
            with self.assertRaisesRegex(TypeError, "Data must be a str"):
                StateManagerUtils.store_data(self.key, bad, 60)  # type: ignore[arg-type]
            with self.assertRaisesRegex(TypeError, "Data must be a str"):
                plain_client().store_data(self.key, bad, 60)  # type: ignore[arg-type]
        self.assertIsNone(StateManagerUtils.fetch_data(self.key))

    def test_expiry(self) -> None:
        StateManagerUtils.store_data(self.key, "brief", ttl=1)
        self.assertEqual(StateManagerUtils.fetch_data(self.key), "brief")
        deadline = time.time() + 10
        while StateManagerUtils.fetch_data(self.key) is not None:
            self.assertLess(time.time(), deadline, "item never expired")
            time.sleep(0.1)

    def test_keep_alive_connection_is_reused(self) -> None:
        StateManagerUtils.store_data(self.key, "first", 60)
        client = StateManagerUtils.client
        assert client is not None
        conn = client._conn  # pylint: disable=protected-access
        for i in range(50):
            StateManagerUtils.store_data(self.key, str(i), ttl=60)
        self.assertEqual(StateManagerUtils.fetch_data(self.key), "49")
        self.assertIs(client._conn, conn, "one connection for every call")  # pylint: disable=protected-access

    def test_connection_failure(self) -> None:
        StateManagerUtils.port = str(closed_port())
        with self.assertRaises(StateManagerStoreError) as ctx:
            StateManagerUtils.fetch_data(self.key)
        self.assertTrue(
            str(ctx.exception).startswith("Failed to connect to state manager: "), ctx.exception
        )
        self.assertIsNone(ctx.exception.status)
        with self.assertRaises(StateManagerStoreError):
            StateManagerUtils.store_data(self.key, "x", 60)

    def test_missing_environment_is_a_store_error(self) -> None:
        StateManagerUtils.host = None
        with self.assertRaisesRegex(StateManagerStoreError, "OPSVIEW_STATE_MANAGER_HOST"):
            StateManagerUtils.fetch_data(self.key)
        StateManagerUtils.host, StateManagerUtils.port = HOST, "not-a-port"
        with self.assertRaisesRegex(StateManagerStoreError, "OPSVIEW_STATE_MANAGER_PORT"):
            StateManagerUtils.fetch_data(self.key)


class Names(unittest.TestCase):
    """The names and signatures plugins use."""

    def test_exception_names_and_modules(self) -> None:
        self.assertIs(statemanager.exception.StateManagerStoreError, StateManagerStoreError)
        self.assertTrue(issubclass(StateManagerStoreError, Exception))
        self.assertEqual(str(StateManagerStoreError("foo")), "foo")  # plugnpy raises it so

    def test_client_constructor_takes_plugnpys_arguments(self) -> None:
        client = StateManagerClient("127.0.0.1", "8184", "PLUGIN#x", 1, 30, 30)
        self.assertEqual(client.namespace, "PLUGIN#x")
        self.assertEqual(client.url, "http://127.0.0.1:8184")
        client = StateManagerClient(
            host="h", port=1, namespace="n", concurrency=1, connection_timeout=5,
            network_timeout=7,
        )
        self.assertEqual(client._connection_timeout, 5)  # pylint: disable=protected-access
        self.assertEqual(client._network_timeout, 7)  # pylint: disable=protected-access
        self.assertEqual(client.HTTP_STATUS_OK_MIN, 200)
        self.assertEqual(client.HTTP_STATUS_OK_MAX, 299)
        client.close()
        client.close()  # twice is fine, as in plugnpy

    def test_default_timeouts_are_plugnpys(self) -> None:
        client = StateManagerClient("h", 1, "n")
        self.assertEqual(client._connection_timeout, 30)  # pylint: disable=protected-access
        self.assertEqual(client._network_timeout, 30)  # pylint: disable=protected-access
        self.assertEqual(statemanager.DEFAULT_TIMEOUT, 30)

    def test_utils_reads_the_environment_at_import(self) -> None:
        code = (
            "from statemanager import StateManagerUtils as U;"
            "print(U.host, U.port, U.namespace, U.ca_file, U.timeout, U.client)"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            env=subprocess_env({
                "OPSVIEW_STATE_MANAGER_HOST": "10.1.2.3",
                "OPSVIEW_STATE_MANAGER_PORT": "8184",
                "OPSVIEW_STATE_MANAGER_NAMESPACE": "PLUGIN#check_env",
                "OPSVIEW_STATE_MANAGER_CA_FILE": "/ca.pem",
                "OPSVIEW_STATE_MANAGER_TIMEOUT": "5",
            }),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True, timeout=60,
        )
        self.assertEqual(
            out.stdout.decode().split(), ["10.1.2.3", "8184", "PLUGIN#check_env", "/ca.pem", "5", "None"]
        )


class Wire(unittest.TestCase):
    """The exact requests, checked against a fake server."""

    def test_store_and_fetch_requests_are_plugnpys(self) -> None:
        with FakeServer() as fake:
            client = StateManagerClient("127.0.0.1", str(fake.port), "PLUGIN#check_wire")
            before = time.time()
            client.store_data("k", "d", 99)
            after = time.time()
            client.store_data("k", "d", 99, 1234.5)
            client.store_data("k", "d", 99, 0)
            self.assertEqual(client.fetch_data("k"), "x")
            client.close()
        self.assertEqual(fake.connections, 1, "keep-alive: one connection")
        (m1, p1, h1, b1), (_, _, _, b2), (_, _, _, b3), (m4, p4, h4, b4) = fake.requests
        self.assertEqual((m1, p1, m4, p4), ("POST", "/store_data", "POST", "/fetch_data"))
        for headers in (h1, h4):
            self.assertEqual(headers["referer"], "127.0.0.1")
            self.assertEqual(headers["content-type"], "application/json")
        store = json.loads(b1)
        self.assertEqual(sorted(store), ["data", "key", "namespace", "timestamp", "ttl"])
        self.assertEqual(
            (store["namespace"], store["key"], store["data"], store["ttl"]),
            ("PLUGIN#check_wire", "k", "d", 99),
        )
        self.assertTrue(before <= store["timestamp"] <= after, "now when none is given")
        self.assertEqual(json.loads(b2)["timestamp"], 1234.5)
        self.assertTrue(before <= json.loads(b3)["timestamp"], "0 means now, as in plugnpy")
        self.assertEqual(json.loads(b4), {"namespace": "PLUGIN#check_wire", "key": "k"})

    def test_answers_read_as_plugnpy_reads_them(self) -> None:
        answers = {
            "/store_data": response(201, "Created", b""),
            "/fetch_data": response(200, "OK", b'{"other":"foo","data":"text"}'),
        }
        with FakeServer(lambda req: answers[req[1]]) as fake:
            client = StateManagerClient("127.0.0.1", fake.port, "n")
            client.store_data("k", "d", 60)  # any 2xx is success, the body is ignored
            self.assertEqual(client.fetch_data("k"), "text")  # other fields are ignored
            answers["/fetch_data"] = response(200, "OK", b"fubar")
            with self.assertRaisesRegex(StateManagerStoreError, "^Unable to process response"):
                client.fetch_data("k")
            answers["/fetch_data"] = response(404, "Not Found", b"")
            self.assertIsNone(client.fetch_data("k"))
            answers["/store_data"] = response(500, "Server Error", b"fail")
            with self.assertRaises(StateManagerStoreError) as ctx:
                client.store_data("k", "d", 60)
            self.assertEqual(str(ctx.exception), "500: Server Error - fail")
            self.assertEqual((ctx.exception.status, ctx.exception.code), (500, None))
            answers["/fetch_data"] = response(503, "Service Unavailable",
                                              b'{"error":{"code":"no_quorum","message":"m"}}')
            with self.assertRaises(StateManagerStoreError) as ctx:
                client.fetch_data("k")
            self.assertEqual(ctx.exception.code, "no_quorum")
            client.close()


def _load_reference() -> Any:
    """plugnpy's wire behaviour as the server's own tests reproduce it
    (crates/server/tests/python/plugnpy_compat.py)."""
    path = REPO / "crates" / "server" / "tests" / "python" / "plugnpy_compat.py"
    spec = importlib.util.spec_from_file_location("plugnpy_reference", str(path))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@needs_server
class SameSequenceSameResults(unittest.TestCase):
    """The same call sequence through plugnpy's wire behaviour and through this package gives
    the same results (values, ``None``s, and the same error status lines and codes)."""

    def test_sequence(self) -> None:
        reference = _load_reference().PlugnpyStateManager()
        ours = plain_client()
        base = unique_key(self)

        def run(client: Any, key: str) -> List[Any]:
            results: List[Any] = []
            calls: List[Callable[[], Any]] = [
                lambda: client.store_data(key, "a", 3600),
                lambda: client.fetch_data(key),
                lambda: client.fetch_data(key + "-missing"),
                lambda: client.store_data(key, "b", 60, time.time() + 3600),
                lambda: client.fetch_data(key),
                lambda: client.store_data(key, "old", 60, time.time() - 3600),
                lambda: client.fetch_data(key),
                lambda: client.store_data(key, "x", 0),
                lambda: client.store_data(key, "x" * (17 * 1024), 60),
                lambda: client.store_data("", "x", 60),
                lambda: client.store_data(key, "c", 60),
                lambda: client.fetch_data(key),
            ]
            for call in calls:
                try:
                    results.append(("ok", call()))
                except Exception as ex:  # pylint: disable=broad-except
                    text = str(ex)
                    head, _, body = text.partition(" - ")
                    results.append(("error", type(ex).__name__, head,
                                    json.loads(body)["error"]["code"]))
            return results

        expected = run(reference, base + "-plugnpy")
        got = run(ours, base + "-ours")
        self.assertEqual(got, expected)
        self.assertEqual(got[1], ("ok", "a"))
        self.assertEqual(got[5][2], "409: Conflict")
        ours.close()
        reference.conn.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
