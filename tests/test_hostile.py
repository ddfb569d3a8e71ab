"""The hostile-input suite: malformed and malicious requests against a LIVE server.

One real gunicorn server (gevent worker, ``mcp-flask serve``) runs a config
with four roles and three API keys over a private copy of the demo database.
Every case in ``CASES`` is one distinct hostile or malformed request, sent over
a raw HTTP connection, and asserts

1. the exact HTTP status, JSON-RPC error code, or tool error category it must get
   (never a 5xx, never a stack trace or driver message in the body),
2. that every table of the database is unchanged (a checksum of every row of
   every table and of the schema, read with sqlite3 directly), and
3. that the server still answers a normal request afterwards.

A hypothesis fuzz of ``tools/call`` arguments for every tool follows, with the
same two invariants.  Roles used (see ``CONFIG``):

* ``admin`` (key ADMIN): everything;
* ``ro`` (key RO): read-only role, ``employees`` hidden, customers' email/phone hidden;
* ``sales`` (key SALES): read everything but ``employees``; orders writable but
  only rows with status 'paid' (row filter), ``orders.total`` read-only; customers
  reduced to id, first_name, city;
* ``anon`` (no key): products (without price, thumbnail) and categories, read only;
* ``fuzz`` (key FUZZ): reads everything, may write nothing, but is not read-only, so
  the write tools are offered and reached by the fuzz.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import sqlite3
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import LiveServer
from mcp_flask.cli import hash_api_key

ADMIN, RO, SALES, FUZZ = ("adm-" + "a" * 40, "ro-" + "b" * 40, "sal-" + "c" * 40, "fuz-" + "d" * 40)
V = "2025-11-25"
MAX_BODY = 262_144

CONFIG = """
[server]
max_body_bytes = {max_body}

[services.demo]
url = "sqlite:///{db}"
auth = "api_key"
default_role = "anon"
max_rows = 200
max_batch = 50

[[services.demo.api_keys]]
hash = "{admin}"
role = "admin"
id = "admin-key"

[[services.demo.api_keys]]
hash = "{ro}"
role = "ro"
id = "ro-key"

[[services.demo.api_keys]]
hash = "{sales}"
role = "sales"
id = "sales-key"

[[services.demo.api_keys]]
hash = "{fuzz}"
role = "fuzz"
id = "fuzz-key"

[services.demo.roles.admin]

[services.demo.roles.ro]
read_only = true
deny_tables = {{ employees = "*" }}
columns = {{ customers = {{ deny = ["email", "phone"] }} }}

[services.demo.roles.sales]
tables = {{ "*" = ["read"], orders = "*" }}
deny_tables = {{ employees = "*" }}
columns = {{ orders = {{ write_deny = ["total"] }}, customers = {{ allow = ["id", "first_name", "city"] }} }}
row_filters = {{ orders = "status = {{role.status}}" }}
values = {{ status = "paid" }}

[services.demo.roles.anon]
tables = {{ products = ["read"], categories = ["read"] }}
columns = {{ products = {{ deny = ["price", "thumbnail"] }} }}

[services.demo.roles.fuzz]
tables = {{ "*" = ["read"] }}

[services.other]
url = "sqlite:///{other}"
"""

HIDDEN_WORDS_RO = ("employees", "salary", "email", "phone")


# ---------------------------------------------------------------------------- server and helpers
class Http:
    """Raw HTTP to the live server: any bytes, any headers (duplicates allowed), no client niceties."""

    def __init__(self, port: int):
        self.port = port
        self.host = f"127.0.0.1:{port}"

    def send(self, method: str, path: str = "/mcp/demo", body: bytes | None = None, headers=None,
             host: str | None = "default"):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            if host == "default":
                conn.putheader("Host", self.host)
            elif host is not None:
                conn.putheader("Host", host)
            for k, v in headers or []:
                conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders()
            if body is not None:
                conn.send(body)
            resp = conn.getresponse()
            data = resp.read()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            conn.close()


class Response:
    def __init__(self, status: int, headers: dict, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        ctype = self.headers.get("content-type", "")
        if ctype.startswith("text/event-stream"):
            msgs = [json.loads(line[5:]) for line in self.body.decode().splitlines()
                    if line.startswith("data:") and line[5:].strip()]
            return msgs[-1] if msgs else None
        return json.loads(self.body) if self.body else None

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


def base_headers(sid: str | None = None, key: str | None = None, accept: str = "application/json, text/event-stream"):
    h = [("Content-Type", "application/json"), ("Accept", accept)]
    if sid:
        h += [("Mcp-Session-Id", sid), ("MCP-Protocol-Version", V)]
    if key:
        h.append(("Authorization", f"Bearer {key}"))
    return h


def checksums(path: str) -> dict:
    """Every table's rows and the schema, hashed (read-only connection: checking changes nothing)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = {}
        names = [r[0] for r in con.execute("select name from sqlite_master where type = 'table' order by name")]
        h = hashlib.sha256()
        for row in con.execute("select type, name, tbl_name, sql from sqlite_master order by type, name"):
            h.update(repr(row).encode())
        out["<schema>"] = h.hexdigest()
        for name in names:
            h = hashlib.sha256()
            quoted = '"' + name.replace('"', '""') + '"'
            for row in con.execute(f"select * from {quoted} order by rowid"):
                h.update(repr(row).encode())
            out[name] = h.hexdigest()
        return out
    finally:
        con.close()


def file_signature(path: str) -> tuple:
    """Size and mtime of the database file and its journal/WAL companions."""
    out = []
    for suffix in ("", "-journal", "-wal"):
        try:
            st_ = os.stat(path + suffix)
            out.append((suffix, st_.st_size, st_.st_mtime_ns))
        except FileNotFoundError:
            out.append((suffix, None, None))
    return tuple(out)


