"""The JSON-RPC 2.0 envelope: parse, classify, validate, and build responses.

``parse(body)`` turns request bytes into ``Message`` objects (or raises a
``ProtocolError`` with the right code: -32700 for bad JSON, -32600 for a broken
envelope).  Responses are built here and nowhere else, so every error has one
shape: ``{"jsonrpc": "2.0", "id": ..., "error": {"code", "message", "data"?}}``,
with ``id`` omitted only when the request's id could not be read.

Knows nothing of HTTP or MCP methods.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import encoding
from .errors import INVALID_REQUEST, PARSE_ERROR, ProtocolError

REQUEST, NOTIFICATION, RESPONSE = "request", "notification", "response"
_NO_ID = object()


@dataclass(slots=True)
class Message:
    """One JSON-RPC message as received."""

    kind: str                 # request | notification | response
    raw: dict
    id: object = None
    method: str | None = None
    params: dict | None = None


def parse(body: bytes, schemas) -> tuple[list[Message], bool]:
    """Parse a POST body into messages; ``(messages, is_batch)``.

    Raises ``ProtocolError(-32700)`` for invalid JSON (or invalid UTF-8) and
    ``ProtocolError(-32600)`` for anything that is not a JSON-RPC message.
    """
    try:
        data = encoding.loads(body)
    except encoding.JSONDecodeError:
        raise ProtocolError(PARSE_ERROR, "Parse error: the body is not valid JSON", http_status=400) from None
    if isinstance(data, list):
        if not data:
            raise ProtocolError(INVALID_REQUEST, "Invalid Request: empty batch", http_status=400)
        return [classify(item, schemas) for item in data], True
    return [classify(data, schemas)], False


def classify(obj, schemas) -> Message:
    """Validate one envelope against ``schemas/jsonrpc/*.json`` and say what it is."""
    if not isinstance(obj, dict):
        raise ProtocolError(INVALID_REQUEST, "Invalid Request: a JSON-RPC message must be an object",
                            http_status=400)
    if "method" in obj:
        kind = REQUEST if "id" in obj else NOTIFICATION
    elif "result" in obj or "error" in obj:
        kind = RESPONSE
    else:
        raise ProtocolError(INVALID_REQUEST, "Invalid Request: no method, result or error member",
                            data=_id_data(obj), http_status=400)
    err = schemas.envelope[kind].error(obj)
    if err is not None:
        exc = ProtocolError(INVALID_REQUEST, f"Invalid Request: {err}", http_status=400)
        exc.request_id = obj.get("id", _NO_ID) if _valid_id(obj.get("id", _NO_ID)) else _NO_ID
        raise exc
    params = obj.get("params")
    # Positional: the order of Message's fields (kind, raw, id, method, params).
    return Message(kind, obj, obj.get("id"), obj.get("method"), params if params is not None else {})


def _valid_id(value) -> bool:
    return (isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)))


def _id_data(obj):
    return None


def result(msg_id, value) -> dict:
    """A success response."""
    return {"jsonrpc": "2.0", "id": msg_id, "result": value}


def error(msg_id, exc: ProtocolError) -> dict:
    """An error response; ``msg_id`` may be ``None`` (id unreadable: the member is omitted)."""
    out = {"jsonrpc": "2.0", "error": exc.to_error()}
    if msg_id is not None and msg_id is not _NO_ID:
        out["id"] = msg_id
    return out


def error_for(exc: ProtocolError) -> dict:
    """An error response for a message that failed before its id was known."""
    return error(getattr(exc, "request_id", None), exc)


def notification(method: str, params: dict | None = None) -> dict:
    out = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        out["params"] = params
    return out


def request(msg_id, method: str, params: dict | None = None) -> dict:
    out = {"jsonrpc": "2.0", "id": msg_id, "method": method}
    if params is not None:
        out["params"] = params
    return out
