"""PostgreSQL values read straight into JSON come as text, and the answer's bytes do not change.

``pg_json_values.json_cursor`` makes psycopg2 hand NUMERIC, timestamp, timestamptz,
date and time values to the encoder as strings where the string is exactly what the
encoder would have written for psycopg2's ``Decimal`` / ``datetime`` / ``date`` /
``time``.  These tests read the same values, generated and edge cases, through a
plain cursor and through ``json_cursor`` on a real server (several session time
zones) and require the same JSON bytes, or the same error, for every one; they also
require that the common shapes really take the text path, and that
``get_table_data`` (small pages and streamed ones) answers with the very bytes of the
plain read while related records still match their keys.
"""
from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal

import pytest

from conftest import McpTestClient, make_settings
from dialect_fixtures import create_pg_database
from mcp_flask import close_app, create_app, encoding
from mcp_flask.dialects.pg_json_values import json_cursor
from mcp_flask.tools import record_reads

psycopg2 = pytest.importorskip("psycopg2")

NUMERICS = ["0", "0.01", "-0.01", "1", "-1", "100", "1.10", "12345678901234567890.123456789",
            "0.000001", "-0.000001", "0.0000001", "-0.0000001", "0.0000000", "0.000000", "0.00000010",
            "0.00000100", "1E-7", "123E+5", "NaN", "Infinity", "-Infinity", "0.1000000",
            "1e-20", "-0.000000000000000000000000000001", "99999999999999999999999999999999999999"]
TIMESTAMPS = ["2024-01-06 18:53:21", "2024-01-06 18:53:21.5", "2024-01-06 18:53:21.000001",
              "2024-01-06 18:53:21.123456", "2024-01-06 18:53:21.10", "0044-03-15 00:00:00", "0001-01-01 00:00:00",
              "9999-12-31 23:59:59.999999", "infinity", "-infinity", "2024-02-29 00:00:00", "1999-12-31 23:59:60"]
DATES = ["2024-01-06", "0001-01-01", "9999-12-31", "infinity", "-infinity", "0044-03-15"]
TIMES = ["00:00:00", "18:53:21", "23:59:59.999999", "12:00:00.5", "24:00:00"]
ZONES = ["UTC", "Asia/Kolkata", "America/St_Johns", "Europe/Amsterdam", "Pacific/Chatham", "America/Los_Angeles"]
TIMESTAMPTZ = ["2024-01-06 18:53:21+00", "2024-07-06 18:53:21.25+02", "1850-06-01 12:00:00+00",
               "1900-01-01 00:00:00+00", "infinity", "-infinity", "2024-03-10 10:30:00-05"]


def _random_values(seed: int = 8):
    """Generated values of every type: numerics of many scales and signs, and timestamps
    with every fraction length."""
    rnd = random.Random(seed)
    nums = []
    for _ in range(400):
        digits = "".join(rnd.choice("0123456789") for _ in range(rnd.randint(1, 30)))
        scale = rnd.randint(0, 40)
        text = digits if scale == 0 else (digits[:-scale] or "0") + "." + digits[-scale:].rjust(scale, "0")
        nums.append(("-" if rnd.random() < 0.3 else "") + text)
    stamps = []
    for _ in range(300):
        d = dt.datetime(1, 1, 1) + dt.timedelta(seconds=rnd.randint(0, 315_000_000_000))
        micro = rnd.choice([0, 0, rnd.randint(0, 999_999), rnd.randint(0, 9) * 100_000, 10, 500_000])
        stamps.append((d + dt.timedelta(microseconds=micro)).isoformat(" "))
    return nums, stamps


@pytest.fixture(scope="module")
def conn():
    url, _name, connect, drop = create_pg_database("mcpf_jv_")
    c = connect()
    try:
        yield c
    finally:
        c.close()
        drop()


def _outcome(cur, sql: str, value: str):
    """The JSON bytes of the value read through ``cur``, or the error's type."""
    try:
        cur.execute(sql, (value,))
        return encoding.dumps(cur.fetchall())
    except psycopg2.Error as exc:
        return type(exc).__name__
    except (ValueError, OverflowError) as exc:       # psycopg2's own casters (year 0, 10000)
        return type(exc).__name__


def _same_json(conn, pg_type: str, values, zones=("UTC",)) -> int:
    plain, fast = conn.cursor(), json_cursor(conn)
    checked = 0
    for zone in zones:
        plain.execute("SET TimeZone = %s", (zone,))
        for value in values:
            sql = f"SELECT %s::{pg_type}, NULL::{pg_type}"
            want = _outcome(plain, sql, value)
            got = _outcome(fast, sql, value)
            assert got == want, (pg_type, zone, value, want, got)
            checked += 1
    return checked


def test_numeric_text_is_exactly_what_the_decimal_encodes_to(conn):
    nums, _ = _random_values()
    assert _same_json(conn, "numeric", NUMERICS + nums) == len(NUMERICS) + len(nums)


def test_timestamp_text_is_exactly_what_the_datetime_encodes_to(conn):
    _, stamps = _random_values()
    _same_json(conn, "timestamp", TIMESTAMPS + stamps)
    _same_json(conn, "timestamp(0)", TIMESTAMPS[:4])
    _same_json(conn, "timestamp(3)", TIMESTAMPS + stamps[:50])


def test_timestamptz_text_in_every_session_time_zone(conn):
    _, stamps = _random_values()
    _same_json(conn, "timestamptz", TIMESTAMPTZ + [s + "+00" for s in stamps[:60]], zones=ZONES)


