"""The embedded demo database: a small, deterministic SQLite store.

``mcp-flask serve`` with no configuration serves one service, ``demo``, backed by
the SQLite file this module builds on first run in the data directory.  The
sample is small but shaped to exercise every tool:

* one-to-many relations (``customers -> orders``, ``categories -> products``,
  ``orders -> order_items``, ``customers -> events``) and a self reference
  (``employees.manager_id -> employees.id``);
* many-to-many relations through junction tables whose primary key is exactly
  their two foreign-key columns (``order_items`` joins orders and products,
  ``product_tags`` joins products and tags);
* a view, ``customer_order_totals``;
* every column type the SQLite dialect maps (INTEGER PRIMARY KEY, VARCHAR(n),
  CHAR(n), TEXT, DECIMAL(10,2), BOOLEAN, DATE, DATETIME, REAL, BLOB, JSON) and
  UNIQUE, NOT NULL, CHECK, DEFAULT and ON DELETE / ON UPDATE clauses;
* awkward data: NULLs, quotes (``O'Brien``, ``"Storm"``), backslashes, unicode
  (José, Zoë, 東京, emoji), and ``%`` / ``_`` in names for LIKE-escaping tests
  (``100% Cotton_Tee`` next to the decoys ``1000 Piece Puzzle`` and
  ``Organic Cotton Tee``);
* ``events``: 12,000 rows, so pagination matters.

Everything is generated from fixed literals and ``random.Random(42)``, so the
file's content is identical on every machine and tests can assert exact rows.

Creation is atomic: the database is built in a temporary file in the target
directory and hard-linked into place (``os.link`` fails if the name exists), so
when several gunicorn workers start at once exactly one wins, the others throw
their copy away, and no process ever opens a half-built file.

Imports nothing from the project.
"""
from __future__ import annotations

import json
import os
import random
import sqlite3
import tempfile
from datetime import datetime, timedelta
from decimal import Decimal

__all__ = [
    "create_demo_database", "build_demo_database",
    "DEMO_SERVICE", "DEMO_FILENAME", "DEMO_SCHEMA_VERSION", "DEMO_SEED",
    "DEMO_TABLES", "DEMO_VIEWS", "DEMO_ROW_COUNTS", "EVENT_ROWS", "EVENT_TYPES",
    "ORDER_ROWS", "ORDER_ITEM_ROWS", "ORDER_STATUSES",
]

#: The service name the built-in configuration gives the demo.
DEMO_SERVICE = "demo"
#: The file name inside the data directory (see ``config.demo_service``).
DEMO_FILENAME = "demo.db"
#: Stored in ``PRAGMA user_version`` of the built file.
DEMO_SCHEMA_VERSION = 1
#: The seed of the generated rows (orders, order items, events).
DEMO_SEED = 42

#: Base tables, in creation (dependency) order.
DEMO_TABLES = ("categories", "tags", "customers", "employees", "products", "product_tags",
               "orders", "order_items", "events")
#: Views.
DEMO_VIEWS = ("customer_order_totals",)

#: Rows in ``events`` (more than one default page, so pagination matters).
EVENT_ROWS = 12_000
EVENT_TYPES = ("page_view", "search", "add_to_cart", "purchase", "signup")
ORDER_ROWS = 200
#: Rows in ``order_items`` (generated; fixed by the seed, checked by the tests).
ORDER_ITEM_ROWS = 534
ORDER_STATUSES = ("pending", "paid", "shipped", "delivered", "cancelled")

# 1x1 PNG images (white, brown, blue) for products.thumbnail.
_PNG_WHITE = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
    "0000000c4944415478da63f8ffff3f0005fe02fe331295140000000049454e44ae426082")
_PNG_BROWN = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
    "0000000c4944415478da63e876150600024200e4c9c4429d0000000049454e44ae426082")
_PNG_BLUE = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
    "0000000c4944415478da6360a8b80e0001cb0150e4b77d120000000049454e44ae426082")

