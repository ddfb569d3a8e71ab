"""MCP features beyond tools (issue 5), over Flask's test client against real SQLite.

Resources (tables as ``db://<service>/tables/<name>``, paging, read, templates,
subscribe, ``notifications/resources/updated`` on a schema change), prompts and
completion, logging notifications, progress over SSE, cancellation of a running
query, resumable SSE (event ids, priming event, ``Last-Event-ID`` replay with
nothing lost and nothing twice), and elicitation (server-to-client requests
answered by POST on the same session).  The test-only tools come from
``fixture_service.ProbeProvider``.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest

from conftest import McpTestClient, make_settings
from fixture_service import ProbeProvider
from test_transport import parse_sse

TABLES = ["categories", "customer_order_totals", "customers", "employees", "events", "order_items",
          "orders", "product_tags", "products", "tags"]


def build(demo_db, tmp_path, probe=None, **service):
    from mcp_flask import create_app
    cfg = {"url": "sqlite:///" + demo_db, "statement_timeout": 60}
    cfg.update(service)
    server = {"data_dir": str(tmp_path)}
    server.update(service.pop("_server", {}) if "_server" in service else {})
    return create_app(make_settings({"demo": cfg}, **server), check_databases=False,
                      providers={"demo": [probe]} if probe else None)


@pytest.fixture
def probe():
    return ProbeProvider()


@pytest.fixture
def papp(demo_db, tmp_path, probe):
    return build(demo_db, tmp_path, probe)


@pytest.fixture
def pc(papp):
    c = McpTestClient(papp)
    c.initialize()
    return c


def wait_for(predicate, deadline_s: float = 10.0, what: str = "condition"):
    """Poll ``predicate`` until it is truthy (no blind sleeps); its value."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        threading.Event().wait(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class SseReader:
    """Reads events from a streamed (unbuffered) test-client response, one at a time."""

    def __init__(self, response):
        self.response = response
        self.chunks = iter(response.response)
        self.buffer = ""

    def next_event(self) -> dict:
        while "\n\n" not in self.buffer:
            self.buffer += next(self.chunks).decode()
        block, self.buffer = self.buffer.split("\n\n", 1)
        events = parse_sse((block + "\n\n").encode())
        return events[0] if events else {"comment": block}

    def next_message(self):
        """The next event carrying data: ``(event_id, message)``."""
        while True:
            ev = self.next_event()
            if ev.get("data", "").strip():
                return ev.get("id"), json.loads(ev["data"])

    def close(self):
        self.response.close()


# ---------------------------------------------------------------------------- capabilities
def test_capabilities(client):
    caps = McpTestClient(client.http.application).initialize()["capabilities"]
    assert caps["resources"] == {"subscribe": True, "listChanged": True}
    assert "prompts" in caps and "completions" in caps and "logging" in caps and "tools" in caps


# ---------------------------------------------------------------------------- resources
def test_resources_list_is_every_table(client):
    res = client.rpc("resources/list")["result"]["resources"]
    assert [r["name"] for r in res] == TABLES
    assert res[0]["uri"] == "db://demo/tables/categories"
    assert all(r["mimeType"] == "application/json" and r["description"] for r in res)
    assert "nextCursor" not in client.rpc("resources/list")["result"]


def test_resources_list_pages(client):
    client.http.application.extensions["mcp_flask"]["protocol"].page_size = 3
    seen, cursor = [], None
    for _ in range(10):
        result = client.rpc("resources/list", {"cursor": cursor} if cursor else {})["result"]
        assert len(result["resources"]) <= 3
        seen += [r["name"] for r in result["resources"]]
        cursor = result.get("nextCursor")
        if not cursor:
            break
    assert seen == TABLES
    assert client.rpc("resources/list", {"cursor": "nope"})["error"]["code"] == -32602


def test_resource_templates(client):
    t = client.rpc("resources/templates/list")["result"]["resourceTemplates"]
    assert [x["uriTemplate"] for x in t] == ["db://demo/tables/{name}"]


