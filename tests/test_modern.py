"""The 2026-07-28 (stateless) era on the same endpoint as sessions (mcp_flask/modern.py).

Runs the real app over Flask's test client against a private copy of the demo
database: the validation ladder (envelope, headers, versions) with its codes
and HTTP statuses, removed methods, server/discover, caching hints, roles from
credentials on every request, the input-required confirmation round trip,
subscriptions/listen, SSE answers, and the session era unchanged beside it.
Results are compared with a session client's call for call.
"""
from __future__ import annotations

import base64
import json
import time

import pytest

from conftest import McpTestClient
from mcp_flask.cli import hash_api_key
from mcp_flask.providers import ProvidedTool, Provider

V = "2026-07-28"
META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CAPS = "io.modelcontextprotocol/clientCapabilities"
META_INFO = "io.modelcontextprotocol/clientInfo"
SERVER_INFO = "io.modelcontextprotocol/serverInfo"
SUB_ID = "io.modelcontextprotocol/subscriptionId"
ADMIN_KEY = "adm-0123456789abcdef0123456789abcdef"
RO_KEY = "ro-0123456789abcdef0123456789abcdef"


def meta(capabilities=None, **extra) -> dict:
    out = {META_VERSION: V, META_CAPS: capabilities or {}, META_INFO: {"name": "pytest", "version": "1"}}
    out.update(extra)
    return out