class Env:
    """The live server, its databases' baseline checksums and one session per role."""

    def __init__(self, work: str, template: str):
        self.db = os.path.join(work, "demo.db")
        self.other = os.path.join(work, "other.db")
        shutil.copyfile(template, self.db)
        shutil.copyfile(template, self.other)
        text = CONFIG.format(max_body=MAX_BODY, db=self.db, other=self.other,
                             admin=hash_api_key(ADMIN), ro=hash_api_key(RO), sales=hash_api_key(SALES),
                             fuzz=hash_api_key(FUZZ))
        self.server = LiveServer(text, work)
        self.http = Http(self.server.port)
        self.baseline = {"demo": checksums(self.db), "other": checksums(self.other)}
        self.signatures = {"demo": file_signature(self.db), "other": file_signature(self.other)}
        self.sessions = {role: self.initialize(key) for role, key in
                         (("admin", ADMIN), ("ro", RO), ("sales", SALES), ("anon", None), ("fuzz", FUZZ))}
        self.keys = {"admin": ADMIN, "ro": RO, "sales": SALES, "anon": None, "fuzz": FUZZ}
        self._id = 1000

    def initialize(self, key=None, service="demo", version=V) -> str:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                           "params": {"protocolVersion": version, "capabilities": {},
                                      "clientInfo": {"name": "hostile", "version": "1"}}}).encode()
        r = self.http.send("POST", f"/mcp/{service}", body, base_headers(key=key))
        assert r.status == 200, r
        sid = r.headers["mcp-session-id"]
        n = self.http.send("POST", f"/mcp/{service}", b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
                           base_headers(sid, key))
        assert n.status == 202, n
        return sid

    def rpc(self, role: str, method: str, params=None, **kw) -> Response:
        self._id += 1
        msg = {"jsonrpc": "2.0", "id": self._id, "method": method}
        if params is not None:
            msg["params"] = params
        return self.http.send("POST", "/mcp/demo", json.dumps(msg).encode(),
                              base_headers(self.sessions[role], self.keys[role], **kw))

    def tool(self, role: str, name: str, arguments) -> Response:
        return self.rpc(role, "tools/call", {"name": name, "arguments": arguments})

    def assert_unchanged(self, full: bool = True) -> None:
        """Every table's checksum equals the baseline.  ``full=False`` (the fuzz, thousands of
        requests) first compares the files' size and mtime: a file SQLite never wrote to
        cannot hold changed rows; any difference falls back to the full per-table checksum."""
        for name, path in (("demo", self.db), ("other", self.other)):
            if (not full or name == "other") and file_signature(path) == self.signatures[name]:
                continue
            assert checksums(path) == self.baseline[name], f"the {name} database changed"

    def assert_serving(self) -> None:
        r = self.rpc("admin", "ping")
        assert r.status == 200 and r.json()["result"] == {}, r


@pytest.fixture(scope="module")
def env(tmp_path_factory, demo_template):
    e = Env(str(tmp_path_factory.mktemp("hostile")), demo_template)
    yield e
    e.server.stop()


# ---------------------------------------------------------------------------- expectations
LEAKS = ("Traceback", "sqlite3.", "psycopg2", "pymysql", 'File "', "OperationalError")


def no_leaks(r: Response, forbid=()) -> None:
    text = r.body.decode("utf-8", "replace")
    for word in LEAKS + tuple(forbid):
        assert word not in text, (word, r)


def http_status(status: int, code: int | None = None):
    def check(r: Response):
        assert r.status == status, r
        if code is not None:
            assert r.json()["error"]["code"] == code, r
    return check


def rpc_error(code: int, statuses=(200, 400)):
    def check(r: Response):
        assert r.status in statuses, r
        body = r.json()
        assert isinstance(body, dict) and body["error"]["code"] == code, r
    return check


def tool_error(*prefixes, forbid=()):
    """A tools/call answered with isError and one of these categories (text prefix)."""
    prefixes = prefixes or ("Validation Error", "Resource Error", "Permission Error")

    def check(r: Response):
        assert r.status == 200, r
        body = r.json()
        assert "result" in body, r
        res = body["result"]
        assert res["isError"] is True, r
        text = res["content"][0]["text"]
        assert text.startswith(prefixes), text
        assert "authentication" not in text.lower()
        for word in forbid:
            assert word not in text, (word, text)
    return check


def denied_or_unknown(r: Response):
    """A write the role may not make: hidden tool (-32602) or a permission/resource error."""
    body = r.json()
    if "error" in body:
        assert body["error"]["code"] == -32602, r
    else:
        tool_error("Permission Error", "Resource Error", "Validation Error")(r)


def tool_ok(check_payload=None):
    def check(r: Response):
        assert r.status == 200, r
        res = r.json()["result"]
        assert res["isError"] is False, r
        if check_payload:
            check_payload(json.loads(res["content"][0]["text"]))
    return check


def any_tool_answer(r: Response):
    """Only the invariants matter (no crash, nothing changed): any result or JSON-RPC error."""
    assert r.status == 200, r
    body = r.json()
    assert "result" in body or body["error"]["code"] in (-32602, -32600), r


# ---------------------------------------------------------------------------- the cases
CASES: list = []


def case(name, send, expect, forbid=()):
    CASES.append(pytest.param(send, expect, forbid, id=name))


def raw(body: bytes, role="admin", headers=None, path="/mcp/demo", method="POST", host="default"):
    def send(env: Env):
        h = headers(env) if callable(headers) else (headers if headers is not None else
                                                    base_headers(env.sessions[role], env.keys[role]))
        return env.http.send(method, path, body, h, host=host)
    return send


def msg(obj, **kw):
    return raw(json.dumps(obj).encode(), **kw)


def call(tool, arguments, role="admin"):
    return lambda env: env.tool(role, tool, arguments)


def rpc_call(method, params=None, role="admin"):
    return lambda env: env.rpc(role, method, params)


def _malformed(r: Response):
    """A broken envelope: parse error or invalid request (HTTP 400, or 200 with the error)."""
    assert r.status in (200, 400), r
    assert r.json()["error"]["code"] in (-32700, -32600), r


def _malformed_or_tool_error(r: Response):
    body = r.json()
    if "error" in body:
        _malformed(r)
    else:
        tool_error()(r)


# -- malformed JSON and bodies
for i, body in enumerate([b"{", b"[", b"nul", b"{'jsonrpc': '2.0'}", b'{"jsonrpc":"2.0","id":1,"method":"ping"} x',
                          b'{"jsonrpc":"2.0","id":1,"method":"ping",}', b"\x00", b'{"a":NaN}',
                          b'{"jsonrpc":"2.0","id":1e999999,"method":"ping"}', b"\xef\xbb\xbf{}",
                          b'"just a string"', b"12345", b"true", b"null"]):
    case(f"malformed-json-{i}", raw(body), _malformed)

