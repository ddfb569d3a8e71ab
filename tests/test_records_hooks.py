"""The record tools' hook points: role row filters, write checks, and progress on large reads.

Handlers are called directly with a ``ToolContext`` over a real SQLite
database; the access object is the real ``Access`` extended with the two hooks
the access-control layer provides (``row_filter``, ``check_write``).
"""
from __future__ import annotations

import sqlite3

import pytest

from mcp_flask.access import Access
from mcp_flask.config import ServiceConfig
from mcp_flask.database import Database
from mcp_flask.errors import InvalidArguments, NotFound, PermissionDenied
import mcp_flask.tools.records  # noqa: E402,F401 - registers the record tools
from mcp_flask.tools import TOOLS
from mcp_flask.tools.registry import ToolContext


class RowFilteredAccess(Access):
    """A role that sees only books of author 1 and may not write prices above 100."""

    def row_filter(self, verb, table):
        return ("author_id = {user.author}", {"user": {"author": 1}}) if table == "books" else None

    def check_write(self, table, record, partial=False):
        if table.name == "books" and record.get("price") is not None and record["price"] > 100:
            raise PermissionDenied("this role may not set prices above 100")


@pytest.fixture
def db(tmp_path):
    path = str(tmp_path / "h.db")
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE books (id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL, title TEXT NOT NULL,
                            price DECIMAL(10,2));
        INSERT INTO books VALUES (1, 1, 'a', 10), (2, 1, 'b', 20), (3, 2, 'c', 30), (4, 2, 'd', 40);
        CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT);
    """)
    conn.executemany("INSERT INTO big (v) VALUES (?)", [(f"v{i}",) for i in range(12000)])
    conn.commit()
    conn.close()
    svc = ServiceConfig(name="h", url="sqlite:///" + path, max_rows=20000)
    database = Database(svc)
    yield database, path
    database.close()


def call(database, tool, args, access_cls=RowFilteredAccess, progress=None):
    ctx = ToolContext(database=database, access=access_cls(database.config), progress=progress)
    return TOOLS[tool].handler(ctx, args)


def titles(path):
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT title FROM books ORDER BY id")]
    finally:
        conn.close()


def test_row_filter_limits_reads_updates_and_deletes(db):
    database, path = db
    got = call(database, "get_table_data", {"tableName": "books", "fields": "id"})
    assert [r["id"] for r in got["resource"]] == [1, 2]
    assert call(database, "get_table_data", {"tableName": "books", "countOnly": True}) == {"meta": {"count": 2}}
    got = call(database, "update_records", {"tableName": "books", "filter": "price > 0", "records": [{"title": "x"}]})
    assert [r["id"] for r in got["resource"]] == [1, 2]
    with pytest.raises(NotFound):
        call(database, "update_records", {"tableName": "books", "records": [{"id": 3, "title": "hidden"}]})
    with pytest.raises(NotFound):
        call(database, "delete_records", {"tableName": "books", "ids": [3]})
    assert titles(path) == ["x", "x", "c", "d"]


def test_check_write_runs_before_every_written_record(db):
    database, path = db
    with pytest.raises(PermissionDenied) as err:
        call(database, "create_records", {"tableName": "books", "records": [
            {"author_id": 1, "title": "ok", "price": 5}, {"author_id": 1, "title": "dear", "price": 500}]})
    assert err.value.details["index"] == 1
    with pytest.raises(PermissionDenied):
        call(database, "update_records", {"tableName": "books", "ids": [1], "records": [{"price": 1000}]})
    assert titles(path) == ["a", "b", "c", "d"]


def test_large_reads_stream_and_report_progress(db):
    database, _path = db
    seen = []
    got = call(database, "get_table_data", {"tableName": "big", "limit": 11000, "fields": "id"},
               access_cls=Access, progress=lambda done, total=None, message=None: seen.append((done, total)))
    assert len(got["resource"]) == 11000 and got["meta"]["next"] == 11000
    assert seen and all(total == 11001 for _d, total in seen)
    assert [d for d, _t in seen] == sorted(d for d, _t in seen) and seen[-1][0] <= 11001


def test_write_argument_errors(db):
    database, path = db
    with pytest.raises(InvalidArguments):
        call(database, "delete_records", {"tableName": "books", "records": [{"id": 1}], "ids": [1]}, Access)
    with pytest.raises(InvalidArguments):
        call(database, "update_records", {"tableName": "books", "records": [{"id": 1, "price": "cheap"}]}, Access)
    assert titles(path) == ["a", "b", "c", "d"]