class ModernClient:
    """Speaks exactly what a 2026-07-28 client sends: _meta envelope plus the routing headers."""

    def __init__(self, app, service="demo", headers=None, capabilities=None):
        self.http = app.test_client()
        self.path = f"/mcp/{service}"
        self.extra = dict(headers or {})
        self.capabilities = capabilities or {}
        self._id = 0

    def post(self, method, params=None, *, headers=None, with_meta=True, raw=None, **kw):
        self._id += 1
        params = dict(params or {})
        if with_meta:
            params.setdefault("_meta", meta(self.capabilities))
        h = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
             "Host": "localhost", "MCP-Protocol-Version": V, "Mcp-Method": method}
        name_key = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}.get(method)
        if name_key and name_key in params:
            h["Mcp-Name"] = params[name_key]
        h.update(self.extra)
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        body = raw if raw is not None else json.dumps(
            {"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        return self.http.post(self.path, data=body, headers=h, **kw)

    def rpc(self, method, params=None, **kw):
        r = self.post(method, params, **kw)
        assert r.status_code == 200, (r.status_code, r.data)
        assert "Mcp-Session-Id" not in r.headers
        return r.get_json()

    def result(self, method, params=None, **kw):
        body = self.rpc(method, params, **kw)
        assert "result" in body, body
        res = body["result"]
        assert res["_meta"][SERVER_INFO]["name"] == "mcp-flask"
        return res

    def call(self, tool, arguments=None, **kw):
        return self.result("tools/call", {"name": tool, "arguments": arguments or {}}, **kw)


def error_of(r, status, code):
    assert r.status_code == status, (r.status_code, r.data)
    body = r.get_json()
    assert body["error"]["code"] == code, body
    return body


@pytest.fixture
def modern(demo_app):
    return ModernClient(demo_app)


# ---------------------------------------------------------------------------- discover
def test_discover_describes_the_server(demo_app, modern):
    res = modern.result("server/discover")
    assert res["supportedVersions"][0] == V
    assert {"2025-11-25", "2025-06-18", "2025-03-26"} <= set(res["supportedVersions"])
    session = McpTestClient(demo_app)
    init = session.initialize()
    assert res["capabilities"] == init["capabilities"]
    assert res["instructions"] == init["instructions"]
    assert res["_meta"][SERVER_INFO] == init["serverInfo"]
    assert res["resultType"] == "complete"
    assert isinstance(res["ttlMs"], int) and res["ttlMs"] >= 0
    assert res["cacheScope"] == "public"       # auth = "none": the same answer for everyone


def test_discover_no_longer_method_not_found_even_without_headers(modern):
    """An older probe without routing headers is told what is wrong, never -32601."""
    r = modern.post("server/discover", headers={"MCP-Protocol-Version": None, "Mcp-Method": None})
    body = error_of(r, 400, -32020)
    assert body["id"] == modern._id


# ---------------------------------------------------------------------------- the ladder
@pytest.mark.parametrize("params, code", [
    ({}, -32602),                                                        # no _meta at all
    ({"_meta": {META_CAPS: {}}}, -32602),                                # no protocolVersion
    ({"_meta": {META_VERSION: V}}, -32602),                              # no clientCapabilities
    ({"_meta": {META_VERSION: V, META_CAPS: []}}, -32602),               # capabilities not an object
    ({"_meta": meta(**{"io.modelcontextprotocol/logLevel": "loud"})}, -32602),
])
def test_envelope_errors_are_400_invalid_params(modern, params, code):
    r = modern.post("tools/list", params, with_meta=False)
    body = error_of(r, 400, code)
    assert body["id"] == modern._id


def test_client_info_is_optional(modern):
    res = modern.result("tools/list", {"_meta": {META_VERSION: V, META_CAPS: {}}})
    assert res["tools"]


@pytest.mark.parametrize("headers", [
    {"MCP-Protocol-Version": None},
    {"MCP-Protocol-Version": "2025-11-25"},
    {"Mcp-Method": None},
    {"Mcp-Method": "tools/call"},
])
def test_header_mismatch(modern, headers):
    error_of(modern.post("tools/list", headers=headers), 400, -32020)


def test_mcp_name_must_match_the_tool(modern):
    params = {"name": "get_tables", "arguments": {}}
    error_of(modern.post("tools/call", params, headers={"Mcp-Name": "get_table_data"}), 400, -32020)
    error_of(modern.post("tools/call", params, headers={"Mcp-Name": None}), 400, -32020)
    # The base64 form decodes to the name; a malformed one never matches.
    b64 = "=?base64?" + base64.b64encode(b"get_tables").decode() + "?="
    assert modern.post("tools/call", params, headers={"Mcp-Name": b64}).status_code == 200
    error_of(modern.post("tools/call", params, headers={"Mcp-Name": "=?base64?!!!?="}), 400, -32020)


def test_mcp_name_base64_for_a_non_ascii_uri(modern):
    uri = "db://demo/tables/caf\u00e9"
    b64 = "=?base64?" + base64.b64encode(uri.encode()).decode() + "?="
    r = modern.post("resources/read", {"uri": uri}, headers={"Mcp-Name": b64})
    body = error_of(r, 400, -32602)          # the header matched; the table does not exist
    assert body["error"]["data"]["uri"] == uri


def test_unsupported_version_lists_the_supported_ones(modern):
    r = modern.post("tools/list", {"_meta": meta(**{META_VERSION: "2099-01-01"})},
                    headers={"MCP-Protocol-Version": "2099-01-01"})
    body = error_of(r, 400, -32022)
    assert V in body["error"]["data"]["supported"]
    assert body["error"]["data"]["requested"] == "2099-01-01"


@pytest.mark.parametrize("method", ["initialize", "ping", "logging/setLevel", "resources/subscribe",
                                    "resources/unsubscribe", "no/such-method"])
def test_removed_and_unknown_methods_are_404(modern, method):
    body = error_of(modern.post(method, {"uri": "x", "level": "info"}), 404, -32601)
    assert body["id"] == modern._id


def test_notifications_are_accepted_and_dropped(modern):
    r = modern.post("notifications/cancelled", raw=json.dumps(
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}))
    assert r.status_code == 202
    r = modern.post("notifications/cancelled", headers={"MCP-Protocol-Version": "2099-01-01"}, raw=json.dumps(
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"_meta": meta()}}))
    error_of(r, 400, -32022)


def test_get_and_delete_are_405_for_modern_clients(demo_app):
    http = demo_app.test_client()
    for verb in (http.get, http.delete):
        r = verb("/mcp/demo", headers={"Host": "localhost", "Accept": "text/event-stream",
                                       "MCP-Protocol-Version": V})
        assert r.status_code == 405
        assert r.headers["Allow"] == "POST"
    # The session era is unchanged: no session id is still 400.
    r = http.get("/mcp/demo", headers={"Host": "localhost", "Accept": "text/event-stream"})
    assert r.status_code == 400