case("empty-body", raw(b""), _malformed)
case("invalid-utf8", raw(b'{"jsonrpc":"2.0","id":1,"method":"ping\xff\xfe"}'), _malformed)
case("invalid-utf8-only", raw(b"\xff\xfe\xfd"), _malformed)
case("lone-surrogate-escape", raw(b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_table_data",'
                                  b'"arguments":{"tableName":"\\ud800"}}}'),
     _malformed_or_tool_error)
case("deeply-nested-array", raw(b"[" * 100_000 + b"]" * 100_000), _malformed)
case("deeply-nested-params", raw(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}"),
     lambda r: r.status in (200, 400) and r.json().get("error") is not None)
case("nested-arguments-500", msg({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                  "params": {"name": "get_tables", "arguments": json.loads('{"a":' * 500 + "1" + "}" * 500)}}),
     tool_error("Validation Error"))
case("huge-body-413", raw(b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"' + b"a" * (MAX_BODY + 10) + b'"}}'),
     http_status(413))
case("huge-content-length-413", lambda env: env.http.send("POST", "/mcp/demo", None,
                                                          base_headers(env.sessions["admin"], ADMIN) + [("Content-Length", "99999999999")]),
     lambda r: r.status in (400, 413))
case("bad-content-length", lambda env: env.http.send("POST", "/mcp/demo", None,
                                                     base_headers(env.sessions["admin"], ADMIN) + [("Content-Length", "abc")]),
     lambda r: r.status == 400)
case("huge-filter-string", call("get_table_data", {"tableName": "tags", "filter": "id = 1 or " * 10_000 + "id = 2"}),
     tool_error("Validation Error"))
case("many-ids", call("get_table_data", {"tableName": "tags", "ids": list(range(20_000))}), tool_error("Validation Error"))

