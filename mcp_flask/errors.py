"""Every exception the server raises on purpose, each knowing how it reaches the client.

Two channels (see the architecture notes):

* ``ProtocolError`` and ``HttpError`` become JSON-RPC errors (and an HTTP status):
  a broken envelope, an unknown method, bad params, a missing session.
* ``ToolError`` and its subclasses become a tool result with ``isError: true`` and
  a message a model can act on, prefixed with DreamFactory's category
  ("Validation Error: ...", "Permission Error: ...").

Imports nothing from the project.
"""
from __future__ import annotations

# JSON-RPC 2.0 and MCP error codes (spec: basic/index, schema.ts).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
RESOURCE_NOT_FOUND = -32002
# 2026-07-28 transport codes.
HEADER_MISMATCH = -32020
MISSING_CLIENT_CAPABILITY = -32021
UNSUPPORTED_PROTOCOL_VERSION = -32022


class McpFlaskError(Exception):
    """Base of every deliberate error."""


class ConfigError(McpFlaskError):
    """The configuration is wrong; the message names the key and why."""

    def __init__(self, key: str, why: str):
        super().__init__(f"config error at {key}: {why}")
        self.key = key
        self.why = why


class ProtocolError(McpFlaskError):
    """A JSON-RPC error response: ``{"code", "message", "data"?}``."""

    def __init__(self, code: int, message: str, data=None, http_status: int = 200):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.http_status = http_status

    def to_error(self) -> dict:
        err = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


class HttpError(ProtocolError):
    """An error answered with an HTTP status before (or instead of) JSON-RPC dispatch."""

    def __init__(self, http_status: int, message: str, code: int = INVALID_REQUEST,
                 headers: dict | None = None, data=None):
        super().__init__(code, message, data=data, http_status=http_status)
        self.headers = headers or {}


class ToolError(McpFlaskError):
    """A tool failed in a way the model should see (``isError: true``)."""

    category = "Error"

    def __init__(self, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details

    def text(self) -> str:
        return f"{self.category}: {self.message}"


class InvalidArguments(ToolError):
    """An argument is missing, of the wrong type, or names something that does not exist."""

    category = "Validation Error"


class NotFound(ToolError):
    """A table, column, relation or routine the caller may see does not exist."""

    category = "Resource Error"


class PermissionDenied(ToolError):
    """The caller's role does not allow this; never a hint about hidden objects."""

    category = "Permission Error"


class DatabaseError(ToolError):
    """The database refused the statement (constraint, type, lock ...)."""

    category = "Database Error"

    def __init__(self, message: str, *, kind: str = "error", constraint: str | None = None,
                 column: str | None = None, details: dict | None = None):
        super().__init__(message, details=details)
        # unique | foreign_key | not_null | check | type | lock | read_only | permission | timeout |
        # cancelled | schema (object missing: refresh) | raise / signal (routine's own message) | error
        self.kind = kind
        self.constraint = constraint
        self.column = column


class QueryTimeout(DatabaseError):
    """The statement ran past the service's statement timeout."""

    category = "Timeout Error"

    def __init__(self, message: str = "the query ran longer than the service's statement timeout"):
        super().__init__(message, kind="timeout")


class QueryCancelled(DatabaseError):
    """The client cancelled the request; the statement was stopped in the database."""

    category = "Cancelled"

    def __init__(self, message: str = "the request was cancelled"):
        super().__init__(message, kind="cancelled")


class Declined(ToolError):
    """The user was asked to confirm a destructive call and did not: nothing changed."""

    category = "Declined"


class DatabaseUnavailable(ToolError):
    """The database cannot be reached right now (down, restarting, refusing connections)."""

    category = "Connection Error"


class DatabaseBusy(ToolError):
    """Every pooled connection stayed in use for the whole checkout timeout."""

    category = "Busy Error"


class LimitExceeded(ToolError):
    """A configured limit (rows, batch size, concurrency, rate) was exceeded."""

    category = "Limit Error"


class InputRequired(McpFlaskError):
    """A stateless (2026-07-28) call needs the user's input before it can finish.

    Raised by ``Call.ask`` in the stateless era; the modern transport answers the
    request with an ``InputRequiredResult`` carrying ``input_requests`` (keyed
    server-to-client requests) and the opaque ``request_state`` to echo back.
    """

    def __init__(self, input_requests: dict, request_state: str | None = None):
        super().__init__("input required")
        self.input_requests = input_requests
        self.request_state = request_state