def test_params_that_fail_the_method_schema_are_400(modern):
    error_of(modern.post("tools/call", {"arguments": {}}), 400, -32602)


# ---------------------------------------------------------------------------- both eras at once
CALLS = [
    ("get_tables", {}),
    ("get_table_schema", {"tableName": "customers"}),
    ("get_table_fields", {"tableName": "orders"}),
    ("get_table_relationships", {"tableName": "orders"}),
    ("get_table_data", {"tableName": "orders", "limit": 3, "order": "id asc"}),
    ("get_table_schema", {"tableName": "custmers"}),          # a tool error: isError + hint
]


def comparable(result: dict) -> dict:
    """A tools/call result without the era's envelope fields."""
    return {k: v for k, v in result.items() if k not in ("_meta", "resultType")}


def test_results_match_the_session_era_call_for_call(demo_app, modern):
    session = McpTestClient(demo_app)
    session.initialize()
    assert modern.result("tools/list")["tools"] == session.rpc("tools/list")["result"]["tools"]
    for tool, args in CALLS:
        res = modern.call(tool, args)
        assert res["resultType"] == "complete"
        assert comparable(res) == session.call(tool, args), tool
    assert modern.result("resources/list")["resources"] == session.rpc("resources/list")["result"]["resources"]


def test_session_and_stateless_clients_interleave(demo_app, modern):
    """initialize still starts a session; stateless requests never touch it."""
    session = McpTestClient(demo_app)
    session.initialize()
    store = demo_app.extensions["mcp_flask"]["store"]
    before = store.count()
    modern.call("get_tables")
    assert store.count() == before
    assert session.data("get_tables")["resource"]
    assert session.rpc("ping")["result"] == {}


def test_list_results_carry_cache_hints(modern):
    for method in ("tools/list", "resources/list", "resources/templates/list", "prompts/list"):
        res = modern.result(method)
        assert res["ttlMs"] >= 0 and isinstance(res["ttlMs"], int), method
        assert res["cacheScope"] == "public"
        assert res["resultType"] == "complete"
    uri = modern.result("resources/list")["resources"][0]["uri"]
    res = modern.result("resources/read", {"uri": uri})
    assert res["contents"][0]["uri"] == uri
    assert res["cacheScope"] == "public" and res["ttlMs"] == 0
    # tools/call results are not cacheable.
    assert "ttlMs" not in modern.call("get_tables")


def test_resource_not_found_is_invalid_params_in_this_era(demo_app, modern):
    uri = "db://demo/tables/nope"
    body = error_of(modern.post("resources/read", {"uri": uri}), 400, -32602)
    assert body["error"]["data"]["uri"] == uri
    session = McpTestClient(demo_app)
    session.initialize()
    assert session.rpc("resources/read", {"uri": uri})["error"]["code"] == -32002


# ---------------------------------------------------------------------------- credentials
def keyed_service(db: str, **extra) -> dict:
    svc = {"url": "sqlite:///" + db, "auth": "api_key", "default_role": "",
           "api_keys": [{"hash": hash_api_key(ADMIN_KEY), "role": "admin", "id": "admin-key"},
                        {"hash": hash_api_key(RO_KEY), "role": "ro", "id": "ro-key"}],
           "roles": {"admin": {},
                     "ro": {"read_only": True, "deny_tables": {"employees": "*"},
                            "columns": {"customers": {"deny": ["email", "phone"]}}}}}
    svc.update(extra)
    return svc


@pytest.fixture
def keyed_app(app_factory, demo_db):
    return app_factory({"demo": keyed_service(demo_db)})


def test_credentials_are_checked_on_every_request(keyed_app):
    anon = ModernClient(keyed_app)
    r = anon.post("tools/list")
    assert r.status_code == 401
    assert "error" in r.get_json() and r.get_json()["id"] == anon._id
    bad = ModernClient(keyed_app, headers={"Authorization": "Bearer nope-0123456789abcdef"})
    assert bad.post("tools/list").status_code == 401