SCHEMA = """
CREATE TABLE categories (
    id          INTEGER PRIMARY KEY,
    name        VARCHAR(100) NOT NULL UNIQUE,
    description TEXT
);

CREATE TABLE tags (
    id   INTEGER PRIMARY KEY,
    name VARCHAR(50) NOT NULL UNIQUE
);

CREATE TABLE customers (
    id             INTEGER PRIMARY KEY,
    first_name     VARCHAR(50)  NOT NULL,
    last_name      VARCHAR(50)  NOT NULL,
    email          VARCHAR(255) NOT NULL UNIQUE,
    phone          VARCHAR(30),
    city           VARCHAR(100),
    country        CHAR(2),
    birth_date     DATE,
    is_active      BOOLEAN  NOT NULL DEFAULT 1,
    loyalty_points INTEGER  NOT NULL DEFAULT 0 CHECK (loyalty_points >= 0),
    created_at     DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    preferences    JSON,
    notes          TEXT
);

CREATE TABLE employees (
    id         INTEGER PRIMARY KEY,
    first_name VARCHAR(50)  NOT NULL,
    last_name  VARCHAR(50)  NOT NULL,
    email      VARCHAR(255) NOT NULL UNIQUE,
    title      VARCHAR(100) NOT NULL,
    manager_id INTEGER REFERENCES employees (id) ON DELETE SET NULL,
    hired_on   DATE NOT NULL,
    salary     DECIMAL(10,2) NOT NULL CHECK (salary >= 0),
    is_active  BOOLEAN NOT NULL DEFAULT 1
);

CREATE TABLE products (
    id             INTEGER PRIMARY KEY,
    category_id    INTEGER REFERENCES categories (id) ON DELETE SET NULL,
    sku            VARCHAR(32)  NOT NULL UNIQUE,
    name           VARCHAR(200) NOT NULL,
    description    TEXT,
    price          DECIMAL(10,2) NOT NULL CHECK (price >= 0),
    weight_kg      REAL CHECK (weight_kg IS NULL OR weight_kg > 0),
    in_stock       BOOLEAN NOT NULL DEFAULT 1,
    stock_quantity INTEGER NOT NULL DEFAULT 0 CHECK (stock_quantity >= 0),
    attributes     JSON,
    thumbnail      BLOB,
    released_on    DATE,
    created_at     DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE product_tags (
    product_id INTEGER NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    tag_id     INTEGER NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    PRIMARY KEY (product_id, tag_id)
);

CREATE TABLE orders (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    employee_id INTEGER REFERENCES employees (id) ON DELETE SET NULL,
    status      VARCHAR(20) NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'paid', 'shipped', 'delivered', 'cancelled')),
    ordered_at  DATETIME NOT NULL,
    shipped_on  DATE,
    total       DECIMAL(10,2) NOT NULL DEFAULT 0 CHECK (total >= 0),
    notes       TEXT
);

CREATE TABLE order_items (
    order_id   INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE ON UPDATE CASCADE,
    product_id INTEGER NOT NULL REFERENCES products (id) ON DELETE RESTRICT,
    quantity   INTEGER NOT NULL DEFAULT 1 CHECK (quantity > 0),
    unit_price DECIMAL(10,2) NOT NULL CHECK (unit_price >= 0),
    PRIMARY KEY (order_id, product_id)
);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER REFERENCES customers (id) ON DELETE SET NULL,
    event_type  VARCHAR(20) NOT NULL
                CHECK (event_type IN ('page_view', 'search', 'add_to_cart', 'purchase', 'signup')),
    occurred_at DATETIME NOT NULL,
    path        VARCHAR(255) NOT NULL,
    amount      DECIMAL(10,2) CHECK (amount IS NULL OR amount >= 0)
);

CREATE INDEX idx_products_category ON products (category_id);
CREATE INDEX idx_orders_customer ON orders (customer_id);
CREATE INDEX idx_orders_ordered_at ON orders (ordered_at);
CREATE INDEX idx_order_items_product ON order_items (product_id);
CREATE INDEX idx_product_tags_tag ON product_tags (tag_id);
CREATE INDEX idx_events_customer ON events (customer_id);
CREATE INDEX idx_events_occurred_at ON events (occurred_at);
CREATE INDEX idx_events_type ON events (event_type);

CREATE VIEW customer_order_totals AS
SELECT c.id                          AS customer_id,
       c.first_name                  AS first_name,
       c.last_name                   AS last_name,
       c.email                       AS email,
       COUNT(o.id)                   AS order_count,
       ROUND(COALESCE(SUM(o.total), 0), 2) AS total_spent,
       MAX(o.ordered_at)             AS last_ordered_at
FROM customers AS c
LEFT JOIN orders AS o ON o.customer_id = c.id AND o.status <> 'cancelled'
GROUP BY c.id, c.first_name, c.last_name, c.email;
"""

