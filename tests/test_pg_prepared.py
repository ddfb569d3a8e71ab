"""PostgreSQL reads as server-side prepared statements (service setting ``prepared_statements``).

A SQL text the service runs again is prepared once per connection (``PREPARE mcpf_<n>
(types) AS ...``) and then run as ``EXECUTE mcpf_<n>(values)``: PostgreSQL skips the
parse and analysis of every call.  These tests drive the real tool path
(``get_table_data`` through the app) and ``Database.read`` against a real server, and
watch the statements on the wire with ``WireProxy`` (tests/wire_proxy.py) and the
session's ``pg_prepared_statements``.  Nothing is mocked.

Every app has ``pool_size = 1``, so "the pooled connection" is one known session.
"""
from __future__ import annotations

import time
import urllib.parse
from contextlib import contextmanager

import pytest

from conftest import McpTestClient, make_settings
from dialect_fixtures import _pg_db
from mcp_flask import close_app, create_app
from mcp_flask.dialects import pg_prepared
from mcp_flask.errors import ConfigError, DatabaseError
from wire_proxy import WireProxy

TEN_ROWS = {"tableName": "books", "filter": "id > 0 and id < 1000", "order": "id", "limit": 10}
ODD_TABLE = "odd%s table"


@pytest.fixture(scope="module")
def pgdb():
    """The shared dataset, plus a table whose names hold ``%`` (psycopg2's placeholder sign)."""
    db = _pg_db()
    db.load()
    db.execute('CREATE TABLE "odd%s table" ("id" INTEGER PRIMARY KEY, "pct%s" TEXT, "100%" INTEGER)')
    db.execute('INSERT INTO "odd%%s table" VALUES (1, %s, 10), (2, %s, 20), (3, %s, 30)',
               ("a%b", "50%_off", "plain"))
    try:
        yield db
    finally:
        db.close()


def settled(proxy: WireProxy) -> list[str]:
    """``proxy.take()`` once the proxy's reader thread has recorded everything: it forwards a
    message before parsing it, so the answer can reach us before the statement is listed."""
    deadline = time.monotonic() + 2.0
    seen = -1
    while time.monotonic() < deadline and len(proxy.statements) != seen:
        seen = len(proxy.statements)
        time.sleep(0.02)
    return proxy.take()


class Served:
    """An app on the test database through a ``WireProxy``; ``.client``, ``.database``, ``.proxy``."""

    def __init__(self, client, database, proxy):
        self.client, self.database, self.proxy = client, database, proxy

    def rows(self, args: dict) -> list[dict]:
        return self.client.data("get_table_data", args)["resource"]

    def verbs(self) -> list[str]:
        """The first word of each statement sent since the last call (and forget them)."""
        return [s.split(None, 1)[0].upper() for s in settled(self.proxy)]

    def prepared(self) -> list[tuple[str, str]]:
        """``(name, statement)`` of every statement prepared in the pooled connection's session."""
        conn = self.database.pool.acquire()
        try:
            cur = conn.cursor()
            cur.execute("SELECT name, statement FROM pg_prepared_statements ORDER BY prepare_time, name")
            out = cur.fetchall()
            cur.close()
        finally:
            self.database.pool.release(conn)
        settled(self.proxy)
        return out

    def raw(self, sql: str) -> None:
        """Run ``sql`` (no parameters) on the pooled connection, outside the dialect."""
        conn = self.database.pool.acquire()
        try:
            cur = conn.cursor()
            cur.execute(sql)
            cur.close()
        finally:
            self.database.pool.release(conn)
        settled(self.proxy)


@contextmanager
def serve(pgdb, tmp_path, **service):
    parts = urllib.parse.urlsplit(pgdb.url)
    proxy = WireProxy("postgresql", parts.hostname or "127.0.0.1", parts.port or 5432)
    netloc = parts.netloc.rsplit("@", 1)
    host_port = f"127.0.0.1:{proxy.port}"
    netloc = f"{netloc[0]}@{host_port}" if len(netloc) == 2 else host_port
    url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    app = create_app(make_settings({"db": {"url": url, "pool_size": 1, **service}}, data_dir=str(tmp_path)),
                     check_databases=False)
    try:
        client = McpTestClient(app, service="db")
        client.initialize()
        client.data("get_tables")                    # the catalog is read (and cached) before we count
        settled(proxy)
        yield Served(client, app.extensions["mcp_flask"]["services"]["db"].database, proxy)
    finally:
        close_app(app)
        proxy.close()


@pytest.fixture
def served(pgdb, tmp_path):
    with serve(pgdb, tmp_path) as s:
        yield s