def test_resources_read_is_the_table_schema(client):
    body = client.rpc("resources/read", {"uri": "db://demo/tables/tags"})["result"]
    (content,) = body["contents"]
    assert content["uri"] == "db://demo/tables/tags" and content["mimeType"] == "application/json"
    assert json.loads(content["text"]) == client.data("get_table_schema", {"tableName": "tags"})


@pytest.mark.parametrize("uri", ["db://demo/tables/tagz", "db://other/tables/tags", "test://static-text",
                                 "db://demo/tables/", "file:///etc/passwd"])
def test_resources_read_unknown_is_32002(client, uri):
    err = client.rpc("resources/read", {"uri": uri})["error"]
    assert err["code"] == -32002
    assert "/etc" not in err["message"]


def test_resources_read_suggests(client):
    err = client.rpc("resources/read", {"uri": "db://demo/tables/tagz"})["error"]
    assert "did you mean 'tags'" in err["message"]


def test_hidden_tables_are_not_resources(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db, "default_role": "r",
                                "roles": {"r": {"tables": {"tags": ["read"], "orders": ["read"]}}}}})
    c = McpTestClient(app)
    c.initialize()
    names = [r["name"] for r in c.rpc("resources/list")["result"]["resources"]]
    assert names == ["orders", "tags"]
    assert c.rpc("resources/read", {"uri": "db://demo/tables/customers"})["error"]["code"] == -32002
    err = c.rpc("resources/read", {"uri": "db://demo/tables/customer"})["error"]
    assert "customers" not in err["message"]          # never hints at a hidden table


def test_subscribe_and_unsubscribe(client, demo_app):
    store = demo_app.extensions["mcp_flask"]["store"]
    assert client.rpc("resources/subscribe", {"uri": "db://demo/tables/tags"})["result"] == {}
    assert client.rpc("resources/subscribe", {"uri": "test://watched-resource"})["result"] == {}
    assert store.get(client.session_id).subscriptions == {"db://demo/tables/tags", "test://watched-resource"}
    assert client.rpc("resources/unsubscribe", {"uri": "db://demo/tables/tags"})["result"] == {}
    assert store.get(client.session_id).subscriptions == {"test://watched-resource"}
    assert client.rpc("resources/subscribe", {})["error"]["code"] == -32602


def test_schema_change_notifies_subscribers(demo_app, demo_db):
    store = demo_app.extensions["mcp_flask"]["store"]
    watcher = McpTestClient(demo_app)
    watcher.initialize()
    other = McpTestClient(demo_app)
    other.initialize()
    watcher.rpc("resources/subscribe", {"uri": "db://demo/tables/tags"})
    watcher.data("get_tables")          # the catalog is loaded before the change
    conn = sqlite3.connect(demo_db)
    conn.execute("ALTER TABLE tags ADD COLUMN note TEXT")
    conn.commit()
    conn.close()
    assert "note" in [f["name"] for f in
                      watcher.data("get_table_fields", {"tableName": "tags", "refresh": True})["resource"]]
    got = [m for _, m in store.listen(watcher.session_id, 0.01)]
    assert {"jsonrpc": "2.0", "method": "notifications/resources/updated",
            "params": {"uri": "db://demo/tables/tags"}} in got
    assert any(m["method"] == "notifications/resources/list_changed" for m in got)
    others = [m for _, m in store.listen(other.session_id, 0.01)]
    assert not any(m["method"] == "notifications/resources/updated" for m in others)


# ---------------------------------------------------------------------------- prompts and completion
def test_prompts_list(client):
    prompts = client.rpc("prompts/list")["result"]["prompts"]
    assert [p["name"] for p in prompts] == ["explore_database", "explain_table", "draft_safe_filter"]
    assert all(p["description"] for p in prompts)
    args = {p["name"]: {a["name"]: a["required"] for a in p["arguments"]} for p in prompts}
    assert args["explain_table"] == {"table": True}
    assert args["draft_safe_filter"]["question"] is True


def test_explore_prompt(client):
    r = client.rpc("prompts/get", {"name": "explore_database", "arguments": {"focus": "orders"}})["result"]
    text = r["messages"][0]["content"]["text"]
    assert "get_tables" in text and "orders" in text and '"demo"' in text


