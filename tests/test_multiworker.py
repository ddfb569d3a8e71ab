"""Real gunicorn with two gevent workers sharing sessions through Redis.

Each request goes out on a fresh connection so the kernel spreads them over
both workers; the structured log (one JSON line per request, with the worker's
pid, the request id we sent and the session) shows which worker served what.
Also: metrics summed over workers, graceful SIGTERM / HUP during a slow call,
and the refusal to run several workers without Redis.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest

from conftest import ROOT, poll
from redis_helpers import RedisScope

pytestmark = [pytest.mark.gunicorn, pytest.mark.slow]

ACCEPT = "application/json, text/event-stream"


@pytest.fixture
def redis_scope():
    s = RedisScope()
    yield s
    s.cleanup()


def config_for(db: str, **service) -> str:
    extra = "".join(f"{k} = {v}\n" for k, v in service.items())
    return f'[services.demo]\nurl = "sqlite:///{db}"\n{extra}'


def redis_env(scope: RedisScope, **more) -> dict:
    env = {"MCP_FLASK_REDIS_URL": scope.url, "MCP_FLASK_REDIS_PREFIX": scope.prefix,
           "MCP_FLASK_LOG_FORMAT": "json", "MCP_FLASK_LOG_LEVEL": "info"}
    env.update(more)
    return env


class Session:
    """A plain-HTTP MCP session: one new connection per request (spreads over workers)."""

    def __init__(self, url: str):
        self.url = url
        self.sid = None
        self.version = "2025-11-25"
        self.n = 0
        self.request_ids: list[str] = []

    def post(self, msg: dict, request_id: str | None = None, timeout: float = 30.0) -> httpx.Response:
        rid = request_id or uuid.uuid4().hex
        self.request_ids.append(rid)
        headers = {"Content-Type": "application/json", "Accept": ACCEPT, "X-Request-ID": rid,
                   "Connection": "close"}
        if self.sid:
            headers.update({"Mcp-Session-Id": self.sid, "MCP-Protocol-Version": self.version})
        r = httpx.post(self.url, content=json.dumps(msg), headers=headers, timeout=timeout)
        assert r.headers.get("X-Request-ID") == rid
        return r

    def initialize(self) -> None:
        r = self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                       "params": {"protocolVersion": self.version, "capabilities": {},
                                  "clientInfo": {"name": "pytest", "version": "1"}}})
        assert r.status_code == 200, r.text
        self.sid = r.headers["Mcp-Session-Id"]
        assert self.post({"jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202

    def rpc(self, method: str, params=None, **kw) -> dict:
        self.n += 1
        msg = {"jsonrpc": "2.0", "id": self.n, "method": method}
        if params is not None:
            msg["params"] = params
        r = self.post(msg, **kw)
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def tool(self, name: str, args=None, **kw) -> dict:
        body = self.rpc("tools/call", {"name": name, "arguments": args or {}}, **kw)
        assert "result" in body, body
        return body["result"]


def json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def metric_value(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus exposition text (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


# ---------------------------------------------------------------------------- refusal
def test_several_workers_without_redis_refuse_to_start(tmp_path, demo_db):
    cfg = tmp_path / "c.toml"
    cfg.write_text(config_for(demo_db))
    env = {k: v for k, v in os.environ.items() if k != "MCP_FLASK_REDIS_URL"}
    p = subprocess.run([sys.executable, "-m", "mcp_flask.cli", "serve", "--config", str(cfg),
                        "--bind", "127.0.0.1:1", "--workers", "2"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "Redis" in p.stderr and "MCP_FLASK_REDIS_URL" in p.stderr


# ---------------------------------------------------------------------------- one session, two workers
def test_session_spreads_over_workers_with_exact_metrics_and_logs(start_server, demo_db, redis_scope):
    server = start_server(config_for(demo_db), workers=2, env=redis_env(redis_scope))
    s = Session(server.url())
    s.initialize()
    calls = 30
    for _ in range(calls):
        result = s.tool("get_tables")
        assert result["isError"] is False
    for _ in range(5):
        assert s.rpc("ping")["result"] == {}
    bad = s.tool("get_table_schema", {"tableName": "no_such_table"})
    assert bad["isError"] is True
    assert s.rpc("no/such/method")["error"]["code"] == -32601

    # Which worker served which request: the structured logs say, one line per request:
    # the access line, or for a tool call its audit record (which stands for it).
    def served():
        lines = [l for l in json_lines(server.output())
                 if l.get("logger") in ("mcp_flask.access", "mcp_flask.audit")
                 and l.get("request_id") in set(s.request_ids)]
        return lines if len(lines) == len(s.request_ids) else None
    lines = poll(served)
    assert len({l["request_id"] for l in lines}) == len(lines)      # exactly one line each
    assert len({l["pid"] for l in lines}) == 2, "both workers must have served the session"
    audited = [l for l in lines if l["logger"] == "mcp_flask.audit"]
    assert len(audited) == calls + 1 and {l["audit"]["tool"] for l in audited} == {"get_tables", "get_table_schema"}
    for l in lines:
        assert l["service"] == "demo" and l["session"] == s.sid[:12]
        assert l["logger"] == "mcp_flask.audit" or l["status"] in (200, 202)
        assert len(l["session"]) < len(s.sid)          # the full id (a credential) is not logged

    text = httpx.get(server.base + "/metrics", timeout=10).text
    m = lambda **kw: metric_value(text, "mcp_requests_total", service="demo", **kw)  # noqa: E731
    assert m(method="initialize", outcome="ok") == 1
    assert m(method="tools/call", tool="get_tables", outcome="ok") == calls
    assert m(method="tools/call", tool="get_table_schema", outcome="tool_error") == 1
    assert m(method="ping", outcome="ok") == 5
    assert m(method="(unknown)", outcome="error") == 1
    assert metric_value(text, "mcp_request_duration_seconds_count", service="demo",
                        method="tools/call") == calls + 1
    assert metric_value(text, "mcp_errors_total", service="demo", kind="jsonrpc_-32601") == 1
    assert metric_value(text, "mcp_http_requests_total", service="demo", http_method="POST",
                        status="200") == calls + 5 + 3
    assert metric_value(text, "mcp_sessions_active") >= 1
    assert metric_value(text, "mcp_pool_connections", service="demo", state="size") >= 10


# ---------------------------------------------------------------------------- graceful restarts
def _slow_write(s: Session, name: str, box: dict):
    try:
        box["result"] = s.tool("create_records", {"tableName": "categories", "records": [{"name": name}]},
                               request_id=f"slow-{name}", timeout=60)
    except Exception as exc:  # noqa: BLE001 - reported by the assertions
        box["error"] = exc


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_signal_during_an_in_flight_call_lets_it_finish(start_server, demo_db, redis_scope, sig):
    server = start_server(config_for(demo_db, connect_timeout=30), workers=2,
                          env=redis_env(redis_scope, MCP_FLASK_GRACEFUL_TIMEOUT="30"))
    s = Session(server.url())
    s.initialize()
    stream = httpx.Client(timeout=30)
    get = stream.stream("GET", server.url(), headers={"Accept": "text/event-stream", "Mcp-Session-Id": s.sid,
                                                      "MCP-Protocol-Version": s.version})
    response = get.__enter__()
    assert response.status_code == 200
    lock = sqlite3.connect(demo_db, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    box: dict = {}
    name = f"graceful-{sig}"
    t = threading.Thread(target=_slow_write, args=(s, name, box), daemon=True)
    try:
        t.start()
        # In flight: the other worker's /metrics sees it (multiprocess gauges).
        poll(lambda: metric_value(httpx.get(server.base + "/metrics", timeout=10).text,
                                  "mcp_requests_in_flight", service="demo") == 1)
        os.kill(server.proc.pid, getattr(signal, sig))
        poll(lambda: f"Handling signal: {sig[3:].lower()}" in server.output())
        if sig == "SIGHUP":
            # New workers come up while the old ones finish; new requests keep working.
            poll(lambda: server.output().count("Booting worker") >= 4)
            for _ in range(5):
                assert s.rpc("ping")["result"] == {}
    finally:
        lock.execute("COMMIT")
    t.join(60)
    assert "error" not in box, box
    assert box["result"]["isError"] is False, box["result"]
    count = sqlite3.connect(demo_db).execute(
        "SELECT count(*) FROM categories WHERE name = ?", (name,)).fetchone()[0]
    assert count == 1
    # The GET stream of a retiring worker is ended (not cut) so the client reconnects.
    if sig == "SIGTERM":
        started = time.monotonic()
        chunks = b"".join(response.iter_bytes())
        assert time.monotonic() - started < 20
        assert b": stream open" in chunks
        server.proc.wait(30)
        statuses = [l["status"] for l in json_lines(server.output()) if l.get("logger") == "mcp_flask.access"]
        assert statuses and all(st < 500 for st in statuses), statuses
    get.__exit__(None, None, None)
    stream.close()


# ---------------------------------------------------------------------------- access lines
@pytest.mark.parametrize("classic", [False, True])
def test_gunicorn_access_log_only_when_asked(start_server, demo_db, classic):
    """gunicorn's own access log (and the per-request work of building its atoms) is off
    unless MCP_FLASK_ACCESS_LOG asks for it; the app's structured lines are always there."""
    env = {"MCP_FLASK_ACCESS_LOG": "-"} if classic else {}
    server = start_server(config_for(demo_db), env=env)
    s = Session(server.url())
    s.initialize()
    assert s.rpc("ping")["result"] == {}
    assert s.tool("get_tables")["isError"] is False

    def lines():
        got = json_lines(server.output())
        ours = [l for l in got if l.get("logger") in ("mcp_flask.access", "mcp_flask.audit")
                and l.get("request_id") in set(s.request_ids)]
        return got if len(ours) == len(s.request_ids) else None
    got = poll(lines)
    classic_lines = [l for l in got if l.get("logger") == "gunicorn.access"]
    assert bool(classic_lines) is classic, classic_lines[:2]