# -- wrong JSON types at every level
for i, (label, obj) in enumerate([
    ("jsonrpc-number", {"jsonrpc": 2, "id": 1, "method": "ping"}),
    ("jsonrpc-1.0", {"jsonrpc": "1.0", "id": 1, "method": "ping"}),
    ("jsonrpc-missing", {"id": 1, "method": "ping"}),
    ("id-object", {"jsonrpc": "2.0", "id": {}, "method": "ping"}),
    ("id-array", {"jsonrpc": "2.0", "id": [1], "method": "ping"}),
    ("id-bool", {"jsonrpc": "2.0", "id": True, "method": "ping"}),
    ("method-number", {"jsonrpc": "2.0", "id": 1, "method": 1}),
    ("method-null", {"jsonrpc": "2.0", "id": 1, "method": None}),
    ("method-array", {"jsonrpc": "2.0", "id": 1, "method": ["ping"]}),
    ("params-string", {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": "x"}),
    ("params-number", {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": 5}),
    ("result-and-method", {"jsonrpc": "2.0", "id": 1, "method": "ping", "result": {}}),
    ("error-and-method", {"jsonrpc": "2.0", "id": 1, "method": "ping", "error": {"code": 1}}),
    ("empty-object", {}),
]):
    case(f"wrong-type-{label}", msg(obj), _malformed)

case("params-array", msg({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": []}),
     lambda r: r.status in (200, 400) and r.json()["error"]["code"] in (-32600, -32602))
for label, params in [
    ("name-number", {"name": 5, "arguments": {}}),
    ("name-null", {"name": None}),
    ("name-missing", {"arguments": {}}),
    ("name-object", {"name": {"x": 1}}),
    ("cursor-number", None),
]:
    if params is None:
        case(f"tools-list-{label}", rpc_call("tools/list", {"cursor": 5}), rpc_error(-32602, (200,)))
    else:
        case(f"tools-call-{label}", rpc_call("tools/call", params), rpc_error(-32602, (200,)))
case("tools-list-forged-cursor", rpc_call("tools/list", {"cursor": "b386LTE="}), rpc_error(-32602, (200,)))
case("tools-list-garbage-cursor", rpc_call("tools/list", {"cursor": "'; drop table tags;--"}), rpc_error(-32602, (200,)))
for label, args in [
    ("tablename-number", {"tableName": 5}), ("tablename-array", {"tableName": ["tags"]}),
    ("tablename-object", {"tableName": {"$ne": 1}}), ("tablename-null", {"tableName": None}),
    ("tablename-bool", {"tableName": True}), ("tablename-empty", {"tableName": ""}),
    ("tablename-missing", {}),
    ("limit-string", {"tableName": "tags", "limit": "10"}), ("limit-negative", {"tableName": "tags", "limit": -1}),
    ("limit-float", {"tableName": "tags", "limit": 1.5}), ("limit-bool", {"tableName": "tags", "limit": True}),
    ("offset-negative", {"tableName": "tags", "offset": -5}),
    ("filter-number", {"tableName": "tags", "filter": 5}), ("filter-array", {"tableName": "tags", "filter": ["id = 1"]}),
    ("fields-number", {"tableName": "tags", "fields": 5}), ("fields-int-items", {"tableName": "tags", "fields": [1, 2]}),
    ("fields-object", {"tableName": "tags", "fields": {"id": 1}}), ("params-array", {"tableName": "tags", "params": [1]}),
    ("unknown-argument", {"tableName": "tags", "sql": "select 1"}),
    ("alias-twice", {"tableName": "tags", "table_name": "employees"}),
    ("includecount-string", {"tableName": "tags", "includeCount": "yes"}),
]:
    case(f"args-{label}", call("get_table_data", args), tool_error("Validation Error"))

for label, args in [("arguments-array", [1, 2]), ("arguments-string", "tableName=tags"), ("arguments-number", 7)]:
    case(f"args-{label}", call("get_table_data", args), rpc_error(-32602, (200,)))

case("args-limit-huge-is-capped", call("get_table_data", {"tableName": "events", "limit": 10 ** 30}),
     lambda r: tool_ok(lambda p: 0 < len(p["resource"]) <= 200)(r) if not r.json()["result"]["isError"]
     else tool_error("Validation Error", "Limit Error")(r))

# -- batches, duplicate and missing ids, unknown methods
case("batch-empty", raw(b"[]"), _malformed)
case("batch-in-2025-11-25", msg([{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": 1, "method": "ping"}]),
     http_status(400))
case("batch-with-initialize", msg([{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}},
                                   {"jsonrpc": "2.0", "id": 2, "method": "ping"}]), http_status(400))
case("batch-of-garbage", msg([1, "x", None]), _malformed)
case("missing-id-is-a-notification", msg({"jsonrpc": "2.0", "method": "tools/call",
                                          "params": {"name": "delete_records", "arguments": {"tableName": "tags", "ids": [1]}}}),
     http_status(202))
case("null-id", msg({"jsonrpc": "2.0", "id": None, "method": "ping"}), _malformed)
case("duplicate-json-keys", raw(b'{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","method":"ping"}'),
     lambda r: r.status == 200 and ("result" in r.json() or "error" in r.json()))
case("response-without-request", msg({"jsonrpc": "2.0", "id": 99, "result": {}}), http_status(202))
for m in ("tools/execute", "rpc.discover", "admin/shutdown", "", "../initialize", "sql/query", "tools/call/../../x",
          "resources/read\x00", "PING"):
    case(f"unknown-method-{m or 'empty'}", rpc_call(m), lambda r: r.status in (200, 400) and r.json()["error"]["code"] in (-32601, -32600))

# -- injection in table names
for i, name in enumerate([
    "tags; DROP TABLE tags", "tags--", "tags/*", "tags' OR '1'='1", 'tags" OR "1"="1', "sqlite_master",
    "sqlite_sequence", "pragma_table_info", "tags UNION SELECT * FROM employees", "tags\x00employees",
    "ｔａｇｓ", "tаgs", "main.tags", "temp.tags", '"tags"', "[tags]", "`tags`", "../tags", "tags%00", "t" * 300,
    "TAGS; --", "tags)", "(select 1)",
]):
    case(f"table-injection-{i}", call("get_table_data", {"tableName": name}),
         tool_error("Validation Error", "Resource Error"))
    case(f"table-injection-ro-{i}", call("get_table_data", {"tableName": name}, role="ro"),
         tool_error("Validation Error", "Resource Error"), forbid=("did you mean 'employees'",))
for i, name in enumerate(["tags; drop table tags", "sqlite_master", "customers\x00", "ｃｕｓｔｏｍｅｒｓ"]):
    case(f"schema-injection-{i}", call("get_table_schema", {"tableName": name}), tool_error("Validation Error", "Resource Error"))
    case(f"delete-injection-{i}", call("delete_records", {"tableName": name, "ids": [1]}), tool_error("Validation Error", "Resource Error"))

# -- injection in fields, order, related, ids, filter, params
for i, fields in enumerate(["id, (select name from employees)", "id; drop table tags", "*, sqlite_version()", "id AS x",
                            "id--", 'id"', "count(*)", "id\x00", "name || 'x'", "ｉｄ", ["id", "1=1"], "rowid", "oid"]):
    case(f"fields-injection-{i}", call("get_table_data", {"tableName": "tags", "fields": fields}), tool_error("Validation Error"))
for i, order in enumerate(["id; drop table tags", "id desc, (select 1)", "id asc nulls first; --", "1", "random()",
                           "id collate nocase", "CASE WHEN 1 THEN id END", "id desc desc", "id\x00", "name /* */",
                           "(select name from employees)", "id asc limit 1"]):
    case(f"order-injection-{i}", call("get_table_data", {"tableName": "tags", "order": order}), tool_error("Validation Error"))
for i, related in enumerate(["*; drop table tags", "customers_by_customer_id) --", "../employees", "employees",
                             "customers_by_customer_id\x00", "sqlite_master_by_id"]):
    case(f"related-injection-{i}", call("get_table_data", {"tableName": "orders", "related": related, "limit": 1}),
         tool_error("Validation Error", "Resource Error"))
for i, ids in enumerate(["1 or 1=1", "1; drop table tags", ["1", "1 or 1=1"], "1) or (1=1", "0x10", "1e3", "-1 union select 1",
                         10 ** 30, "１"]):
    case(f"ids-injection-{i}", call("get_table_data", {"tableName": "tags", "ids": ids}), tool_error("Validation Error", "Resource Error"))
    case(f"delete-ids-injection-{i}", call("delete_records", {"tableName": "tags", "ids": ids}),
         tool_error("Validation Error", "Resource Error"))
for i, flt in enumerate([
    "id = 1; drop table tags", "id = 1 -- ", "id = 1 /* */", "id = (select 1)", "id in (select id from employees)",
    "1=1", "id = 1 union select * from employees", "name = 'x' or 'a'='a'", "id = ＇1＇", "id ＝ 1", "id = 1\x00",
    "name like '%' escape '!'", "id = char(65)", "id = 1 or sleep(5)",
"id = :x", "load_extension('x') = 1", "id = 1; ATTACH DATABASE '/tmp/x' AS x",
    "id is not null and (", "name = 'unterminated",
]):
    case(f"filter-injection-{i}", call("get_table_data", {"tableName": "tags", "filter": flt}), tool_error("Validation Error"))
for i, flt in enumerate(["1=1", "id > 0; delete from tags", "name like '%' --"]):
    case(f"update-filter-injection-{i}", call("update_records", {"tableName": "tags", "filter": flt, "records": [{"name": "x"}]}),
         tool_error("Validation Error"))
    case(f"delete-filter-injection-{i}", call("delete_records", {"tableName": "tags", "filter": flt}), tool_error("Validation Error"))
case("params-object-value", call("get_table_data", {"tableName": "tags", "filter": "id = :x", "params": {"x": {"y": 1}}}),
     tool_error("Validation Error"))
case("params-list-value", call("get_table_data", {"tableName": "tags", "filter": "id = :x", "params": {"x": [1, 2]}}),
     tool_error("Validation Error"))
case("params-sql-value-is-bound", call("get_table_data", {"tableName": "tags", "filter": "name = :x",
                                                          "params": {"x": "x' or '1'='1"}}),
     tool_ok(lambda p: p["resource"] == []))
for i, flt in enumerate(["name = 'a'' or ''1''=''1'", "name = 'x\\' or 1=1 --'", "name = '; drop table tags; --'",
                         "name like '%'' or 1=1 --'"]):
    case(f"filter-quote-trick-is-a-literal-{i}", call("get_table_data", {"tableName": "tags", "filter": flt}),
         tool_ok(lambda p: p["resource"] == []))
case("filter-string-value-is-bound", call("get_table_data", {"tableName": "tags", "filter": "name = 'x'' or ''1''=''1'"}),
     tool_ok(lambda p: p["resource"] == []))
case("write-column-injection", call("update_records", {"tableName": "tags", "ids": [1],
                                                       "records": [{"name = 'x', id": "1"}]}), tool_error("Validation Error"))
case("write-record-not-object", call("create_records", {"tableName": "tags", "records": ["DROP TABLE tags"]}),
     tool_error("Validation Error"))
case("write-records-not-list", call("create_records", {"tableName": "tags", "records": "x"}), tool_error("Validation Error"))
case("write-to-view", call("create_records", {"tableName": "customer_order_totals", "records": [{"customer_id": 1}]}),
     tool_error("Validation Error", "Permission Error"))
case("write-over-max-batch", call("create_records", {"tableName": "tags", "records": [{"name": f"z{i}"} for i in range(51)]}),
     tool_error("Limit Error", "Validation Error"))
case("write-unique-violation-rolls-back", call("create_records", {"tableName": "tags", "records": [{"name": "zz-new-1"}, {"name": "zz-new-1"}]}),
     tool_error("Database Error", "Validation Error"))
case("delete-without-selection", call("delete_records", {"tableName": "tags", "force": True}), tool_error("Validation Error"))
case("routine-tool-on-sqlite", call("call_stored_procedure", {"procedureName": "x; drop table tags"}), rpc_error(-32602, (200,)))
case("routine-function-on-sqlite", call("call_stored_function", {"functionName": "sqlite_version"}), rpc_error(-32602, (200,)))
case("unknown-tool-sql", call("execute_sql", {"sql": "DROP TABLE tags"}), rpc_error(-32602, (200,)))
case("unknown-tool-homoglyph", call("get_tаbles", {}), rpc_error(-32602, (200,)))

# -- privilege escalation
for tool_name, args in [("create_records", {"tableName": "tags", "records": [{"name": "ro"}]}),
                        ("update_records", {"tableName": "tags", "ids": [1], "records": [{"name": "ro"}]}),
                        ("delete_records", {"tableName": "tags", "ids": [1]}),
                        ("call_stored_procedure", {"procedureName": "x"})]:
    case(f"ro-calls-{tool_name}", call(tool_name, args, role="ro"), rpc_error(-32602, (200,)))
    case(f"anon-calls-{tool_name}", call(tool_name, args, role="anon"), denied_or_unknown)
    case(f"fuzz-calls-{tool_name}", call(tool_name, args, role="fuzz"), denied_or_unknown)
for role, table in [("ro", "employees"), ("anon", "orders"), ("anon", "customers"), ("sales", "employees"),
                    ("anon", "customer_order_totals"), ("ro", "EMPLOYEES"), ("ro", "employees ")]:
    case(f"{role}-reads-hidden-{table.strip()}", call("get_table_data", {"tableName": table}, role=role),
         tool_error("Resource Error", "Validation Error"), forbid=("permission",))
    case(f"{role}-schema-hidden-{table.strip()}", call("get_table_schema", {"tableName": table}, role=role),
         tool_error("Resource Error", "Validation Error"), forbid=("permission",))
for role, args in [
    ("ro", {"tableName": "customers", "fields": "email"}),
    ("ro", {"tableName": "customers", "filter": "email like '%@%'"}),
    ("ro", {"tableName": "customers", "order": "phone"}),
    ("ro", {"tableName": "customers", "group": "email", "fields": "email"}),
    ("ro", {"tableName": "orders", "related": "employees_by_employee_id"}),
    ("ro", {"tableName": "customers", "filter": "EMAIL is not null"}),
    ("sales", {"tableName": "customers", "fields": "last_name"}),
    ("sales", {"tableName": "customers", "filter": "last_name = 'x'"}),
    ("anon", {"tableName": "products", "fields": "price"}),
    ("anon", {"tableName": "products", "filter": "price > 0"}),
    ("anon", {"tableName": "products", "order": "price desc"}),
    ("anon", {"tableName": "products", "related": "order_items_by_product_id"}),
    ("anon", {"tableName": "products", "related": "tags_by_product_tags"}),
]:
    case(f"{role}-hidden-column-{'-'.join(str(v) for v in args.values())[:40]}", call("get_table_data", args, role=role),
         tool_error("Validation Error", "Resource Error"), forbid=("permission", "did you mean 'email'", "did you mean 'price'"))
case("ro-list-has-no-write-tools", rpc_call("tools/list", role="ro"),
     lambda r: not {t["name"] for t in r.json()["result"]["tools"]} & {"create_records", "update_records", "delete_records"})
case("anon-tables-are-two", call("get_tables", {}, role="anon"),
     tool_ok(lambda p: sorted(t["name"] for t in p["resource"]) == ["categories", "products"]))
case("anon-star-fields-hide-price", call("get_table_data", {"tableName": "products", "limit": 3}, role="anon"),
     tool_ok(lambda p: p["resource"] and all("price" not in row and "thumbnail" not in row for row in p["resource"])))
case("sales-reads-only-paid-orders", call("get_table_data", {"tableName": "orders", "filter": "status != 'paid'"}, role="sales"),
     tool_ok(lambda p: p["resource"] == []))
case("sales-creates-outside-row-filter", call("create_records", {"tableName": "orders", "records": [
    {"customer_id": 1, "status": "pending", "ordered_at": "2024-01-01 00:00:00"}]}, role="sales"), tool_error("Permission Error"))
case("sales-writes-read-only-column", call("create_records", {"tableName": "orders", "records": [
    {"customer_id": 1, "status": "paid", "ordered_at": "2024-01-01 00:00:00", "total": 0}]}, role="sales"), tool_error("Permission Error"))
case("sales-moves-row-out-of-filter", call("update_records", {"tableName": "orders", "filter": "status = 'paid'",
                                                              "records": [{"status": "cancelled"}]}, role="sales"),
     tool_error("Permission Error"))
case("sales-updates-rows-outside-filter", call("update_records", {"tableName": "orders", "filter": "status = 'pending'",
                                                                  "records": [{"notes": "x"}]}, role="sales"),
     lambda r: r.status == 200 and "result" in r.json())
case("sales-deletes-rows-outside-filter", call("delete_records", {"tableName": "orders", "filter": "status = 'pending'"}, role="sales"),
     lambda r: r.status == 200 and "result" in r.json())
case("sales-writes-customers", call("create_records", {"tableName": "customers", "records": [{"first_name": "x"}]}, role="sales"),
     tool_error("Permission Error"))
case("sales-writes-hidden-column", call("update_records", {"tableName": "orders", "ids": [1], "records": [{"employee_id": None, "nonexistent": 1}]},
                                        role="sales"), tool_error("Validation Error", "Permission Error"))
case("sales-deletes-employees", call("delete_records", {"tableName": "employees", "ids": [1]}, role="sales"),
     tool_error("Resource Error"), forbid=("permission",))

case("sales-updates-unpaid-order-by-id", call("update_records", {"tableName": "orders", "ids": [2], "records": [{"notes": "x"}]},
                                              role="sales"), tool_error("Resource Error", "Permission Error", "Validation Error"))
case("sales-updates-unpaid-order-by-record-key", call("update_records", {"tableName": "orders", "records": [{"id": 2, "notes": "x"}]},
                                                      role="sales"), tool_error("Resource Error", "Permission Error", "Validation Error"))
case("sales-deletes-unpaid-order-by-id", call("delete_records", {"tableName": "orders", "ids": [2]}, role="sales"),
     tool_error("Resource Error", "Permission Error", "Validation Error"))
case("sales-reads-unpaid-order-by-id", call("get_table_data", {"tableName": "orders", "ids": [2]}, role="sales"),
     lambda r: ("isError" in r.json()["result"]) and (r.json()["result"]["isError"] or
                                                      json.loads(r.json()["result"]["content"][0]["text"])["resource"] == []))
for i, uri in enumerate(["db://demo/tables/employees", "db://demo/tables/employees%00", "db://demo/tables/../employees",
                         "db://other/tables/tags", "file:///etc/passwd", "db://demo/tables/EMPLOYEES"]):
    case(f"ro-resource-read-{i}", rpc_call("resources/read", {"uri": uri}, role="ro"),
         lambda r: r.status == 200 and r.json()["error"]["code"] in (-32002, -32602), forbid=("salary",))
case("ro-resources-list-hides-employees", rpc_call("resources/list", role="ro"),
     lambda r: "employees" not in json.dumps(r.json()["result"]))
case("ro-completion-hidden-columns", rpc_call("completion/complete", {
    "ref": {"type": "ref/prompt", "name": "draft_safe_filter"}, "argument": {"name": "column", "value": "e"},
    "context": {"arguments": {"table": "customers"}}}, role="ro"),
    lambda r: "email" not in r.json()["result"]["completion"]["values"])
case("ro-completion-hidden-table", rpc_call("completion/complete", {
    "ref": {"type": "ref/prompt", "name": "explain_table"}, "argument": {"name": "table", "value": "employ"}}, role="ro"),
    lambda r: r.json()["result"]["completion"]["values"] == [])
case("ro-prompt-hidden-table", rpc_call("prompts/get", {"name": "explain_table", "arguments": {"table": "employees"}}, role="ro"),
     lambda r: r.json()["error"]["code"] == -32602, forbid=("salary",))
case("anon-prompt-hidden-columns", rpc_call("prompts/get", {"name": "draft_safe_filter",
                                                            "arguments": {"table": "products", "question": "cheap?"}}, role="anon"),
     lambda r: "price" not in json.dumps(r.json()["result"]) and "thumbnail" not in json.dumps(r.json()["result"]))

# -- sessions
def foreign_service_session(env: Env):
    sid = env.initialize(service="other")
    return env.http.send("POST", "/mcp/demo", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode(),
                         base_headers(sid))


def deleted_session(env: Env):
    sid = env.initialize(ADMIN)
    d = env.http.send("DELETE", "/mcp/demo", None, base_headers(sid, ADMIN))
    assert d.status == 204, d
    return env.http.send("POST", "/mcp/demo", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode(),
                         base_headers(sid, ADMIN))


def with_session(sid_of, key_of):
    def send(env: Env):
        sid = sid_of(env)
        return env.http.send("POST", "/mcp/demo", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                                             "params": {"name": "get_tables", "arguments": {}}}).encode(),
                             [("Content-Type", "application/json"), ("Accept", "application/json"),
                              ("Mcp-Session-Id", sid)] + ([("X-API-Key", key_of(env))] if key_of(env) else []))
    return send


case("no-session-header", msg({"jsonrpc": "2.0", "id": 1, "method": "ping"},
                              headers=lambda env: base_headers(None, ADMIN)), http_status(400))
case("unknown-session", msg({"jsonrpc": "2.0", "id": 1, "method": "ping"},
                            headers=lambda env: base_headers("A" * 43, ADMIN)), http_status(404))
case("huge-session-id", msg({"jsonrpc": "2.0", "id": 1, "method": "ping"},
                            headers=lambda env: base_headers("A" * 4000, ADMIN)), lambda r: r.status in (400, 404))
case("session-of-other-service", foreign_service_session, http_status(404))
case("deleted-session", deleted_session, http_status(404))
case("delete-unknown-session", lambda env: env.http.send("DELETE", "/mcp/demo", None, base_headers("B" * 43, ADMIN)),
     http_status(404))
case("admin-session-with-ro-key", with_session(lambda e: e.sessions["admin"], lambda e: RO), http_status(403))
case("ro-session-with-admin-key", with_session(lambda e: e.sessions["ro"], lambda e: ADMIN), http_status(403))
case("ro-session-without-key", with_session(lambda e: e.sessions["ro"], lambda e: None), http_status(403))
case("anon-session-with-admin-key", with_session(lambda e: e.sessions["anon"], lambda e: ADMIN), http_status(403))
case("admin-session-with-wrong-key", with_session(lambda e: e.sessions["admin"], lambda e: ADMIN + "x"), http_status(401))
case("admin-session-suffix-key", with_session(lambda e: e.sessions["admin"], lambda e: "WRONG" + ADMIN), http_status(401))
case("delete-session-with-other-key", lambda env: env.http.send("DELETE", "/mcp/demo", None,
                                                                base_headers(env.sessions["ro"], ADMIN)), http_status(403))
case("get-stream-with-other-key", lambda env: env.http.send("GET", "/mcp/demo", None,
                                                            [("Accept", "text/event-stream"), ("Mcp-Session-Id", env.sessions["ro"]),
                                                             ("X-API-Key", SALES)]), http_status(403))


def old_batch_duplicate_ids(env: Env):
    """JSON-RPC batches exist in 2025-03-26: duplicate ids get one answer each, nothing breaks."""
    sid = env.initialize(ADMIN, version="2025-03-26")
    body = json.dumps([{"jsonrpc": "2.0", "id": 1, "method": "ping"}, {"jsonrpc": "2.0", "id": 1, "method": "ping"},
                       {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                        "params": {"name": "delete_records", "arguments": {"tableName": "tags", "filter": "1=1"}}},
                       {"jsonrpc": "2.0", "method": "ping"}]).encode()
    return env.http.send("POST", "/mcp/demo", body, [("Content-Type", "application/json"), ("Accept", "application/json"),
                                                    ("Mcp-Session-Id", sid), ("Authorization", f"Bearer {ADMIN}")])


def _old_batch(r: Response):
    assert r.status == 200, r
    out = r.json()
    assert [m["id"] for m in out] == [1, 1, 2]
    assert out[2]["result"]["isError"] is True


case("batch-duplicate-ids-2025-03-26", old_batch_duplicate_ids, _old_batch)


# -- the stateless era (2026-07-28): credentials on every request
def stateless(method, params, key=None, extra=()):
    def send(env: Env):
        p = dict(params or {})
        p["_meta"] = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {},
                      "io.modelcontextprotocol/clientInfo": {"name": "hostile", "version": "1"}}
        h = [("Content-Type", "application/json"), ("Accept", "application/json, text/event-stream"),
             ("MCP-Protocol-Version", "2026-07-28"), ("Mcp-Method", method)]
        if method == "tools/call":
            h.append(("Mcp-Name", p["name"]))
        if key:
            h.append(("X-API-Key", key))
        return env.http.send("POST", "/mcp/demo", json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                                                              "params": p}).encode(), h + list(extra))
    return send


case("stateless-wrong-key", stateless("tools/call", {"name": "get_tables", "arguments": {}}, key="WRONG" + ADMIN),
     lambda r: r.status == 401 and r.headers.get("www-authenticate", "").startswith("Bearer"))
case("stateless-ro-calls-delete", stateless("tools/call", {"name": "delete_records", "arguments": {"tableName": "tags", "ids": [1]}},
                                            key=RO), lambda r: r.json()["error"]["code"] == -32602)
case("stateless-anon-reads-employees", stateless("tools/call", {"name": "get_table_data", "arguments": {"tableName": "employees"}}),
     tool_error("Resource Error"), forbid=("permission",))
case("stateless-ro-hidden-column", stateless("tools/call", {"name": "get_table_data",
                                                            "arguments": {"tableName": "customers", "order": "email"}}, key=RO),
     tool_error("Validation Error"), forbid=("did you mean 'email'",))
case("stateless-sales-creates-outside-filter", stateless("tools/call", {"name": "create_records", "arguments": {
    "tableName": "orders", "records": [{"customer_id": 1, "status": "pending", "ordered_at": "2024-01-01 00:00:00"}]}}, key=SALES),
    tool_error("Permission Error"))

# -- credentials
for i, hdrs in enumerate([
    [("Authorization", "Bearer WRONG" + ADMIN)], [("Authorization", "Basic YWRtaW46YWRtaW4=")], [("Authorization", "Bearer")],
    [("X-API-Key", ADMIN[:-1])], [("X-DreamFactory-API-Key", "0" * 64)], [("X-API-Key", ADMIN), ("X-DreamFactory-API-Key", RO)],
    [("Authorization", "Bearer " + hash_api_key(ADMIN))], [("X-API-Key", "k" * 5000)],
]):
    case(f"bad-credentials-{i}", msg({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                     "params": {"protocolVersion": V, "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}},
                                    headers=[("Content-Type", "application/json"), ("Accept", "application/json")] + hdrs),
         lambda r: r.status == 401 and r.headers.get("www-authenticate", "").startswith("Bearer"))
case("key-in-query-string-is-ignored", lambda env: env.http.send(
    "POST", f"/mcp/demo?api_key={ADMIN}", json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                                     "params": {"name": "get_tables", "arguments": {}}}).encode(),
    base_headers(env.sessions["anon"])),
    tool_ok(lambda p: sorted(t["name"] for t in p["resource"]) == ["categories", "products"]))

# -- headers
PING = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
for i, (hdrs, status) in enumerate([
    ([("Origin", "http://evil.example")], 403), ([("Origin", "null")], 403), ([("Origin", "http://127.0.0.1.evil.example")], 403),
    ([("Origin", "file://")], 403),
]):
    case(f"bad-origin-{i}", raw(PING, headers=lambda env, h=hdrs: base_headers(env.sessions["admin"], ADMIN) + h),
         http_status(status))
for i, host in enumerate(["evil.example", "localhost.evil.example", "127.0.0.2", "", None]):
    case(f"bad-host-{i}", raw(PING, headers=lambda env: base_headers(env.sessions["admin"], ADMIN), host=host),
         lambda r: r.status in (400, 421))
for i, ctype in enumerate(["text/plain", "application/x-www-form-urlencoded", "application/jsonx", "multipart/form-data", None]):
    case(f"bad-content-type-{i}", raw(PING, headers=lambda env, c=ctype: [h for h in base_headers(env.sessions["admin"], ADMIN)
                                                                          if h[0] != "Content-Type"] + ([("Content-Type", c)] if c else [])),
         http_status(415))
for i, accept in enumerate(["text/html", "image/png", "application/xml"]):
    case(f"bad-accept-{i}", raw(PING, headers=lambda env, a=accept: base_headers(env.sessions["admin"], ADMIN, accept=a)),
         http_status(406))
for i, version in enumerate(["1999-01-01", "2025-11-25; drop", "latest", "2024-11-05"]):
    case(f"bad-protocol-version-{i}", raw(PING, headers=lambda env, v=version: [h for h in base_headers(env.sessions["admin"], ADMIN)
                                                                                if h[0] != "MCP-Protocol-Version"] + [("MCP-Protocol-Version", v)]),
         http_status(400))
for method in ("PUT", "PATCH", "TRACE", "HEAD"):
    case(f"method-{method}", raw(None if method in ("TRACE", "HEAD") else PING, method=method), lambda r: r.status == 405)
for i, path in enumerate(["/mcp/nope", "/mcp/demo%00", "/mcp/../mcp/other/../demo2", "/mcp/", "/mcp/demo/extra"]):
    case(f"bad-path-{i}", raw(PING, path=path), lambda r: r.status in (400, 404))
case("huge-header", raw(PING, headers=lambda env: base_headers(env.sessions["admin"], ADMIN) + [("X-Junk", "a" * 20000)]),
     lambda r: r.status in (400, 431))
case("get-without-sse-accept", lambda env: env.http.send("GET", "/mcp/demo", None,
                                                         [("Accept", "application/json"), ("Mcp-Session-Id", env.sessions["admin"]),
                                                          ("X-API-Key", ADMIN)]), http_status(406))


# ---------------------------------------------------------------------------- the test
def test_there_are_at_least_150_cases():
    assert len(CASES) >= 150, len(CASES)


@pytest.mark.parametrize("send, expect, forbid", CASES)
def test_hostile_request(env, send, expect, forbid):
    r = send(env)
    assert r.status < 500, r
    no_leaks(r, forbid)
    result = expect(r)
    assert result is None or result is True, (result, r)
    env.assert_unchanged()
    env.assert_serving()


def test_expired_session_is_404(start_server, demo_template, tmp_path):
    db = str(tmp_path / "exp.db")
    shutil.copyfile(demo_template, db)
    server = start_server(f'[server]\nsession_ttl = 1\n\n[services.demo]\nurl = "sqlite:///{db}"\n')
    http = Http(server.port)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                       "params": {"protocolVersion": V, "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}}).encode()
    sid = http.send("POST", "/mcp/demo", body, base_headers()).headers["mcp-session-id"]
    before = checksums(db)
    assert http.send("POST", "/mcp/demo", PING, base_headers(sid)).status == 200
    # Every request restarts the idle clock, so nothing may touch the session while it ages.
    idle_until = time.monotonic() + 1.3
    while time.monotonic() < idle_until:
        time.sleep(0.05)
    r = http.send("POST", "/mcp/demo", PING, base_headers(sid))
    assert r.status == 404, r
    assert checksums(db) == before
    assert http.send("POST", "/mcp/demo", body, base_headers()).status == 200


# ---------------------------------------------------------------------------- hypothesis fuzz
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                                  st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                           max_leaves=12)
TABLES = ["tags", "orders", "customers", "employees", "products", "order_items", "customer_order_totals", "nope"]
COLUMNS = ["id", "name", "status", "email", "total", "customer_id", "salary", "price", "notes", "*"]
FILTER_BITS = ["id", "=", "1", "'x'", "and", "or", "not", "(", ")", "like", "'%'", "in", "between", "is null", ";",
               "--", "/*", "email", "salary", ":p", "{role.status}", "\x00", "＇", "select"]


def argument_values(prop: str):
    """Plausible-but-hostile values for a known argument, plus anything at all."""
    specific = {
        "tableName": st.sampled_from(TABLES) | st.text(max_size=30),
        "procedureName": st.text(max_size=30), "functionName": st.text(max_size=30),
        "fields": st.sampled_from(COLUMNS) | st.lists(st.sampled_from(COLUMNS), max_size=4),
        "order": st.lists(st.sampled_from(COLUMNS + ["desc", "asc", ","]), max_size=4).map(" ".join),
        "filter": st.lists(st.sampled_from(FILTER_BITS), max_size=8).map(" ".join) | st.text(max_size=60),
        "related": st.sampled_from(["*", "customers_by_customer_id", "employees_by_employee_id"]) | st.text(max_size=20),
        "ids": st.lists(st.integers(min_value=-5, max_value=10 ** 20) | st.text(max_size=8), max_size=4) | st.text(max_size=20),
        "records": st.lists(st.dictionaries(st.sampled_from(COLUMNS), JSON_SCALARS, max_size=3), max_size=3),
        "limit": st.integers(min_value=-3, max_value=10 ** 6), "offset": st.integers(min_value=-3, max_value=10 ** 6),
    }
    return specific.get(prop, JSON_VALUES) | JSON_VALUES


def tool_arguments(props: list[str]):
    known = st.fixed_dictionaries({}, optional={p: argument_values(p) for p in props})
    junk = st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=3)
    return st.one_of(known, known.flatmap(lambda d: junk.map(lambda j: {**j, **d})), JSON_VALUES)


def fuzz_tools(env: Env) -> list[tuple[str, str, list]]:
    """(role, tool, argument names): read tools as admin, write tools as the read-but-never-write role."""
    out = []
    for role in ("admin", "fuzz"):
        for t in env.rpc(role, "tools/list").json()["result"]["tools"]:
            writes = not t["annotations"]["readOnlyHint"]
            if writes == (role == "fuzz"):
                out.append((role, t["name"], list(t["inputSchema"].get("properties", {}))))
    return out


def test_fuzz_covers_every_tool(env):
    names = {name for _, name, _ in fuzz_tools(env)}
    offered = {t["name"] for t in env.rpc("admin", "tools/list").json()["result"]["tools"]}
    assert names == offered


def test_fuzz_tool_arguments(env):
    """Every offered tool, 40 generated argument sets each (deterministic: derandomized)."""
    tools = fuzz_tools(env)
    assert len(tools) >= 10
    for role, name, props in tools:
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        @given(tool_arguments(props))
        def run(arguments):
            r = env.tool(role, name, arguments)
            assert r.status == 200, (name, r)
            no_leaks(r)
            body = r.json()
            assert "result" in body or body["error"]["code"] == -32602, (name, r)
            env.assert_unchanged(full=False)
        run()
        env.assert_unchanged()
        env.assert_serving()
