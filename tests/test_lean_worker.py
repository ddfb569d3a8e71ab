"""``mcp_flask.lean_worker.LeanGeventWorker`` under real gunicorn, spoken to over raw sockets.

A module-wide gunicorn (one lean worker, ``keepalive = 2``, small head limits, hooks that
record what they see) serves ``tests/lean_app.py``; the tests write HTTP/1.x bytes on a
loopback socket and check the bytes that come back: keep-alive, pipelining, chunked
bodies both ways, ``Expect: 100-continue``, HTTP/1.0, refused heads, HEAD, streaming,
errors, the hooks.  Two more servers check ``max_requests`` (a new worker pid) and the
real mcp-flask app through the lean worker.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, free_port, poll, stop_group

pytestmark = pytest.mark.gunicorn

LEAN = "mcp_flask.lean_worker.LeanGeventWorker"
TESTS = os.path.join(ROOT, "tests")

HOOKS_CONF = """
def pre_request(worker, req):
    import gevent
    import lean_app
    gevent.sleep(0)         # a hook that switches greenlets must be fine
    lean_app.HOOKS["pre"] = {"method": req.method, "path": req.path, "uri": req.uri,
                             "version": list(req.version), "headers": req.headers}


def post_request(worker, req, environ, resp):
    import lean_app
    lean_app.HOOKS["post"] = {"path": req.path, "status": resp.status}
