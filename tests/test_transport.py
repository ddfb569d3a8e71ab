"""The Streamable HTTP contract at ``/mcp/<service>`` (transport.py), over Flask's test client.

Every status code the transport can answer, JSON versus SSE answers, sessions
(creation, DELETE, idle expiry), version negotiation and the
``MCP-Protocol-Version`` header, JSON-RPC batches per version, Host/Origin
checks (DNS rebinding), and malformed requests of every kind, each followed by
proof that the server still serves.  The demo database is real SQLite.
"""
from __future__ import annotations

import base64
import hashlib
import json

import pytest

from conftest import ACCEPT_BOTH, McpTestClient

VERSIONS = ("2025-03-26", "2025-06-18", "2025-11-25")


def parse_sse(body: bytes) -> list[dict]:
    """The events of an SSE body: [{"id", "event", "data", "retry"}] (comments dropped)."""
    events = []
    for block in body.decode().split("\n\n"):
        if not block.strip():
            continue
        ev: dict = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            ev[name] = value[1:] if value.startswith(" ") else value
        if ev:
            events.append(ev)
    return events


def sse_messages(body: bytes) -> list[dict]:
    return [json.loads(e["data"]) for e in parse_sse(body) if e.get("data", "").strip()]


def assert_serving(c: McpTestClient) -> None:
    """The session still answers a ping with ``{}``."""
    body = c.rpc("ping")
    assert body["result"] == {}


# ---------------------------------------------------------------------------- initialize and sessions
def test_initialize_creates_an_unguessable_session(demo_app):
    c = McpTestClient(demo_app)
    r = c.post({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                           "clientInfo": {"name": "t", "version": "1"}}})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    sid = r.headers["Mcp-Session-Id"]
    # >= 128 random bits: token_urlsafe(32) gives 43 chars of base64url (6 bits each).
    assert len(sid) * 6 >= 128
    assert all(0x21 <= ord(ch) <= 0x7E for ch in sid)
    body = r.get_json()
    assert body["id"] == 1
    result = body["result"]
    assert result["protocolVersion"] == "2025-11-25"
    assert result["serverInfo"]["name"] == "mcp-flask" and result["serverInfo"]["version"]
    for cap in ("tools", "resources", "prompts", "logging"):
        assert cap in result["capabilities"]
    assert "demo" in result["instructions"]


def test_session_ids_differ(demo_app):
    ids = set()
    for _ in range(20):
        c = McpTestClient(demo_app)
        c.initialize()
        ids.add(c.session_id)
    assert len(ids) == 20


def test_session_records_what_initialize_sent(demo_app):
    c = McpTestClient(demo_app)
    c.initialize(version="2025-06-18", capabilities={"elicitation": {}})
    store = demo_app.extensions["mcp_flask"]["store"]
    s = store.get(c.session_id)
    assert s.protocol_version == "2025-06-18"
    assert s.client_capabilities == {"elicitation": {}}
    assert s.client_info == {"name": "pytest", "version": "1"}
    assert s.service == "demo"
    assert s.initialized is True


@pytest.mark.parametrize("version", VERSIONS)
def test_supported_version_is_echoed(demo_app, version):
    c = McpTestClient(demo_app)
    assert c.initialize(version=version)["protocolVersion"] == version


@pytest.mark.parametrize("asked", ["2024-11-05", "1999-01-01", "2099-12-31", "latest"])
def test_unsupported_version_gets_the_newest(demo_app, asked):
    c = McpTestClient(demo_app)
    assert c.initialize(version=asked)["protocolVersion"] == "2025-11-25"


def test_request_without_session_is_400(demo_app):
    c = McpTestClient(demo_app)
    r = c.request("tools/list")
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == -32600
    assert "id" not in r.get_json()


def test_unknown_session_is_404(demo_app):
    c = McpTestClient(demo_app)
    c.session_id = "x" * 43
    r = c.request("tools/list")
    assert r.status_code == 404
    assert r.get_json()["error"]["code"] == -32600


def test_session_of_another_service_is_404(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db}, "other": {"url": "sqlite:///" + demo_db}})
    a = McpTestClient(app, "demo")
    a.initialize()
    b = McpTestClient(app, "other")
    b.session_id = a.session_id
    assert b.request("ping").status_code == 404


def test_delete_ends_the_session(client):
    r = client.http.delete(client.path, headers=client.headers())
    assert r.status_code == 204
    assert client.request("ping").status_code == 404
    # DELETE again: the session is gone.
    assert client.http.delete(client.path, headers=client.headers()).status_code == 404


def test_delete_without_session_is_400(demo_app):
    c = McpTestClient(demo_app)
    assert c.http.delete(c.path, headers=c.headers()).status_code == 400


def test_idle_session_expires(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db}}, session_ttl=30)
    c = McpTestClient(app)
    c.initialize()
    assert_serving(c)
    store = app.extensions["mcp_flask"]["store"]
    # Age the record past the ttl instead of sleeping: the store compares last_seen to now.
    store.get(c.session_id).last_seen -= 31
    r = c.request("ping")
    assert r.status_code == 404
    assert store.get(c.session_id) is None


