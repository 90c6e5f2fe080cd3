"""HTTPS with a CA file and a client certificate (the server requires one)."""

import ssl
import unittest

from statemanager import StateManagerClient, StateManagerStoreError, StateManagerUtils

from support import (
    CA_FILE,
    CERT_FILE,
    HOST,
    HTTPS_PORT,
    KEY_FILE,
    NAMESPACE,
    UtilsState,
    https_client,
    needs_https,
    unique_key,
)


@needs_https
class Https(unittest.TestCase):
    def setUp(self) -> None:
        self.key = unique_key(self)

    def test_store_fetch_delete_over_https(self) -> None:
        with https_client() as client:
            self.assertTrue(client.url.startswith("https://"), client.url)
            client.store_data(self.key, "over tls", 60)
            self.assertEqual(client.fetch_data(self.key), "over tls")
            client.store_json(self.key, {"n": 1}, 60)
            self.assertEqual(client.fetch_json(self.key), {"n": 1})
            self.assertTrue(client.delete_data(self.key))
            self.assertIsNone(client.fetch_data(self.key))

    def test_keep_alive_over_https(self) -> None:
        with https_client() as client:
            client.store_data(self.key, "0", 60)
            conn = client._conn  # pylint: disable=protected-access
            for i in range(20):
                client.store_data(self.key, str(i), 60)
            self.assertEqual(client.fetch_data(self.key), "19")
            self.assertIs(client._conn, conn)  # pylint: disable=protected-access

    def test_errors_over_https_are_structured(self) -> None:
        with https_client() as client:
            with self.assertRaises(StateManagerStoreError) as ctx:
                client.store_data(self.key, "x", 0)
            self.assertEqual((ctx.exception.status, ctx.exception.code), (400, "invalid_request"))

    def test_own_ssl_context(self) -> None:
        context = ssl.create_default_context(cafile=CA_FILE)
        context.load_cert_chain(CERT_FILE or "", KEY_FILE)
        with StateManagerClient(HOST, HTTPS_PORT, NAMESPACE, ssl_context=context) as client:
            client.store_data(self.key, "own context", 60)
            self.assertEqual(client.fetch_data(self.key), "own context")

    def test_without_a_client_certificate_it_is_refused(self) -> None:
        with https_client(cert_file=None, key_file=None) as client:
            with self.assertRaises(StateManagerStoreError) as ctx:
                client.fetch_data(self.key)
            self.assertTrue(
                str(ctx.exception).startswith("Failed to connect to state manager: "),
                ctx.exception,
            )
            self.assertIsNone(ctx.exception.status)

    def test_the_server_certificate_is_verified(self) -> None:
        # The system's CAs do not know the test CA.
        with https_client(ca_file=None) as client:
            with self.assertRaisesRegex(StateManagerStoreError, "(?i)certificate"):
                client.fetch_data(self.key)

    def test_plain_http_to_the_https_port_fails_cleanly(self) -> None:
        with StateManagerClient(HOST, HTTPS_PORT, NAMESPACE, network_timeout=10) as client:
            with self.assertRaisesRegex(StateManagerStoreError, "^Failed to connect"):
                client.fetch_data(self.key)

    def test_unreadable_files_are_reported(self) -> None:
        with self.assertRaisesRegex(StateManagerStoreError, "Cannot load TLS files"):
            StateManagerClient(HOST, HTTPS_PORT, NAMESPACE, ca_file="/nonexistent/ca.pem")
        with self.assertRaisesRegex(StateManagerStoreError, "Cannot load TLS files"):
            StateManagerClient(HOST, HTTPS_PORT, NAMESPACE, ca_file=CA_FILE,
                               cert_file="/nonexistent/c.pem")
        with self.assertRaisesRegex(StateManagerStoreError, "cert_file"):
            StateManagerClient(HOST, HTTPS_PORT, NAMESPACE, ca_file=CA_FILE, key_file=KEY_FILE)

    def test_utils_configured_like_the_environment(self) -> None:
        state = UtilsState()
        try:
            StateManagerUtils.host, StateManagerUtils.port = HOST, HTTPS_PORT
            StateManagerUtils.namespace = NAMESPACE
            StateManagerUtils.ca_file = CA_FILE
            StateManagerUtils.cert_file, StateManagerUtils.key_file = CERT_FILE, KEY_FILE
            StateManagerUtils.store_data(self.key, "utils over tls", 60)
            self.assertEqual(StateManagerUtils.fetch_data(self.key), "utils over tls")
            StateManagerUtils.close()
            StateManagerUtils.tls = "0"  # explicitly off: plain HTTP to the TLS port fails
            with self.assertRaises(StateManagerStoreError):
                StateManagerUtils.fetch_data(self.key)
            StateManagerUtils.close()
            StateManagerUtils.tls = "maybe"
            with self.assertRaisesRegex(StateManagerStoreError, "OPSVIEW_STATE_MANAGER_TLS"):
                StateManagerUtils.fetch_data(self.key)
        finally:
            state.restore()


if __name__ == "__main__":
    unittest.main(verbosity=2)