CATEGORIES = [
    # id, name, description
    (1, "Apparel", "Clothing and accessories"),
    (2, "Home & Kitchen", "Cookware, mugs and everything for the kitchen"),
    (3, "Books", None),
    (4, "Electronics", "Cables, gadgets and audio"),
    (5, "Toys & Games", "For kids of all ages"),
    (6, "Gift Cards", "No products yet"),
]

TAGS = [
    (1, "bestseller"), (2, "new"), (3, "sale"), (4, "eco-friendly"),
    (5, "gift_idea"), (6, "limited"), (7, "50%_off"),
]

_CUSTOMER_COLS = ("id", "first_name", "last_name", "email", "phone", "city", "country",
                  "birth_date", "is_active", "loyalty_points", "created_at", "preferences", "notes")
CUSTOMERS = [
    (1, "Ada", "Lovelace", "ada@example.com", "+44 20 7946 0001", "London", "GB",
     "1815-12-10", 1, 1200, "2023-01-05 09:15:00", {"newsletter": True, "language": "en"}, None),
    (2, "José", "García", "jose.garcia@example.es", "+34 91 123 4567", "Madrid", "ES",
     "1988-04-23", 1, 340, "2023-01-17 14:02:11", {"newsletter": False, "language": "es"}, None),
    (3, "Zoë", "Müller", "zoe.mueller@example.de", None, "Berlin", "DE",
     None, 1, 75, "2023-02-02 08:30:00", None, "Zoë with a diaeresis"),
    (4, "Seán", "O'Brien", "sean.obrien@example.ie", "+353 1 555 0199", "Dublin", "IE",
     "1979-03-17", 1, 980, "2023-02-14 18:45:30", {"newsletter": True},
     'Prefers "express" shipping; it\'s urgent'),
    (5, "Sakura", "田中", "sakura.tanaka@example.jp", "+81 3-1234-5678", "東京", "JP",
     "1995-07-07", 1, 2500, "2023-03-01 10:00:00", {"language": "ja", "currency": "JPY"},
     "東京の常連客 🎌"),
    (6, "Grace", "Hopper", "grace.hopper@example.com", None, "Arlington", "US",
     "1906-12-09", 1, 0, "2023-03-09 11:11:11", None, None),
    (7, "Alan", "Turing", "alan.turing@example.co.uk", "+44 161 496 0123", "Manchester", "GB",
     "1912-06-23", 1, 150, "2023-03-21 16:20:00", {"newsletter": True, "language": "en"}, None),
    (8, "Wei", "李", "li.wei@example.cn", "+86 10 5555 0100", "北京", "CN",
     None, 1, 60, "2023-04-04 04:04:04", None, None),
    (9, "Fatima", "Al-Sayed", "fatima.alsayed@example.eg", None, "القاهرة", "EG",
     "1990-11-30", 1, 420, "2023-04-18 12:00:00", {"language": "ar"}, None),
    (10, "Priya", "Patel", "priya_patel@example.in", "+91 22 5550 1234", "Mumbai", "IN",
     "1992-01-26", 1, 800, "2023-05-02 07:45:00", None, "Uses the 10% off_code NEWBIE_10"),
    (11, "Olu", "Adeyemi", "olu.adeyemi@example.ng", "+234 1 555 0142", "Lagos", "NG",
     None, 1, 30, "2023-05-19 19:30:00", None, None),
    (12, "Élodie", "Dupont", "elodie.dupont@example.fr", "+33 1 55 55 01 23", "Paris", "FR",
     "1985-08-15", 1, 610, "2023-06-06 09:00:00", {"newsletter": True, "language": "fr"}, None),
    (13, "Björn", "Andersson", "bjorn.andersson@example.se", None, "Stockholm", "SE",
     None, 1, 90, "2023-06-24 22:10:00", None, None),
    (14, "Tom", "Backslash", "tom_b@example.com", "+1 555 0100", "Seattle", "US",
     None, 1, 5, "2023-07-07 07:07:07", None, "Ships to C:\\Users\\tom\\Desktop (a joke) \\n not a newline"),
    (15, "Chloé", "Martin", "chloe.martin@example.ca", "+1 514 555 0173", "Montréal", "CA",
     "2000-02-29", 1, 275, "2023-08-12 13:30:00", {"language": "fr", "tags": ["vip"]},
     "VIP customer 🎉☕"),
    (16, "Nikola", "Tesla", "nikola.tesla@example.rs", None, "Beograd", "RS",
     "1856-07-10", 1, 1890, "2023-09-01 00:00:00", None, None),
    (17, "Mary", "Smith", "mary.smith@example.com", "+1 555 0111", "New York", "US",
     "1970-05-05", 1, 45, "2023-10-10 10:10:10", None, None),
    (18, "Inactive", "User", "inactive.user@example.com", None, None, None,
     None, 0, 0, "2023-11-11 11:11:11", None, "Closed account; no orders"),
    (19, "Nameless", "Walker", "walker@example.net", None, None, None,
     None, 1, 0, "2023-12-01 08:00:00", None, None),
    (20, "Kenji", "Sato", "kenji.sato@example.jp", "+81 6-5555-0123", "大阪", "JP",
     "1983-10-01", 1, 330, "2024-01-02 09:30:00", {"newsletter": False}, None),
]
#: Customers that never order (the view shows order_count 0 for them).
_NO_ORDER_CUSTOMERS = (18,)

