"""Seeding: the same benchmark tables in PostgreSQL, MariaDB/MySQL and SQLite, cached between runs.

Tables (identical values in every database, derived from the row number ``i``):

* ``bench_categories`` (100 rows): ``id``, ``name``.
* ``bench_items`` (``rows`` rows, 1,000,000 by default): ``id`` (primary key),
  ``name`` (``'item <i>'``), ``qty`` (``i % 1000``), ``price`` (``(i % 10000) / 100``,
  NUMERIC(10,2)), ``created_at`` (2024-01-01 00:00:00 + ``i`` seconds),
  ``category_id`` (``i % 100 + 1``, a foreign key to ``bench_categories``).
* for the slow-query isolation scenario (PostgreSQL and MySQL): a view
  ``bench_slow`` whose every read sleeps 2 seconds inside the database (no CPU),
  and a stored function ``bench_sleep(seconds)`` for when the routines tools exist.

Bulk loads are set-based inside the database (PostgreSQL ``generate_series``,
MariaDB's ``seq_1_to_N`` sequence engine with a multi-row INSERT fallback,
SQLite a recursive CTE in one transaction), so seeding a million rows takes
seconds.  A database is reused when it already holds the right row count.

Every ``seed_*`` function returns ``(url_for_mcp_flask, seconds_spent_seeding)``
(0.0 when the cached copy was reused).
"""
from __future__ import annotations

import os
import sqlite3
import time

