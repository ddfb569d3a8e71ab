"""create_records, update_records and delete_records on SQLite, PostgreSQL and MySQL/MariaDB.

The batch contract: all-or-nothing by default (a failing record in the middle
changes nothing), ``continue`` applies the good records and reports each
failure with its index, ``continue`` + ``rollback`` is an argument error, and
every failure names the record, the column and the constraint.
"""
from __future__ import annotations

import base64
import json

import pytest
from dialect_fixtures import dialect_db, fresh_db, db_client  # noqa: F401 (fixtures)


def details_of(result) -> dict:
    assert result["isError"] is True, result
    assert len(result["content"]) == 2, result
    return json.loads(result["content"][1]["text"])


# -------------------------------------------------------------------- create
def test_create_returns_keys_and_requested_fields(db_client, fresh_db):
    data = db_client.data("create_records", {"tableName": "authors", "records": [
        {"name": "New One", "rating": "1.50"}, {"name": "New Two", "active": False}]})
    ids = [r["id"] for r in data["resource"]]
    assert data["meta"]["count"] == 2 and all(isinstance(i, int) for i in ids)
    assert fresh_db.rows("SELECT name FROM authors WHERE id IN (?, ?) ORDER BY id", ids) == [("New One",),
                                                                                          ("New Two",)]
    data = db_client.data("create_records", {"tableName": "authors", "records": {"resource": [
        {"name": "Three", "born": "2000-02-29", "meta": {"k": [1, 2]}, "avatar": base64.b64encode(b"\x00\xff").decode(),
         "created_at": "2024-01-02T03:04:05", "score": 1.25, "rating": 2}]}, "fields": "*"})
    row = data["resource"][0]
    assert row["name"] == "Three" and row["born"] == "2000-02-29" and row["meta"] == {"k": [1, 2]}
    assert base64.b64decode(row["avatar"]) == b"\x00\xff" and row["created_at"] == "2024-01-02T03:04:05"
    assert row["rating"] == "2.00" and row["score"] == 1.25 and row["active"] is True


def test_create_into_table_with_explicit_key(db_client, fresh_db):
    data = db_client.data("create_records", {"tableName": "tags", "records": [{"id": 10, "name": "ten"}],
                                             "fields": "id,name"})
    assert data["resource"] == [{"id": 10, "name": "ten"}]


@pytest.mark.parametrize("bad,kind,column", [
    ({"name": "Ada Lovelace"}, "unique", "name"),           # duplicate
    ({"email": "x@example.com"}, "not_null", "name"),       # missing required
    ({"name": "Neg", "rating": -1}, "check", None),         # check constraint
])
def test_create_failure_in_the_middle_changes_nothing(db_client, fresh_db, bad, kind, column):
    before = fresh_db.checksum()
    result = db_client.call("create_records", {"tableName": "authors", "records": [
        {"name": "Good 0"}, bad, {"name": "Good 2"}]})
    details = details_of(result)
    assert details["index"] == 1 and details["kind"] == kind and details["rolled_back"] is True
    if column and fresh_db.kind != "mysql" or (column and kind == "unique"):
        assert column in result["content"][0]["text"]
    assert "record 1" in result["content"][0]["text"]
    assert fresh_db.checksum() == before


def test_create_foreign_key_and_type_errors_name_the_record(db_client, fresh_db):
    before = fresh_db.checksum()
    result = db_client.call("create_records", {"tableName": "books", "records": [
        {"author_id": 1, "title": "ok", "price": 1}, {"author_id": 999, "title": "orphan", "price": 1}]})
    assert details_of(result)["kind"] == "foreign_key" and details_of(result)["index"] == 1
    result = db_client.call("create_records", {"tableName": "books", "records": [
        {"author_id": 1, "title": "ok", "price": 1}, {"author_id": 1, "title": "t", "price": 1, "pages": "many"}]})
    d = details_of(result)
    assert d["index"] == 1 and d["column"] == "pages"
    assert fresh_db.checksum() == before


def test_create_continue_applies_the_good_records(db_client, fresh_db):
    data = db_client.data("create_records", {"tableName": "tags", "continue": True, "records": [
        {"id": 20, "name": "a"}, {"id": 21, "name": "classic"}, {"id": 22, "name": "b"}, {"id": 1, "name": "c"}]})
    assert data["meta"] == {"count": 2, "failed": [1, 3]}
    assert data["resource"][0] == {"id": 20} and data["resource"][2] == {"id": 22}
    assert data["resource"][1]["index"] == 1 and data["resource"][1]["error"]["kind"] == "unique"
    assert data["resource"][3]["index"] == 3
    assert fresh_db.ids("SELECT id FROM tags WHERE id >= 20 ORDER BY id") == [20, 22]


