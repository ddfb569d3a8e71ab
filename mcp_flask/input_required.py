"""Multi-round-trip confirmation (2026-07-28 ``InputRequiredResult``, SEP-2322).

In the session era a destructive tool asks the user through elicitation
(``ToolContext.confirm`` -> a server-to-client ``elicitation/create``).  The
2026-07-28 era has no server-to-client requests: the server answers the call
with ``{"resultType": "input_required", "inputRequests": {...},
"requestState": ...}`` and the client retries the same call carrying
``inputResponses`` (keyed like ``inputRequests``) and the echoed state.

This module owns that exchange for one call:

* ``Confirmer(...)`` is the ``Call.ask`` of a stateless tools/call.  Asked
  ``confirm(message)``, it returns the user's answer when the retried request
  carries one bound to this very call, else raises ``InputRequired``, which
  the modern transport turns into the InputRequiredResult.
* ``requestState`` is an HMAC-signed token binding the answer to the service,
  the caller's credential, the tool name, its arguments and the question, with
  an expiry.  A client cannot pre-answer a confirmation (no valid state without
  the round trip) nor reuse an accept for other arguments.  The key is derived
  from the service's configuration (its database URL), so every worker and host
  serving the same configuration verifies the same tokens without shared state.

Knows no HTTP; imports only the errors leaf.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from .errors import InputRequired

#: The key of our one input request (clients echo it in ``inputResponses``).
CONFIRM_KEY = "confirm"
#: How long a confirmation question stays answerable.
STATE_TTL_S = 600
#: The form shown to the user: one boolean.
CONFIRM_SCHEMA = {
    "type": "object",
    "properties": {"confirm": {"type": "boolean", "title": "Confirm",
                               "description": "Allow this change to the database"}},
    "required": ["confirm"],
}


def state_key(service_config) -> bytes:
    """The HMAC key for one service's request states (the same in every worker)."""
    material = f"mcp-flask/input-required\0{service_config.name}\0{service_config.url}"
    return hashlib.sha256(material.encode()).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Confirmer:
    """``Call.ask`` for one stateless tools/call (see the module docstring)."""

    def __init__(self, key: bytes, credential: str, tool: str, arguments, input_responses, request_state):
        self.key = key
        # The binding: who asks, which tool, which arguments (canonical JSON).
        self.binding = json.dumps([credential, tool, arguments if arguments is not None else {}],
                                  sort_keys=True, default=str).encode()
        self.responses = input_responses if isinstance(input_responses, dict) else {}
        self.state = request_state if isinstance(request_state, str) else None

    def _sign(self, expires: int, message: str) -> str:
        mac = hmac.new(self.key, b"%d\0" % expires + self.binding + b"\0" + message.encode(), hashlib.sha256)
        return _b64(mac.digest()[:24])

    def make_state(self, message: str, now: float | None = None) -> str:
        expires = int((now or time.time()) + STATE_TTL_S)
        return f"v1.{expires}.{self._sign(expires, message)}"

    def state_valid(self, message: str, now: float | None = None) -> bool:
        """The retried request's ``requestState`` was issued by us, for this call and question."""
        if not self.state or len(self.state) > 200:
            return False
        parts = self.state.split(".")
        if len(parts) != 3 or parts[0] != "v1" or not parts[1].isdigit():
            return False
        expires = int(parts[1])
        if expires < (now or time.time()):
            return False
        return hmac.compare_digest(parts[2], self._sign(expires, message))

    def __call__(self, message: str) -> bool:
        """The user's answer (True = go ahead), or raise ``InputRequired`` to ask for it."""
        answer = self.responses.get(CONFIRM_KEY)
        if isinstance(answer, dict) and self.state_valid(message):
            content = answer.get("content")
            return (answer.get("action") == "accept" and isinstance(content, dict)
                    and content.get("confirm") is True)
        raise InputRequired(
            {CONFIRM_KEY: {"method": "elicitation/create",
                           "params": {"mode": "form", "message": message,
                                      "requestedSchema": CONFIRM_SCHEMA}}},
            self.make_state(message))
