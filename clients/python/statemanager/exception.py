"""The one exception the client raises, under plugnpy's name.

plugnpy raises ``StateManagerStoreError`` for every failure, with the text
``"{status}: {reason} - {body}"`` for an HTTP error and ``"Failed to connect to state manager:
..."`` for a network one. This class keeps that name and that text (``str(error)``), and also
carries the parts a program can act on: the HTTP ``status``, the server's error ``code`` and
``message`` (from its ``{"error": {"code", "message"}}`` body) and, on a conflict, the
``stored_timestamp`` that won.
"""

import json
from typing import Any, Dict, Optional

__all__ = ["StateManagerStoreError"]


class StateManagerStoreError(Exception):
    """A request to the State Manager failed.

    ``str(error)`` is plugnpy's text. The attributes are ``None`` when they do not apply (for
    example ``status`` and ``code`` on a connection failure):

    - ``status``: the HTTP status (``409``), or ``None`` when no answer was received;
    - ``reason``: the HTTP reason phrase (``"Conflict"``);
    - ``body``: the answer's body as text;
    - ``code``: the server's error code (``"conflict"``, ``"invalid_request"``, ``"forbidden"``,
      ``"not_found"``, ``"store_full"``, ``"no_quorum"``, ...);
    - ``message``: the server's error message when there is one, else the whole text;
    - ``error``: the server's whole error object (a dict, possibly with more fields);
    - ``stored_timestamp``: on a ``conflict``, the timestamp of the item that is stored.
    """

    status: Optional[int]
    reason: Optional[str]
    body: Optional[str]
    code: Optional[str]
    message: str
    error: Dict[str, Any]
    stored_timestamp: Optional[float]

    def __init__(
        self,
        text: str,
        *,
        status: Optional[int] = None,
        reason: Optional[str] = None,
        body: Optional[str] = None,
    ) -> None:
        """Builds the error from its text and, for an HTTP error, the answer's parts."""
        super().__init__(text)
        self.status = status
        self.reason = reason
        self.body = body
        self.error = _error_object(body)
        code = self.error.get("code")
        self.code = code if isinstance(code, str) else None
        message = self.error.get("message")
        self.message = message if isinstance(message, str) else text
        stored = self.error.get("stored_timestamp")
        self.stored_timestamp = (
            float(stored)
            if isinstance(stored, (int, float)) and not isinstance(stored, bool)
            else None
        )

    @classmethod
    def from_response(cls, status: int, reason: str, body: str) -> "StateManagerStoreError":
        """The error for a non-2xx answer, worded exactly as plugnpy words it."""
        return cls(
            "{}: {} - {}".format(status, reason, body), status=status, reason=reason, body=body
        )


def _error_object(body: Optional[str]) -> Dict[str, Any]:
    """The ``error`` object of a ``{"error": {...}}`` body, or ``{}``."""
    if not body:
        return {}
    try:
        parsed = json.loads(body)
    except ValueError:
        return {}
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return dict(parsed["error"])
    return {}
