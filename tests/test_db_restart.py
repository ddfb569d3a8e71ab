"""A database that goes away and comes back is served again without restarting the server.

Real gunicorn (one gevent worker) throughout:

* every server session of the service killed (PostgreSQL ``pg_terminate_backend``,
  MySQL ``KILL CONNECTION``), idle and under load: the next calls open fresh
  connections by themselves;
* a throwaway PostgreSQL cluster (initdb + pg_ctl in a temp dir, on a free port)
  stopped mid-test: calls fail fast with a Connection Error, and succeed again
  within seconds of the cluster coming back.

The shared database servers are never stopped.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import LiveServer, free_port
from routine_fixtures import LiveMcp, routines_db, service_toml, wait_until  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.gunicorn, pytest.mark.slow]

REQUIRE = os.environ.get("MCP_FLASK_REQUIRE_DBS") == "1"


def kill_sessions(db) -> int:
    """Terminate every session on the service's database but the fixture's own; how many."""
    if db.kind == "postgresql":
        return len(db.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (db.name,)))
    ids = db.sql("SELECT id FROM information_schema.PROCESSLIST WHERE db = %s AND id <> CONNECTION_ID()",
                 (db.name,))
    for (tid,) in ids:
        try:
            db.sql(f"KILL CONNECTION {int(tid)}")
        except Exception:  # noqa: BLE001 - it may have ended by itself meanwhile
            pass
    return len(ids)


@pytest.fixture(scope="module")
def server(routines_db, tmp_path_factory):
    srv = LiveServer(service_toml("db", routines_db.url, pool_size=4, statement_timeout=10),
                     str(tmp_path_factory.mktemp("restart")), workers=1)
    yield srv
    srv.stop()


ADD = {"functionName": "add_ints", "parameters": [20, 22]}


def test_sessions_killed_while_idle_are_replaced_on_the_next_call(server, routines_db):
    clients = [LiveMcp(server.url("db")) for _ in range(3)]
    # Three connections opened and returned to the pool.
    threads = [threading.Thread(target=c.data, args=("call_stored_function",
                                                     {"functionName": "slow", "parameters": [0.3]}))
               for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert kill_sessions(routines_db) >= 1
    # Not one failed call: the dead idle connections are noticed, purged and replaced.
    for c in clients:
        assert c.data("call_stored_function", ADD) == {"value": 42}
        assert c.data("get_tables")["resource"][0]["name"] == "items"


def test_sessions_killed_under_load_recover_within_seconds(server, routines_db):
    stop = threading.Event()
    log: list[tuple[float, str]] = []      # (time, "ok" | error text)

    def load():
        c = LiveMcp(server.url("db"))
        while not stop.is_set():
            r = c.call("call_stored_function", {"functionName": "slow", "parameters": [0.05]})
            log.append((time.monotonic(), "ok" if not r["isError"] else r["content"][0]["text"]))
    workers = [threading.Thread(target=load) for _ in range(4)]
    for t in workers:
        t.start()
    try:
        wait_until(lambda: sum(1 for _, o in log if o == "ok") >= 8, 20, "the load to get going")
        killed_at = time.monotonic()
        assert kill_sessions(routines_db) >= 1
        wait_until(lambda: sum(1 for t, o in log if t > killed_at + 0.2 and o == "ok") >= 12, 10,
                   "calls to succeed again after the kill")
        kill_sessions(routines_db)                                    # and once more
        second = time.monotonic()
        wait_until(lambda: sum(1 for t, o in log if t > second + 0.2 and o == "ok") >= 12, 10,
                   "calls to succeed again after the second kill")
    finally:
        stop.set()
        for t in workers:
            t.join(30)
    errors = [o for _, o in log if o != "ok"]
    # A call whose statement was running at the kill fails cleanly; nothing else does.
    assert all(e.startswith(("Connection Error:", "Database Error:")) for e in errors), errors
    assert "Internal error" not in " ".join(errors)
    assert len(errors) <= 16, errors
    print(f"\n{routines_db.kind}: {len(log)} calls, {len(errors)} failed across two kills")


# ---------------------------------------------------------------------------- a cluster of our own
def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return os.path.dirname(found[-1])
    path = shutil.which("pg_ctl")
    return os.path.dirname(path) if path else None


class Cluster:
    """A private PostgreSQL cluster in ``root``, run as the postgres user when we are root."""

    def __init__(self, root: str):
        self.bin = _pg_bin()
        self.data = os.path.join(root, "data")
        self.port = free_port()
        self.log = os.path.join(root, "pg.log")
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(root, user="postgres")
        self.run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def run(self, tool: str, *args, timeout: float = 60):
        subprocess.run(self.as_user + [os.path.join(self.bin, tool), *args], check=True, timeout=timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> None:
        self.run("pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "30", "start", "-o",
                 f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off")

    def stop(self) -> None:
        self.run("pg_ctl", "-D", self.data, "-w", "-t", "30", "-m", "immediate", "stop")

    def sql(self, statement: str):
        import psycopg2
        conn = psycopg2.connect(self.url, connect_timeout=3)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()


@pytest.fixture
def cluster():
    if _pg_bin() is None:
        msg = "PostgreSQL server binaries (initdb, pg_ctl) are not installed"
        if REQUIRE:
            pytest.fail(msg)
        pytest.skip(msg)
    # Not under pytest's tmp dir: that is private to root, and the cluster runs as postgres.
    root = tempfile.mkdtemp(prefix="mcpf-cluster-")
    try:
        c = Cluster(root)
        c.start()
        yield c
        try:
            c.stop()
        except subprocess.CalledProcessError:
            pass                              # already stopped by the test
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_restarted_cluster_is_served_again_within_seconds(cluster, tmp_path_factory):
    cluster.sql("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
    cluster.sql("INSERT INTO notes (body) VALUES ('before the restart')")
    cluster.sql("CREATE FUNCTION add_ints(a integer, b integer) RETURNS integer LANGUAGE sql AS 'SELECT a + b'")
    srv = LiveServer(service_toml("db", cluster.url, connect_timeout=2, pool_size=3),
                     str(tmp_path_factory.mktemp("restart-cluster")), workers=1)
    try:
        c = LiveMcp(srv.url("db"))
        assert c.data("get_table_data", {"tableName": "notes"})["resource"] == [{"id": 1, "body": "before the restart"}]
        assert c.data("call_stored_function", ADD) == {"value": 42}

        cluster.stop()
        started = time.monotonic()
        err = c.error("get_table_data", {"tableName": "notes"})
        assert err.startswith("Connection Error:"), err
        assert time.monotonic() - started < 5
        err = c.error("call_stored_function", ADD)
        assert err.startswith("Connection Error:"), err

        cluster.start()
        back = time.monotonic()

        def served():
            r = c.call("get_table_data", {"tableName": "notes"})
            return not r["isError"]
        wait_until(served, 10, "the service to recover after the cluster restart", interval=0.1)
        recovered = time.monotonic() - back
        assert c.data("call_stored_function", ADD) == {"value": 42}
        c.data("create_records", {"tableName": "notes", "records": [{"body": "after"}]})
        assert [r["body"] for r in c.data("get_table_data", {"tableName": "notes"})["resource"]] == \
            ["before the restart", "after"]
        assert recovered < 5, recovered
        print(f"\nrecovered {recovered * 1000:.0f} ms after the cluster came back")
    finally:
        srv.stop()