_EMPLOYEE_COLS = ("id", "first_name", "last_name", "email", "title", "manager_id",
                  "hired_on", "salary", "is_active")
EMPLOYEES = [
    (1, "Margaret", "Hamilton", "margaret.hamilton@store.example", "Chief Executive Officer",
     None, "2015-03-01", "250000.00", 1),
    (2, "Katherine", "Johnson", "katherine.johnson@store.example", "Head of Sales",
     1, "2016-06-15", "145000.50", 1),
    (3, "Dorothy", "Vaughan", "dorothy.vaughan@store.example", "Head of Support",
     1, "2017-01-09", "132500.00", 1),
    (4, "Mary", "Jackson", "mary.jackson@store.example", "Sales Associate",
     2, "2019-09-02", "61250.75", 1),
    (5, "Miguel", "Ángel", "miguel.angel@store.example", "Sales Associate",
     2, "2020-02-17", "58900.00", 1),
    (6, "Aiko", "Yamamoto", "aiko.yamamoto@store.example", "Support Specialist",
     3, "2021-04-01", "54000.00", 1),
    (7, "Liam", "O'Connor", "liam.oconnor@store.example", "Sales Associate",
     2, "2018-11-05", "60000.00", 0),
    (8, "Noor", "Haddad", "noor.haddad@store.example", "Junior Sales Associate",
     4, "2023-07-10", "42000.00", 1),
]
#: Employees who take orders (the rest of the orders came in through the web shop).
_SALES_EMPLOYEES = (2, 4, 5, 7, 8)

