"""A gunicorn gevent worker whose HTTP/1.1 connection loop is our own.

``gunicorn -k mcp_flask.lean_worker.LeanGeventWorker`` keeps everything gunicorn's
gevent worker does for the process (the master, worker signals and heartbeat, hooks,
graceful shutdown, ``max_requests``) and replaces only ``handle(listener, client,
addr)``, the per-connection loop gevent's ``StreamServer`` calls.  gunicorn's loop
builds a ``Request`` through its ``RequestParser``/``Unreader``/``Body`` objects,
a ``Response`` object, a ``gevent.Timeout`` per request and an environ through
several helper calls; that HTTP plumbing costs more worker CPU than a small MCP call's
own work.  Here one request is: find ``\\r\\n\\r\\n`` in the connection's buffer, parse
the head with gunicorn_h1c's C parser (picohttpparser, the parser gunicorn itself
uses when it is installed), build the environ from a per-connection template, call
the app, and send the head and a small body in one ``send``.

HTTP behaviour (HTTP/1.0 and 1.1):

* keep-alive by default on 1.1, on 1.0 only with ``Connection: keep-alive``;
  ``Connection: close`` honoured; pipelined requests served in order; an idle
  connection is closed after ``keepalive`` seconds (``keepalive = 0``: one request
  per connection, as gunicorn does);
* the head is checked as gunicorn checks it: ``limit_request_line``,
  ``limit_request_fields``, ``limit_request_field_size`` (gunicorn's meaning of 0 and
  of out-of-range values), RFC 9110 token header names, no obs-fold, no bare LF, a
  printable-ASCII request target, one valid Content-Length, not both Content-Length
  and Transfer-Encoding, ``chunked`` as the only transfer coding; header names with
  ``_`` are dropped (gunicorn's default ``header_map = "drop"``; ``refuse`` answers 400,
  ``dangerous`` keeps them).  A bad head gets 400 (414 for the request line, 431 for the
  headers, 417 for an unknown expectation) and the connection is closed;
* bodies: Content-Length or chunked (``wsgi.input_terminated``), read on demand;
  ``Expect: 100-continue`` is answered when the app first reads the body; a body the
  app leaves unread is drained (up to ``DRAIN_MAX``) or the connection is closed;
* responses: the app's Content-Length is honoured (never more bytes than declared;
  fewer closes the connection), else chunked on 1.1 (each chunk sent as the app yields
  it: SSE) or close-delimited on 1.0; HEAD, 1xx, 204 and 304 carry no body.
  Hop-by-hop headers and Date/Server from the app are dropped (as gunicorn does);
  ``Server: gunicorn`` (no version), ``Date`` and ``Connection`` (close or keep-alive)
  are added;
* an app error before the response started is a 500 with a short body (logged with
  the traceback), after it the connection is closed; a client that went away is not
  an error.

Not supported here (use gunicorn's own worker for them): HTTP/2 (ALPN or h2c), the
PROXY protocol, the uwsgi protocol, WebSocket upgrades, ``wsgi.early_hints``,
``sendfile``, and the SCRIPT_NAME / PATH_INFO headers of ``forwarder_headers`` (the
SCRIPT_NAME comes from the environment only).  When the configuration asks for HTTP/2,
the PROXY protocol or uwsgi, every connection is handed to gunicorn's loop instead.
"""
from __future__ import annotations

import errno
import io
import os
import re
import socket
import ssl
from datetime import datetime
from urllib.parse import unquote_to_bytes

import gunicorn_h1c
from gevent import get_hub, sleep
from gunicorn import util
from gunicorn.http.wsgi import FileWrapper, WSGIErrorsWrapper
from gunicorn.workers.ggevent import GeventWorker

from mcp_flask.worker_http import COALESCE_MAX, TrustedPeers, http_date

#: Largest unread request body drained to keep the connection; a bigger one closes it.
DRAIN_MAX = 64 * 1024
#: Longest chunk-size line (size, extensions, CRLF) of a chunked request body.
CHUNK_LINE_MAX = 4096
#: Bytes asked of ``recv`` at a time.
RECV_SIZE = 65536

# gunicorn's limits (gunicorn.http.message): what 0 and out-of-range settings mean.
_MAX_REQUEST_LINE = 8190
_MAX_HEADERS = 32768
_DEFAULT_FIELD_SIZE = 8190
#: ``limit_request_line = 0`` is "unlimited" in gunicorn; its fast-parser path uses 1 MiB.
_UNLIMITED_LINE = 1024 * 1024

