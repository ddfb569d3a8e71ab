"""The floor: the raw driver running the benchmark's queries in-process, no HTTP, no MCP.

Three encodings per query, as in shared/reference/peers.md §5a:

* ``raw``: ``cursor.execute`` + ``fetchall`` (tuples);
* ``json``: the same, then rows -> dicts -> ``json.dumps`` (the naive server);
* ``orjson``: rows -> dicts -> ``orjson.dumps`` (what our encoder uses).

Concurrency is threads, one connection each (psycopg2 and sqlite3 release the
GIL while they wait; PyMySQL is pure Python), measured for a fixed duration.
Each measurement returns the same shape as a load-generator run:
``{"calls_s", "p50_ms", "p99_ms", "errors", "calls"}``.
"""
from __future__ import annotations

import json
import sqlite3
import statistics
import threading
import time

import orjson

from . import seed

COLUMNS = ("id", "name", "qty", "price", "created_at", "category_id")
_SELECT = "SELECT id, name, qty, price, created_at, category_id FROM bench_items"


def small_query(dialect: str, start_id: int) -> tuple[str, tuple]:
    """The 10-row query the server runs for the load test: filter on the key and qty, order by id."""
    mark = "?" if dialect == "sqlite" else "%s"
    return (f"{_SELECT} WHERE id > {mark} AND qty >= {mark} ORDER BY id LIMIT 10", (start_id, 0))


def large_query(dialect: str, rows: int) -> tuple[str, tuple]:
    mark = "?" if dialect == "sqlite" else "%s"
    return f"{_SELECT} ORDER BY id LIMIT {mark}", (rows,)


def connect(dialect: str, sqlite_file: str | None = None):
    """A plain driver connection to the benchmark database (autocommit, as a pool would hold it)."""
    if dialect == "postgresql":
        import psycopg2
        conn = psycopg2.connect(**seed.pg_dsn())
        conn.autocommit = True
        return conn
    if dialect == "mysql":
        import pymysql
        return pymysql.connect(**seed.my_params(), autocommit=True)
    return sqlite3.connect(sqlite_file, check_same_thread=False)


def _encode_json(rows) -> bytes:
    return json.dumps([dict(zip(COLUMNS, r)) for r in rows], default=str).encode()


def _encode_orjson(rows) -> bytes:
    return orjson.dumps([dict(zip(COLUMNS, r)) for r in rows], default=str)


ENCODERS = {"raw": None, "json": _encode_json, "orjson": _encode_orjson}


def run_once(conn, sql: str, params: tuple, encode=None):
    cur = conn.cursor()
    cur.execute(sql, params)
    rows = cur.fetchall()
    cur.close()
    out = encode(rows) if encode else rows
    return len(rows), out


def throughput(dialect: str, sql: str, params: tuple, clients: int, seconds: float,
               encoding: str = "raw", sqlite_file: str | None = None) -> dict:
    """Calls/s and latency of ``clients`` threads running the query for ``seconds``."""
    encode = ENCODERS[encoding]
    conns = [connect(dialect, sqlite_file) for _ in range(clients)]
    for c in conns:  # warm up: plans, caches, first-use costs
        run_once(c, sql, params, encode)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start_gate = threading.Event()
    deadline = [0.0]

    def worker(i):
        conn, lat = conns[i], latencies[i]
        clock = time.perf_counter
        start_gate.wait()
        end = deadline[0]
        while True:
            t0 = clock()
            if t0 >= end:
                return
            try:
                n, _ = run_once(conn, sql, params, encode)
                if n == 0:
                    errors[i] += 1
            except Exception:  # noqa: BLE001 - count, keep measuring
                errors[i] += 1
            lat.append(clock() - t0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    deadline[0] = began + seconds
    start_gate.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    for c in conns:
        c.close()
    return summarize([x for lat in latencies for x in lat], elapsed, sum(errors))


def summarize(latencies_s: list[float], elapsed: float, errors: int) -> dict:
    lat = sorted(latencies_s)
    n = len(lat)
    if not n:
        return {"calls": 0, "calls_s": 0.0, "p50_ms": None, "p99_ms": None, "errors": errors}
    return {"calls": n, "calls_s": n / elapsed, "p50_ms": lat[n // 2] * 1000,
            "p99_ms": lat[min(n - 1, int(n * 0.99))] * 1000, "errors": errors}


def fetch_times(dialect: str, rows: int, repeats: int = 3, sqlite_file: str | None = None) -> dict:
    """Median seconds to fetch ``rows`` rows: raw, + json.dumps, + orjson (one warm connection)."""
    sql, params = large_query(dialect, rows)
    conn = connect(dialect, sqlite_file)
    out = {}
    try:
        run_once(conn, sql, params)
        for name, enc in ENCODERS.items():
            times = []
            size = 0
            for _ in range(repeats):
                t0 = time.perf_counter()
                n, body = run_once(conn, sql, params, enc)
                times.append(time.perf_counter() - t0)
                if n != rows:
                    raise RuntimeError(f"floor fetched {n} rows, expected {rows}")
                size = len(body) if enc else 0
            out[name] = {"ms": statistics.median(times) * 1000, "all_ms": [t * 1000 for t in times],
                         "bytes": size}
    finally:
        conn.close()
    return out