_PRODUCT_COLS = ("id", "category_id", "sku", "name", "description", "price", "weight_kg",
                 "in_stock", "stock_quantity", "attributes", "thumbnail", "released_on", "created_at")
PRODUCTS = [
    (1, 1, "APP-TEE-100", "100% Cotton_Tee", "Soft tee in 100% cotton",
     "19.99", 0.18, 1, 250, {"color": "white", "sizes": ["S", "M", "L", "XL"], "material": "cotton"},
     _PNG_WHITE, "2023-02-01", "2023-01-20 10:00:00"),
    (2, 1, "APP-TEE-ORG", "Organic Cotton Tee", "Organic cotton tee (a LIKE decoy for Cotton_Tee)",
     "24.50", 0.2, 1, 120, {"color": "green", "sizes": ["S", "M", "L"], "material": "organic cotton"},
     None, "2023-03-15", "2023-03-01 10:00:00"),
    (3, 1, "APP-SCARF-W", "Wool Scarf", None,
     "34.00", 0.25, 1, 60, {"color": "grey", "material": "merino wool"},
     None, "2023-10-01", "2023-09-15 10:00:00"),
    (4, 1, "APP-JACKET-STORM", 'The "Storm" Rain Jacket', 'Waterproof; rated "excellent" by testers',
     "129.00", 0.85, 1, 35, {"color": "navy", "sizes": ["M", "L"], "waterproof": True},
     None, "2023-09-01", "2023-08-20 10:00:00"),
    (5, 2, "HOM-KNIFE-CHEF", "Chef's Knife", "20 cm blade; don't put it in the dishwasher",
     "89.95", 0.32, 1, 40, {"blade_cm": 20, "steel": "VG-10"},
     _PNG_BROWN, "2022-11-01", "2022-10-15 10:00:00"),
    (6, 2, "HOM-MUG-CAFE", "Café Mug — 350 ml", "Stoneware mug ☕",
     "12.00", 0.4, 1, 500, {"volume_ml": 350, "dishwasher_safe": True},
     _PNG_BLUE, "2023-01-10", "2023-01-05 10:00:00"),
    (7, 2, "HOM-BOARD-BAM", "Bamboo Cutting Board", "Eco-friendly bamboo",
     "27.49", 1.1, 1, 80, None, None, "2023-04-22", "2023-04-01 10:00:00"),
    (8, 2, "HOM-SKILLET-26", "Cast Iron Skillet", "26 cm, pre-seasoned",
     "45.00", 2.6, 1, 25, {"diameter_cm": 26}, None, "2021-05-05", "2021-05-01 10:00:00"),
    (9, 3, "BOO-SQL-2", "Learning SQL: 2nd Ed.", "From SELECT to window functions",
     "39.99", 0.7, 1, 70, {"isbn": "978-0-00-000000-2", "pages": 412}, None, "2020-06-01", "2020-05-20 10:00:00"),
    (10, 3, "BOO-TOKYO", "東京 Travel Guide", "Neighbourhood-by-neighbourhood guide to 東京",
     "22.00", 0.45, 1, 30, {"isbn": "978-0-00-000000-3", "language": "en"}, None, "2023-05-01", "2023-04-15 10:00:00"),
    (11, 3, "BOO-REGEX", "Regex Primer: Escaping \\d and \\w", "Backslashes everywhere: \\\\ matches one",
     "29.00", 0.5, 1, 15, None, None, "2019-09-09", "2019-09-01 10:00:00"),
    (12, 4, "ELE-USBC-2M", "USB-C Cable (2 m)", "USB 3.2, 100 W",
     "9.99", 0.05, 1, 1000, {"length_m": 2, "watts": 100}, None, "2022-01-15", "2022-01-10 10:00:00"),
    (13, 4, "ELE-HEADPHONES-NC", "Noise-Cancelling Headphones", "Over-ear, 30 h battery",
     "199.00", 0.25, 1, 18, {"battery_h": 30, "colors": ["black", "silver"]}, None, "2023-11-01", "2023-10-20 10:00:00"),
    (14, 4, "ELE-PLUG-SMART", "Smart Plug 🔌", "Wi-Fi plug; works with 🏠 assistants",
     "14.95", 0.09, 1, 300, {"wifi": "2.4 GHz"}, None, "2023-06-01", "2023-05-25 10:00:00"),
    (15, 5, "TOY-PUZZLE-1000", "1000 Piece Puzzle", "A LIKE decoy for 100%",
     "17.50", 0.6, 1, 45, {"pieces": 1000}, None, "2022-10-01", "2022-09-20 10:00:00"),
    (16, 5, "TOY-TRAIN-WOOD", "Zoë's Wooden Train Set", "42 pieces, beech wood",
     "59.00", 1.8, 1, 12, {"pieces": 42, "age": "3+"}, None, "2023-08-01", "2023-07-20 10:00:00"),
    (17, 5, "TOY-SNAKE-STICK", "snake_case Sticker Pack", "Stickers for developers",
     "4.99", None, 1, 900, None, None, None, "2024-01-15 10:00:00"),
    (18, 4, "ELE-WALKMAN", "Discontinued Walkman", None,
     "0.00", None, 0, 0, None, None, "1989-07-01", "2019-01-01 10:00:00"),
    (19, None, "MISC-MYSTERY", "Mystery Box", "Uncategorised: a surprise",
     "25.00", None, 1, 100, None, None, None, "2024-02-01 10:00:00"),
    (20, 1, "APP-SOCKS-3", "Socks (3-Pack)", None,
     "11.00", 0.15, 1, 400, {"sizes": ["M", "L"]}, None, "2023-01-01", "2022-12-20 10:00:00"),
]
#: Products that are never ordered (the Walkman is out of stock; the stickers are new).
_UNORDERED_PRODUCTS = (17, 18)