@pytest.mark.parametrize("key", [ADMIN_KEY, RO_KEY])
def test_roles_apply_exactly_as_in_sessions(keyed_app, key):
    headers = {"Authorization": f"Bearer {key}"}
    modern = ModernClient(keyed_app, headers=headers)
    session = McpTestClient(keyed_app, headers=headers)
    init = session.initialize()
    assert modern.result("tools/list")["tools"] == session.rpc("tools/list")["result"]["tools"]
    assert modern.result("tools/list")["cacheScope"] == "private"
    assert modern.result("server/discover")["instructions"] == init["instructions"]
    for tool, args in CALLS + [("get_table_schema", {"tableName": "employees"}),
                               ("get_table_data", {"tableName": "customers", "limit": 2})]:
        assert comparable(modern.call(tool, args)) == session.call(tool, args), (tool, args)
    assert modern.result("resources/list")["resources"] == session.rpc("resources/list")["result"]["resources"]


def test_read_only_role_cannot_write_statelessly(keyed_app):
    modern = ModernClient(keyed_app, headers={"Authorization": f"Bearer {RO_KEY}"})
    names = {t["name"] for t in modern.result("tools/list")["tools"]}
    assert "create_records" not in names
    r = modern.post("tools/call", {"name": "create_records",
                                   "arguments": {"tableName": "categories", "records": [{"name": "x"}]}})
    error_of(r, 400, -32602)                  # unknown tool for this role, as in a session


# ---------------------------------------------------------------------------- input required
class ConfirmProvider(Provider):
    """A test tool that asks ToolContext.confirm like a destructive tool, and reports the answer."""

    def tools(self):
        def handler(ctx, args, call):
            if ctx.confirm is None:
                answer = "no-confirmation-available"
            else:
                answer = "confirmed" if ctx.confirm(f"Delete {args.get('what')}?") else "declined"
            return {"content": [{"type": "text", "text": answer}], "isError": False}

        def chatty(ctx, args, call):
            if ctx.progress:
                ctx.progress(1, 2, "half")
                ctx.progress(2, 2, "done")
            if ctx.log:
                ctx.log("info", {"event": "chatty"})
            return {"content": [{"type": "text", "text": "ok"}], "isError": False}

        schema = {"type": "object", "properties": {"what": {"type": "string"}}}
        return [ProvidedTool(name="confirm_probe", description="Asks for confirmation.", handler=handler,
                             input_schema=schema, read_only=False),
                ProvidedTool(name="chatty_probe", description="Sends progress and a log line.",
                             handler=chatty)]


@pytest.fixture
def confirm_app(demo_db, tmp_path):
    from conftest import make_settings
    from mcp_flask import create_app
    settings = make_settings({"demo": {"url": "sqlite:///" + demo_db, "confirm_destructive": True}},
                             data_dir=str(tmp_path), sse_keepalive=0.2)
    return create_app(settings, check_databases=False, providers={"demo": [ConfirmProvider()]})


ELICIT = {"elicitation": {}}


def test_confirmation_is_an_input_required_round_trip(confirm_app):
    c = ModernClient(confirm_app, capabilities=ELICIT)
    args = {"what": "everything"}
    first = c.call("confirm_probe", args)
    assert first["resultType"] == "input_required"
    request = first["inputRequests"]["confirm"]
    assert request["method"] == "elicitation/create"
    assert request["params"]["message"] == "Delete everything?"
    assert request["params"]["requestedSchema"]["type"] == "object"
    state = first["requestState"]
    assert "ttlMs" not in first

    def retry(action, content, state=state, arguments=args):
        return c.result("tools/call", {
            "name": "confirm_probe", "arguments": arguments, "requestState": state,
            "inputResponses": {"confirm": {"action": action, "content": content}}})

    done = retry("accept", {"confirm": True})
    assert done["resultType"] == "complete" and done["content"][0]["text"] == "confirmed"
    assert retry("decline", None)["content"][0]["text"] == "declined"
    assert retry("accept", {"confirm": False})["content"][0]["text"] == "declined"
    # The answer is bound to the call: other arguments, a forged or missing state ask again.
    assert retry("accept", {"confirm": True}, arguments={"what": "else"})["resultType"] == "input_required"
    assert retry("accept", {"confirm": True}, state=state[:-2] + "xx")["resultType"] == "input_required"
    assert retry("accept", {"confirm": True}, state=None)["resultType"] == "input_required"