# ---------------------------------------------------------------- reuse
def test_repeated_reads_prepare_once_then_execute(served, pgdb):
    expected = [r["id"] for r in served.rows(TEN_ROWS)]
    assert expected == pgdb.ids("SELECT id FROM books WHERE id > 0 AND id < 1000 ORDER BY id LIMIT 10")
    assert served.verbs() == ["SELECT"]              # a first run stays plain (it may be a one-off)
    assert [r["id"] for r in served.rows(TEN_ROWS)] == expected
    assert served.verbs() == ["PREPARE", "EXECUTE"]
    for _ in range(3):
        assert [r["id"] for r in served.rows(TEN_ROWS)] == expected
        sent = settled(served.proxy)
        assert len(sent) == 1 and sent[0].startswith("EXECUTE mcpf_1(0, 1000) -- SELECT"), sent
        # The statement rides along as a comment: pg_stat_activity shows what runs.
        assert 'FROM "public"."books"' in sent[0]
    statements = served.prepared()
    assert len(statements) == 1
    name, text = statements[0]
    assert name == "mcpf_1" and text.startswith("PREPARE mcpf_1 (int4, int4) AS SELECT")
    assert text.endswith("LIMIT 11")                  # a literal: see the next test
    # Other values, same shape: the same statement.
    other = dict(TEN_ROWS, filter="id > 5 and id < 9")
    assert [r["id"] for r in served.rows(other)] == [6, 7, 8]
    assert settled(served.proxy)[0].startswith("EXECUTE mcpf_1(5, 9)")


def test_the_hot_read_runs_on_a_generic_plan(served):
    """The point of preparing: after five custom plans PostgreSQL settles on the generic
    plan and stops planning.  It would not with ``LIMIT $n`` (a generic plan's LIMIT is a
    guess), which is why the LIMIT is written as a literal when statements are prepared."""
    for _ in range(15):                              # 1 plain, then 14 EXECUTEs
        served.rows(TEN_ROWS)
    conn = served.database.pool.acquire()
    try:
        cur = conn.cursor()
        cur.execute("SELECT generic_plans, custom_plans FROM pg_prepared_statements")
        (generic, custom), = cur.fetchall()
        cur.close()
    finally:
        served.database.pool.release(conn)
    assert custom <= 5 and generic >= 9, (generic, custom)


def test_different_shapes_get_different_statements(served):
    by_title = dict(TEN_ROWS, order="title")
    for _ in range(2):
        served.rows(TEN_ROWS)
        served.rows(by_title)
    settled(served.proxy)
    assert served.rows(by_title)[0]["title"] == "A Discipline of Programming"
    assert served.rows(TEN_ROWS)[0]["id"] == 1
    assert [s.split("(")[0] for s in settled(served.proxy)] == ["EXECUTE mcpf_2", "EXECUTE mcpf_1"]
    statements = dict(served.prepared())
    assert set(statements) == {"mcpf_1", "mcpf_2"}
    assert 'ORDER BY "title"' in statements["mcpf_2"] and 'ORDER BY "id"' in statements["mcpf_1"]


def test_a_read_inside_a_transaction_executes_but_never_prepares(served):
    """``includeCount`` reads page and count in one read-only transaction."""
    page = {"tableName": "books", "order": "id", "limit": 3}
    counted = dict(page, includeCount=True)
    for _ in range(3):
        assert served.client.data("get_table_data", counted)["meta"]["count"] == 12
    # Inside the transaction nothing is prepared, however often it runs.
    assert "PREPARE" not in served.verbs() and served.prepared() == []
    served.rows(page)
    assert served.verbs() == ["PREPARE", "EXECUTE"]  # prepared by an autocommit read...
    assert served.client.data("get_table_data", counted)["meta"]["count"] == 12
    assert served.verbs() == ["BEGIN", "EXECUTE", "SELECT", "COMMIT"]   # ...then executed inside one