PRODUCT_TAGS = [
    (1, 1), (1, 4), (1, 7), (2, 4), (2, 2), (3, 6), (4, 2), (5, 1), (6, 1), (6, 5),
    (7, 4), (9, 1), (10, 5), (11, 3), (12, 1), (13, 2), (13, 6), (14, 3), (14, 5),
    (15, 5), (16, 5), (16, 6), (17, 2), (19, 5), (20, 3),
]

_ORDER_NOTES = [None] * 12 + ["Leave at the door", 'Gift wrap, card says "Happy birthday!"',
                              "Customer's second address", "Fragile — handle with care 📦",
                              "Backorder\\partial"]
_EVENT_WEIGHTS = (("page_view", 60), ("search", 20), ("add_to_cart", 12), ("purchase", 5), ("signup", 3))
_SEARCH_TERMS = ("tee", "mug", "100%", "cotton_tee", "東京", "headphones", "o'brien", "puzzle")


def _json(value):
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _money(value) -> float:
    """A 2-decimal amount as the REAL SQLite stores for DECIMAL(10,2) columns."""
    return float(Decimal(value).quantize(Decimal("0.01")))


def _generate(rng: random.Random):
    """The generated rows: (orders, order_items, events), all deterministic for ``rng``."""
    prices = {p[0]: Decimal(p[5]) for p in PRODUCTS}
    orderable = [p[0] for p in PRODUCTS if p[0] not in _UNORDERED_PRODUCTS]
    ordering = [c[0] for c in CUSTOMERS if c[0] not in _NO_ORDER_CUSTOMERS]
    start = datetime(2024, 1, 1)
    year_seconds = 366 * 24 * 3600          # 2024 is a leap year

    stamps = sorted(rng.randrange(year_seconds) for _ in range(ORDER_ROWS))
    orders, items = [], []
    for oid, sec in enumerate(stamps, start=1):
        ordered_at = start + timedelta(seconds=sec)
        customer = rng.choice(ordering)
        employee = rng.choice(_SALES_EMPLOYEES) if rng.random() < 0.4 else None
        status = rng.choices(ORDER_STATUSES, weights=(10, 15, 20, 45, 10))[0]
        shipped = None
        if status in ("shipped", "delivered"):
            shipped = (ordered_at + timedelta(days=rng.randint(1, 5))).date().isoformat()
        total = Decimal("0.00")
        for pid in sorted(rng.sample(orderable, rng.randint(1, 4))):
            qty = rng.randint(1, 5)
            price = prices[pid]
            if rng.random() < 0.15:     # a discounted line
                price = (price * Decimal("0.90")).quantize(Decimal("0.01"))
            items.append((oid, pid, qty, float(price)))
            total += price * qty
        orders.append((oid, customer, employee, status, ordered_at.isoformat(" "),
                       shipped, _money(total), rng.choice(_ORDER_NOTES)))

    # Events: drawn column by column (one ``choices`` call each) to keep start-up fast.
    kinds = rng.choices([k for k, _ in _EVENT_WEIGHTS], [w for _, w in _EVENT_WEIGHTS], k=EVENT_ROWS)
    customers = rng.choices([c[0] for c in CUSTOMERS], k=EVENT_ROWS)
    anonymous = [rng.random() < 0.25 for _ in range(EVENT_ROWS)]
    stamps = sorted(rng.randrange(year_seconds) for _ in range(EVENT_ROWS))
    n_products = len(PRODUCTS)
    events = []
    for eid, (sec, kind, customer, anon) in enumerate(zip(stamps, kinds, customers, anonymous), start=1):
        amount = None
        if kind == "page_view":
            path = f"/products/{rng.randint(1, n_products)}"
        elif kind == "search":
            path = "/search?q=" + rng.choice(_SEARCH_TERMS)
        elif kind == "add_to_cart":
            pid = rng.choice(orderable)
            path = f"/cart/add/{pid}"
            amount = float(prices[pid])
        elif kind == "purchase":
            path = "/checkout/complete"
            amount = round(rng.uniform(5, 500), 2)
        else:
            path = "/signup"
        events.append((eid, None if anon else customer, kind,
                       (start + timedelta(seconds=sec)).isoformat(" "), path, amount))
    return orders, items, events


