"""The PostgreSQL dialect against a real server (never mocks).

A throw-away database ``mcpf_test_<random>`` is created for this module from
``tests/pg_fixture.sql`` and dropped afterwards.  The server comes from
``MCP_FLASK_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``);
when it is unreachable the module is skipped, unless ``MCP_FLASK_REQUIRE_DBS=1``
(CI), in which case it fails.

No sleeps to wait for things: every wait polls with a deadline.
"""
from __future__ import annotations

import base64
import datetime as dt
import os
import pathlib
import socket
import threading
import time
import tracemalloc
import urllib.parse
import uuid
from decimal import Decimal

import pytest

psycopg2 = pytest.importorskip("psycopg2")
import psycopg2.extensions as pgext  # noqa: E402

from mcp_flask.config import ServiceConfig  # noqa: E402
from mcp_flask.dialects import dialect_for  # noqa: E402
from mcp_flask.dialects.postgresql import (PostgresDialect, array_literal, literal_default,  # noqa: E402
                                           parse_array)
from mcp_flask.errors import (DatabaseError, DatabaseUnavailable, InvalidArguments,  # noqa: E402
                              McpFlaskError, QueryTimeout)

PG_URL = os.environ.get("MCP_FLASK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE = os.environ.get("MCP_FLASK_REQUIRE_DBS") == "1"
FIXTURE = pathlib.Path(__file__).with_name("pg_fixture.sql")
UTC = dt.timezone.utc


# ------------------------------------------------------------------ fixtures
def _url_for(dbname: str) -> str:
    parts = urllib.parse.urlsplit(PG_URL)
    return urllib.parse.urlunsplit(parts._replace(path="/" + dbname))


_UNREACHABLE: list[str] = []       # remembered so a dead server is tried once per run


def _admin_connect():
    if not _UNREACHABLE:
        try:
            conn = psycopg2.connect(PG_URL, connect_timeout=3)
            conn.autocommit = True
            return conn
        except psycopg2.OperationalError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
            _UNREACHABLE.append(f"PostgreSQL is not reachable (MCP_FLASK_TEST_PG): {reason}")
    if REQUIRE:
        pytest.fail(_UNREACHABLE[0])
    pytest.skip(_UNREACHABLE[0])


@pytest.fixture(scope="module")
def admin():
    """An autocommit connection to the server's maintenance database."""
    conn = _admin_connect()
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def db_url(admin):
    """URL of a fresh database loaded with the fixture; dropped at the end of the module."""
    name = "mcpf_test_" + uuid.uuid4().hex[:12]
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = psycopg2.connect(_url_for(name))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(FIXTURE.read_text())
        conn.close()
        yield _url_for(name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_service(url: str, **kw) -> ServiceConfig:
    kw.setdefault("extra_schemas", ("other",))
    return ServiceConfig(name="pgtest", url=url, **kw)


@pytest.fixture(scope="module")
def dialect(db_url) -> PostgresDialect:
    return PostgresDialect(make_service(db_url))


@pytest.fixture(scope="module")
def catalog(dialect):
    conn = dialect.connect()
    try:
        return dialect.introspect(conn)
    finally:
        conn.close()


@pytest.fixture
def conn(dialect):
    c = dialect.connect()
    yield c
    if not c.closed:
        try:
            dialect.reset(c)
        except McpFlaskError:
            pass
        c.close()


def wait_until(predicate, timeout=5.0, interval=0.01, sleep=time.sleep):
    """Poll ``predicate`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        sleep(interval)
    raise AssertionError("condition not reached before the deadline")


def backend_is_sleeping(admin_conn, pid) -> bool:
    with admin_conn.cursor() as cur:
        cur.execute("SELECT state, query FROM pg_stat_activity WHERE pid = %s", (pid,))
        row = cur.fetchone()
    return bool(row and row[0] == "active" and "pg_sleep" in row[1])


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------ dispatch
def test_dialect_for_postgres_urls(db_url):
    assert isinstance(dialect_for(make_service(db_url)), PostgresDialect)
    assert isinstance(dialect_for(make_service(db_url.replace("postgresql:", "postgres+psycopg2:", 1))),
                      PostgresDialect)


# ------------------------------------------------------------------ introspection: tables
EXPECTED_TABLES = ["active_customers", "audit", "customer_tags", "customers", "events", "line_notes",
                   "order_counts", "order_lines", "orders", "pct%table", "products", "tags",
                   "other.carriers", "other.shipments"]


def test_tables_default_schema_bare_then_extra_schema_qualified(catalog):
    assert list(catalog.tables) == EXPECTED_TABLES     # partitions and hidden.* left out


def test_table_attributes(catalog):
    ship = catalog.tables["other.shipments"]
    assert (ship.schema, ship.native_name, ship.is_view, ship.comment) == ("other", "shipments", False, "Parcels")
    cust = catalog.tables["customers"]
    assert (cust.schema, cust.native_name, cust.comment) == ("public", "customers", "People who buy")
    assert catalog.tables["active_customers"].is_view
    assert catalog.tables["order_counts"].is_view          # materialized view
    assert not catalog.tables["events"].is_view            # partitioned table
    assert catalog.table("OTHER.SHIPMENTS") is ship


def _col(catalog, table, name):
    col = catalog.tables[table].column(name)
    assert col is not None, f"{table}.{name} missing"
    return col


# (name, type, db_type, length, precision, scale, default, allow_null, auto_increment,
#  is_primary_key, is_unique, is_index)
CUSTOMER_COLUMNS = [
    ("id", "id", "integer", None, None, None, "nextval('customers_id_seq'::regclass)", False, True, True, True, True),
    ("email", "string", "character varying(120)", 120, None, None, None, False, False, False, True, True),
    ("name", "text", "text", None, None, None, None, False, False, False, False, False),
    ("mood", "string", "mood", None, None, None, "ok", True, False, False, False, False),
    ("score", "decimal", "numeric(10,2)", None, 10, 2, Decimal("0.00"), True, False, False, False, False),
    ("rating", "float", "real", None, None, None, None, True, False, False, False, False),
    ("ratio", "double", "double precision", None, None, None, -1.5, True, False, False, False, False),
    ("active", "boolean", "boolean", None, None, None, True, False, False, False, False, False),
    ("tags", "array", "text[]", None, None, None, "{}", True, False, False, False, False),
    ("moods", "array", "mood[]", None, None, None, None, True, False, False, False, False),
    ("ids", "array", "uuid[]", None, None, None, None, True, False, False, False, False),
    ("profile", "jsonb", "jsonb", None, None, None, "{}", True, False, False, False, False),
    ("settings", "json", "json", None, None, None, None, True, False, False, False, False),
    ("avatar", "binary", "bytea", None, None, None, None, True, False, False, False, False),
    ("ext_id", "uuid", "uuid", None, None, None, "gen_random_uuid()", True, False, False, False, False),
    ("born", "date", "date", None, None, None, None, True, False, False, False, True),
    ("wake", "time", "time(3) without time zone", None, 3, None, None, True, False, False, False, False),
    ("wake_tz", "timetz", "time with time zone", None, None, None, None, True, False, False, False, False),
    ("created", "datetime", "timestamp without time zone", None, None, None, "now()", True, False, False, False,
     False),
    ("updated", "datetimetz", "timestamp with time zone", None, None, None, "CURRENT_TIMESTAMP", True, False,
     False, False, False),
    ("wait", "string", "interval", None, None, None, None, True, False, False, False, False),
    ("code", "string", "character(3)", 3, None, None, None, True, False, False, True, True),
    ("nick", "string", "character varying", None, None, None, None, True, False, False, False, False),
    ("small", "smallint", "smallint", None, None, None, 7, True, False, False, False, False),
    ("big", "bigint", "bigint", None, None, None, -1, True, False, False, False, False),
    ("amount", "integer", "posint", None, None, None, None, True, False, False, False, False),
    ("scode", "string", "short_code", 8, None, None, None, True, False, False, False, False),
    ("kind", "text", "text", None, None, None, "it's", True, False, False, False, False),
    ("during", "string", "int4range", None, None, None, None, True, False, False, False, False),
    ("nick_ci", "text", "citext", None, None, None, None, True, False, False, False, False),
    ("upper_email", "text", "text", None, None, None, None, True, False, False, False, False),
]


@pytest.mark.parametrize("spec", CUSTOMER_COLUMNS, ids=[c[0] for c in CUSTOMER_COLUMNS])
def test_customer_column_fields(catalog, spec):
    name, *expected = spec
    col = _col(catalog, "customers", name)
    got = [col.type, col.db_type, col.length, col.precision, col.scale, col.default, col.allow_null,
           col.auto_increment, col.is_primary_key, col.is_unique, col.is_index]
    assert got == expected
    assert type(col.default) is type(expected[5])   # 7 is an int, 0.00 a Decimal, True a bool


def test_customer_column_order_and_extras(catalog):
    cust = catalog.tables["customers"]
    assert [c.name for c in cust.columns] == [c[0] for c in CUSTOMER_COLUMNS]
    assert _col(catalog, "customers", "email").comment == "Login e-mail"
    assert _col(catalog, "customers", "mood").extra == {"picklist": ["sad", "ok", "happy"]}
    assert _col(catalog, "customers", "moods").extra == {
        "element_type": "string", "element_db_type": "mood", "element_picklist": ["sad", "ok", "happy"]}
    assert _col(catalog, "customers", "tags").extra == {"element_type": "text", "element_db_type": "text"}
    assert _col(catalog, "customers", "ids").extra["element_type"] == "uuid"
    assert _col(catalog, "customers", "wait").extra == {"pg_type": "interval"}
    gen = _col(catalog, "customers", "upper_email")
    assert gen.extra["generated"] is True and "upper" in gen.extra["generation_expression"]
    assert _col(catalog, "customers", "nick").is_unique is False     # unique index on lower(nick) only
    assert _col(catalog, "customers", "name").required
    assert not _col(catalog, "customers", "id").required
    field = _col(catalog, "customers", "mood").to_field()
    assert field["picklist"] == ["sad", "ok", "happy"] and field["type"] == "string"


def test_identity_and_serial_keys(catalog):
    pid = _col(catalog, "products", "id")
    assert (pid.type, pid.auto_increment, pid.default, pid.extra) == ("bigid", True, None, {"identity": "always"})
    nid = _col(catalog, "line_notes", "id")
    assert (nid.type, nid.auto_increment, nid.extra) == ("id", True, {"identity": "by default"})
    oid = _col(catalog, "orders", "id")
    assert (oid.type, oid.db_type, oid.auto_increment) == ("bigid", "bigint", True)
    assert oid.default == "nextval('orders_id_seq'::regclass)"


def test_composite_keys_and_unique_constraints(catalog):
    lines = catalog.tables["order_lines"]
    assert lines.primary_key == ["order_id", "line_no"]
    for name in ("order_id", "line_no"):
        col = _col(catalog, "order_lines", name)
        assert col.is_primary_key and col.is_index and not col.is_unique
    for name in ("sku", "region"):       # composite UNIQUE (sku, region): indexed, not unique alone
        col = _col(catalog, "products", name)
        assert col.is_index and not col.is_unique
    assert _col(catalog, "tags", "label").is_unique


def test_foreign_keys(catalog):
    fks = {fk.name: fk for fk in catalog.tables["order_lines"].foreign_keys}
    comp = fks["order_lines_product_fk"]
    assert (comp.columns, comp.ref_table, comp.ref_columns, comp.on_update, comp.on_delete) == (
        ("product_sku", "product_region"), "products", ("sku", "region"), "CASCADE", "SET NULL")
    simple = fks["order_lines_order_id_fkey"]
    assert (simple.columns, simple.ref_table, simple.on_update, simple.on_delete) == (
        ("order_id",), "orders", "NO ACTION", "CASCADE")
    cid = _col(catalog, "orders", "customer_id")
    assert (cid.is_foreign_key, cid.ref_table, cid.ref_field, cid.ref_on_update, cid.ref_on_delete) == (
        True, "customers", "id", "RESTRICT", "CASCADE")
    sku = _col(catalog, "order_lines", "product_sku")      # part of a composite FK
    assert sku.is_foreign_key and sku.ref_table is None
    # Across schemas: bare name for the default schema, schema.table otherwise.
    ship = {fk.name: fk for fk in catalog.tables["other.shipments"].foreign_keys}
    assert ship["shipments_order_id_fkey"].ref_table == "orders"
    assert ship["shipments_carrier_id_fkey"].ref_table == "other.carriers"
    assert catalog.tables["audit"].foreign_keys[0].ref_table == "hidden.secrets"
    notes = catalog.tables["line_notes"].foreign_keys[0]
    assert (notes.columns, notes.ref_table, notes.ref_columns) == (
        ("order_id", "line_no"), "order_lines", ("order_id", "line_no"))


def test_relations(catalog):
    def rels(table):
        return {r.name: r for r in catalog.tables[table].relations}
    cust = rels("customers")
    assert cust["orders_by_customer_id"].type == "has_many"
    m2m = cust["tags_by_customer_tags"]
    assert (m2m.type, m2m.junction_table, m2m.junction_field, m2m.junction_ref_field) == (
        "many_many", "customer_tags", ("customer_id",), ("tag_id",))
    assert rels("orders")["customers_by_customer_id"].type == "belongs_to"
    assert rels("orders")["other.shipments_by_order_id"].type == "has_many"
    comp = rels("order_lines")["products_by_product_sku_product_region"]
    assert (comp.type, comp.field, comp.ref_field) == ("belongs_to", ("product_sku", "product_region"),
                                                        ("sku", "region"))
    assert rels("other.shipments")["other.carriers_by_carrier_id"].type == "belongs_to"
    assert rels("audit") == {}                               # target not exposed


def test_other_schema_as_default(db_url):
    d = PostgresDialect(make_service(db_url, schema="other", extra_schemas=("public",)))
    conn = d.connect()
    try:
        cat = d.introspect(conn)
        assert list(cat.tables)[:2] == ["carriers", "shipments"]
        assert "public.customers" in cat.tables and "customers" not in cat.tables
        fks = {fk.name: fk.ref_table for fk in cat.tables["shipments"].foreign_keys}
        assert fks == {"shipments_order_id_fkey": "public.orders", "shipments_carrier_id_fkey": "carriers"}
        assert "ship_count" in cat.functions and "public.add_ints" in cat.functions
        # The connection's search_path follows the service's schema.
        assert d.query(conn, "SELECT current_schemas(false)")[1][0][0] == ["other", "public"]
        assert d.call_routine(conn, cat.functions["ship_count"], {})["value"] == 1
    finally:
        conn.close()


def test_missing_schema_is_reported(db_url):
    d = PostgresDialect(make_service(db_url, extra_schemas=("nope",)))
    conn = d.connect()
    try:
        with pytest.raises(DatabaseError) as err:
            d.introspect(conn)
        assert err.value.kind == "schema" and "nope" in err.value.message
        assert d.transaction_status(conn) == "idle"
    finally:
        conn.close()


def test_introspection_leaves_connection_idle_and_uses_few_queries(dialect, conn):
    statements = []
    original = dialect.query

    def counting(c, sql, params=()):
        statements.append(sql)
        return original(c, sql, params)
    dialect.query = counting
    try:
        dialect.introspect(conn)
    finally:
        del dialect.query
    assert len(statements) <= 8           # independent of the number of tables
    assert dialect.transaction_status(conn) == "idle"


# ------------------------------------------------------------------ introspection: routines
def test_routine_listing(catalog):
    assert set(catalog.procedures) == {"add_tag", "transfer"}
    assert set(catalog.functions) == {
        "add_ints", "all_tags", "count_moods", "customer_stats", "customers_by_mood", "describe",
        "echo_bytes", "echo_json", "fail", "first_tag", "greet", "pad", "series", "sum_all", "times",
        "touch", "other.ship_count"}
    # Left out: trigger function, aggregate, SETOF record, extension (citext) functions,
    # functions in schemas the service does not expose.
    for name in ("trg", "my_sum", "anon_rows", "citext", "texticlike", "secret_fn"):
        assert name not in catalog.functions


def _params(routine):
    return [(p.name, p.position, p.param_type, p.type, p.db_type, p.default, p.has_default)
            for p in routine.params]


def test_routine_shapes(catalog):
    f = catalog.functions
    add = f["add_ints"]
    assert (add.kind, add.return_type, add.return_db_type, add.returns_set, add.description) == (
        "function", "integer", "integer", False, "Adds two integers")
    assert _params(add) == [("a", 1, "IN", "integer", "integer", None, False),
                            ("b", 2, "IN", "integer", "integer", None, False)]
    assert _params(f["greet"]) == [("name", 1, "IN", "text", "text", None, False),
                                   ("greeting", 2, "IN", "text", "text", "Hello", True),
                                   ("punct", 3, "IN", "text", "text", "!", True)]
    stats = f["customer_stats"]
    assert (stats.return_type, stats.returns_set, stats.result_columns) == ("row", False,
                                                                           ["order_count", "last_order"])
    assert _params(stats)[1:] == [("order_count", 2, "OUT", "bigint", "bigint", None, False),
                                  ("last_order", 3, "OUT", "datetimetz", "timestamp with time zone", None,
                                   False)]
    by_mood = f["customers_by_mood"]
    assert (by_mood.return_type, by_mood.returns_set, by_mood.result_columns) == ("table", True, ["id", "email"])
    assert _params(by_mood) == [("m", 1, "IN", "string", "mood", None, False)]   # TABLE columns are not params
    assert (f["all_tags"].return_type, f["all_tags"].return_db_type, f["all_tags"].result_columns) == (
        "table", "tags", ["id", "label"])
    assert (f["first_tag"].return_type, f["first_tag"].returns_set) == ("row", False)
    assert f["series"].result_columns == ["series"]
    assert _params(f["sum_all"]) == [("nums", 1, "IN", "array", "integer[]", None, False)]
    assert [p.name for p in f["times"].params] == ["$1", "$2"]
    assert (f["touch"].return_type, f["touch"].return_db_type) == (None, "void")
    ship = f["other.ship_count"]
    assert (ship.schema, ship.native_name, ship.return_type) == ("other", "ship_count", "bigint")
    assert _params(f["pad"])[1] == ("n", 2, "IN", "integer", "integer", 3, True)


def test_procedures_and_overloads(catalog):
    tr = catalog.procedures["transfer"]
    assert (tr.kind, tr.return_type, tr.returns_set, tr.description) == ("procedure", None, False,
                                                                        "Debits an amount")
    assert _params(tr) == [("amount", 1, "IN", "decimal", "numeric", None, False),
                           ("balance", 2, "INOUT", "decimal", "numeric", None, False),
                           ("ok", 3, "OUT", "boolean", "boolean", None, False)]
    assert _params(catalog.procedures["add_tag"])[1] == ("prefix", 2, "IN", "text", "text", "", True)
    desc = catalog.functions["describe"]
    assert [p.db_type for p in desc.params] == ["integer"]
    assert [[p.db_type for p in o.params] for o in desc.overloads] == [["text"]]


# ------------------------------------------------------------------ connections
def test_connection_settings(db_url):
    d = PostgresDialect(make_service(db_url, statement_timeout=1.5))
    conn = d.connect()
    try:
        assert conn.autocommit is True
        q = lambda sql: d.query(conn, sql)[1][0][0]  # noqa: E731
        assert q("SHOW statement_timeout") == "1500ms"
        assert q("SHOW idle_in_transaction_session_timeout") == "1min"
        assert q("SHOW application_name") == "mcp-flask"
        assert q("SELECT pg_backend_pid()") == d.backend_pid(conn)
        assert d.server_version(conn) >= 110000
        d.ping(conn)
    finally:
        conn.close()


def test_connect_failure_hides_password():
    d = PostgresDialect(make_service("postgresql://bob:s3cret-pw@127.0.0.1:1/nodb", connect_timeout=2))
    with pytest.raises(DatabaseUnavailable) as err:
        d.connect()
    assert "s3cret-pw" not in err.value.message and "s3cret-pw" not in str(err.value)
    assert "127.0.0.1:1" in err.value.message
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_connect_to_missing_database(db_url):
    d = PostgresDialect(make_service(_url_for("mcpf_no_such_db_" + uuid.uuid4().hex[:6])))
    with pytest.raises(DatabaseUnavailable):
        d.connect()


@pytest.fixture
def silent_server():
    """A TCP port that accepts connections (kernel backlog) but never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


def test_connect_timeout(silent_server):
    d = PostgresDialect(make_service(f"postgresql://u:pw@127.0.0.1:{silent_server}/db", connect_timeout=1))
    t0 = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        d.connect()
    assert time.monotonic() - t0 < 3.5


@pytest.fixture
def green():
    """psycopg2 in gevent mode (as the gunicorn gevent worker runs it) for one test."""
    gevent = pytest.importorskip("gevent")
    psycogreen_gevent = pytest.importorskip("psycogreen.gevent")
    previous = pgext.get_wait_callback()
    psycogreen_gevent.patch_psycopg()
    try:
        yield gevent
    finally:
        pgext.set_wait_callback(previous)


def test_connect_timeout_green(green, silent_server):
    d = PostgresDialect(make_service(f"postgresql://u:pw@127.0.0.1:{silent_server}/db", connect_timeout=1))
    t0 = time.monotonic()
    with pytest.raises(DatabaseUnavailable):
        d.connect()
    assert time.monotonic() - t0 < 2.5


def test_disconnect_detection(dialect, conn, admin):
    pid = dialect.backend_pid(conn)
    with admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
    raw = None
    cur = conn.cursor()
    try:
        wait_until(lambda: not backend_alive(admin, pid))
        cur.execute("SELECT 1")
    except psycopg2.Error as exc:
        raw = exc
    assert raw is not None
    assert dialect.is_disconnect(raw)
    mapped = dialect.map_error(raw)
    assert isinstance(mapped, DatabaseUnavailable) and dialect.is_disconnect(mapped)
    assert dialect.is_broken(conn)
    with pytest.raises(DatabaseUnavailable):
        dialect.ping(conn)
    with pytest.raises(DatabaseUnavailable):
        dialect.query(conn, "SELECT 1")


def backend_alive(admin_conn, pid) -> bool:
    with admin_conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
        return cur.fetchone() is not None


def test_is_disconnect_false_for_statement_errors(dialect, conn):
    cur = conn.cursor()
    with pytest.raises(psycopg2.Error) as err:
        cur.execute("SELECT 1/0")
    assert not dialect.is_disconnect(err.value)
    assert not dialect.is_broken(conn)


def test_reset_rolls_back(dialect, conn):
    dialect.begin(conn)
    dialect.execute(conn, "INSERT INTO tags (label) VALUES (%s)", ("reset-me",))
    assert dialect.in_transaction(conn)
    dialect.reset(conn)
    assert dialect.transaction_status(conn) == "idle"
    assert dialect.query(conn, "SELECT count(*) FROM tags WHERE label = %s", ("reset-me",))[1] == [(0,)]


def test_transaction_state_checks_follow_libpq(dialect, conn):
    # is_broken / in_transaction / transaction_status read libpq's status code directly.
    assert (dialect.transaction_status(conn), dialect.in_transaction(conn), dialect.is_broken(conn)) == \
        ("idle", False, False)
    dialect.begin(conn, read_only=True)
    assert (dialect.transaction_status(conn), dialect.in_transaction(conn), dialect.is_broken(conn)) == \
        ("in_transaction", True, False)
    with pytest.raises(DatabaseError):
        dialect.execute(conn, "SELECT 1/0")
    assert (dialect.transaction_status(conn), dialect.in_transaction(conn), dialect.is_broken(conn)) == \
        ("in_error", True, False)
    dialect.rollback(conn)
    assert not dialect.in_transaction(conn)
    conn.close()
    assert (dialect.transaction_status(conn), dialect.in_transaction(conn), dialect.is_broken(conn)) == \
        ("unknown", False, True)


def test_quote_is_memoized_but_refusals_and_bounds_hold(monkeypatch):
    from mcp_flask.dialects import base
    d = PostgresDialect(make_service("postgresql://u@h/db"))
    for _ in range(3):                              # first call fills the memo, the others hit it
        assert d.quote("rate%") == '"rate%%"'
        assert d.quote('say "hi"') == '"say ""hi"""'
        with pytest.raises(InvalidArguments):
            d.quote("bad\x00name")
    assert "bad\x00name" not in d._quoted
    # A name that only differs by a NUL is refused even after its clean twin is memoized.
    assert d.quote("twin") == '"twin"'
    with pytest.raises(InvalidArguments):
        d.quote("twin\x00")

    class Name(str):
        pass
    assert d.quote(Name("sub%")) == '"sub%%"' and Name("sub%") not in d._quoted
    monkeypatch.setattr(base, "QUOTE_MEMO", 8)
    for i in range(50):
        assert d.quote(f"col{i}%") == f'"col{i}%%"'
        assert len(d._quoted) <= 8
    assert d.quote("rate%") == '"rate%%"'          # emptied when full, re-quoted correctly
    # The memo is per dialect: another service never sees this one's entries.
    assert PostgresDialect(make_service("postgresql://u@h/db"))._quoted == {}


# ------------------------------------------------------------------ transactions
def test_read_only_transaction_refuses_writes(dialect, conn, catalog):
    dialect.begin(conn, read_only=True)
    with pytest.raises(DatabaseError) as err:
        dialect.insert(conn, catalog.tables["tags"], {"label": "nope"})
    assert err.value.kind == "read_only"
    dialect.rollback(conn)
    assert dialect.transaction_status(conn) == "idle"


def test_commit_of_failed_transaction_raises(dialect, conn):
    dialect.begin(conn)
    with pytest.raises(DatabaseError):
        dialect.execute(conn, "SELECT 1/0")
    with pytest.raises(DatabaseError) as err:
        dialect.commit(conn)
    assert err.value.kind == "rolled_back"
    assert dialect.transaction_status(conn) == "idle"


def test_savepoints(dialect, conn, catalog):
    tags = catalog.tables["tags"]
    dialect.begin(conn)
    dialect.insert(conn, tags, {"label": "sp-keep"})
    dialect.savepoint(conn, "sp1")
    dialect.insert(conn, tags, {"label": "sp-drop"})
    dialect.rollback_to(conn, "sp1")
    dialect.release(conn, "sp1")
    rows = dialect.query(conn, "SELECT label FROM tags WHERE label LIKE %s ORDER BY label", ("sp-%",))[1]
    dialect.rollback(conn)
    assert rows == [("sp-keep",)]


# ------------------------------------------------------------------ composition
def test_insert_select_update_delete_with_percent_names(dialect, conn, catalog):
    t = catalog.tables["pct%table"]
    dialect.begin(conn)
    key = dialect.insert(conn, t, {"rate%": Decimal("1.5"), "Mixed Case": "50% off"})
    assert set(key) == {"id"}
    sql, params = dialect.select_sql(t, [dialect.quote("rate%"), dialect.quote("Mixed Case")],
                                     where=dialect.like_sql(dialect.quote("Mixed Case")),
                                     where_params=[dialect.like_pattern("50%", False, True)],
                                     order=[("id", "ASC", "LAST")], limit=10, offset=0)
    assert dialect.query(conn, sql, params)[1] == [(Decimal("1.5"), "50% off")]
    sql, params = dialect.update_sql(t, {"rate%": 2}, dialect.key_where(["id"], 1), [key["id"]])
    assert dialect.execute(conn, sql, params) == 1
    sql, params = dialect.delete_sql(t, dialect.key_where(["id"], 1), [key["id"]])
    assert dialect.execute(conn, sql, params) == 1
    dialect.rollback(conn)


def test_like_escape_with_and_without_standard_conforming_strings(dialect, conn, catalog):
    t = catalog.tables["customers"]
    dialect.begin(conn)
    dialect.insert(conn, t, {"email": "50%_off\\x@example.com", "name": "Pct"})
    dialect.insert(conn, t, {"email": "50AB_offx@example.com", "name": "Decoy"})
    for setting in ("on", "off"):
        dialect.execute(conn, f"SET LOCAL standard_conforming_strings = {setting}")
        sql, params = dialect.select_sql(t, [dialect.quote("name")],
                                         where=dialect.like_sql(dialect.quote("email")),
                                         where_params=[dialect.like_pattern("50%_off\\x", False, True)])
        assert dialect.query(conn, sql, params)[1] == [("Pct",)], setting
    dialect.rollback(conn)


def test_offset_without_limit(dialect, conn, catalog):
    sql, params = dialect.select_sql(catalog.tables["tags"], [dialect.quote("label")],
                                     order=[("id", "ASC", None)], offset=1)
    assert dialect.query(conn, sql, params)[1] == [("new",)]


def test_composite_key_where(dialect, conn, catalog):
    t = catalog.tables["order_lines"]
    sql, params = dialect.select_sql(t, [dialect.quote("product_sku")],
                                     where=dialect.key_where(t.primary_key, 2), where_params=[1, 1, 1, 2],
                                     order=[("line_no", "ASC", None)])
    assert dialect.query(conn, sql, params)[1] == [("W1",), ("G1",)]


# ------------------------------------------------------------------ values
def _bound(dialect, table, record):
    return {k: dialect.bind_value(table.column(k), v) for k, v in record.items()}


def test_value_round_trip(dialect, conn, catalog):
    t = catalog.tables["customers"]
    u1, u2 = uuid.uuid4(), uuid.uuid4()
    record = {
        "email": "types@example.com", "name": "Types", "mood": "sad", "score": "12.50", "rating": 1.5,
        "ratio": 2.25, "active": False, "tags": ["x", 'q"uote', "back\\slash", None, "comma,brace}"],
        "moods": ["happy", "sad"], "ids": [str(u1), str(u2)], "profile": {"a": [1, 2], "b": None},
        "settings": [1, "two"], "avatar": base64.b64encode(b"\x00\xffbin").decode(), "ext_id": str(u1),
        "born": "2000-02-29", "wake": "07:30:00.123", "wake_tz": "07:30:00+02:00",
        "created": "2024-05-01T12:00:00", "updated": "2024-05-01T12:00:00+02:00", "wait": "1 day 02:03:04",
        "code": "ABC", "small": 3, "big": 2 ** 40, "amount": 5, "during": "[1,10)", "nick_ci": "MiXeD",
    }
    dialect.begin(conn)
    key = dialect.insert(conn, t, _bound(dialect, t, record))
    cols = list(record) + ["upper_email", "kind"]
    names, rows = dialect.query(conn, f"SELECT {dialect.column_list(cols)} FROM {dialect.table_sql(t)} "
                                      f"WHERE id = %s", (key["id"],))
    dialect.rollback(conn)
    got = {n: dialect.decode_value(t.column(n), v) for n, v in zip(names, rows[0])}
    assert got["score"] == Decimal("12.50") and isinstance(got["score"], Decimal)
    assert got["rating"] == 1.5 and got["active"] is False
    assert got["tags"] == ["x", 'q"uote', "back\\slash", None, "comma,brace}"]
    assert got["moods"] == ["happy", "sad"]                    # enum[]: parsed from text
    assert got["ids"] == [u1, u2]
    assert got["profile"] == {"a": [1, 2], "b": None} and got["settings"] == [1, "two"]
    assert got["avatar"] == b"\x00\xffbin" and isinstance(got["avatar"], bytes)
    assert got["ext_id"] == u1
    assert got["born"] == dt.date(2000, 2, 29)
    assert got["wake"] == dt.time(7, 30, 0, 123000)
    assert got["wake_tz"].utcoffset() == dt.timedelta(hours=2)
    assert got["created"] == dt.datetime(2024, 5, 1, 12, 0)
    assert got["updated"] == dt.datetime(2024, 5, 1, 10, 0, tzinfo=UTC)   # same instant, aware
    assert got["updated"].tzinfo is not None
    assert got["wait"] == dt.timedelta(days=1, hours=2, minutes=3, seconds=4)
    assert got["code"] == "ABC" and got["big"] == 2 ** 40
    assert got["during"] == "[1,10)"
    assert got["nick_ci"] == "MiXeD"
    assert got["upper_email"] == "TYPES@EXAMPLE.COM" and got["kind"] == "it's"


def test_bind_python_objects(dialect, conn, catalog):
    t = catalog.tables["customers"]
    stamp = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    record = {"email": "obj@example.com", "name": "Obj", "updated": stamp, "ext_id": uuid.UUID(int=7),
              "tags": [], "avatar": b"raw", "profile": "{\"as\": \"text\"}"}
    dialect.begin(conn)
    key = dialect.insert(conn, t, _bound(dialect, t, record))
    names, rows = dialect.query(conn, "SELECT updated, ext_id, tags, avatar, profile FROM customers "
                                      "WHERE id = %s", (key["id"],))
    dialect.rollback(conn)
    got = dict(zip(names, rows[0]))
    assert got["updated"] == stamp and got["ext_id"] == uuid.UUID(int=7) and got["tags"] == []
    assert bytes(got["avatar"]) == b"raw" and got["profile"] == {"as": "text"}


def test_bind_rejects_bad_binary_and_objects(catalog, dialect):
    t = catalog.tables["customers"]
    with pytest.raises(InvalidArguments):
        dialect.bind_value(t.column("avatar"), "not base64!!")
    with pytest.raises(InvalidArguments):
        dialect.bind_value(t.column("name"), {"a": 1})
    with pytest.raises(InvalidArguments):
        dialect.bind_value(t.column("tags"), 5)
    assert dialect.bind_value(t.column("name"), None) is None


def test_pure_helpers():
    assert parse_array('{a,"b c",NULL,"x\\"y"}') == ["a", "b c", None, 'x"y']
    assert parse_array("{{1,2},{3,4}}") == [["1", "2"], ["3", "4"]]
    assert parse_array("[0:1]={a,b}") == ["a", "b"]
    assert parse_array("{}") == []
    assert parse_array("not an array") == "not an array"
    assert array_literal(["a", None, 'q"', ["n"]]) == '{"a",NULL,"q\\"",{"n"}}'
    assert literal_default("'ok'::mood", "string") == "ok"
    assert literal_default("'it''s'::text", "text") == "it's"
    assert literal_default("'-1'::integer", "integer") == -1
    assert literal_default("(-1.5)", "double") == -1.5
    assert literal_default("0.00", "decimal") == Decimal("0.00")
    assert literal_default("true", "boolean") is True
    assert literal_default("NULL::text", "text") is None
    assert literal_default("nextval('s'::regclass)", "integer") == "nextval('s'::regclass)"
    assert literal_default("'{}'::\"Weird Type\"[]", "array") == "{}"


# ------------------------------------------------------------------ errors
def _error(dialect, conn, sql, params=()):
    dialect.begin(conn)
    try:
        with pytest.raises(McpFlaskError) as err:
            dialect.execute(conn, sql, params)
    finally:
        dialect.rollback(conn)
    return err.value


def test_unique_violation(dialect, conn):
    e = _error(dialect, conn, "INSERT INTO customers (email, name) VALUES (%s, %s)", ("ann@example.com", "X"))
    assert (type(e), e.kind, e.constraint, e.column) == (DatabaseError, "unique", "customers_email_key", "email")
    assert "ann@example.com" not in e.message and e.details == {"sqlstate": "23505"}


def test_composite_unique_and_unique_index(dialect, conn):
    e = _error(dialect, conn, "INSERT INTO products (sku, region) VALUES (%s, %s)", ("W1", 1))
    assert (e.kind, e.constraint, e.column) == ("unique", "products_sku_region_key", "sku, region")
    e = _error(dialect, conn, "UPDATE customers SET code = %s", ("AAA",))
    assert (e.kind, e.constraint, e.column) == ("unique", "customers_code_uq", "code")


def test_foreign_key_violations(dialect, conn):
    e = _error(dialect, conn, "INSERT INTO orders (customer_id) VALUES (%s)", (999,))
    assert (e.kind, e.constraint, e.column) == ("foreign_key", "orders_customer_id_fkey", "customer_id")
    assert "999" not in e.message
    e = _error(dialect, conn, "DELETE FROM order_lines WHERE order_id = %s AND line_no = %s", (1, 1))
    assert (e.kind, e.constraint, e.column) == ("foreign_key", "line_notes_line_fk", "order_id, line_no")


def test_not_null_check_and_type_violations(dialect, conn):
    e = _error(dialect, conn, "INSERT INTO customers (email) VALUES (%s)", ("nn@example.com",))
    assert (e.kind, e.column) == ("not_null", "name")
    e = _error(dialect, conn, "UPDATE customers SET score = %s", (-5,))
    assert (e.kind, e.constraint) == ("check", "customers_score_check")
    e = _error(dialect, conn, "UPDATE customers SET small = %s", ("secret-abc",))
    assert e.kind == "type" and "secret-abc" not in e.message and "smallint" in e.message
    e = _error(dialect, conn, "UPDATE customers SET small = %s", (99999,))
    assert e.kind == "type" and "99999" not in e.message
    e = _error(dialect, conn, "UPDATE customers SET code = %s", ("TOOLONG",))
    assert e.kind == "type" and "TOOLONG" not in e.message
    e = _error(dialect, conn, "UPDATE customers SET mood = %s", ("furious",))
    assert e.kind == "type" and "furious" not in e.message
    e = _error(dialect, conn, "UPDATE customers SET amount = %s", (-3,))      # domain CHECK
    assert e.kind == "check"


def test_generated_identity_and_schema_errors(dialect, conn):
    e = _error(dialect, conn, "INSERT INTO products (id, sku, region) VALUES (%s, %s, %s)", (99, "Z", 1))
    assert e.kind == "constraint"
    e = _error(dialect, conn, "SELECT nope FROM customers")
    assert e.kind == "schema"
    e = _error(dialect, conn, "SELEC 1")
    assert e.kind == "error" and "SELEC" not in e.message


def test_statement_timeout(db_url):
    d = PostgresDialect(make_service(db_url, statement_timeout=0.5))
    conn = d.connect()
    try:
        t0 = time.monotonic()
        with pytest.raises(QueryTimeout):
            d.query(conn, "SELECT pg_sleep(3)")
        assert time.monotonic() - t0 < 2.0
        assert d.transaction_status(conn) == "idle"
        d.ping(conn)                                  # still usable
    finally:
        conn.close()


def test_lock_not_available(dialect, conn):
    other = dialect.connect()
    try:
        dialect.begin(other)
        dialect.query(other, "SELECT id FROM tags WHERE id = %s FOR UPDATE", (1,))
        e = _error(dialect, conn, "SELECT id FROM tags WHERE id = %s FOR UPDATE NOWAIT", (1,))
        assert e.kind == "lock"
    finally:
        dialect.rollback(other)
        other.close()


def test_permission_denied(dialect, conn, admin):
    role = "mcpf_noaccess_" + uuid.uuid4().hex[:8]
    with admin.cursor() as cur:
        cur.execute(f'CREATE ROLE "{role}" NOLOGIN')
    try:
        dialect.begin(conn)
        dialect.execute(conn, f"SET LOCAL ROLE {dialect.quote(role)}")
        with pytest.raises(DatabaseError) as err:
            dialect.query(conn, "SELECT * FROM customers")
        dialect.rollback(conn)
        assert err.value.kind == "permission" and "customers" in err.value.message
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP ROLE "{role}"')


def test_map_error_never_returns_driver_errors(dialect):
    assert isinstance(dialect.map_error(ValueError("boom")), DatabaseError)
    assert isinstance(dialect.map_error(psycopg2.ProgrammingError("can't adapt type 'X'")), DatabaseError)
    assert isinstance(dialect.map_error(psycopg2.InterfaceError("connection already closed")),
                      DatabaseUnavailable)
    own = InvalidArguments("x")
    assert dialect.map_error(own) is own


# ------------------------------------------------------------------ cancel
def test_cancel_from_another_thread(dialect, conn, admin):
    outcome = {}

    def run():
        t0 = time.monotonic()
        try:
            dialect.query(conn, "SELECT pg_sleep(5)")
        except McpFlaskError as exc:
            outcome["error"] = exc
        outcome["elapsed"] = time.monotonic() - t0

    worker = threading.Thread(target=run)
    worker.start()
    pid = dialect.backend_pid(conn)
    wait_until(lambda: backend_is_sleeping(admin, pid))
    t0 = time.monotonic()
    assert dialect.cancel(conn) is True
    worker.join(timeout=3)
    assert not worker.is_alive()
    assert time.monotonic() - t0 < 1.0
    assert isinstance(outcome["error"], QueryTimeout)
    assert dialect.transaction_status(conn) == "idle"
    dialect.ping(conn)


def test_cancel_from_another_greenlet(green, dialect, admin):
    gevent = green
    conn = dialect.connect()                  # made in green (non-blocking) mode
    try:
        def run():
            try:
                dialect.query(conn, "SELECT pg_sleep(5)")
            except McpFlaskError as exc:
                return exc
        worker = gevent.spawn(run)
        pid = dialect.backend_pid(conn)
        watcher = dialect.connect()
        try:
            wait_until(lambda: backend_is_sleeping(watcher, pid), sleep=gevent.sleep)
        finally:
            watcher.close()
        t0 = time.monotonic()
        assert dialect.cancel(conn) is True
        worker.join(timeout=3)
        assert worker.dead and time.monotonic() - t0 < 1.0
        assert isinstance(worker.value, QueryTimeout)
    finally:
        conn.close()


def test_cancel_on_closed_connection_is_harmless(dialect):
    c = dialect.connect()
    c.close()
    assert dialect.cancel(c) is False


# ------------------------------------------------------------------ streaming
STREAM_SQL = "SELECT g, repeat('x', 1000) FROM generate_series(1, %s) AS g"


def _open_cursors(dialect, conn):
    return dialect.query(conn, "SELECT count(*) FROM pg_cursors WHERE name LIKE %s", ("mcpf\\_%",))[1][0][0]


def test_stream_100k_rows_with_flat_memory(dialect, conn):
    tracemalloc.start()
    try:
        base_rss = rss_bytes()
        total, batches, peak_rss, cursors_seen = 0, 0, 0, None
        first = last = None
        for names, rows in dialect.stream(conn, STREAM_SQL, (100_000,), batch=1000):
            assert names == ["g", "repeat"]
            batches += 1
            total += len(rows)
            first = rows[0][0] if first is None else first
            last = rows[-1][0]
            if batches == 50:
                cursors_seen = _open_cursors(dialect, conn)      # the cursor lives on the server
            peak_rss = max(peak_rss, rss_bytes())
        _, peak_py = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (total, batches, first, last) == (100_000, 100, 1, 100_000)
    assert cursors_seen == 1
    # Materialised, the rows would take ~100 MB; a batch of 1,000 takes ~1 MB.
    assert peak_py < 10_000_000
    assert peak_rss - base_rss < 40_000_000
    assert dialect.transaction_status(conn) == "idle" and _open_cursors(dialect, conn) == 0


def test_stream_closed_early_leaves_connection_clean(dialect, conn):
    gen = dialect.stream(conn, STREAM_SQL, (10_000,), batch=100)
    names, rows = next(gen)
    assert len(rows) == 100
    assert dialect.transaction_status(conn) == "in_transaction"
    gen.close()
    assert dialect.transaction_status(conn) == "idle" and _open_cursors(dialect, conn) == 0


def test_stream_inside_callers_transaction(dialect, conn, catalog):
    dialect.begin(conn)
    dialect.insert(conn, catalog.tables["tags"], {"label": "in-tx"})
    gen = dialect.stream(conn, "SELECT label FROM tags ORDER BY id", batch=1)
    assert next(gen)[1] == [("vip",)]
    gen.close()
    assert dialect.transaction_status(conn) == "in_transaction"     # the caller's, still open
    assert _open_cursors(dialect, conn) == 0
    labels = [r[0] for _, rows in dialect.stream(conn, "SELECT label FROM tags ORDER BY id") for r in rows]
    assert "in-tx" in labels
    assert dialect.transaction_status(conn) == "in_transaction"
    dialect.rollback(conn)


def test_stream_error_midway(dialect, conn):
    got = 0
    with pytest.raises(DatabaseError) as err:
        for _, rows in dialect.stream(conn, "SELECT 1 / (5000 - g) FROM generate_series(1, 10000) AS g",
                                      batch=100):
            got += len(rows)
    assert err.value.kind == "type"          # 22012 division_by_zero
    assert got < 5000
    assert dialect.transaction_status(conn) == "idle"
    dialect.ping(conn)


def test_stream_empty_and_percent_literals(dialect, conn):
    assert list(dialect.stream(conn, "SELECT 1 WHERE false")) == []
    out = list(dialect.stream(conn, "SELECT %s::text || '%%'", ("50",)))
    assert out == [(["?column?"], [("50%",)])]


# ------------------------------------------------------------------ routines
def call(dialect, conn, catalog, name, args=None, **kw):
    routine = catalog.functions.get(name) or catalog.procedures[name]
    return dialect.call_routine(conn, routine, args or {}, **kw)


def test_call_scalar_functions(dialect, conn, catalog):
    assert call(dialect, conn, catalog, "add_ints", {"a": 2, "b": 3}) == {
        "result_sets": [], "out": {}, "value": 5}
    assert call(dialect, conn, catalog, "greet", {"name": "Ann"})["value"] == "Hello, Ann!"
    # Named notation: a later default can be given while an earlier one is left out.
    assert call(dialect, conn, catalog, "greet", {"name": "Ann", "punct": "?"})["value"] == "Hello, Ann?"
    evil = "x'); DROP TABLE customers; --"
    assert call(dialect, conn, catalog, "greet", {"name": evil, "greeting": "Hi"})["value"] == f"Hi, {evil}!"
    assert call(dialect, conn, catalog, "touch")["value"] is None
    assert call(dialect, conn, catalog, "times", {"$1": 6, "$2": 7})["value"] == 42
    assert call(dialect, conn, catalog, "sum_all", {"nums": [1, 2, 3]})["value"] == 6
    assert call(dialect, conn, catalog, "pad", {"c": "ab"})["value"] == "ababab"      # not cut to char(1)
    assert call(dialect, conn, catalog, "echo_json", {"doc": {"a": 1}})["value"] == {"a": 1, "seen": True}
    raw = base64.b64encode(b"hi").decode()
    assert call(dialect, conn, catalog, "echo_bytes", {"b": raw})["value"] == b"hi!"
    assert call(dialect, conn, catalog, "count_moods", {"ms": ["sad", "ok"]})["value"] == 2
    assert call(dialect, conn, catalog, "other.ship_count")["value"] == 1


def test_call_overloads(dialect, conn, catalog):
    main = catalog.functions["describe"]
    assert dialect.call_routine(conn, main, {"x": 5})["value"] == "integer"
    assert dialect.call_routine(conn, main.overloads[0], {"x": "5"})["value"] == "text"


def test_call_record_and_set_functions(dialect, conn, catalog):
    stats = call(dialect, conn, catalog, "customer_stats", {"cid": 1})
    assert stats == {"result_sets": [], "value": None,
                     "out": {"order_count": 2, "last_order": dt.datetime(2024, 2, 1, 10, tzinfo=UTC)}}
    rows = call(dialect, conn, catalog, "customers_by_mood", {"m": "happy"})
    assert rows == {"result_sets": [[{"id": 1, "email": "ann@example.com"},
                                     {"id": 3, "email": "cy@example.com"}]], "out": {}, "value": None}
    assert call(dialect, conn, catalog, "all_tags")["result_sets"] == [[{"id": 1, "label": "vip"},
                                                                        {"id": 2, "label": "new"}]]
    assert call(dialect, conn, catalog, "first_tag")["result_sets"] == [[{"id": 1, "label": "vip"}]]
    capped = call(dialect, conn, catalog, "series", {"n": 5}, max_rows=2)
    assert capped["result_sets"] == [[{"series": 1}, {"series": 2}]] and capped["truncated"] is True
    assert call(dialect, conn, catalog, "series", {"n": 2}, max_rows=2)["truncated"] is False


def test_call_procedures(dialect, conn, catalog):
    assert call(dialect, conn, catalog, "transfer", {"amount": 30, "balance": 100}) == {
        "result_sets": [], "out": {"balance": Decimal("70"), "ok": True}, "value": None}
    assert call(dialect, conn, catalog, "transfer", {"amount": "100.5", "balance": 100})["out"] == {
        "balance": Decimal("-0.5"), "ok": False}
    dialect.begin(conn)
    assert call(dialect, conn, catalog, "add_tag", {"label": "proc"}) == {"result_sets": [], "out": {},
                                                                          "value": None}
    call(dialect, conn, catalog, "add_tag", {"label": "y", "prefix": "pre-"})
    labels = [r[0] for r in dialect.query(conn, "SELECT label FROM tags ORDER BY id")[1]]
    dialect.rollback(conn)
    assert labels[-2:] == ["proc", "pre-y"]


def test_call_errors(dialect, conn, catalog):
    with pytest.raises(DatabaseError) as err:
        call(dialect, conn, catalog, "fail", {"msg": "nope"})
    assert err.value.kind == "raise" and err.value.message == "refused: nope"
    with pytest.raises(InvalidArguments):
        call(dialect, conn, catalog, "add_ints", {"a": 1, "zzz": 2})
    with pytest.raises(InvalidArguments):
        call(dialect, conn, catalog, "add_ints", {"a": 1})
    with pytest.raises(InvalidArguments):
        call(dialect, conn, catalog, "echo_bytes", {"b": "%%%"})
    with pytest.raises(DatabaseError) as err:
        call(dialect, conn, catalog, "add_ints", {"a": "x", "b": 1})
    assert err.value.kind == "type"


def test_closed_connection_never_leaks_driver_errors(dialect, catalog):
    c = dialect.connect()
    c.close()
    for attempt in (lambda: dialect.execute(c, "SELECT 1"), lambda: dialect.query(c, "SELECT 1"),
                    lambda: dialect.begin(c), lambda: dialect.commit(c), lambda: dialect.rollback(c),
                    lambda: list(dialect.stream(c, "SELECT 1")), lambda: dialect.introspect(c),
                    lambda: dialect.call_routine(c, catalog.functions["touch"], {}),
                    lambda: dialect.ping(c)):
        with pytest.raises(DatabaseUnavailable):
            attempt()
    with pytest.raises(DatabaseUnavailable):
        dialect.reset(c)


def test_set_returning_function_through_stream(dialect, conn, catalog):
    sql, values, shape = dialect.call_statement(catalog.functions["series"], {"n": 2500})
    assert shape == "rows"
    total = sum(len(rows) for _, rows in dialect.stream(conn, sql, values, batch=1000))
    assert total == 2500 and dialect.transaction_status(conn) == "idle"


def test_green_mode_round_trip(green, dialect):
    """Everything the tools use also works with psycogreen's non-blocking connections."""
    gevent = green
    conn = dialect.connect()
    try:
        def work():
            cat = dialect.introspect(conn)
            streamed = sum(len(rows) for _, rows in dialect.stream(conn, STREAM_SQL, (3000,), batch=1000))
            value = dialect.call_routine(conn, cat.functions["add_ints"], {"a": 1, "b": 2})["value"]
            return len(cat.tables), streamed, value
        result = gevent.spawn(work).get(timeout=10)
        assert result == (len(EXPECTED_TABLES), 3000, 3)
        assert dialect.transaction_status(conn) == "idle"
    finally:
        conn.close()
