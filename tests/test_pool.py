"""The connection pool (pool.py) and the transaction layer (database.py) on real connections.

Bounded with a waiting checkout and "database busy", liveness of idle
connections, broken ones discarded (and their dead idle siblings purged), and
the connection always returned: after errors, after a streaming generator is
closed halfway, after a consumer generator holding a transaction is abandoned.
SQLite connections serve the pure pool tests; PostgreSQL and MySQL the ones
about dead connections and server-side cursors.
"""
from __future__ import annotations

import sqlite3
import sys
import threading
import time

import pytest

from conftest import McpTestClient, make_settings
from mcp_flask.database import Database
from mcp_flask.errors import DatabaseBusy, DatabaseError, DatabaseUnavailable
from mcp_flask.pool import Pool
from routine_fixtures import routines_db  # noqa: F401 (fixture)


def sqlite_pool(tmp_path, **kw) -> tuple[Pool, list]:
    made: list = []

    def create():
        conn = sqlite3.connect(str(tmp_path / "p.db"), check_same_thread=False)
        made.append(conn)
        return conn

    def ping(conn):
        conn.execute("SELECT 1").fetchall()
    kw.setdefault("size", 2)
    kw.setdefault("timeout", 0.3)
    return Pool(create, ping=ping, **kw), made


def database(url: str, **service) -> Database:
    return Database(make_settings({"svc": {"url": url, **service}}).services["svc"])


# ---------------------------------------------------------------------------- bounded, waiting
def test_exhausted_pool_waits_then_answers_busy(tmp_path):
    pool, made = sqlite_pool(tmp_path, size=2, timeout=0.3)
    a, b = pool.acquire(), pool.acquire()
    start = time.monotonic()
    with pytest.raises(DatabaseBusy) as err:
        pool.acquire()
    waited = time.monotonic() - start
    assert 0.25 <= waited < 2.0, waited
    assert "busy" in err.value.message and err.value.text().startswith("Busy Error:")
    assert len(made) == 2 and pool.stats() == {"size": 2, "open": 2, "idle": 0, "in_use": 2, "waiting": 0}
    pool.release(a)
    pool.release(b)


def test_a_waiting_checkout_gets_the_connection_released_meanwhile(tmp_path):
    pool, made = sqlite_pool(tmp_path, size=1, timeout=5)
    held = pool.acquire()
    got = []
    t = threading.Thread(target=lambda: got.append(pool.acquire()))
    t.start()
    deadline = time.monotonic() + 5
    while pool.stats()["waiting"] != 1:
        assert time.monotonic() < deadline, "the second checkout never waited"
        time.sleep(0.01)
    pool.release(held)
    t.join(5)
    assert got == [held] and len(made) == 1
    pool.release(got[0])


def test_threads_share_a_small_pool_without_double_checkouts_or_lost_wakeups():
    """Idle connections are taken without the lock and released with a notify only when
    someone waits: under real threads hammering a pool of 3, no connection is ever held
    twice at once, no more than 3 exist, and no checkout times out (a lost wakeup would
    leave a waiter asleep until its timeout while connections sit idle)."""
    made = []
    pool = Pool(lambda: made.append(object()) or made[-1], size=3, timeout=10)
    holders: dict = {}
    guard = threading.Lock()
    failures = []

    def worker():
        try:
            for _ in range(2000):
                conn = pool.acquire()
                with guard:
                    if id(conn) in holders:
                        failures.append("a connection was handed out twice")
                    holders[id(conn)] = conn
                if len(made) > 3:
                    failures.append(f"{len(made)} connections exist in a pool of 3")
                time.sleep(0)           # hold it a moment: the others find the pool empty
                with guard:
                    del holders[id(conn)]
                pool.release(conn)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(repr(exc))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    started = time.monotonic()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)         # switch threads as often as possible: races show
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sys.setswitchinterval(interval)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert len(made) <= 3 and pool.stats() == {"size": 3, "open": len(made), "idle": len(made),
                                               "in_use": 0, "waiting": 0}
    assert time.monotonic() - started < 30


def test_reuse_is_lifo_and_broken_connections_free_their_slot(tmp_path):
    pool, made = sqlite_pool(tmp_path, size=2)
    a, b = pool.acquire(), pool.acquire()
    pool.release(a)
    pool.release(b)
    assert pool.acquire() is b
    pool.release(b, broken=True)
    assert pool.stats()["open"] == 1
    with pytest.raises(sqlite3.ProgrammingError):
        b.execute("SELECT 1")               # closed by the pool
    c = pool.acquire()
    d = pool.acquire()
    assert {c, d} & {a} and len(made) == 3
    pool.release(c)
    pool.release(d)


