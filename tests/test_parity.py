"""The same MCP calls give the same answers on SQLite, PostgreSQL and MySQL/MariaDB.

One app serves three services over equivalent data (tests/dialect_fixtures.py:
authors -> books <- book_tags -> tags, and the view cheap_books); every catalog
tool and a range of get_table_data calls are made on each and compared after
``normalise``, which removes only what legitimately differs between databases:

* ``db_type`` spellings (``character varying(100)`` / ``varchar(100)`` / ``int(11)``);
* the text of defaults the database generates itself (``nextval(...)`` for a serial);
* lengths of unbounded text types (MySQL's TEXT has 65535, PostgreSQL's none);
* ``jsonb`` (the fixture's PostgreSQL column type) vs ``json``;
* SQLite's ``1`` for a boolean column's default (its BOOLEAN has no TRUE);
* ``is_index`` on foreign key columns (InnoDB creates an index for each);
* nullability and defaults of view columns (each database infers its own);
* SQLite's rowid: ``tags.id INTEGER PRIMARY KEY`` is generated there, not elsewhere;
* ``RESTRICT`` for foreign keys declared without an action (InnoDB's name for NO ACTION);
* the routine tools and the "no routines" note, which only SQLite lacks.

The routine tools themselves are compared between PostgreSQL and MySQL on the
routines both define identically (tests/routine_fixtures.py).
"""
from __future__ import annotations

import copy
import json

import pytest

import dialect_fixtures as df
from conftest import McpTestClient, make_settings
from routine_fixtures import make_mysql_db, make_pg_db

SERVICES = ("sqlite", "postgresql", "mysql")
ROUTINE_TOOLS = {"get_stored_procedures", "call_stored_procedure", "get_stored_functions", "call_stored_function"}
#: Types whose length is the database's storage limit, not something the schema declared.
UNBOUNDED = {"text", "binary", "json", "jsonb", "longtext", "mediumtext"}


@pytest.fixture(scope="module")
def clients(tmp_path_factory):
    """One initialized client per dialect, each on its own service of one app."""
    from mcp_flask import close_app, create_app
    dbs = {}
    try:
        dbs["sqlite"] = df._sqlite_db(tmp_path_factory)
        dbs["postgresql"] = df._pg_db()
        dbs["mysql"] = df._mysql_db()
        for db in dbs.values():
            db.load()
        app = create_app(make_settings({k: {"url": db.url} for k, db in dbs.items()},
                                       data_dir=str(tmp_path_factory.mktemp("data"))), check_databases=False)
        out = {}
        for k in SERVICES:
            c = McpTestClient(app, service=k)
            c.initialize()
            out[k] = c
        yield out
        close_app(app)
    finally:
        for db in dbs.values():
            db.close()


def normalise(value):
    """``value`` without the differences the module docstring lists (a deep copy)."""
    value = copy.deepcopy(value)

    def walk(v):
        if isinstance(v, dict):
            if "db_type" in v and "allow_null" in v:             # a field
                v["db_type"] = None
                if v.get("auto_increment"):
                    v["default"] = None
                if v.get("type") in UNBOUNDED:
                    v["length"] = None
                if v.get("type") == "jsonb":                      # PostgreSQL's binary JSON
                    v["type"] = "json"
                if v.get("type") == "boolean" and v.get("default") in (0, 1):
                    v["default"] = bool(v["default"])             # SQLite spells TRUE as 1
                if v.get("is_foreign_key"):
                    v["is_index"] = None                          # InnoDB indexes every foreign key
            if v.get("is_view") and isinstance(v.get("field"), list):
                # Views: nullability and defaults are what each database infers (PostgreSQL
                # says nullable for every view column, MySQL copies the base table's).
                for f in v["field"]:
                    f["allow_null"] = f["required"] = f["default"] = None
            for key in ("ref_on_update", "ref_on_delete"):
                if v.get(key) == "RESTRICT":
                    v[key] = "NO ACTION"
            for k in list(v):
                walk(v[k])
            if isinstance(v.get("related"), list):
                v["related"].sort(key=lambda r: r["name"])
        elif isinstance(v, list):
            for item in v:
                walk(item)
    walk(value)
    return value


def answers(clients, tool: str, args: dict, norm=normalise) -> dict:
    return {k: norm(c.data(tool, args)) for k, c in clients.items()}