"""


class Gunicorn:
    """Real gunicorn with the lean worker serving ``lean_app:app`` on a free loopback port."""

    def __init__(self, workdir: str, settings: str = "", args=()):
        self.port = free_port()
        conf = os.path.join(workdir, "gunicorn_test.conf.py")
        with open(conf, "w") as fh:
            fh.write("control_socket_disable = True\nloglevel = 'info'\n" + settings + HOOKS_CONF)
        self.log_path = os.path.join(workdir, "gunicorn.log")
        self.log = open(self.log_path, "wb")
        # cwd is the work dir, so the repository's gunicorn.conf.py is not read.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", conf, "-k", LEAN, "-w", "1",
             "--pythonpath", TESTS, "-b", f"127.0.0.1:{self.port}", *args, "lean_app:app"],
            cwd=workdir, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            poll(self._answers, deadline_s=30, every=0.1)
        except AssertionError:
            self.stop()
            raise RuntimeError("gunicorn did not come up:\n" + self.output())

    def _answers(self) -> bool:
        try:
            return get_json(self.port, "/pid") is not None
        except OSError:
            return False

    def output(self) -> str:
        """Everything gunicorn logged so far."""
        self.log.flush()
        with open(self.log_path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")

    def stop(self) -> None:
        """SIGTERM the process group; SIGKILL after 15 s."""
        stop_group(self.proc)
        self.log.close()


class Raw:
    """A raw HTTP/1.x client connection: send bytes, read responses exactly."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self):
        """Close the socket."""
        self.sock.close()

    def send(self, data: bytes) -> None:
        """Send all of ``data``."""
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed by the server")
        self.buf += data

    def read_until(self, sep: bytes) -> bytes:
        """The bytes up to and including ``sep``."""
        while sep not in self.buf:
            self._fill()
        idx = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:idx], self.buf[idx:]
        return out

    def read_exact(self, n: int) -> bytes:
        """Exactly ``n`` bytes."""
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_head(self):
        """(status code, {lower-case name: value}, raw head bytes)."""
        raw = self.read_until(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        code = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return code, headers, raw

    def read_chunk(self) -> bytes:
        """One chunk of a chunked body (b"" for the last, its trailers consumed)."""
        size = int(self.read_until(b"\r\n")[:-2].split(b";")[0], 16)
        if size == 0:
            self.read_until(b"\r\n")
            return b""
        data = self.read_exact(size)
        assert self.read_exact(2) == b"\r\n"
        return data

    def response(self, method: str = "GET"):
        """(status code, headers, body) of the next response."""
        code, headers, _ = self.read_head()
        if method == "HEAD" or code in (204, 304) or code < 200:
            return code, headers, b""
        if "content-length" in headers:
            return code, headers, self.read_exact(int(headers["content-length"]))
        if headers.get("transfer-encoding") == "chunked":
            parts = []
            while True:
                chunk = self.read_chunk()
                if not chunk:
                    return code, headers, b"".join(parts)
                parts.append(chunk)
        body = self.buf
        self.buf = b""
        while True:
            data = self.sock.recv(65536)
            if not data:
                return code, headers, body
            body += data

    def closed(self, within: float = 5.0) -> bool:
        """True when the server closes the connection within ``within`` seconds (nothing
        else may arrive before)."""
        self.sock.settimeout(within)
        try:
            data = self.buf or self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        assert not data, f"unexpected bytes: {data[:200]!r}"
        return True


def request(path: str, method: str = "GET", body: bytes = b"", headers=(), version: str = "1.1") -> bytes:
    """The bytes of one request (Host, and Content-Length when there is a body or a POST/PUT)."""
    lines = [f"{method} {path} HTTP/{version}", "Host: localhost"]
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    lines += list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def get_json(port: int, path: str, **kw):
    """GET ``path`` on a new connection (closed after); the JSON body of its 200."""
    c = Raw(port)
    try:
        c.send(request(path, headers=["Connection: close"], **kw))
        code, _, body = c.response()
        assert code == 200, (code, body)
        return json.loads(body)
    finally:
        c.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The module's gunicorn: keepalive 2 s, head limits 1024 bytes / 30 fields."""
    s = Gunicorn(str(tmp_path_factory.mktemp("lean")),
                 "keepalive = 2\nlimit_request_line = 1024\nlimit_request_field_size = 1024\n"
                 "limit_request_fields = 30\n")
    yield s
    s.stop()


@pytest.fixture
def conn(server):
    """A fresh raw connection to the module's server."""
    c = Raw(server.port)
    yield c
    c.close()


# ------------------------------------------------------------------ persistence
def test_keep_alive_serves_several_requests_on_one_connection(conn):
    for i in range(5):
        conn.send(request(f"/echo?i={i}", "POST", b'{"n": %d}' % i))
        code, headers, body = conn.response()
        assert code == 200
        assert headers["connection"] == "keep-alive"        # HTTP/1.1: persistent by default
        assert headers["server"] == "gunicorn"              # no version
        assert headers["date"].endswith(" GMT")
        assert json.loads(body)["query"] == f"i={i}"
        assert json.loads(body)["length"] == len(b'{"n": %d}' % i)
    assert not conn.closed(within=0.3)


def test_pipelined_requests_in_one_send_are_answered_in_order(conn):
    conn.send(request("/echo/one", "POST", b"first body") + request("/echo/two?x=1"))
    code1, _, body1 = conn.response()
    code2, _, body2 = conn.response()
    assert (code1, code2) == (200, 200)
    one, two = json.loads(body1), json.loads(body2)
    assert (one["path"], one["length"]) == ("/echo/one", len(b"first body"))
    assert (two["path"], two["query"], two["length"]) == ("/echo/two", "x=1", 0)


def test_http_1_0_closes_unless_keep_alive_is_asked(server):
    c = Raw(server.port)
    c.send(request("/pid", version="1.0"))
    code, headers, _ = c.read_head()
    assert code == 200 and headers["connection"] == "close"
    c.read_exact(int(headers["content-length"]))
    assert c.closed()
    c.close()

    c = Raw(server.port)
    for _ in range(2):
        c.send(request("/pid", version="1.0", headers=["Connection: keep-alive"]))
        code, headers, _ = c.response()
        assert code == 200 and headers["connection"] == "keep-alive"
    c.close()


def test_connection_close_is_honoured(conn):
    conn.send(request("/pid", headers=["Connection: close"]))
    code, headers, body = conn.response()
    assert code == 200 and headers["connection"] == "close" and json.loads(body)["pid"]
    assert conn.closed()


def test_an_idle_keep_alive_connection_is_closed_after_keepalive_seconds(conn):
    conn.send(request("/pid"))
    assert conn.response()[0] == 200
    started = time.monotonic()
    assert conn.closed(within=6)
    assert 1.5 <= time.monotonic() - started <= 5


def test_force_close_from_the_app_closes_after_the_response(conn):
    conn.send(request("/close"))
    code, headers, body = conn.response()
    assert code == 200 and headers["connection"] == "close" and json.loads(body) == {"closing": True}
    assert conn.closed()


# ------------------------------------------------------------------ request bodies
def test_chunked_request_body_is_decoded(conn):
    payload = b"hello, " * 50 + b"world"
    chunks = [payload[i:i + 37] for i in range(0, len(payload), 37)]
    framed = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\nX-Trailer: t\r\n\r\n"
    conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + framed[:50])
    time.sleep(0.05)                # the rest in a second segment
    conn.send(framed[50:])
    code, _, body = conn.response()
    seen = json.loads(body)
    assert code == 200
    assert (seen["length"], seen["sha256"]) == (len(payload), hashlib.sha256(payload).hexdigest())
    assert seen["input_terminated"] is True
    conn.send(request("/pid"))      # the connection carries on after the trailers
    assert conn.response()[0] == 200


