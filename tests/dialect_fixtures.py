"""The same small dataset in SQLite, PostgreSQL and MariaDB/MySQL, for behavioural tests.

Use it from a test module::

    from dialect_fixtures import dialect_db, fresh_db, db_client  # noqa: F401 (fixtures)

``dialect_db`` is module-scoped and parametrized over ``sqlite``, ``postgresql``
and ``mysql``: each test module gets a fresh, uniquely named database per
dialect (dropped at the end).  PostgreSQL / MySQL are skipped with the reason
when unreachable, unless ``MCP_FLASK_REQUIRE_DBS=1`` (CI), which makes them fail.
DSNs: ``MCP_FLASK_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/test``)
and ``MCP_FLASK_TEST_MYSQL`` (default ``mysql://root@127.0.0.1:3306/test``).

``fresh_db`` (function-scoped) reloads the rows first, so tests that write start
from the same data.  ``db_client`` is an initialized ``McpTestClient`` on an app
whose service ``db`` points at the database.  ``TestDb.rows(sql)`` runs
hand-written SQL (the reference answer) and ``TestDb.checksum()`` digests every
table, to prove a call changed nothing.

The dataset (``authors`` -> ``books`` <- ``book_tags`` -> ``tags``, plus the
view ``cheap_books``) covers every column type the record tools encode:
integer, text, nullable text, date, datetime, boolean, decimal, float, binary
and JSON, with quotes, backslashes, ``%``/``_`` and non-ASCII in the text.
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import urllib.parse
import uuid
from decimal import Decimal

import pytest

PG_URL = os.environ.get("MCP_FLASK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("MCP_FLASK_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
REQUIRE = os.environ.get("MCP_FLASK_REQUIRE_DBS") == "1"
DIALECTS = ("sqlite", "postgresql", "mysql")

PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452")   # first bytes of a PNG, incl. NUL-free binary
BLOB2 = bytes(range(256))

# (id, name, email, born, active, rating, score, bio, created_at, avatar, meta)
AUTHORS = [
    (1, "Ada Lovelace", "ada@example.com", "1815-12-10", True, Decimal("4.90"), 9.5, "First programmer",
     "2023-01-05 09:15:00", PNG, '{"lang": "en", "tags": ["math"]}'),
    (2, "Miles O'Brien", "miles@example.ie", "1960-03-01", True, Decimal("3.25"), 6.25, "It's a 'quote'",
     "2023-02-10 12:00:00", None, '{"lang": "ga"}'),
    (3, "Zoë Ångström", None, None, False, Decimal("4.00"), None, "naïve café ✓", "2023-03-15 18:30:45",
     BLOB2, None),
    (4, "Back\\Slash", "bs@example.com", "1990-07-07", True, None, 1.5, "C:\\temp\\new", None, None, None),
    (5, "100% Real_Name", "pct@example.com", "1985-11-30", False, Decimal("0.00"), 0.0, "50% off_today",
     "2024-06-01 00:00:00", None, '{"n": 1}'),
    (6, "Grace Hopper", "grace@example.com", "1906-12-09", True, Decimal("5.00"), 10.0, None,
     "2023-12-31 23:59:59", None, '{"lang": "en"}'),
    (7, "Alan Turing", "alan@example.com", "1912-06-23", True, Decimal("4.75"), 9.75, "Enigma",
     "2023-06-23 08:00:00", None, None),
    (8, "Edsger Dijkstra", "ewd@example.nl", "1930-05-11", False, Decimal("4.50"), 8.0, "GOTO considered harmful",
     "2023-05-11 10:00:00", None, '{"lang": "nl"}'),
]
# (id, author_id, title, price, pages, published)
BOOKS = [
    (1, 1, "Notes on the Engine", Decimal("19.99"), 120, "1843-09-01"),
    (2, 1, "Sketch of the Analytical Engine", Decimal("25.00"), 80, "1843-10-01"),
    (3, 2, "Deep Space Repairs", Decimal("9.50"), 300, "2371-01-01"),
    (4, 3, "Lumière", Decimal("15.00"), None, None),
    (5, 4, "Paths and Escapes", Decimal("12.00"), 50, "2001-01-01"),
    (6, 5, "Discounts 100%", Decimal("0.00"), 10, "2020-02-29"),
    (7, 6, "COBOL Stories", Decimal("30.00"), 400, "1959-12-01"),
    (8, 6, "Compilers", Decimal("45.50"), 500, "1952-05-01"),
    (9, 7, "Computable Numbers", Decimal("22.22"), 36, "1936-11-12"),
    (10, 7, "Computing Machinery", Decimal("18.00"), 27, "1950-10-01"),
    (11, 8, "A Discipline of Programming", Decimal("35.00"), 217, "1976-01-01"),
    (12, 8, "Go To Statement", Decimal("5.00"), 2, "1968-03-01"),
]
TAGS = [(1, "classic"), (2, "science"), (3, "fiction"), (4, "50%_off")]
BOOK_TAGS = [(1, 1), (1, 2), (2, 2), (3, 3), (7, 1), (9, 1), (9, 2), (11, 1), (12, 4)]

TABLES = ("authors", "books", "tags", "book_tags")
KEYS = {"authors": "id", "books": "id", "tags": "id", "book_tags": "book_id, tag_id"}

_DDL = {
    "sqlite": [
        """CREATE TABLE authors (id INTEGER PRIMARY KEY, name VARCHAR(100) NOT NULL UNIQUE, email VARCHAR(255),
           born DATE, active BOOLEAN NOT NULL DEFAULT 1, rating DECIMAL(5,2) CHECK (rating >= 0), score REAL,
           bio TEXT, created_at DATETIME, avatar BLOB, meta JSON)""",
        """CREATE TABLE books (id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL REFERENCES authors (id),
           title VARCHAR(200) NOT NULL, price DECIMAL(10,2) NOT NULL CHECK (price >= 0), pages INTEGER,
           published DATE)""",
        "CREATE TABLE tags (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE)",
        """CREATE TABLE book_tags (book_id INTEGER NOT NULL REFERENCES books (id),
           tag_id INTEGER NOT NULL REFERENCES tags (id), PRIMARY KEY (book_id, tag_id))""",
        "CREATE VIEW cheap_books AS SELECT id, title, price FROM books WHERE price < 20",
    ],
    "postgresql": [
        """CREATE TABLE authors (id SERIAL PRIMARY KEY, name VARCHAR(100) NOT NULL UNIQUE, email VARCHAR(255),
           born DATE, active BOOLEAN NOT NULL DEFAULT TRUE, rating NUMERIC(5,2) CHECK (rating >= 0),
           score DOUBLE PRECISION, bio TEXT, created_at TIMESTAMP, avatar BYTEA, meta JSONB)""",
        """CREATE TABLE books (id SERIAL PRIMARY KEY, author_id INTEGER NOT NULL REFERENCES authors (id),
           title VARCHAR(200) NOT NULL, price NUMERIC(10,2) NOT NULL CHECK (price >= 0), pages INTEGER,
           published DATE)""",
        "CREATE TABLE tags (id INTEGER NOT NULL PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE)",
        """CREATE TABLE book_tags (book_id INTEGER NOT NULL REFERENCES books (id),
           tag_id INTEGER NOT NULL REFERENCES tags (id), PRIMARY KEY (book_id, tag_id))""",
        "CREATE VIEW cheap_books AS SELECT id, title, price FROM books WHERE price < 20",
    ],
    "mysql": [
        """CREATE TABLE authors (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL UNIQUE,
           email VARCHAR(255), born DATE, active BOOLEAN NOT NULL DEFAULT TRUE,
           rating DECIMAL(5,2) CHECK (rating >= 0), score DOUBLE, bio TEXT, created_at DATETIME, avatar BLOB,
           meta JSON) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
        """CREATE TABLE books (id INT AUTO_INCREMENT PRIMARY KEY, author_id INT NOT NULL,
           title VARCHAR(200) NOT NULL, price DECIMAL(10,2) NOT NULL CHECK (price >= 0), pages INT,
           published DATE, FOREIGN KEY (author_id) REFERENCES authors (id))
           ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
        """CREATE TABLE tags (id INT NOT NULL PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE)
           ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
        """CREATE TABLE book_tags (book_id INT NOT NULL, tag_id INT NOT NULL, PRIMARY KEY (book_id, tag_id),
           FOREIGN KEY (book_id) REFERENCES books (id), FOREIGN KEY (tag_id) REFERENCES tags (id))
           ENGINE=InnoDB""",
        "CREATE VIEW cheap_books AS SELECT id, title, price FROM books WHERE price < 20",
    ],
}


