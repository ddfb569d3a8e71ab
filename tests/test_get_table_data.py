"""get_table_data through the MCP endpoint, on SQLite, PostgreSQL and MySQL/MariaDB.

Every filter is checked against hand-written SQL on the same data; hostile or
malformed arguments must be refused with the data unchanged; paging walks
return every row exactly once; related records, grouping and value encoding
mean the same on every database.
"""
from __future__ import annotations

import base64
import sqlite3

import pytest
from dialect_fixtures import AUTHORS, BLOB2, PNG, db_client, dialect_db  # noqa: F401 (fixtures)

# (table, filter, params, reference WHERE, reference params)
FILTERS = [
    ("authors", "id = 3", None, "id = 3", ()),
    ("authors", "id != 3", None, "id <> 3", ()),
    ("authors", "id <> 3", None, "id <> 3", ()),
    ("authors", "rating > 4.5", None, "rating > 4.5", ()),
    ("authors", "rating >= 4.5", None, "rating >= 4.5", ()),
    ("authors", "rating < 4", None, "rating < 4", ()),
    ("authors", "rating <= 4", None, "rating <= 4", ()),
    ("authors", "id eq 2", None, "id = 2", ()),
    ("authors", "id ne 2", None, "id <> 2", ()),
    ("authors", "id gt 6", None, "id > 6", ()),
    ("authors", "id gte 6", None, "id >= 6", ()),
    ("authors", "id lt 3", None, "id < 3", ()),
    ("authors", "id LTE 3", None, "id <= 3", ()),
    ("authors", "id>6", None, "id > 6", ()),
    ("authors", "name like 'A%'", None, "name LIKE 'A%'", ()),
    ("authors", "name not like '%e%'", None, "name NOT LIKE '%e%'", ()),
    ("authors", "name in ('Ada Lovelace', 'Alan Turing')", None, "name IN ('Ada Lovelace', 'Alan Turing')", ()),
    ("authors", "id not in (1, 2, 3)", None, "id NOT IN (1, 2, 3)", ()),
    ("authors", "id between 2 and 5", None, "id BETWEEN 2 AND 5", ()),
    ("authors", "id not between 2 and 5", None, "id NOT BETWEEN 2 AND 5", ()),
    ("authors", "name starts with 'Gr'", None, "name LIKE 'Gr%'", ()),
    ("authors", "name starts with Gr", None, "name LIKE 'Gr%'", ()),
    ("authors", "name ends with 'ing'", None, "name LIKE '%ing'", ()),
    ("authors", "name contains '100%'", None, "name LIKE '%100!%%' ESCAPE '!'", ()),
    ("authors", "name contains '_'", None, "name LIKE '%!_%' ESCAPE '!'", ()),
    ("authors", "bio like '50\\%%'", None, "bio LIKE '50!%%' ESCAPE '!'", ()),
    ("authors", "email is null", None, "email IS NULL", ()),
    ("authors", "email is not null", None, "email IS NOT NULL", ()),
    ("authors", "active = true", None, "active = TRUE", ()),
    ("authors", "active = false and rating > 1", None, "active = FALSE AND rating > 1", ()),
    ("authors", "id = 1 or id = 2 and active = false", None, "id = 1 OR (id = 2 AND active = FALSE)", ()),
    ("authors", "id = 1 or id = 8 and active = false", None, "id = 1 OR (id = 8 AND active = FALSE)", ()),
    ("authors", "(id = 1 or id = 8) and active = true", None, "(id = 1 OR id = 8) AND active = TRUE", ()),
    ("authors", "not (id < 7)", None, "NOT (id < 7)", ()),
    ("authors", "id < 3 || id > 7", None, "id < 3 OR id > 7", ()),
    ("authors", "id > 1 && id < 4", None, "id > 1 AND id < 4", ()),
    ("authors", "name = 'Miles O''Brien'", None, "name = ?", ("Miles O'Brien",)),
    ("authors", "name = \"Miles O'Brien\"", None, "name = ?", ("Miles O'Brien",)),
    ("authors", "name = 'Miles O\\'Brien'", None, "name = ?", ("Miles O'Brien",)),
    ("authors", "name = 'Back\\\\Slash'", None, "name = ?", ("Back\\Slash",)),
    ("authors", "bio = 'C:\\temp\\new'", None, "bio = ?", ("C:\\temp\\new",)),
    ("authors", "name = 'Zoë Ångström'", None, "name = ?", ("Zoë Ångström",)),
    ("authors", "bio contains 'café ✓'", None, "bio LIKE ?", ("%café ✓%",)),
    ("authors", "born > '1900-01-01'", None, "born > '1900-01-01'", ()),
    ("authors", "born between '1900-01-01' and '1950-12-31'", None, "born BETWEEN '1900-01-01' AND '1950-12-31'", ()),
    ("authors", "created_at >= '2023-06-01 00:00:00'", None, "created_at >= '2023-06-01 00:00:00'", ()),
    ("authors", "created_at < '2023-06-01T00:00:00'", None, "created_at < '2023-06-01 00:00:00'", ()),
    ("authors", "score > 9", None, "score > 9", ()),
    ("authors", "id = :x or name = :n", {"x": 4, "n": "Grace Hopper"}, "id = 4 OR name = 'Grace Hopper'", ()),
    ("authors", "email = :e", {"e": None}, "email IS NULL", ()),
    ("books", "price > 20", None, "price > 20", ()),
    ("books", "price = 19.99", None, "price = 19.99", ()),
    ("books", "pages is null or pages < 40", None, "pages IS NULL OR pages < 40", ()),
    ("books", "title contains 'Engine' and author_id = 1", None, "title LIKE '%Engine%' AND author_id = 1", ()),
    ("books", "published >= '1950-01-01' and not (price between 10 and 30)", None,
     "published >= '1950-01-01' AND NOT (price BETWEEN 10 AND 30)", ()),
    ("books", "title contains '100%'", None, "title LIKE '%100!%%' ESCAPE '!'", ()),
    ("tags", "name = '50%_off'", None, "name = '50%_off'", ()),
    ("tags", "name like '50\\%\\_%'", None, "name LIKE '50!%!_%' ESCAPE '!'", ()),
]