# ---------------------------------------------------------------------------- fairness under gevent
@pytest.mark.parametrize("worker_class", ["lean", "gevent"])
def test_a_busy_keep_alive_connection_does_not_starve_the_others(start_server, demo_db, worker_class):
    """gevent switches greenlets only when one would block: a connection whose next
    requests are already waiting in its socket (here: 1,500 pipelined /healthz requests)
    would keep the worker until all are answered.  The lean worker yields before a
    request when the hub has not run since the previous one (gunicorn's gevent worker:
    the pre_request hook yields before every request), so a second connection's request
    is answered while the first one's are still being served."""
    import socket as _socket

    server = start_server(config_for(demo_db), env={"MCP_FLASK_WORKER_CLASS": worker_class})
    port = int(server.base.rsplit(":", 1)[1])
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    n = 1500
    busy = _socket.create_connection(("127.0.0.1", port))
    other = _socket.create_connection(("127.0.0.1", port))
    try:
        busy.sendall(request * n)
        time.sleep(0.005)                      # the worker is now working through the batch
        other.sendall(request)
        other.settimeout(10)
        got = b""
        while b"\r\n\r\n" not in got:
            got += other.recv(65536)
        assert got.startswith(b"HTTP/1.1 200")
        # Count what the busy connection has received by now (without waiting for more).
        busy.setblocking(False)
        received = b""
        try:
            while True:
                chunk = busy.recv(1 << 20)
                if not chunk:
                    break
                received += chunk
        except BlockingIOError:
            pass
        answered = received.count(b"HTTP/1.1 200")
        assert answered < n * 0.9, f"the other connection waited for {answered} of {n} pipelined requests"
    finally:
        busy.close()
        other.close()


