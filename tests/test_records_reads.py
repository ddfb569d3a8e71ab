"""record_reads' hot-path caches and builders, without a database: each must give exactly what
the plain code gives (``to_dicts`` vs ``dict(zip())``, the cached SELECT vs a fresh
``dialect.select_sql``), keep tables and dialects apart, and stay bounded."""
from __future__ import annotations

import datetime
from decimal import Decimal
from itertools import repeat

import pytest

from mcp_flask.config import ServiceConfig
from mcp_flask.dialects import dialect_for
from mcp_flask.metadata import Column, Table
from mcp_flask.tools import record_reads as rr

URLS = {"sqlite": "sqlite:///:memory:", "postgresql": "postgresql://postgres@127.0.0.1/x",
        "mysql": "mysql://root@127.0.0.1/x"}


def plain(rows, keys):
    return list(map(dict, map(zip, repeat(keys), rows)))


# ---------------------------------------------------------------------------- to_dicts
@pytest.mark.parametrize("width", [1, 2, 6, 40, rr.GENERATED_MAX_WIDTH, rr.GENERATED_MAX_WIDTH + 1, 300])
@pytest.mark.parametrize("extra", [0, 2])
def test_to_dicts_equals_dict_zip(width, extra):
    keys = [f"c{i}" for i in range(width)]
    rows = [tuple(range(r, r + width + extra)) for r in range(5)]
    got = rr.to_dicts(rows, keys, [])
    assert got == plain(rows, keys)
    assert [list(d) for d in got] == [keys] * 5             # key order too


def test_to_dicts_column_names_are_data_never_code():
    # Names that would be code if they ever reached the generated source.
    keys = ["a'], __import__('os').system('false') #", "}", "k0", "v0", "rows", "keys", "", "x y"]
    rows = [tuple(range(len(keys))), tuple(range(10, 10 + len(keys)))]
    assert rr.to_dicts(rows, keys, []) == plain(rows, keys)
    assert rr.to_dicts([r + ("helper",) for r in rows], keys, []) == plain(rows, keys)


def test_to_dicts_repeated_key_keeps_the_last_value_like_dict_zip():
    rows = [(1, 2, 3)]
    assert rr.to_dicts(rows, ["a", "a", "b"], []) == plain(rows, ["a", "a", "b"]) == [{"a": 2, "b": 3}]


def test_to_dicts_with_decoders_and_empty_input():
    keys = ["id", "price", "at"]
    rows = [(1, "1.50", None, "h"), (2, None, "2024-01-01", "h")]
    decoders = [(1, Decimal), (2, datetime.date.fromisoformat)]
    assert rr.to_dicts(rows, keys, decoders) == [
        {"id": 1, "price": Decimal("1.50"), "at": None},
        {"id": 2, "price": None, "at": datetime.date(2024, 1, 1)}]
    assert rr.to_dicts([], keys, decoders) == [] and rr.to_dicts([], keys, []) == []
    assert rr.to_dicts([(1,), (2,)], [], []) == [{}, {}]


# ---------------------------------------------------------------------------- select_sql cache
def dialect(kind: str):
    return dialect_for(ServiceConfig(name=kind, url=URLS[kind]))


def make_table(name="items", schema=None):
    return Table(name=name, schema=schema, columns=[
        Column("id", "integer", "integer", is_primary_key=True),
        Column("na\"me`x", "string", "varchar(20)"),
        Column("qty", "integer", "integer")])


def fresh(table, d, sel, where, params, order, limit, offset):
    return d.select_sql(table, sel.exprs, where, list(params), order, limit, offset)


