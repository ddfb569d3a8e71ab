"""Stored routine tools (tools/routines.py) against real PostgreSQL and MySQL/MariaDB.

Every routine shape is called with all three parameter forms (name -> value,
positional list, DreamFactory's ``{"params": [{"name", "value"}]}``); arguments
are checked against the signature before anything runs; results follow
DreamFactory's ``wrapper`` / ``returns`` rules; SQLite services do not offer
the tools at all.  Fixture databases: tests/routine_fixtures.py.
"""
from __future__ import annotations

import logging

import pytest

from conftest import McpTestClient
from routine_fixtures import mysql_routines_db, pg_routines_db, routines_db  # noqa: F401 (fixtures)

ROUTINE_TOOLS = ["get_stored_procedures", "call_stored_procedure", "get_stored_functions", "call_stored_function"]
MAX_ROWS = 50


@pytest.fixture(scope="module")
def build_app(tmp_path_factory):
    """Apps cached per module and config (building one checks every schema: seconds)."""
    from mcp_flask import close_app
    from conftest import make_settings
    from mcp_flask import create_app
    apps: dict = {}

    def build(url: str, **service):
        key = repr((url, sorted(service.items())))
        if key not in apps:
            settings = make_settings({"db": {"url": url, "max_rows": MAX_ROWS, **service}},
                                     data_dir=str(tmp_path_factory.mktemp("app")))
            apps[key] = create_app(settings, check_databases=False)
        return apps[key]
    yield build
    for app in apps.values():
        close_app(app)


@pytest.fixture
def client_on(build_app):
    def make(url: str, **service) -> McpTestClient:
        c = McpTestClient(build_app(url, **service), service="db")
        c.initialize()
        return c
    return make


@pytest.fixture
def pg(pg_routines_db, client_on):
    pg_routines_db.reset_items()
    return client_on(pg_routines_db.url)


@pytest.fixture
def my(mysql_routines_db, client_on):
    mysql_routines_db.reset_items()
    return client_on(mysql_routines_db.url)


@pytest.fixture
def both(routines_db, client_on):
    routines_db.reset_items()
    return routines_db, client_on(routines_db.url)


def forms(named: dict, order: list[str]) -> list:
    """The same arguments in the three accepted forms (plus DreamFactory's other two)."""
    return [named, [named[k] for k in order],
            {"params": [{"name": k, "value": v} for k, v in named.items()]},
            {"params": dict(named)}, {"params": [named[k] for k in order]}]


def fn(c, name, parameters=None, **extra):
    args = {"functionName": name, **extra}
    if parameters is not None:
        args["parameters"] = parameters
    return c.data("call_stored_function", args)


def proc(c, name, parameters=None, **extra):
    args = {"procedureName": name, **extra}
    if parameters is not None:
        args["parameters"] = parameters
    return c.data("call_stored_procedure", args)


# ---------------------------------------------------------------------------- offering
def test_sqlite_services_do_not_offer_routine_tools(client):
    names = [t["name"] for t in client.rpc("tools/list")["result"]["tools"]]
    assert not set(ROUTINE_TOOLS) & set(names)
    listed = client.data("list_tools", {"names_only": True})["tools"]
    assert not set(ROUTINE_TOOLS) & set(listed) and "get_tables" in listed
    body = client.rpc("tools/call", {"name": "call_stored_function", "arguments": {"functionName": "x"}})
    assert body["error"]["message"] == "Unknown tool: call_stored_function"
    res = client.data("get_database_resources")
    assert "no stored procedures or functions" in res["meta"]["routines"]


def test_server_databases_offer_them_with_annotations(both):
    _, c = both
    tools = {t["name"]: t for t in c.rpc("tools/list")["result"]["tools"]}
    assert set(ROUTINE_TOOLS) <= set(tools)
    assert [n for n in tools if n in ROUTINE_TOOLS] == ROUTINE_TOOLS
    for name in ("get_stored_procedures", "get_stored_functions"):
        assert tools[name]["annotations"]["readOnlyHint"] is True
    for name in ("call_stored_procedure", "call_stored_function"):
        ann = tools[name]["annotations"]
        assert ann == {"title": ann["title"], "readOnlyHint": False, "destructiveHint": True,
                       "idempotentHint": False, "openWorldHint": False}
    res = c.data("get_database_resources")["resource"]
    assert {"name": "restock", "type": "procedure", "component": "_proc/restock"} in res
    assert {"name": "add_ints", "type": "function", "component": "_func/add_ints"} in res


