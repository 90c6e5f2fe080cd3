"""What plugnpy lacks: delete, JSON helpers, items with times, conflict retries, structured
errors, timeouts, reconnection."""

import threading
import time
import unittest
from typing import List

from statemanager import StateManagerClient, StateManagerStoreError, StateManagerUtils, StoredItem

from support import (
    HOST,
    NAMESPACE,
    PORT,
    FakeServer,
    UtilsState,
    needs_server,
    plain_client,
    response,
    unique_key,
)


@needs_server
class Delete(unittest.TestCase):
    def setUp(self) -> None:
        self.client = plain_client()
        self.key = unique_key(self)

    def tearDown(self) -> None:
        self.client.close()

    def test_delete_then_delete_again(self) -> None:
        self.client.store_data(self.key, "doomed", 60)
        self.assertIs(self.client.delete_data(self.key), True)
        self.assertIsNone(self.client.fetch_data(self.key))
        self.assertIs(self.client.delete_data(self.key), False, "nothing left: harmless")
        self.assertIs(self.client.delete_data(self.key + "-never"), False)

    def test_a_store_after_a_delete_is_accepted_whatever_its_timestamp(self) -> None:
        self.client.store_data(self.key, "new", 60)
        self.client.delete_data(self.key)
        self.client.store_data(self.key, "older", 7200, time.time() - 3600)
        self.assertEqual(self.client.fetch_data(self.key), "older")

    def test_through_utils(self) -> None:
        state = UtilsState()
        try:
            StateManagerUtils.host, StateManagerUtils.port = HOST, PORT
            StateManagerUtils.namespace = NAMESPACE
            StateManagerUtils.store_data(self.key, "x", 60)
            self.assertTrue(StateManagerUtils.delete_data(self.key))
            self.assertFalse(StateManagerUtils.delete_data(self.key))
        finally:
            state.restore()

    def test_an_unknown_endpoint_is_an_error_not_false(self) -> None:
        answer = response(404, "Not Found", b'{"error":{"code":"unknown_endpoint","message":"m"}}')
        with FakeServer(lambda _req: answer) as fake:
            client = StateManagerClient("127.0.0.1", fake.port, "n")
            with self.assertRaises(StateManagerStoreError) as ctx:
                client.delete_data("k")
            self.assertEqual(ctx.exception.code, "unknown_endpoint")
            client.close()


@needs_server
class Json(unittest.TestCase):
    def setUp(self) -> None:
        self.client = plain_client()
        self.key = unique_key(self)

    def tearDown(self) -> None:
        self.client.close()

    def test_round_trip(self) -> None:
        value = {"value": 123456789012, "time": 1764070000.25, "tags": ["a", "ü"], "ok": True,
                 "none": None}
        self.assertIsNone(self.client.store_json(self.key, value, 60))
        self.assertEqual(self.client.fetch_json(self.key), value)
        self.assertEqual(self.client.fetch_data(self.key),
                         '{"value":123456789012,"time":1764070000.25,"tags":["a","ü"],'
                         '"ok":true,"none":null}')

    def test_missing_gives_the_default(self) -> None:
        self.assertIsNone(self.client.fetch_json(self.key))
        self.assertEqual(self.client.fetch_json(self.key, default={}), {})

    def test_stored_text_that_is_not_json(self) -> None:
        self.client.store_data(self.key, "not json {", 60)
        with self.assertRaisesRegex(StateManagerStoreError, "is not JSON"):
            self.client.fetch_json(self.key)

    def test_unserialisable_value_is_a_type_error(self) -> None:
        with self.assertRaises(TypeError):
            self.client.store_json(self.key, {"when": object()}, 60)

    def test_json_with_timestamp_and_retry(self) -> None:
        self.client.store_json(self.key, [1], 60, time.time())
        with self.assertRaises(StateManagerStoreError) as ctx:
            self.client.store_json(self.key, [0], 60, time.time() - 60, retry_on_conflict=3)
        self.assertEqual(ctx.exception.code, "conflict")
        self.assertEqual(self.client.fetch_json(self.key), [1])


@needs_server
class Items(unittest.TestCase):
    def test_fetch_item_has_the_times(self) -> None:
        client = plain_client()
        key = unique_key(self)
        stamp = round(time.time() - 10, 6)
        client.store_data(key, "dated", 100, stamp)
        item = client.fetch_item(key)
        assert item is not None
        self.assertIsInstance(item, StoredItem)
        self.assertEqual(item.data, "dated")
        self.assertAlmostEqual(item.timestamp or 0, stamp, places=5)
        self.assertAlmostEqual(item.expires_at or 0, stamp + 100, places=5)
        self.assertIsNone(client.fetch_item(key + "-missing"))
        client.close()


