"""The MySQL/MariaDB dialect against a real server (never mocks).

Each run creates a uniquely named database (``mcpf_test_<hex>``) with tables of
every supported type, composite keys, a junction table, a view, procedures and
functions, and drops it afterwards.  The server comes from
``MCP_FLASK_TEST_MYSQL`` (default ``mysql://root@127.0.0.1:3306/test``; only its
credentials and address are used).  Unreachable -> the module is skipped, unless
``MCP_FLASK_REQUIRE_DBS=1`` (CI), which turns that into a failure.

Assertions check kinds, columns and data, not message wording; waiting is done by
polling with a deadline.
"""
from __future__ import annotations

import base64
import dataclasses
import os
import secrets
import threading
import time
import tracemalloc
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

import pymysql
import pytest

from mcp_flask.config import ServiceConfig
from mcp_flask.dialects import dialect_for
from mcp_flask.dialects.mysql import MysqlDialect, format_time, simple_type, to_naive_utc, unescape_literal
from mcp_flask.errors import (ConfigError, DatabaseError, DatabaseUnavailable, InvalidArguments,
                              PermissionDenied, QueryTimeout)

pytestmark = pytest.mark.mysql

DSN = os.environ.get("MCP_FLASK_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
REQUIRE = os.environ.get("MCP_FLASK_REQUIRE_DBS") == "1"
BIG_ROWS = 100_000

_DIGITS = "(SELECT 0 n UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 " \
          "UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"

SCHEMA = [
    r"""CREATE TABLE customer (
        id INT AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(100) NOT NULL COMMENT 'Full name',
        email VARCHAR(190) NOT NULL,
        active TINYINT(1) NOT NULL DEFAULT 1,
        level TINYINT NOT NULL DEFAULT 0,
        small SMALLINT NULL,
        medium MEDIUMINT NULL,
        big BIGINT UNSIGNED NULL,
        balance DECIMAL(10,2) NOT NULL DEFAULT 0.00,
        ratio DOUBLE NULL,
        score FLOAT NULL,
        code CHAR(3) NULL DEFAULT 'abc',
        motto VARCHAR(40) NULL DEFAULT 'it''s a \\ back',
        bio TEXT NULL,
        notes MEDIUMTEXT NULL,
        essay LONGTEXT NULL,
        born DATE NULL,
        wake TIME NULL,
        wake_precise TIME(6) NULL,
        seen DATETIME(6) NULL,
        created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
        updated TIMESTAMP NULL DEFAULT NULL ON UPDATE CURRENT_TIMESTAMP,
        yr YEAR NULL,
        doc JSON NULL,
        photo BLOB NULL,
        hash BINARY(4) NULL,
        token VARBINARY(16) NULL,
        flags BIT(8) NULL,
        flag BIT(1) NULL DEFAULT b'1',
        mood ENUM('happy','sad','it''s complicated') NULL,
        tags SET('red','green','blue') NULL,
        age INT NULL,
        note VARCHAR(10) NULL,
        email_domain VARCHAR(190) GENERATED ALWAYS AS (SUBSTRING_INDEX(email, '@', -1)) VIRTUAL,
        UNIQUE KEY uq_customer_email (email),
        KEY idx_customer_name (name),
        CONSTRAINT chk_age CHECK (age >= 0)
    ) COMMENT 'People who buy things'""",
    """CREATE TABLE product (
        id INT AUTO_INCREMENT PRIMARY KEY,
        sku VARCHAR(20) NOT NULL,
        name VARCHAR(100) NULL,
        price DECIMAL(8,2) NULL,
        UNIQUE KEY uq_product_sku (sku)
    )""",
    """CREATE TABLE customer_product (
        customer_id INT NOT NULL,
        product_id INT NOT NULL,
        PRIMARY KEY (customer_id, product_id),
        CONSTRAINT fk_cp_customer FOREIGN KEY (customer_id) REFERENCES customer (id) ON DELETE CASCADE,
        CONSTRAINT fk_cp_product FOREIGN KEY (product_id) REFERENCES product (id)
    )""",
    """CREATE TABLE orders (
        id INT AUTO_INCREMENT PRIMARY KEY,
        customer_id INT NOT NULL,
        total DECIMAL(10,2) NULL,
        CONSTRAINT fk_orders_customer FOREIGN KEY (customer_id) REFERENCES customer (id)
            ON UPDATE CASCADE ON DELETE RESTRICT
    )""",
    """CREATE TABLE warehouse (
        region CHAR(2) NOT NULL,
        code INT NOT NULL,
        name VARCHAR(50) NULL,
        PRIMARY KEY (region, code)
    )""",
    """CREATE TABLE bin (
        id BIGINT AUTO_INCREMENT PRIMARY KEY,
        region CHAR(2) NOT NULL,
        wh_code INT NOT NULL,
        label VARCHAR(20) NULL,
        CONSTRAINT fk_bin_warehouse FOREIGN KEY (region, wh_code) REFERENCES warehouse (region, code)
            ON UPDATE CASCADE ON DELETE RESTRICT
    )""",
    "CREATE TABLE `odd``name%s` (`pct%s` INT PRIMARY KEY, `back``tick` VARCHAR(10) NULL, `100%` INT NULL)",
    "CREATE TABLE big (id INT PRIMARY KEY, payload VARCHAR(100) NOT NULL)",
    "CREATE TABLE tagged (code VARCHAR(36) NOT NULL DEFAULT (uuid()) PRIMARY KEY, label VARCHAR(20) NULL)",
    "CREATE TABLE event (id BIGINT AUTO_INCREMENT PRIMARY KEY, kind VARCHAR(10) NOT NULL DEFAULT 'ping', "
    "at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))",
    "CREATE TABLE nullish (id INT PRIMARY KEY, v INT NULL)",
    "CREATE TABLE words (id INT AUTO_INCREMENT PRIMARY KEY, w VARCHAR(50) NOT NULL) CHARSET utf8mb4",
    "CREATE VIEW customer_names AS SELECT id, name FROM customer",
    f"INSERT INTO big SELECT 1 + a.n + 10*b.n + 100*c.n + 1000*d.n + 10000*e.n, REPEAT('x', 100) "
    f"FROM {_DIGITS} a, {_DIGITS} b, {_DIGITS} c, {_DIGITS} d, {_DIGITS} e",
    "INSERT INTO nullish VALUES (1, NULL), (2, 5), (3, NULL), (4, 1)",
    """CREATE PROCEDURE proc_multi(IN p_min INT, OUT p_count INT, INOUT p_counter INT)
       COMMENT 'Customers from p_min on'
       BEGIN
         SELECT id, name FROM customer WHERE id >= p_min ORDER BY id;
         SELECT COUNT(*) AS n, 'second' AS n FROM product;
         SELECT COUNT(*) INTO p_count FROM customer WHERE id >= p_min;
         SET p_counter = p_counter + 1;
       END""",
    """CREATE PROCEDURE proc_no_args()
       BEGIN SELECT 1 AS one, 'two' AS two, CAST('25:00:01' AS TIME) AS t; END""",
    """CREATE PROCEDURE proc_write(IN p_sku VARCHAR(20))
       BEGIN INSERT INTO product (sku, name) VALUES (p_sku, p_sku); END""",
    """CREATE PROCEDURE proc_outs(OUT p_when DATETIME, OUT p_text VARCHAR(20), OUT p_flag TINYINT(1),
                                  OUT p_price DECIMAL(8,2), OUT p_span TIME)
       BEGIN
         SET p_when = '2024-02-03 04:05:06', p_text = 'héllo 😀', p_flag = 1, p_price = 9.99,
             p_span = '-01:02:03';
       END""",
    """CREATE PROCEDURE proc_fail(IN p_qty INT)
       BEGIN
         IF p_qty > 10 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'out of stock'; END IF;
         SELECT p_qty AS qty;
       END""",
    "CREATE PROCEDURE proc_big() BEGIN SELECT id FROM big WHERE id <= 500 ORDER BY id; END",
    "CREATE FUNCTION fn_add(a INT, b INT) RETURNS INT DETERMINISTIC RETURN a + b",
    "CREATE FUNCTION fn_greet(who VARCHAR(50)) RETURNS VARCHAR(100) CHARSET utf8mb4 DETERMINISTIC "
    "COMMENT 'Greets' RETURN CONCAT('hello ', who)",
    "CREATE FUNCTION fn_time(h INT) RETURNS TIME DETERMINISTIC RETURN SEC_TO_TIME(h * 3600)",
    "CREATE FUNCTION fn_is_big(n DECIMAL(10,2)) RETURNS TINYINT(1) DETERMINISTIC RETURN n > 100",
]


# ============================================================================ fixtures / helpers

def _server_args() -> dict:
    args = dict(MysqlDialect.parse_url(ServiceConfig(name="probe", url=DSN))[0])
    args.pop("database")
    return args


def _admin():
    return pymysql.connect(**_server_args(), autocommit=True, connect_timeout=3)


def _url_for(database: str) -> str:
    parts = urlsplit(DSN)
    return urlunsplit(parts._replace(path="/" + database))


def wait_for(predicate, timeout: float = 5.0):
    """Poll ``predicate`` until it is truthy or the deadline passes; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


@pytest.fixture(scope="module")
def dbname():
    try:
        admin = _admin()
    except pymysql.err.MySQLError as exc:
        reason = (f"MySQL/MariaDB not reachable at {MysqlDialect.parse_url(ServiceConfig(name='p', url=DSN))[1]}"
                  f" ({exc.args[0] if exc.args else exc}); set MCP_FLASK_TEST_MYSQL to run these tests")
        if REQUIRE:
            pytest.fail(reason + " [MCP_FLASK_REQUIRE_DBS=1]")
        pytest.skip(reason)
    name = "mcpf_test_" + secrets.token_hex(4)
    cur = admin.cursor()
    cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    try:
        cur.execute(f"USE `{name}`")
        for statement in SCHEMA:
            cur.execute(statement)
        yield name
    finally:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture(scope="module")
def admin(dbname):
    conn = _admin()
    conn.select_db(dbname)
    yield conn
    conn.close()


def make_dialect(dbname, **overrides) -> MysqlDialect:
    svc = ServiceConfig(name="mysqltest", url=_url_for(dbname), statement_timeout=30.0, connect_timeout=3.0)
    return dialect_for(dataclasses.replace(svc, **overrides))


@pytest.fixture(scope="module")
def dialect(dbname):
    return make_dialect(dbname)


@pytest.fixture(scope="module")
def fast(dbname):
    """A dialect with a 0.5 s statement timeout (lock waits give up after 1 s)."""
    return make_dialect(dbname, statement_timeout=0.5)


@pytest.fixture
def conn(dialect):
    """A connection the dialect tests may write through directly, statement by statement.

    The dialect opens sessions read-only by default (Database.read runs single SELECTs
    in autocommit); the server's tools write inside START TRANSACTION READ WRITE.
    """
    c = dialect.connect()
    dialect.execute(c, "SET SESSION tx_read_only = 0" if c.is_mariadb else "SET SESSION transaction_read_only = 0")
    yield c
    dialect.close(c)


def test_sessions_are_read_only_by_default_and_transactions_choose(dialect):
    c = dialect.connect()
    try:
        assert dialect.session_read_only(c) is True
        err = error_of(dialect.execute, c, "INSERT INTO words (w) VALUES ('autocommit')")
        assert isinstance(err, DatabaseError) and "read-only" in err.message
        dialect.begin(c, read_only=False)
        dialect.execute(c, "INSERT INTO words (w) VALUES ('in a read-write transaction')")
        dialect.rollback(c)
        dialect.begin(c, read_only=True)
        err = error_of(dialect.execute, c, "INSERT INTO words (w) VALUES ('read only tx')")
        assert isinstance(err, DatabaseError)
        dialect.rollback(c)
        # A procedure may flip the session default; restore_session puts it back.
        dialect.execute(c, "SET SESSION tx_read_only = 0" if c.is_mariadb else "SET SESSION transaction_read_only = 0")
        dialect.restore_session(c)
        assert dialect.session_read_only(c) is True
        err = error_of(dialect.execute, c, "INSERT INTO words (w) VALUES ('after restore')")
        assert isinstance(err, DatabaseError) and "read-only" in err.message
    finally:
        dialect.close(c)


@pytest.fixture(scope="module")
def catalog(dialect):
    c = dialect.connect()
    try:
        return dialect.introspect(c)
    finally:
        dialect.close(c)


def processlist(admin, thread_id):
    cur = admin.cursor()
    cur.execute("SELECT ID, INFO FROM information_schema.PROCESSLIST WHERE ID = %s", (thread_id,))
    rows = cur.fetchall()
    cur.close()
    return rows


def running(admin, thread_id, marker: str) -> bool:
    """True while ``thread_id`` runs a statement containing ``marker``."""
    return any(info and marker in info for _, info in processlist(admin, thread_id))


def insert_customer(dialect, conn, catalog, **values):
    table = catalog.table("customer")
    values.setdefault("name", "Ann")
    values.setdefault("email", f"{secrets.token_hex(6)}@example.com")
    record = {k: dialect.bind_value(table.column(k), v) for k, v in values.items()}
    return dialect.insert(conn, table, record)


def select(dialect, conn, catalog, table_name, columns, where="", params=(), order=()):
    table = catalog.table(table_name)
    sql, args = dialect.select_sql(table, [dialect.quote(c) for c in columns], where, params, order=order)
    names, rows = dialect.query(conn, sql, args)
    return [{n: dialect.decode_value(table.column(n), v) for n, v in zip(names, row)} for row in rows]


def error_of(fn, *args, **kwargs) -> Exception:
    with pytest.raises(Exception) as info:
        fn(*args, **kwargs)
    return info.value


# ============================================================================ pure functions (no server)

def test_url_forms_parse_without_leaking_the_password():
    d = MysqlDialect(ServiceConfig(name="s", url="mariadb://bob:p%40ss%3Aw@db.example:3307/shop?charset=utf8mb4"))
    assert d.connect_args["user"] == "bob" and d.connect_args["password"] == "p@ss:w"
    assert (d.connect_args["host"], d.connect_args["port"], d.database) == ("db.example", 3307, "shop")
    assert "p@ss" not in d.display_url and "***" in d.display_url
    d = MysqlDialect(ServiceConfig(name="s", url="mysql+pymysql://root@[::1]/x?unix_socket=/run/m.sock"
                                                 "&ssl_verify_cert=true"))
    args = d.connect_args
    assert (args["host"], args["port"], args["unix_socket"]) == ("::1", 3306, "/run/m.sock")
    assert d.connect_args["ssl_verify_cert"] is True
    for bad in ("mysql://root@localhost", "mysql://root@localhost/a/b", "mysql://h/x?charst=utf8",
                "mysql://h:notaport/x"):
        with pytest.raises(ConfigError) as info:
            MysqlDialect(ServiceConfig(name="s", url=bad))
        assert info.value.key == "services.s.url"


def test_connect_failure_is_unavailable_and_masks_the_password():
    d = MysqlDialect(ServiceConfig(name="s", url="mysql://bob:hunter2@127.0.0.1:1/shop", connect_timeout=2))
    err = error_of(d.connect)
    assert isinstance(err, DatabaseUnavailable)
    assert "hunter2" not in err.message and "***" in err.message
    assert d.is_disconnect(err)


def test_quote_doubles_backticks_and_percent_and_refuses_nul():
    d = MysqlDialect(ServiceConfig(name="s", url="mysql://h/x"))
    assert d.quote("plain") == "`plain`"
    assert d.quote("a`b") == "`a``b`"
    assert d.quote("100%") == "`100%%`"
    with pytest.raises(InvalidArguments):
        d.quote("a\x00b")
    # Memoized answers are the same; a refused name is refused again (never memoized).
    assert d.quote("100%") == "`100%%`" and d.quote("a`b") == "`a``b`"
    with pytest.raises(InvalidArguments):
        d.quote("a\x00b")
    assert "a\x00b" not in d._quoted


def test_paginate_and_nulls_ordering_sql():
    d = MysqlDialect(ServiceConfig(name="s", url="mysql://h/x"))
    assert d.paginate(None, None) == ("", [])
    assert d.paginate(10, None) == (" LIMIT %s", [10])
    assert d.paginate(10, 5) == (" LIMIT %s OFFSET %s", [10, 5])
    assert d.paginate(None, 5) == (" LIMIT %s OFFSET %s", [18446744073709551615, 5])
    assert d.order_sql([("v", "ASC", "LAST")]) == " ORDER BY `v` IS NULL ASC, `v` ASC"
    assert d.order_sql([("v", "DESC", "FIRST")]) == " ORDER BY `v` IS NULL DESC, `v` DESC"
    with pytest.raises(InvalidArguments):
        d.order_sql([("v", "SIDEWAYS", None)])


def test_type_mapping_table():
    cases = {
        ("tinyint", "tinyint(1)"): "boolean", ("tinyint", "tinyint(4)"): "tinyint",
        ("int", "int(11)"): "integer", ("bigint", "bigint(20) unsigned"): "bigint",
        ("smallint", "smallint"): "smallint", ("mediumint", "mediumint"): "mediumint",
        ("decimal", "decimal(10,2)"): "decimal", ("double", "double"): "double", ("float", "float"): "float",
        ("varchar", "varchar(20)"): "string", ("char", "char(3)"): "string", ("text", "text"): "text",
        ("mediumtext", "mediumtext"): "mediumtext", ("longtext", "longtext"): "longtext",
        ("date", "date"): "date", ("time", "time(6)"): "time", ("datetime", "datetime"): "datetime",
        ("timestamp", "timestamp"): "timestamp", ("year", "year(4)"): "integer", ("json", "json"): "json",
        ("blob", "blob"): "binary", ("varbinary", "varbinary(16)"): "binary", ("binary", "binary(4)"): "binary",
        ("enum", "enum('a','b')"): "string", ("set", "set('x')"): "string", ("bit", "bit(1)"): "boolean",
        ("bit", "bit(8)"): "integer", ("uuid", "uuid"): "uuid", ("point", "point"): "binary",
    }
    for (data_type, column_type), expected in cases.items():
        assert simple_type(data_type, column_type)[0] == expected, (data_type, column_type)
    assert simple_type("decimal", "decimal(10,2)", None, 10, 2)[2:4] == (10, 2)
    assert simple_type("set", "set('a','b''c')")[4] == {"picklist": ["a", "b'c"], "set": True}


def test_literal_time_and_datetime_helpers():
    assert unescape_literal(r"it''s a \\ back\n") == "it's a \\ back\n"
    assert format_time(timedelta(hours=25, seconds=1)) == "25:00:01"
    assert format_time(timedelta(seconds=36001, microseconds=500000)) == "10:00:01.500000"
    assert format_time(-timedelta(hours=1, minutes=2, seconds=3)) == "-01:02:03"
    assert to_naive_utc("2024-01-01T10:00:00+02:00") == datetime(2024, 1, 1, 8, 0)
    assert to_naive_utc("2024-01-01 10:00:00Z") == datetime(2024, 1, 1, 10, 0)
    assert to_naive_utc("2024-01-01T10:00:00") == datetime(2024, 1, 1, 10, 0)
    assert to_naive_utc("2024-01-01 10:00:00") == "2024-01-01 10:00:00"   # MySQL reads it as is
    assert to_naive_utc("2024-01-01") == "2024-01-01"
    aware = datetime(2024, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert to_naive_utc(aware) == datetime(2024, 6, 1, 17, 0)


# ============================================================================ connections

def test_session_settings(dialect, fast, dbname):
    for d, seconds in ((dialect, 30.0), (fast, 0.5)):
        c = d.connect()
        try:
            _, rows = d.query(c, "SELECT @@SESSION.sql_mode, @@SESSION.time_zone, @@autocommit, "
                                 "@@character_set_connection, DATABASE(), @@innodb_lock_wait_timeout")
            mode, tz, autocommit, charset, db, lock_wait = rows[0]
            assert "STRICT_ALL_TABLES" in mode.split(",")
            assert "NO_BACKSLASH_ESCAPES" not in mode and "ANSI_QUOTES" not in mode
            assert (tz, autocommit, charset, db) == ("+00:00", 1, "utf8mb4", dbname)
            if c.is_mariadb:
                _, rows = d.query(c, "SELECT @@SESSION.max_statement_time")
                assert float(rows[0][0]) == seconds
            else:
                _, rows = d.query(c, "SELECT @@SESSION.max_execution_time")
                assert int(rows[0][0]) == int(seconds * 1000)
            assert lock_wait == max(1, int(seconds + 0.999))
        finally:
            d.close(c)


def test_wrong_password_is_unavailable_without_the_password(dbname):
    parts = urlsplit(_url_for(dbname))
    user = _server_args()["user"] or "root"
    url = urlunsplit(parts._replace(netloc=f"{user}:Wr0ngPw%21@{parts.hostname}:{parts.port or 3306}"))
    d = dialect_for(ServiceConfig(name="s", url=url, connect_timeout=3))
    err = error_of(d.connect)
    assert isinstance(err, DatabaseUnavailable)
    assert "Wr0ngPw" not in err.message


def test_ping_is_disconnect_and_killed_connection(dialect, admin):
    c = dialect.connect()
    dialect.ping(c)
    assert not dialect.is_closed(c)
    admin.cursor().execute("KILL CONNECTION %s", (c.thread_id(),))
    err = error_of(dialect.query, c, "SELECT 1")
    assert isinstance(err, DatabaseUnavailable)
    assert dialect.is_disconnect(err)
    dialect.close(c)
    assert dialect.is_closed(c)
    assert isinstance(error_of(dialect.ping, c), DatabaseUnavailable)
    assert dialect.is_disconnect(pymysql.err.OperationalError(2006, "MySQL server has gone away"))
    assert dialect.is_disconnect(pymysql.err.InterfaceError(0, ""))
    assert not dialect.is_disconnect(pymysql.err.IntegrityError(1062, "Duplicate entry"))
    assert not dialect.is_disconnect(DatabaseError("x", kind="unique"))


# ============================================================================ introspection

def test_introspection_customer_fields(catalog, conn):
    t = catalog.table("customer")
    assert not t.is_view and t.comment == "People who buy things"
    assert t.primary_key == ["id"]
    f = {c.name: c for c in t.columns}
    assert list(f)[:3] == ["id", "name", "email"]

    assert (f["id"].type, f["id"].auto_increment, f["id"].is_primary_key, f["id"].is_unique) == ("id", True, True, True)
    assert f["id"].allow_null is False and f["id"].required is False
    assert (f["name"].type, f["name"].length, f["name"].db_type) == ("string", 100, "varchar(100)")
    assert f["name"].required and f["name"].comment == "Full name" and f["name"].is_index
    assert not f["name"].is_unique
    assert f["email"].is_unique and f["email"].is_index and f["email"].comment is None
    assert (f["active"].type, f["active"].default, f["active"].required) == ("boolean", True, False)
    assert (f["level"].type, f["level"].default) == ("tinyint", 0)
    assert f["small"].type == "smallint" and f["medium"].type == "mediumint"
    assert f["big"].type == "bigint" and f["big"].extra.get("unsigned") is True
    assert (f["balance"].type, f["balance"].precision, f["balance"].scale, f["balance"].default) == \
        ("decimal", 10, 2, "0.00")
    assert f["ratio"].type == "double" and f["score"].type == "float"
    assert (f["code"].type, f["code"].length, f["code"].default) == ("string", 3, "abc")
    assert f["motto"].default == "it's a \\ back"
    assert (f["bio"].type, f["notes"].type, f["essay"].type) == ("text", "mediumtext", "longtext")
    assert (f["born"].type, f["wake"].type, f["seen"].type) == ("date", "time", "datetime")
    assert f["wake_precise"].db_type == "time(6)"
    assert (f["created"].type, f["created"].default, f["created"].required) == ("timestamp", "CURRENT_TIMESTAMP", False)
    assert f["created"].extra.get("default_expression") is True
    assert f["updated"].default is None and f["updated"].extra.get("on_update") == "CURRENT_TIMESTAMP"
    assert f["yr"].type == "integer"
    assert f["doc"].type == "json" and f["doc"].allow_null
    assert (f["photo"].type, f["hash"].type, f["token"].type, f["token"].length) == ("binary", "binary", "binary", 16)
    assert (f["flags"].type, f["flag"].type, f["flag"].default) == ("integer", "boolean", True)
    assert (f["mood"].type, f["mood"].extra["picklist"]) == ("string", ["happy", "sad", "it's complicated"])
    assert f["mood"].to_field()["picklist"] == ["happy", "sad", "it's complicated"]
    assert f["tags"].extra == {"picklist": ["red", "green", "blue"], "set": True}
    assert f["age"].type == "integer" and f["age"].default is None and not f["age"].required
    assert f["email_domain"].extra.get("generated") is True
    for c in t.columns:
        assert not c.is_foreign_key and c.ref_table is None
    field = f["name"].to_field()
    assert field["type"] == "string" and field["required"] is True and field["description"] == "Full name"


def test_introspection_keys_views_and_relations(catalog):
    assert catalog.table("customer_names").is_view
    assert [c.name for c in catalog.table("customer_names").columns] == ["id", "name"]
    assert catalog.table("ODD`NAME%S") is catalog.table("odd`name%s")

    orders = catalog.table("orders")
    cid = orders.column("customer_id")
    assert (cid.is_foreign_key, cid.ref_table, cid.ref_field) == (True, "customer", "id")
    assert (cid.ref_on_update, cid.ref_on_delete) == ("CASCADE", "RESTRICT")
    assert cid.is_index and not cid.is_unique
    assert [fk.name for fk in orders.foreign_keys] == ["fk_orders_customer"]

    b = catalog.table("bin")
    assert b.column("id").type == "bigid"
    [fk] = b.foreign_keys
    assert (fk.columns, fk.ref_table, fk.ref_columns) == (("region", "wh_code"), "warehouse", ("region", "code"))
    assert (fk.on_update, fk.on_delete) == ("CASCADE", "RESTRICT")
    assert b.column("region").is_foreign_key and b.column("wh_code").is_foreign_key
    assert b.column("region").ref_table is None      # composite keys live in foreign_keys only

    wh = catalog.table("warehouse")
    assert wh.primary_key == ["region", "code"]
    assert not wh.column("region").is_unique and wh.column("region").is_primary_key

    rel = {r.name: r for r in catalog.table("customer").relations}
    assert rel["orders_by_customer_id"].type == "has_many"
    assert rel["orders_by_customer_id"].ref_field == ("customer_id",)
    mm = rel["product_by_customer_product"]
    assert (mm.type, mm.junction_table, mm.junction_field, mm.junction_ref_field) == \
        ("many_many", "customer_product", ("customer_id",), ("product_id",))
    assert {r.name for r in orders.relations} == {"customer_by_customer_id"}
    assert {r.name: r.type for r in wh.relations} == {"bin_by_region_wh_code": "has_many"}
    assert {r.name for r in catalog.table("product").relations} >= {"customer_by_customer_product"}

    tagged = catalog.table("tagged")
    assert tagged.column("code").default == "uuid()" and tagged.column("code").extra["default_expression"]
    assert catalog.table("event").column("at").default == "CURRENT_TIMESTAMP(6)"


def test_introspection_routines(catalog):
    assert set(catalog.procedures) == {"proc_multi", "proc_no_args", "proc_write", "proc_outs", "proc_fail",
                                       "proc_big"}
    assert set(catalog.functions) == {"fn_add", "fn_greet", "fn_time", "fn_is_big"}
    multi = catalog.procedures["proc_multi"]
    assert multi.kind == "procedure" and multi.return_type is None
    assert multi.description == "Customers from p_min on"
    assert [(p.name, p.position, p.param_type, p.type) for p in multi.params] == [
        ("p_min", 1, "IN", "integer"), ("p_count", 2, "OUT", "integer"), ("p_counter", 3, "INOUT", "integer")]
    assert all(not p.has_default for p in multi.params)
    outs = {p.name: p for p in catalog.procedures["proc_outs"].params}
    assert (outs["p_text"].type, outs["p_text"].length) == ("string", 20)
    assert (outs["p_price"].type, outs["p_price"].precision, outs["p_price"].scale) == ("decimal", 8, 2)
    assert outs["p_flag"].type == "boolean" and outs["p_when"].type == "datetime"
    assert catalog.procedures["proc_no_args"].params == []
    greet = catalog.functions["fn_greet"]
    assert (greet.kind, greet.return_type, greet.description) == ("function", "string", "Greets")
    assert greet.return_db_type.startswith("varchar(100)")
    assert [(p.name, p.param_type, p.type, p.length) for p in greet.params] == [("who", "IN", "string", 50)]
    assert catalog.functions["fn_time"].return_type == "time"
    assert catalog.functions["fn_is_big"].return_type == "boolean"
    assert catalog.functions["fn_add"].to_dict()["params"][1]["name"] == "b"


def test_introspection_is_a_handful_of_queries(dialect, conn):
    def questions():
        _, rows = dialect.query(conn, "SHOW SESSION STATUS LIKE 'Questions'")
        return int(rows[0][1])
    before = questions()
    dialect.introspect(conn)
    # 7 catalog queries (+1 for the status query itself), whatever the number of tables.
    assert questions() - before <= 9


# ============================================================================ composition and values

def test_percent_and_backtick_identifiers_round_trip(dialect, conn, catalog):
    t = catalog.table("odd`name%s")
    assert [c.name for c in t.columns] == ["pct%s", "back`tick", "100%"]
    key = dialect.insert(conn, t, {"pct%s": 7, "back`tick": "50% off", "100%": 100})
    assert key == {"pct%s": 7}
    rows = select(dialect, conn, catalog, "odd`name%s", ["pct%s", "back`tick", "100%"],
                  where=f"{dialect.quote('100%')} = %s", params=[100])
    assert rows == [{"pct%s": 7, "back`tick": "50% off", "100%": 100}]


def test_like_escapes_wildcards_and_backslashes(dialect, conn, catalog):
    table = catalog.table("words")
    for w in ("a%b", "a_b", "a!b", "a\\b", "axb", "ünï 😀 code"):
        dialect.insert(conn, table, {"w": w})
    col = dialect.quote("w")
    for needle, expected in (("%", ["a%b"]), ("_", ["a_b"]), ("!", ["a!b"]), ("\\", ["a\\b"]),
                             ("😀", ["ünï 😀 code"])):
        rows = select(dialect, conn, catalog, "words", ["w"], where=dialect.like_sql(col),
                      params=[dialect.like_pattern(needle, True, True)])
        assert [r["w"] for r in rows] == expected, needle
    rows = select(dialect, conn, catalog, "words", ["w"], where=dialect.like_sql(col, negate=True),
                  params=[dialect.like_pattern("a", False, True)])
    assert [r["w"] for r in rows] == ["ünï 😀 code"]


def test_order_nulls_and_paging(dialect, conn, catalog):
    def ids(order, limit=None, offset=None):
        t = catalog.table("nullish")
        sql, params = dialect.select_sql(t, ["`id`"], order=order, limit=limit, offset=offset)
        return [r[0] for r in dialect.query(conn, sql, params)[1]]
    assert ids([("v", "ASC", "LAST"), ("id", "ASC", None)]) == [4, 2, 1, 3]
    assert ids([("v", "ASC", "FIRST"), ("id", "ASC", None)]) == [1, 3, 4, 2]
    assert ids([("v", "DESC", "FIRST"), ("id", "ASC", None)]) == [1, 3, 2, 4]
    assert ids([("v", "DESC", "LAST"), ("id", "ASC", None)]) == [2, 4, 1, 3]
    assert ids([("id", "ASC", None)], limit=2, offset=1) == [2, 3]
    assert ids([("id", "ASC", None)], offset=3) == [4]


def test_insert_returns_keys(dialect, conn, catalog):
    key = insert_customer(dialect, conn, catalog)
    assert set(key) == {"id"} and isinstance(key["id"], int) and key["id"] > 0
    assert dialect.insert(conn, catalog.table("warehouse"), {"region": "eu", "code": 1, "name": "Main"}) == \
        {"region": "eu", "code": 1}
    bin_key = dialect.insert(conn, catalog.table("bin"), {"region": "eu", "wh_code": 1, "label": "A1"})
    assert isinstance(bin_key["id"], int)
    assert dialect.insert(conn, catalog.table("tagged"), {"code": "explicit", "label": "x"}) == {"code": "explicit"}
    assert dialect.insert(conn, catalog.table("tagged"), {"label": "generated"}) == {}   # uuid() not readable
    ev = dialect.insert(conn, catalog.table("event"), {})
    rows = select(dialect, conn, catalog, "event", ["id", "kind", "at"], where="`id` = %s", params=[ev["id"]])
    assert rows[0]["kind"] == "ping" and isinstance(rows[0]["at"], datetime)


def test_every_type_round_trips(dialect, conn, catalog):
    t = catalog.table("customer")
    photo = bytes(range(256))
    key = insert_customer(
        dialect, conn, catalog, name="Zoë 😀 Ünicode", active=False, level=-5, small=123, medium=70000,
        big=2 ** 63, balance=Decimal("1234.56"), ratio=0.125, score=1.5, code="xyz", bio="b" * 70,
        notes="n", essay="e", born="2000-02-29", wake="25:30:00", wake_precise="01:02:03.250000",
        seen="2024-03-01T10:00:00.5+02:00", yr=2024, doc={"a": [1, 2, {"b": None}], "ü": "😀"},
        photo=base64.b64encode(photo).decode(), hash=base64.b64encode(b"\x00\x01\x02\x03").decode(),
        token=b"raw", flags=5, flag=True, mood="it's complicated", tags=["red", "blue"], age=30)
    rows = select(dialect, conn, catalog, "customer", [c.name for c in t.columns], "`id` = %s", [key["id"]])
    r = rows[0]
    assert r["name"] == "Zoë 😀 Ünicode"
    assert r["active"] is False and r["level"] == -5 and r["medium"] == 70000 and r["big"] == 2 ** 63
    assert r["balance"] == Decimal("1234.56") and r["ratio"] == 0.125 and r["score"] == 1.5
    assert r["born"] == date(2000, 2, 29)
    assert r["wake"] == "25:30:00" and r["wake_precise"] == "01:02:03.250000"
    assert r["seen"] == datetime(2024, 3, 1, 8, 0, 0, 500000)       # +02:00 stored as UTC
    assert r["yr"] == 2024
    assert r["doc"] == {"a": [1, 2, {"b": None}], "ü": "😀"}
    assert r["photo"] == photo and r["hash"] == b"\x00\x01\x02\x03" and r["token"] == b"raw"
    assert r["flags"] == 5 and r["flag"] is True
    assert r["mood"] == "it's complicated" and r["tags"] == ["red", "blue"]
    assert isinstance(r["created"], datetime) and r["updated"] is None
    assert r["email_domain"] == "example.com"
    # TIMESTAMP columns are read in the session's UTC.
    _, now = dialect.query(conn, "SELECT UTC_TIMESTAMP()")
    assert abs((now[0][0] - r["created"]).total_seconds()) < 120
    # A JSON string value is JSON text; scalars become JSON.
    dialect.execute(conn, "UPDATE customer SET doc = %s WHERE id = %s",
                    [dialect.bind_value(t.column("doc"), True), key["id"]])
    assert select(dialect, conn, catalog, "customer", ["doc"], "`id` = %s", [key["id"]])[0]["doc"] is True
    empty = insert_customer(dialect, conn, catalog, tags=[])
    assert select(dialect, conn, catalog, "customer", ["tags"], "`id` = %s", [empty["id"]])[0]["tags"] == []


def test_bind_value_rejects_bad_base64(dialect, catalog):
    with pytest.raises(InvalidArguments) as info:
        dialect.bind_value(catalog.table("customer").column("photo"), "not base64!")
    assert info.value.details == {"column": "photo"}


def test_update_counts_matched_rows(dialect, conn, catalog):
    key = insert_customer(dialect, conn, catalog, level=3)
    t = catalog.table("customer")
    sql, params = dialect.update_sql(t, {"level": 3}, "`id` = %s", [key["id"]])
    assert dialect.execute(conn, sql, params) == 1          # unchanged values still count (FOUND_ROWS)


# ============================================================================ transactions

def test_transactions_read_only_commit_rollback_savepoint(dialect, conn, catalog):
    table = catalog.table("product")
    dialect.begin(conn, read_only=True)
    err = error_of(dialect.insert, conn, table, {"sku": "ro-1"})
    assert isinstance(err, DatabaseError) and err.kind == "read_only"
    dialect.rollback(conn)

    dialect.begin(conn)
    dialect.insert(conn, table, {"sku": "tx-rolled"})
    dialect.rollback(conn)
    dialect.begin(conn)
    dialect.insert(conn, table, {"sku": "tx-kept"})
    dialect.savepoint(conn, "sp 1")
    dialect.insert(conn, table, {"sku": "tx-undone"})
    dialect.rollback_to(conn, "sp 1")
    dialect.release(conn, "sp 1")
    dialect.commit(conn)
    skus = {r["sku"] for r in select(dialect, conn, catalog, "product", ["sku"], "`sku` LIKE %s", ["tx-%"])}
    assert skus == {"tx-kept"}


# ============================================================================ errors

def test_constraint_errors_are_mapped(dialect, conn, catalog):
    cust = catalog.table("customer")
    key = insert_customer(dialect, conn, catalog, email="dup@example.com")

    err = error_of(insert_customer, dialect, conn, catalog, email="dup@example.com")
    assert (err.kind, err.constraint, err.column) == ("unique", "uq_customer_email", "email")
    assert "dup@example.com" not in err.message

    err = error_of(dialect.insert, conn, catalog.table("orders"), {"customer_id": 987654})
    assert (type(err), err.kind, err.constraint, err.column) == \
        (DatabaseError, "foreign_key", "fk_orders_customer", "customer_id")
    assert "987654" not in err.message
    dialect.insert(conn, catalog.table("orders"), {"customer_id": key["id"]})
    sql, params = dialect.delete_sql(cust, "`id` = %s", [key["id"]])
    err = error_of(dialect.execute, conn, sql, params)
    assert (err.kind, err.constraint) == ("foreign_key", "fk_orders_customer")

    err = error_of(insert_customer, dialect, conn, catalog, name=None)
    assert (err.kind, err.column) == ("not_null", "name")
    err = error_of(dialect.insert, conn, cust, {"email": "noname@example.com"})
    assert (err.kind, err.column) == ("not_null", "name")

    err = error_of(insert_customer, dialect, conn, catalog, age=-1)
    assert (err.kind, err.constraint) == ("check", "chk_age")

    err = error_of(insert_customer, dialect, conn, catalog, doc="{not json")
    assert (err.kind, err.column) == ("type", "doc")
    assert "not json" not in err.message


def test_type_errors_name_the_column_not_the_value(dialect, conn, catalog):
    cases = [({"age": "seventeen-xyz"}, "age"), ({"note": "much-too-long-value"}, "note"),
             ({"level": 1000}, "level"), ({"born": "2024-13-45"}, "born"), ({"mood": "ecstatic"}, "mood")]
    for values, column in cases:
        err = error_of(insert_customer, dialect, conn, catalog, **values)
        assert isinstance(err, DatabaseError) and (err.kind, err.column) == ("type", column), values
        assert str(list(values.values())[0]) not in err.message
    err = error_of(dialect.execute, conn, "INSERT INTO customer (name, email, ratio) VALUES (%s, %s, %s)",
                   ["n", "inf@example.com", float("inf")])
    assert err.kind == "type"


def test_statement_timeout_lock_and_schema_errors(fast, dialect, conn, catalog):
    c = fast.connect()
    try:
        started = time.monotonic()
        # A cross join of 10**10 rows: real work, so MySQL and MariaDB both raise
        # (a lone SLEEP() that MySQL interrupts just returns 1).
        err = error_of(fast.query, c, "SELECT COUNT(*) FROM big a, big b WHERE a.id + b.id < 0")
        assert isinstance(err, QueryTimeout) and time.monotonic() - started < 2
        assert fast.query(c, "SELECT 1")[1] == [(1,)]           # still usable

        # A row lock held by another transaction: the fast session gives up after 1 s.
        key = insert_customer(dialect, conn, catalog)
        dialect.begin(conn)
        dialect.execute(conn, "UPDATE customer SET level = 1 WHERE id = %s", [key["id"]])
        fast.begin(c)                                           # sessions are read-only by default
        err = error_of(fast.execute, c, "UPDATE customer SET level = 2 WHERE id = %s", [key["id"]])
        assert err.kind in ("lock", "timeout")
        fast.rollback(c)
        dialect.rollback(conn)

        err = error_of(fast.query, c, "SELECT * FROM no_such_table")
        assert err.kind == "schema" and "no_such_table" not in err.message
        err = error_of(fast.query, c, "SELEKT 1")
        assert type(err) is DatabaseError and "SELEKT" not in err.message
    finally:
        fast.close(c)


def test_permission_errors(dbname, admin):
    user, password = "mcpf_ro_" + secrets.token_hex(3), secrets.token_hex(8)
    cur = admin.cursor()
    cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
    try:
        cur.execute(f"GRANT SELECT ON `{dbname}`.* TO %s@'%%'", (user,))
        parts = urlsplit(_url_for(dbname))
        url = urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port or 3306}"))
        d = dialect_for(ServiceConfig(name="ro", url=url, connect_timeout=3))
        c = d.connect()
        try:
            assert d.query(c, "SELECT COUNT(*) FROM product")[1][0][0] >= 0
            err = error_of(d.execute, c, "INSERT INTO product (sku) VALUES (%s)", ["denied"])
            assert isinstance(err, PermissionDenied)
        finally:
            d.close(c)
    finally:
        cur.execute("DROP USER %s@'%%'", (user,))


def test_map_error_never_lets_driver_text_through(dialect):
    err = dialect.map_error(pymysql.err.OperationalError(3024, "Query execution was interrupted, "
                                                               "maximum statement execution time exceeded"))
    assert isinstance(err, QueryTimeout)
    assert isinstance(dialect.map_error(pymysql.err.OperationalError(1317, "interrupted")), QueryTimeout)
    assert dialect.map_error(pymysql.err.OperationalError(1213, "Deadlock found")).kind == "lock"
    assert dialect.map_error(pymysql.err.OperationalError(3819, "Check constraint 'c_x' is violated.")).constraint \
        == "c_x"
    assert dialect.map_error(pymysql.err.IntegrityError(
        1062, "Duplicate entry 'secret' for key 'customer.uq_customer_email'")).column in (None, "email")
    assert isinstance(dialect.map_error(pymysql.err.OperationalError(2003, "Can't connect")), DatabaseUnavailable)
    assert isinstance(dialect.map_error(pymysql.err.OperationalError(1142, "INSERT command denied")),
                      PermissionDenied)
    err = dialect.map_error(pymysql.err.ProgrammingError(1064, "syntax near 'SECRET SQL'"))
    assert "SECRET" not in err.message
    assert dialect.map_error(RuntimeError("boom /etc/passwd")).message == "the database reported an error"


# ============================================================================ cancel, client timeout

def test_cancel_stops_a_sleep_from_another_thread(dialect, admin):
    c = dialect.connect()
    outcome = {}

    def run():
        started = time.monotonic()
        try:
            outcome["rows"] = dialect.query(c, "SELECT SLEEP(5) AS mcpf_cancel_me")
        except Exception as exc:  # noqa: BLE001
            outcome["error"] = exc
        outcome["elapsed"] = time.monotonic() - started

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert wait_for(lambda: running(admin, c.thread_id(), "mcpf_cancel_me"))
        cancelled_at = time.monotonic()
        dialect.cancel(c)
        worker.join(5)
        assert not worker.is_alive()
        assert time.monotonic() - cancelled_at < 1.0
        # MariaDB fails the statement with 1317 (QueryTimeout; the layer above reports
        # it as cancelled); MySQL ends an interrupted lone SLEEP() early returning 1.
        assert isinstance(outcome.get("error"), QueryTimeout) or outcome.get("rows", (0, []))[1] == [(1,)]
        assert not running(admin, c.thread_id(), "mcpf_cancel_me")
        assert dialect.query(c, "SELECT 1")[1] == [(1,)]           # the connection survives
        dialect.cancel(c)                                          # nothing running: a no-op
    finally:
        worker.join(5)
        dialect.close(c)


def test_client_read_timeout_kills_the_server_statement(dbname, admin):
    d = make_dialect(dbname, statement_timeout=0.5)
    d.read_timeout_margin = 0.5
    c = d.connect()
    tid = c.thread_id()
    # Stand in for a statement the server's own timeout does not cover (MySQL writes,
    # a hung server): switch it off, so only the client's read timeout can fire.
    d.execute(c, "SET SESSION max_statement_time = 0" if c.is_mariadb else "SET SESSION max_execution_time = 0")
    started = time.monotonic()
    err = error_of(d.query, c, "SELECT SLEEP(10) AS mcpf_hung")
    assert time.monotonic() - started < 3
    assert isinstance(err, DatabaseUnavailable) and d.is_disconnect(err)
    assert d.is_closed(c)
    assert wait_for(lambda: not processlist(admin, tid), timeout=3)
    d.close(c)


GEVENT_CANCEL = r"""
from gevent import monkey; monkey.patch_all()
import sys, time, gevent
from mcp_flask.config import ServiceConfig
from mcp_flask.dialects import dialect_for
d = dialect_for(ServiceConfig(name="g", url=sys.argv[1], statement_timeout=30, connect_timeout=3))
c = d.connect()
watcher = d.connect()
ticks = []
def ticker():                      # runs only if the waiting query yields to the hub
    while True:
        ticks.append(1); gevent.sleep(0.01)
def run():
    try:
        d.query(c, "SELECT SLEEP(5) AS mcpf_gevent")
    except Exception as exc:
        return type(exc).__name__
    return "finished"
t = gevent.spawn(ticker)
g = gevent.spawn(run)
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    _, rows = d.query(watcher, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s "
                               "AND INFO LIKE %s", [c.thread_id(), "%mcpf_gevent%"])
    if rows[0][0]:
        break
    gevent.sleep(0.02)
# While the query waits on the server, the ticker greenlet must keep running.
base = len(ticks)
while len(ticks) < base + 10 and time.monotonic() < deadline:
    gevent.sleep(0.01)
others_ran = len(ticks) >= base + 10 and not g.ready()
start = time.monotonic()
d.cancel(c)
outcome = g.get(timeout=5)
print(outcome, round(time.monotonic() - start, 3), others_ran)
"""


def test_cancel_across_greenlets_under_gevent(dbname):
    """In a gevent-patched process (as in gunicorn's gevent worker), a query waiting on
    MariaDB yields to other greenlets, and one greenlet cancels another's query."""
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, "-c", GEVENT_CANCEL, _url_for(dbname)], cwd=root,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outcome, elapsed, others_ran = proc.stdout.split()
    assert outcome in ("QueryTimeout", "finished") and float(elapsed) < 1.0 and others_ran == "True"


# ============================================================================ streaming

def _stream_all(d, c, sql, params=(), batch=500):
    total = 0
    for names, rows in d.stream(c, sql, params, batch=batch):
        assert names == ["id", "payload"]
        total += len(rows)
    return total


def _rss() -> int | None:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def test_stream_100k_rows_with_flat_memory(dialect, conn):
    # Python-level peak, exactly, on a 10k-row stream (tracemalloc is too slow for 100k):
    # one 500-row batch lives at a time, where 10k buffered rows take ~2.7 MB.
    tracemalloc.start()
    try:
        total = _stream_all(dialect, conn, "SELECT id, payload FROM big WHERE id <= 10000")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 10_000 and peak < 1_000_000, peak
    # All 100k rows: the process does not grow while they pass (buffered, it grows ~27 MB).
    samples, total = [], 0
    for i, (_, rows) in enumerate(dialect.stream(conn, "SELECT id, payload FROM big", batch=500)):
        total += len(rows)
        if i in (20, 199):
            samples.append(_rss())
    assert total == BIG_ROWS
    if None not in samples:
        assert samples[1] - samples[0] < 8_000_000, samples
    assert dialect.query(conn, "SELECT 1")[1] == [(1,)]


def test_stream_closed_early_drains_a_small_rest(dialect, conn):
    gen = dialect.stream(conn, "SELECT id, payload FROM big WHERE id <= 5000 ORDER BY id", batch=100)
    names, rows = next(gen)
    assert rows[0] == (1, "x" * 100)
    gen.close()
    assert not dialect.is_closed(conn)
    assert dialect.query(conn, "SELECT COUNT(*) FROM big")[1] == [(BIG_ROWS,)]   # no "Packets out of order"


def test_stream_closed_early_on_a_large_result_closes_the_connection(dialect, admin):
    c = dialect.connect()
    tid = c.thread_id()
    gen = dialect.stream(c, "SELECT id, payload FROM big", batch=500)
    next(gen)
    gen.close()
    assert dialect.is_closed(c)                      # the pool must not reuse it
    err = error_of(dialect.query, c, "SELECT 1")
    assert isinstance(err, DatabaseUnavailable) and dialect.is_disconnect(err)
    assert wait_for(lambda: not processlist(admin, tid))
    dialect.close(c)


def test_stream_closed_early_with_a_generous_drain_keeps_the_connection(dbname):
    d = make_dialect(dbname)
    d.stream_drain_rows = 200_000
    c = d.connect()
    try:
        gen = d.stream(c, "SELECT id, payload FROM big", batch=500)
        next(gen)
        gen.close()
        assert not d.is_closed(c)
        assert d.query(c, "SELECT 1")[1] == [(1,)]
    finally:
        d.close(c)


def test_stream_timeout_mid_stream_leaves_the_connection_usable(fast):
    c = fast.connect()
    try:
        got = 0
        with pytest.raises(QueryTimeout):
            for _, rows in fast.stream(c, "SELECT id, payload FROM big WHERE id <= 20000 OR SLEEP(1)", batch=500):
                got += len(rows)
        assert got >= 500                            # rows arrived before the timeout hit
        assert fast.query(c, "SELECT 1")[1] == [(1,)]
        assert list(fast.stream(c, "DO 1")) == []    # no result set: nothing yielded
    finally:
        fast.close(c)


# ============================================================================ routines

def test_call_function_scalars(dialect, conn, catalog):
    assert dialect.call_routine(conn, catalog.functions["fn_add"], {"a": 2, "b": 40}) == \
        {"result_sets": [], "out": {}, "value": 42}
    assert dialect.call_routine(conn, catalog.functions["fn_greet"], {"who": "Zoë 😀"})["value"] == "hello Zoë 😀"
    assert dialect.call_routine(conn, catalog.functions["fn_time"], {"h": 30})["value"] == "30:00:00"
    assert dialect.call_routine(conn, catalog.functions["fn_is_big"], {"n": "100.50"})["value"] is True
    assert dialect.call_routine(conn, catalog.functions["fn_add"], {"a": None, "b": 1})["value"] is None


def test_call_procedure_in_out_inout_and_result_sets(dialect, conn, catalog):
    first = insert_customer(dialect, conn, catalog, name="Proc Person")["id"]
    _, rows = dialect.query(conn, "SELECT COUNT(*) FROM customer WHERE id >= %s", [first])
    _, products = dialect.query(conn, "SELECT COUNT(*) FROM product")
    result = dialect.call_routine(conn, catalog.procedures["proc_multi"], {"p_min": first, "p_counter": 41})
    assert result["value"] is None
    assert result["out"] == {"p_count": rows[0][0], "p_counter": 42}
    assert len(result["result_sets"]) == 2
    assert result["result_sets"][0][0] == {"id": first, "name": "Proc Person"}
    assert result["result_sets"][1] == [{"n": products[0][0], "n_2": "second"}]
    assert dialect.query(conn, "SELECT 1")[1] == [(1,)]            # every set was consumed


def test_call_procedure_other_shapes(dialect, conn, catalog):
    assert dialect.call_routine(conn, catalog.procedures["proc_no_args"], {}) == \
        {"result_sets": [[{"one": 1, "two": "two", "t": "25:00:01"}]], "out": {}, "value": None}
    assert dialect.call_routine(conn, catalog.procedures["proc_write"], {"p_sku": "from-proc"}) == \
        {"result_sets": [], "out": {}, "value": None}
    assert select(dialect, conn, catalog, "product", ["name"], "`sku` = %s", ["from-proc"]) == [{"name": "from-proc"}]
    outs = dialect.call_routine(conn, catalog.procedures["proc_outs"], {})["out"]
    assert outs == {"p_when": datetime(2024, 2, 3, 4, 5, 6), "p_text": "héllo 😀", "p_flag": True,
                    "p_price": Decimal("9.99"), "p_span": "-01:02:03"}
    assert dialect.call_routine(conn, catalog.procedures["proc_fail"], {"p_qty": 3})["result_sets"] == [[{"qty": 3}]]
    err = error_of(dialect.call_routine, conn, catalog.procedures["proc_fail"], {"p_qty": 11})
    assert err.kind == "signal" and "out of stock" in err.message
    with pytest.raises(InvalidArguments):
        dialect.call_routine(conn, catalog.procedures["proc_fail"], {})
    assert dialect.query(conn, "SELECT 1")[1] == [(1,)]


def test_call_procedure_caps_rows_at_max_rows(dbname, catalog):
    d = make_dialect(dbname, max_rows=50)
    c = d.connect()
    try:
        result = d.call_routine(c, catalog.procedures["proc_big"], {})
        assert result["truncated"] is True
        assert [r["id"] for r in result["result_sets"][0]] == list(range(1, 51))
        assert d.query(c, "SELECT 1")[1] == [(1,)]
        result = d.call_routine(c, catalog.procedures["proc_big"], {}, max_rows=3)   # the tool's own cap
        assert result["truncated"] is True and len(result["result_sets"][0]) == 3
        assert "truncated" not in d.call_routine(c, catalog.procedures["proc_big"], {}, max_rows=500)
    finally:
        d.close(c)