def test_dates_and_times(conn):
    _same_json(conn, "date", DATES)
    _same_json(conn, "time", TIMES)


def test_common_shapes_take_the_text_path(conn):
    """The point of the module: no Decimal or datetime is built for the usual values."""
    cur = json_cursor(conn)
    cur.execute("SET TimeZone = 'UTC'")
    cur.execute("SELECT 12.50::numeric, '2024-01-06 18:53:21'::timestamp, '2024-01-06 18:53:21.5'::timestamp, "
                "'2024-01-06 18:53:21+00'::timestamptz, '2024-01-06'::date, '18:53:21'::time, "
                "0.0000001::numeric, 'infinity'::timestamp")
    row = cur.fetchone()
    assert row[:6] == ("12.50", "2024-01-06T18:53:21", "2024-01-06T18:53:21.500000",
                       "2024-01-06T18:53:21+00:00", "2024-01-06", "18:53:21")
    assert row[6] == Decimal("1E-7") and row[7] == dt.datetime.max     # psycopg2's own casters
    plain = conn.cursor()
    plain.execute("SELECT 12.50::numeric")
    assert plain.fetchone() == (Decimal("12.50"),)                     # other cursors: untouched


# ---------------------------------------------------------------- through the tool
@pytest.fixture(scope="module")
def typed_db():
    url, _name, connect, drop = create_pg_database("mcpf_jvt_")
    c = connect()
    with c.cursor() as cur:
        cur.execute("CREATE TABLE kinds (id numeric(12,2) PRIMARY KEY, label text)")
        cur.execute("INSERT INTO kinds VALUES (1.50, 'a'), (2.25, 'b'), (0.00, 'zero')")
        cur.execute("""CREATE TABLE vals (
            id integer PRIMARY KEY, amount numeric, stamp timestamp, stamptz timestamptz, day date,
            at time, kind_id numeric(12,2) REFERENCES kinds (id))""")
        cur.execute("""INSERT INTO vals
            SELECT i, CASE i % 5 WHEN 0 THEN 0.0000001 * i WHEN 1 THEN NULL ELSE i / 7.0 END,
                   timestamp '2024-01-01' + i * interval '1 second' + (i % 3) * interval '0.25 second',
                   CASE WHEN i % 11 = 0 THEN 'infinity'::timestamptz
                        ELSE timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute' END,
                   date '2024-01-01' + i, time '00:00:00' + i * interval '7 seconds',
                   CASE i % 3 WHEN 0 THEN 1.50 WHEN 1 THEN 2.25 ELSE 0.00 END
            FROM generate_series(1, 6000) i""")
    c.close()
    try:
        yield url, connect
    finally:
        drop()


def _plain_page(connect, sql: str):
    c = connect()
    try:
        with c.cursor() as cur:
            cur.execute(sql)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        c.close()


@pytest.mark.parametrize("limit", [10, 6000])
def test_get_table_data_answers_with_the_bytes_of_the_plain_read(typed_db, tmp_path, limit, monkeypatch):
    url, connect = typed_db
    if limit > 10:
        monkeypatch.setattr(record_reads, "STREAM_ABOVE", 100)   # the streamed path, batch by batch
    app = create_app(make_settings({"db": {"url": url, "max_rows": 10000}}, data_dir=str(tmp_path)),
                     check_databases=False)
    try:
        client = McpTestClient(app, service="db")
        client.initialize()
        for _ in range(3):          # plain, then counted, then prepared (EXECUTE on the kept cursor)
            got = client.data("get_table_data", {"tableName": "vals", "order": "id", "limit": limit})
        want = _plain_page(connect, f"SELECT * FROM vals ORDER BY id LIMIT {limit}")
        assert encoding.dumps(got["resource"]) == encoding.dumps(want)
        # Related records match their NUMERIC keys: those rows keep psycopg2's Decimal values.
        rel = client.data("get_table_data", {"tableName": "vals", "order": "id", "limit": 3,
                                             "related": "*"})
        assert [r["kinds_by_kind_id"]["label"] for r in rel["resource"]] == ["b", "zero", "a"]
    finally:
        close_app(app)


def test_query_keeps_text_and_python_values_apart_on_one_connection(typed_db, tmp_path):
    """``Dialect.query(for_json=True)`` reads text, plain and prepared alike, and a later plain
    read on the same pooled connection (whose kept cursor is another) gets Python values."""
    url, _connect = typed_db
    app = create_app(make_settings({"db": {"url": url, "pool_size": 1}}, data_dir=str(tmp_path)),
                     check_databases=False)
    try:
        db = app.extensions["mcp_flask"]["services"]["db"].database
        sql = "SELECT amount, stamp FROM vals WHERE id = %s"

        def read(for_json):
            return db.read(lambda conn: db.dialect.query(conn, sql, (2,), for_json)[1][0])
        for _ in range(3):                      # plain SQL, then PREPARE, then EXECUTE
            assert read(True) == ("0.28571428571428571429", "2024-01-01T00:00:02.500000")
            assert read(False) == (Decimal("0.28571428571428571429"), dt.datetime(2024, 1, 1, 0, 0, 2, 500000))
        streamed = db.read(lambda conn: list(db.dialect.stream(conn, sql, (2,), for_json=True)))
        assert streamed[0][1] == [("0.28571428571428571429", "2024-01-01T00:00:02.500000")]
    finally:
        close_app(app)
