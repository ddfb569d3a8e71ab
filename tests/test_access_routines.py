"""Routine grants and hostile routine calls, on live servers over real PostgreSQL and MariaDB.

SQLite has no stored routines, so the routine half of the hostile suite runs
here: one gunicorn server per dialect over a throwaway database with the
routines of ``routine_fixtures``, three roles, and after every case the
``items`` table and the list of routines must be unchanged and the server must
still answer.

* ``caller``: may call routines except ``secret_*`` and the two that write
  (``add_item``, ``restock``), may read ``items`` rows with qty > 1, without ``price``;
* ``reader``: a read-only role (no routine tools at all);
* ``none``: a writable role granted no routines.
"""
from __future__ import annotations

import json

import pytest

from conftest import LiveServer
from mcp_flask.cli import hash_api_key
from routine_fixtures import LiveMcp, routines_db  # noqa: F401 (fixture)
from test_hostile import LEAKS

KEYS = {"caller": "caller-" + "1" * 40, "reader": "reader-" + "2" * 40, "none": "none-" + "3" * 40}
ROUTINE_TOOLS = {"call_stored_procedure", "call_stored_function"}


def config(url: str) -> str:
    keys = "".join(f'[[services.db.api_keys]]\nhash = "{hash_api_key(k)}"\nrole = "{r}"\nid = "{r}-key"\n\n'
                   for r, k in KEYS.items())
    return f"""
[services.db]
url = {json.dumps(url)}
auth = "api_key"
statement_timeout = 2.0

{keys}
[services.db.roles.caller]
tables = {{ items = ["read"] }}
columns = {{ items = {{ deny = ["price"] }} }}
row_filters = {{ items = "qty > {{role.min_qty}}" }}
values = {{ min_qty = 1 }}
routines = {{ "*" = true, "secret_*" = false, add_item = false, restock = false }}

[services.db.roles.reader]
read_only = true

[services.db.roles.none]
routines = {{}}
"""


class Env:
    def __init__(self, db, work: str):
        self.db = db
        self.server = LiveServer(config(db.url), work)
        self.clients = {}
        self.baseline = self.state()

    def client(self, role: str) -> LiveMcp:
        """A session authenticated with the role's key (sessions are bound to it)."""
        c = self.clients.get(("auth", role))
        if c is None:
            c = LiveMcp.__new__(LiveMcp)
            import httpx
            c.url, c.http, c.sid, c.version, c.n = self.server.url("db"), httpx.Client(
                timeout=30, headers={"X-API-Key": KEYS[role]}), None, "2025-11-25", 0
            r = c.post({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                        "params": {"protocolVersion": c.version, "capabilities": {},
                                   "clientInfo": {"name": "pytest", "version": "1"}}})
            assert r.status_code == 200, r.text
            c.sid = r.headers["Mcp-Session-Id"]
            self.clients[("auth", role)] = c
        return c

    def state(self):
        routines = self.db.sql("SELECT routine_name FROM information_schema.routines WHERE routine_schema = "
                               + ("'public'" if self.db.kind == "postgresql" else "DATABASE()")
                               + " ORDER BY 1")
        return self.db.sql("SELECT id, sku, qty, price FROM items ORDER BY id"), routines


@pytest.fixture(scope="module")
def env(routines_db, tmp_path_factory):  # noqa: F811 (fixture)
    e = Env(routines_db, str(tmp_path_factory.mktemp("routines-hostile")))
    yield e
    e.server.stop()


def tool_names(c) -> set:
    r = c.post({"jsonrpc": "2.0", "id": 99, "method": "tools/list"})
    return {t["name"] for t in r.json()["result"]["tools"]}


def test_keyless_callers_are_refused(env):
    import httpx
    r = httpx.post(env.server.url("db"), content=json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}}),
        headers={"Content-Type": "application/json", "Accept": "application/json"})
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")


def test_read_only_role_has_no_routine_calls(env):
    c = env.client("reader")
    assert not tool_names(c) & ROUTINE_TOOLS
    r = c.post({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                "params": {"name": "call_stored_function", "arguments": {"functionName": "add_ints"}}})
    assert r.json()["error"]["code"] == -32602
    assert env.state() == env.baseline


def test_listings_show_only_granted_routines(env):
    caller = env.client("caller")
    listed = json.dumps(caller.data("get_stored_functions")) + json.dumps(caller.data("get_stored_procedures"))
    assert "add_ints" in listed and "greet" in listed
    for hidden in ("secret_sum", "add_item", "restock"):
        assert hidden not in listed
    resources = json.dumps(caller.data("get_database_resources"))
    assert "secret_sum" not in resources and "add_ints" in resources
    none = env.client("none")
    assert "add_ints" not in json.dumps(none.data("get_stored_functions"))