def _unreachable(what: str, exc: BaseException):
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    msg = f"{what} is not reachable: {reason}"
    if REQUIRE:
        pytest.fail(msg + " [MCP_FLASK_REQUIRE_DBS=1]")
    pytest.skip(msg)


class TestDb:
    """One test database: its service URL, a direct connection for reference SQL, and data reloads."""

    __test__ = False   # not a test class

    def __init__(self, kind: str, url: str, connect, drop):
        self.kind = kind
        self.url = url
        self._connect = connect
        self._drop = drop
        self.conn = connect()

    @property
    def mark(self) -> str:
        return "?" if self.kind == "sqlite" else "%s"

    def execute(self, sql: str, params=()) -> None:
        cur = self.conn.cursor()
        try:
            if params:
                cur.execute(sql, tuple(params))
            else:
                cur.execute(sql)
        finally:
            cur.close()

    def rows(self, sql: str, params=()) -> list[tuple]:
        """Rows of hand-written SQL (``?`` placeholders are translated to the driver's)."""
        cur = self.conn.cursor()
        try:
            if params:
                cur.execute(sql.replace("?", self.mark), tuple(params))
            else:
                cur.execute(sql)     # no % formatting by the server drivers without parameters
            return [tuple(r) for r in cur.fetchall()]
        finally:
            cur.close()

    def ids(self, sql: str, params=()) -> list:
        return [r[0] for r in self.rows(sql, params)]

    def checksum(self) -> str:
        """A digest of every row of every table (the data's fingerprint)."""
        h = hashlib.sha256()
        for table in TABLES:
            for row in self.rows(f"SELECT * FROM {table} ORDER BY {KEYS[table]}"):
                h.update(repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)).encode())
        return h.hexdigest()

    def load(self) -> None:
        """Replace all rows with the dataset (ids explicit; sequences moved past them)."""
        m = self.mark
        for table in ("book_tags", "books", "tags", "authors"):
            self.execute(f"DELETE FROM {table}")
        for row in AUTHORS:
            row = list(row)
            if self.kind == "sqlite":
                row[5] = None if row[5] is None else str(row[5])
            self.execute("INSERT INTO authors (id, name, email, born, active, rating, score, bio, created_at, "
                         f"avatar, meta) VALUES ({', '.join([m] * 11)})", row)
        for row in BOOKS:
            row = list(row)
            if self.kind == "sqlite":
                row[3] = str(row[3])
            self.execute(f"INSERT INTO books (id, author_id, title, price, pages, published) "
                         f"VALUES ({', '.join([m] * 6)})", row)
        for row in TAGS:
            self.execute(f"INSERT INTO tags (id, name) VALUES ({m}, {m})", row)
        for row in BOOK_TAGS:
            self.execute(f"INSERT INTO book_tags (book_id, tag_id) VALUES ({m}, {m})", row)
        if self.kind == "postgresql":
            for table in ("authors", "books"):
                self.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                             f"(SELECT MAX(id) FROM {table}))")
        if self.kind == "mysql":
            for table in ("authors", "books"):
                self.execute(f"ALTER TABLE {table} AUTO_INCREMENT = 100")

    def close(self) -> None:
        try:
            self.conn.close()
        finally:
            self._drop()