def test_activity_keeps_a_session_alive(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db}}, session_ttl=30)
    c = McpTestClient(app)
    c.initialize()
    store = app.extensions["mcp_flask"]["store"]
    store.get(c.session_id).last_seen -= 20      # idle for 20 s: still alive
    assert_serving(c)                             # ... and this request restarts the clock
    store._sessions[c.session_id].last_seen -= 20
    assert_serving(c)


def test_unknown_service_is_404(demo_app):
    c = McpTestClient(demo_app, service="nope")
    r = c.post({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                           "clientInfo": {"name": "t", "version": "1"}}})
    assert r.status_code == 404


# ---------------------------------------------------------------------------- HTTP methods and headers
@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_other_methods_are_405(client, method):
    r = client.http.open(client.path, method=method, headers=client.headers())
    assert r.status_code == 405
    assert "POST" in r.headers["Allow"]
    assert_serving(client)


def test_options_preflight(client):
    r = client.http.open(client.path, method="OPTIONS",
                         headers={"Host": "localhost", "Origin": "http://localhost:3000"})
    assert r.status_code == 204
    assert "Mcp-Session-Id" in r.headers["Access-Control-Allow-Headers"]
    assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "text/json"])
def test_wrong_content_type_is_415(client, ctype):
    r = client.request("ping", **{"Content-Type": ctype})
    assert r.status_code == 415
    assert r.get_json()["error"]["code"] == -32600
    assert_serving(client)


def test_content_type_with_charset_is_fine(client):
    r = client.request("ping", **{"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 200


@pytest.mark.parametrize("accept", ["text/html", "image/png", "application/xml"])
def test_unacceptable_accept_is_406(client, accept):
    r = client.request("ping", Accept=accept)
    assert r.status_code == 406
    assert_serving(client)


@pytest.mark.parametrize("accept", ["application/json", "text/event-stream", "*/*", ACCEPT_BOTH])
def test_acceptable_accept(client, accept):
    r = client.request("ping", Accept=accept)
    assert r.status_code == 200


def test_body_over_the_limit_is_413(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db}}, max_body_bytes=2000)
    c = McpTestClient(app)
    c.initialize()
    big = {"jsonrpc": "2.0", "id": 9, "method": "ping", "params": {"_meta": {"pad": "x" * 3000}}}
    r = c.post(big)
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == -32600
    assert_serving(c)


def test_get_opens_an_sse_stream_only_with_the_right_accept(client):
    r = client.http.get(client.path, headers=client.headers(Accept="application/json"))
    assert r.status_code in (405, 406)
    assert_serving(client)


def test_get_without_session_is_400(demo_app):
    c = McpTestClient(demo_app)
    r = c.http.get(c.path, headers=c.headers(Accept="text/event-stream"))
    assert r.status_code == 400


def test_get_stream_delivers_published_messages_and_ends_with_the_session(client, demo_app):
    store = demo_app.extensions["mcp_flask"]["store"]
    r = client.http.get(client.path, headers=client.headers(Accept="text/event-stream"), buffered=False)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    chunks = iter(r.response)
    note = {"jsonrpc": "2.0", "method": "notifications/message",
            "params": {"level": "info", "data": "hello"}}
    store.publish(client.session_id, note)
    got = []
    for chunk in chunks:
        got += sse_messages(chunk)
        if got:
            break
    assert got == [note]
    store.delete(client.session_id)
    rest = b"".join(chunks)          # the generator ends once the session is gone
    assert sse_messages(rest) == []
    r.close()


# ---------------------------------------------------------------------------- Host and Origin
@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:5000", "[::1]:8000", "[::1]"])
def test_loopback_hosts_are_allowed(demo_app, host):
    c = McpTestClient(demo_app, headers={"Host": host})
    c.initialize()
    assert_serving(c)


@pytest.mark.parametrize("host", ["evil.example.com", "evil.example.com:8000", "localhost.evil.com",
                                  "127.0.0.2"])
def test_foreign_host_is_421(demo_app, host):
    c = McpTestClient(demo_app, headers={"Host": host})
    r = c.post({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                           "clientInfo": {"name": "t", "version": "1"}}})
    assert r.status_code == 421
    assert "Mcp-Session-Id" not in r.headers


@pytest.mark.parametrize("origin", ["http://evil.example.com", "https://localhost.evil.com",
                                    "null", "file://", "http://127.0.0.2:8000"])
def test_foreign_origin_is_403(demo_app, origin):
    c = McpTestClient(demo_app, headers={"Origin": origin})
    r = c.post({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                           "clientInfo": {"name": "t", "version": "1"}}})
    assert r.status_code == 403
    assert "id" not in r.get_json()


