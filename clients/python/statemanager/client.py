"""plugnpy-compatible State Manager client, standard library only.

``StateManagerClient`` and ``StateManagerUtils`` have plugnpy's names, constructor arguments,
environment variables, exception and return values (``plugnpy/statemanager.py``), and send
the same requests. On top of that they speak HTTPS (CA file, client certificate), pass
protected-namespace tokens through, and add ``delete_data``, ``fetch_item``,
``store_json``/``fetch_json`` and ``store_data(..., retry_on_conflict=N)``.
"""

import http.client
import json
import os
import random
import ssl
import threading
import time
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple, Union

from .exception import StateManagerStoreError

__all__ = ["StateManagerClient", "StateManagerUtils", "StoredItem"]

#: Seconds, for connecting and for each read: plugnpy's defaults.
DEFAULT_TIMEOUT = 30.0

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class StoredItem(NamedTuple):
    """An item as the server holds it (``fetch_item``)."""

    data: str
    """The stored text."""
    timestamp: Optional[float]
    """The item's timestamp (Unix seconds), as stored."""
    expires_at: Optional[float]
    """When it expires (Unix seconds)."""


class _HTTPConnection(http.client.HTTPConnection):
    """A keep-alive connection with one timeout for connecting and another for reading."""

    def __init__(self, host: str, port: int, connect_timeout: float, read_timeout: float) -> None:
        super().__init__(host, port, timeout=connect_timeout)
        self._read_timeout = read_timeout

    def connect(self) -> None:
        """Connects within the connect timeout, then waits for answers up to the read one."""
        super().connect()
        self.sock.settimeout(self._read_timeout)


class _HTTPSConnection(http.client.HTTPSConnection):
    """As ``_HTTPConnection``, over TLS (the handshake counts as connecting)."""

    def __init__(
        self,
        host: str,
        port: int,
        connect_timeout: float,
        read_timeout: float,
        context: ssl.SSLContext,
    ) -> None:
        super().__init__(host, port, timeout=connect_timeout, context=context)
        self._read_timeout = read_timeout

    def connect(self) -> None:
        """Connects and shakes hands within the connect timeout, then reads with the other."""
        super().connect()
        self.sock.settimeout(self._read_timeout)


# Failures that mean "the server closed the kept-alive connection before reading our
# request": worth one retry on a fresh connection.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
          ConnectionAbortedError, ssl.SSLEOFError)


def _parse_timeout(value: Union[None, int, float, str], name: str) -> float:
    """A positive number of seconds, or ``StateManagerStoreError``."""
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise StateManagerStoreError("Invalid {}: {!r}".format(name, value)) from None
    if not seconds > 0:
        raise StateManagerStoreError("Invalid {}: {!r} (must be > 0)".format(name, value))
    return seconds