def test_columns_and_row_filters_on_a_server_database(env):
    caller = env.client("caller")
    rows = caller.data("get_table_data", {"tableName": "items", "order": "id"})["resource"]
    assert [r["sku"] for r in rows] == ["b", "c"] and all("price" not in r for r in rows)
    for args in ({"tableName": "items", "filter": "price > 0"}, {"tableName": "items", "order": "price"},
                 {"tableName": "items", "fields": "price"}):
        text = caller.error("get_table_data", args)
        assert text.startswith("Validation Error") and "did you mean 'price'" not in text
    assert caller.data("get_table_data", {"tableName": "items", "filter": "sku = 'a'"})["resource"] == []
    assert env.state() == env.baseline


def test_granted_routine_works_and_values_are_bound(env):
    caller = env.client("caller")
    text = json.dumps(caller.data("call_stored_function", {"functionName": "add_ints",
                                                           "parameters": {"a": 2, "b": 3}}))
    assert "5" in text
    evil = "x'); DROP TABLE items; --"
    text = json.dumps(caller.data("call_stored_function", {"functionName": "greet", "parameters": {"who": evil, "greeting": "Hi"}}))
    assert "DROP TABLE items" in text          # it came back as data: bound, not executed
    assert env.state() == env.baseline


HOSTILE = [
    ("caller", "call_stored_function", {"functionName": "secret_sum", "parameters": {"a": 1, "b": 2}}),
    ("caller", "call_stored_procedure", {"procedureName": "add_item", "parameters": {"p_sku": "zz"}}),
    ("caller", "call_stored_procedure", {"procedureName": "restock", "parameters": {"p_sku": "a", "amount": 5}}),
    ("caller", "call_stored_function", {"functionName": "add_ints; DROP TABLE items"}),
    ("caller", "call_stored_function", {"functionName": "add_ints(1,2)"}),
    ("caller", "call_stored_function", {"functionName": "pg_sleep", "parameters": [5]}),
    ("caller", "call_stored_function", {"functionName": "pg_read_file", "parameters": ["/etc/hostname"]}),
    ("caller", "call_stored_function", {"functionName": "sleep", "parameters": [5]}),
    ("caller", "call_stored_function", {"functionName": "public.secret_sum", "parameters": [1, 2]}),
    ("caller", "call_stored_function", {"functionName": "SECRET_SUM", "parameters": [1, 2]}),
    ("caller", "call_stored_function", {"functionName": "secret_sum\x00", "parameters": [1, 2]}),
    ("caller", "call_stored_function", {"functionName": "аdd_ints", "parameters": [1, 2]}),
    ("caller", "call_stored_function", {"functionName": "add_ints", "parameters": {"a": "1); DROP TABLE items; --", "b": 1}}),
    ("caller", "call_stored_function", {"functionName": "add_ints", "parameters": {"a": 1, "b": 2, "c; drop": 3}}),
    ("caller", "call_stored_function", {"functionName": "add_ints", "parameters": [1, 2, 3, 4]}),
    ("caller", "call_stored_function", {"functionName": "add_ints", "parameters": {"a": {"x": 1}, "b": [1]}}),
    ("caller", "call_stored_function", {"functionName": "add_ints", "parameters": [{"name": "a'--", "value": 1}]}),
    ("caller", "call_stored_function", {"functionName": "add_ints", "parameters": {"a": 1, "b": 2}, "wrapper": "x\"; drop"}),
    ("caller", "call_stored_function", {"functionName": "greet", "parameters": {"who": "\x00"}}),
    ("caller", "call_stored_function", {"functionName": "slow", "parameters": {"seconds": 30}}),
    ("caller", "create_records", {"tableName": "items", "records": [{"sku": "zz", "qty": 1}]}),
    ("none", "call_stored_function", {"functionName": "add_ints", "parameters": [1, 2]}),
    ("none", "call_stored_procedure", {"procedureName": "add_item", "parameters": ["zz"]}),
    ("reader", "call_stored_procedure", {"procedureName": "add_item", "parameters": ["zz"]}),
    ("reader", "delete_records", {"tableName": "items", "ids": [1]}),
]


@pytest.mark.parametrize("role, tool, args", HOSTILE, ids=[f"{r}-{t}-{i}" for i, (r, t, _) in enumerate(HOSTILE)])
def test_hostile_routine_calls(env, role, tool, args):
    c = env.client(role)
    r = c.post({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": args}})
    assert r.status_code == 200, r.text
    for word in LEAKS:
        assert word not in r.text
    body = r.json()
    if "error" in body:
        assert body["error"]["code"] == -32602, body
    else:
        result = body["result"]
        assert result["isError"] is True, result
        text = result["content"][0]["text"]
        assert text.split(":", 1)[0] in ("Validation Error", "Resource Error", "Permission Error", "Timeout Error",
                                        "Database Error"), text
        assert "secret_sum'?" not in text and "did you mean 'secret" not in text
    assert env.state() == env.baseline
    assert c.post({"jsonrpc": "2.0", "id": 8, "method": "ping"}).json()["result"] == {}