# ---------------------------------------------------------------- eviction
def test_the_least_recently_used_statement_is_deallocated(served, monkeypatch):
    # Patched where the prepared-statement code reads it (pg_prepared, not postgresql).
    monkeypatch.setattr(pg_prepared, "PREPARED_PER_CONNECTION", 2)
    shapes = [dict(TEN_ROWS, order=o) for o in ("id", "title", "price")]
    for args in shapes:
        served.rows(args)
    served.rows(shapes[0])
    served.rows(shapes[1])
    settled(served.proxy)
    served.rows(shapes[2])                           # a third statement: the oldest one goes
    sent = settled(served.proxy)
    assert [s.split(None, 1)[0] for s in sent] == ["PREPARE", "DEALLOCATE", "EXECUTE"], sent
    assert sent[0].startswith("PREPARE mcpf_3 ") and sent[1] == "DEALLOCATE mcpf_1"
    assert {n for n, _ in served.prepared()} == {"mcpf_2", "mcpf_3"}
    # The evicted shape is prepared again when it comes back (evicting the next oldest),
    # and still answers.
    assert [r["id"] for r in served.rows(shapes[0])][:3] == [1, 2, 3]
    sent = settled(served.proxy)
    assert sent[0].startswith("PREPARE mcpf_4 ") and sent[1] == "DEALLOCATE mcpf_2", sent
    assert {n for n, _ in served.prepared()} == {"mcpf_3", "mcpf_4"}


# ---------------------------------------------------------------- statements PostgreSQL cannot prepare
def test_an_unpreparable_statement_runs_plain_and_is_remembered(served):
    database, dialect = served.database, served.database.dialect
    sql = "SELECT %s IS NULL"                        # $1 IS NULL: "could not determine data type"
    for _ in range(4):
        assert database.read(lambda conn: dialect.query(conn, sql, (None,)))[1] == [(True,)]
    # Run 1 plain; run 2 tries PREPARE, which fails, and answers plain; then plain only.
    assert served.verbs() == ["SELECT", "PREPARE", "SELECT", "SELECT", "SELECT"]
    assert served.prepared() == []


def test_values_compare_as_their_literals_do(served):
    """``id > 1.5`` is a numeric comparison in plain SQL; a parameter inferred from ``id``
    (integer) would round 1.5 to 2 and lose row 2.  The declared types prevent that."""
    database, dialect = served.database, served.database.dialect
    sql = "SELECT count(*) FROM books WHERE id > %s"
    for _ in range(3):
        assert database.read(lambda conn: dialect.query(conn, sql, (1.5,)))[1] == [(11,)]
    assert served.verbs() == ["SELECT", "PREPARE", "EXECUTE", "EXECUTE"]
    assert "(numeric)" in served.prepared()[0][1]
    # An integer is another statement (int4), with the same answer as plain SQL.
    for _ in range(2):
        assert database.read(lambda conn: dialect.query(conn, sql, (2,)))[1] == [(10,)]
    assert {t.split(" AS ")[0] for _, t in served.prepared()} == {"PREPARE mcpf_1 (numeric)",
                                                                  "PREPARE mcpf_2 (int4)"}


# ---------------------------------------------------------------- errors
def _error(database, sql, params):
    dialect = database.dialect
    with pytest.raises(DatabaseError) as info:
        database.read(lambda conn: dialect.query(conn, sql, params))
    e = info.value
    return type(e), e.kind, e.message, e.details


def test_errors_map_exactly_as_plain_sql(served):
    database = served.database
    plain = _error(database, "SELECT 1 / %s", (0,))
    assert served.verbs() == ["SELECT"]
    assert _error(database, "SELECT 1 / %s", (0,)) == plain
    assert served.verbs() == ["PREPARE", "EXECUTE"]
    assert _error(database, "SELECT 1 / %s", (0,)) == plain
    assert served.verbs() == ["EXECUTE"]
    assert "mcpf" not in plain[2] and "SELECT" not in plain[2]
    # A value that does not fit: the same 22P02 either way (the failed PREPARE never shows).
    sql = "SELECT id FROM books WHERE id = %s"
    bad = _error(database, sql, ("abc",))
    assert _error(database, sql, ("abc",)) == bad == _error(database, sql, ("abc",))
    assert bad[1] == "type"


def test_a_column_type_change_between_identical_reads(served, pgdb):
    args = {"tableName": "books", "fields": "id,pages", "filter": "id < 4", "order": "id"}
    before = served.rows(args)
    assert served.rows(args) == before
    settled(served.proxy)
    pgdb.execute("ALTER TABLE books ALTER COLUMN pages TYPE bigint")
    try:
        # "cached plan must not change result type": dropped, answered by the plain SQL.
        assert served.rows(args) == before
        assert served.verbs() == ["EXECUTE", "DEALLOCATE", "SELECT"]
        assert served.rows(args) == before
        assert served.verbs() == ["PREPARE", "EXECUTE"]
        assert [n for n, _ in served.prepared()] == ["mcpf_2"]
    finally:
        pgdb.execute("ALTER TABLE books ALTER COLUMN pages TYPE integer")


