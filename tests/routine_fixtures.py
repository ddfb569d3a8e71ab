"""Throwaway PostgreSQL and MySQL databases holding stored routines of every shape.

Used by test_routines, test_gevent, test_db_restart and test_parity::

    from routine_fixtures import pg_routines_db, mysql_routines_db  # noqa: F401 (fixtures)

Each fixture (module-scoped) creates a uniquely named database from the
loopback servers of ``dialect_fixtures`` (``MCP_FLASK_TEST_PG`` /
``MCP_FLASK_TEST_MYSQL``), loads ``items`` and the routines below, yields a
``ServerDb`` and drops the database afterwards.  Unreachable servers skip,
or fail under ``MCP_FLASK_REQUIRE_DBS=1``.

Both dialects define the same routines with the same answers where the
databases allow (``add_ints``, ``greet``, ``is_big``, ``slow``, ``restock``,
``items_over``, ``add_item``, ``many_rows``, ``secret_sum``); each adds its own
shapes (PostgreSQL: OUT-parameter functions, SETOF/TABLE/composite returns,
overloads, defaults; MySQL: several result sets).
"""
from __future__ import annotations


import pytest

from dialect_fixtures import _load, create_mysql_database, create_pg_database, mysql_server  # noqa: F401

ITEMS = [("a", 1, "1.50"), ("b", 2, "2.00"), ("c", 30, "3.25")]

PG_SQL = [
    """CREATE TABLE items (id serial PRIMARY KEY, sku text NOT NULL UNIQUE, qty integer NOT NULL DEFAULT 0,
       price numeric(10,2))""",
    "CREATE FUNCTION add_ints(a integer, b integer) RETURNS integer LANGUAGE sql AS 'SELECT a + b'",
    """CREATE FUNCTION greet(who text, greeting text DEFAULT 'Hello') RETURNS text
       LANGUAGE sql AS $$ SELECT greeting || ', ' || who $$""",
    "CREATE FUNCTION is_big(n numeric) RETURNS boolean LANGUAGE sql AS 'SELECT n > 100'",
    """CREATE FUNCTION slow(seconds double precision) RETURNS integer
       LANGUAGE sql AS $$ SELECT 0 FROM pg_sleep(seconds) $$""",
    """CREATE FUNCTION item_stats(min_qty integer, OUT n bigint, OUT total_qty bigint)
       LANGUAGE sql AS $$ SELECT count(*), sum(qty) FROM items WHERE qty >= min_qty $$""",
    """CREATE FUNCTION items_over_fn(min_qty integer) RETURNS TABLE (id integer, sku text)
       LANGUAGE sql AS $$ SELECT i.id, i.sku FROM items i WHERE i.qty >= min_qty ORDER BY i.id $$""",
    "CREATE FUNCTION all_items() RETURNS SETOF items LANGUAGE sql AS $$ SELECT * FROM items ORDER BY id $$",
    "CREATE FUNCTION first_item() RETURNS items LANGUAGE sql AS $$ SELECT * FROM items ORDER BY id LIMIT 1 $$",
    """CREATE FUNCTION many_rows_fn(n integer) RETURNS SETOF integer
       LANGUAGE sql AS $$ SELECT generate_series(1, n) $$""",
    "CREATE FUNCTION describe(x integer) RETURNS text LANGUAGE sql AS $$ SELECT 'integer' $$",
    "CREATE FUNCTION describe(x text) RETURNS text LANGUAGE sql AS $$ SELECT 'text' $$",
    "CREATE FUNCTION secret_sum(a integer, b integer) RETURNS integer LANGUAGE sql AS 'SELECT a + b'",
    """CREATE FUNCTION fail(msg text) RETURNS void LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'refused: %', msg; END $$""",
    """CREATE PROCEDURE restock(IN p_sku text, IN amount integer, INOUT p_qty integer, OUT p_ok boolean)
       LANGUAGE plpgsql AS $$
       BEGIN
           UPDATE items SET qty = qty + amount WHERE sku = p_sku;
           p_qty := COALESCE(p_qty, 0) + amount;
           p_ok := FOUND;
       END $$""",
    """CREATE PROCEDURE add_item(p_sku text, p_qty integer DEFAULT 0)
       LANGUAGE sql AS $$ INSERT INTO items (sku, qty) VALUES (p_sku, p_qty) $$""",
]