def test_explain_prompt_embeds_the_schema(client):
    r = client.rpc("prompts/get", {"name": "explain_table", "arguments": {"table": "orders"}})["result"]
    embedded = r["messages"][1]["content"]
    assert embedded["type"] == "resource"
    read = client.rpc("resources/read", {"uri": "db://demo/tables/orders"})["result"]["contents"][0]
    assert embedded["resource"] == read


def test_filter_prompt_lists_real_columns(client):
    r = client.rpc("prompts/get", {"name": "draft_safe_filter",
                                   "arguments": {"table": "orders", "question": "paid in 2024"}})["result"]
    text = r["messages"][0]["content"]["text"]
    for col in ("status", "ordered_at", "total"):
        assert col in text
    assert "paid in 2024" in text


@pytest.mark.parametrize("name,args", [("explain_table", {}), ("draft_safe_filter", {"table": "orders"}),
                                       ("explain_table", {"table": "ordrs"}), ("nope", {})])
def test_prompt_errors_are_32602(client, name, args):
    assert client.rpc("prompts/get", {"name": name, "arguments": args})["error"]["code"] == -32602


def test_completion_of_tables_and_columns(client):
    def complete(ref, arg, value, context=None):
        params = {"ref": ref, "argument": {"name": arg, "value": value}}
        if context:
            params["context"] = context
        return client.rpc("completion/complete", params)["result"]["completion"]

    prompt = {"type": "ref/prompt", "name": "explain_table"}
    assert complete(prompt, "table", "or")["values"][:2] == ["order_items", "orders"]
    assert complete(prompt, "table", "")["values"] == TABLES
    cols = complete({"type": "ref/prompt", "name": "draft_safe_filter"}, "column", "s",
                    {"arguments": {"table": "orders"}})
    assert cols["values"] == ["status", "shipped_on"] and cols["hasMore"] is False
    assert complete({"type": "ref/resource", "uri": "db://demo/tables/{name}"}, "name", "pro")["values"] == \
        ["product_tags", "products"]
    assert complete({"type": "ref/prompt", "name": "unknown"}, "x", "y")["values"] == []
    assert client.rpc("completion/complete", {"ref": {"type": "ref/prompt"}})["error"]["code"] == -32602


# ---------------------------------------------------------------------------- logging
def test_log_messages_follow_the_level(client):
    client.rpc("logging/setLevel", {"level": "info"})
    r = client.request("tools/call", {"name": "get_table_data", "arguments": {"tableName": "tags", "limit": 1}})
    assert r.headers["Content-Type"].startswith("text/event-stream")
    msgs = [json.loads(e["data"]) for e in parse_sse(r.data) if e.get("data", "").strip()]
    logs = [m for m in msgs if m.get("method") == "notifications/message"]
    assert logs and logs[0]["params"]["level"] == "info"
    assert logs[0]["params"]["data"]["event"] == "partial_result"
    assert "sqlite" not in json.dumps(logs) and "demo.db" not in json.dumps(logs)   # no internals
    assert msgs[-1]["result"]["isError"] is False
    client.rpc("logging/setLevel", {"level": "error"})
    r = client.request("tools/call", {"name": "get_table_data", "arguments": {"tableName": "tags", "limit": 1}})
    msgs = [json.loads(e["data"]) for e in parse_sse(r.data) if e.get("data", "").strip()]
    assert [m for m in msgs if m.get("method") == "notifications/message"] == []


def test_no_log_level_no_stream(client):
    r = client.request("tools/call", {"name": "get_tables", "arguments": {}})
    assert r.headers["Content-Type"].startswith("application/json")