@pytest.mark.parametrize("table,text,params,where,ref_params", FILTERS,
                         ids=[f"{f[0]}:{f[1]}" for f in FILTERS])
def test_filter_returns_exactly_the_rows_of_hand_written_sql(db_client, dialect_db, table, text, params,
                                                             where, ref_params):
    args = {"tableName": table, "filter": text, "fields": "id", "order": "id"}
    if params is not None:
        args["params"] = params
    got = [r["id"] for r in db_client.data("get_table_data", args)["resource"]]
    expected = dialect_db.ids(f"SELECT id FROM {table} WHERE {where} ORDER BY id", ref_params)
    assert got == expected
    # Each case must mean something: never the whole table (except the deliberate tautologies).
    assert len(expected) < len(dialect_db.ids(f"SELECT id FROM {table}")) or "not in" in text


# -------------------------------------------------------------------- hostile and malformed input
HOSTILE = [
    {"filter": "id = 1; DROP TABLE books"},
    {"filter": "id = 1 -- comment"},
    {"filter": "id = 1 /* x */"},
    {"filter": "id = (SELECT 1)"},
    {"filter": "id = 1 or 1 = 1"},
    {"filter": "nme = 'x'"},
    {"filter": "name = \uff07x\uff07"},
    {"filter": "id \uff1d 1"},
    {"filter": "name = 'x' \u2228 id = 1"},
    {"filter": "id = 'abc'"},
    {"filter": "name = 'unterminated"},
    {"filter": "(" * 100 + "id = 1" + ")" * 100},
    {"filter": "id in (" + ", ".join(["1"] * 2000) + ")"},
    {"filter": "name = '" + "x" * 9000 + "'"},
    {"filter": "id = 1\x00"},
    {"filter": "id = :missing"},
    {"filter": "name like 5 and id = 'x'"},
    {"filter": "rating like '4%'"},
    {"fields": "id; DROP TABLE books"},
    {"fields": "nosuch"},
    {"fields": "id,"},
    {"fields": "*,id"},
    {"fields": "SUM(rating)"},
    {"fields": "id) FROM books; --"},
    {"fields": ["id", "name\"; DROP TABLE books; --"]},
    {"order": "id; DROP TABLE books"},
    {"order": "id desc; select 1"},
    {"order": "nosuch"},
    {"order": "id sideways"},
    {"order": "id nulls middle"},
    {"order": "(select 1)"},
    {"order": "id, , name"},
    {"related": "nosuch"},
    {"related": "books_by_author_id; DROP TABLE books"},
    {"ids": "1; DROP TABLE books"},
    {"ids": ["abc"]},
    {"ids": "1,,2"},
    {"group": "nosuch"},
    {"group": "active", "fields": "name"},
    {"group": "active", "fields": "SUM(*)"},
    {"group": "active", "fields": "active,SUM(name; drop)"},
    {"tableName": "authors; DROP TABLE books"},
    {"tableName": "authors--"},
    {"tableName": "\"authors\""},
    {"tableName": "nosuch"},
    {"limit": 0},
    {"limit": -1},
    {"offset": -5},
    {"nosuchArgument": 1},
]