@pytest.mark.parametrize("kind", sorted(URLS))
def test_cached_select_sql_equals_a_fresh_build(kind):
    d = dialect(kind)
    table = make_table()
    sel = rr.cached_select(table, d, None)
    order = rr.plain_order(table, "qty desc")
    where, params = rr.filter_sql(table, d, "id > 5 and qty >= 0", None)
    for limit, offset in [(11, 0), (11, 0), (101, 30), (11, 0), (1, 7)]:
        want = fresh(table, d, sel, where, params, order, limit, offset)
        p = list(params)
        got = rr.select_sql(table, d, sel, where, p, order, limit, offset)
        assert got == want
        assert got[1] is not p                       # the caller's list is never handed back changed
        assert p == params
    assert d.quote('na"me`x') in got[0]               # identifiers still quoted by the dialect
    # Same WHERE text, other bound values: the values are this call's, not the cached ones.
    where2, params2 = rr.filter_sql(table, d, "id > :a and qty >= :b", {"a": 1, "b": 2})
    where3, params3 = rr.filter_sql(table, d, "id > :a and qty >= :b", {"a": 9, "b": 8})
    assert where2 == where3
    first = rr.select_sql(table, d, sel, where2, params2, order, 11, 0)
    second = rr.select_sql(table, d, sel, where3, params3, order, 11, 0)
    assert first == fresh(table, d, sel, where2, params2, order, 11, 0)
    assert second == fresh(table, d, sel, where3, params3, order, 11, 0)
    assert first[0] == second[0] and first[1] != second[1]


def test_select_sql_cache_keeps_tables_and_dialects_apart():
    pg, my = dialect("postgresql"), dialect("mysql")
    t1, t2 = make_table("items"), make_table("other", schema="s")
    for d in (pg, my):
        for t in (t1, t2):
            sel = rr.cached_select(t, d, None)
            order = rr.plain_order(t, None)
            got = rr.select_sql(t, d, sel, "", [], order, 11, 0)
            assert got == fresh(t, d, sel, "", [], order, 11, 0)
            assert d.table_sql(t) in got[0]
    # One table object read through two dialects: never the other dialect's text.
    sel_pg = rr.cached_select(t1, pg, None)
    order = rr.plain_order(t1, None)
    a = rr.select_sql(t1, pg, sel_pg, "", [], order, 11, 0)
    b = rr.select_sql(t1, my, sel_pg, "", [], order, 11, 0)
    assert a == fresh(t1, pg, sel_pg, "", [], order, 11, 0)
    assert b == fresh(t1, my, sel_pg, "", [], order, 11, 0)
    # A refreshed table (a new object) starts with nothing cached.
    assert "_record_sql" not in make_table().__dict__


def test_select_sql_cache_needs_the_same_select_and_order_objects():
    d = dialect("postgresql")
    table = make_table()
    sel = rr.cached_select(table, d, None)
    order = rr.plain_order(table, "id")
    rr.select_sql(table, d, sel, "", [], order, 11, 0)
    narrow = rr.plain_select(table, d, [table.column("qty")])
    other_order = [("qty", "DESC", None), ("id", "ASC", None)]
    got = rr.select_sql(table, d, narrow, "", [], other_order, 11, 0)
    assert got == fresh(table, d, narrow, "", [], other_order, 11, 0)
    assert '"qty" DESC' in got[0] and '"na' not in got[0]


def test_select_sql_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(rr, "SELECT_SQL_CACHE", 8)
    d = dialect("sqlite")
    table = make_table()
    sel = rr.cached_select(table, d, None)
    order = rr.plain_order(table, None)
    for offset in range(1, 40):
        got = rr.select_sql(table, d, sel, "", [], order, 11, offset)
        assert got == fresh(table, d, sel, "", [], order, 11, offset)
        assert len(table.__dict__["_record_sql"]) <= 8


def test_select_sql_is_not_cached_when_the_dialect_does_not_pass_values_through():
    d = dialect("sqlite")
    table = make_table()
    sel = rr.cached_select(table, d, None)
    order = rr.plain_order(table, None)
    calls = []

    class Rebinding(type(d)):
        def select_sql(self, table, columns, where="", where_params=(), order=(), limit=None, offset=None,
                       group=()):
            calls.append(1)
            sql, params = super().select_sql(table, columns, where, where_params, order, limit, offset, group)
            return sql, [str(p) for p in params]          # values changed: nothing may be kept

    r = Rebinding(d.service)
    for value in (1, 2):
        assert rr.select_sql(table, r, sel, "id = ?", [value], order, 11, 0) == \
            ("SELECT " + ", ".join(sel.exprs) + ' FROM "items" WHERE id = ? ORDER BY "id" ASC LIMIT ?',
             [str(value), "11"])
    assert len(calls) == 2