def test_conformance_dns_rebinding_case(demo_app):
    """The conformance suite's scenario: foreign Host+Origin -> 4xx; its own -> 2xx."""
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}
    bad = McpTestClient(demo_app, headers={"Host": "evil.example.com", "Origin": "http://evil.example.com"})
    assert 400 <= bad.post(init).status_code < 500
    good = McpTestClient(demo_app, headers={"Host": "localhost:3001", "Origin": "http://localhost:3001"})
    assert 200 <= good.post(init).status_code < 300


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1", "https://[::1]:8443"])
def test_loopback_origins_are_allowed_and_get_cors_headers(demo_app, origin):
    c = McpTestClient(demo_app, headers={"Origin": origin})
    c.initialize()
    r = c.request("ping")
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == origin


def test_configured_hosts_and_origins(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db}},
                      allowed_hosts=["mcp.example.org"], allowed_origins=["https://app.example.org"])
    ok = McpTestClient(app, headers={"Host": "mcp.example.org", "Origin": "https://app.example.org"})
    ok.initialize()
    assert_serving(ok)
    assert McpTestClient(app).post({"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 421
    bad = McpTestClient(app, headers={"Host": "mcp.example.org", "Origin": "https://other.example.org"})
    assert bad.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 403


# ---------------------------------------------------------------------------- MCP-Protocol-Version
def test_unsupported_protocol_version_header_is_400(client):
    r = client.request("ping", **{"MCP-Protocol-Version": "1999-01-01"})
    assert r.status_code == 400
    err = r.get_json()["error"]
    assert err["code"] == -32600
    assert "2025-11-25" in err["data"]["supported"]
    assert_serving(client)


@pytest.mark.parametrize("header", VERSIONS)
def test_supported_but_different_header_is_served(client, header):
    r = client.request("tools/list", **{"MCP-Protocol-Version": header})
    assert r.status_code == 200
    assert r.get_json()["result"]["tools"]


def test_absent_header_falls_back_to_the_session(client):
    r = client.request("tools/call", {"name": "get_tables", "arguments": {}},
                       **{"MCP-Protocol-Version": None, "Accept": "application/json"})
    assert r.status_code == 200
    # The session negotiated 2025-11-25: structured content is present.
    assert "structuredContent" in r.get_json()["result"]


# ---------------------------------------------------------------------------- notifications, responses
def test_notification_is_202_without_body(client):
    r = client.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert r.status_code == 202
    assert r.data == b""


def test_unknown_notification_is_202(client):
    r = client.post({"jsonrpc": "2.0", "method": "notifications/whatever", "params": {"x": 1}})
    assert r.status_code == 202


def test_cancel_for_an_unknown_request_is_202(client):
    r = client.post({"jsonrpc": "2.0", "method": "notifications/cancelled",
                     "params": {"requestId": 12345, "reason": "changed my mind"}})
    assert r.status_code == 202
    assert_serving(client)


def test_response_is_202_without_body(client):
    r = client.post({"jsonrpc": "2.0", "id": "srv-1", "result": {}})
    assert r.status_code == 202
    assert r.data == b""
    r = client.post({"jsonrpc": "2.0", "id": "srv-2", "error": {"code": -1, "message": "no"}})
    assert r.status_code == 202
    assert_serving(client)


def test_notification_without_session_is_400(demo_app):
    c = McpTestClient(demo_app)
    assert c.post({"jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 400


# ---------------------------------------------------------------------------- JSON vs SSE
def test_plain_requests_are_answered_with_json(client):
    r = client.request("tools/call", {"name": "get_tables", "arguments": {}})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.get_json()["result"]["isError"] is False


def test_progress_token_gets_an_sse_answer(client):
    r = client.request("tools/call", {"name": "get_tables", "arguments": {},
                                      "_meta": {"progressToken": "p1"}})
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    assert r.headers["Cache-Control"].startswith("no-cache")
    msgs = sse_messages(r.data)
    final = msgs[-1]
    assert final["id"] == client._id
    assert final["result"]["isError"] is False
    assert all("method" in m for m in msgs[:-1])


def test_progress_token_with_json_only_accept_gets_json(client):
    r = client.request("tools/call", {"name": "get_tables", "arguments": {},
                                      "_meta": {"progressToken": "p1"}}, Accept="application/json")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.get_json()["result"]["isError"] is False


# ---------------------------------------------------------------------------- batches
def test_batch_in_2025_03_26(demo_app):
    c = McpTestClient(demo_app, version="2025-03-26")
    c.initialize()
    batch = [{"jsonrpc": "2.0", "id": "a", "method": "ping"},
             {"jsonrpc": "2.0", "method": "notifications/initialized"},
             {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
              "params": {"name": "get_tables", "arguments": {}}},
             {"jsonrpc": "2.0", "id": 3, "method": "no/such/method"}]
    r = c.post(batch)
    assert r.status_code == 200
    out = r.get_json()
    assert isinstance(out, list) and [m["id"] for m in out] == ["a", 2, 3]
    assert out[0]["result"] == {}
    assert out[1]["result"]["isError"] is False
    assert "structuredContent" not in out[1]["result"]       # 2025-03-26 has none
    assert out[2]["error"]["code"] == -32601


def test_batch_of_notifications_only_is_202(demo_app):
    c = McpTestClient(demo_app, version="2025-03-26")
    c.initialize()
    r = c.post([{"jsonrpc": "2.0", "method": "notifications/initialized"},
                {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}])
    assert r.status_code == 202


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
def test_batch_is_refused_in_later_versions(demo_app, version):
    c = McpTestClient(demo_app, version=version)
    c.initialize()
    r = c.post([{"jsonrpc": "2.0", "id": 1, "method": "ping"}])
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == -32600
    assert_serving(c)


def test_initialize_in_a_batch_is_refused(demo_app):
    c = McpTestClient(demo_app, version="2025-03-26")
    c.initialize()
    r = c.post([{"jsonrpc": "2.0", "id": 1, "method": "initialize",
                 "params": {"protocolVersion": "2025-03-26", "capabilities": {},
                            "clientInfo": {"name": "t", "version": "1"}}}])
    assert r.status_code == 400
    assert_serving(c)


# ---------------------------------------------------------------------------- malformed requests
@pytest.mark.parametrize("raw", [b"{", b"not json", b"\xff\xfe{}", b"", b'{"jsonrpc": "2.0", "id": 1,'])
def test_invalid_json_is_32700(client, raw):
    r = client.post(None, raw=raw)
    assert r.status_code == 400
    body = r.get_json()
    assert body["error"]["code"] == -32700
    assert "id" not in body
    assert_serving(client)


@pytest.mark.parametrize("payload", [
    [],
    42,
    "ping",
    None,
    {"jsonrpc": "2.0"},
    {"jsonrpc": "1.0", "id": 1, "method": "ping"},
    {"id": 1, "method": "ping"},
    {"jsonrpc": "2.0", "id": None, "method": "ping"},
    {"jsonrpc": "2.0", "id": 1.5, "method": "ping"},
    {"jsonrpc": "2.0", "id": [1], "method": "ping"},
    {"jsonrpc": "2.0", "id": 1, "method": 7},
    {"jsonrpc": "2.0", "id": 1, "method": ""},
    {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": [1, 2]},
    {"jsonrpc": "2.0", "id": 1, "method": "ping", "extra": True},
    {"jsonrpc": "2.0", "id": 1, "result": {}, "error": {"code": 1, "message": "x"}},
])
def test_broken_envelope_is_32600(client, payload):
    r = client.post(payload)
    assert r.status_code == 400, r.data
    assert r.get_json()["error"]["code"] == -32600
    assert_serving(client)


def test_broken_envelope_keeps_a_readable_id(client):
    r = client.post({"jsonrpc": "1.0", "id": 77, "method": "ping"})
    assert r.get_json().get("id") == 77


@pytest.mark.parametrize("method,params", [
    ("tools/call", {}),
    ("tools/call", {"name": 5}),
    ("tools/call", {"name": "get_tables", "arguments": "x"}),
    ("tools/list", {"cursor": 5}),
    ("logging/setLevel", {}),
    ("logging/setLevel", {"level": "loud"}),
    ("resources/list", {"cursor": ["x"]}),
])
def test_bad_params_are_32602(client, method, params):
    body = client.rpc(method, params)
    assert body["error"]["code"] == -32602
    assert body["id"] == client._id
    assert_serving(client)


def test_initialize_with_bad_params_is_32602(demo_app):
    c = McpTestClient(demo_app)
    r = c.post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}})
    assert r.status_code == 200
    assert r.get_json()["error"]["code"] == -32602
    assert "Mcp-Session-Id" not in r.headers


def test_unknown_tool_is_32602(client):
    body = client.rpc("tools/call", {"name": "drop_database", "arguments": {}})
    assert body["error"]["code"] == -32602


@pytest.mark.parametrize("method", ["no/such/method", "tools/delete", "sampling/createMessage"])
def test_unknown_methods_are_32601(client, method):
    body = client.rpc(method, {})
    assert body["error"]["code"] == -32601
    assert body["id"] == client._id


def test_server_discover_without_a_session_lets_clients_fall_back(demo_app):
    """mcp 2.x probes server/discover first: any error but -32022 makes it fall back."""
    c = McpTestClient(demo_app)
    r = c.post({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {}},
               **{"MCP-Protocol-Version": "2026-07-28"})
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] != -32022


def test_many_bad_requests_then_good_ones(client):
    for raw in (b"{", b"[]", b'{"jsonrpc":"2.0"}', b"\x00" * 10):
        assert client.post(None, raw=raw).status_code == 400
    assert client.data("get_tables")["resource"]


# ---------------------------------------------------------------------------- methods
def test_ping_is_empty(client):
    assert client.rpc("ping")["result"] == {}
    assert client.rpc("ping", {})["result"] == {}


def test_ping_before_initialized_is_served(demo_app):
    c = McpTestClient(demo_app)
    r = c.post({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                           "clientInfo": {"name": "t", "version": "1"}}})
    c.session_id = r.headers["Mcp-Session-Id"]
    assert c.rpc("ping")["result"] == {}