def test_no_elicitation_capability_means_no_confirmation(confirm_app):
    c = ModernClient(confirm_app)
    assert c.call("confirm_probe", {"what": "x"})["content"][0]["text"] == "no-confirmation-available"


def test_progress_and_logs_stream_over_sse(confirm_app):
    c = ModernClient(confirm_app)
    params = {"name": "chatty_probe", "arguments": {},
              "_meta": meta(progressToken="p1", **{"io.modelcontextprotocol/logLevel": "info"})}
    r = c.post("tools/call", params)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/event-stream")
    assert r.headers["X-Accel-Buffering"] == "no"
    events = [json.loads(line[5:]) for line in r.get_data(as_text=True).splitlines()
              if line.startswith("data:") and line[5:].strip()]
    methods = [e.get("method") for e in events]
    assert methods.count("notifications/progress") == 2
    assert "notifications/message" in methods
    final = events[-1]
    assert final["id"] == c._id and final["result"]["content"][0]["text"] == "ok"
    assert final["result"]["resultType"] == "complete"
    # Without progressToken or logLevel: plain JSON, and no log line.
    res = c.call("chatty_probe")
    assert res["content"][0]["text"] == "ok"


# ---------------------------------------------------------------------------- subscriptions/listen
def read_events(response, want: int, deadline_s: float = 5.0) -> list[dict]:
    """SSE messages from a streamed response until ``want`` arrived (keep-alives skipped)."""
    out, buf = [], b""
    end = time.monotonic() + deadline_s
    for chunk in response.response:
        buf += chunk
        while b"\n\n" in buf:
            frame, buf = buf.split(b"\n\n", 1)
            for line in frame.decode().splitlines():
                if line.startswith("data:") and line[5:].strip():
                    out.append(json.loads(line[5:]))
        if len(out) >= want or time.monotonic() > end:
            break
    return out