# ---------------------------------------------------------------------------- progress and resumable SSE
def test_progress_and_event_ids(pc, probe, papp):
    probe.gate("g1").set()
    r = pc.request("tools/call", {"name": "probe_gated_progress", "arguments": {"gate": "g1"},
                                  "_meta": {"progressToken": "tok"}})
    events = parse_sse(r.data)
    assert events[0]["data"] == "" and events[0]["retry"] == "1000" and events[0]["id"]   # priming
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids)
    stream = ids[0].rsplit("_", 1)[0]
    assert all(i.rsplit("_", 1)[0] == stream for i in ids)
    msgs = [json.loads(e["data"]) for e in events[1:]]
    assert [m["params"]["progress"] for m in msgs[:-1]] == [1, 2]
    assert all(m["params"]["progressToken"] == "tok" and m["params"]["total"] == 2 for m in msgs[:-1])
    assert msgs[-1]["result"]["content"][0]["text"] == "done"


def test_no_priming_event_before_2025_11_25(papp, probe):
    c = McpTestClient(papp, version="2025-06-18")
    c.initialize()
    probe.gate("g0").set()
    r = c.request("tools/call", {"name": "probe_gated_progress", "arguments": {"gate": "g0"},
                                 "_meta": {"progressToken": 1}})
    events = parse_sse(r.data)
    assert all(e.get("data", "").strip() for e in events)
    assert all(e.get("id") for e in events)


def test_dropped_stream_resumes_with_last_event_id(pc, probe, papp):
    r = pc.http.post(pc.path, data=json.dumps(
            {"jsonrpc": "2.0", "id": 99, "method": "tools/call",
             "params": {"name": "probe_gated_progress", "arguments": {"gate": "g2"},
                        "_meta": {"progressToken": "t2"}}}), headers=pc.headers(), buffered=False)
    reader = SseReader(r)
    eid, first = reader.next_message()
    assert first["params"]["progress"] == 1
    reader.close()                              # the client drops the connection mid-call
    probe.gate("g2").set()                      # ... and the call goes on without it
    g = pc.http.get(pc.path, headers=pc.headers(Accept="text/event-stream", **{"Last-Event-ID": eid}))
    assert g.status_code == 200
    events = [e for e in parse_sse(g.data) if e.get("data", "").strip()]
    msgs = [json.loads(e["data"]) for e in events]
    assert [m.get("params", {}).get("progress") for m in msgs[:-1]] == [2]     # nothing twice
    assert msgs[-1]["id"] == 99 and msgs[-1]["result"]["content"][0]["text"] == "done"  # nothing lost
    # Resuming again from the first event gives the same rest, once more (a replay, not a queue).
    g2 = pc.http.get(pc.path, headers=pc.headers(Accept="text/event-stream", **{"Last-Event-ID": eid}))
    assert [e["id"] for e in parse_sse(g2.data) if e.get("data", "").strip()] == [e["id"] for e in events]


def test_get_stream_replay_after_last_event_id(client, demo_app):
    store = demo_app.extensions["mcp_flask"]["store"]
    notes = [{"jsonrpc": "2.0", "method": "notifications/message",
              "params": {"level": "info", "data": f"n{i}"}} for i in range(3)]
    ids = [store.publish(client.session_id, n) for n in notes]
    r = client.http.get(client.path, headers=client.headers(Accept="text/event-stream"), buffered=False)
    reader = SseReader(r)
    got = [reader.next_message() for _ in range(3)]
    assert [i for i, _ in got] == ids and [m for _, m in got] == notes
    reader.close()
    store.publish(client.session_id, {"jsonrpc": "2.0", "method": "notifications/message",
                                      "params": {"level": "info", "data": "n3"}})
    r = client.http.get(client.path, headers=client.headers(Accept="text/event-stream",
                                                            **{"Last-Event-ID": ids[0]}), buffered=False)
    reader = SseReader(r)
    replay = [reader.next_message()[1]["params"]["data"] for _ in range(3)]
    assert replay == ["n1", "n2", "n3"]        # n3 came from the log, not twice from the queue
    store.delete(client.session_id)
    rest = b"".join(reader.chunks)
    assert [e for e in parse_sse(rest) if e.get("data", "").strip()] == []
    reader.close()


def test_unknown_last_event_id_is_400(client):
    r = client.http.get(client.path, headers=client.headers(Accept="text/event-stream",
                                                            **{"Last-Event-ID": "garbage"}))
    assert r.status_code == 400


