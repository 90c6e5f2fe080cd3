"""Protected namespaces: a token is sent exactly as given and reaches its own items."""

import json
import unittest

from statemanager import StateManagerClient, StateManagerStoreError, StateManagerUtils

from support import (
    HOST,
    TOKEN,
    TOKEN_NAMESPACE,
    TOKEN_PORT,
    FakeServer,
    UtilsState,
    needs_tokens,
    unique_key,
)


@needs_tokens
class Tokens(unittest.TestCase):
    def setUp(self) -> None:
        self.key = unique_key(self)
        self.token = StateManagerClient(HOST, TOKEN_PORT, TOKEN)
        self.plain = StateManagerClient(HOST, TOKEN_PORT, TOKEN_NAMESPACE)

    def tearDown(self) -> None:
        self.token.close()
        self.plain.close()

    def test_store_fetch_delete_with_a_token(self) -> None:
        self.token.store_data(self.key, "protected", 60)
        self.assertEqual(self.token.fetch_data(self.key), "protected")
        self.token.store_json(self.key, {"a": 1}, 60)
        self.assertEqual(self.token.fetch_json(self.key), {"a": 1})
        self.assertTrue(self.token.delete_data(self.key))
        self.assertFalse(self.token.delete_data(self.key))

    def test_the_plain_name_does_not_reach_the_tokens_items(self) -> None:
        self.token.store_data(self.key, "protected", 60)
        self.assertIsNone(self.plain.fetch_data(self.key))
        self.plain.store_data(self.key, "plain", 60)
        self.assertEqual(self.token.fetch_data(self.key), "protected")

    def test_a_tampered_token_is_forbidden(self) -> None:
        assert TOKEN is not None
        middle = len(TOKEN) // 2
        forged = TOKEN[:middle] + ("A" if TOKEN[middle] != "A" else "B") + TOKEN[middle + 1:]
        with StateManagerClient(HOST, TOKEN_PORT, forged) as client:
            for call in (lambda: client.fetch_data(self.key),
                         lambda: client.store_data(self.key, "x", 60)):
                with self.assertRaises(StateManagerStoreError) as ctx:
                    call()
                self.assertEqual((ctx.exception.status, ctx.exception.code), (403, "forbidden"))
                self.assertTrue(str(ctx.exception).startswith("403: Forbidden - "))

    def test_utils_with_a_token_from_the_environment(self) -> None:
        state = UtilsState()
        try:
            StateManagerUtils.host, StateManagerUtils.port = HOST, TOKEN_PORT
            StateManagerUtils.namespace = TOKEN
            StateManagerUtils.store_data(self.key, "via utils", 60)
            self.assertEqual(self.token.fetch_data(self.key), "via utils")
        finally:
            state.restore()


class TokenOnTheWire(unittest.TestCase):
    def test_a_token_is_sent_as_is(self) -> None:
        token = "q+/Z" * 22 + "AAAA=="  # base64 alphabet, padding: nothing may escape it
        with FakeServer() as fake:
            with StateManagerClient("127.0.0.1", fake.port, token) as client:
                client.store_data("k", "d", 60)
                client.fetch_data("k")
                client.delete_data("k")
        for _method, _path, _headers, body in fake.requests:
            self.assertEqual(json.loads(body)["namespace"], token)
        self.assertEqual(len(fake.requests), 3)


if __name__ == "__main__":
    unittest.main(verbosity=2)