def test_set_level(client, demo_app):
    assert client.rpc("logging/setLevel", {"level": "warning"})["result"] == {}
    store = demo_app.extensions["mcp_flask"]["store"]
    assert store.get(client.session_id).log_level == "warning"


@pytest.mark.parametrize("method,key", [("resources/list", "resources"),
                                        ("resources/templates/list", "resourceTemplates"),
                                        ("prompts/list", "prompts")])
def test_list_methods_answer_lists(client, method, key):
    result = client.rpc(method)["result"]
    assert isinstance(result[key], list)


def test_tools_list(client):
    tools = client.rpc("tools/list")["result"]["tools"]
    names = [t["name"] for t in tools]
    for name in ("get_tables", "get_table_schema", "get_table_fields", "get_table_relationships",
                 "get_database_resources", "list_tools"):
        assert name in names
    for t in tools:
        assert t["description"] and t["inputSchema"]["type"] == "object"
        assert set(t["annotations"]) >= {"readOnlyHint", "destructiveHint", "idempotentHint"}
        assert "outputSchema" in t and "title" in t


def test_tools_list_2025_03_26_has_no_output_schema_or_title(demo_app):
    c = McpTestClient(demo_app, version="2025-03-26")
    c.initialize()
    for t in c.rpc("tools/list")["result"]["tools"]:
        assert "outputSchema" not in t and "title" not in t
        assert t["annotations"]


