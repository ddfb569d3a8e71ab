"""Cancellation parity on PostgreSQL and MariaDB/MySQL: ``notifications/cancelled`` stops
the statement in the server (PostgreSQL cancel request, MySQL ``KILL QUERY``).

The probe tool (``fixture_service.ProbeProvider``) runs ``pg_sleep(120)`` /
``SLEEP(120)`` inside the call's scope; after the cancel the statement must be
gone from the server's process list within a second, no response is sent for
the request, and the pooled connection is reused healthy.  Skipped when the
database is not reachable (unless MCP_FLASK_REQUIRE_DBS=1).  Each test works in
the server's existing test database and creates nothing.
"""
from __future__ import annotations

import json
import os
import threading
import time

import pytest

from conftest import McpTestClient, make_settings
from fixture_service import ProbeProvider
from test_protocol_features import wait_for

PG_URL = os.environ.get("MCP_FLASK_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("MCP_FLASK_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
REQUIRE = os.environ.get("MCP_FLASK_REQUIRE_DBS") == "1"


def running_probes(url: str) -> int:
    """How many probe statements the server is running right now (its process list)."""
    if url.startswith("postgresql"):
        import psycopg2
        conn = psycopg2.connect(url.replace("postgresql://", "postgres://"), connect_timeout=3)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
                            ("%mcp-flask-probe%pg_sleep%",))
                return cur.fetchone()[0]
        finally:
            conn.close()
    import pymysql
    from urllib.parse import urlsplit
    u = urlsplit(url)
    conn = pymysql.connect(host=u.hostname, port=u.port or 3306, user=u.username or "root",
                           password=u.password or "", database=u.path.lstrip("/"), connect_timeout=3)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM information_schema.processlist "
                        "WHERE info LIKE %s AND id <> CONNECTION_ID()", ("%mcp-flask-probe%SLEEP%",))
            return cur.fetchone()[0]
    finally:
        conn.close()


@pytest.fixture(params=[pytest.param(PG_URL, marks=pytest.mark.postgresql, id="postgresql"),
                        pytest.param(MYSQL_URL, marks=pytest.mark.mysql, id="mysql")])
def server_app(request, tmp_path):
    url = request.param
    try:
        running_probes(url)
    except Exception as exc:  # noqa: BLE001 - unreachable database: skip unless required
        if REQUIRE:
            raise
        pytest.skip(f"{url.split('://')[0]} not reachable: {type(exc).__name__}")
    from mcp_flask import create_app
    app = create_app(make_settings({"db": {"url": url, "statement_timeout": 150, "pool_size": 2}},
                                   data_dir=str(tmp_path)),
                     check_databases=False, providers={"db": [ProbeProvider()]})
    yield app, url
    app.extensions["mcp_flask"]["services"]["db"].database.close()


def test_cancel_stops_the_statement_in_the_server(server_app):
    app, url = server_app
    store = app.extensions["mcp_flask"]["store"]
    database = app.extensions["mcp_flask"]["services"]["db"].database
    c = McpTestClient(app, service="db")
    c.initialize()
    out = {}

    def run():
        out["r"] = c.http.post(c.path, headers=c.headers(Accept="application/json"), data=json.dumps(
            {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
             "params": {"name": "probe_endless_query", "arguments": {}}}))
        out["done"] = time.monotonic()

    t = threading.Thread(target=run)
    t.start()
    scope = wait_for(lambda: store._calls.get((c.session_id, "int:7")), 10, "the call to start")
    wait_for(lambda: scope.running is not None and running_probes(url) == 1, 10, "the statement to run")
    cancelled_at = time.monotonic()
    assert c.post({"jsonrpc": "2.0", "method": "notifications/cancelled",
                   "params": {"requestId": 7}}).status_code == 202
    wait_for(lambda: running_probes(url) == 0, 1.0, "the statement to leave the process list")
    t.join(10)
    assert not t.is_alive() and out["done"] - cancelled_at < 1.5
    assert out["r"].status_code == 202 and out["r"].data == b""
    stats = database.pool.stats()
    assert stats["in_use"] == 0 and stats["open"] >= 1
    # The same pooled connection serves the next calls.
    for _ in range(3):
        assert c.data("get_tables")["resource"] is not None
