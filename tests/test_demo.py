"""The embedded demo database (``mcp_flask.demo``), against real SQLite files.

Covers atomic, idempotent creation (also with four processes racing), the
deterministic content other tests rely on (exact rows, NULLs, unicode, quotes,
backslashes, LIKE metacharacters, 12,000 events), the constraints, and what the
SQLite dialect's introspection and ``metadata.derive_relations`` make of it.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sqlite3
import time
from decimal import Decimal

import pytest

from mcp_flask import demo
from mcp_flask.config import ServiceConfig
from mcp_flask.dialects.sqlite import SqliteDialect


def _digest(path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _open(path) -> sqlite3.Connection:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@pytest.fixture(scope="module")
def db_path(tmp_path_factory):
    """One demo database shared by the read-only tests."""
    path = str(tmp_path_factory.mktemp("demo") / demo.DEMO_FILENAME)
    assert demo.create_demo_database(path) is True
    return path


@pytest.fixture()
def conn(db_path):
    c = _open(db_path)
    yield c
    c.close()


@pytest.fixture()
def fresh_db(tmp_path):
    """A private demo database a test may modify."""
    path = str(tmp_path / "demo.db")
    demo.create_demo_database(path)
    c = _open(path)
    yield c
    c.close()


# --------------------------------------------------------------------- creation
def test_creates_parent_directories_and_a_wal_database(tmp_path):
    path = tmp_path / "a" / "b" / "demo.db"
    start = time.monotonic()
    assert demo.create_demo_database(str(path)) is True
    elapsed = time.monotonic() - start
    assert elapsed < 5, f"creating the demo took {elapsed:.2f}s"
    assert path.is_file()
    # Only the database is left: no temp file, no -wal/-shm from the build.
    assert sorted(os.listdir(path.parent)) == ["demo.db"]
    c = sqlite3.connect(str(path))
    try:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert c.execute("PRAGMA user_version").fetchone()[0] == demo.DEMO_SCHEMA_VERSION
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        c.close()


def test_second_call_is_a_no_op(tmp_path):
    path = str(tmp_path / "demo.db")
    assert demo.create_demo_database(path) is True
    before = (_digest(path), os.stat(path).st_mtime_ns, os.stat(path).st_ino)
    assert demo.create_demo_database(path) is False
    assert (_digest(path), os.stat(path).st_mtime_ns, os.stat(path).st_ino) == before
    assert sorted(os.listdir(tmp_path)) == ["demo.db"]


def test_relative_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert demo.create_demo_database("demo.db") is True
    assert demo.create_demo_database("demo.db") is False
    assert sorted(os.listdir(tmp_path)) == ["demo.db"]


def test_existing_file_is_never_touched(tmp_path):
    path = tmp_path / "demo.db"
    path.write_bytes(b"not a database")
    assert demo.create_demo_database(str(path)) is False
    assert path.read_bytes() == b"not a database"
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    assert demo.create_demo_database(str(empty)) is False
    assert empty.read_bytes() == b""
    assert sorted(os.listdir(tmp_path)) == ["demo.db", "empty.db"]


@pytest.mark.parametrize("bad", ["", ":memory:", "file:demo.db?mode=memory"])
def test_rejects_non_file_paths(bad):
    with pytest.raises(ValueError):
        demo.create_demo_database(bad)


def _race(path, barrier, results):
    barrier.wait()
    try:
        results.put(("ok", demo.create_demo_database(path)))
    except BaseException as exc:  # report, never hang the parent
        results.put(("error", repr(exc)))


def test_concurrent_creation_yields_one_valid_database(tmp_path):
    ctx = multiprocessing.get_context("fork")
    path = str(tmp_path / "data" / "demo.db")
    workers = 4
    barrier = ctx.Barrier(workers)
    results = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(path, barrier, results)) for _ in range(workers)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert all(kind == "ok" for kind, _ in outcomes), outcomes
    assert sorted(created for _, created in outcomes) == [False, False, False, True]
    # One complete database, no leftovers from the losers.
    assert sorted(os.listdir(tmp_path / "data")) == ["demo.db"]
    c = _open(path)
    try:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        for table, count in demo.DEMO_ROW_COUNTS.items():
            assert c.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0] == count
    finally:
        c.close()
    assert demo.create_demo_database(path) is False


def test_falls_back_to_a_locked_rename_without_hard_links(tmp_path, monkeypatch):
    def no_link(src, dst, **kwargs):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(os, "link", no_link)
    path = str(tmp_path / "demo.db")
    assert demo.create_demo_database(path) is True
    assert demo.create_demo_database(path) is False
    # The lock file stays (harmless, tiny); no temp files remain.
    assert sorted(os.listdir(tmp_path)) == [".demo.db.lock", "demo.db"]
    c = _open(path)
    try:
        assert c.execute("SELECT COUNT(*) FROM events").fetchone()[0] == demo.EVENT_ROWS
    finally:
        c.close()


def test_content_is_deterministic(tmp_path, conn):
    other = str(tmp_path / "again.db")
    demo.create_demo_database(other)
    c2 = _open(other)
    try:
        for table in demo.DEMO_TABLES + demo.DEMO_VIEWS:
            q = f'SELECT * FROM "{table}" ORDER BY 1, 2'
            assert conn.execute(q).fetchall() == c2.execute(q).fetchall(), table
    finally:
        c2.close()


# --------------------------------------------------------------------- content
def test_tables_views_and_row_counts(conn):
    names = dict(conn.execute("SELECT name, type FROM sqlite_master "
                              "WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite%'"))
    assert names == {**{t: "table" for t in demo.DEMO_TABLES}, **{v: "view" for v in demo.DEMO_VIEWS}}
    counts = {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in demo.DEMO_TABLES}
    assert counts == demo.DEMO_ROW_COUNTS
    assert counts["events"] == demo.EVENT_ROWS == 12_000
    assert counts["order_items"] == demo.ORDER_ITEM_ROWS == 534
    assert conn.execute("SELECT COUNT(*) FROM customer_order_totals").fetchone()[0] == 20


def test_foreign_keys_and_integrity_are_clean(conn):
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_exact_sample_rows(conn):
    conn.row_factory = sqlite3.Row
    obrien = dict(conn.execute("SELECT * FROM customers WHERE id = 4").fetchone())
    assert obrien == {
        "id": 4, "first_name": "Seán", "last_name": "O'Brien", "email": "sean.obrien@example.ie",
        "phone": "+353 1 555 0199", "city": "Dublin", "country": "IE", "birth_date": "1979-03-17",
        "is_active": 1, "loyalty_points": 980, "created_at": "2023-02-14 18:45:30",
        "preferences": '{"newsletter": true}', "notes": 'Prefers "express" shipping; it\'s urgent'}
    tokyo = dict(conn.execute("SELECT first_name, last_name, city, notes FROM customers WHERE id = 5").fetchone())
    assert tokyo == {"first_name": "Sakura", "last_name": "田中", "city": "東京", "notes": "東京の常連客 🎌"}
    assert conn.execute("SELECT first_name, last_name FROM customers WHERE id = 2").fetchone()[:] == ("José", "García")
    assert conn.execute("SELECT first_name FROM customers WHERE id = 3").fetchone()[0] == "Zoë"
    assert conn.execute("SELECT notes FROM customers WHERE id = 15").fetchone()[0] == "VIP customer 🎉☕"
    assert conn.execute("SELECT notes FROM customers WHERE id = 14").fetchone()[0] == \
        "Ships to C:\\Users\\tom\\Desktop (a joke) \\n not a newline"
    # An inactive customer with NULLs everywhere optional and no orders.
    inactive = dict(conn.execute("SELECT * FROM customers WHERE id = 18").fetchone())
    assert inactive["is_active"] == 0
    assert inactive["phone"] is inactive["city"] is inactive["country"] is inactive["preferences"] is None

    tee = dict(conn.execute("SELECT * FROM products WHERE id = 1").fetchone())
    assert tee["name"] == "100% Cotton_Tee"
    assert tee["sku"] == "APP-TEE-100"
    assert tee["category_id"] == 1
    assert Decimal(repr(tee["price"])) == Decimal("19.99")
    assert json.loads(tee["attributes"]) == {"color": "white", "material": "cotton",
                                             "sizes": ["S", "M", "L", "XL"]}
    assert tee["thumbnail"][:8] == b"\x89PNG\r\n\x1a\n" and len(tee["thumbnail"]) == 69
    assert tee["in_stock"] == 1 and tee["weight_kg"] == 0.18
    assert conn.execute("SELECT name FROM products WHERE id = 4").fetchone()[0] == 'The "Storm" Rain Jacket'
    assert conn.execute("SELECT name FROM products WHERE id = 5").fetchone()[0] == "Chef's Knife"
    assert conn.execute("SELECT name FROM products WHERE id = 11").fetchone()[0] == \
        "Regex Primer: Escaping \\d and \\w"
    assert conn.execute("SELECT name FROM products WHERE id = 14").fetchone()[0] == "Smart Plug 🔌"
    mystery = dict(conn.execute("SELECT * FROM products WHERE id = 19").fetchone())
    assert mystery["category_id"] is None and mystery["weight_kg"] is None and mystery["thumbnail"] is None
    assert conn.execute("SELECT COUNT(*) FROM products WHERE thumbnail IS NOT NULL").fetchone()[0] == 3

    assert dict(conn.execute("SELECT * FROM employees WHERE id = 1").fetchone()) == {
        "id": 1, "first_name": "Margaret", "last_name": "Hamilton",
        "email": "margaret.hamilton@store.example", "title": "Chief Executive Officer",
        "manager_id": None, "hired_on": "2015-03-01", "salary": 250000, "is_active": 1}
    assert conn.execute("SELECT salary FROM employees WHERE id = 4").fetchone()[0] == 61250.75
    assert [r[0] for r in conn.execute("SELECT id FROM employees WHERE manager_id = 2 ORDER BY id")] == [4, 5, 7]

    # Generated rows (random.Random(42)): first and last orders and events.
    assert tuple(conn.execute("SELECT * FROM orders WHERE id = 1").fetchone()) == (
        1, 11, 7, "paid", "2024-01-03 12:34:22", None, 199.95, "Backorder\\partial")
    assert tuple(conn.execute("SELECT * FROM orders WHERE id = 2").fetchone()) == (
        2, 4, None, "shipped", "2024-01-05 11:00:39", "2024-01-10", 229.85, None)
    assert tuple(conn.execute("SELECT * FROM orders WHERE id = 200").fetchone()) == (
        200, 6, 4, "delivered", "2024-12-29 18:15:12", "2024-12-31", 246.76,
        'Gift wrap, card says "Happy birthday!"')
    assert [tuple(r) for r in conn.execute("SELECT * FROM order_items WHERE order_id IN (1, 2) "
                                           "ORDER BY order_id, product_id")] == [
        (1, 9, 5, 39.99), (2, 5, 2, 89.95), (2, 12, 5, 9.99)]
    assert [tuple(r) for r in conn.execute("SELECT * FROM events WHERE id IN (1, 2, 3, 12000) ORDER BY id")] == [
        (1, 10, "page_view", "2024-01-01 00:28:25", "/products/13", None),
        (2, 19, "page_view", "2024-01-01 00:39:05", "/products/11", None),
        (3, 11, "search", "2024-01-01 00:48:15", "/search?q=o'brien", None),
        (12000, 18, "purchase", "2024-12-31 22:50:59", "/checkout/complete", 126.12)]


def test_generated_aggregates(conn):
    assert conn.execute("SELECT COUNT(*), COUNT(customer_id), COUNT(amount) FROM events").fetchone() == \
        (12000, 9039, 2023)
    assert dict((r[0], r[1]) for r in conn.execute("SELECT event_type, COUNT(*) FROM events GROUP BY 1")) == {
        "page_view": 7176, "search": 2430, "add_to_cart": 1420, "purchase": 603, "signup": 371}
    assert conn.execute("SELECT MIN(occurred_at), MAX(occurred_at) FROM events").fetchone() == (
        "2024-01-01 00:28:25", "2024-12-31 22:50:59")
    # ids follow time, so ORDER BY id and ORDER BY occurred_at page the same way.
    assert conn.execute("SELECT COUNT(*) FROM events a JOIN events b ON b.id = a.id + 1 "
                        "WHERE b.occurred_at < a.occurred_at").fetchone()[0] == 0
    assert dict(conn.execute("SELECT status, COUNT(*) FROM orders GROUP BY 1").fetchall()) == {
        "pending": 16, "paid": 34, "shipped": 50, "delivered": 88, "cancelled": 12}
    assert conn.execute("SELECT ROUND(SUM(total), 2) FROM orders").fetchone()[0] == 71538.16
    assert conn.execute("SELECT COUNT(*) FROM orders WHERE employee_id IS NULL").fetchone()[0] == 125
    # Every order's total is the sum of its lines.
    assert conn.execute("SELECT COUNT(*) FROM orders o WHERE ABS(o.total - (SELECT SUM(quantity * unit_price) "
                        "FROM order_items i WHERE i.order_id = o.id)) > 0.005").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM orders o WHERE NOT EXISTS "
                        "(SELECT 1 FROM order_items i WHERE i.order_id = o.id)").fetchone()[0] == 0
    # Shipped dates only on shipped or delivered orders.
    assert conn.execute("SELECT COUNT(*) FROM orders WHERE (shipped_on IS NULL) = "
                        "(status IN ('shipped', 'delivered'))").fetchone()[0] == 0
    # Products 17 and 18 are never ordered; customer 18 never orders.
    assert conn.execute("SELECT COUNT(*) FROM order_items WHERE product_id IN (17, 18)").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM orders WHERE customer_id = 18").fetchone()[0] == 0


def test_view_rows(conn):
    rows = conn.execute("SELECT * FROM customer_order_totals WHERE customer_id IN (1, 4, 18) "
                        "ORDER BY customer_id").fetchall()
    assert rows == [
        (1, "Ada", "Lovelace", "ada@example.com", 4, 840.14, "2024-10-06 21:36:51"),
        (4, "Seán", "O'Brien", "sean.obrien@example.ie", 5, 1338.08, "2024-11-08 22:46:47"),
        (18, "Inactive", "User", "inactive.user@example.com", 0, 0.0, None)]
    names = [d[0] for d in conn.execute("SELECT * FROM customer_order_totals LIMIT 0").description]
    assert names == ["customer_id", "first_name", "last_name", "email", "order_count",
                     "total_spent", "last_ordered_at"]


def test_like_metacharacters_need_escaping(conn):
    def names(sql, *params):
        return sorted(r[0] for r in conn.execute(sql, params))
    escaped = "SELECT name FROM products WHERE name LIKE ? ESCAPE '\\'"
    assert names(escaped, "%100\\%%") == ["100% Cotton_Tee"]
    assert names(escaped, "%Cotton\\_Tee%") == ["100% Cotton_Tee"]
    # Unescaped, the wildcards also match the decoys.
    assert names("SELECT name FROM products WHERE name LIKE ?", "%100%%") == \
        ["100% Cotton_Tee", "1000 Piece Puzzle"]
    assert names("SELECT name FROM products WHERE name LIKE ?", "%Cotton_Tee%") == \
        ["100% Cotton_Tee", "Organic Cotton Tee"]
    assert names("SELECT name FROM tags WHERE name LIKE ? ESCAPE '\\'", "%\\_%") == ["50%_off", "gift_idea"]
    assert names(escaped, "%\\\\%") == ["Regex Primer: Escaping \\d and \\w"]


def test_product_tags_and_categories(conn):
    tags = [r[0] for r in conn.execute("SELECT t.name FROM product_tags pt JOIN tags t ON t.id = pt.tag_id "
                                       "WHERE pt.product_id = 1 ORDER BY t.name")]
    assert tags == ["50%_off", "bestseller", "eco-friendly"]
    # Category 6 has no products; tag 1 (bestseller) has five.
    assert conn.execute("SELECT COUNT(*) FROM products WHERE category_id = 6").fetchone()[0] == 0
    assert conn.execute("SELECT COUNT(*) FROM product_tags WHERE tag_id = 1").fetchone()[0] == 5


# --------------------------------------------------------------------- constraints
def test_constraints_are_enforced(fresh_db):
    c = fresh_db
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        c.execute("INSERT INTO customers (first_name, last_name, email) VALUES ('A', 'B', 'ada@example.com')")
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        c.execute("INSERT INTO customers (first_name, last_name) VALUES ('A', 'B')")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        c.execute("INSERT INTO order_items (order_id, product_id, quantity, unit_price) VALUES (1, 1, 0, 1)")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        c.execute("UPDATE products SET price = -1 WHERE id = 1")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        c.execute("UPDATE orders SET status = 'lost' WHERE id = 1")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        c.execute("INSERT INTO orders (customer_id, ordered_at) VALUES (999, '2024-01-01 00:00:00')")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        c.execute("DELETE FROM products WHERE id = 9")      # ordered: ON DELETE RESTRICT
    c.commit()


def test_defaults(fresh_db):
    c = fresh_db
    cur = c.execute("INSERT INTO customers (first_name, last_name, email) VALUES ('New', 'Person', 'n@example.com')")
    row = c.execute("SELECT is_active, loyalty_points, created_at FROM customers WHERE id = ?",
                    (cur.lastrowid,)).fetchone()
    assert row[0] == 1 and row[1] == 0 and len(row[2]) == 19
    assert cur.lastrowid == 21
    cur = c.execute("INSERT INTO orders (customer_id, ordered_at) VALUES (1, '2025-01-01 00:00:00')")
    assert c.execute("SELECT status, total FROM orders WHERE id = ?", (cur.lastrowid,)).fetchone() == ("pending", 0)
    c.execute("INSERT INTO order_items (order_id, product_id, unit_price) VALUES (?, 1, 19.99)", (cur.lastrowid,))
    assert c.execute("SELECT quantity FROM order_items WHERE order_id = ?", (cur.lastrowid,)).fetchone()[0] == 1


def test_on_delete_actions(fresh_db):
    c = fresh_db
    items = c.execute("SELECT COUNT(*) FROM order_items WHERE order_id = 2").fetchone()[0]
    assert items == 2
    c.execute("DELETE FROM orders WHERE id = 2")                       # CASCADE to order_items
    assert c.execute("SELECT COUNT(*) FROM order_items WHERE order_id = 2").fetchone()[0] == 0
    c.execute("DELETE FROM employees WHERE id = 2")                    # SET NULL on reports and orders
    assert c.execute("SELECT manager_id FROM employees WHERE id = 4").fetchone()[0] is None
    assert c.execute("SELECT COUNT(*) FROM orders WHERE employee_id = 2").fetchone()[0] == 0
    before = c.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    c.execute("DELETE FROM customers WHERE id = 4")                    # CASCADE orders, SET NULL events
    assert c.execute("SELECT COUNT(*) FROM orders WHERE customer_id = 4").fetchone()[0] == 0
    assert c.execute("SELECT COUNT(*) FROM events WHERE customer_id = 4").fetchone()[0] == 0
    assert c.execute("SELECT COUNT(*) FROM events").fetchone()[0] == before
    c.execute("DELETE FROM tags WHERE id = 1")                         # CASCADE product_tags
    assert c.execute("SELECT COUNT(*) FROM product_tags WHERE tag_id = 1").fetchone()[0] == 0
    c.execute("DELETE FROM categories WHERE id = 1")                   # SET NULL products
    assert c.execute("SELECT category_id FROM products WHERE id = 1").fetchone()[0] is None
    c.commit()
    assert c.execute("PRAGMA foreign_key_check").fetchall() == []


# --------------------------------------------------------------------- introspection
@pytest.fixture(scope="module")
def catalog(db_path):
    dialect = SqliteDialect(ServiceConfig(name="demo", url="sqlite:///" + db_path))
    conn = dialect.connect()
    try:
        return dialect.introspect(conn)
    finally:
        conn.close()


def _relations(table):
    return {r.name: r for r in table.relations}


def test_introspection_finds_tables_and_view(catalog):
    assert set(catalog.tables) == set(demo.DEMO_TABLES) | set(demo.DEMO_VIEWS)
    view = catalog.table("customer_order_totals")
    assert view.is_view is True and view.foreign_keys == [] and view.relations == []
    assert [c.name for c in view.columns] == ["customer_id", "first_name", "last_name", "email",
                                              "order_count", "total_spent", "last_ordered_at"]
    assert all(not catalog.table(t).is_view for t in demo.DEMO_TABLES)
    assert catalog.table("ORDERS") is catalog.table("orders")


def test_introspection_column_types(catalog):
    def col(t, c):
        return catalog.table(t).column(c)
    assert (col("customers", "id").type, col("customers", "id").auto_increment) == ("id", True)
    assert col("customers", "email").type == "string" and col("customers", "email").length == 255
    assert col("customers", "email").is_unique and not col("customers", "email").allow_null
    assert col("customers", "email").required
    assert (col("customers", "country").type, col("customers", "country").length) == ("string", 2)
    assert col("customers", "is_active").type == "boolean" and col("customers", "is_active").default == 1
    assert col("customers", "created_at").type == "datetime"
    assert col("customers", "created_at").default == "CURRENT_TIMESTAMP"
    assert not col("customers", "created_at").required
    assert col("customers", "birth_date").type == "date" and col("customers", "birth_date").allow_null
    assert col("customers", "preferences").type == "json"
    assert col("customers", "notes").type == "text"
    price = col("products", "price")
    assert (price.type, price.precision, price.scale, price.db_type) == ("decimal", 10, 2, "decimal(10,2)")
    assert col("products", "weight_kg").type == "double"
    assert col("products", "thumbnail").type == "binary"
    assert col("products", "attributes").type == "json"
    assert col("products", "sku").is_unique
    assert col("orders", "status").default == "pending"
    assert col("order_items", "quantity").default == 1
    assert catalog.table("order_items").primary_key == ["order_id", "product_id"]
    assert catalog.table("product_tags").primary_key == ["product_id", "tag_id"]
    assert not col("order_items", "order_id").auto_increment
    assert col("events", "occurred_at").is_index


def test_introspection_foreign_keys(catalog):
    def fks(t):
        return {(fk.columns, fk.ref_table, fk.ref_columns, fk.on_delete)
                for fk in catalog.table(t).foreign_keys}
    assert fks("orders") == {(("customer_id",), "customers", ("id",), "CASCADE"),
                             (("employee_id",), "employees", ("id",), "SET NULL")}
    assert fks("order_items") == {(("order_id",), "orders", ("id",), "CASCADE"),
                                  (("product_id",), "products", ("id",), "RESTRICT")}
    assert fks("product_tags") == {(("product_id",), "products", ("id",), "CASCADE"),
                                   (("tag_id",), "tags", ("id",), "CASCADE")}
    assert fks("employees") == {(("manager_id",), "employees", ("id",), "SET NULL")}
    assert fks("products") == {(("category_id",), "categories", ("id",), "SET NULL")}
    assert fks("events") == {(("customer_id",), "customers", ("id",), "SET NULL")}
    cust = catalog.table("orders").column("customer_id")
    assert cust.is_foreign_key and (cust.ref_table, cust.ref_field, cust.ref_on_delete) == \
        ("customers", "id", "CASCADE")
    oi = catalog.table("order_items").column("order_id")
    assert (oi.ref_table, oi.ref_field, oi.ref_on_update) == ("orders", "id", "CASCADE")


def test_derived_relations(catalog):
    orders = _relations(catalog.table("orders"))
    r = orders["customers_by_customer_id"]
    assert (r.type, r.field, r.ref_table, r.ref_field) == ("belongs_to", ("customer_id",), "customers", ("id",))
    assert orders["employees_by_employee_id"].type == "belongs_to"
    assert orders["order_items_by_order_id"].type == "has_many"
    mm = orders["products_by_order_items"]
    assert (mm.type, mm.field, mm.ref_table, mm.ref_field, mm.junction_table, mm.junction_field,
            mm.junction_ref_field) == ("many_many", ("id",), "products", ("id",), "order_items",
                                       ("order_id",), ("product_id",))
    assert set(orders) == {"customers_by_customer_id", "employees_by_employee_id",
                           "order_items_by_order_id", "products_by_order_items"}

    customers = _relations(catalog.table("customers"))
    r = customers["orders_by_customer_id"]
    assert (r.type, r.field, r.ref_table, r.ref_field) == ("has_many", ("id",), "orders", ("customer_id",))
    assert set(customers) == {"orders_by_customer_id", "events_by_customer_id"}

    products = _relations(catalog.table("products"))
    mm = products["tags_by_product_tags"]
    assert (mm.type, mm.ref_table, mm.junction_table, mm.junction_field, mm.junction_ref_field) == \
        ("many_many", "tags", "product_tags", ("product_id",), ("tag_id",))
    assert products["orders_by_order_items"].type == "many_many"
    assert products["categories_by_category_id"].type == "belongs_to"
    assert set(products) == {"categories_by_category_id", "order_items_by_product_id",
                             "product_tags_by_product_id", "orders_by_order_items", "tags_by_product_tags"}

    tags = _relations(catalog.table("tags"))
    assert tags["products_by_product_tags"].type == "many_many"
    assert set(tags) == {"product_tags_by_tag_id", "products_by_product_tags"}

    categories = _relations(catalog.table("categories"))
    assert set(categories) == {"products_by_category_id"}

    # The self reference: belongs_to and has_many would share a name; the second is suffixed.
    employees = {r.name: r.type for r in catalog.table("employees").relations}
    assert employees == {"employees_by_manager_id": "belongs_to",
                         "employees_by_manager_id_2": "has_many",
                         "orders_by_employee_id": "has_many"}

    # Junction tables and the event log get only their belongs_to relations.
    assert {r.type for t in ("order_items", "product_tags", "events")
            for r in catalog.table(t).relations} == {"belongs_to"}
    d = orders["products_by_order_items"].to_dict()
    assert (d["junction_table"], d["junction_field"], d["junction_ref_field"]) == \
        ("order_items", "order_id", "product_id")


def test_dialect_decodes_demo_values(catalog, db_path):
    dialect = SqliteDialect(ServiceConfig(name="demo", url="sqlite:///" + db_path))
    conn = dialect.connect()
    try:
        names, rows = dialect.query(conn, "SELECT price, in_stock FROM products WHERE id = 1")
        products = catalog.table("products")
        price, in_stock = (dialect.decode_value(products.column(n), v) for n, v in zip(names, rows[0]))
        assert price == Decimal("19.99") and str(price) == "19.99"
        assert in_stock is True
        emp = catalog.table("employees")
        salary = dialect.decode_value(emp.column("salary"), dialect.query(
            conn, "SELECT salary FROM employees WHERE id = 1")[1][0][0])
        assert str(salary) == "250000.00"
    finally:
        conn.close()