def build_demo_database(conn: sqlite3.Connection) -> None:
    """Create the demo schema and rows on ``conn`` (an empty database) in one transaction.

    The caller owns the connection and the journal mode; ``create_demo_database``
    is the safe way to put the result at a path.
    """
    rng = random.Random(DEMO_SEED)
    orders, items, events = _generate(rng)
    conn.execute("PRAGMA foreign_keys = ON")
    cur = conn.cursor()
    cur.execute("BEGIN")
    try:
        statements = [st.strip() for st in SCHEMA.split(";\n") if st.strip()]
        deferred = [st for st in statements if not st.startswith("CREATE TABLE")]
        for statement in statements:
            if statement.startswith("CREATE TABLE"):
                cur.execute(statement)
        cur.executemany("INSERT INTO categories (id, name, description) VALUES (?, ?, ?)", CATEGORIES)
        cur.executemany("INSERT INTO tags (id, name) VALUES (?, ?)", TAGS)
        cur.executemany(f"INSERT INTO customers ({', '.join(_CUSTOMER_COLS)}) "
                        f"VALUES ({', '.join('?' * len(_CUSTOMER_COLS))})",
                        [r[:11] + (_json(r[11]), r[12]) for r in CUSTOMERS])
        cur.executemany(f"INSERT INTO employees ({', '.join(_EMPLOYEE_COLS)}) "
                        f"VALUES ({', '.join('?' * len(_EMPLOYEE_COLS))})",
                        [r[:7] + (_money(r[7]), r[8]) for r in EMPLOYEES])
        cur.executemany(f"INSERT INTO products ({', '.join(_PRODUCT_COLS)}) "
                        f"VALUES ({', '.join('?' * len(_PRODUCT_COLS))})",
                        [r[:5] + (_money(r[5]),) + r[6:9] + (_json(r[9]),) + r[10:] for r in PRODUCTS])
        cur.executemany("INSERT INTO product_tags (product_id, tag_id) VALUES (?, ?)", PRODUCT_TAGS)
        cur.executemany("INSERT INTO orders (id, customer_id, employee_id, status, ordered_at, shipped_on, "
                        "total, notes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", orders)
        cur.executemany("INSERT INTO order_items (order_id, product_id, quantity, unit_price) "
                        "VALUES (?, ?, ?, ?)", items)
        cur.executemany("INSERT INTO events (id, customer_id, event_type, occurred_at, path, amount) "
                        "VALUES (?, ?, ?, ?, ?, ?)", events)
        for statement in deferred:       # indexes and views: faster after the rows are in
            cur.execute(statement)
        cur.execute(f"PRAGMA user_version = {int(DEMO_SCHEMA_VERSION)}")
        bad = cur.execute("PRAGMA foreign_key_check").fetchall()
        if bad:
            raise RuntimeError(f"demo data violates foreign keys: {bad[:5]}")
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    finally:
        cur.close()
    conn.execute("ANALYZE")