def test_tools_list_pagination(client):
    full = [t["name"] for t in client.rpc("tools/list")["result"]["tools"]]
    assert len(full) >= 3
    protocol_obj = client.http.application.extensions["mcp_flask"]["protocol"]
    protocol_obj.page_size = 2
    seen, cursor, pages = [], None, 0
    while True:
        params = {"cursor": cursor} if cursor else {}
        result = client.rpc("tools/list", params)["result"]
        assert len(result["tools"]) <= 2
        seen += [t["name"] for t in result["tools"]]
        pages += 1
        cursor = result.get("nextCursor")
        if not cursor:
            break
        assert pages < 20
    assert seen == full
    assert pages == (len(full) + 1) // 2


@pytest.mark.parametrize("cursor", ["garbage", base64.urlsafe_b64encode(b"x:1").decode(), "", "!!!"])
def test_invalid_cursor_is_32602(client, cursor):
    assert client.rpc("tools/list", {"cursor": cursor})["error"]["code"] == -32602


def test_tools_call_result_shape(client):
    result = client.call("get_tables")
    assert result["isError"] is False
    assert result["content"][0]["type"] == "text"
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]


# ---------------------------------------------------------------------------- hot-path helpers
def test_header_parsing_helpers_are_memoised_with_a_bound_and_answer_as_before():
    from mcp_flask import transport
    assert transport.host_of.cache_info().maxsize == transport.PARSE_CACHE_SIZE
    assert transport._accepts.cache_info().maxsize == transport.PARSE_CACHE_SIZE
    for _ in range(2):          # the second round is answered from the caches
        assert transport.host_of(" LocalHost:8080 ") == "localhost"
        assert transport.host_of("[::1]:80") == "[::1]"
        assert transport.host_of("::1") == "::1"
        assert transport.Transport.accepts({"HTTP_ACCEPT": "Application/JSON"}, "application/json")
        assert transport.Transport.accepts({"HTTP_ACCEPT": "text/*"}, "text/event-stream")
        assert not transport.Transport.accepts({"HTTP_ACCEPT": "text/html"}, "application/json")
        assert transport.Transport.accepts({}, "application/json")
        assert not transport.Transport.accepts({"HTTP_ACCEPT": ""}, "text/event-stream")
    for i in range(transport.PARSE_CACHE_SIZE * 2):
        transport.host_of(f"h{i}.example")
    assert transport.host_of.cache_info().currsize <= transport.PARSE_CACHE_SIZE


def test_content_type_with_parameters_or_case_is_still_accepted(demo_app):
    c = McpTestClient(demo_app)
    c.initialize()
    for ctype in ("application/json; charset=utf-8", "Application/JSON", " application/json "):
        r = c.http.post(c.path, data=json.dumps({"jsonrpc": "2.0", "id": 5, "method": "ping"}),
                          headers=dict(c.headers(), **{"Content-Type": ctype}))
        assert r.status_code == 200, (ctype, r.data)
    r = c.http.post(c.path, data="{}", headers=dict(c.headers(), **{"Content-Type": "text/json"}))
    assert r.status_code == 415


def test_the_client_is_watched_only_while_its_request_runs(demo_app, monkeypatch):
    """liveness sees the request's socket during the call and nothing after it, even
    when the call raises."""
    from mcp_flask import liveness, transport
    seen = []
    protocol = demo_app.extensions["mcp_flask"]["protocol"]
    real = protocol.handle

    def handle(method, params, call):
        seen.append(liveness._CLIENT.get())
        if method == "tools/list":
            raise RuntimeError("boom")
        return real(method, params, call)
    monkeypatch.setattr(protocol, "handle", handle)
    monkeypatch.setattr(transport, "client_socket", lambda environ: "probe")
    c = McpTestClient(demo_app)
    c.initialize()
    assert_serving(c)
    assert seen[-1] == "probe" and liveness._CLIENT.get() is None
    with pytest.raises(RuntimeError):
        c.rpc("tools/list")
    assert seen[-1] == "probe" and liveness._CLIENT.get() is None