MYSQL_SQL = [
    """CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, sku VARCHAR(20) NOT NULL UNIQUE,
       qty INT NOT NULL DEFAULT 0, price DECIMAL(10,2)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    "CREATE FUNCTION add_ints(a INT, b INT) RETURNS INT DETERMINISTIC RETURN a + b",
    """CREATE FUNCTION greet(who VARCHAR(50), greeting VARCHAR(50)) RETURNS VARCHAR(120) CHARSET utf8mb4
       DETERMINISTIC RETURN CONCAT(greeting, ', ', who)""",
    "CREATE FUNCTION is_big(n DECIMAL(10,2)) RETURNS BOOLEAN DETERMINISTIC RETURN n > 100",
    "CREATE FUNCTION slow(seconds DOUBLE) RETURNS INT NOT DETERMINISTIC NO SQL RETURN SLEEP(seconds)",
    "CREATE FUNCTION secret_sum(a INT, b INT) RETURNS INT DETERMINISTIC RETURN a + b",
    """CREATE PROCEDURE restock(IN p_sku VARCHAR(20), IN amount INT, INOUT p_qty INT, OUT p_ok BOOLEAN)
       BEGIN
           UPDATE items SET qty = qty + amount WHERE sku = p_sku;
           SET p_ok = ROW_COUNT() > 0;
           SET p_qty = COALESCE(p_qty, 0) + amount;
       END""",
    """CREATE PROCEDURE items_over(IN min_qty INT)
       BEGIN SELECT id, sku FROM items WHERE qty >= min_qty ORDER BY id; END""",
    """CREATE PROCEDURE two_sets(IN min_qty INT, OUT n INT)
       BEGIN
           SELECT id, sku FROM items WHERE qty >= min_qty ORDER BY id;
           SELECT COUNT(*) AS total FROM items;
           SELECT COUNT(*) INTO n FROM items WHERE qty >= min_qty;
       END""",
    "CREATE PROCEDURE add_item(IN p_sku VARCHAR(20), IN p_qty INT) INSERT INTO items (sku, qty) VALUES (p_sku, p_qty)",
    """CREATE PROCEDURE many_rows(IN n INT)
       BEGIN
           WITH RECURSIVE s (v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM s WHERE v < n) SELECT v FROM s;
       END""",
    "CREATE PROCEDURE slow_proc(IN seconds DOUBLE) BEGIN DO SLEEP(seconds); SELECT 1 AS done; END",
]

class ServerDb:
    """A throwaway database: ``kind``, service ``url``, ``name``, and ``sql()`` for reference queries."""

    __test__ = False

    def __init__(self, kind: str, url: str, name: str, connect, drop):
        self.kind, self.url, self.name = kind, url, name
        self.connect = connect
        self._drop = drop
        self._conn = None

    def sql(self, statement: str, params=()):
        """Run ``statement`` on the fixture's own autocommit connection; its rows (or [])."""
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self.connect()
            try:
                cur = self._conn.cursor()
                cur.execute(statement, tuple(params) or None)
                rows = cur.fetchall() if cur.description else []
                cur.close()
                return [tuple(r) for r in rows]
            except Exception:
                # Restart tests kill every backend, ours included: reconnect once.
                self.close()
                if attempt == 2:
                    raise
        return []

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - already gone
                pass
            self._conn = None

    def drop(self) -> None:
        self.close()
        self._drop()

    def reset_items(self) -> None:
        self.sql("DELETE FROM items")
        for i, (sku, qty, price) in enumerate(ITEMS, 1):
            self.sql("INSERT INTO items (id, sku, qty, price) VALUES (%s, %s, %s, %s)", (i, sku, qty, price))
        if self.kind == "postgresql":
            self.sql("SELECT setval(pg_get_serial_sequence('items', 'id'), 99)")
        else:
            self.sql("ALTER TABLE items AUTO_INCREMENT = 100")


def make_pg_db(extra_sql=()) -> ServerDb:
    """A new PostgreSQL database with the routines loaded (the caller drops it)."""
    url, name, connect, drop = create_pg_database("mcpf_rt_")
    db = ServerDb("postgresql", url, name, connect, drop)
    _load(connect, list(PG_SQL) + list(extra_sql))
    db.reset_items()
    return db


def make_mysql_db(extra_sql=()) -> ServerDb:
    """A new MySQL/MariaDB database with the routines loaded (the caller drops it)."""
    url, name, connect, drop = create_mysql_database("mcpf_rt_")
    db = ServerDb("mysql", url, name, connect, drop)
    _load(connect, list(MYSQL_SQL) + list(extra_sql))
    db.reset_items()
    return db


@pytest.fixture(scope="module")
def pg_routines_db():
    db = make_pg_db()
    yield db
    db.drop()


@pytest.fixture(scope="module")
def mysql_routines_db():
    db = make_mysql_db()
    yield db
    db.drop()


@pytest.fixture(scope="module", params=("postgresql", "mysql"))
def routines_db(request):
    """Each server dialect in turn."""
    db = make_pg_db() if request.param == "postgresql" else make_mysql_db()
    yield db
    db.drop()


# ---------------------------------------------------------------------------- live servers
class LiveMcp:
    """A plain-HTTP MCP session against a live server (``conftest.LiveServer``), one thread at a time."""

    __test__ = False

    def __init__(self, url: str, timeout: float = 30.0):
        import httpx
        self.url = url
        self.http = httpx.Client(timeout=timeout)
        self.sid = None
        self.version = "2025-11-25"
        self.n = 0
        r = self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                       "params": {"protocolVersion": self.version, "capabilities": {},
                                  "clientInfo": {"name": "pytest", "version": "1"}}})
        assert r.status_code == 200, r.text
        self.sid = r.headers["Mcp-Session-Id"]
        assert self.post({"jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202

    def post(self, msg: dict, **headers):
        import json
        h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        if self.sid:
            h.update({"Mcp-Session-Id": self.sid, "MCP-Protocol-Version": self.version})
        h.update(headers)
        return self.http.post(self.url, content=json.dumps(msg), headers=h)

    def call(self, tool: str, args=None) -> dict:
        """The CallToolResult of one tools/call."""
        self.n += 1
        r = self.post({"jsonrpc": "2.0", "id": self.n, "method": "tools/call",
                       "params": {"name": tool, "arguments": args or {}}})
        assert r.status_code == 200, (r.status_code, r.text)
        body = r.json()
        assert "result" in body, body
        return body["result"]

    def data(self, tool: str, args=None):
        import json
        result = self.call(tool, args)
        assert result["isError"] is False, result
        return json.loads(result["content"][0]["text"])

    def error(self, tool: str, args=None) -> str:
        result = self.call(tool, args)
        assert result["isError"] is True, result
        return result["content"][0]["text"]

    def close(self) -> None:
        self.http.close()


def service_toml(name: str, url: str, **settings) -> str:
    """One ``[services.<name>]`` table."""
    import json
    lines = [f"[services.{name}]", f"url = {json.dumps(url)}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    return "\n".join(lines) + "\n\n"


def wait_until(predicate, deadline_s: float, what: str, interval: float = 0.02):
    """Poll ``predicate`` until it returns a truthy value (returned), failing after ``deadline_s``."""
    import time
    end = time.monotonic() + deadline_s
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(interval)