def test_a_column_type_change_inside_a_transaction_is_answered_by_a_second_try(served, pgdb):
    page = {"tableName": "books", "fields": "id,pages", "order": "id", "limit": 3}
    counted = dict(page, includeCount=True)
    served.rows(page)
    served.rows(page)
    settled(served.proxy)
    pgdb.execute("ALTER TABLE books ALTER COLUMN pages TYPE bigint")
    try:
        # Inside the read-only transaction the stale plan aborts it; the statement is
        # forgotten and the read-only transaction runs once more, planned afresh: the
        # caller gets its rows, never the schema change as an error.
        got = served.client.data("get_table_data", counted)
        assert got["meta"]["count"] == 12 and [r["id"] for r in got["resource"]] == [1, 2, 3]
        verbs = served.verbs()
        assert verbs[:2] == ["BEGIN", "EXECUTE"] and verbs.count("BEGIN") == 2, verbs
        assert verbs[-3:] == ["SELECT", "SELECT", "COMMIT"], verbs
        # The old statement is deallocated once the connection is idle, and the read is
        # prepared afresh.
        assert [r["id"] for r in served.rows(page)] == [1, 2, 3]
        assert served.verbs()[0] == "DEALLOCATE"
        assert [n for n, _ in served.prepared()] == ["mcpf_2"]
    finally:
        pgdb.execute("ALTER TABLE books ALTER COLUMN pages TYPE integer")


def test_only_a_stale_plan_repeats_a_read_only_transaction(served):
    """The second try is for a stale plan alone, and only one: any other error inside
    the transaction is the caller's after one attempt, and a plan stale twice fails."""
    from mcp_flask.errors import DatabaseError

    def failing(stale: bool, times: int):
        attempts = []

        def work(conn):
            attempts.append(conn)
            if len(attempts) <= times:
                exc = DatabaseError("boom")
                if stale:
                    exc.stale_plan = True
                raise exc
            return "rows"
        return work, attempts

    work, attempts = failing(stale=False, times=1)
    with pytest.raises(DatabaseError):
        served.database.read(work, single=False)
    assert len(attempts) == 1

    work, attempts = failing(stale=True, times=1)
    assert served.database.read(work, single=False) == "rows" and len(attempts) == 2

    work, attempts = failing(stale=True, times=2)
    with pytest.raises(DatabaseError):
        served.database.read(work, single=False)
    assert len(attempts) == 2
    assert served.database.pool.stats()["in_use"] == 0


def test_statements_lost_by_deallocate_all_are_prepared_again(served):
    expected = served.rows(TEN_ROWS)
    served.rows(TEN_ROWS)
    served.raw("DEALLOCATE ALL")
    assert served.rows(TEN_ROWS) == expected
    assert served.verbs() == ["EXECUTE", "SELECT"]    # 26000, then the plain SQL answers
    assert served.rows(TEN_ROWS) == expected
    assert served.verbs() == ["PREPARE", "EXECUTE"]


# ---------------------------------------------------------------- the setting
def test_prepared_statements_off_sends_plain_sql(pgdb, tmp_path):
    with serve(pgdb, tmp_path, prepared_statements=False) as s:
        expected = s.rows(TEN_ROWS)
        for _ in range(4):
            assert s.rows(TEN_ROWS) == expected
        assert s.verbs() == ["SELECT"] * 5
        assert s.prepared() == []


def test_the_setting_is_checked():
    with pytest.raises(ConfigError) as info:
        make_settings({"db": {"url": "postgresql://u@h/d", "prepared_statements": "no"}})
    assert "services.db.prepared_statements" in str(info.value)
    assert make_settings({"db": {"url": "postgresql://u@h/d"}}).services["db"].prepared_statements is True


# ---------------------------------------------------------------- % in names and values
def test_identifiers_holding_percent(served, pgdb):
    args = {"tableName": ODD_TABLE, "fields": "id,pct%s,100%", "filter": "id >= 2", "order": "pct%s"}
    expected = [{"id": 2, "pct%s": "50%_off", "100%": 20}, {"id": 3, "pct%s": "plain", "100%": 30}]
    for _ in range(3):
        assert served.rows(args) == expected
    assert served.verbs() == ["SELECT", "PREPARE", "EXECUTE", "EXECUTE"]
    (_, text), = served.prepared()
    # psycopg2 turned the doubled %% back into one: the session holds the real names.
    assert '"odd%s table"' in text and '"pct%s"' in text and '"100%"' in text and "%%" not in text