def test_memory_sessions_expire_are_deleted_and_track_calls_without_the_lock(monkeypatch):
    from mcp_flask import sessions
    store = sessions.MemorySessionStore(ttl=10)
    s = store.create(sessions.Session(id="a", service="svc", protocol_version="2025-11-25"))
    clock = [s.last_seen]
    monkeypatch.setattr(sessions.time, "time", lambda: clock[0])
    clock[0] += 9
    assert store.get("a") is s                  # restarts the idle clock
    clock[0] += 9
    assert store.get("a") is s
    clock[0] += 11
    assert store.get("a") is None and store.count() == 0
    store.create(sessions.Session(id="b", service="svc", protocol_version="2025-11-25"))
    assert store.get("b") is not None
    assert store.delete("b") and store.get("b") is None

    class Scope:
        cancelled = False

        def cancel(self):
            self.cancelled = True
    scope = Scope()
    store.track_call("c", 1, scope)
    store.track_call("c", "1", Scope())
    assert store.calls_in_flight("c") == 2
    assert store.cancel_call("c", 1) and scope.cancelled
    store.untrack_call("c", 1)
    store.untrack_call("c", "1")
    assert store.calls_in_flight("c") == 0 and not store.cancel_call("c", 1)


# ------------------------------------------------------------------ reply bytes of a read
#: Ten rows with what a page's encoding must keep exactly: NUMERIC (scaled, unscaled, huge,
#: negative, NaN), timestamps and dates, NULLs, unicode and every character JSON escapes,
#: 64-bit integers at both ends, floats, booleans; then bytea and intervals (the values
#: that need the encoder's full rules).
WIRE_DDL = """
CREATE TABLE wire (id bigint PRIMARY KEY, amount numeric(20,4), plain numeric, at timestamp, day date,
                   note text, big bigint, ratio double precision, flag boolean, blob bytea, span interval);
INSERT INTO wire VALUES
 (1, 12.5, 1000, '2024-01-06 18:53:21', '2024-02-29', 'plain', 9223372036854775807, 0.1, true,
  '\\x00ff', '1 day 02:03:04.5'),
 (2, -0.0001, 0.000001, '1999-12-31 23:59:59.999999', '0001-01-01', 'quote " backslash \\ slash /',
  -9223372036854775808, -1.5e300, false, '', '-3 seconds'),
 (3, 9999999999999999.9999, 123456789012345678901234567890.123456789, '2024-01-06 00:00:00', NULL,
  E'tab\\t newline\\n cr\\r ctl\\x01 \\x1f del\\x7f', 4294967296, 1e-7, NULL, NULL, NULL),
 (4, NULL, 'NaN', NULL, '2024-12-31', E'l\\u2028s\\u2029 é 日本 😀 </script>', NULL, NULL, true,
  '\\x68656c6c6f', '0'),
 (5, 0, -0.0, '2024-06-01 12:00:00.5', '2024-06-01', '', 0, 0, false, '\\x7b7d', '1 mon'),
 (6, 1.1, -1E+3, '2024-06-01 12:00:00.000001', '2024-06-02', '{"not": "json"}', -1, 3.0, true,
  NULL, '1 year 2 mons 3 days'),
 (7, 2.2, 2.50, '2024-06-01 12:00:00', '2024-06-03', 'Zoë Ångström', 2147483648, 2.5, true,
  '\\x22', '00:00:00.000001'),
 (8, 3.3, 3, '2024-06-01 12:00:00', '2024-06-04', NULL, -2147483649, NULL, NULL, '\\x5c', NULL),
 (9, 4.4, 4.00, '2024-06-01 12:00:00', '2024-06-05', 'nine', 9007199254740993, 1e16, false,
  '\\x00', '-1 days +02:00:00'),
 (10, 5.5, 5.5, '2024-06-01 12:00:00', '2024-06-06', 'ten', 10, 10.25, true, '\\x0a', '10 minutes'),
 (11, 6.6, 6, '2024-06-01 12:00:00', '2024-06-07', 'eleven: the look-ahead row', 11, 11, true, NULL, NULL);
"""