@pytest.mark.parametrize("extra", HOSTILE, ids=[repr(h)[:60] for h in HOSTILE])
def test_hostile_read_arguments_are_refused_and_change_nothing(db_client, dialect_db, extra):
    before = dialect_db.checksum()
    args = {"tableName": "authors", **extra}
    result = db_client.call("get_table_data", args)
    assert result["isError"] is True, result
    text = result["content"][0]["text"]
    assert "Traceback" not in text and "psycopg2" not in text and "pymysql" not in text
    assert dialect_db.checksum() == before
    assert dialect_db.ids("SELECT id FROM books ORDER BY id")  # the table is still there


@pytest.mark.parametrize("tool,args", [
    ("update_records", {"tableName": "authors", "records": [{"bio": "x"}], "filter": "id = 1; DELETE FROM books"}),
    ("update_records", {"tableName": "authors", "records": [{"bio": "x"}], "filter": "id = 1 or 1 = 1"}),
    ("update_records", {"tableName": "authors", "records": [{"id": 1, "nme": "x"}]}),
    ("update_records", {"tableName": "authors", "records": [{"id": 1, "bio = 'x'; --": "x"}]}),
    ("delete_records", {"tableName": "books", "filter": "id > 0 --"}),
    ("delete_records", {"tableName": "books", "filter": ""}),
    ("delete_records", {"tableName": "books", "force": True}),
    ("delete_records", {"tableName": "books", "ids": "1 OR 1=1"}),
    ("create_records", {"tableName": "tags", "records": [{"id": 9, "name": "x", "x) VALUES (1); --": 1}]}),
    ("create_records", {"tableName": "cheap_books", "records": [{"title": "x", "price": 1}]}),
])
def test_hostile_write_arguments_are_refused_and_change_nothing(db_client, dialect_db, tool, args):
    dialect_db.load()
    before = dialect_db.checksum()
    result = db_client.call(tool, args)
    assert result["isError"] is True, result
    assert dialect_db.checksum() == before


def test_unknown_names_get_a_suggestion(db_client):
    assert "did you mean 'name'" in db_client.error_text("get_table_data", {"tableName": "authors", "filter": "nme = 'x'"})
    assert "did you mean 'rating'" in db_client.error_text("get_table_data", {"tableName": "authors", "order": "ratin"})
    assert "did you mean 'email'" in db_client.error_text("get_table_data", {"tableName": "authors", "fields": "emial"})
    assert "did you mean 'authors'" in db_client.error_text("get_table_data", {"tableName": "author"})
    assert "books_by_author_id" in db_client.error_text("get_table_data", {"tableName": "authors",
                                                                          "related": "book_by_author_id"})


def test_syntax_error_points_at_position_and_token(db_client):
    text = db_client.error_text("get_table_data", {"tableName": "authors", "filter": "id = 1 and and name = 'x'"})
    assert "position 11" in text and "'and'" in text


# -------------------------------------------------------------------- fields, order, paging
def test_fields_select_and_order_the_columns(db_client):
    rows = db_client.data("get_table_data", {"tableName": "authors", "fields": ["name", "id"], "ids": [2],
                                             "order": "id"})["resource"]
    assert rows == [{"name": "Miles O'Brien", "id": 2}]
    rows = db_client.data("get_table_data", {"tableName": "authors", "fields": "ID, Name", "ids": "2"})["resource"]
    assert rows == [{"id": 2, "name": "Miles O'Brien"}]


@pytest.mark.parametrize("order,ref", [
    ("price desc", "price DESC, id"),
    ("author_id, price desc", "author_id, price DESC, id"),
    ("pages desc nulls last", "(pages IS NULL), pages DESC, id"),
    ("pages asc nulls first", "(pages IS NOT NULL), pages, id"),
    ("published DESC, title", "published DESC, title, id"),
])
def test_order_matches_hand_written_sql(db_client, dialect_db, order, ref):
    got = [r["id"] for r in db_client.data("get_table_data", {"tableName": "books", "fields": "id",
                                                              "order": order})["resource"]]
    assert got == dialect_db.ids(f"SELECT id FROM books ORDER BY {ref}")