@needs_server
class Errors(unittest.TestCase):
    def test_conflict_carries_status_code_message_and_stored_timestamp(self) -> None:
        client = plain_client()
        key = unique_key(self)
        stamp = time.time()
        client.store_data(key, "winner", 60, stamp)
        with self.assertRaises(StateManagerStoreError) as ctx:
            client.store_data(key, "loser", 60, stamp - 5)
        err = ctx.exception
        self.assertEqual((err.status, err.reason, err.code), (409, "Conflict", "conflict"))
        self.assertTrue(err.message and err.message in str(err), err.message)
        self.assertNotEqual(err.message, str(err))
        self.assertAlmostEqual(err.stored_timestamp or 0, stamp, places=5)
        self.assertIn(err.body or "", str(err))
        self.assertEqual(err.error["code"], "conflict")
        client.close()

    def test_invalid_request(self) -> None:
        client = plain_client()
        with self.assertRaises(StateManagerStoreError) as ctx:
            client.store_data(unique_key(self), "x", -5)
        self.assertEqual((ctx.exception.status, ctx.exception.code), (400, "invalid_request"))
        self.assertIsNone(ctx.exception.stored_timestamp)
        self.assertIn("ttl", ctx.exception.message)
        client.close()

    def test_too_large(self) -> None:
        client = plain_client()
        with self.assertRaises(StateManagerStoreError) as ctx:
            client.store_data(unique_key(self), "x" * (64 * 1024), 60)
        self.assertEqual(ctx.exception.status, 413)
        client.close()


class _Clock:
    """Returns the given times first, then the real time; counts calls."""

    def __init__(self, first: List[float]) -> None:
        self.first = list(first)
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.first.pop(0) if self.first else time.time()


@needs_server
class RetryOnConflict(unittest.TestCase):
    """A store that loses because the client's clock was behind is stamped again with the
    current time and retried; a caller's own timestamp is never replaced."""

    def setUp(self) -> None:
        self.client = plain_client()
        self.key = unique_key(self)
        self.sleeps: List[float] = []
        self.client._sleep = self.sleeps.append  # pylint: disable=protected-access
        self.client.store_data(self.key, "newer", 60)

    def tearDown(self) -> None:
        self.client.close()

    def test_restamped_and_retried(self) -> None:
        clock = _Clock([time.time() - 3600])  # the first stamp is an hour late
        self.client._clock = clock  # pylint: disable=protected-access
        self.client.store_data(self.key, "mine", 60, retry_on_conflict=3)
        self.assertEqual(self.client.fetch_data(self.key), "mine")
        self.assertEqual(len(self.sleeps), 1, "one retry")
        self.assertTrue(0 < self.sleeps[0] <= 2.0, self.sleeps)

    def test_no_retry_by_default(self) -> None:
        self.client._clock = _Clock([time.time() - 3600])  # pylint: disable=protected-access
        with self.assertRaises(StateManagerStoreError) as ctx:
            self.client.store_data(self.key, "mine", 60)
        self.assertEqual(ctx.exception.code, "conflict")
        self.assertEqual(self.client.fetch_data(self.key), "newer")
        self.assertEqual(self.sleeps, [])

    def test_gives_up_after_n_retries_with_growing_pauses(self) -> None:
        late = time.time() - 3600
        self.client._clock = lambda: late  # pylint: disable=protected-access
        requests = []
        original = self.client._post  # pylint: disable=protected-access

        def counting(path, params):  # type: ignore[no-untyped-def]
            if path == "/store_data":
                requests.append(params["timestamp"])
            return original(path, params)

        self.client._post = counting  # type: ignore[assignment] # pylint: disable=protected-access
        with self.assertRaises(StateManagerStoreError) as ctx:
            self.client.store_data(self.key, "mine", 60, retry_on_conflict=4)
        self.assertEqual(ctx.exception.code, "conflict")
        self.assertEqual(len(requests), 5, "the first attempt and four retries")
        self.assertEqual(len(self.sleeps), 4)
        self.assertTrue(all(0 < s <= 2.0 for s in self.sleeps), self.sleeps)
        self.assertEqual(self.client.fetch_data(self.key), "newer")

    def test_a_callers_timestamp_that_lost_is_reported_not_overwritten(self) -> None:
        requests = []
        original = self.client._post  # pylint: disable=protected-access

        def counting(path, params):  # type: ignore[no-untyped-def]
            if path == "/store_data":
                requests.append(params["timestamp"])
            return original(path, params)

        self.client._post = counting  # type: ignore[assignment] # pylint: disable=protected-access
        mine = time.time() - 3600
        with self.assertRaises(StateManagerStoreError) as ctx:
            self.client.store_data(self.key, "mine", 60, mine, retry_on_conflict=5)
        self.assertEqual(ctx.exception.code, "conflict")
        self.assertEqual(requests, [mine], "sent once, with the caller's timestamp")
        self.assertEqual(self.sleeps, [])
        self.assertEqual(self.client.fetch_data(self.key), "newer")

    def test_other_errors_are_not_retried(self) -> None:
        self.client._clock = _Clock([time.time() - 3600])  # pylint: disable=protected-access
        with self.assertRaises(StateManagerStoreError) as ctx:
            self.client.store_data(self.key, "x", 0, retry_on_conflict=3)
        self.assertEqual(ctx.exception.status, 400)
        self.assertEqual(self.sleeps, [])

    def test_negative_is_refused(self) -> None:
        with self.assertRaises(ValueError):
            self.client.store_data(self.key, "x", 60, retry_on_conflict=-1)

    def test_through_utils(self) -> None:
        state = UtilsState()
        try:
            StateManagerUtils.host, StateManagerUtils.port = HOST, PORT
            StateManagerUtils.namespace = NAMESPACE
            client = StateManagerUtils._initialise_client()  # pylint: disable=protected-access
            client._clock = _Clock([time.time() - 3600])  # pylint: disable=protected-access
            client._sleep = self.sleeps.append  # pylint: disable=protected-access
            StateManagerUtils.store_data(self.key, "utils", 60, retry_on_conflict=2)
            self.assertEqual(StateManagerUtils.fetch_data(self.key), "utils")
            self.assertEqual(len(self.sleeps), 1)
        finally:
            state.restore()