def _reference_reply(request_id, rows: list[dict], meta: dict) -> bytes:
    """The reply as the encoder always wrote it, computed independently: one orjson call with
    the documented type rules (NUMERIC as text, bytes as base64, intervals as ISO 8601
    durations) and ``OPT_NON_STR_KEYS``; the text block is that JSON as a string, and
    structuredContent the same JSON."""
    import datetime
    from decimal import Decimal

    import orjson

    from mcp_flask.encoding import iso_duration

    def default(v):
        if isinstance(v, Decimal):
            return str(v)
        if isinstance(v, (bytes, memoryview)):
            return base64.b64encode(bytes(v)).decode()
        if isinstance(v, datetime.timedelta):
            return iso_duration(v)
        raise TypeError(type(v))
    opt = orjson.OPT_NON_STR_KEYS
    body = orjson.dumps({"resource": rows, "meta": meta}, default=default, option=opt)
    result = {"content": [{"type": "text", "text": body.decode()}], "isError": False,
              "structuredContent": orjson.Fragment(body)}
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}, option=opt)


@pytest.fixture(scope="module")
def wire_pg():
    """A PostgreSQL database holding ``WIRE_DDL``: ``(url, connect)``."""
    from dialect_fixtures import create_pg_database
    url, _name, connect, drop = create_pg_database("mcpf_wire_")
    try:
        conn = connect()
        with conn.cursor() as cur:
            cur.execute(WIRE_DDL)
        conn.close()
        yield url, connect
    finally:
        drop()


#: The replies below as the server wrote them before the encoder's fast path (commit 0ddf06a):
#: pinned, so the bytes on the wire can never drift unnoticed (the reference agrees with both).
WIRE_REPLY = {
    "numeric-only": (
        b'{"jsonrpc":"2.0","id":"w1","result":{"content":[{"type":"text","text":"{\\"resour'
        b'ce\\":[{\\"id\\":1,\\"amount\\":\\"12.5000\\",\\"plain\\":\\"1000\\",\\"at\\":\\"2024-01-06T18'
        b':53:21\\",\\"day\\":\\"2024-02-29\\",\\"note\\":\\"plain\\",\\"big\\":9223372036854775807,\\'
        b'"ratio\\":0.1,\\"flag\\":true},{\\"id\\":2,\\"amount\\":\\"-0.0001\\",\\"plain\\":\\"0.00000'
        b'1\\",\\"at\\":\\"1999-12-31T23:59:59.999999\\",\\"day\\":\\"0001-01-01\\",\\"note\\":\\"quot'
        b'e \\\\\\" backslash \\\\\\\\ slash /\\",\\"big\\":-9223372036854775808,\\"ratio\\":-1.5e+300'
        b',\\"flag\\":false},{\\"id\\":3,\\"amount\\":\\"9999999999999999.9999\\",\\"plain\\":\\"1234'
        b'56789012345678901234567890.123456789\\",\\"at\\":\\"2024-01-06T00:00:00\\",\\"day\\":nu'
        b'll,\\"note\\":\\"tab\\\\t newline\\\\n cr\\\\r ctl\\\\u0001 \\\\u001f del\x7f\\",\\"big\\":42949672'
        b'96,\\"ratio\\":1e-7,\\"flag\\":null},{\\"id\\":4,\\"amount\\":null,\\"plain\\":\\"NaN\\",\\"a'
        b't\\":null,\\"day\\":\\"2024-12-31\\",\\"note\\":\\"l\xe2\x80\xa8s\xe2\x80\xa9 \xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 </script>\\",\\'
        b'"big\\":null,\\"ratio\\":null,\\"flag\\":true},{\\"id\\":5,\\"amount\\":\\"0.0000\\",\\"plai'
        b'n\\":\\"0.0\\",\\"at\\":\\"2024-06-01T12:00:00.500000\\",\\"day\\":\\"2024-06-01\\",\\"note\\'
        b'":\\"\\",\\"big\\":0,\\"ratio\\":0.0,\\"flag\\":false},{\\"id\\":6,\\"amount\\":\\"1.1000\\",\\'
        b'"plain\\":\\"-1000\\",\\"at\\":\\"2024-06-01T12:00:00.000001\\",\\"day\\":\\"2024-06-02\\",'
        b'\\"note\\":\\"{\\\\\\"not\\\\\\": \\\\\\"json\\\\\\"}\\",\\"big\\":-1,\\"ratio\\":3.0,\\"flag\\":true}'
        b',{\\"id\\":7,\\"amount\\":\\"2.2000\\",\\"plain\\":\\"2.50\\",\\"at\\":\\"2024-06-01T12:00:00'
        b'\\",\\"day\\":\\"2024-06-03\\",\\"note\\":\\"Zo\xc3\xab \xc3\x85ngstr\xc3\xb6m\\",\\"big\\":2147483648,\\"rati'
        b'o\\":2.5,\\"flag\\":true},{\\"id\\":8,\\"amount\\":\\"3.3000\\",\\"plain\\":\\"3\\",\\"at\\":\\"'
        b'2024-06-01T12:00:00\\",\\"day\\":\\"2024-06-04\\",\\"note\\":null,\\"big\\":-2147483649,\\'
        b'"ratio\\":null,\\"flag\\":null},{\\"id\\":9,\\"amount\\":\\"4.4000\\",\\"plain\\":\\"4.00\\",'
        b'\\"at\\":\\"2024-06-01T12:00:00\\",\\"day\\":\\"2024-06-05\\",\\"note\\":\\"nine\\",\\"big\\":'
        b'9007199254740993,\\"ratio\\":1e+16,\\"flag\\":false},{\\"id\\":10,\\"amount\\":\\"5.5000\\'
        b'",\\"plain\\":\\"5.5\\",\\"at\\":\\"2024-06-01T12:00:00\\",\\"day\\":\\"2024-06-06\\",\\"note'
        b'\\":\\"ten\\",\\"big\\":10,\\"ratio\\":10.25,\\"flag\\":true}],\\"meta\\":{\\"returned\\":10,'
        b'\\"more\\":true,\\"limit\\":10,\\"offset\\":0,\\"next\\":10}}"}],"isError":false,"struct'
        b'uredContent":{"resource":[{"id":1,"amount":"12.5000","plain":"1000","at":"2024-0'
        b'1-06T18:53:21","day":"2024-02-29","note":"plain","big":9223372036854775807,"rati'
        b'o":0.1,"flag":true},{"id":2,"amount":"-0.0001","plain":"0.000001","at":"1999-12-'
        b'31T23:59:59.999999","day":"0001-01-01","note":"quote \\" backslash \\\\ slash /","b'
        b'ig":-9223372036854775808,"ratio":-1.5e+300,"flag":false},{"id":3,"amount":"99999'
        b'99999999999.9999","plain":"123456789012345678901234567890.123456789","at":"2024-'
        b'01-06T00:00:00","day":null,"note":"tab\\t newline\\n cr\\r ctl\\u0001 \\u001f del\x7f","'
        b'big":4294967296,"ratio":1e-7,"flag":null},{"id":4,"amount":null,"plain":"NaN","a'
        b't":null,"day":"2024-12-31","note":"l\xe2\x80\xa8s\xe2\x80\xa9 \xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 </script>","big":null'
        b',"ratio":null,"flag":true},{"id":5,"amount":"0.0000","plain":"0.0","at":"2024-06'
        b'-01T12:00:00.500000","day":"2024-06-01","note":"","big":0,"ratio":0.0,"flag":fal'
        b'se},{"id":6,"amount":"1.1000","plain":"-1000","at":"2024-06-01T12:00:00.000001",'
        b'"day":"2024-06-02","note":"{\\"not\\": \\"json\\"}","big":-1,"ratio":3.0,"flag":true'
        b'},{"id":7,"amount":"2.2000","plain":"2.50","at":"2024-06-01T12:00:00","day":"202'
        b'4-06-03","note":"Zo\xc3\xab \xc3\x85ngstr\xc3\xb6m","big":2147483648,"ratio":2.5,"flag":true},{"id'
        b'":8,"amount":"3.3000","plain":"3","at":"2024-06-01T12:00:00","day":"2024-06-04",'
        b'"note":null,"big":-2147483649,"ratio":null,"flag":null},{"id":9,"amount":"4.4000'
        b'","plain":"4.00","at":"2024-06-01T12:00:00","day":"2024-06-05","note":"nine","bi'
        b'g":9007199254740993,"ratio":1e+16,"flag":false},{"id":10,"amount":"5.5000","plai'
        b'n":"5.5","at":"2024-06-01T12:00:00","day":"2024-06-06","note":"ten","big":10,"ra'
        b'tio":10.25,"flag":true}],"meta":{"returned":10,"more":true,"limit":10,"offset":0'
        b',"next":10}}}}'),
    "bytea-and-interval": "c26d65d4562029f57eb9c70be1de4ab0c94342dc74b20aa8b36aa9cf2d71265f",
}