def test_listen_acknowledges_then_delivers_only_what_was_asked(confirm_app):
    c = ModernClient(confirm_app)
    store = confirm_app.extensions["mcp_flask"]["store"]
    r = c.post("subscriptions/listen", {"notifications": {"resourcesListChanged": True,
                                                          "toolsListChanged": True}},
               buffered=False)
    assert r.status_code == 200 and r.headers["X-Accel-Buffering"] == "no"
    listen_id = c._id
    ack = read_events(r, 1)[0]
    assert ack["method"] == "notifications/subscriptions/acknowledged"
    assert ack["params"]["_meta"][SUB_ID] == listen_id
    # tools.listChanged is false in our capabilities: not honoured, never delivered.
    assert ack["params"]["notifications"] == {"resourcesListChanged": True}

    def later():
        store.broadcast("demo", {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        store.broadcast("demo", {"jsonrpc": "2.0", "method": "notifications/resources/updated",
                                 "params": {"uri": "db://demo/tables/orders"}})
        store.broadcast("demo", {"jsonrpc": "2.0", "method": "notifications/resources/list_changed",
                                 "params": {}})

    later()     # after the ack: the stream's position was taken before it, so nothing is lost
    got = read_events(r, 1)
    r.close()
    assert [m["method"] for m in got] == ["notifications/resources/list_changed"]
    assert got[0]["params"]["_meta"][SUB_ID] == listen_id


def test_listen_resource_subscriptions_and_the_session_stream_share_the_feed(confirm_app):
    uri = "db://demo/tables/orders"
    c = ModernClient(confirm_app)
    session = McpTestClient(confirm_app)
    session.initialize()
    assert "result" in session.rpc("resources/subscribe", {"uri": uri})
    r = c.post("subscriptions/listen", {"notifications": {"resourceSubscriptions": [uri]}}, buffered=False)
    ack = read_events(r, 1)[0]
    assert ack["params"]["notifications"] == {"resourceSubscriptions": [uri]}
    store = confirm_app.extensions["mcp_flask"]["store"]
    store.broadcast("demo", {"jsonrpc": "2.0", "method": "notifications/resources/updated",
                             "params": {"uri": uri}})
    got = read_events(r, 1)
    r.close()
    assert got[0]["method"] == "notifications/resources/updated"
    assert got[0]["params"]["uri"] == uri
    # The same broadcast reached the subscribed session's GET stream.
    queued = store.listen(session.session_id, 0.01)
    assert any((m[1] if isinstance(m, tuple) else m).get("method") == "notifications/resources/updated"
               for m in queued or [])


def test_listen_needs_an_event_stream_accept(modern):
    r = modern.post("subscriptions/listen", {"notifications": {}}, headers={"Accept": "application/json"})
    assert r.status_code == 406


# ---------------------------------------------------------------------------- building blocks
def test_request_state_expires_and_binds_the_credential():
    from mcp_flask.errors import InputRequired
    from mcp_flask.input_required import STATE_TTL_S, Confirmer
    key = b"k" * 32
    accept = {"confirm": {"action": "accept", "content": {"confirm": True}}}
    issuer = Confirmer(key, "key-a", "delete_records", {"id": 1}, {}, None)
    old = issuer.make_state("Sure?", now=time.time() - STATE_TTL_S - 1)
    fresh = issuer.make_state("Sure?")
    assert Confirmer(key, "key-a", "delete_records", {"id": 1}, accept, fresh)("Sure?") is True
    cases = [(Confirmer(key, "key-a", "delete_records", {"id": 1}, accept, old), "Sure?"),     # expired
             (Confirmer(key, "key-b", "delete_records", {"id": 1}, accept, fresh), "Sure?"),   # other key
             (Confirmer(key, "key-a", "delete_records", {"id": 2}, accept, fresh), "Sure?"),   # other args
             (Confirmer(key, "key-a", "delete_records", {"id": 1}, accept, fresh), "Other?")]  # other question
    for confirmer, question in cases:
        with pytest.raises(InputRequired) as need:
            confirmer(question)
        assert need.value.request_state and "confirm" in need.value.input_requests


def test_broadcast_reaches_sessions_by_subscription_and_listeners_by_cursor():
    from mcp_flask.sessions import MemorySessionStore, Session
    store = MemorySessionStore(ttl=60)
    subscribed = store.create(Session(id="a", service="demo", protocol_version="2025-11-25"))
    subscribed.subscriptions.add("db://demo/tables/orders")
    store.create(Session(id="b", service="demo", protocol_version="2025-11-25"))
    store.create(Session(id="c", service="other", protocol_version="2025-11-25"))
    cursor = store.service_cursor("demo")
    updated = {"jsonrpc": "2.0", "method": "notifications/resources/updated",
               "params": {"uri": "db://demo/tables/orders"}}
    changed = {"jsonrpc": "2.0", "method": "notifications/resources/list_changed", "params": {}}
    store.broadcast("demo", updated)
    store.broadcast("demo", changed)

    def methods(sid):
        return [(m[1] if isinstance(m, tuple) else m)["method"] for m in store.listen(sid, 0.01) or []]

    assert methods("a") == [updated["method"], changed["method"]]
    assert methods("b") == [changed["method"]]
    assert methods("c") == []
    new_cursor, messages = store.listen_service("demo", cursor, 0.01)
    assert messages == [updated, changed]
    assert store.listen_service("demo", new_cursor, 0.01) == (new_cursor, [])
    assert store.listen_service("other", store.service_cursor("other"), 0.01)[1] == []


def test_listen_streams_are_capped_per_worker(modern, monkeypatch):
    from mcp_flask import subscriptions
    monkeypatch.setattr(subscriptions, "MAX_STREAMS", 1)
    first = modern.post("subscriptions/listen", {"notifications": {}}, buffered=False)
    assert read_events(first, 1)[0]["method"] == "notifications/subscriptions/acknowledged"
    second = modern.post("subscriptions/listen", {"notifications": {}})
    assert second.status_code == 503 and second.get_json()["id"] == modern._id
    first.close()           # the client goes away: its slot is free again
    third = modern.post("subscriptions/listen", {"notifications": {}}, buffered=False)
    assert third.status_code == 200
    third.close()
