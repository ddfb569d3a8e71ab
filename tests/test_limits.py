"""Limits (limits.py, MemorySessionStore.take_token, and the limits other layers enforce).

Concurrency per session and rate per key are the Limiter's; rows per call,
records per batch and body size are checked here end to end through the real
app on a copy of the demo database.  Every refusal is a clear error, never a
crash, and the session keeps working afterwards.
"""
from __future__ import annotations

import dataclasses
import pathlib
import sqlite3
import subprocess
import sys
import time
import types

import pytest

from conftest import McpTestClient
from mcp_flask.cli import hash_api_key
from mcp_flask.errors import LimitExceeded
from mcp_flask.limits import Limiter
from mcp_flask.protocol import Call
from mcp_flask.sessions import MemorySessionStore, Session


# ---------------------------------------------------------------------------- token bucket
def test_take_token_allows_a_minutes_worth_then_refuses():
    store = MemorySessionStore(ttl=60)
    assert [store.take_token("k", 3) for _ in range(4)] == [True, True, True, False]
    assert store.take_token("other", 3) is True          # buckets are per key
    assert store.take_token("k", 0) is True               # 0 = unlimited


def test_take_token_refills_over_time():
    store = MemorySessionStore(ttl=60)
    per_minute = 60_000                                    # 1000 per second
    while store.take_token("k", per_minute):
        pass
    deadline = time.monotonic() + 5
    while not store.take_token("k", per_minute):
        assert time.monotonic() < deadline, "the bucket never refilled"


# ---------------------------------------------------------------------------- concurrency per session
@pytest.fixture
def service(demo_app):
    return demo_app.extensions["mcp_flask"]["services"]["demo"]


def call_for(service, sid: str) -> Call:
    return Call(service=service, session=Session(id=sid, service="demo", protocol_version="2025-11-25"),
                protocol_version="2025-11-25")


def test_limiter_caps_concurrent_calls_per_session(service):
    limiter = Limiter(MemorySessionStore(ttl=60))
    limit = service.config.max_concurrent_calls
    a = call_for(service, "a")
    held = [limiter.admit(a, None) for _ in range(limit)]
    for cm in held:
        cm.__enter__()
    assert limiter.running("a") == limit
    with pytest.raises(LimitExceeded) as exc:
        with limiter.admit(a, None):
            pass
    assert "at a time" in exc.value.message
    with limiter.admit(call_for(service, "b"), None):     # other sessions are unaffected
        pass
    held.pop().__exit__(None, None, None)
    with limiter.admit(a, None):                          # a slot came free
        pass
    for cm in held:
        cm.__exit__(None, None, None)
    assert limiter.running("a") == 0


def test_limiter_releases_the_slot_when_the_call_fails(service):
    limiter = Limiter(MemorySessionStore(ttl=60))
    a = call_for(service, "a")
    for _ in range(service.config.max_concurrent_calls + 2):
        with pytest.raises(RuntimeError):
            with limiter.admit(a, None):
                raise RuntimeError("boom")
    assert limiter.running("a") == 0


def test_an_extra_concurrent_call_is_a_limit_error(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db, "max_concurrent_calls": 1}})
    c = McpTestClient(app)
    c.initialize()
    protocol = app.extensions["mcp_flask"]["protocol"]
    service = app.extensions["mcp_flask"]["services"]["demo"]
    # Hold the session's only slot (as a long call would), then call through the real stack.
    with protocol.limiter.admit(call_for(service, c.session_id), None):
        text = c.error_text("get_tables")
        assert text.startswith("Limit Error:")
    assert c.data("get_tables")["resource"]


# ---------------------------------------------------------------------------- rate per key
def test_rate_limit_per_key(app_factory, demo_db):
    keys = {"a": "key-a-0123456789abcdef", "b": "key-b-0123456789abcdef"}
    app = app_factory({"demo": {
        "url": "sqlite:///" + demo_db, "auth": "api_key", "rate_limit": 3,
        "roles": {"r": {}},
        "api_keys": [{"hash": hash_api_key(keys["a"]), "role": "r", "id": "a"},
                     {"hash": hash_api_key(keys["b"]), "role": "r", "id": "b"}]}})
    a = McpTestClient(app, headers={"X-API-Key": keys["a"]})
    a.initialize()
    for _ in range(3):
        a.data("get_tables")
    text = a.error_text("get_tables")
    assert text.startswith("Limit Error:") and "per minute" in text
    # A second session with the same key shares the bucket; another key has its own.
    a2 = McpTestClient(app, headers={"X-API-Key": keys["a"]})
    a2.initialize()
    assert a2.error_text("get_tables").startswith("Limit Error:")
    b = McpTestClient(app, headers={"X-API-Key": keys["b"]})
    b.initialize()
    assert b.data("get_tables")["resource"]
    assert a.rpc("ping")["result"] == {}                  # non-tool requests are not rate limited


