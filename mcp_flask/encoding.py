"""Database values -> JSON, losslessly and fast (orjson).

* dates, times and datetimes: ISO 8601 (orjson's native encoding; offsets kept);
* ``Decimal``: a string, so ``12.50`` never becomes ``12.499999``;
* ``bytes`` / ``memoryview``: base64;
* ``timedelta`` (PostgreSQL intervals): ISO 8601 durations (``P1DT2H``);
* ``UUID``: its canonical string; sets: sorted lists.

``dumps`` returns bytes; ``Raw`` wraps already-encoded JSON so it can be
embedded in a larger document without being parsed and encoded again.

Large results are never one bytes object (a 100,000-row read is ~12 MB of JSON,
and its response carries it twice: the text block and ``structuredContent``).
``Lazy`` values stand for JSON that is written piece by piece:

* ``EncodedRows``: a JSON array whose elements were encoded batch by batch (the
  Python rows of each batch are dropped once it is encoded);
* ``Document``: a JSON value made of encoded bytes and ``Lazy`` parts
  (``encode_lazy`` builds one for any value that holds ``Lazy`` values);
* ``JsonString``: the JSON string literal whose text is a ``Document`` (the MCP
  text block), escaped one piece at a time.

Each knows its exact byte ``size()`` before anything is written (so a response
gets a correct Content-Length) and yields its bytes with ``pieces()``.
``dumps`` still encodes a value holding ``Lazy`` parts correctly (joining them),
for callers that need one bytes object.

Imports nothing from the project.
"""
from __future__ import annotations

import base64
import datetime as _dt
import re
import secrets
from decimal import Decimal
from typing import Iterator

import orjson

_OPTS = orjson.OPT_NON_STR_KEYS
Raw = orjson.Fragment


def iso_duration(td: _dt.timedelta) -> str:
    """``timedelta`` as an ISO 8601 duration: ``P3DT4H5M6.5S``, negative with a leading ``-``."""
    total = td.total_seconds()
    sign = "-" if total < 0 else ""
    total = abs(td)
    days = total.days
    secs = total.seconds
    micros = total.microseconds
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    out = f"{sign}P{days}D" if days else f"{sign}P"
    time_part = ""
    if h:
        time_part += f"{h}H"
    if m:
        time_part += f"{m}M"
    if s or micros:
        time_part += (f"{s}.{micros:06d}".rstrip("0") + "S") if micros else f"{s}S"
    if time_part:
        out += "T" + time_part
    return out if out not in ("P", "-P") else "PT0S"