DB_NAME = "mcpf_bench"
PG_ADMIN = dict(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
MY_ADMIN = dict(host="127.0.0.1", port=3306, user="root", password="")
#: Where the SQLite copy (and the Toolbox binary) are cached; MCPF_BENCH_CACHE overrides (tests).
CACHE_DIR = os.environ.get("MCPF_BENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "mcp-flask-bench")


def sqlite_path(rows: int) -> str:
    """The cached SQLite file for a table of ``rows`` rows."""
    return os.path.join(CACHE_DIR, f"bench_{rows}.db")


def pg_dsn(dbname: str = DB_NAME) -> dict:
    return dict(PG_ADMIN, dbname=dbname)


def my_params(db: str | None = DB_NAME) -> dict:
    p = dict(MY_ADMIN)
    if db:
        p["database"] = db
    return p


# ---------------------------------------------------------------------------- PostgreSQL
def seed_postgres(rows: int, force: bool = False) -> tuple[str, float]:
    import psycopg2
    admin = psycopg2.connect(**PG_ADMIN)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
        exists = cur.fetchone() is not None
        if not exists:
            cur.execute(f"CREATE DATABASE {DB_NAME}")
    admin.close()
    url = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"
    conn = psycopg2.connect(**pg_dsn())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            if not force and _pg_count(cur) == rows:
                _pg_routines(cur)
                return url, 0.0
            started = time.perf_counter()
            cur.execute("DROP TABLE IF EXISTS bench_items; DROP TABLE IF EXISTS bench_categories")
            cur.execute("CREATE TABLE bench_categories (id integer PRIMARY KEY, name varchar(64) NOT NULL)")
            cur.execute("INSERT INTO bench_categories SELECT i, 'category ' || i FROM generate_series(1, 100) i")
            cur.execute("""
                CREATE TABLE bench_items (
                    id integer NOT NULL, name varchar(64) NOT NULL, qty integer NOT NULL,
                    price numeric(10,2) NOT NULL, created_at timestamp NOT NULL,
                    category_id integer NOT NULL)""")
            cur.execute("""
                INSERT INTO bench_items
                SELECT i, 'item ' || i, i %% 1000, (i %% 10000) / 100.0,
                       timestamp '2024-01-01 00:00:00' + i * interval '1 second', i %% 100 + 1
                FROM generate_series(1, %s) i""", (rows,))
            # Keys after the load: building an index once is much faster than maintaining it.
            cur.execute("ALTER TABLE bench_items ADD PRIMARY KEY (id)")
            cur.execute("ALTER TABLE bench_items ADD CONSTRAINT bench_items_category_fk "
                        "FOREIGN KEY (category_id) REFERENCES bench_categories (id)")
            cur.execute("CREATE INDEX bench_items_category_idx ON bench_items (category_id)")
            cur.execute("VACUUM ANALYZE bench_items")
            _pg_routines(cur)
            return url, time.perf_counter() - started
    finally:
        conn.close()


def _pg_count(cur) -> int:
    cur.execute("SELECT to_regclass('public.bench_items') IS NOT NULL")
    if not cur.fetchone()[0]:
        return -1
    cur.execute("SELECT count(*) FROM bench_items")
    return cur.fetchone()[0]


def _pg_routines(cur) -> None:
    cur.execute("""
        CREATE OR REPLACE FUNCTION bench_sleep(seconds double precision) RETURNS integer
        LANGUAGE sql AS $$ SELECT 1 FROM pg_sleep(seconds) $$""")
    cur.execute("CREATE OR REPLACE VIEW bench_slow AS SELECT 1 AS id FROM pg_sleep(2)")


# ---------------------------------------------------------------------------- MariaDB / MySQL
def seed_mysql(rows: int, force: bool = False) -> tuple[str, float]:
    import pymysql
    admin = pymysql.connect(**my_params(None), autocommit=True)
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {DB_NAME}")
    admin.close()
    url = f"mysql://root@127.0.0.1:3306/{DB_NAME}"
    conn = pymysql.connect(**my_params(), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM information_schema.tables "
                        "WHERE table_schema = %s AND table_name = 'bench_items'", (DB_NAME,))
            if not force and cur.fetchone()[0] and _count(cur) == rows:
                _my_routines(cur)
                return url, 0.0
            started = time.perf_counter()
            cur.execute("DROP TABLE IF EXISTS bench_items")
            cur.execute("DROP TABLE IF EXISTS bench_categories")
            cur.execute("CREATE TABLE bench_categories (id int PRIMARY KEY, name varchar(64) NOT NULL) "
                        "ENGINE=InnoDB")
            cur.execute("INSERT INTO bench_categories VALUES " +
                        ",".join(f"({i}, 'category {i}')" for i in range(1, 101)))
            cur.execute("""
                CREATE TABLE bench_items (
                    id int NOT NULL PRIMARY KEY, name varchar(64) NOT NULL, qty int NOT NULL,
                    price decimal(10,2) NOT NULL, created_at datetime NOT NULL,
                    category_id int NOT NULL, KEY bench_items_category_idx (category_id),
                    CONSTRAINT bench_items_category_fk FOREIGN KEY (category_id)
                        REFERENCES bench_categories (id)) ENGINE=InnoDB""")
            cur.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")
            try:
                # MariaDB's sequence engine: the whole load is one set-based statement.
                cur.execute(f"""
                    INSERT INTO bench_items
                    SELECT seq, CONCAT('item ', seq), seq % 1000, (seq % 10000) / 100,
                           TIMESTAMP('2024-01-01 00:00:00') + INTERVAL seq SECOND, seq % 100 + 1
                    FROM seq_1_to_{int(rows)}""")
            except pymysql.err.ProgrammingError:
                # MySQL has no sequence engine: multi-row INSERT batches.
                batch = 5000
                for start in range(1, rows + 1, batch):
                    values = [_row(i) for i in range(start, min(start + batch, rows + 1))]
                    cur.executemany("INSERT INTO bench_items VALUES (%s, %s, %s, %s, %s, %s)", values)
            cur.execute("SET SESSION foreign_key_checks = 1, unique_checks = 1")
            cur.execute("ANALYZE TABLE bench_items")
            cur.fetchall()
            _my_routines(cur)
            return url, time.perf_counter() - started
    finally:
        conn.close()


def _my_routines(cur) -> None:
    cur.execute("DROP FUNCTION IF EXISTS bench_sleep")
    cur.execute("CREATE FUNCTION bench_sleep(seconds double) RETURNS int NO SQL "
                "BEGIN DO SLEEP(seconds); RETURN 1; END")
    cur.execute("CREATE OR REPLACE VIEW bench_slow AS SELECT SLEEP(2) AS id")


def _row(i: int) -> tuple:
    import datetime
    from decimal import Decimal
    return (i, f"item {i}", i % 1000, Decimal(i % 10000) / 100,
            datetime.datetime(2024, 1, 1) + datetime.timedelta(seconds=i), i % 100 + 1)


# ---------------------------------------------------------------------------- SQLite
def seed_sqlite(rows: int, force: bool = False) -> tuple[str, float]:
    os.makedirs(CACHE_DIR, exist_ok=True)
    path = sqlite_path(rows)
    url = "sqlite:///" + path
    if not force and os.path.exists(path):
        conn = sqlite3.connect(path)
        try:
            if _count(conn.cursor()) == rows:
                return url, 0.0
        except sqlite3.Error:
            pass
        finally:
            conn.close()
    started = time.perf_counter()
    tmp = path + ".tmp"
    for p in (tmp, tmp + "-journal"):
        if os.path.exists(p):
            os.remove(p)
    conn = sqlite3.connect(tmp)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        with conn:
            conn.execute("CREATE TABLE bench_categories (id INTEGER PRIMARY KEY, name VARCHAR(64) NOT NULL)")
            conn.executemany("INSERT INTO bench_categories VALUES (?, ?)",
                             [(i, f"category {i}") for i in range(1, 101)])
            conn.execute("""
                CREATE TABLE bench_items (
                    id INTEGER PRIMARY KEY, name VARCHAR(64) NOT NULL, qty INTEGER NOT NULL,
                    price NUMERIC(10,2) NOT NULL, created_at DATETIME NOT NULL,
                    category_id INTEGER NOT NULL REFERENCES bench_categories (id))""")
            # One set-based statement in one transaction (faster than executemany of tuples).
            conn.execute("""
                WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
                INSERT INTO bench_items
                SELECT i, 'item ' || i, i % 1000, (i % 10000) / 100.0,
                       strftime('%Y-%m-%d %H:%M:%S', '2024-01-01 00:00:00', '+' || i || ' seconds'),
                       i % 100 + 1
                FROM n""", (rows,))
            conn.execute("CREATE INDEX bench_items_category_idx ON bench_items (category_id)")
        conn.execute("ANALYZE")
    finally:
        conn.close()
    os.replace(tmp, path)
    return url, time.perf_counter() - started


def _count(cur) -> int:
    cur.execute("SELECT count(*) FROM bench_items")
    return cur.fetchone()[0]


SEEDERS = {"postgresql": seed_postgres, "mysql": seed_mysql, "sqlite": seed_sqlite}