# ---------------------------------------------------------------------------- role row filters
@pytest.fixture
def books(tmp_path):
    import sqlite3
    from mcp_flask.database import Database
    path = str(tmp_path / "rf.db")
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE books (id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL, title TEXT NOT NULL);
        INSERT INTO books VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 2, 'c'), (4, 3, 'd');
    """)
    conn.commit()
    conn.close()
    from mcp_flask.config import RoleConfig
    roles = {"one": RoleConfig(row_filters={"books": "author_id = {role.a}"}, values={"a": 1}),
             "two": RoleConfig(row_filters={"books": "author_id >= {role.a}"}, values={"a": 2}),
             "broken": RoleConfig(row_filters={"books": "nosuch = 1"})}
    database = Database(ServiceConfig(name="rf", url="sqlite:///" + path, roles=roles))
    yield database
    database.close()


def read_ids(database, role, access_cls=None):
    import importlib
    from mcp_flask.access import Access
    from mcp_flask.tools import TOOLS
    from mcp_flask.tools.registry import ToolContext
    importlib.import_module("mcp_flask.tools.records")      # registers the record tools
    cls = access_cls or Access
    ctx = ToolContext(database=database, access=cls(database.config, role, database.config.roles[role]))
    out = TOOLS["get_table_data"].handler(ctx, {"tableName": "books", "order": "id"})
    return [r["id"] for r in out["resource"]]


def test_role_row_filters_are_compiled_once_and_kept_per_role(books):
    for _ in range(3):
        assert read_ids(books, "one") == [1, 2]
        assert read_ids(books, "two") == [3, 4]
    base = books.table("books")
    cache = base.__dict__["_role_filters"]
    assert len(cache) == 2                                   # one entry per role, reused
    entries = sorted(cache.values(), key=lambda e: e[0][0])
    assert [e[2] for e in entries] == ['("author_id" = ?)', '("author_id" >= ?)']
    assert [e[3] for e in entries] == [[1], [2]]             # values bound, never in the text


def test_cached_row_filter_equals_a_fresh_compile(books):
    from mcp_flask.access import Access
    from mcp_flask.dialects.where import compile_filter_text
    from mcp_flask.tools.registry import ToolContext
    table = books.table("books")
    acc = Access(books.config, "one", books.config.roles["one"])
    ctx = ToolContext(database=books, access=acc)
    want = compile_filter_text("author_id = {role.a}", table, books.dialect, None, {"role.a": 1})
    first = rr.row_filter(ctx, "read", table, books.dialect)
    again = rr.row_filter(ctx, "read", table, books.dialect)
    assert first == again == want
    again[1].append("x")                                     # a caller's list is its own
    assert rr.row_filter(ctx, "read", table, books.dialect) == want
    # Another dialect object never gets this one's entry.
    other = dialect("postgresql")
    assert rr.row_filter(ctx, "read", table, other) == compile_filter_text(
        "author_id = {role.a}", table, other, None, {"role.a": 1})


def test_broken_row_filter_is_refused_every_time(books):
    from mcp_flask.errors import PermissionDenied
    for _ in range(3):
        with pytest.raises(PermissionDenied):
            read_ids(books, "broken")
    assert not books.table("books").__dict__.get("_role_filters")


def test_other_row_filter_hooks_are_not_cached(books):
    from mcp_flask.access import Access
    seen = []

    class PerCall(Access):
        def row_filter(self, verb, table):
            seen.append(1)
            return ("author_id = {user.a}", {"user": {"a": len(seen)}})   # a new answer each call

    assert read_ids(books, "one", PerCall) == [1, 2]
    assert read_ids(books, "one", PerCall) == [3]
    assert not books.table("books").__dict__.get("_role_filters")


def test_role_filter_cache_is_bounded(books, monkeypatch):
    from mcp_flask.access import Access
    from mcp_flask.config import RoleConfig
    from mcp_flask.tools.registry import ToolContext
    monkeypatch.setattr(rr, "ROLE_FILTER_CACHE", 4)
    table = books.table("books")
    for i in range(20):
        role = RoleConfig(row_filters={"books": "author_id = {role.a}"}, values={"a": i})
        ctx = ToolContext(database=books, access=Access(books.config, f"r{i}", role))
        assert rr.row_filter(ctx, "read", table, books.dialect)[1] == [i]
        assert len(table.__dict__["_role_filters"]) <= 4