class StateManagerClient:
    """A client for one namespace of the State Manager, like plugnpy's.

    The first three arguments and the timeouts are plugnpy's: ``host`` and ``port`` of the
    server (``port`` may be a string, as it comes from the environment), the ``namespace``
    (a plain name such as ``PLUGIN#check_disk``, or the protected-namespace token Opsview
    hands the plugin: either is sent exactly as given). ``concurrency`` is accepted for
    compatibility; the client keeps one keep-alive connection, used by one request at a
    time (it is safe to share between threads). ``connection_timeout`` bounds connecting
    (and the TLS handshake), ``network_timeout`` each wait for the server's answer; both
    default to plugnpy's 30 seconds.

    HTTPS, which plugnpy lacks: ``tls=True``, or any of ``ca_file`` (PEM file of the CAs
    that sign the server's certificate; the system's CAs otherwise), ``cert_file`` and
    ``key_file`` (the client certificate and its key, when the server checks client
    certificates; ``key_file`` may be omitted when ``cert_file`` holds both) or
    ``ssl_context`` (used as it is) turns it on (``key_password``, the key file's password,
    does not by itself). The server's name is
    checked against its certificate.

    Every failure raises ``StateManagerStoreError``; a ``data`` that is not a ``str`` raises
    ``TypeError``, as in plugnpy.
    """

    HTTP_STATUS_OK_MIN = 200
    HTTP_STATUS_OK_MAX = 299

    # pylint: disable=too-many-arguments
    def __init__(
        self,
        host: Optional[str],
        port: Union[int, str, None],
        namespace: Optional[str],
        concurrency: int = 1,
        connection_timeout: Union[int, float, str, None] = DEFAULT_TIMEOUT,
        network_timeout: Union[int, float, str, None] = DEFAULT_TIMEOUT,
        *,
        tls: Optional[bool] = None,
        ca_file: Optional[str] = None,
        cert_file: Optional[str] = None,
        key_file: Optional[str] = None,
        key_password: Optional[str] = None,
        ssl_context: Optional[ssl.SSLContext] = None,
    ) -> None:
        """Prepares the client; nothing is sent until the first call."""
        if not host:
            raise StateManagerStoreError(
                "State manager host is not set (OPSVIEW_STATE_MANAGER_HOST)"
            )
        try:
            port_number = int(port)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise StateManagerStoreError(
                "Invalid state manager port {!r} (OPSVIEW_STATE_MANAGER_PORT)".format(port)
            ) from None
        if not 0 < port_number < 65536:
            raise StateManagerStoreError("Invalid state manager port {!r}".format(port))
        self._host = host
        self._port = port_number
        self._namespace = namespace
        self._concurrency = concurrency
        self._connection_timeout = _parse_timeout(connection_timeout, "connection_timeout")
        self._network_timeout = _parse_timeout(network_timeout, "network_timeout")
        self._headers = {"Referer": host, "Content-Type": "application/json"}
        if tls is None:
            tls = bool(ca_file or cert_file or key_file or ssl_context)
        self._ssl_context: Optional[ssl.SSLContext] = None
        if tls:
            self._ssl_context = ssl_context or _make_context(
                ca_file, cert_file, key_file, key_password
            )
        self._lock = threading.Lock()
        self._conn: Optional[http.client.HTTPConnection] = None
        self._conn_used = False
        self._clock: Callable[[], float] = time.time
        self._sleep: Callable[[float], None] = time.sleep

    @property
    def namespace(self) -> Optional[str]:
        """The namespace (or token) every request carries."""
        return self._namespace

    @property
    def url(self) -> str:
        """The server's base URL, e.g. ``https://127.0.0.1:8184``."""
        scheme = "https" if self._ssl_context else "http"
        host = "[{}]".format(self._host) if ":" in self._host else self._host
        return "{}://{}:{}".format(scheme, host, self._port)

    # -- plugnpy's API ---------------------------------------------------------------------

    def store_data(
        self,
        key: str,
        data: str,
        ttl: int,
        timestamp: Optional[float] = None,
        *,
        retry_on_conflict: int = 0,
    ) -> None:
        """Stores ``data`` under ``key`` for ``ttl`` seconds, as plugnpy does.

        ``timestamp`` (Unix seconds) orders concurrent stores; when it is not given (or is
        0) the current time is sent. A store older than the stored item is refused: the
        server answers 409 and this raises ``StateManagerStoreError`` with ``code ==
        "conflict"``.

        ``retry_on_conflict=N`` (not in plugnpy) retries such a refusal up to N times, with
        a growing pause, stamping each attempt with the current time. It applies only when
        no timestamp was given: a caller's own timestamp that lost is reported, never
        replaced by a newer one.

        Raises ``TypeError`` when ``data`` is not a ``str``.
        """
        if not isinstance(data, str):
            raise TypeError("Data must be a str type, not {}".format(type(data)))
        retries = int(retry_on_conflict)
        if retries < 0:
            raise ValueError("retry_on_conflict must be >= 0")
        attempt = 0
        while True:
            params = {
                "namespace": self._namespace,
                "key": key,
                "data": data,
                "ttl": ttl,
                "timestamp": timestamp or self._clock(),
            }
            status, reason, body = self._post("/store_data", params)
            if self.HTTP_STATUS_OK_MIN <= status <= self.HTTP_STATUS_OK_MAX:
                return
            error = StateManagerStoreError.from_response(status, reason, body)
            if status != 409 or timestamp or attempt >= retries:
                raise error
            attempt += 1
            self._sleep(self._conflict_pause(attempt, error.stored_timestamp))

    def fetch_data(self, key: str) -> Optional[str]:
        """The data stored under ``key``, or ``None`` when there is none (or it expired)."""
        item = self.fetch_item(key)
        return None if item is None else item.data

    def close(self) -> None:
        """Closes the connection (a later call opens a new one)."""
        with self._lock:
            self._drop_connection()

    # -- extras ----------------------------------------------------------------------------

    def fetch_item(self, key: str) -> Optional[StoredItem]:
        """The item under ``key`` with its ``timestamp`` and ``expires_at``, or ``None``."""
        status, reason, body = self._post(
            "/fetch_data", {"namespace": self._namespace, "key": key}
        )
        if status == 404:
            return None
        if not self.HTTP_STATUS_OK_MIN <= status <= self.HTTP_STATUS_OK_MAX:
            raise StateManagerStoreError.from_response(status, reason, body)
        try:
            answer = json.loads(body)
            return StoredItem(answer["data"], _number(answer.get("timestamp")),
                              _number(answer.get("expires_at")))
        except Exception as ex:  # pylint: disable=broad-except
            raise StateManagerStoreError(
                "Unable to process response ({}) - {}".format(ex, body)
            ) from ex

    def delete_data(self, key: str) -> bool:
        """Deletes the item under ``key``: ``True`` if one was deleted, ``False`` if there was
        none (never stored, expired or already deleted), so retrying is harmless."""
        status, reason, body = self._post(
            "/delete_data", {"namespace": self._namespace, "key": key}
        )
        if self.HTTP_STATUS_OK_MIN <= status <= self.HTTP_STATUS_OK_MAX:
            return True
        error = StateManagerStoreError.from_response(status, reason, body)
        if status == 404 and error.code == "not_found":
            return False
        raise error

    def store_json(
        self,
        key: str,
        value: Any,
        ttl: int,
        timestamp: Optional[float] = None,
        *,
        retry_on_conflict: int = 0,
    ) -> None:
        """Stores ``value`` encoded as JSON (``TypeError`` if it cannot be); otherwise as
        ``store_data``."""
        data = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        self.store_data(key, data, ttl, timestamp, retry_on_conflict=retry_on_conflict)

    def fetch_json(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key`` (see ``store_json``), or ``default`` when there
        is none. Stored text that is not JSON raises ``StateManagerStoreError``."""
        data = self.fetch_data(key)
        if data is None:
            return default
        try:
            return json.loads(data)
        except ValueError as ex:
            raise StateManagerStoreError(
                "Data stored under {!r} is not JSON ({})".format(key, ex)
            ) from ex

    def __enter__(self) -> "StateManagerClient":
        """``with StateManagerClient(...) as client:`` closes the connection at the end."""
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """Closes the connection."""
        self.close()

    # -- the wire --------------------------------------------------------------------------

    def _conflict_pause(self, attempt: int, stored_timestamp: Optional[float]) -> float:
        """Seconds to wait before retry ``attempt``: exponential from 50 ms with jitter, and
        at least until our clock passes the stored item's timestamp (at most 2 s)."""
        pause = min(0.05 * (2 ** (attempt - 1)), 1.0) * (0.5 + random.random() / 2)
        if stored_timestamp is not None:
            pause = max(pause, stored_timestamp - self._clock() + 0.001)
        return min(pause, 2.0)

    def _connection(self) -> http.client.HTTPConnection:
        """The open connection, or a new one (connected on first use)."""
        if self._conn is None:
            if self._ssl_context is not None:
                self._conn = _HTTPSConnection(
                    self._host,
                    self._port,
                    self._connection_timeout,
                    self._network_timeout,
                    self._ssl_context,
                )
            else:
                self._conn = _HTTPConnection(
                    self._host, self._port, self._connection_timeout, self._network_timeout
                )
            self._conn_used = False
        return self._conn

    def _drop_connection(self) -> None:
        """Closes and forgets the connection (call with the lock held)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _post(self, path: str, params: Dict[str, Any]) -> Tuple[int, str, str]:
        """POSTs ``params`` as JSON; returns status, reason and body text. A network failure
        raises plugnpy's "Failed to connect to state manager: ..." error."""
        body = json.dumps(params).encode("utf-8")
        with self._lock:
            for attempt in (1, 2):
                conn = self._connection()
                reused = self._conn_used
                try:
                    conn.request("POST", path, body=body, headers=self._headers)
                    response = conn.getresponse()
                    raw = response.read()
                except _STALE as ex:
                    self._drop_connection()
                    if reused and attempt == 1:
                        continue  # the server closed an idle connection: once more, fresh
                    raise StateManagerStoreError(
                        "Failed to connect to state manager: {}".format(ex)
                    ) from None
                except (OSError, http.client.HTTPException) as ex:
                    self._drop_connection()
                    raise StateManagerStoreError(
                        "Failed to connect to state manager: {}".format(str(ex) or type(ex).__name__)
                    ) from None
                self._conn_used = True
                if response.will_close:
                    self._drop_connection()
                return response.status, response.reason, raw.decode("utf-8", "replace")
        raise AssertionError("unreachable")  # pragma: no cover


def _number(value: Any) -> Optional[float]:
    """``value`` as a float when it is a JSON number, else ``None``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _make_context(
    ca_file: Optional[str],
    cert_file: Optional[str],
    key_file: Optional[str],
    key_password: Optional[str],
) -> ssl.SSLContext:
    """A verifying client context: ``ca_file`` (or the system's CAs), and the client
    certificate when given."""
    try:
        context = ssl.create_default_context(cafile=ca_file or None)
        if cert_file:
            context.load_cert_chain(cert_file, key_file or None, password=key_password)
        elif key_file:
            raise StateManagerStoreError("A client key_file needs its cert_file")
    except (OSError, ssl.SSLError) as ex:
        raise StateManagerStoreError("Cannot load TLS files: {}".format(ex)) from None
    return context


def _env_flag(value: Optional[str]) -> Optional[bool]:
    """``OPSVIEW_STATE_MANAGER_TLS``: unset → ``None`` (decided by the other settings)."""
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise StateManagerStoreError(
        "Invalid OPSVIEW_STATE_MANAGER_TLS {!r} (use 1 or 0)".format(value)
    )


class StateManagerUtils:
    """plugnpy's static interface: one shared client, configured from the environment.

    As in plugnpy, ``host``, ``port`` and ``namespace`` are read when the module is imported,
    from ``OPSVIEW_STATE_MANAGER_HOST``, ``OPSVIEW_STATE_MANAGER_PORT`` and
    ``OPSVIEW_STATE_MANAGER_NAMESPACE`` (set for the plugin by the Executor), and the client
    is made on first use. The extras come from ``OPSVIEW_STATE_MANAGER_TLS`` (``1``/``0``),
    ``OPSVIEW_STATE_MANAGER_CA_FILE``, ``OPSVIEW_STATE_MANAGER_CERT_FILE``,
    ``OPSVIEW_STATE_MANAGER_KEY_FILE`` and ``OPSVIEW_STATE_MANAGER_TIMEOUT`` (seconds, for
    connecting and for reading). Assign the class attributes (and call ``close()``) to change
    them at run time.
    """

    client: Optional[StateManagerClient] = None
    host: Optional[str] = os.environ.get("OPSVIEW_STATE_MANAGER_HOST")
    port: Optional[str] = os.environ.get("OPSVIEW_STATE_MANAGER_PORT")
    namespace: Optional[str] = os.environ.get("OPSVIEW_STATE_MANAGER_NAMESPACE")
    tls: Optional[str] = os.environ.get("OPSVIEW_STATE_MANAGER_TLS")
    ca_file: Optional[str] = os.environ.get("OPSVIEW_STATE_MANAGER_CA_FILE")
    cert_file: Optional[str] = os.environ.get("OPSVIEW_STATE_MANAGER_CERT_FILE")
    key_file: Optional[str] = os.environ.get("OPSVIEW_STATE_MANAGER_KEY_FILE")
    timeout: Optional[str] = os.environ.get("OPSVIEW_STATE_MANAGER_TIMEOUT")

    @staticmethod
    def _initialise_client() -> StateManagerClient:
        """Makes the shared client on first use."""
        if not StateManagerUtils.client:
            timeout = _parse_timeout(StateManagerUtils.timeout or None, "timeout")
            StateManagerUtils.client = StateManagerClient(
                StateManagerUtils.host,
                StateManagerUtils.port,
                StateManagerUtils.namespace,
                connection_timeout=timeout,
                network_timeout=timeout,
                tls=_env_flag(StateManagerUtils.tls),
                ca_file=StateManagerUtils.ca_file,
                cert_file=StateManagerUtils.cert_file,
                key_file=StateManagerUtils.key_file,
            )
        return StateManagerUtils.client

    @staticmethod
    def store_data(
        key: str,
        data: str,
        ttl: int,
        timestamp: Optional[float] = None,
        *,
        retry_on_conflict: int = 0,
    ) -> None:
        """Stores ``data`` under ``key`` for ``ttl`` seconds (see
        ``StateManagerClient.store_data``). Raises ``TypeError`` if ``data`` is not a str."""
        if not isinstance(data, str):
            raise TypeError("Data must be a str type, not {}".format(type(data)))
        StateManagerUtils._initialise_client().store_data(
            key, data, ttl, timestamp, retry_on_conflict=retry_on_conflict
        )

    @staticmethod
    def fetch_data(key: str) -> Optional[str]:
        """The data stored under ``key``, or ``None``."""
        return StateManagerUtils._initialise_client().fetch_data(key)

    @staticmethod
    def fetch_item(key: str) -> Optional[StoredItem]:
        """The item under ``key`` with its times, or ``None``."""
        return StateManagerUtils._initialise_client().fetch_item(key)

    @staticmethod
    def delete_data(key: str) -> bool:
        """Deletes the item under ``key``; ``False`` when there was none."""
        return StateManagerUtils._initialise_client().delete_data(key)

    @staticmethod
    def store_json(
        key: str,
        value: Any,
        ttl: int,
        timestamp: Optional[float] = None,
        *,
        retry_on_conflict: int = 0,
    ) -> None:
        """Stores ``value`` as JSON."""
        StateManagerUtils._initialise_client().store_json(
            key, value, ttl, timestamp, retry_on_conflict=retry_on_conflict
        )

    @staticmethod
    def fetch_json(key: str, default: Any = None) -> Any:
        """The JSON value under ``key``, or ``default``."""
        return StateManagerUtils._initialise_client().fetch_json(key, default)

    @staticmethod
    def close() -> None:
        """Closes and forgets the shared client (the next call makes a new one from the
        class attributes)."""
        client, StateManagerUtils.client = StateManagerUtils.client, None
        if client is not None:
            client.close()
