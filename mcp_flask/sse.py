"""Server-Sent Events framing: one JSON-RPC message per ``message`` event.

Kept tiny and allocation-light because every streamed response goes through it.
orjson never emits raw newlines, so one ``data:`` line carries a whole message.
A large message (a result holding ``encoding.Lazy`` rows) is written as that one
``data:`` line in pieces (``event_pieces``), never as one bytes object.
"""
from __future__ import annotations

from typing import Iterator

from . import encoding

CONTENT_TYPE = "text/event-stream"
#: Headers every SSE response carries: no caching, no proxy buffering (nginx honours
#: X-Accel-Buffering), so events reach the client as they are produced.
HEADERS = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache, no-transform"),
           ("X-Accel-Buffering", "no")]


def _head(event_id: str | None) -> bytes:
    return b"id: " + event_id.encode() + b"\nevent: message\ndata: " if event_id else b"event: message\ndata: "


def event(message, event_id: str | None = None) -> bytes:
    """One ``message`` event carrying ``message`` (a dict, JSON bytes already encoded, or
    an ``encoding.Lazy`` document), as one bytes object."""
    if isinstance(message, (bytes, bytearray)):
        data = message
    elif isinstance(message, encoding.Lazy):
        data = b"".join(message.pieces())
    else:
        data = encoding.dumps(message)
    return _head(event_id) + data + b"\n\n"


def event_pieces(message, event_id: str | None = None) -> Iterator[bytes]:
    """The same event as ``event``, as pieces to write; a large (lazy) message is never joined."""
    data = message if isinstance(message, (bytes, bytearray, encoding.Lazy)) else encoding.encode_lazy(message)
    if not isinstance(data, encoding.Lazy):
        yield _head(event_id) + data + b"\n\n"
        return
    yield _head(event_id)
    yield from encoding.write_pieces(data)
    yield b"\n\n"


def priming(event_id: str, retry_ms: int | None = None) -> bytes:
    """The 2025-11-25 priming event: an id with empty data (and a reconnection hint)."""
    out = b""
    if retry_ms is not None:
        out += b"retry: " + str(int(retry_ms)).encode() + b"\n"
    return out + b"id: " + event_id.encode() + b"\ndata: \n\n"


def comment(text: str = "keep-alive") -> bytes:
    """A comment line: ignored by clients, keeps proxies from closing an idle stream."""
    return b": " + text.encode() + b"\n\n"
