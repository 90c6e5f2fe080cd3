"""Shared helpers for the client's tests: where the servers are, unique keys, a fake server.

The suite runs against REAL statemanager servers named by environment variables (the Rust
test ``crates/server/tests/python_client.rs`` starts them and sets these):

- ``OPSVIEW_STATE_MANAGER_HOST``, ``_PORT`` (and optionally ``_NAMESPACE``): a plain-HTTP
  server;
- ``STATEMANAGER_TEST_HTTPS_PORT``, ``STATEMANAGER_TEST_CA_FILE``,
  ``STATEMANAGER_TEST_CERT_FILE``, ``STATEMANAGER_TEST_KEY_FILE``: an HTTPS server on the same
  host that requires a client certificate signed by that CA;
- ``STATEMANAGER_TEST_TOKEN_PORT``, ``STATEMANAGER_TEST_TOKEN``,
  ``STATEMANAGER_TEST_TOKEN_NAMESPACE``: a server with ``namespace_keys``, a token it accepts,
  and the plain namespace inside that token.

Tests whose server is not named are skipped (the Rust runner refuses skips).
"""

import os
import socket
import sys
import threading
import time
import unittest
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

# A namespace for the tests (and the plugins they start) when none is given.
os.environ.setdefault("OPSVIEW_STATE_MANAGER_NAMESPACE", "PLUGIN#python_client_tests")

from statemanager import StateManagerClient, StateManagerUtils  # noqa: E402

HOST = os.environ.get("OPSVIEW_STATE_MANAGER_HOST")
PORT = os.environ.get("OPSVIEW_STATE_MANAGER_PORT")
NAMESPACE = os.environ["OPSVIEW_STATE_MANAGER_NAMESPACE"]

HTTPS_PORT = os.environ.get("STATEMANAGER_TEST_HTTPS_PORT")
CA_FILE = os.environ.get("STATEMANAGER_TEST_CA_FILE")
CERT_FILE = os.environ.get("STATEMANAGER_TEST_CERT_FILE")
KEY_FILE = os.environ.get("STATEMANAGER_TEST_KEY_FILE")

TOKEN_PORT = os.environ.get("STATEMANAGER_TEST_TOKEN_PORT")
TOKEN = os.environ.get("STATEMANAGER_TEST_TOKEN")
TOKEN_NAMESPACE = os.environ.get("STATEMANAGER_TEST_TOKEN_NAMESPACE")

#: The repository's root (clients/python/tests/ → three levels up).
REPO = Path(__file__).resolve().parents[3]
#: The directory holding the ``statemanager`` package (for subprocesses).
PACKAGE_DIR = str(Path(sys.modules["statemanager"].__file__).resolve().parents[1])

needs_server = unittest.skipUnless(
    HOST and PORT, "set OPSVIEW_STATE_MANAGER_HOST and _PORT to a running server"
)
needs_https = unittest.skipUnless(
    HOST and HTTPS_PORT and CA_FILE and CERT_FILE and KEY_FILE,
    "set STATEMANAGER_TEST_HTTPS_PORT, _CA_FILE, _CERT_FILE, _KEY_FILE",
)
needs_tokens = unittest.skipUnless(
    HOST and TOKEN_PORT and TOKEN and TOKEN_NAMESPACE,
    "set STATEMANAGER_TEST_TOKEN_PORT, _TOKEN, _TOKEN_NAMESPACE",
)

_counter = 0
_counter_lock = threading.Lock()


def unique_key(test: unittest.TestCase) -> str:
    """A key no other test (or earlier run against the same server) uses."""
    global _counter  # pylint: disable=global-statement
    with _counter_lock:
        _counter += 1
        n = _counter
    name = "-".join(test.id().rsplit(".", 2)[-2:])
    return "{}-{}-{}-{}".format(name, os.getpid(), time.time(), n)


def plain_client(**kwargs: object) -> StateManagerClient:
    """A client of the plain-HTTP server."""
    return StateManagerClient(HOST, PORT, NAMESPACE, **kwargs)  # type: ignore[arg-type]


def https_client(**kwargs: object) -> StateManagerClient:
    """A client of the HTTPS server with the CA and the client certificate."""
    options: Dict[str, object] = {"ca_file": CA_FILE, "cert_file": CERT_FILE, "key_file": KEY_FILE}
    options.update(kwargs)
    return StateManagerClient(HOST, HTTPS_PORT, NAMESPACE, **options)  # type: ignore[arg-type]


def subprocess_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """This process's environment with the package importable, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (PACKAGE_DIR, env.get("PYTHONPATH", "")) if p
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra or {})
    return env


def closed_port() -> int:
    """A 127.0.0.1 port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UtilsState:
    """Saves and restores ``StateManagerUtils``' class attributes around a test."""

    NAMES = ("host", "port", "namespace", "tls", "ca_file", "cert_file", "key_file", "timeout")

    def __init__(self) -> None:
        self.saved = {name: getattr(StateManagerUtils, name) for name in self.NAMES}
        StateManagerUtils.close()

    def restore(self) -> None:
        StateManagerUtils.close()
        for name, value in self.saved.items():
            setattr(StateManagerUtils, name, value)


Request = Tuple[str, str, Dict[str, str], bytes]
Reply = Callable[[Request], bytes]


class FakeServer:
    """A tiny HTTP/1.1 server on 127.0.0.1 for wire-level checks: records each request
    (method, path, headers, body) and answers with ``reply(request)`` (raw response bytes).
    With ``close_after=True`` it closes every connection after one answer without saying
    so (as a server closing an idle keep-alive connection does); with ``silent=True`` it
    reads requests and never answers. It serves a bounded number of connections."""

    def __init__(
        self,
        reply: Optional[Reply] = None,
        close_after: bool = False,
        silent: bool = False,
        max_connections: int = 50,
    ) -> None:
        self.reply = reply or (lambda _req: response(200, "OK", b'{"data":"x"}'))
        self.close_after = close_after
        self.silent = silent
        self.requests: List[Request] = []
        self.connections = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._max = max_connections
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def __enter__(self) -> "FakeServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        open_conns: List[socket.socket] = []
        try:
            while not self._stop.is_set() and self.connections < self._max:
                try:
                    conn, _ = self._sock.accept()
                except socket.timeout:
                    continue
                self.connections += 1
                open_conns.append(conn)
                threading.Thread(target=self._handle, args=(conn,), daemon=True).start()
        finally:
            self._stop.wait(10)
            for conn in open_conns:
                conn.close()

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        buffer = b""
        try:
            for _ in range(1000):
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _version = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                while len(buffer) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                body, buffer = buffer[:length], buffer[length:]
                request = (method, path, headers, body)
                self.requests.append(request)
                if self.silent:
                    self._stop.wait(30)
                    return
                conn.sendall(self.reply(request))
                if self.close_after:
                    conn.close()
                    return
        except OSError:
            return


def response(status: int, reason: str, body: bytes, extra: str = "") -> bytes:
    """Raw bytes of an HTTP/1.1 response."""
    head = "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n".format(
        status, reason, len(body), extra
    )
    return head.encode("latin-1") + body
