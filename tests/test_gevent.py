"""Slow databases never stall a gevent worker: real gunicorn, one worker, real PostgreSQL and MySQL.

* psycopg2 is cooperative (psycogreen, installed by gunicorn_conf.post_worker_init)
  and pymysql runs over gevent's patched sockets: with a ``pg_sleep(2)`` /
  ``SLEEP(2)`` call in flight, other calls to the same worker answer in
  milliseconds;
* a per-service statement timeout turns a runaway call into an ``isError`` result;
* connect timeouts: a refused port and a server that accepts TCP but never
  speaks both give a Connection Error in seconds, and the worker keeps serving
  other calls meanwhile.
"""
from __future__ import annotations

import os
import socket
import statistics
import threading
import time

import pytest

from conftest import LiveServer
from routine_fixtures import LiveMcp, mysql_routines_db, pg_routines_db, service_toml, wait_until  # noqa: F401

pytestmark = [pytest.mark.gunicorn, pytest.mark.slow]

#: A call in the same worker while a 2 s query runs must answer well within this.
FAST_S = 0.5


@pytest.fixture(scope="module")
def silent_port():
    """A loopback port whose listener completes TCP handshakes but never answers (a hung server)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture(scope="module")
def server(pg_routines_db, mysql_routines_db, silent_port, tmp_path_factory):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()                              # nothing listens there any more
    config = (service_toml("pg", pg_routines_db.url, statement_timeout=10)
              + service_toml("my", mysql_routines_db.url, statement_timeout=10)
              + service_toml("pg_short", pg_routines_db.url, statement_timeout=1)
              + service_toml("my_short", mysql_routines_db.url, statement_timeout=1)
              + service_toml("pg_refused", f"postgresql://postgres@127.0.0.1:{refused_port}/x", connect_timeout=1)
              + service_toml("pg_silent", f"postgresql://postgres@127.0.0.1:{silent_port}/x", connect_timeout=1)
              + service_toml("my_silent", f"mysql://root@127.0.0.1:{silent_port}/x", connect_timeout=1))
    srv = LiveServer(config, str(tmp_path_factory.mktemp("gevent")), workers=1)
    yield srv
    srv.stop()


def in_flight(db, marker: str) -> bool:
    """Whether a statement containing ``marker`` is running in the database right now."""
    if db.kind == "postgresql":
        rows = db.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
                      "AND query LIKE %s AND pid <> pg_backend_pid()", (db.name, f"%{marker}%"))
    else:
        rows = db.sql("SELECT count(*) FROM information_schema.PROCESSLIST WHERE db = %s AND info LIKE %s "
                      "AND id <> CONNECTION_ID()", (db.name, f"%{marker}%"))
    return rows[0][0] > 0


def test_the_worker_patched_psycopg2(server):
    assert "psycogreen is not installed" not in server.output()
    import psycogreen.gevent  # noqa: F401 - the dependency the worker hook needs


@pytest.mark.parametrize("service, fixture", [("pg", "pg_routines_db"), ("my", "mysql_routines_db")])
def test_a_slow_call_does_not_stall_the_worker(server, service, fixture, request):
    db = request.getfixturevalue(fixture)
    slow_client = LiveMcp(server.url(service))
    fast_client = LiveMcp(server.url(service))
    # Warm-up: two connections in the pool (opening one is not what is measured here).
    warm = threading.Thread(target=slow_client.data,
                            args=("call_stored_function", {"functionName": "slow", "parameters": [0.5]}))
    warm.start()
    wait_until(lambda: in_flight(db, "slow"), 10, "the warm-up call to reach the database")
    fast_client.data("call_stored_function", {"functionName": "add_ints", "parameters": [1, 2]})
    warm.join(30)
    done: dict = {}

    def slow():
        started = time.monotonic()
        done["result"] = slow_client.data("call_stored_function", {"functionName": "slow", "parameters": [2]})
        done["elapsed"] = time.monotonic() - started
    t = threading.Thread(target=slow)
    t.start()
    try:
        wait_until(lambda: in_flight(db, "slow"), 10, "the slow call to reach the database")
        latencies = []
        while "result" not in done and len(latencies) < 20:
            started = time.monotonic()
            got = fast_client.data("call_stored_function", {"functionName": "add_ints", "parameters": [2, 3]})
            latencies.append(time.monotonic() - started)
            assert got == {"value": 5}
            tables = fast_client.data("get_tables")
            assert [t["name"] for t in tables["resource"]] == ["items"]
        still_running = "result" not in done
    finally:
        t.join(30)
    assert still_running, "the slow call finished before the fast calls: nothing was measured"
    assert done["result"] == {"value": 0} and done["elapsed"] >= 1.9
    assert max(latencies) < FAST_S, latencies
    print(f"\n{service}: {len(latencies)} calls during a 2 s sleep, median "
          f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")


@pytest.mark.parametrize("service", ["pg_short", "my_short"])
def test_statement_timeout_ends_a_runaway_call(server, service):
    c = LiveMcp(server.url(service))
    started = time.monotonic()
    result = c.call("call_stored_function", {"functionName": "slow", "parameters": [30]})
    elapsed = time.monotonic() - started
    assert result["isError"] is True
    text = result["content"][0]["text"]
    assert text.startswith(("Timeout Error:", "Connection Error:")), text
    # PostgreSQL and MariaDB stop it at the 1 s statement timeout; MySQL 8 (whose
    # max_execution_time skips stored functions) at the client read timeout (+5 s).
    assert elapsed < 1 + 5 + 3, elapsed
    assert c.data("call_stored_function", {"functionName": "add_ints", "parameters": [1, 1]}) == {"value": 2}


@pytest.mark.parametrize("service", ["pg_refused", "pg_silent", "my_silent"])
def test_unreachable_databases_fail_in_seconds_without_hanging_the_worker(server, service):
    c = LiveMcp(server.url(service))
    other = LiveMcp(server.url("pg"))
    result: dict = {}

    def call():
        started = time.monotonic()
        result["r"] = c.call("get_tables")
        result["elapsed"] = time.monotonic() - started
    t = threading.Thread(target=call)
    t.start()
    # While the connect attempt waits, the same worker answers other services.
    answered = 0
    while t.is_alive() and answered < 5:
        started = time.monotonic()
        assert other.data("call_stored_function", {"functionName": "add_ints", "parameters": [1, 1]}) == {"value": 2}
        assert time.monotonic() - started < FAST_S
        answered += 1
    t.join(30)
    r = result["r"]
    assert r["isError"] is True and r["content"][0]["text"].startswith("Connection Error:"), r
    assert result["elapsed"] < 5, result["elapsed"]


def test_pool_is_whole_after_the_slow_calls(server):
    """Every service's pool has no connection left checked out (nothing leaked)."""
    import httpx
    body = httpx.get(server.base + "/readyz", timeout=30).json()
    for name in ("pg", "my", "pg_short", "my_short"):
        assert body["services"][name]["ok"] is True, body["services"][name]
        assert body["services"][name]["pool"]["in_use"] == 0, body["services"][name]