#: RFC 9112 3.2: the request target is printable ASCII.
_BAD_TARGET = re.compile(rb"[^\x21-\x7e]").search
#: RFC 9110 5.6.2 token (response header names).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-zA-Z]+").fullmatch
#: RFC 9110 5.5: what a response header value may not contain (controls, and what
#: latin-1 cannot encode).
_BAD_VALUE = re.compile(r"[^ \t\x21-\x7e\x80-\xff]").search
#: RFC 9112 4: three digits, then a space and a reason phrase (PEP 3333).
_STATUS = re.compile(r"[0-9]{3}(?: [ \t\x21-\x7e\x80-\xff]*)?").fullmatch
#: Response headers a WSGI app may not set (hop-by-hop), plus Date and Server, which
#: the server owns (gunicorn drops the same ones).
_DROPPED_RESPONSE_HEADERS = frozenset((
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailers", "transfer-encoding", "upgrade", "server", "date"))

_REASONS = {400: "Bad Request", 414: "URI Too Long", 417: "Expectation Failed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error"}

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CHUNK_END = b"0\r\n\r\n"
_QUIET_ERRNOS = frozenset((errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN,
                           errno.ECONNABORTED, errno.EBADF))


class _HttpError(Exception):
    """A request the server refuses: answered with ``status`` and the connection closed."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status


class _ClientGone(ConnectionError):
    """Sending to the client failed: it closed or reset the connection."""


class _Request:
    """What gunicorn's ``pre_request`` / ``post_request`` hooks (and its access log) read
    of a request: method, uri, path, query, version, headers (upper-case names)."""

    __slots__ = ("method", "uri", "path", "query", "fragment", "version", "body", "scheme",
                 "peer_addr", "remote_addr", "_raw", "_headers")
    proxy_protocol_info = None

    def __init__(self, method, uri, path, query, version, raw, peer):
        self.method = method
        self.uri = uri
        self.path = path
        self.query = query
        self.fragment = ""
        self.version = version
        self._raw = raw
        self._headers = None
        self.body = None
        self.scheme = "http"
        self.peer_addr = self.remote_addr = peer

    @property
    def headers(self) -> list:
        """``[(NAME, value)]`` as gunicorn gives them (names with ``_`` dropped); built on
        first use, since the default hooks never look."""
        if self._headers is None:
            self._headers = [(n.decode("latin-1").upper(), v.decode("latin-1"))
                             for n, v in self._raw if b"_" not in n]
        return self._headers


class _BodyReader:
    """What both request-body readers share: ``Expect: 100-continue``, lines."""

    conn = None
    #: ``Expect: 100-continue`` not answered yet: answered when the app first needs bytes.
    expect_continue = False

    def _continue(self) -> None:
        """Send ``100 Continue`` once, before the first wait for body bytes."""
        if self.expect_continue:
            self.expect_continue = False
            self.conn.send(_CONTINUE)

    def readlines(self, hint: int | None = -1) -> list:
        """The remaining lines (stopping once ``hint`` bytes were read, when given)."""
        lines, total = [], 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class _LengthInput(_BodyReader):
    """``wsgi.input`` of a Content-Length body not yet (wholly) received: reads it from
    the connection on demand, never past its end (the bytes after it are the next
    request's)."""

    def __init__(self, conn, length: int, expect_continue: bool):
        self.conn = conn
        self.remaining = length
        #: ``Expect: 100-continue`` not answered yet: answered on the first read.
        self.expect_continue = expect_continue

    def _take(self, size: int) -> bytes:
        conn = self.conn
        buf = conn.buf
        if len(buf) < size:
            self._continue()
            parts, have = [buf], len(buf)
            while have < size:
                data = conn.recv_body(max(RECV_SIZE, size - have))
                parts.append(data)
                have += len(data)
            buf = b"".join(parts)
        conn.buf = buf[size:]
        self.remaining -= size
        return buf[:size]

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all the rest when ``size`` is None or negative)."""
        if self.remaining <= 0:
            return b""
        if size is None or size < 0 or size > self.remaining:
            size = self.remaining
        return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        """One line (up to and including ``\\n``), at most ``size`` bytes."""
        limit = self.remaining if size is None or size < 0 else min(size, self.remaining)
        if limit <= 0:
            return b""
        conn = self.conn
        while True:
            idx = conn.buf.find(b"\n", 0, limit)
            if idx >= 0:
                return self._take(idx + 1)
            if len(conn.buf) >= limit:
                return self._take(limit)
            self._continue()
            conn.buf += conn.recv_body(RECV_SIZE)

    @property
    def finished(self) -> bool:
        """The whole body was read."""
        return self.remaining <= 0

    def hopeless(self) -> bool:
        """The unread rest cannot be drained: too long, or the client waits for a
        100 Continue it will not get."""
        return self.remaining > 0 and (self.expect_continue or self.remaining > DRAIN_MAX)

    def drain(self) -> bool:
        """Discard what the app left unread; False when the connection cannot be reused."""
        if self.remaining <= 0:
            return True
        if self.hopeless():
            return False
        self.read()
        return True


class _ChunkedInput(_BodyReader):
    """``wsgi.input`` of a ``Transfer-Encoding: chunked`` body, decoded on demand.

    Chunk-size lines are limited to ``CHUNK_LINE_MAX`` bytes and the trailer section
    to the head limits; trailers are read and discarded.  Malformed framing raises
    ``ValueError`` to the app and closes the connection afterwards."""

    def __init__(self, conn, expect_continue: bool, trailer_max: int):
        self.conn = conn
        self.expect_continue = expect_continue
        self.trailer_max = trailer_max
        self.left = 0           # bytes left in the current chunk
        self.done = False
        self.failed = False

    def _more(self) -> None:
        self._continue()
        self.conn.buf += self.conn.recv_body(RECV_SIZE)

    def _next_chunk(self) -> None:
        """Read the next chunk-size line (after the CRLF ending the previous chunk)."""
        conn = self.conn
        while True:
            idx = conn.buf.find(b"\r\n")
            if idx >= 0:
                break
            if len(conn.buf) > CHUNK_LINE_MAX:
                self._fail("chunk size line too long")
            self._more()
        if idx > CHUNK_LINE_MAX:
            self._fail("chunk size line too long")
        line, conn.buf = conn.buf[:idx], conn.buf[idx + 2:]
        if b"\n" in line or b"\r" in line:
            self._fail("bare CR or LF in a chunk size line")
        size = line.split(b";", 1)[0].rstrip(b" \t")
        if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
            self._fail("invalid chunk size")
        self.left = int(size, 16)
        if self.left == 0:
            self._trailers()

    def _trailers(self) -> None:
        conn = self.conn
        while True:
            if conn.buf[:2] == b"\r\n":
                conn.buf = conn.buf[2:]
                break
            idx = conn.buf.find(b"\r\n\r\n")
            if idx >= 0:
                conn.buf = conn.buf[idx + 4:]
                break
            if len(conn.buf) > self.trailer_max:
                self._fail("trailers too large")
            self._more()
        self.done = True

    def _fail(self, why: str):
        self.failed = True
        raise ValueError("malformed chunked request body: " + why)

    def _chunk_data(self, size: int) -> bytes:
        """Up to ``size`` bytes of the current chunk (at least one)."""
        conn = self.conn
        if not conn.buf:
            self._more()
        n = min(size, self.left, len(conn.buf))
        data, conn.buf = conn.buf[:n], conn.buf[n:]
        self.left -= n
        if self.left == 0:
            while len(conn.buf) < 2:
                self._more()
            if conn.buf[:2] != b"\r\n":
                self._fail("chunk not followed by CRLF")
            conn.buf = conn.buf[2:]
            self.left = -1          # a size line comes next
        return data

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` decoded bytes (all the rest when ``size`` is None or negative)."""
        if self.failed:
            raise ValueError("malformed chunked request body")
        unlimited = size is None or size < 0
        parts, have = [], 0
        while not self.done and (unlimited or have < size):
            if self.left <= 0:
                self._next_chunk()
                continue
            data = self._chunk_data(RECV_SIZE * 16 if unlimited else size - have)
            parts.append(data)
            have += len(data)
        return b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        """One line (up to and including ``\\n``), at most ``size`` bytes."""
        parts, have = [], 0
        while not self.done and (size is None or size < 0 or have < size):
            if self.left <= 0:
                self._next_chunk()
                continue
            conn = self.conn
            if not conn.buf:
                self._more()
            window = min(self.left, len(conn.buf))
            if size is not None and size >= 0:
                window = min(window, size - have)
            idx = conn.buf.find(b"\n", 0, window)
            data = self._chunk_data(idx + 1 if idx >= 0 else window)
            parts.append(data)
            have += len(data)
            if idx >= 0:
                break
        return b"".join(parts)

    @property
    def finished(self) -> bool:
        """The whole body (and its trailers) was read."""
        return self.done

    def hopeless(self) -> bool:
        """The unread rest cannot be drained: broken framing, or the client waits for a
        100 Continue it will not get."""
        return not self.done and (self.failed or self.expect_continue)

    def drain(self) -> bool:
        """Discard what the app left unread (up to ``DRAIN_MAX``); False when the
        connection cannot be reused."""
        if self.done:
            return True
        if self.hopeless():
            return False
        try:
            self.read(DRAIN_MAX)
        except ValueError:
            return False
        return self.done


class _Connection:
    """One client connection: its socket and the bytes received but not consumed yet."""

    __slots__ = ("sock", "buf", "timed", "keepalive", "_recv")

    def __init__(self, sock, keepalive):
        self.sock = sock
        self.buf = b""
        self.timed = False
        self.keepalive = keepalive or None
        self._recv = sock.recv

    def arm(self) -> None:
        """Reads from now on time out after ``keepalive`` seconds."""
        if not self.timed and self.keepalive:
            self.sock.settimeout(self.keepalive)
            self.timed = True

    def fill(self) -> bool:
        """Wait (at most ``keepalive`` seconds) for more of a request head; False when
        the client closed the connection or stayed silent."""
        self.arm()
        try:
            data = self._recv(RECV_SIZE)
        except (socket.timeout, TimeoutError):
            return False
        if not data:
            return False
        self.buf = self.buf + data if self.buf else data
        return True

    def untimed(self) -> None:
        """The head is in: no deadline for the body and the response (as gunicorn)."""
        if self.timed:
            self.sock.settimeout(None)
            self.timed = False

    def recv_body(self, size: int) -> bytes:
        """The next body bytes; a client that closes mid-body is a ConnectionResetError."""
        data = self._recv(size)
        if not data:
            raise ConnectionResetError(errno.ECONNRESET, "client closed the connection mid-body")
        return data

    def send(self, data) -> None:
        """Send all of ``data`` (one system call when the socket takes it at once)."""
        try:
            sent = self.sock.send(data)
            if sent < len(data):
                self.sock.sendall(memoryview(data)[sent:])
        except OSError as exc:
            raise _ClientGone(exc) from exc


class _Response:
    """The WSGI response of one request: ``start_response`` (a bound method, so
    ``start_response.__self__.force_close()`` works), the ``write`` callable, framing."""

    __slots__ = ("conn", "worker", "version", "no_body", "status", "status_code", "headers",
                 "_lines", "length", "sent", "chunked", "headers_sent", "must_close",
                 "request_input", "keep")

    def __init__(self, conn, worker, version, method, keep):
        self.conn = conn
        self.worker = worker
        self.version = version
        #: HEAD: no body whatever the status.
        self.no_body = method == "HEAD"
        self.status = None
        self.status_code = None
        self.headers = []
        self._lines = None
        self.length = None
        self.sent = 0
        self.chunked = False
        self.headers_sent = False
        self.must_close = False
        self.request_input = None
        #: The request allows keeping the connection (version, Connection header).
        self.keep = keep

    def force_close(self) -> None:
        """Close the connection after this response."""
        self.must_close = True

    def start_response(self, status, headers, exc_info=None):
        """PEP 3333 ``start_response``."""
        if exc_info:
            try:
                if self.headers_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called twice without exc_info")
        if type(status) is not str:
            raise TypeError("status %r is not a string" % (status,))
        if not _STATUS(status):
            raise ValueError("invalid status %r" % (status,))
        kept, lines, length = [], [], None
        for name, value in headers:
            if type(name) is not str or type(value) is not str:
                raise TypeError("header %r: name and value must be strings" % (name,))
            lname = name.lower()
            if lname in _DROPPED_RESPONSE_HEADERS:
                continue
            if not _TOKEN(name):
                raise ValueError("invalid response header name %r" % (name,))
            if _BAD_VALUE(value):
                raise ValueError("invalid value for response header %r" % (name,))
            value = value.strip(" \t")
            if lname == "content-length":
                length = int(value)
                if length < 0:
                    raise ValueError("negative Content-Length")
            kept.append((name, value))
            lines.append("%s: %s\r\n" % (name, value))
        code = int(status[:3])
        self.status, self.status_code, self.headers, self._lines = status, code, kept, lines
        if code < 200 or code in (204, 304):
            self.no_body = True
            if code < 200 or code == 204:
                # RFC 9110 8.6: no Content-Length on 1xx and 204.
                self._lines = [ln for ln in lines if not ln[:15].lower() == "content-length:"]
                length = None
        self.length = length
        return self.write

    def _closing(self) -> bool:
        if self.must_close or not self.keep or not self.worker.alive:
            return True
        body = self.request_input
        if body is not None and body.hopeless():
            self.must_close = True
        return self.must_close

    def _head(self, framing: str) -> bytes:
        """Status line and headers; ``framing`` is the Transfer-Encoding/Content-Length
        line the server adds (or "")."""
        if self.status is None:
            raise AssertionError("the response body started before start_response()")
        if self._closing():
            conn = "close"
            self.must_close = True
        else:
            conn = "keep-alive"     # implied on 1.1, but clients and tests read it (as gunicorn's)
        self.headers_sent = True
        return ("%s %s\r\n%sServer: gunicorn\r\nDate: %s\r\nConnection: %s\r\n%s\r\n" % (
            self.version, self.status, "".join(self._lines), http_date(), conn, framing)
        ).encode("latin-1")

    def write(self, data: bytes) -> None:
        """Send body bytes now (the legacy ``write`` callable, and each chunk of the
        app's iterable); the head goes with the first ones."""
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError("response body items must be bytes, not %s" % type(data).__name__)
            data = bytes(data)
        if not self.headers_sent:
            if self.no_body:
                self.conn.send(self._head(""))
                return
            if self.length is None:
                if self.version == "HTTP/1.1":
                    self.chunked = True
                    head = self._head("Transfer-Encoding: chunked\r\n")
                else:
                    self.must_close = True
                    head = self._head("")
            else:
                head = self._head("")
            if not data:
                self.conn.send(head)
                return
            data = self._frame(data)
            if len(data) <= COALESCE_MAX:
                self.conn.send(head + data)
            else:
                self.conn.send(head)
                self.conn.send(data)
            return
        if self.no_body or not data:
            return
        data = self._frame(data)
        if data:
            self.conn.send(data)

    def _frame(self, data: bytes) -> bytes:
        if self.no_body:
            return b""
        if self.length is not None:
            room = self.length - self.sent
            if len(data) > room:
                data = data[:room]
            self.sent += len(data)
            return data
        self.sent += len(data)
        if self.chunked and data:
            return b"%X\r\n%s\r\n" % (len(data), data)
        return data

    def finish(self) -> None:
        """The app's iterable is exhausted: complete the response."""
        if not self.headers_sent:
            if self.status is None:
                raise AssertionError("the app returned without calling start_response()")
            if self.length is None and not self.no_body:
                # Nothing was sent at all: an empty body, framed by its length.
                self.length = 0
                self.conn.send(self._head("Content-Length: 0\r\n"))
                return
            self.conn.send(self._head(""))
            if self.length and not self.no_body:
                self.must_close = True      # declared a body, sent none
            return
        if self.chunked:
            self.conn.send(_CHUNK_END)
        elif self.length is not None and self.sent < self.length and not self.no_body:
            # Fewer bytes than declared: the client cannot tell where this response
            # ends, so the connection cannot carry another.
            self.must_close = True


class LeanGeventWorker(GeventWorker):
    """gunicorn's gevent worker with a lean HTTP/1.1 connection loop (module docstring)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cfg = self.cfg
        # What the lean loop does not speak: let gunicorn's loop serve those connections.
        self._delegate = (
            getattr(cfg, "proxy_protocol", "off") not in ("off", None, False)
            or getattr(cfg, "protocol", "http") != "http"
            or "h2" in (getattr(cfg, "http_protocols", None) or ())
            or getattr(cfg, "http2_cleartext", "off") not in ("off", None, False))
        line = cfg.limit_request_line
        if line < 0 or line >= _MAX_REQUEST_LINE:
            line = _MAX_REQUEST_LINE
        elif line == 0:
            line = _UNLIMITED_LINE
        fields = cfg.limit_request_fields
        if fields <= 0 or fields > _MAX_HEADERS:
            fields = _MAX_HEADERS
        field_size = cfg.limit_request_field_size
        if field_size <= 0:
            field_size = _DEFAULT_FIELD_SIZE
        self._limits = (line, fields, field_size)
        #: The longest head buffered before 431 (gunicorn's ``max_buffer_headers``).
        self._head_max = line + 2 + fields * (field_size + 2) + 4
        self._header_map = getattr(cfg, "header_map", "drop")
        self._keys: dict = {}
        self._trusted_peer = TrustedPeers(cfg)
        self._scheme_keys = {"HTTP_" + name.upper().replace("-", "_"): value
                             for name, value in (cfg.secure_scheme_headers or {}).items()}
        self._script_name = os.environ.get("SCRIPT_NAME", "")

    # ---------------------------------------------------------------- connection
    def handle(self, listener, client, addr):
        """Serve one connection (gevent's StreamServer calls this in a new greenlet)."""
        if self._delegate:
            return super().handle(listener, client, addr)
        client.setblocking(1)
        try:
            if isinstance(client, ssl.SSLSocket) and not self.cfg.do_handshake_on_connect:
                client.do_handshake()
            self._serve(listener, client, addr)
        except _ClientGone:
            pass
        except ssl.SSLError as exc:
            self.log.debug("SSL error on a client connection: %s", exc)
        except OSError as exc:
            if exc.errno not in _QUIET_ERRNOS and not isinstance(exc, (socket.timeout, TimeoutError)):
                self.log.exception("Socket error processing request.")
        except Exception:
            self.log.exception("Error serving a connection")
        finally:
            util.close(client)

    def _base_environ(self, listener, client, addr) -> dict:
        """The environ keys shared by every request of one connection."""
        cfg = self.cfg
        env = {
            "wsgi.errors": WSGIErrorsWrapper(cfg),
            "wsgi.version": (1, 0),
            # As gunicorn's gevent worker says: other greenlets run the app concurrently.
            "wsgi.multithread": True,
            "wsgi.multiprocess": cfg.workers > 1,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
            "wsgi.url_scheme": "https" if cfg.is_ssl else "http",
            "SERVER_SOFTWARE": "gunicorn",
            "SCRIPT_NAME": self._script_name,
            "gunicorn.socket": client,
        }
        server = listener.getsockname()
        if isinstance(server, tuple):
            env["SERVER_NAME"] = server[0]
            env["SERVER_PORT"] = str(server[1])
        if isinstance(addr, tuple):
            env["REMOTE_ADDR"] = addr[0]
            env["REMOTE_PORT"] = str(addr[1])
        else:
            env["REMOTE_ADDR"] = addr.decode() if isinstance(addr, bytes) else (addr or "")
        return env

    def _key(self, name: bytes):
        """The environ key of request header ``name`` (None: dropped); memoized."""
        key = self._keys.get(name, 0)
        if key != 0:
            return key
        upper = name.decode("latin-1").upper()
        if upper == "CONTENT-TYPE":
            key = "CONTENT_TYPE"
        elif upper == "CONTENT-LENGTH":
            key = "CONTENT_LENGTH"
        elif "_" in upper and self._header_map != "dangerous":
            if self._header_map != "drop":
                raise _HttpError(400, "header name with an underscore: %s" % upper)
            key = None
        else:
            key = "HTTP_" + upper.replace("-", "_")
        if len(self._keys) < 1024:
            self._keys[name] = key
        return key

    def _serve(self, listener, client, addr):
        """The keep-alive loop of one connection."""
        cfg = self.cfg
        conn = _Connection(client, cfg.keepalive)
        base = self._base_environ(listener, client, addr)
        unix_server = "SERVER_NAME" not in base
        scheme_keys = self._scheme_keys if self._trusted_peer(addr) else None
        line_limit, fields, field_size = self._limits
        head_max = self._head_max
        parse = gunicorn_h1c.parse_request
        pre_request, post_request = cfg.pre_request, cfg.post_request
        access_log = getattr(self.log, "access_log_enabled", True)
        key_of = self._key
        keys = self._keys
        app = self.wsgi
        one_request = not cfg.keepalive
        loop = get_hub().loop
        last_turn = -1
        while True:
            # ---------------------------------------------------------- the head
            buf = conn.buf
            end = buf.find(b"\r\n\r\n") if buf else -1
            while end < 0:
                if buf:
                    if len(buf) > head_max:
                        return self._refuse(conn, addr, _HttpError(431, "request head too large"))
                    if len(buf) > line_limit + 2 and buf.find(b"\r\n", 0, line_limit + 2) < 0:
                        return self._refuse(conn, addr, _HttpError(414, "request line too long"))
                    if b"\n" in buf and buf.count(b"\n") != buf.count(b"\r\n"):
                        return self._refuse(conn, addr, _HttpError(400, "bare LF in the request head"))
                # Even when the worker is stopping: a connection accepted in the moment
                # before the listener closed gets its request answered (with "close").
                if not conn.fill():
                    return
                buf = conn.buf
                end = buf.find(b"\r\n\r\n")
            try:
                head = parse(buf, 0, line_limit, fields, field_size)
            except gunicorn_h1c.LimitRequestLine as exc:
                return self._refuse(conn, addr, _HttpError(414, str(exc)))
            except gunicorn_h1c.LimitRequestHeaders as exc:
                return self._refuse(conn, addr, _HttpError(431, str(exc)))
            except gunicorn_h1c.ParseError as exc:
                return self._refuse(conn, addr, _HttpError(400, str(exc)))
            conn.buf = buf[head["consumed"]:]
            conn.untimed()
            started = datetime.now() if access_log else None
            try:
                env, req, resp, body = self._request(
                    head, base, conn, key_of, keys, scheme_keys, unix_server, addr, one_request)
            except _HttpError as exc:
                return self._refuse(conn, addr, exc)
            # ---------------------------------------------------------- the app
            # Fairness: gevent switches greenlets only when one waits.  A client that
            # sends its next request as soon as it has the answer, served without any
            # wait (SQLite, a cached answer, a ping), would keep the worker while the
            # other connections' requests sit in their sockets.  When the hub has not run
            # since this connection's previous request, give it one turn first; a
            # request that waited (the database, the socket) already gave the others theirs.
            turn = loop.iteration
            if turn == last_turn:
                sleep(0)
                turn = loop.iteration
            last_turn = turn
            try:
                self._call(app, env, req, resp, pre_request)
            finally:
                if started is not None:
                    self.log.access(resp, req, env, datetime.now() - started)
                try:
                    post_request(self, req, env, resp)
                except Exception:
                    self.log.exception("Exception in post_request hook")
            if resp.must_close or not self.alive:
                return self._close_after(conn, body)
            if body is not None and not body.finished:
                conn.arm()          # a client that stops sending mid-body is dropped
                if not body.drain():
                    return self._close_after(conn, body)

    def _request(self, head, base, conn, key_of, keys, scheme_keys, unix_server, addr, one_request):
        """(environ, hook request, response, lazy body reader or None) of a parsed head."""
        target = head["path"]
        if _BAD_TARGET(target):
            raise _HttpError(400, "invalid character in the request target")
        method = head["method"].decode("latin-1")
        uri = target.decode("latin-1")
        if target[:1] == b"/" and b"#" not in target:
            path, _, query = uri.partition("?")
        else:
            try:
                parts = util.split_request_uri(uri)
            except ValueError:
                raise _HttpError(400, "invalid request target") from None
            path, query = parts.path or "", parts.query or ""
        minor = head["minor_version"]
        version = "HTTP/1.1" if minor == 1 else "HTTP/1.0"
        env = base.copy()
        env["REQUEST_METHOD"] = method
        env["RAW_URI"] = uri
        env["QUERY_STRING"] = query
        env["SERVER_PROTOCOL"] = version
        raw = head["headers"]
        for name, value in raw:
            key = keys.get(name, 0)
            if key == 0:
                key = key_of(name)
            if key is None:
                continue
            value = value.decode("latin-1")
            if key in env:
                if key in ("CONTENT_TYPE", "HTTP_HOST"):
                    raise _HttpError(400, "repeated %s header" % key)
                env[key] = env[key] + "," + value
            else:
                env[key] = value
        if scheme_keys:
            scheme = None
            for key, secure in scheme_keys.items():
                value = env.get(key)
                if value is not None:
                    this = "https" if value == secure else "http"
                    if scheme is not None and this != scheme:
                        raise _HttpError(400, "contradictory scheme headers")
                    scheme = this
            if scheme is not None:
                env["wsgi.url_scheme"] = scheme
        script_name = self._script_name
        if script_name:
            if not path.startswith(script_name):
                raise _HttpError(400, "the request path does not start with SCRIPT_NAME")
            path_info = path[len(script_name):]
        else:
            path_info = path
        env["PATH_INFO"] = unquote_to_bytes(path_info).decode("latin-1") if "%" in path_info else path_info
        if unix_server:
            host = env.get("HTTP_HOST", "")
            name, _, port = host.partition(":")
            env["SERVER_NAME"] = name
            env["SERVER_PORT"] = port or ("443" if env["wsgi.url_scheme"] == "https" else "80")
        # Persistence (RFC 9112 9.3): 1.1 unless "close", 1.0 only with "keep-alive".
        connection = env.get("HTTP_CONNECTION")
        if connection is None:
            keep = minor == 1
        else:
            tokens = connection.lower()
            if "close" in tokens and "close" in [t.strip(" \t") for t in tokens.split(",")]:
                keep = False
            elif minor == 1:
                keep = True
            else:
                keep = "keep-alive" in [t.strip(" \t") for t in tokens.split(",")]
        if one_request or method == "CONNECT":
            # CONNECT: what follows on the connection is tunnel data, never a request.
            keep = False
        expect = False
        if minor == 1:
            expectation = env.get("HTTP_EXPECT")
            if expectation is not None:
                if expectation.lower() != "100-continue":
                    raise _HttpError(417, "unsupported expectation")
                expect = True
        # The body.
        body = None
        te = env.get("HTTP_TRANSFER_ENCODING")
        if te is not None:
            if te.strip(" \t").lower() != "chunked":
                raise _HttpError(400, "unsupported Transfer-Encoding")
            body = _ChunkedInput(conn, expect, self._head_max)
            stream = body
        else:
            length = env.get("CONTENT_LENGTH")
            if length and length != "0":
                n = int(length)         # the parser accepted only digits
                buf = conn.buf
                if len(buf) >= n:
                    stream = io.BytesIO(buf[:n])
                    conn.buf = buf[n:]
                else:
                    body = _LengthInput(conn, n, expect)
                    stream = body
            else:
                stream = io.BytesIO()
        env["wsgi.input"] = stream
        req = _Request(method, uri, path, query, (1, minor), raw, addr)
        req.body = stream
        req.scheme = env["wsgi.url_scheme"]
        resp = _Response(conn, self, version, method, keep)
        resp.request_input = body
        return env, req, resp, body

    def _call(self, app, env, req, resp, pre_request):
        """Run the ``pre_request`` hook and the app for one request; send the response."""
        result = None
        try:
            pre_request(self, req)
            self.nr += 1
            if self.nr >= self.max_requests and self.alive:
                self.log.info("Autorestarting worker after current request.")
                self.alive = False
            result = app(env, resp.start_response)
            if (type(result) is list or type(result) is tuple) and resp.status is not None \
                    and not resp.headers_sent and resp.length is None and not resp.no_body:
                # A finite body of known size: framed by its length, not chunked.
                data = b"".join(result)
                resp.length = len(data)
                resp._lines.append("Content-Length: %d\r\n" % len(data))
                resp.write(data)
            else:
                for data in result:
                    if data:
                        resp.write(data)
            resp.finish()
        except _ClientGone:
            resp.must_close = True
        except Exception:
            resp.must_close = True
            self.log.exception("Error handling request %s %s", env["REQUEST_METHOD"], env["RAW_URI"])
            if not resp.headers_sent:
                # Nothing sent yet: a plain 500 (never the traceback), then close.
                try:
                    resp.conn.send(_error_response(500, resp.version))
                except _ClientGone:
                    pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    self.log.exception("Error closing the response iterable")

    def _refuse(self, conn, addr, exc: _HttpError) -> None:
        """Answer a bad request with its status and close the connection."""
        self.log.warning("Invalid request from ip=%s: %s",
                         addr[0] if isinstance(addr, tuple) else addr, exc)
        try:
            conn.send(_error_response(exc.status, "HTTP/1.1"))
        except _ClientGone:
            return
        conn.untimed()
        util.close_graceful(conn.sock)

    def _close_after(self, conn, body) -> None:
        """Close after a response; when the client may still be sending a body, half-close
        and linger so it reads the response instead of getting a reset."""
        if body is not None and not body.finished:
            conn.untimed()
            util.close_graceful(conn.sock)


def _error_response(status: int, version: str) -> bytes:
    reason = _REASONS.get(status, "Error")
    body = ("%d %s\n" % (status, reason)).encode()
    return ("%s %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nDate: %s\r\n"
            "Connection: close\r\n\r\n" % (version, status, reason, len(body), http_date())
            ).encode("latin-1") + body