class Timeouts(unittest.TestCase):
    def test_a_silent_server_times_out(self) -> None:
        with FakeServer(silent=True) as fake:
            client = StateManagerClient("127.0.0.1", fake.port, "n", network_timeout=0.3)
            with self.assertRaises(StateManagerStoreError) as ctx:
                client.fetch_data("k")
            self.assertTrue(str(ctx.exception).startswith("Failed to connect to state manager: "))
            self.assertIn("timed out", str(ctx.exception))
            self.assertIsNone(ctx.exception.status)
            client.close()

    def test_invalid_timeouts(self) -> None:
        for bad in (0, -1, "soon"):
            with self.assertRaises(StateManagerStoreError):
                StateManagerClient("h", 1, "n", connection_timeout=bad)  # type: ignore[arg-type]
            with self.assertRaises(StateManagerStoreError):
                StateManagerClient("h", 1, "n", network_timeout=bad)  # type: ignore[arg-type]

    def test_utils_timeout_from_the_environment(self) -> None:
        state = UtilsState()
        try:
            StateManagerUtils.host, StateManagerUtils.port = "127.0.0.1", "1"
            StateManagerUtils.timeout = "2.5"
            client = StateManagerUtils._initialise_client()  # pylint: disable=protected-access
            self.assertEqual(client._connection_timeout, 2.5)  # pylint: disable=protected-access
            self.assertEqual(client._network_timeout, 2.5)  # pylint: disable=protected-access
            StateManagerUtils.close()
            StateManagerUtils.timeout = "never"
            with self.assertRaisesRegex(StateManagerStoreError, "timeout"):
                StateManagerUtils.fetch_data("k")
        finally:
            state.restore()


class Connections(unittest.TestCase):
    def test_a_closed_keep_alive_connection_is_reopened(self) -> None:
        with FakeServer(close_after=True) as fake:
            client = StateManagerClient("127.0.0.1", fake.port, "n")
            for _ in range(3):
                self.assertEqual(client.fetch_data("k"), "x")
            client.close()
        self.assertEqual(len(fake.requests), 3)

    def test_connection_close_is_honoured(self) -> None:
        answer = response(200, "OK", b'{"data":"y"}', "Connection: close\r\n")
        with FakeServer(lambda _req: answer, close_after=True) as fake:
            with StateManagerClient("127.0.0.1", fake.port, "n") as client:
                self.assertEqual(client.fetch_data("k"), "y")
                self.assertEqual(client.fetch_data("k"), "y")
        self.assertEqual(fake.connections, 2)

    @needs_server
    def test_close_then_use_again(self) -> None:
        client = plain_client()
        key = unique_key(self)
        client.store_data(key, "a", 60)
        client.close()
        self.assertEqual(client.fetch_data(key), "a")
        client.close()

    @needs_server
    def test_one_client_shared_by_threads(self) -> None:
        client = plain_client()
        base = unique_key(self)
        errors: List[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(20):
                    client.store_data("{}-{}".format(base, n), str(i), 60)
            except BaseException as ex:  # pylint: disable=broad-except
                errors.append(ex)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        for n in range(4):
            self.assertEqual(client.fetch_data("{}-{}".format(base, n)), "19")
        client.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
