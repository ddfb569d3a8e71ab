"""One round trip per read on PostgreSQL and MySQL/MariaDB, and the read-only guard that allows it.

Connections are opened read-only by default (PostgreSQL ``default_transaction_read_only``,
MySQL ``tx_read_only``), so a single-statement read runs in autocommit: no BEGIN READ
ONLY, no COMMIT.  Writes and routine calls open ``BEGIN READ WRITE`` explicitly; user
code that flips the session default is caught (PostgreSQL reports the setting) or
undone (MySQL: restored after every write transaction).

The statements are observed on the wire by ``WireProxy`` between the real driver and
the real server (tests/wire_proxy.py): nothing is mocked.
"""
from __future__ import annotations

import urllib.parse

import pytest

from conftest import McpTestClient, make_settings
from dialect_fixtures import _mysql_db, _pg_db
from mcp_flask import close_app, create_app
from mcp_flask.errors import DatabaseError
from wire_proxy import WireProxy

TEN_ROWS = {"tableName": "books", "filter": "id > 0 and id < 1000", "order": "id", "limit": 10}


@pytest.fixture(scope="module", params=["postgresql", "mysql"])
def served(request, tmp_path_factory):
    """(kind, client, database, proxy, test db): a service whose connections go through a WireProxy."""
    db = _pg_db() if request.param == "postgresql" else _mysql_db()
    db.load()
    parts = urllib.parse.urlsplit(db.url)
    proxy = WireProxy(request.param, parts.hostname or "127.0.0.1", parts.port or
                      (5432 if request.param == "postgresql" else 3306))
    netloc = parts.netloc.rsplit("@", 1)
    host_port = f"127.0.0.1:{proxy.port}"
    netloc = f"{netloc[0]}@{host_port}" if len(netloc) == 2 else host_port
    url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    app = create_app(make_settings({"db": {"url": url, "pool_size": 2}},
                                   data_dir=str(tmp_path_factory.mktemp("rt"))), check_databases=False)
    client = McpTestClient(app, service="db")
    client.initialize()
    client.data("get_tables")                       # the catalog is read (and cached) before we count
    database = app.extensions["mcp_flask"]["services"]["db"].database
    try:
        yield request.param, client, database, proxy, db
    finally:
        close_app(app)
        proxy.close()
        db.close()


def test_a_ten_row_read_is_one_statement_on_the_wire(served):
    kind, client, _db, proxy, _ = served
    # Warm: connection opened, session set up; on PostgreSQL the second run of the same
    # SQL also PREPAREs it (prepared_statements), and later runs EXECUTE it.
    for _ in range(2):
        client.data("get_table_data", TEN_ROWS)
    proxy.take()
    verb = "EXECUTE" if kind == "postgresql" else "SELECT"
    for _ in range(3):
        data = client.data("get_table_data", TEN_ROWS)
        assert data["resource"] and data["meta"]["returned"] == len(data["resource"])
        sent = proxy.take()
        assert len(sent) == 1 and sent[0].upper().startswith(verb), sent


def test_count_only_is_one_statement_and_include_count_keeps_one_snapshot(served):
    kind, client, _db, proxy, _ = served
    client.data("get_table_data", TEN_ROWS)
    proxy.take()
    assert client.data("get_table_data", {"tableName": "books", "countOnly": True})["meta"]["count"] > 0
    sent = proxy.take()
    assert len(sent) == 1 and "COUNT" in sent[0].upper(), sent
    client.data("get_table_data", {"tableName": "books", "limit": 1, "includeCount": True})
    sent = [s.upper() for s in proxy.take()]
    # The page and its count in one read-only transaction (the same snapshot).
    assert sent[0] in ("BEGIN READ ONLY", "START TRANSACTION READ ONLY") and sent[-1] == "COMMIT", sent
    assert len(sent) == 4, sent


def test_writes_open_read_write_transactions_and_mysql_restores_the_session(served):
    kind, client, _db, proxy, _ = served
    client.data("get_table_data", TEN_ROWS)
    proxy.take()
    result = client.call("create_records", {"tableName": "tags", "records": [{"id": 9001, "name": "wire-9001"}]})
    assert not result.get("isError"), result
    sent = [s.upper() for s in proxy.take()]
    assert sent[0] in ("BEGIN READ WRITE", "START TRANSACTION READ WRITE"), sent
    assert "COMMIT" in sent
    if kind == "mysql":
        assert sent[-1] == "SET SESSION TX_READ_ONLY = 1" or sent[-1].endswith("TRANSACTION_READ_ONLY = 1"), sent
    client.call("delete_records", {"tableName": "tags", "ids": [9001]})
    # Reads after a write are still one statement each (the session went back to read-only).
    proxy.take()
    client.data("get_table_data", TEN_ROWS)
    assert len(proxy.take()) == 1


def _flip_sql(kind: str) -> str:
    if kind == "postgresql":
        return "SELECT set_config('default_transaction_read_only', 'off', false)"
    return "SET SESSION tx_read_only = 0"


def test_user_code_that_flips_the_session_default_never_leaves_a_writable_connection(served):
    """What a routine or a trigger could do: turn the read-only default off for the session."""
    kind, _client, database, _proxy, _ = served
    dialect = database.dialect
    insert = "INSERT INTO tags (id, name) VALUES (9002, 'flip')"
    for _ in range(3):
        # The flip inside a write transaction (routine call / trigger): the connection is
        # restored (MySQL) or discarded (PostgreSQL reports the changed setting).
        with database.transaction() as conn:
            dialect.query(conn, _flip_sql(kind)) if kind == "postgresql" else dialect.execute(conn, _flip_sql(kind))
        with pytest.raises(DatabaseError) as info:
            database.read(lambda conn: dialect.execute(conn, insert))
        assert info.value.kind == "read_only"
    if kind == "postgresql":
        # PostgreSQL even notices a flip inside an autocommit read: that connection is dropped.
        before = database.pool.stats()["open"]
        database.read(lambda conn: dialect.query(conn, _flip_sql(kind)))
        assert database.pool.stats()["open"] == before - 1
        with pytest.raises(DatabaseError) as info:
            database.read(lambda conn: dialect.execute(conn, insert))
        assert info.value.kind == "read_only"
    with database.transaction() as conn:           # nothing was written by any attempt
        assert dialect.query(conn, "SELECT COUNT(*) FROM tags WHERE id = 9002")[1][0][0] == 0