def test_replay_window_and_retry_are_configurable(demo_db, tmp_path, probe):
    from mcp_flask import create_app
    app = create_app(make_settings({"demo": {"url": "sqlite:///" + demo_db}}, data_dir=str(tmp_path),
                                   sse_retry_ms=2500, sse_replay_window=0.05),
                     check_databases=False, providers={"demo": [probe]})
    store = app.extensions["mcp_flask"]["store"]
    assert store.replay_window == 0.05
    c = McpTestClient(app)
    c.initialize()
    probe.gate("g3").set()
    r = c.request("tools/call", {"name": "probe_gated_progress", "arguments": {"gate": "g3"},
                                 "_meta": {"progressToken": 3}})
    events = parse_sse(r.data)
    assert events[0]["retry"] == "2500"
    first = events[1]["id"]
    assert store.events_after(c.session_id, events[0]["id"])[1]      # still inside the window
    wait_for(lambda: not store.events_after(c.session_id, events[0]["id"])[1], 5, "the window to pass")
    assert store.events_after(c.session_id, first) == (first.rsplit("_", 1)[0], [])


# ---------------------------------------------------------------------------- cancellation
def test_cancel_stops_the_query_and_sends_no_response(pc, papp):
    store = papp.extensions["mcp_flask"]["store"]
    database = papp.extensions["mcp_flask"]["services"]["demo"].database
    out = {}

    def run():
        out["r"] = pc.http.post(pc.path, headers=pc.headers(Accept="application/json"), data=json.dumps(
            {"jsonrpc": "2.0", "id": "slow-1", "method": "tools/call",
             "params": {"name": "probe_endless_query", "arguments": {}}}))
        out["done"] = time.monotonic()

    t = threading.Thread(target=run)
    t.start()
    key = (pc.session_id, "str:slow-1")
    scope = wait_for(lambda: store._calls.get(key), 10, "the call to start")
    wait_for(lambda: scope.running is not None, 10, "the query to start")
    cancelled_at = time.monotonic()
    n = pc.post({"jsonrpc": "2.0", "method": "notifications/cancelled",
                 "params": {"requestId": "slow-1", "reason": "user pressed stop"}})
    assert n.status_code == 202
    t.join(10)
    assert not t.is_alive()
    assert out["done"] - cancelled_at < 1.0                     # gone from the database within a second
    assert out["r"].status_code == 202 and out["r"].data == b""  # no response for a cancelled request
    assert store.calls_in_flight(pc.session_id) == 0
    stats = database.pool.stats()
    assert stats["in_use"] == 0
    assert stats["open"] >= 1 and stats["idle"] == stats["open"]   # returned to the pool, not dropped
    # The connection went back healthy: the next calls work on it.
    for _ in range(3):
        assert pc.data("get_table_data", {"tableName": "tags", "limit": 2})["resource"]


def test_cancel_over_sse_ends_the_stream_without_a_response(pc, papp):
    store = papp.extensions["mcp_flask"]["store"]
    pc.rpc("logging/setLevel", {"level": "emergency"})      # any level: answered over SSE
    r = pc.http.post(pc.path, headers=pc.headers(), buffered=False, data=json.dumps(
        {"jsonrpc": "2.0", "id": 5, "method": "tools/call",
         "params": {"name": "probe_endless_query", "arguments": {}}}))
    assert r.headers["Content-Type"].startswith("text/event-stream")
    scope = wait_for(lambda: store._calls.get((pc.session_id, "int:5")), 10, "the call to start")
    wait_for(lambda: scope.running is not None, 10, "the query to start")
    pc.post({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 5}})
    events = parse_sse(b"".join(r.response))
    assert [e for e in events if e.get("data", "").strip()] == []


# ---------------------------------------------------------------------------- elicitation
def confirm_app(demo_db, tmp_path, probe, confirm=True):
    return build(demo_db, tmp_path, probe, confirm_destructive=confirm)