def test_explicit_rollback_is_all_or_nothing_and_cannot_mix_with_continue(db_client, fresh_db):
    before = fresh_db.checksum()
    result = db_client.call("create_records", {"tableName": "tags", "rollback": True, "records": [
        {"id": 30, "name": "a"}, {"id": 31, "name": "classic"}]})
    assert details_of(result)["index"] == 1
    text = db_client.error_text("create_records", {"tableName": "tags", "rollback": True, "continue": True,
                                                   "records": [{"id": 32, "name": "z"}]})
    assert "continue" in text and "rollback" in text
    assert fresh_db.checksum() == before


def test_unknown_column_gets_did_you_mean_and_index(db_client, fresh_db):
    before = fresh_db.checksum()
    text = db_client.error_text("create_records", {"tableName": "authors", "records": [
        {"name": "ok"}, {"nmae": "typo"}]})
    assert "record 1" in text and "did you mean 'name'" in text
    assert fresh_db.checksum() == before


def test_views_are_read_only(db_client, fresh_db):
    for tool, args in (("create_records", {"records": [{"title": "x"}]}),
                       ("update_records", {"records": [{"title": "x"}], "ids": [1]}),
                       ("delete_records", {"ids": [1]})):
        assert "view" in db_client.error_text(tool, {"tableName": "cheap_books", **args})


def test_max_batch_is_enforced(app_factory, fresh_db):
    from conftest import McpTestClient
    from mcp_flask import close_app
    app = app_factory({"db": {"url": fresh_db.url, "max_batch": 2}})
    try:
        c = McpTestClient(app, service="db")
        c.initialize()
        result = c.call("create_records", {"tableName": "tags", "records": [
            {"id": 40 + i, "name": f"n{i}"} for i in range(3)]})
        assert result["isError"] and "max_batch" in result["content"][0]["text"]
        result = c.call("delete_records", {"tableName": "books", "filter": "id > 0"})
        assert result["isError"] and "max_batch" in result["content"][0]["text"]
    finally:
        close_app(app)
    assert len(fresh_db.ids("SELECT id FROM books")) == 12


# -------------------------------------------------------------------- update
def test_update_by_keys_in_records(db_client, fresh_db):
    data = db_client.data("update_records", {"tableName": "books", "records": [
        {"id": 1, "price": "21.00"}, {"id": 2, "pages": None}], "fields": "id,price,pages"})
    assert data["resource"] == [{"id": 1, "price": "21.00", "pages": 120}, {"id": 2, "price": "25.00", "pages": None}]
    assert fresh_db.rows("SELECT pages FROM books WHERE id = 2") == [(None,)]


def test_update_patch_by_ids_and_by_filter(db_client, fresh_db):
    data = db_client.data("update_records", {"tableName": "books", "ids": [3, 5], "records": [{"pages": 7}]})
    assert data["resource"] == [{"id": 3}, {"id": 5}]
    assert fresh_db.ids("SELECT id FROM books WHERE pages = 7 ORDER BY id") == [3, 5]
    data = db_client.data("update_records", {"tableName": "books", "filter": "author_id = 8",
                                             "records": [{"pages": 8}], "fields": "id,pages"})
    assert data["resource"] == [{"id": 11, "pages": 8}, {"id": 12, "pages": 8}]
    data = db_client.data("update_records", {"tableName": "books", "filter": "author_id = 99",
                                             "records": [{"pages": 9}]})
    assert data["resource"] == [] and data["meta"]["count"] == 0


def test_update_failure_in_the_middle_changes_nothing(db_client, fresh_db):
    before = fresh_db.checksum()
    result = db_client.call("update_records", {"tableName": "books", "records": [
        {"id": 1, "title": "changed"}, {"id": 2, "price": -5}, {"id": 3, "title": "changed too"}]})
    d = details_of(result)
    assert d["index"] == 1 and d["kind"] == "check"
    result = db_client.call("update_records", {"tableName": "books", "records": [
        {"id": 1, "title": "changed"}, {"id": 999, "title": "ghost"}]})
    assert details_of(result)["index"] == 1
    result = db_client.call("update_records", {"tableName": "books", "ids": [1, 999], "records": [{"pages": 1}]})
    assert result["isError"] is True
    result = db_client.call("update_records", {"tableName": "tags", "records": [
        {"id": 1, "name": "renamed"}, {"id": 2, "name": "fiction"}]})
    assert details_of(result)["kind"] == "unique" and details_of(result)["index"] == 1
    assert fresh_db.checksum() == before


def test_update_continue(db_client, fresh_db):
    data = db_client.data("update_records", {"tableName": "books", "continue": True, "records": [
        {"id": 1, "title": "A"}, {"id": 2, "price": -5}, {"title": "no key"}, {"id": 3, "title": "C"}]})
    assert data["meta"] == {"count": 2, "failed": [1, 2]}
    assert fresh_db.rows("SELECT id, title FROM books WHERE id IN (1, 2, 3) ORDER BY id") == [
        (1, "A"), (2, "Sketch of the Analytical Engine"), (3, "C")]