def differences(a, b, path="$") -> list[str]:
    """Where two JSON values differ, as ``path: a != b`` lines (the first few)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: {'missing' if k not in a else a[k]!r} != "
                           f"{'missing' if k not in b else b[k]!r}")
            else:
                out += differences(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)} items"]
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += differences(x, y, f"{path}[{i}]")
        return out
    return [] if a == b and type(a) is type(b) else [f"{path}: {a!r} != {b!r}"]


def assert_same(got: dict, what: str) -> None:
    base = got["sqlite"] if "sqlite" in got else got["postgresql"]
    for k, other in got.items():
        diff = differences(base, other)
        assert not diff, f"{what}: {k} differs\n" + "\n".join(diff[:20])


def by_name(payload: dict) -> dict:
    """Listings compared as sets: the order of tables is checked once, separately."""
    out = dict(payload)
    out["resource"] = sorted(payload["resource"], key=lambda r: r["name"] if isinstance(r, dict) else r)
    return out


# ---------------------------------------------------------------------------- catalog tools
def test_get_tables(clients):
    assert_same(answers(clients, "get_tables", {}, lambda p: by_name(normalise(p))), "get_tables")
    assert_same(answers(clients, "get_tables", {"includeViews": False}, lambda p: by_name(normalise(p))),
                "get_tables without views")


def test_tables_come_in_the_same_order(clients):
    assert_same(answers(clients, "get_tables", {}), "get_tables order")


@pytest.mark.parametrize("table", ["authors", "books", "tags", "book_tags", "cheap_books"])
def test_get_table_schema(clients, table):
    got = answers(clients, "get_table_schema", {"tableName": table})
    if table == "tags":
        # SQLite makes any INTEGER PRIMARY KEY the rowid: it really is generated there.
        sqlite_id = got["sqlite"]["field"][0]
        assert (sqlite_id["type"], sqlite_id["auto_increment"]) == ("id", True)
        sqlite_id.update(type="integer", auto_increment=False, required=True)
    assert_same(got, f"get_table_schema {table}")


@pytest.mark.parametrize("table", ["authors", "books", "book_tags"])
def test_get_table_fields(clients, table):
    assert_same(answers(clients, "get_table_fields", {"tableName": table}), f"get_table_fields {table}")
    assert_same(answers(clients, "get_table_fields", {"tableName": table, "fields": ["id"] if table != "book_tags"
                                                                          else ["book_id"]}), "fields subset")


@pytest.mark.parametrize("table", ["authors", "books", "tags", "book_tags"])
def test_get_table_relationships(clients, table):
    def norm(p):
        p = normalise(p)
        p["resource"].sort(key=lambda r: r["name"])
        return p
    assert_same(answers(clients, "get_table_relationships", {"tableName": table}, norm),
                f"get_table_relationships {table}")


def test_get_database_resources(clients):
    def norm(p):
        p = by_name(p)
        p.pop("meta", None)                 # SQLite's "no routines" note
        return p
    for args in ({}, {"includeAccess": True}, {"asList": True}, {"asAccessList": True}, {"fields": ["name"]}):
        assert_same(answers(clients, "get_database_resources", args, norm), f"get_database_resources {args}")
    assert "routines" in clients["sqlite"].data("get_database_resources")["meta"]


def test_list_tools(clients):
    def norm(p):
        p = dict(p)
        p["tools"] = [t for t in p["tools"] if (t if isinstance(t, str) else t["name"]) not in ROUTINE_TOOLS]
        p["total"] = p["count"] = len(p["tools"])
        return p
    assert_same(answers(clients, "list_tools", {"names_only": True}, norm), "list_tools names")
    assert_same(answers(clients, "list_tools", {}, norm), "list_tools")
    for k in ("postgresql", "mysql"):
        assert ROUTINE_TOOLS <= set(clients[k].data("list_tools", {"names_only": True})["tools"])


def test_errors_are_the_same(clients):
    for tool, args in (("get_table_schema", {"tableName": "author"}),
                       ("get_table_fields", {"tableName": "authors", "fields": ["nmae"]}),
                       ("get_table_data", {"tableName": "books", "filter": "titel = 'x'"}),
                       ("get_table_data", {"tableName": "books", "related": "nope"})):
        texts = {k: c.error_text(tool, args) for k, c in clients.items()}
        assert len(set(texts.values())) == 1, texts


# ---------------------------------------------------------------------------- get_table_data
DATA_CALLS = [
    {"tableName": "authors", "order": "id"},
    {"tableName": "authors", "fields": ["id", "name", "rating", "born", "active"], "order": "name DESC"},
    {"tableName": "authors", "filter": "name LIKE '%100\\%%'", "fields": ["id"]},
    {"tableName": "authors", "filter": "(active = true) AND (rating >= 4.5)", "order": "id", "fields": ["id", "name"]},
    {"tableName": "authors", "filter": "email IS NULL OR born < '1900-01-01'", "fields": ["id"], "order": "id"},
    {"tableName": "books", "order": "price DESC, id", "limit": 3, "offset": 2, "includeCount": True},
    {"tableName": "books", "ids": ["3", "1"], "fields": ["id", "title"]},
    {"tableName": "books", "countOnly": True, "filter": "pages > 100"},
    {"tableName": "books", "related": "authors_by_author_id", "order": "id", "limit": 4},
    {"tableName": "authors", "related": "books_by_author_id", "fields": ["id", "name"], "order": "id", "limit": 3},
    {"tableName": "books", "related": "tags_by_book_tags", "fields": ["id"], "order": "id"},
    {"tableName": "cheap_books", "order": "id"},
    {"tableName": "book_tags", "order": "book_id, tag_id", "includeSchema": True},
    {"tableName": "books", "filter": "title IN ('Compilers', 'Go To Statement')", "fields": ["title"], "order": "title"},
    {"tableName": "books", "fields": ["author_id", "COUNT(*)"], "group": "author_id", "order": "author_id"},
]


@pytest.mark.parametrize("args", DATA_CALLS, ids=lambda a: json.dumps(a)[:60])
def test_get_table_data(clients, args):
    assert_same(answers(clients, "get_table_data", args), f"get_table_data {args}")


# ---------------------------------------------------------------------------- routines (PostgreSQL vs MySQL)
@pytest.fixture(scope="module")
def routine_clients(tmp_path_factory):
    from mcp_flask import close_app, create_app
    pg, my = make_pg_db(), make_mysql_db()
    try:
        app = create_app(make_settings({"postgresql": {"url": pg.url}, "mysql": {"url": my.url}},
                                       data_dir=str(tmp_path_factory.mktemp("data"))), check_databases=False)
        out = {}
        for k in ("postgresql", "mysql"):
            c = McpTestClient(app, service=k)
            c.initialize()
            out[k] = c
        yield out, {"postgresql": pg, "mysql": my}
        close_app(app)
    finally:
        pg.drop()
        my.drop()


#: Routines both fixtures define with the same parameters and the same answers.
SHARED = {"function": ["add_ints", "is_big", "secret_sum", "slow"], "procedure": ["restock", "add_item"]}
#: PostgreSQL's and MySQL's simple types for the same declared parameter.
SAME_TYPE = {"text": "string"}


def test_routine_listings_agree(routine_clients):
    clients, _ = routine_clients
    for kind, names in SHARED.items():
        tool = f"get_stored_{kind}s"
        got = {}
        for k, c in clients.items():
            items = {r["name"]: r for r in c.data(tool, {"names": names})["resource"]}
            got[k] = {n: {"return_type": r["return_type"], "type": r["type"],
                          "params": [(p["name"], p["position"], p["param_type"],
                                      SAME_TYPE.get(p["type"], p["type"])) for p in r["params"]]}
                      for n, r in items.items()}
        assert got["postgresql"] == got["mysql"], got


@pytest.mark.parametrize("tool, args", [
    ("call_stored_function", {"functionName": "add_ints", "parameters": {"a": 2, "b": 3}}),
    ("call_stored_function", {"functionName": "add_ints", "parameters": [2, 3], "returns": "string"}),
    ("call_stored_function", {"functionName": "add_ints", "parameters": {"params": [{"name": "a", "value": 2},
                                                                                     {"name": "b", "value": 3}]}}),
    ("call_stored_function", {"functionName": "greet", "parameters": {"who": "Zoë", "greeting": "Hej"}}),
    ("call_stored_function", {"functionName": "is_big", "parameters": ["250.5"]}),
    ("call_stored_function", {"functionName": "is_big", "parameters": [1], "returns": "integer"}),
    ("call_stored_procedure", {"procedureName": "restock", "parameters": {"p_sku": "a", "amount": 3, "p_qty": 4}}),
    ("call_stored_procedure", {"procedureName": "restock", "parameters": ["zz", 3]}),
    ("call_stored_procedure", {"procedureName": "add_item", "parameters": ["parity", 2]}),
])
def test_routine_calls_agree(routine_clients, tool, args):
    clients, dbs = routine_clients
    for db in dbs.values():
        db.reset_items()
    got = {k: c.data(tool, args) for k, c in clients.items()}
    assert got["postgresql"] == got["mysql"], got
    rows = {k: db.sql("SELECT id, sku, qty FROM items ORDER BY id") for k, db in dbs.items()}
    assert rows["postgresql"] == rows["mysql"]


@pytest.mark.parametrize("tool, args", [
    ("call_stored_function", {"functionName": "add_ints", "parameters": {"a": 1, "c": 2}}),
    ("call_stored_function", {"functionName": "add_ints", "parameters": {"a": 1}}),
    ("call_stored_function", {"functionName": "add_ints", "parameters": [1, 2, 3]}),
    ("call_stored_function", {"functionName": "add_intz", "parameters": [1, 2]}),
    ("call_stored_procedure", {"procedureName": "restock", "parameters": ["a", 1, 2, 3]}),
])
def test_routine_errors_agree(routine_clients, tool, args):
    clients, _ = routine_clients
    texts = {k: c.error_text(tool, args) for k, c in clients.items()}
    assert texts["postgresql"] == texts["mysql"], texts