PATCH_CHECK = r"""
import sys, time
from gevent import monkey
monkey.patch_all()
import gevent
import psycopg2, psycopg2.extensions as ext, pymysql
assert ext.get_wait_callback() is None
from mcp_flask import gunicorn_conf

class Worker:
    class log:
        @staticmethod
        def warning(*args):
            print("WARN", *args)

gunicorn_conf.post_worker_init(Worker())
print("callback", ext.get_wait_callback().__module__)
pg_url, my = sys.argv[1], sys.argv[2:]
ticks = []

def ticker():
    while True:
        ticks.append(time.monotonic())
        gevent.sleep(0.01)

def pg_sleep():
    conn = psycopg2.connect(pg_url, connect_timeout=5)
    conn.cursor().execute("SELECT pg_sleep(1)")
    conn.close()

def my_sleep():
    conn = pymysql.connect(host=my[0], port=int(my[1]), user=my[2], password=my[3], connect_timeout=5)
    conn.cursor().execute("SELECT SLEEP(1)")
    conn.close()

for name, fn in (("pg", pg_sleep), ("my", my_sleep)):
    t = gevent.spawn(ticker)
    gevent.sleep(0)
    ticks.clear()
    fn()
    t.kill()
    print(name, "ticks", len(ticks))
"""


def test_post_worker_init_makes_both_drivers_cooperative(pg_routines_db, tmp_path):
    """In a gevent-patched process, the worker hook installs psycogreen; a 1 s query in one
    greenlet leaves the others running (a 10 ms ticker keeps ticking) for both drivers."""
    import subprocess
    import sys
    from routine_fixtures import mysql_server
    srv = mysql_server()
    script = tmp_path / "patch_check.py"
    script.write_text(PATCH_CHECK)
    out = subprocess.run([sys.executable, str(script), pg_routines_db.url, srv["host"], str(srv["port"]),
                          srv["user"], srv["password"]], capture_output=True, text=True, timeout=60,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert lines["callback"] == "psycogreen.gevent" and "WARN" not in lines
    # ~100 ticks in a second when nothing blocks; a blocking driver would allow one or two.
    assert int(lines["pg"].split()[1]) > 30, out.stdout
    assert int(lines["my"].split()[1]) > 30, out.stdout


def test_an_abandoned_sse_call_gives_its_connection_back(server, pg_routines_db):
    """A client that reads the first event of a streamed call and hangs up: the call's
    connection is back in the pool once the statement ends (nothing leaks)."""
    import json

    import httpx
    c = LiveMcp(server.url("pg"))
    msg = {"jsonrpc": "2.0", "id": 99, "method": "tools/call",
           "params": {"name": "call_stored_function", "_meta": {"progressToken": "abandon"},
                      "arguments": {"functionName": "slow", "parameters": [1]}}}
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "Mcp-Session-Id": c.sid, "MCP-Protocol-Version": c.version}
    with httpx.Client(timeout=30) as h:
        with h.stream("POST", server.url("pg"), content=json.dumps(msg), headers=headers) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            wait_until(lambda: in_flight(pg_routines_db, "slow"), 10, "the streamed call to start")
            next(r.iter_raw())                                   # then hang up mid-stream

    def pool_idle():
        body = httpx.get(server.base + "/readyz", timeout=30).json()["services"]["pg"]
        return body["pool"]["in_use"] == 0 and not in_flight(pg_routines_db, "slow")
    wait_until(pool_idle, 10, "the abandoned call's connection to return", interval=0.1)
    assert c.data("call_stored_function", {"functionName": "add_ints", "parameters": [1, 2]}) == {"value": 3}