def test_read_only_roles_and_services_lose_the_calls(routines_db, client_on):
    for service in ({"read_only": True},
                    {"default_role": "ro", "roles": {"ro": {"read_only": True}}}):
        c = client_on(routines_db.url, **service)
        names = [t["name"] for t in c.rpc("tools/list")["result"]["tools"]]
        assert "call_stored_procedure" not in names and "call_stored_function" not in names
        assert "get_stored_functions" in names
        body = c.rpc("tools/call", {"name": "call_stored_function",
                                    "arguments": {"functionName": "add_ints", "parameters": [1, 2]}})
        assert "error" in body


def test_role_routine_grants_hide_routines_like_missing_ones(routines_db, client_on):
    c = client_on(routines_db.url, default_role="app",
                  roles={"app": {"routines": {"*": True, "secret_*": False}}})
    listed = [r["name"] for r in c.data("get_stored_functions")["resource"]]
    assert "add_ints" in listed and "secret_sum" not in listed
    hidden = c.error_text("call_stored_function", {"functionName": "secret_sum", "parameters": [1, 2]})
    missing = c.error_text("call_stored_function", {"functionName": "nosuch_sum", "parameters": [1, 2]})
    assert hidden == "Resource Error: no stored function named 'secret_sum'"
    assert missing.startswith("Resource Error: no stored function named 'nosuch_sum'")
    assert "secret" not in c.error_text("get_stored_functions", {"names": ["secret_sum"]}).replace(
        "named 'secret_sum'", "")
    assert fn(c, "add_ints", [1, 2]) == {"value": 3}


# ---------------------------------------------------------------------------- listings
def test_pg_listings_describe_parameters_and_return_types(pg):
    funcs = {r["name"]: r for r in pg.data("get_stored_functions")["resource"]}
    procs = {r["name"]: r for r in pg.data("get_stored_procedures")["resource"]}
    assert set(procs) == {"restock", "add_item"}
    assert {"add_ints", "greet", "item_stats", "items_over_fn", "all_items", "first_item", "describe",
            "slow", "secret_sum"} <= set(funcs)
    add = funcs["add_ints"]
    assert add["type"] == "function" and add["return_type"] == "integer" and add["return_db_type"] == "integer"
    assert [(p["name"], p["position"], p["param_type"], p["type"], p["db_type"]) for p in add["params"]] == \
        [("a", 1, "IN", "integer", "integer"), ("b", 2, "IN", "integer", "integer")]
    greet = {p["name"]: p for p in funcs["greet"]["params"]}
    assert greet["greeting"]["default"] == "Hello" and greet["greeting"]["has_default"] is True
    assert greet["who"]["has_default"] is False
    assert [(p["name"], p["param_type"]) for p in funcs["item_stats"]["params"]] == \
        [("min_qty", "IN"), ("n", "OUT"), ("total_qty", "OUT")]
    assert funcs["items_over_fn"]["returns_set"] is True and funcs["items_over_fn"]["return_type"] == "table"
    assert funcs["items_over_fn"]["result_columns"] == ["id", "sku"]
    assert funcs["first_item"]["return_type"] == "row"
    assert len(funcs["describe"]["overloads"]) == 1
    assert [(p["name"], p["param_type"], p["db_type"]) for p in procs["restock"]["params"]] == \
        [("p_sku", "IN", "text"), ("amount", "IN", "integer"), ("p_qty", "INOUT", "integer"),
         ("p_ok", "OUT", "boolean")]
    assert procs["restock"]["return_type"] is None


def test_mysql_listings_describe_parameters_and_return_types(my):
    funcs = {r["name"]: r for r in my.data("get_stored_functions")["resource"]}
    procs = {r["name"]: r for r in my.data("get_stored_procedures")["resource"]}
    assert {"add_ints", "greet", "is_big", "slow", "secret_sum"} == set(funcs)
    assert {"restock", "items_over", "two_sets", "add_item", "many_rows", "slow_proc"} == set(procs)
    assert funcs["add_ints"]["return_type"] == "integer"
    assert funcs["is_big"]["return_type"] == "boolean"
    assert [(p["name"], p["position"], p["param_type"], p["type"]) for p in procs["restock"]["params"]] == \
        [("p_sku", 1, "IN", "string"), ("amount", 2, "IN", "integer"), ("p_qty", 3, "INOUT", "integer"),
         ("p_ok", 4, "OUT", "boolean")]


def test_listing_by_names(both):
    _, c = both
    got = c.data("get_stored_functions", {"names": ["add_ints"]})["resource"]
    assert [r["name"] for r in got] == ["add_ints"]
    err = c.error_text("get_stored_functions", {"names": ["add_intz"]})
    assert err == "Resource Error: no stored function named 'add_intz'; did you mean 'add_ints'?"