#: Row counts of the base tables (``events`` == ``EVENT_ROWS``); order_items is generated.
DEMO_ROW_COUNTS = {
    "categories": len(CATEGORIES),
    "tags": len(TAGS),
    "customers": len(CUSTOMERS),
    "employees": len(EMPLOYEES),
    "products": len(PRODUCTS),
    "product_tags": len(PRODUCT_TAGS),
    "orders": ORDER_ROWS,
    "order_items": ORDER_ITEM_ROWS,
    "events": EVENT_ROWS,
}


def _build_file(path: str) -> None:
    """Build the complete demo database into ``path`` (an empty file) and switch it to WAL."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # The file is private until it is linked into place: no journal needed while building.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        build_demo_database(conn)
        # WAL is persistent in the file header, so every later connection gets it.
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"could not switch the demo database to WAL (got {mode!r})")
    finally:
        conn.close()         # the last connection checkpoints and removes -wal / -shm
    for suffix in ("-wal", "-shm", "-journal"):
        try:
            os.unlink(path + suffix)
        except FileNotFoundError:
            pass
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _place_with_lock(tmp: str, path: str) -> bool:
    """Fallback where hard links are unavailable: rename under an exclusive ``flock``."""
    import fcntl
    lock_path = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.path.exists(path):
            return False
        os.replace(tmp, path)
        return True
    finally:
        os.close(fd)         # closing releases the lock


def create_demo_database(path: str) -> bool:
    """Create the sample database at ``path`` if it does not exist; True if this call created it.

    Idempotent and safe when several gunicorn workers start at once: the
    database is built completely in a temporary file in the same directory and
    then hard-linked to ``path`` (``os.link`` refuses an existing name, so
    exactly one racing process wins and the others discard their copy); no
    process ever sees a half-built file.  Parent directories are created.  On
    filesystems without hard links the rename happens under an ``flock``.

    An existing file at ``path`` (even an empty one) is never touched: call this
    before anything opens the path with ``sqlite3.connect``, which would create
    an empty file.
    """
    if not path or path == ":memory:" or path.startswith("file:"):
        raise ValueError(f"the demo database needs a file path, got {path!r}")
    path = os.path.abspath(path)
    if os.path.exists(path):
        return False
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        _build_file(tmp)
        try:
            os.link(tmp, path)
            created = True
        except FileExistsError:
            created = False
        except OSError:
            created = _place_with_lock(tmp, path)
        if created:
            try:
                dfd = os.open(directory, os.O_RDONLY)
            except OSError:
                pass
            else:
                try:
                    os.fsync(dfd)
                except OSError:
                    pass
                finally:
                    os.close(dfd)
        return created
    finally:
        for leftover in (tmp, tmp + "-wal", tmp + "-shm", tmp + "-journal"):
            try:
                os.unlink(leftover)
            except FileNotFoundError:
                pass
