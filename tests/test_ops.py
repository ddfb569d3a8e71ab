"""Operator endpoints, metrics, request ids and structured logs, in process.

/healthz, /readyz (per-dependency detail for every database and Redis),
/metrics (Prometheus text; counters checked as deltas because the in-process
registry is shared by the test run), ``server.ops_token`` protection, the
separate ops port, X-Request-ID handling, JSON log lines with request id,
session and service, and greenlet isolation of the logging context.
"""
from __future__ import annotations

import io
import json
import logging

import pytest

from conftest import McpTestClient
from mcp_flask import logs
from redis_helpers import RedisScope, ThrowawayRedis


def metric(text: str, name: str, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


@pytest.fixture
def capture_logs():
    """JSON log lines of everything logged during the test."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines() if line]
    root.removeHandler(handler)
    root.setLevel(old_level)


# ---------------------------------------------------------------------------- health and readiness
def test_healthz_and_readyz_with_every_dependency(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db},
                       "down": {"url": "postgresql://nobody:pw-secret@127.0.0.1:1/none", "connect_timeout": 1,
                                "pool_timeout": 1}})
    http = app.test_client()
    r = http.get("/healthz")
    assert r.status_code == 200 and r.get_json() == {"status": "ok"}
    r = http.get("/readyz")
    assert r.status_code == 503
    body = r.get_json()
    assert body["status"] == "unavailable"
    assert body["services"]["demo"]["ok"] is True and body["services"]["demo"]["pool"]["size"] == 10
    assert body["services"]["down"]["ok"] is False and body["services"]["down"]["error"]
    assert "pw-secret" not in json.dumps(body)                         # no password in the answer
    assert body["session_store"] == {"ok": True, "kind": "memory"}


def test_readyz_reports_redis_and_recovers(tmp_path):
    server = ThrowawayRedis()
    try:
        from conftest import make_settings
        from mcp_flask import create_app
        app = create_app(make_settings({"demo": {"url": f"sqlite:///{tmp_path / 'demo.db'}", "demo": True}},
                                       redis_url=server.url, data_dir=str(tmp_path / "data")),
                         check_databases=False)
        http = app.test_client()
        r = http.get("/readyz")
        assert r.status_code == 200
        assert r.get_json()["session_store"]["ok"] is True and r.get_json()["session_store"]["kind"] == "redis"
        server.stop()
        r = http.get("/readyz")
        assert r.status_code == 503
        store = r.get_json()["session_store"]
        assert store["ok"] is False and "Redis" in store["error"] and "127.0.0.1" not in store["error"]
        server.start()
        assert http.get("/readyz").status_code == 200
        app.extensions["mcp_flask"]["store"].close()
    finally:
        server.close()


def test_ops_token_protects_readyz_and_metrics(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db}}, ops_token="s3cret-token")
    http = app.test_client()
    assert http.get("/healthz").status_code == 200                       # always open
    for path in ("/readyz", "/metrics"):
        assert http.get(path).status_code == 401
        assert http.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get(path, headers={"Authorization": "Basic s3cret-token"}).status_code == 401
        assert http.get(path, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200


def test_separate_ops_port(app_factory, demo_db, monkeypatch):
    monkeypatch.setenv("MCP_FLASK_OPS_BIND", "127.0.0.1:9109")
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db}})
    http = app.test_client()
    ops = "http://localhost:9109"
    main = "http://localhost:8000"
    assert http.get("/metrics", base_url=main).status_code == 404
    assert http.get("/readyz", base_url=main).status_code == 404
    assert http.get("/metrics", base_url=ops).status_code == 200
    assert http.get("/readyz", base_url=ops).status_code == 200
    assert http.get("/healthz", base_url=main).status_code == 200
    assert http.get("/healthz", base_url=ops).status_code == 200
    mcp = http.post("/mcp/demo", data="{}", base_url=ops,
                    headers={"Content-Type": "application/json", "Host": "localhost"})
    assert mcp.status_code == 404


# ---------------------------------------------------------------------------- metrics
def test_metrics_count_requests_tools_rows_and_errors(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db}})
    http = app.test_client()
    before = http.get("/metrics").get_data(as_text=True)
    c = McpTestClient(app)
    c.initialize()
    for _ in range(3):
        c.data("get_tables")
    c.error_text("get_table_schema", {"tableName": "no_such_table"})
    c.call("get_table_data", {"tableName": "customers", "limit": 4})
    assert c.rpc("ping")["result"] == {}
    assert c.rpc("no/such")["error"]["code"] == -32601
    assert c.request("ping", **{"Mcp-Session-Id": "bogus"}).status_code == 404
    r = http.get("/metrics")
    assert r.status_code == 200 and r.content_type.startswith("text/plain")
    after = r.get_data(as_text=True)

    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)
    assert delta("mcp_requests_total", service="demo", method="initialize", outcome="ok") == 1
    assert delta("mcp_requests_total", service="demo", method="tools/call", tool="get_tables", outcome="ok") == 3
    assert delta("mcp_requests_total", service="demo", method="tools/call", tool="get_table_schema",
                 outcome="tool_error") == 1
    assert delta("mcp_requests_total", service="demo", method="ping", outcome="ok") == 1
    assert delta("mcp_requests_total", service="demo", method="(unknown)", outcome="error") == 1
    assert delta("mcp_request_duration_seconds_count", service="demo", method="tools/call") == 5
    assert delta("mcp_rows_returned_total", service="demo", tool="get_table_data") == 4
    assert delta("mcp_errors_total", service="demo", kind="jsonrpc_-32601") == 1
    assert delta("mcp_errors_total", service="demo", kind="http_404") == 1
    assert delta("mcp_http_requests_total", service="demo", http_method="POST", status="404") == 1
    assert metric(after, "mcp_requests_in_flight", service="demo") == 0
    assert metric(after, "mcp_sessions_active") >= 1
    assert metric(after, "mcp_pool_connections", service="demo", state="size") == 10


def test_open_sse_streams_gauge_follows_get_streams(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db}}, sse_keepalive=0.05)
    c = McpTestClient(app)
    c.initialize()
    http = app.test_client()
    gauge = lambda: metric(http.get("/metrics").get_data(as_text=True), "mcp_sse_streams_open",  # noqa: E731
                           service="demo", kind="get")
    base = gauge()
    r = c.http.get(c.path, headers=c.headers(Accept="text/event-stream"), buffered=False)
    assert r.status_code == 200
    first = next(r.response)
    assert first.startswith(b"retry:") or first.startswith(b":")
    assert gauge() == base + 1
    r.close()
    assert gauge() == base


# ---------------------------------------------------------------------------- request ids and logs
def test_request_id_is_echoed_or_generated(client):
    r = client.request("ping", Accept="application/json", **{"X-Request-ID": "req-42.a"})
    assert r.headers["X-Request-ID"] == "req-42.a"
    r = client.request("ping", Accept="application/json")
    generated = r.headers["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    r = client.request("ping", Accept="application/json", **{"X-Request-ID": "bad id\twith spaces"})
    assert r.headers["X-Request-ID"] != "bad id\twith spaces" and len(r.headers["X-Request-ID"]) == 32
    assert client.http.get("/healthz").headers.get("X-Request-ID")


def test_every_log_line_carries_request_session_and_service(client, capture_logs):
    client.request("ping", Accept="application/json", **{"X-Request-ID": "trace-me"})
    client.call("get_tables")
    lines = capture_logs()
    mine = [l for l in lines if l["request_id"] == "trace-me"]
    assert mine, lines
    for l in mine:
        assert l["session"] == client.session_id[:12] and l["service"] == "demo"
        assert {"ts", "level", "logger", "msg", "pid"} <= set(l)
    access = [l for l in lines if l["logger"] == "mcp_flask.access"]
    assert access and all(l["request_id"] and l["service"] == "demo" for l in access)
    assert all(client.session_id not in json.dumps(l) for l in lines)   # never the whole id


def test_initialize_logs_the_new_session(demo_app, capture_logs):
    c = McpTestClient(demo_app)
    c.initialize()
    init = [l for l in capture_logs() if l["logger"] == "mcp_flask.access"][0]
    assert init["session"] == c.session_id[:12]


def test_exceptions_are_logged_without_stack_traces(capture_logs):
    log = logging.getLogger("mcp_flask.test")
    try:
        raise ValueError("first line\nsecond line with /secret/path")
    except ValueError:
        log.exception("it failed")
    line = [l for l in capture_logs() if l["logger"] == "mcp_flask.test"][0]
    assert line["exc_type"] == "ValueError" and line["exc"] == "first line"
    assert "Traceback" not in json.dumps(line)


def test_log_context_is_per_greenlet():
    gevent = pytest.importorskip("gevent")
    seen = {}

    def request(rid):
        tokens = logs.bind(rid, "session-" + rid, "svc")
        gevent.sleep(0.01)             # let the other greenlet run and bind its own ids
        seen[rid] = (logs.REQUEST_ID.get(), logs.SESSION.get())
        logs.reset(tokens)
    gevent.joinall([gevent.spawn(request, "a"), gevent.spawn(request, "b")])
    assert seen == {"a": ("a", "session-a"), "b": ("b", "session-b")}


def test_redis_scope_keys_are_cleaned():
    scope = RedisScope()
    scope.client.set(scope.prefix + "x", 1)
    scope.cleanup()
    assert scope.keys() == []


# ---------------------------------------------------------------------------- mcp-flask check
def run_check(config_path: str, **env):
    import os
    import subprocess
    import sys

    from conftest import ROOT
    e = {k: v for k, v in os.environ.items() if not k.startswith("MCP_FLASK_")}
    e.update(env)
    return subprocess.run([sys.executable, "-m", "mcp_flask.cli", "check", "--config", config_path],
                          cwd=ROOT, env=e, capture_output=True, text=True, timeout=60)


def test_check_reports_every_dependency_in_plain_words(tmp_path, demo_db):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[services.demo]\nurl = "sqlite:///{demo_db}"\n'
                   f'[services.pg]\nurl = "postgresql://u:pw-secret@127.0.0.1:1/x"\n'
                   f'connect_timeout = 1\npool_timeout = 1\n')
    scope = RedisScope()
    ok = run_check(str(cfg), MCP_FLASK_REDIS_URL=scope.url)
    assert ok.returncode == 1, ok.stdout
    lines = ok.stdout.splitlines()
    assert lines[0].startswith("config: ok")
    assert any(l.startswith("service demo: ok (sqlite") for l in lines)
    assert any(l.startswith("service pg: FAILED") for l in lines)
    assert any(l.startswith("redis: ok (Redis ") for l in lines)
    assert lines[-1] == "check: 1 problem found"
    assert "pw-secret" not in ok.stdout + ok.stderr and "Traceback" not in ok.stdout + ok.stderr


def test_check_explains_redis_and_worker_problems(tmp_path, demo_db):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[services.demo]\nurl = "sqlite:///{demo_db}"\n')
    good = run_check(str(cfg))
    assert good.returncode == 0 and good.stdout.splitlines()[-1] == "check: all good"
    down = run_check(str(cfg), MCP_FLASK_REDIS_URL="redis://:pw-secret@127.0.0.1:1/0")
    assert down.returncode == 1
    assert "redis: FAILED: cannot connect to Redis at redis://:***@127.0.0.1:1/0" in down.stdout
    assert "pw-secret" not in down.stdout
    many = run_check(str(cfg), MCP_FLASK_WORKERS="3")
    assert many.returncode == 1 and "3 workers need Redis" in many.stdout
    broken = tmp_path / "broken.toml"
    broken.write_text('[services.demo]\nurl = "sqlite:///x.db"\nmax_rowz = 5\n')
    bad = run_check(str(broken))
    assert bad.returncode == 2 and "services.demo.max_rowz" in bad.stderr and "max_rows" in bad.stderr


def test_generated_request_ids_are_unique_within_and_across_forked_workers():
    """Workers are forked from one master: each must draw its own id prefix."""
    import os

    from mcp_flask.logs import request_id_from
    ids = [request_id_from(None) for _ in range(1000)]
    assert len(set(ids)) == 1000 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:    # the "worker": its next ids, written back to the parent
        os.close(r)
        os.write(w, "".join(request_id_from(None) for _ in range(3)).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        child = fh.read()
    os.waitpid(pid, 0)
    child_ids = [child[i:i + 32] for i in range(0, 96, 32)]
    mine = [request_id_from(None) for _ in range(3)]
    assert len(child_ids) == 3 and not set(child_ids) & set(mine)
    assert {c[:16] for c in child_ids} != {m[:16] for m in mine}
