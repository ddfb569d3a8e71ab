"""Server-to-client requests and SSE resumption across gunicorn workers (Redis session store).

Two gevent workers share sessions through Redis.  A call waiting for the
user's answer (``elicitation/create`` on its SSE stream) loses its connection;
the answer arrives by POST on a new connection (any worker: the store hands it
to the worker running the call), and a GET with ``Last-Event-ID`` (any worker)
replays the rest of that stream: nothing lost, nothing twice.
"""
from __future__ import annotations

import json

import pytest

from redis_helpers import RedisScope
from test_conformance import FixtureServer

pytestmark = [pytest.mark.gunicorn, pytest.mark.slow]
httpx = pytest.importorskip("httpx")
ACCEPT = "application/json, text/event-stream"


@pytest.fixture
def two_workers(tmp_path, demo_template):
    scope = RedisScope()
    server = FixtureServer(str(tmp_path), demo_template, workers=2,
                           env_more={"MCP_FLASK_REDIS_URL": scope.url, "MCP_FLASK_REDIS_PREFIX": scope.prefix})
    yield server
    server.stop()
    scope.cleanup()


def events_of(lines):
    """SSE events from an iterator of text lines: yields dicts with id/data."""
    ev: dict = {}
    for line in lines:
        if line == "":
            if ev:
                yield ev
            ev = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        ev[name] = value[1:] if value.startswith(" ") else value


def test_answer_and_resume_on_any_worker(two_workers):
    url = two_workers.url("fixture")
    base = {"Content-Type": "application/json", "Accept": ACCEPT, "Connection": "close"}
    r = httpx.post(url, headers=base, content=json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-11-25", "capabilities": {"elicitation": {}},
                    "clientInfo": {"name": "pytest", "version": "1"}}}), timeout=30)
    sid = r.headers["Mcp-Session-Id"]
    h = dict(base, **{"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"})
    assert httpx.post(url, headers=h, content=json.dumps(
        {"jsonrpc": "2.0", "method": "notifications/initialized"}), timeout=30).status_code == 202
    for n in range(4):
        rid = 100 + n
        with httpx.stream("POST", url, headers=h, timeout=30, content=json.dumps(
                {"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                 "params": {"name": "test_elicitation", "arguments": {"message": f"who are you {n}?"}}})) as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            for ev in events_of(s.iter_lines()):
                if ev.get("data", "").strip():
                    ask = json.loads(ev["data"])
                    last_id = ev["id"]
                    break
        # The connection is gone; the call still waits for its answer.
        assert ask["method"] == "elicitation/create" and ask["params"]["message"] == f"who are you {n}?"
        answer = {"jsonrpc": "2.0", "id": ask["id"],
                  "result": {"action": "accept", "content": {"username": f"user{n}", "email": "u@example.org"}}}
        assert httpx.post(url, headers=h, content=json.dumps(answer), timeout=30).status_code == 202
        got = []
        with httpx.stream("GET", url, headers=dict(h, **{"Accept": "text/event-stream", "Last-Event-ID": last_id}),
                          timeout=30) as g:
            assert g.status_code == 200
            for ev in events_of(g.iter_lines()):
                if ev.get("data", "").strip():
                    got.append((ev["id"], json.loads(ev["data"])))
                    if "result" in got[-1][1]:
                        break
        ids = [i for i, _ in got]
        assert last_id not in ids and len(set(ids)) == len(ids)          # nothing twice
        final = got[-1][1]
        assert final["id"] == rid and f"user{n}" in final["result"]["content"][0]["text"]   # nothing lost