def test_update_needs_keys_or_a_selection(db_client, fresh_db):
    before = fresh_db.checksum()
    assert "primary key" in db_client.error_text("update_records", {"tableName": "books",
                                                                    "records": [{"title": "everything"}]})
    assert "exactly one" in db_client.error_text("update_records", {"tableName": "books", "ids": [1],
                                                                    "records": [{"pages": 1}, {"pages": 2}]})
    assert fresh_db.checksum() == before


# -------------------------------------------------------------------- delete
def test_delete_by_ids_filter_and_records(db_client, fresh_db):
    data = db_client.data("delete_records", {"tableName": "book_tags", "filter": "book_id = 1"})
    assert data["resource"] == [{"book_id": 1, "tag_id": 1}, {"book_id": 1, "tag_id": 2}]
    data = db_client.data("delete_records", {"tableName": "book_tags", "records": [{"book_id": 9, "tag_id": 2}]})
    assert data["meta"]["count"] == 1
    data = db_client.data("delete_records", {"tableName": "tags", "ids": "3", "fields": "*",
                                             "continue": True})
    assert data["meta"]["count"] == 0 and data["meta"]["failed"] == [0]       # still referenced by book_tags
    db_client.data("delete_records", {"tableName": "book_tags", "filter": "tag_id = 3"})
    data = db_client.data("delete_records", {"tableName": "tags", "ids": "3", "fields": "*"})
    assert data["resource"] == [{"id": 3, "name": "fiction"}]
    assert fresh_db.ids("SELECT id FROM tags ORDER BY id") == [1, 2, 4]
    assert fresh_db.rows("SELECT COUNT(*) FROM book_tags")[0][0] == 5


def test_delete_never_wipes_a_table(db_client, fresh_db):
    before = fresh_db.checksum()
    for args in ({}, {"force": True}, {"filter": "  "}):
        result = db_client.call("delete_records", {"tableName": "book_tags", **args})
        assert result["isError"] is True
    assert fresh_db.checksum() == before


def test_delete_failure_in_the_middle_changes_nothing_unless_continue(db_client, fresh_db):
    before = fresh_db.checksum()
    # book 12 is deletable only after its book_tags row; book 4 has none; author 1 still has books.
    result = db_client.call("delete_records", {"tableName": "books", "ids": [4, 12, 5]})
    d = details_of(result)
    assert d["kind"] == "foreign_key"
    result = db_client.call("delete_records", {"tableName": "books", "ids": [4, 404]})
    assert result["isError"] is True
    assert fresh_db.checksum() == before
    data = db_client.data("delete_records", {"tableName": "books", "ids": [4, 12, 5], "continue": True})
    assert data["meta"]["count"] == 2 and len(data["meta"]["failed"]) == 1
    assert fresh_db.ids("SELECT id FROM books WHERE id IN (4, 5, 12)") == [12]


def test_write_annotations():
    from mcp_flask.tools import TOOLS
    import mcp_flask.tools.records  # noqa: F401 - registers the tools
    ann = {n: TOOLS[n].annotations for n in ("get_table_data", "create_records", "update_records",
                                              "delete_records")}
    assert ann["get_table_data"]["readOnlyHint"] is True
    assert ann["create_records"]["destructiveHint"] is False and ann["create_records"]["idempotentHint"] is False
    assert ann["update_records"]["destructiveHint"] is True and ann["update_records"]["idempotentHint"] is True
    assert ann["delete_records"]["destructiveHint"] is True and ann["delete_records"]["idempotentHint"] is True


def test_lock_timeout_names_the_record_and_changes_nothing(app_factory, fresh_db):
    """A row (SQLite: the database) locked by another transaction: the batch fails at that record."""
    from conftest import McpTestClient
    from mcp_flask import close_app
    app = app_factory({"db": {"url": fresh_db.url, "statement_timeout": 1, "connect_timeout": 1}})
    before = fresh_db.checksum()
    locker = fresh_db._connect()
    cur = locker.cursor()
    try:
        c = McpTestClient(app, service="db")
        c.initialize()
        c.data("get_tables")                      # schema cached before the lock is taken
        if fresh_db.kind == "sqlite":
            cur.execute("BEGIN IMMEDIATE")
            expected_index = 0
        else:
            cur.execute("BEGIN")
            cur.execute("SELECT id FROM books WHERE id = 1 FOR UPDATE")
            cur.fetchall()
            expected_index = 1
        result = c.call("update_records", {"tableName": "books", "records": [
            {"id": 2, "title": "first"}, {"id": 1, "title": "locked"}]})
        d = details_of(result)
        assert d["index"] == expected_index and d["kind"] in ("lock", "timeout")
    finally:
        cur.execute("ROLLBACK")
        cur.close()
        locker.close()
        close_app(app)
    assert fresh_db.checksum() == before