def test_failed_create_frees_the_slot(tmp_path):
    calls = []

    def create():
        calls.append(1)
        if len(calls) == 1:
            raise DatabaseUnavailable("down")
        return sqlite3.connect(":memory:", check_same_thread=False)
    pool = Pool(create, size=1, timeout=0.2)
    with pytest.raises(DatabaseUnavailable):
        pool.acquire()
    assert pool.stats()["open"] == 0
    conn = pool.acquire()                   # the slot was given back: no DatabaseBusy
    pool.release(conn)


def test_idle_connections_are_pinged_and_dead_ones_replaced(tmp_path):
    pool, made = sqlite_pool(tmp_path, size=1, idle_check=0.0)
    a = pool.acquire()
    pool.release(a)
    a.close()                               # died while idle: the ping on checkout fails
    b = pool.acquire()
    assert b is not a and len(made) == 2 and pool.stats()["open"] == 1
    pool.release(b)


def test_known_closed_connections_are_dropped_without_a_round_trip(tmp_path):
    pings = []
    pool = Pool(lambda: sqlite3.connect(":memory:", check_same_thread=False), size=2, timeout=0.2,
                ping=lambda c: pings.append(c), idle_check=3600,
                is_broken=lambda c: getattr(c, "dead", False))

    class Conn:                             # sqlite3.Connection takes no attributes
        dead = True

        def close(self):
            pass
    pool._open += 1                          # a connection that was checked out earlier
    pool.release(Conn())
    conn = pool.acquire()
    assert isinstance(conn, sqlite3.Connection) and not pings and pool.stats()["open"] == 1


def test_purge_idle_closes_every_idle_connection(tmp_path):
    pool, made = sqlite_pool(tmp_path, size=3)
    conns = [pool.acquire() for _ in range(3)]
    pool.release(conns[0])
    pool.release(conns[1])
    assert pool.purge_idle() == 2
    assert pool.stats() == {"size": 3, "open": 1, "idle": 0, "in_use": 1, "waiting": 0}
    pool.release(conns[2])


def test_busy_reaches_the_client_as_a_tool_error(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db, "pool_size": 1, "pool_timeout": 0.3}})
    c = McpTestClient(app)
    c.initialize()
    c.data("get_tables")
    db = app.extensions["mcp_flask"]["services"]["demo"].database
    held = db.pool.acquire()
    try:
        err = c.error_text("get_table_data", {"tableName": "customers", "limit": 1})
        assert err.startswith("Busy Error:") and "1 database connections stayed busy" in err
    finally:
        db.pool.release(held)
    assert c.data("get_table_data", {"tableName": "customers", "limit": 1})["resource"]


# ---------------------------------------------------------------------------- transactions always give back
def test_errors_roll_back_and_return_the_connection(routines_db):
    db = database(routines_db.url)
    try:
        with pytest.raises(DatabaseError):
            with db.transaction() as conn:
                db.dialect.execute(conn, "INSERT INTO items (sku, qty) VALUES ('tx', 1)")
                db.dialect.execute(conn, "INSERT INTO items (sku, qty) VALUES ('tx', 1)")   # duplicate
        assert db.pool.stats()["in_use"] == 0 and db.pool.stats()["idle"] == 1
        assert routines_db.sql("SELECT COUNT(*) FROM items WHERE sku = 'tx'") == [(0,)]
        with pytest.raises(RuntimeError):
            with db.transaction() as conn:
                db.dialect.execute(conn, "INSERT INTO items (sku, qty) VALUES ('tx2', 1)")
                raise RuntimeError("tool bug")
        assert routines_db.sql("SELECT COUNT(*) FROM items WHERE sku = 'tx2'") == [(0,)]
        with db.transaction(read_only=True) as conn:      # the returned connection is clean
            assert db.dialect.query(conn, "SELECT COUNT(*) FROM items")[1][0][0] == 3
        assert db.pool.stats()["open"] == 1
    finally:
        routines_db.reset_items()
        db.close()


def test_stream_closed_halfway_returns_a_clean_connection(routines_db):
    db = database(routines_db.url)
    digits = "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 " \
             "UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
    big = ("SELECT generate_series(1, 20000)" if routines_db.kind == "postgresql" else
           f"SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d FROM {digits} a, {digits} b, {digits} c, {digits} e")
    try:
        for _ in range(3):
            with db.transaction(read_only=True) as conn:
                gen = db.dialect.stream(conn, big, (), batch=100)
                names, rows = next(gen)
                assert len(rows) == 100
                gen.close()                               # abandoned halfway
            stats = db.pool.stats()
            assert stats["in_use"] == 0 and stats["open"] <= 1, stats
            with db.transaction(read_only=True) as conn:
                assert db.dialect.query(conn, "SELECT 41 + 1")[1] == [(42,)]
            if routines_db.kind == "postgresql":
                with db.pool.connection() as conn:
                    assert db.dialect.transaction_status(conn) == "idle"
    finally:
        db.close()