def _sqlite_db(tmp_path_factory) -> TestDb:
    path = str(tmp_path_factory.mktemp("records") / f"t_{uuid.uuid4().hex[:8]}.db")

    def connect():
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA foreign_keys = ON")
        return conn
    conn = connect()
    for stmt in _DDL["sqlite"]:
        conn.execute(stmt)
    conn.close()
    return TestDb("sqlite", "sqlite:///" + path, connect, lambda: None)


def mysql_server() -> dict:
    """pymysql connection arguments for the test server (``MCP_FLASK_TEST_MYSQL``), no database."""
    parts = urllib.parse.urlsplit(MYSQL_URL)
    return {"host": parts.hostname or "127.0.0.1", "port": parts.port or 3306,
            "user": urllib.parse.unquote(parts.username or "root"),
            "password": urllib.parse.unquote(parts.password or ""), "charset": "utf8mb4"}


def create_pg_database(prefix: str):
    """A new, uniquely named PostgreSQL database: ``(url, name, connect, drop)``.

    ``connect()`` opens an autocommit connection to it; ``drop()`` ends every session
    on it and removes it.  Skips (or fails under MCP_FLASK_REQUIRE_DBS=1) when the
    server is unreachable.
    """
    psycopg2 = pytest.importorskip("psycopg2")
    try:
        admin = psycopg2.connect(PG_URL, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        _unreachable("PostgreSQL (MCP_FLASK_TEST_PG)", exc)
    admin.autocommit = True
    name = prefix + uuid.uuid4().hex[:12]
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = urllib.parse.urlunsplit(urllib.parse.urlsplit(PG_URL)._replace(path="/" + name))

    def connect():
        conn = psycopg2.connect(url, connect_timeout=3)
        conn.autocommit = True
        return conn

    def drop():
        with admin.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()
    return url, name, connect, drop


def create_mysql_database(prefix: str):
    """A new, uniquely named MySQL/MariaDB database: ``(url, name, connect, drop)`` (see above)."""
    pymysql = pytest.importorskip("pymysql")
    server = mysql_server()
    try:
        admin = pymysql.connect(**server, autocommit=True, connect_timeout=3)
    except pymysql.err.MySQLError as exc:
        _unreachable("MySQL/MariaDB (MCP_FLASK_TEST_MYSQL)", exc)
    name = prefix + uuid.uuid4().hex[:12]
    with admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    url = urllib.parse.urlunsplit(urllib.parse.urlsplit(MYSQL_URL)._replace(path="/" + name))

    def connect():
        return pymysql.connect(**server, database=name, autocommit=True, connect_timeout=3)

    def drop():
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()
    return url, name, connect, drop


def _load(connect, statements) -> None:
    conn = connect()
    try:
        with conn.cursor() as cur:
            for stmt in statements:
                cur.execute(stmt)
    finally:
        conn.close()


def _pg_db() -> TestDb:
    url, _, connect, drop = create_pg_database("mcpf_rec_")
    _load(connect, _DDL["postgresql"])
    return TestDb("postgresql", url, connect, drop)


def _mysql_db() -> TestDb:
    url, _, connect, drop = create_mysql_database("mcpf_rec_")
    _load(connect, _DDL["mysql"])
    return TestDb("mysql", url, connect, drop)


@pytest.fixture(scope="module", params=DIALECTS)
def dialect_db(request, tmp_path_factory):
    """A loaded test database of each dialect, private to the test module."""
    kind = request.param
    if kind == "sqlite":
        db = _sqlite_db(tmp_path_factory)
    elif kind == "postgresql":
        db = _pg_db()
    else:
        db = _mysql_db()
    try:
        db.load()
        yield db
    finally:
        db.close()


@pytest.fixture
def fresh_db(dialect_db):
    """``dialect_db`` with the dataset reloaded (for tests that write)."""
    dialect_db.load()
    return dialect_db


@pytest.fixture(scope="module")
def db_client(dialect_db, tmp_path_factory):
    """An initialized MCP client on service ``db`` over ``dialect_db`` (one app per module and dialect)."""
    from conftest import McpTestClient, make_settings
    from mcp_flask import close_app, create_app
    data_dir = str(tmp_path_factory.mktemp("records-app"))
    app = create_app(make_settings({"db": {"url": dialect_db.url}}, data_dir=data_dir), check_databases=False)
    client = McpTestClient(app, service="db")
    client.initialize()
    yield client
    close_app(app)