# ---------------------------------------------------------------------------- calls, every form
@pytest.mark.parametrize("form", range(5))
def test_scalar_function_in_every_parameter_form(both, form):
    _, c = both
    assert fn(c, "add_ints", forms({"a": 2, "b": 40}, ["a", "b"])[form]) == {"value": 42}
    assert fn(c, "greet", forms({"who": "Zoë 😀", "greeting": "Hi"}, ["who", "greeting"])[form]) == \
        {"value": "Hi, Zoë 😀"}
    assert fn(c, "is_big", forms({"n": "100.50"}, ["n"])[form]) == {"value": True}


@pytest.mark.parametrize("form", range(5))
def test_procedure_with_inout_and_out_in_every_parameter_form(both, form):
    db, c = both
    got = proc(c, "restock", forms({"p_sku": "b", "amount": 5, "p_qty": 10}, ["p_sku", "amount", "p_qty"])[form])
    assert got == {"p_qty": 15, "p_ok": True}
    assert db.sql("SELECT qty FROM items WHERE sku = 'b'") == [(7,)]     # committed


def test_positional_list_may_count_out_parameters_as_null(both):
    _, c = both
    assert proc(c, "restock", ["a", 1, 2, None]) == {"p_qty": 3, "p_ok": True}
    err = c.error_text("call_stored_procedure", {"procedureName": "restock", "parameters": ["a", 1, 2, True]})
    assert "'p_ok'" in err and "OUT" in err


def test_missing_inout_is_null_and_missing_default_applies(pg):
    assert proc(pg, "restock", {"p_sku": "zz", "amount": 4}) == {"p_qty": 4, "p_ok": False}
    assert fn(pg, "greet", {"who": "Ann"}) == {"value": "Hello, Ann"}
    assert fn(pg, "greet", ["Ann"]) == {"value": "Hello, Ann"}


@pytest.mark.parametrize("form", range(3))
def test_pg_function_shapes(pg, form):
    one = forms({"min_qty": 2}, ["min_qty"])[form]
    assert fn(pg, "item_stats", one) == {"n": 2, "total_qty": 32}
    assert fn(pg, "items_over_fn", one) == {"resource": [{"id": 2, "sku": "b"}, {"id": 3, "sku": "c"}]}
    rows = fn(pg, "all_items", forms({}, [])[form] if form != 1 else [])["resource"]
    assert [r["sku"] for r in rows] == ["a", "b", "c"] and rows[0]["price"] == "1.50"
    assert fn(pg, "first_item")["resource"] == [{"id": 1, "sku": "a", "qty": 1, "price": "1.50"}]
    assert fn(pg, "many_rows_fn", forms({"n": 3}, ["n"])[form]) == {"resource": [{"many_rows_fn": 1},
                                                                              {"many_rows_fn": 2},
                                                                              {"many_rows_fn": 3}]}


def test_pg_overloads_pick_the_signature_the_arguments_fit(pg):
    assert fn(pg, "describe", {"x": 5}) == {"value": "integer"}
    assert fn(pg, "describe", {"x": "5"}) == {"value": "text"}
    assert fn(pg, "describe", ["five"]) == {"value": "text"}


@pytest.mark.parametrize("form", range(3))
def test_mysql_procedure_result_sets(my, form):
    one = forms({"min_qty": 2}, ["min_qty"])[form]
    assert proc(my, "items_over", one) == {"resource": [{"id": 2, "sku": "b"}, {"id": 3, "sku": "c"}]}
    assert proc(my, "two_sets", one) == {"resource": [[{"id": 2, "sku": "b"}, {"id": 3, "sku": "c"}],
                                                      [{"total": 3}]], "n": 2}


def test_wrapper_and_returns(both):
    db, c = both
    if db.kind == "mysql":
        got = proc(c, "two_sets", {"min_qty": 30}, wrapper="rows")
        assert got == {"rows": [[{"id": 3, "sku": "c"}], [{"total": 3}]], "n": 1}
    else:
        assert fn(c, "items_over_fn", {"min_qty": 30}, wrapper="rows") == {"rows": [{"id": 3, "sku": "c"}]}
    assert fn(c, "add_ints", [1, 2], returns="string") == {"value": "3"}
    assert fn(c, "is_big", [5], returns="integer") == {"value": 0}
    assert fn(c, "add_ints", [1, 2], returns="boolean") == {"value": True}
    assert fn(c, "add_ints", [1, 2], returns="float") == {"value": 3.0}
    assert "cannot be returned as integer" in c.error_text(
        "call_stored_function", {"functionName": "greet", "parameters": ["x", "y"], "returns": "integer"})
    assert "single scalar" in c.error_text(
        "call_stored_procedure", {"procedureName": "restock", "parameters": ["a", 1], "returns": "integer"})
    bad = c.call("call_stored_function", {"functionName": "add_ints", "parameters": [1, 2], "returns": "date"})
    assert bad["isError"] is True and "returns" in bad["content"][0]["text"]