def test_in_lists_and_like_patterns_with_percent(served, pgdb):
    cases = [
        ({"tableName": "books", "filter": "id in (1, 2, 3) or title contains '100%'", "order": "id"},
         [1, 2, 3, 6]),
        ({"tableName": "tags", "filter": "name like '50%'", "order": "id"}, [4]),
        ({"tableName": "tags", "filter": "name like '%\\_off'", "order": "id"}, [4]),
        ({"tableName": "authors", "filter": "name starts with '100%' or id in (7, 8)", "order": "id"},
         [5, 7, 8]),
    ]
    for args, ids in cases:
        for _ in range(3):
            assert [r["id"] for r in served.rows(args)] == ids, args
        assert served.verbs()[-1] == "EXECUTE", args
    # The two LIKE filters on tags are one shape (the pattern is a bound value).
    assert len(served.prepared()) == 3


# ---------------------------------------------------------------- the kept cursor
def _pooled_state(served):
    conn = served.database.pool.acquire()
    served.database.pool.release(conn)
    return conn, conn.mcpf_statements


def test_the_execute_cursor_is_reused_without_leaking_an_earlier_result(served):
    """The connection keeps the cursor of its last small EXECUTE; every call sees only its
    own rows and columns, also after an error and after a statement without rows."""
    db, dialect = served.database, served.database.dialect
    few = dict(TEN_ROWS, limit=2)
    for _ in range(3):                               # plain, then PREPARE + EXECUTE, then EXECUTE
        assert [r["id"] for r in served.rows(few)] == [1, 2]
    conn, state = _pooled_state(served)
    # The tool's reads go straight to JSON: they keep their own cursor (pg_json_values).
    kept = state.json_cursor
    assert kept is not None and not kept.closed
    assert [r["id"] for r in served.rows(few)] == [1, 2]
    assert state.json_cursor is kept                 # the same cursor served that call
    narrow = dict(TEN_ROWS, fields="id", filter="id > 2 and id < 5")
    for _ in range(3):
        assert served.rows(narrow) == [{"id": 3}, {"id": 4}]
    assert state.json_cursor is kept
    # No rows at all: nothing of the earlier result (rows, columns) shows through.
    empty = dict(TEN_ROWS, filter="id > 5000 and id < 6000")
    for _ in range(3):
        assert served.rows(empty) == []

    # An error closes the cursor (a fresh one serves the next call); the answer is unchanged.
    sql = "SELECT 10 / (id - %s) AS q FROM books WHERE id = %s"
    for _ in range(3):                               # prepared, then EXECUTEd on the kept cursor
        assert db.read(lambda c: dialect.query(c, sql, (2, 1))) == (["q"], [(-10,)])
    kept = state.cursor
    assert kept is not None and kept is not state.json_cursor
    assert db.read(lambda c: dialect.query(c, sql, (2, 1))) == (["q"], [(-10,)])
    assert state.cursor is kept
    with pytest.raises(DatabaseError):
        db.read(lambda c: dialect.query(c, sql, (1, 1)))
    assert state.cursor is None and kept.closed
    assert db.read(lambda c: dialect.query(c, sql, (3, 1))) == (["q"], [(-5,)])
    assert state.cursor is not None and state.cursor is not kept


def test_a_large_result_closes_the_cursor_instead_of_keeping_it(served, monkeypatch):
    monkeypatch.setattr(pg_prepared, "REUSE_CURSOR_ROWS", 3)
    db, dialect = served.database, served.database.dialect
    sql = "SELECT id FROM books WHERE id < %s ORDER BY id"
    for _ in range(3):
        assert db.read(lambda c: dialect.query(c, sql, (3,)))[1] == [(1,), (2,)]
    conn, state = _pooled_state(served)
    kept = state.cursor
    assert kept is not None
    # Four rows: more than REUSE_CURSOR_ROWS, so the cursor (holding them) is closed.
    assert db.read(lambda c: dialect.query(c, sql, (5,)))[1] == [(1,), (2,), (3,), (4,)]
    assert state.cursor is None and kept.closed
    assert db.read(lambda c: dialect.query(c, sql, (2,)))[1] == [(1,)]
    assert state.cursor is not None


def test_closing_the_connection_drops_its_kept_cursor(served):
    db, dialect = served.database, served.database.dialect
    for _ in range(3):
        served.rows(TEN_ROWS)                        # the tool's read: the JSON cursor
        db.read(lambda c: dialect.query(c, "SELECT id FROM books WHERE id = %s", (1,)))
    conn, state = _pooled_state(served)
    assert state.cursor is not None and state.json_cursor is not None
    dialect.close(conn)
    assert state.cursor is None and state.json_cursor is None and conn.closed