def test_abandoned_consumer_generator_returns_its_connection(routines_db):
    """A response generator holding a transaction (what an SSE body does) closed by the server."""
    db = database(routines_db.url)

    def rows():
        with db.transaction(read_only=True) as conn:
            for i in range(1000):
                yield db.dialect.query(conn, "SELECT 1")[1][0][0] + i
    try:
        gen = rows()
        assert [next(gen), next(gen)] == [1, 2]
        assert db.pool.stats()["in_use"] == 1
        gen.close()
        assert db.pool.stats()["in_use"] == 0
        gen = rows()
        next(gen)
        del gen                                             # garbage-collected without close()
        assert db.pool.stats()["in_use"] == 0
    finally:
        db.close()


# ---------------------------------------------------------------------------- dead connections
def _kill_all(routines_db, db_name: str) -> int:
    """Terminate every server session of the service's database except the fixture's own."""
    if routines_db.kind == "postgresql":
        rows = routines_db.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = %s AND pid <> pg_backend_pid()", (db_name,))
        return len(rows)
    ids = routines_db.sql("SELECT id FROM information_schema.PROCESSLIST WHERE db = %s AND id <> CONNECTION_ID()",
                          (db_name,))
    for (tid,) in ids:
        routines_db.sql(f"KILL CONNECTION {int(tid)}")
    return len(ids)


def test_connections_killed_while_idle_are_replaced_transparently(routines_db):
    db = database(routines_db.url, pool_size=3)
    try:
        held = [db.pool.acquire() for _ in range(3)]
        for c in held:
            db.pool.release(c)
        assert db.pool.stats()["idle"] == 3
        assert _kill_all(routines_db, routines_db.name) >= 3
        # Killed while idle: the first transaction notices, purges, and runs on a fresh one.
        with db.transaction(read_only=True) as conn:
            assert db.dialect.query(conn, "SELECT 7")[1] == [(7,)]
        stats = db.pool.stats()
        assert stats["open"] == 1 and stats["in_use"] == 0, stats
    finally:
        db.close()


def test_connection_killed_mid_transaction_is_discarded(routines_db):
    db = database(routines_db.url)
    try:
        with pytest.raises(DatabaseUnavailable):
            with db.transaction(read_only=True) as conn:
                _kill_all(routines_db, routines_db.name)
                deadline = time.monotonic() + 5
                while True:                       # the kill is asynchronous on the server
                    db.dialect.query(conn, "SELECT 1")
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
        assert db.pool.stats()["open"] == 0
        with db.transaction(read_only=True) as conn:
            assert db.dialect.query(conn, "SELECT 2")[1] == [(2,)]
    finally:
        db.close()


# ---------------------------------------------------------------------------- after an autocommit read
def test_an_autocommit_read_hands_back_only_a_clean_read_only_connection(routines_db):
    """``Database.read``'s checks after the statement (one frame: ``_unfit_after_read``): a
    transaction left open is rolled back and the connection kept; a connection that lost its
    read-only default, or was closed, is discarded and its slot freed."""
    db = database(routines_db.url, pool_size=1)
    dialect = db.dialect
    try:
        def leave_open(conn):
            dialect.execute(conn, "BEGIN")
            return dialect.query(conn, "SELECT 1")[1]
        assert db.read(leave_open) == [(1,)]
        with db.pool.connection() as conn:
            assert not db._is_broken(conn)
            if hasattr(dialect, "in_transaction"):        # PostgreSQL: rolled back
                assert not dialect.in_transaction(conn)
            first = conn
        assert db.read(lambda c: dialect.query(c, "SELECT 2")[1]) == [(2,)]
        with db.pool.connection() as conn:
            assert conn is first                      # kept: the rollback succeeded

        def close_it(conn):
            dialect.close(conn)
            return 3
        assert db.read(close_it) == 3
        assert db.pool.stats()["open"] == 0           # discarded, slot freed
        if routines_db.kind == "postgresql":
            def flip(conn):
                return dialect.query(conn, "SELECT set_config('default_transaction_read_only', 'off', false)")[1]
            assert db.read(flip) == [("off",)]
            assert db.pool.stats()["open"] == 0       # lost its read-only default: discarded
        assert db.read(lambda c: dialect.query(c, "SELECT 4")[1]) == [(4,)]
    finally:
        db.close()