@pytest.mark.parametrize("fields", ["id,amount,plain,at,day,note,big,ratio,flag", None],
                         ids=["numeric-only", "bytea-and-interval"])
def test_read_reply_bytes_are_exactly_the_documented_encoding(app_factory, wire_pg, fields):
    """The whole HTTP body of a 10-row read (one more row exists) and its Content-Length:
    byte for byte the reference encoding, the text block and structuredContent alike."""
    url, connect = wire_pg
    app = app_factory({"pg": {"url": url}})
    c = McpTestClient(app, service="pg")
    c.initialize()
    args = {"tableName": "wire", "order": "id", "limit": 10}
    if fields:
        args["fields"] = fields
    r = c.post({"jsonrpc": "2.0", "id": "w1", "method": "tools/call",
                "params": {"name": "get_table_data", "arguments": args}}, Accept="application/json")
    assert r.status_code == 200
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT {fields or '*'} FROM wire ORDER BY id LIMIT 10")
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, row)) for row in cur.fetchall()]
    finally:
        conn.close()
    expected = _reference_reply("w1", rows, {"returned": 10, "more": True, "limit": 10, "offset": 0,
                                             "next": 10})
    assert r.data == expected
    assert r.headers["Content-Length"] == str(len(expected))
    pinned = WIRE_REPLY["numeric-only" if fields else "bytea-and-interval"]
    assert (r.data if fields else hashlib.sha256(r.data).hexdigest()) == pinned