def test_rows_are_capped_at_max_rows_with_a_flag(both):
    db, c = both
    if db.kind == "mysql":
        got = proc(c, "many_rows", [MAX_ROWS + 7])
    else:
        got = fn(c, "many_rows_fn", [MAX_ROWS + 7])
    assert len(got["resource"]) == MAX_ROWS
    assert got["meta"]["truncated"] is True and got["meta"]["max_rows"] == MAX_ROWS
    small = proc(c, "many_rows", [3]) if db.kind == "mysql" else fn(c, "many_rows_fn", [3])
    assert "meta" not in small


# ---------------------------------------------------------------------------- checking before running
@pytest.mark.parametrize("parameters, message", [
    ({"a": 1, "bb": 2}, "'add_ints' has no parameter 'bb'; did you mean 'b'?"),
    ({"a": 1}, "'add_ints' needs parameter 'b'"),
    ([1, 2, 3], "'add_ints' takes 2 input parameters, got 3 values"),
    ({"a": "one", "b": 2}, "parameter 'a' of 'add_ints' is"),
    ({"a": True, "b": 2}, "got a boolean"),
    ({"a": [1], "b": 2}, "got a list"),
    ({"params": [{"name": "a", "value": 1}, {"name": "a", "value": 2}]}, "parameter 'a' given twice"),
    ({"params": [{"name": "a", "value": 1}, 2]}, "do not mix"),
    ({"params": [{"name": "a", "valu": 1}]}, "unexpected key 'valu'"),
])
def test_bad_arguments_are_validation_errors(both, parameters, message):
    _, c = both
    err = c.error_text("call_stored_function", {"functionName": "add_ints", "parameters": parameters})
    assert err.startswith("Validation Error: ") and message in err, err


def test_nothing_runs_when_arguments_are_wrong(both):
    db, c = both
    for parameters in ({"p_qty": 1}, {"p_sku": "new", "p_qty": "lots"}, ["new", 1, 2]):
        c.error_text("call_stored_procedure", {"procedureName": "add_item", "parameters": parameters})
    assert db.sql("SELECT COUNT(*) FROM items") == [(3,)]


def test_values_are_bound_never_interpolated(both):
    db, c = both
    evil = "x'); DROP TABLE items; --"
    proc(c, "add_item", {"p_sku": evil[:20], "p_qty": 1})
    assert db.sql("SELECT sku FROM items WHERE qty = 1 ORDER BY id") == [("a",), (evil[:20],)]
    assert fn(c, "greet", [evil, "Hi"]) == {"value": "Hi, " + evil}


# ---------------------------------------------------------------------------- transactions and errors
def test_writes_commit_and_failures_roll_back(both):
    db, c = both
    assert proc(c, "add_item", ["new", 4]) == {"resource": []}
    assert db.sql("SELECT qty FROM items WHERE sku = 'new'") == [(4,)]
    err = c.error_text("call_stored_procedure", {"procedureName": "add_item", "parameters": ["new", 9]})
    assert err.startswith("Database Error:") and "new" not in err.split("(")[0].replace("'new'", "")
    assert db.sql("SELECT qty FROM items WHERE sku = 'new'") == [(4,)]


def test_raised_errors_reach_the_caller(pg):
    assert pg.error_text("call_stored_function", {"functionName": "fail", "parameters": ["no"]}) == \
        "Database Error: refused: no"


def test_calls_are_audited_with_routine_name_and_rows(both, caplog):
    db, c = both
    caplog.set_level(logging.INFO, logger="mcp_flask.audit")
    if db.kind == "mysql":
        proc(c, "items_over", [2])
    else:
        fn(c, "items_over_fn", [2])
    rec = [r.audit for r in caplog.records if r.name == "mcp_flask.audit"][-1]
    assert rec["table"] == ("items_over" if db.kind == "mysql" else "items_over_fn") and rec["rows"] == 2
    assert rec["outcome"] == "ok"


def test_structured_content_matches_the_output_schema(both):
    import jsonschema
    _, c = both
    tools = {t["name"]: t for t in c.rpc("tools/list")["result"]["tools"]}
    for name, args in (("get_stored_functions", {}), ("get_stored_procedures", {}),
                       ("call_stored_function", {"functionName": "add_ints", "parameters": [1, 2]}),
                       ("call_stored_procedure", {"procedureName": "restock", "parameters": ["a", 1]})):
        result = c.call(name, args)
        assert result["isError"] is False
        jsonschema.validate(result["structuredContent"], tools[name]["outputSchema"])