def test_chunked_body_read_line_by_line(conn):
    conn.send(b"POST /lines HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"3\r\na\nb\r\n4\r\n\nccc\r\n2\r\n\nd\r\n0\r\n\r\n")
    code, _, body = conn.response()
    assert code == 200 and json.loads(body)["lines"] == ["a\n", "b\n", "ccc\n", "d"]


def test_a_large_content_length_body_arriving_in_pieces(conn):
    payload = os.urandom(300_000)
    conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n\r\n")
    for i in range(0, len(payload), 100_000):
        time.sleep(0.02)
        conn.send(payload[i:i + 100_000])
    code, _, body = conn.response()
    seen = json.loads(body)
    assert code == 200 and seen["length"] == 300_000
    assert seen["sha256"] == hashlib.sha256(payload).hexdigest()
    conn.send(request("/pid"))
    assert conn.response()[0] == 200


def test_content_length_body_read_line_by_line_from_the_socket(conn):
    body = b"one\ntwo\nthree"
    conn.send(b"POST /lines HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
    time.sleep(0.05)                # the body is not in the head's segment
    conn.send(body + request("/pid"))   # ... and the next request follows it at once
    code, _, reply = conn.response()
    assert code == 200 and json.loads(reply)["lines"] == ["one\n", "two\n", "three"]
    assert conn.response()[0] == 200


def test_expect_100_continue_is_answered_before_the_body_is_sent(conn):
    conn.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    interim = conn.read_until(b"\r\n\r\n")
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn.send(b"abcde")
    code, _, body = conn.response()
    assert code == 200 and json.loads(body)["length"] == 5


def test_expect_100_continue_without_reading_the_body_answers_and_closes(conn):
    conn.send(b"POST /unread HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    code, headers, body = conn.response()       # no 100 Continue first: the final answer
    assert code == 200 and json.loads(body) == {"read": False}
    assert headers["connection"] == "close"     # the client may or may not send the body now
    assert conn.closed()


def test_an_unread_small_body_is_drained_and_the_connection_kept(conn):
    conn.send(b"POST /unread HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n")
    time.sleep(0.05)
    conn.send(b"z" * 20000)
    code, headers, _ = conn.response()
    assert code == 200 and headers["connection"] == "keep-alive"
    conn.send(request("/echo?after=1"))
    code, _, body = conn.response()
    assert code == 200 and json.loads(body)["query"] == "after=1"


def test_a_body_that_stops_arriving_is_dropped_after_keepalive_seconds(conn):
    """The server drains an unread body to keep the connection; a client that stops
    sending half way is dropped by the idle watchdog, not waited for forever."""
    conn.send(b"POST /unread HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n" + b"z" * 100)
    code, headers, _ = conn.response()
    assert code == 200 and headers["connection"] == "keep-alive"
    started = time.monotonic()
    assert conn.closed(within=6)
    assert 1.5 <= time.monotonic() - started <= 5


def test_an_unread_large_body_closes_the_connection(conn):
    conn.send(b"POST /unread HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"z" * 1000)
    code, headers, _ = conn.response()
    assert code == 200 and headers["connection"] == "close"
    assert conn.closed()


# ------------------------------------------------------------------ refused heads
@pytest.mark.parametrize("head, status", [
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400),
    (b"POST /echo HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", 400),
    (b"GET /echo HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400),
    (b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Ctl: a\x01b\r\n\r\n", 400),
    (b"GET /echo HTTP/1.2\r\nHost: x\r\n\r\n", 400),
    (b"GET /echo HTTP/2.0\r\nHost: x\r\n\r\n", 400),
    (b"GET /echo\r\n\r\n", 400),
    (b"GET /\xe9 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /echo HTTP/1.1\nHost: x\n\n", 400),
    (b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET /echo HTTP/1.1\r\nHost: x\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n", 400),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: something-else\r\n\r\nx", 417),
    (b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 1100 + b"\r\n\r\n", 431),
    (b"GET /echo HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(40)) + b"\r\n", 431),
], ids=["cl+te", "cl-not-a-number", "cl-negative", "cl-twice-differing", "te-gzip", "te-gzip-chunked",
        "chunked-http-1.0", "obs-fold", "space-in-name", "control-char", "http-1.2", "http-2.0",
        "http-0.9", "non-ascii-target", "bare-lf", "two-hosts", "two-content-types", "expectation",
        "request-line-too-long", "header-too-long", "too-many-headers"])
def test_a_bad_head_is_refused_and_the_connection_closed(conn, head, status):
    conn.send(head)
    code, headers, body = conn.response()
    assert code == status
    assert headers["connection"] == "close"
    assert b"Traceback" not in body
    assert conn.closed()


def test_a_huge_request_line_is_refused_before_its_end_arrives(conn):
    conn.send(b"GET /" + b"a" * 5000)        # no CRLF yet: no need to wait for it
    code, _, _ = conn.response()
    assert code == 414
    assert conn.closed()


# ------------------------------------------------------------------ environ
def test_environ_seen_by_the_app(conn):
    conn.send(request("/echo/a%20b%2Fc?q=1&r=%20", headers=[
        "X_Secret: spoofed", "X-Secret: real", "Accept: a", "Accept: b",
        "X-Forwarded-Proto: https", "Content-Type: text/plain"]))
    code, _, body = conn.response()
    seen = json.loads(body)
    assert code == 200
    assert seen["path"] == "/echo/a b/c"
    assert (seen["query"], seen["raw_uri"]) == ("q=1&r=%20", "/echo/a%20b%2Fc?q=1&r=%20")
    assert seen["http"]["HTTP_X_SECRET"] == "real"      # the underscore spelling was dropped
    assert seen["http"]["HTTP_ACCEPT"] == "a,b"
    assert seen["http"]["HTTP_HOST"] == "localhost"
    assert seen["content_type"] == "text/plain" and seen["content_length"] is None
    assert seen["scheme"] == "https"                     # loopback is a trusted proxy by default
    assert seen["protocol"] == "HTTP/1.1" and seen["script_name"] == ""
    assert seen["remote_addr"] == "127.0.0.1" and seen["server_name"] == "127.0.0.1"
    assert int(seen["server_port"]) > 0 and seen["has_socket"] is True


def test_an_absolute_form_target_is_split_like_gunicorn(conn):
    conn.send(b"GET http://example.test/echo/abs?k=v HTTP/1.1\r\nHost: example.test\r\n\r\n")
    code, _, body = conn.response()
    seen = json.loads(body)
    assert code == 200
    assert (seen["path"], seen["query"], seen["raw_uri"]) == ("/echo/abs", "k=v", "http://example.test/echo/abs?k=v")


def test_hooks_get_a_request_like_gunicorns(conn):
    conn.send(request("/pid"))
    assert conn.response()[0] == 200
    conn.send(request("/hooks?x=1", headers=["X-Probe: yes", "X_Hidden: no"]))
    code, _, body = conn.response()
    hooks = json.loads(body)
    assert code == 200
    assert hooks["pre"]["method"] == "GET" and hooks["pre"]["path"] == "/hooks"
    assert hooks["pre"]["uri"] == "/hooks?x=1" and hooks["pre"]["version"] == [1, 1]
    assert ["X-PROBE", "yes"] in hooks["pre"]["headers"]
    assert not any(name == "X_HIDDEN" for name, _ in hooks["pre"]["headers"])
    assert hooks["post"] == {"path": "/pid", "status": "200 OK"}


# ------------------------------------------------------------------ responses
def test_head_has_no_body(conn):
    conn.send(request("/echo", "HEAD"))
    code, headers, _ = conn.response("HEAD")
    assert code == 200 and int(headers["content-length"]) > 0
    # Had body bytes followed, this would read them as the next status line.
    conn.send(request("/echo?next=1"))
    code, _, body = conn.response()
    assert code == 200 and json.loads(body)["query"] == "next=1"


def test_never_more_bytes_than_the_declared_content_length(conn):
    conn.send(request("/overlong") + request("/pid"))
    code, headers, body = conn.response()
    assert code == 200 and body == b"abc"
    code, _, body = conn.response()             # "def" was not sent: this parses cleanly
    assert code == 200 and "pid" in json.loads(body)


def test_fewer_bytes_than_declared_closes_the_connection(conn):
    conn.send(request("/short"))
    code, headers, _ = conn.read_head()
    assert code == 200 and headers["content-length"] == "10"
    assert conn.read_exact(3) == b"abc"
    assert conn.closed()


def test_204_drops_its_body_and_content_length(conn):
    conn.send(request("/empty204"))
    code, headers, _ = conn.response()
    assert code == 204 and "content-length" not in headers and "transfer-encoding" not in headers
    conn.send(request("/pid"))
    assert conn.response()[0] == 200


def test_a_finite_body_without_length_is_framed_by_its_length(conn):
    conn.send(request("/nolength"))
    code, headers, body = conn.response()
    assert code == 200 and headers["content-length"] == "6" and body == b"abcdef"


def test_a_stream_arrives_chunk_by_chunk(conn, tmp_path):
    flag = tmp_path / "go"
    conn.send(request(f"/stream?flag={flag}"))
    code, headers, _ = conn.read_head()
    assert code == 200 and headers["transfer-encoding"] == "chunked"
    assert conn.read_chunk() == b"first\n"       # before the app may produce the second
    assert not flag.exists()
    flag.write_text("go")
    assert conn.read_chunk() == b"second\n"
    assert conn.read_chunk() == b""
    conn.send(request("/pid"))                   # the chunked framing ended cleanly
    assert conn.response()[0] == 200


def test_a_stream_to_an_http_1_0_client_is_delimited_by_close(conn, tmp_path):
    flag = tmp_path / "go"
    flag.write_text("go")
    conn.send(request(f"/stream?flag={flag}", version="1.0"))
    code, headers, body = conn.response()
    assert code == 200 and headers["connection"] == "close" and "transfer-encoding" not in headers
    assert body == b"first\nsecond\n"


def test_an_app_error_is_a_500_without_the_traceback(server, conn):
    conn.send(request("/boom"))
    code, headers, body = conn.response()
    assert code == 500 and headers["connection"] == "close"
    assert b"secret-detail" not in body and b"Traceback" not in body
    assert conn.closed()
    assert "secret-detail-before-headers" in server.output()    # logged, with its traceback


def test_an_app_error_after_the_headers_cuts_the_connection(conn):
    conn.send(request("/boom-late"))
    code, headers, _ = conn.read_head()
    assert code == 200 and headers["transfer-encoding"] == "chunked"
    assert conn.read_chunk() == b"partial"
    with pytest.raises(EOFError):
        conn.read_chunk()                        # no terminating chunk: the client sees the cut


# ------------------------------------------------------------------ process model
def test_max_requests_restarts_the_worker(tmp_path):
    # Four requests: the start-up probe's, then the three below.
    s = Gunicorn(str(tmp_path), "keepalive = 5\n", args=["--max-requests", "4", "--max-requests-jitter", "0",
                                                         "--access-logfile", "-"])
    try:
        c = Raw(s.port)
        pids = []
        for i in range(3):
            c.send(request("/pid"))
            code, headers, body = c.response()
            assert code == 200
            pids.append(json.loads(body)["pid"])
            assert headers["connection"] == ("close" if i == 2 else "keep-alive")
        assert headers["connection"] == "close" and c.closed()
        c.close()
        assert len(set(pids)) == 1
        new = poll(lambda: _other_pid(s.port, pids[0]), deadline_s=20, every=0.2)
        assert new != pids[0]
        assert "Autorestarting worker after current request." in s.output()
        assert '"GET /pid HTTP/1.1" 200 ' in s.output()          # gunicorn's access log works
    finally:
        s.stop()


def test_sigterm_lets_the_current_response_finish_then_closes(tmp_path):
    s = Gunicorn(str(tmp_path), "keepalive = 30\ngraceful_timeout = 20\n")
    try:
        old = get_json(s.port, "/pid")["pid"]
        flag = tmp_path / "go"
        c = Raw(s.port)
        c.send(request(f"/stream?flag={flag}"))
        assert c.read_head()[0] == 200 and c.read_chunk() == b"first\n"
        os.kill(old, signal.SIGTERM)            # the worker: stop after in-flight requests
        # A connection accepted while the worker stops (its listener closes within a
        # second) is still answered, with "close".
        late = Raw(s.port, timeout=30)
        late.send(request("/pid"))
        code, headers, body = late.response()
        assert code == 200
        if json.loads(body)["pid"] == old:      # (else it came after the listener closed)
            assert headers["connection"] == "close" and late.closed()
        late.close()
        time.sleep(0.3)
        flag.write_text("go")
        assert c.read_chunk() == b"second\n" and c.read_chunk() == b""
        assert c.closed()                       # not kept alive for another request
        c.close()
        assert poll(lambda: _other_pid(s.port, old), deadline_s=20, every=0.2) != old
    finally:
        s.stop()


def _other_pid(port, old):
    try:
        pid = get_json(port, "/pid")["pid"]
    except (OSError, EOFError, AssertionError):
        return None
    return pid if pid != old else None


def test_the_mcp_app_through_the_lean_worker(start_server, demo_db):
    import httpx
    server = start_server(f'[services.demo]\nurl = "sqlite:///{demo_db}"\n', env={"MCP_FLASK_WORKER_CLASS": LEAN})
    assert f"Using worker: {LEAN}" in server.output()
    url = server.url("demo")
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    with httpx.Client(timeout=30) as h:
        r = h.post(url, headers=accept, json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "lean-test", "version": "1"}}})
        assert r.status_code == 200, r.text
        sid = r.headers["Mcp-Session-Id"]
        session = dict(accept, **{"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"})
        assert h.post(url, headers=session, json={"jsonrpc": "2.0", "method": "notifications/initialized"}
                      ).status_code == 202
        r = h.post(url, headers=dict(session, Accept="application/json"), json={
            "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "get_tables", "arguments": {}}})
        assert r.status_code == 200, r.text
        result = r.json()["result"]
        assert result["isError"] is False
        tables = [t["name"] for t in json.loads(result["content"][0]["text"])["resource"]]
        assert tables and all(isinstance(t, str) for t in tables)
        # The same connection, several times: keep-alive through the real app.
        for i in range(3):
            r = h.post(url, headers=dict(session, Accept="application/json"),
                       json={"jsonrpc": "2.0", "id": 10 + i, "method": "ping"})
            assert r.status_code == 200 and r.json()["id"] == 10 + i