def test_gunicorn_parses_http_with_its_c_parser():
    """gunicorn_h1c is a declared dependency: gunicorn's 'auto' parser setting then uses it
    (picohttpparser) instead of the pure-Python request parser on every request."""
    from gunicorn.config import Config
    from gunicorn.http import message
    assert message._check_fast_parser(Config()) is True


def _read_responses(sock, count: int, head_only_at=()) -> list[tuple[bytes, dict, bytes]]:
    """Read ``count`` HTTP/1.1 responses off a keep-alive socket: (status line, headers, body).
    Responses listed in ``head_only_at`` answer HEAD requests (headers only)."""
    buf = b""
    out = []
    while len(out) < count:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(out)} responses"
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        headers = {k.strip().lower().decode(): v.strip().decode()
                   for k, v in (l.split(b":", 1) for l in lines[1:])}
        length = 0 if len(out) in head_only_at else int(headers.get("content-length", "0"))
        while len(buf) < length:
            chunk = sock.recv(65536)
            assert chunk
            buf += chunk
        out.append((lines[0], headers, buf[:length]))
        buf = buf[length:]
    return out


@pytest.mark.parametrize("worker_class", ["lean", "gevent"])
def test_responses_are_framed_exactly_when_headers_ride_with_the_body(start_server, demo_db, worker_class):
    """Both worker classes send the headers with the first body chunk (the lean worker's
    own loop; for gunicorn's gevent worker post_worker_init swaps in worker_http's
    response): every kind of answer must still be framed exactly, on one keep-alive
    connection (small JSON, HEAD without a body, 202 without a body, a 404, a large JSON
    answer sent in pieces)."""
    import socket as _socket

    server = start_server(config_for(demo_db), env={"MCP_FLASK_WORKER_CLASS": worker_class})
    port = int(server.base.rsplit(":", 1)[1])
    s = Session(server.url())
    s.initialize()
    big = {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
           "params": {"name": "get_table_data", "arguments": {"tableName": "events", "limit": 1000}}}
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}

    def post(msg):
        body = json.dumps(msg).encode()
        return (f"POST /mcp/demo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Accept: application/json, text/event-stream\r\nMcp-Session-Id: {s.sid}\r\n"
                f"MCP-Protocol-Version: {s.version}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body

    requests = [b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                b"HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                post(note), post(big),
                b"GET /no-such-page HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"]
    sock = _socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        for r in requests:                    # one at a time: each answer read before the next
            sock.sendall(r)
        got = _read_responses(sock, len(requests), head_only_at=(1,))
    finally:
        sock.close()
    statuses = [line.split(b" ")[1] for line, _, _ in got]
    assert statuses == [b"200", b"200", b"202", b"200", b"404", b"200"], statuses
    assert json.loads(got[0][2]) == json.loads(got[5][2]) and got[1][2] == b""
    assert got[1][1]["content-length"] == got[0][1]["content-length"]     # HEAD: same headers, no body
    assert got[2][1]["content-length"] == "0"                              # 202: an empty body, not chunked
    # The Date header (formatted once a second by the response class) is a current RFC 9110 date.
    from email.utils import parsedate_to_datetime
    for _, headers, _ in got:
        assert headers["connection"] == "keep-alive" and headers["server"].startswith("gunicorn")
        assert headers["date"].endswith(" GMT")
        assert abs(parsedate_to_datetime(headers["date"]).timestamp() - time.time()) < 60
    result = json.loads(got[3][2])["result"]
    assert len(got[3][2]) > 64 * 1024 and len(result["structuredContent"]["resource"]) == 1000


def test_trusted_proxy_memo_answers_as_gunicorn_does(monkeypatch):
    """peer_memo_request_class remembers gunicorn's forwarded_allow_ips verdict per peer
    address: the same verdicts as gunicorn for trusted, untrusted and UNIX-socket peers."""
    from gunicorn.config import Config
    from gunicorn.http import message

    from mcp_flask import worker_http
    cfg = Config()
    cfg.set("forwarded_allow_ips", "10.0.0.0/8,127.0.0.1")
    cls = worker_http.peer_memo_request_class()

    def verdict(klass, peer):
        req = object.__new__(klass)
        req.cfg, req.peer_addr = cfg, peer
        return req._peer_is_trusted_proxy()

    monkeypatch.setattr(worker_http, "PEER_MEMO_SIZE", 2)
    peers = [("10.1.2.3", 5000), ("127.0.0.1", 1), ("192.168.0.1", 2), ("10.1.2.3", 6000), "/tmp/sock",
             ("::1", 3), ("192.168.0.1", 4)]
    for _ in range(2):      # the second round is answered from the memo (and past its bound)
        assert [verdict(cls, p) for p in peers] == [verdict(message.Request, p) for p in peers] == \
            [True, True, False, True, True, False, False]