def start_delete(c, tag_id=3):
    r = c.http.post(c.path, headers=c.headers(), buffered=False, data=json.dumps(
        {"jsonrpc": "2.0", "id": 42, "method": "tools/call",
         "params": {"name": "probe_confirmed_delete", "arguments": {"id": tag_id}}}))
    assert r.headers["Content-Type"].startswith("text/event-stream")
    return SseReader(r)


def tag_exists(demo_db, tag_id=3) -> bool:
    conn = sqlite3.connect(demo_db)
    try:
        return conn.execute("SELECT count(*) FROM tags WHERE id = ?", (tag_id,)).fetchone()[0] == 1
    finally:
        conn.close()


@pytest.mark.parametrize("answer,deleted", [
    ({"action": "accept", "content": {"confirm": True}}, True),
    ({"action": "accept", "content": {"confirm": False}}, False),
    ({"action": "decline"}, False),
    ({"action": "cancel"}, False),
])
def test_elicitation_round_trip(demo_db, tmp_path, probe, answer, deleted):
    app = confirm_app(demo_db, tmp_path, probe)
    c = McpTestClient(app)
    c.initialize(capabilities={"elicitation": {}})
    reader = start_delete(c)
    _, ask = reader.next_message()
    assert ask["method"] == "elicitation/create"
    assert "Delete tag 3" in ask["params"]["message"]
    assert ask["params"]["requestedSchema"]["properties"]["confirm"]["type"] == "boolean"
    assert tag_exists(demo_db)                         # nothing changed while asking
    reply = c.post({"jsonrpc": "2.0", "id": ask["id"], "result": answer})
    assert reply.status_code == 202
    _, result = reader.next_message()
    assert result["id"] == 42
    assert result["result"]["isError"] is (not deleted)
    assert tag_exists(demo_db) is (not deleted)


def test_elicitation_error_response_changes_nothing(demo_db, tmp_path, probe):
    c = McpTestClient(confirm_app(demo_db, tmp_path, probe))
    c.initialize(capabilities={"elicitation": {}})
    reader = start_delete(c)
    _, ask = reader.next_message()
    c.post({"jsonrpc": "2.0", "id": ask["id"], "error": {"code": -1, "message": "no UI"}})
    _, result = reader.next_message()
    assert result["result"]["isError"] is True and tag_exists(demo_db)


def test_no_elicitation_capability_no_question(demo_db, tmp_path, probe):
    c = McpTestClient(confirm_app(demo_db, tmp_path, probe))
    c.initialize()
    result = c.call("probe_confirmed_delete", {"id": 3})
    assert result["isError"] is True and tag_exists(demo_db)


def test_confirm_destructive_off_no_question(demo_db, tmp_path, probe):
    c = McpTestClient(confirm_app(demo_db, tmp_path, probe, confirm=False))
    c.initialize(capabilities={"elicitation": {}})
    result = c.call("probe_confirmed_delete", {"id": 3})
    assert result["isError"] is True and tag_exists(demo_db)


def test_a_stray_response_is_ignored(pc):
    assert pc.post({"jsonrpc": "2.0", "id": "srv-unknown", "result": {"action": "accept"}}).status_code == 202
    assert pc.rpc("ping")["result"] == {}


def test_delete_records_asks_before_deleting(demo_db, tmp_path):
    """confirm_destructive + a client with elicitation: delete_records asks first; decline changes nothing."""
    app = build(demo_db, tmp_path, None, confirm_destructive=True)
    c = McpTestClient(app)
    c.initialize(capabilities={"elicitation": {}})
    r = c.http.post(c.path, headers=c.headers(), buffered=False, data=json.dumps(
        {"jsonrpc": "2.0", "id": 8, "method": "tools/call",
         "params": {"name": "delete_records", "arguments": {"tableName": "tags", "ids": [3]}}}))
    reader = SseReader(r)
    _, first = reader.next_message()
    assert first.get("method") == "elicitation/create"
    c.post({"jsonrpc": "2.0", "id": first["id"], "result": {"action": "decline"}})
    _, result = reader.next_message()
    assert result["id"] == 8 and result["result"]["isError"] is True
    assert tag_exists(demo_db)