@pytest.mark.parametrize("limit", [1, 3, 5, 12, 13])
def test_meta_next_walk_returns_every_row_exactly_once(db_client, dialect_db, limit):
    seen, offset, pages = [], 0, 0
    while True:
        data = db_client.data("get_table_data", {"tableName": "books", "fields": "id", "order": "author_id desc",
                                                 "limit": limit, "offset": offset, "includeCount": True})
        meta = data["meta"]
        assert meta["returned"] == len(data["resource"]) <= limit
        assert meta["count"] == 12
        seen += [r["id"] for r in data["resource"]]
        pages += 1
        if not meta["more"]:
            assert "next" not in meta
            break
        assert meta["next"] == offset + limit
        offset = meta["next"]
    assert seen == dialect_db.ids("SELECT id FROM books ORDER BY author_id DESC, id")
    assert pages == -(-12 // limit)      # no empty trailing page: limit + 1 rows are fetched


def test_walk_over_a_view_without_a_key(db_client, dialect_db):
    seen, offset = [], 0
    while True:
        data = db_client.data("get_table_data", {"tableName": "cheap_books", "limit": 2, "offset": offset})
        seen += [r["id"] for r in data["resource"]]
        if not data["meta"]["more"]:
            break
        offset = data["meta"]["next"]
    assert sorted(seen) == dialect_db.ids("SELECT id FROM books WHERE price < 20 ORDER BY id")


def test_count_only_and_include_count(db_client, dialect_db):
    expected = dialect_db.rows("SELECT COUNT(*) FROM books WHERE price > 10")[0][0]
    assert db_client.data("get_table_data", {"tableName": "books", "filter": "price > 10",
                                             "countOnly": True}) == {"meta": {"count": expected}}
    data = db_client.data("get_table_data", {"tableName": "books", "filter": "price > 10", "limit": 2,
                                             "offset": 100, "includeCount": True})
    assert data["resource"] == [] and data["meta"]["count"] == expected and data["meta"]["more"] is False


def test_limit_is_capped_by_max_rows(app_factory, dialect_db):
    from conftest import McpTestClient
    from mcp_flask import close_app
    app = app_factory({"db": {"url": dialect_db.url, "max_rows": 5}})
    try:
        c = McpTestClient(app, service="db")
        c.initialize()
        data = c.data("get_table_data", {"tableName": "books", "limit": 500})
        assert len(data["resource"]) == 5 and data["meta"]["limit"] == 5 and data["meta"]["next"] == 5
        data = c.data("get_table_data", {"tableName": "books"})
        assert len(data["resource"]) == 5 and data["meta"]["more"] is True
    finally:
        close_app(app)


def test_ids_and_id_field(db_client):
    rows = db_client.data("get_table_data", {"tableName": "books", "ids": [3, 1], "fields": "id"})["resource"]
    assert [r["id"] for r in rows] == [1, 3]
    rows = db_client.data("get_table_data", {"tableName": "books", "ids": "1", "idField": "author_id",
                                             "fields": "id"})["resource"]
    assert [r["id"] for r in rows] == [1, 2]
    rows = db_client.data("get_table_data", {"tableName": "books", "ids": [1, 2, 3], "filter": "price < 20",
                                             "fields": "id"})["resource"]
    assert [r["id"] for r in rows] == [1, 3]


# -------------------------------------------------------------------- group and aggregates
def test_group_with_aggregates(db_client, dialect_db):
    data = db_client.data("get_table_data", {"tableName": "books", "group": "author_id",
                                             "fields": "author_id, COUNT(*), SUM(pages), MIN(price), MAX(price)",
                                             "order": "COUNT(*) desc, author_id"})
    expected = dialect_db.rows("SELECT author_id, COUNT(*), SUM(pages), MIN(price), MAX(price) FROM books "
                               "GROUP BY author_id ORDER BY COUNT(*) DESC, author_id")
    assert [(r["author_id"], r["COUNT_ALL"], r["SUM_pages"], r["MIN_price"], r["MAX_price"])
            for r in data["resource"]] == [(a, c, s, f"{lo:.2f}", f"{hi:.2f}") for a, c, s, lo, hi in
                                           ((a, c, s, float(lo), float(hi)) for a, c, s, lo, hi in expected)]
    count = db_client.data("get_table_data", {"tableName": "books", "group": "author_id", "countOnly": True})
    assert count == {"meta": {"count": 8}}


def test_aggregates_need_group(db_client):
    assert "group" in db_client.error_text("get_table_data", {"tableName": "books", "fields": "COUNT(*)"})


# -------------------------------------------------------------------- related records
def test_related_belongs_to_has_many_many_many(db_client, dialect_db):
    book = db_client.data("get_table_data", {"tableName": "books", "ids": [9], "fields": "title",
                                             "related": "authors_by_author_id,tags_by_book_tags"})["resource"][0]
    assert book["title"] == "Computable Numbers"
    assert book["authors_by_author_id"]["name"] == "Alan Turing"
    assert [t["name"] for t in book["tags_by_book_tags"]] == ["classic", "science"]
    assert set(book) == {"title", "authors_by_author_id", "tags_by_book_tags"}   # helper key column not leaked

    authors = db_client.data("get_table_data", {"tableName": "authors", "fields": "id", "order": "id",
                                                "related": "books_by_author_id"})["resource"]
    for a in authors:
        assert [b["id"] for b in a["books_by_author_id"]] == dialect_db.ids(
            "SELECT id FROM books WHERE author_id = ? ORDER BY id", (a["id"],))


def test_related_star_gives_every_relation(db_client):
    book = db_client.data("get_table_data", {"tableName": "books", "ids": [12], "related": "*"})["resource"][0]
    assert book["authors_by_author_id"]["id"] == 8
    assert book["book_tags_by_book_id"] == [{"book_id": 12, "tag_id": 4}]
    assert book["tags_by_book_tags"] == [{"id": 4, "name": "50%_off"}]
    tag = db_client.data("get_table_data", {"tableName": "tags", "ids": [3], "related": "*"})["resource"][0]
    assert [b["id"] for b in tag["books_by_book_tags"]] == [3]


def test_related_empty_sides(db_client):
    rows = db_client.data("get_table_data", {"tableName": "books", "ids": [4], "fields": "id",
                                             "related": "tags_by_book_tags"})["resource"]
    assert rows == [{"id": 4, "tags_by_book_tags": []}]


# -------------------------------------------------------------------- value encoding
def test_every_column_type_encodes_losslessly(db_client):
    rows = db_client.data("get_table_data", {"tableName": "authors", "ids": [1, 3, 4], "order": "id"})["resource"]
    ada, zoe, bs = rows
    assert ada == {"id": 1, "name": "Ada Lovelace", "email": "ada@example.com", "born": "1815-12-10",
                   "active": True, "rating": "4.90", "score": 9.5, "bio": "First programmer",
                   "created_at": "2023-01-05T09:15:00", "avatar": base64.b64encode(PNG).decode(),
                   "meta": {"lang": "en", "tags": ["math"]}}
    assert zoe["name"] == AUTHORS[2][1] and zoe["bio"] == "naïve café ✓" and zoe["active"] is False
    assert base64.b64decode(zoe["avatar"]) == BLOB2
    assert zoe["email"] is None and zoe["born"] is None and zoe["score"] is None and zoe["meta"] is None
    assert bs["name"] == "Back\\Slash" and bs["rating"] is None and bs["created_at"] is None


def test_structured_content_matches_text(db_client):
    import json
    result = db_client.call("get_table_data", {"tableName": "tags", "order": "id"})
    assert result["structuredContent"] == json.loads(result["content"][0]["text"])


def test_include_schema(db_client):
    meta = db_client.data("get_table_data", {"tableName": "tags", "includeSchema": True, "limit": 1})["meta"]
    assert meta["schema"]["name"] == "tags" and {f["name"] for f in meta["schema"]["field"]} == {"id", "name"}


# -------------------------------------------------------------------- the hot path does one query
def test_a_ten_row_filtered_ordered_read_runs_one_select(app_factory, demo_db):
    """Observed through SQLite's statement trace on the pooled connection (no wrapper, no mock)."""
    from conftest import McpTestClient
    from mcp_flask import close_app
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db, "pool_size": 1}})
    try:
        c = McpTestClient(app)
        c.initialize()
        c.data("get_tables")            # warm the schema cache
        database = app.extensions["mcp_flask"]["services"]["demo"].database
        conn = database.pool.acquire()
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        database.pool.release(conn)
        data = c.data("get_table_data", {"tableName": "orders", "filter": "status = 'paid' and total > 100",
                                         "order": "ordered_at desc", "limit": 10})
        assert len(data["resource"]) == 10
        selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        assert len(selects) == 1, statements
        # ... and nothing else: the connection is read-only by default (PRAGMA query_only),
        # so a single-statement read needs no BEGIN, COMMIT or PRAGMA around it.
        assert statements == selects, statements
        statements.clear()
        data = c.data("get_table_data", {"tableName": "orders", "limit": 10, "related": "*"})
        selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
        relations = [k for k in data["resource"][0] if "_by_" in k]
        assert len(selects) == 1 + len(relations), statements      # one per relation, never one per row
    finally:
        close_app(app)
    assert sqlite3.sqlite_version_info >= (3, 35)