def _default(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Lazy):
        # Someone needs the whole document as one bytes object (e.g. a store): join it.
        return orjson.Fragment(b"".join(value.pieces()))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, _dt.timedelta):
        return iso_duration(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    # Last resort (e.g. a driver's Range type): its text form, never a failure mid-response.
    return str(value)


#: The ``default`` of the first try (see ``dumps``): ``Decimal``'s own (C) ``__str__``, exactly
#: ``str(d)``, for the one non-JSON type of nearly every page (NUMERIC columns).
_DECIMAL_STR = Decimal.__str__


def dumps(value) -> bytes:
    """Compact JSON bytes for ``value`` (see the module docstring for type rules).

    Tried first without the two things that cost most when encoding a page of
    rows: ``OPT_NON_STR_KEYS`` (orjson's slower dict path, checking each key's
    type: ~40% of a 10-row page) and a Python-level ``default`` call per ``Decimal``
    (about twice the conversion itself).  That try accepts only exact ``str`` keys
    and converts only ``Decimal`` (by its C ``__str__``).  Anything else raises
    ``TypeError`` and the value is encoded again (``_full``): the same bytes, or the
    same error, either way.
    """
    try:
        return orjson.dumps(value, default=_DECIMAL_STR)
    except TypeError:
        return _full(value, _default)


def _full(value, default) -> bytes:
    """``orjson.dumps(value, default=default, option=_OPTS)``, still without
    ``OPT_NON_STR_KEYS`` first: a page with bytes or intervals keeps that saving (it
    pays for the failed first try of ``dumps`` instead).  A non-str key (rare) raises
    ``TypeError`` there, and the value is encoded with the option, as it always was."""
    try:
        return orjson.dumps(value, default=default)
    except TypeError:
        return orjson.dumps(value, default=default, option=_OPTS)


def loads(data):
    """Parse JSON bytes or str (orjson: strict UTF-8, no NaN)."""
    return orjson.loads(data)


JSONDecodeError = orjson.JSONDecodeError


# ---------------------------------------------------------------- lazy (streamed) JSON
def escape(data: bytes) -> bytes:
    """Encoded JSON ``data`` as the inside of a JSON string literal.

    Exactly ``orjson.dumps(data.decode())[1:-1]``: orjson never writes raw control
    characters, so only ``"`` and ``\\`` need escaping.  (orjson's own string
    encoder is the faster way for ASCII; ``bytes.replace`` for UTF-8 text.)
    """
    if data.isascii():
        return orjson.dumps(data.decode("ascii"))[1:-1]
    return data.replace(b"\\", b"\\\\").replace(b'"', b'\\"')


def escapes(data: bytes) -> int:
    """How many bytes ``escape(data)`` adds (one per ``"`` and ``\\``)."""
    return data.count(b'"') + data.count(b"\\")


#: Bytes of a row chunk escaped at a time when it is written as part of a text block.
ESCAPE_SLICE = 64 * 1024


class Lazy:
    """A JSON value written piece by piece; ``size()`` bytes in all, known up front."""

    __slots__ = ()

    def size(self) -> int:
        raise NotImplementedError

    def pieces(self) -> Iterator[bytes]:
        """The value's JSON, in pieces whose lengths add up to ``size()``."""
        raise NotImplementedError

    def text_size(self) -> int:
        """The size of ``text_pieces()``: the JSON, escaped to sit inside a JSON string."""
        return sum(len(p) + escapes(p) for p in self.pieces())

    def text_pieces(self) -> Iterator[bytes]:
        """The value's JSON escaped as JSON string content, one piece at a time."""
        for p in self.pieces():
            yield escape(p)


class EncodedRows(Lazy):
    """A JSON array encoded batch by batch: each batch's bytes are kept, its Python objects not.

    ``add(orjson.dumps(batch), len(batch))`` per batch; the array is written as
    ``[`` chunk ``,`` chunk ... ``]``.  ``len()`` is the number of elements.
    """

    __slots__ = ("chunks", "count", "_size", "_escapes")

    def __init__(self):
        self.chunks: list[bytes] = []
        self.count = 0
        self._size = 2
        self._escapes = 0

    def add(self, encoded: bytes, n: int) -> None:
        """Append the ``n`` elements of ``encoded``, a JSON array (``[a,b,...]``)."""
        if n <= 0:
            return
        inner = encoded[1:-1]
        if self.chunks:
            self._size += 1                     # the comma between chunks
        self.chunks.append(inner)
        self._size += len(inner)
        self._escapes += escapes(inner)         # counted now, while the chunk is in cache
        self.count += n

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        """The elements, parsed back one chunk at a time (for in-process callers and tests;
        the server only ever writes the bytes)."""
        for chunk in self.chunks:
            yield from orjson.loads(b"[" + chunk + b"]")

    def __getitem__(self, index):
        return list(self)[index]

    def size(self) -> int:
        return self._size

    def text_size(self) -> int:
        return self._size + self._escapes

    def pieces(self) -> Iterator[bytes]:
        yield b"["
        for i, chunk in enumerate(self.chunks):
            if i:
                yield b","
            yield chunk
        yield b"]"

    def text_pieces(self) -> Iterator[bytes]:
        # Brackets and commas need no escaping.  Each chunk is escaped as it is written, in
        # slices, so a writer waiting on a slow client holds one small escaped slice, not a
        # copy of the chunk.  Any byte offset is a safe cut: '"' and '\\' never occur inside
        # a UTF-8 sequence, and the ASCII fast path checks each slice on its own.
        step = ESCAPE_SLICE
        yield b"["
        for i, chunk in enumerate(self.chunks):
            if i:
                yield b","
            if len(chunk) <= step:
                yield escape(chunk)
                continue
            for start in range(0, len(chunk), step):
                yield escape(chunk[start:start + step])
        yield b"]"


class Document(Lazy):
    """A JSON value made of encoded ``bytes`` and ``Lazy`` parts, in order (see ``encode_lazy``)."""

    __slots__ = ("parts", "_size")

    def __init__(self, parts: list):
        self.parts = parts
        self._size = sum(len(p) if isinstance(p, bytes) else p.size() for p in parts)

    def size(self) -> int:
        return self._size

    def pieces(self) -> Iterator[bytes]:
        for p in self.parts:
            if isinstance(p, bytes):
                yield p
            else:
                yield from p.pieces()

    def text_size(self) -> int:
        return sum(len(p) + escapes(p) if isinstance(p, bytes) else p.text_size() for p in self.parts)

    def text_pieces(self) -> Iterator[bytes]:
        for p in self.parts:
            if isinstance(p, bytes):
                yield escape(p)
            else:
                yield from p.text_pieces()


class JsonString(Lazy):
    """The JSON string literal whose text is ``doc``'s JSON (the MCP text block of a result).

    Byte for byte what ``dumps(doc_bytes.decode())`` gives, without ever holding
    the escaped text (or the document) as one object.
    """

    __slots__ = ("doc",)

    def __init__(self, doc: Lazy):
        self.doc = doc

    def size(self) -> int:
        return 2 + self.doc.text_size()

    def pieces(self) -> Iterator[bytes]:
        yield b'"'
        yield from self.doc.text_pieces()
        yield b'"'


#: Stands in for a Lazy value inside orjson's output; the random part makes it unguessable,
#: so no string in the data can be taken for a marker.
_TOKEN = "mcpf-lazy-" + secrets.token_hex(16)
_MARK = re.compile(b'"' + _TOKEN.encode() + rb'-(\d+)"')


def encode_lazy(value):
    """``dumps(value)``; or, when ``value`` holds ``Lazy`` values, a ``Document`` of them.

    orjson encodes everything else once (a marker string stands for each Lazy
    value, then the output is split at the markers), so the envelope around a
    large result costs what it costs for a small one.
    """
    try:
        # ``dumps``'s first try: a value without Lazy parts (nor anything else unusual) is done.
        return orjson.dumps(value, default=_DECIMAL_STR)
    except TypeError:
        pass
    found: list = []

    def default(v):
        # Decimal first: it is the one non-JSON type of nearly every page (NUMERIC columns),
        # answered here without a second call; everything else as ``_default`` says.
        if isinstance(v, Decimal):
            return str(v)
        if isinstance(v, Lazy):
            found.append(v)
            return f"{_TOKEN}-{len(found) - 1}"
        return _default(v)

    try:
        out = orjson.dumps(value, default=default)      # as ``_full``, without the option first
    except TypeError:
        found.clear()       # the failed try's markers: numbered from 0 again
        out = orjson.dumps(value, default=default, option=_OPTS)
    if not found:
        return out
    parts: list = []
    for i, bit in enumerate(_MARK.split(out)):
        if i % 2:
            parts.append(found[int(bit)])
        elif bit:
            parts.append(bit)
    return Document(parts)


def size_of(body) -> int:
    """Bytes in ``body``: encoded bytes or a ``Lazy`` value."""
    return len(body) if isinstance(body, (bytes, bytearray)) else body.size()


def write_pieces(body, small: int = 1 << 16) -> Iterator[bytes]:
    """``body`` (bytes or ``Lazy``) as pieces to write: runs of small pieces joined (fewer
    send calls), large ones passed on as they are (never copied); no empty piece."""
    if isinstance(body, (bytes, bytearray)):
        if body:
            yield bytes(body)
        return
    buf: list[bytes] = []
    held = 0
    for piece in body.pieces():
        if len(piece) >= small:
            if buf:
                yield b"".join(buf)
                buf, held = [], 0
            yield piece
        elif piece:
            buf.append(piece)
            held += len(piece)
            if held >= small:
                yield b"".join(buf)
                buf, held = [], 0
    if buf:
        yield b"".join(buf)