# ---------------------------------------------------------------------------- rows, batches, bodies
def test_max_rows_caps_a_read(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db, "max_rows": 5}})
    c = McpTestClient(app)
    c.initialize()
    result = c.call("get_table_data", {"tableName": "events", "limit": 500})
    if result["isError"]:
        assert result["content"][0]["text"].startswith(("Limit Error", "Validation Error"))
    else:
        import json
        body = json.loads(result["content"][0]["text"])
        assert len(body["resource"]) <= 5


def test_max_batch_refuses_big_batches_and_writes_nothing(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db, "max_batch": 2}})
    c = McpTestClient(app)
    c.initialize()
    con = sqlite3.connect(demo_db)
    before = con.execute("select count(*) from tags").fetchone()[0]
    text = c.error_text("create_records", {"tableName": "tags",
                                           "records": [{"name": f"t{i}"} for i in range(3)]})
    assert text.startswith("Limit Error:")
    assert con.execute("select count(*) from tags").fetchone()[0] == before
    assert c.rpc("ping")["result"] == {}


def test_body_size_limit_is_413(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db}}, max_body_bytes=2000)
    c = McpTestClient(app)
    c.initialize()
    r = c.post(None, raw=b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"' + b"a" * 5000 + b'"}}')
    assert r.status_code == 413
    assert c.rpc("ping")["result"] == {}


def test_rate_limit_is_shared_across_workers_through_redis(app_factory, demo_db, monkeypatch):
    from redis_helpers import RedisScope
    scope = RedisScope()
    monkeypatch.setenv("MCP_FLASK_REDIS_PREFIX", scope.prefix)
    try:
        key = "shared-key-0123456789abcdef"
        svc = {"demo": {"url": "sqlite:///" + demo_db, "auth": "api_key", "rate_limit": 3, "roles": {"r": {}},
                        "api_keys": [{"hash": hash_api_key(key), "role": "r", "id": "k"}]}}
        # Two apps on one Redis stand for two gunicorn workers.
        one, two = (app_factory(svc, redis_url=scope.url) for _ in range(2))
        a = McpTestClient(one, headers={"X-API-Key": key})
        a.initialize()
        b = McpTestClient(two, headers={"X-API-Key": key})
        b.initialize()
        a.data("get_tables")
        b.data("get_tables")
        a.data("get_tables")
        assert b.error_text("get_tables").startswith("Limit Error:")
        assert a.error_text("get_tables").startswith("Limit Error:")
    finally:
        scope.cleanup()


def test_stateless_calls_are_not_capped_by_a_shared_session_slot(service):
    limiter = Limiter(MemorySessionStore(ttl=60))
    stateless = Call(service=service, session=None, protocol_version="2026-07-28")
    held = [limiter.admit(stateless, None) for _ in range(service.config.max_concurrent_calls + 3)]
    for cm in held:
        cm.__enter__()
    for cm in held:
        cm.__exit__(None, None, None)


# ---------------------------------------------------------------------------- the admission object
def test_admit_counts_nothing_until_entered(service):
    limiter = Limiter(MemorySessionStore(ttl=60))
    cm = limiter.admit(call_for(service, "a"), None)
    assert limiter.running("a") == 0
    with cm:
        assert limiter.running("a") == 1
    assert limiter.running("a") == 0


def test_a_rate_limit_refusal_gives_the_session_slot_back(service):
    class Refusing(MemorySessionStore):
        def take_token(self, key, per_minute):
            return False
    limiter = Limiter(Refusing(ttl=60))
    config = dataclasses.replace(service.config, rate_limit=5)
    session = Session(id="a", service="demo", protocol_version="2025-11-25")
    call = types.SimpleNamespace(service=types.SimpleNamespace(config=config), session=session)
    for _ in range(config.max_concurrent_calls + 2):
        with pytest.raises(LimitExceeded) as exc:
            with limiter.admit(call, None):
                raise AssertionError("a refused call must not run")
        assert "rate limit" in exc.value.message
        assert limiter.running("a") == 0


def test_the_limiter_lock_is_native_under_gevent_patching():
    # The critical sections never block, so the lock is the OS thread library's even when
    # gevent patched ``threading`` (a gevent lock costs several Python frames per use).
    code = ("from gevent import monkey; monkey.patch_all()\n"
            "import threading\n"
            "from mcp_flask.limits import Limiter\n"
            "lock = Limiter(None)._lock\n"
            "assert 'gevent' in type(threading.Lock()).__module__\n"
            "assert 'gevent' not in type(lock).__module__, type(lock)\n"
            "with lock:\n"
            "    assert not lock.acquire(blocking=False)\n"
            "assert lock.acquire(blocking=False)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=pathlib.Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
