"""Large get_table_data results: streamed from the cursor, encoded batch by batch, written in pieces.

Above ``record_reads.STREAM_ABOVE`` rows a page is never held as Python objects:
each batch of the server-side cursor is encoded to JSON bytes and dropped, and
the response (JSON with its Content-Length, or one SSE ``data:`` line) is
written piece by piece.  These tests prove, on SQLite, PostgreSQL and MariaDB:

* the streamed response is byte for byte the eager encoding of the same rows
  (JSON and SSE), with awkward text (quotes, backslashes, tabs, non-ASCII) cut
  at odd offsets by the piecewise escaping;
* an error in the middle of the fetch is an ``isError`` tool result, and the
  pooled connection comes back;
* a client that went away stops the read between batches (``liveness``), and
  the connection goes back to the pool;
* an SSE result too large to keep for replay is replayed as a "call again" error;
* memory: a 100,000-row SQLite read peaks at about its encoded size (tracemalloc);
* through real gunicorn (PostgreSQL): Content-Length, JSON vs SSE bytes, and a
  client disconnecting mid-call frees its connection within a second.
"""
from __future__ import annotations

import io
import json
import socket
import sqlite3
import time
import tracemalloc
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from dialect_fixtures import create_pg_database, dialect_db  # noqa: F401 (fixtures)

from mcp_flask import encoding, liveness
from mcp_flask.tools import record_reads as rr

N = 12_000
COLUMNS = "id, label, amount, at, flag, raw, doc"
DDL = {
    "sqlite": ["CREATE TABLE big (id INTEGER PRIMARY KEY, label TEXT, amount NUMERIC(10,2), at DATETIME, "
               "flag BOOLEAN, raw BLOB, doc JSON)",
               "CREATE TABLE bad (id INTEGER PRIMARY KEY, label TEXT)"],
    "postgresql": ["CREATE TABLE big (id integer PRIMARY KEY, label text, amount numeric(10,2), at timestamp, "
                   "flag boolean, raw bytea, doc jsonb)",
                   # id is the only orderable column: the read is an index scan evaluated row by
                   # row, so the division by zero strikes in the middle of the stream.
                   "CREATE VIEW bad AS SELECT id, to_json(1 / (9000 - id)) AS j FROM big"],
    "mysql": ["CREATE TABLE big (id INT PRIMARY KEY, label VARCHAR(200), amount DECIMAL(10,2), at DATETIME, "
              "flag BOOLEAN, raw VARBINARY(16), doc JSON) DEFAULT CHARSET = utf8mb4",
              "CREATE FUNCTION boom(i INT) RETURNS INT DETERMINISTIC BEGIN "
              "IF i = 9000 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'boom at 9000'; END IF; "
              "RETURN i; END",
              "CREATE VIEW bad AS SELECT id, boom(id) AS x FROM big"],
}


def big_rows(n: int = N):
    """Deterministic rows exercising every encoding path (None, escapes, non-ASCII, bytes, JSON)."""
    for i in range(1, n + 1):
        if i % 10 == 0:
            label = None
        elif i % 3 == 0:
            label = f'row {i} "quoted" back\\slash\ttab naïve ✓ 日本 {i % 7}'
        else:
            label = f"row {i}"
        yield (i, label, str(Decimal(i % 100_000) / 100), f"2024-01-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:"
               f"{(i * 7) % 60:02d}", i % 2 == 0, bytes([i % 256, (i * 3) % 256]) if i % 5 == 0 else None,
               json.dumps({"i": i, "s": 'x"y\\z'}) if i % 4 == 0 else None)


def insert_rows(db, rows, table: str = "big", columns: str = COLUMNS) -> None:
    """Multi-row INSERTs of 500 rows through the test database's own connection."""
    rows = list(rows)
    width = columns.count(",") + 1
    one = "(" + ", ".join([db.mark] * width) + ")"
    for start in range(0, len(rows), 500):
        part = rows[start:start + 500]
        db.execute(f"INSERT INTO {table} ({columns}) VALUES " + ", ".join([one] * len(part)),
                   [v for row in part for v in row])


@pytest.fixture(scope="module")
def big_db(dialect_db):
    for stmt in DDL[dialect_db.kind]:
        dialect_db.execute(stmt)
    insert_rows(dialect_db, big_rows())
    if dialect_db.kind == "sqlite":
        # Text that is not UTF-8: sqlite3 fails on that row while fetching, mid-stream.
        insert_rows(dialect_db, [(i, f"ok {i}") for i in range(1, 9000)], "bad", "id, label")
        dialect_db.execute("INSERT INTO bad (id, label) VALUES (9000, CAST(x'ff' AS TEXT))")
        insert_rows(dialect_db, [(i, f"ok {i}") for i in range(9001, N + 1)], "bad", "id, label")
    return dialect_db


@pytest.fixture(scope="module")
def big_app(big_db, tmp_path_factory):
    from conftest import make_settings

    from mcp_flask import close_app, create_app
    app = create_app(make_settings({"db": {"url": big_db.url, "max_rows": 50_000}},
                                   data_dir=str(tmp_path_factory.mktemp("streamed"))), check_databases=False)
    yield app
    close_app(app)


@pytest.fixture
def client(big_app):
    from conftest import McpTestClient
    c = McpTestClient(big_app, service="db")
    c.initialize()
    return c


@pytest.fixture
def small_pieces(monkeypatch):
    """Many small batches, encode slices and escape slices (cutting UTF-8 sequences), so every
    seam of the piecewise encoding is crossed many times."""
    monkeypatch.setattr(rr, "FIRST_BATCH", 257)
    monkeypatch.setattr(rr, "ENCODE_ROWS", 333)
    monkeypatch.setattr(encoding, "ESCAPE_SLICE", 4099)


@pytest.fixture
def spy_streamed(monkeypatch):
    """Records what ``stream_encoded`` returned, proving the streamed path ran."""
    seen = []
    real = rr.stream_encoded

    def spy(*a, **kw):
        got = real(*a, **kw)
        seen.append(got[0])
        return got
    monkeypatch.setattr(rr, "stream_encoded", spy)
    return seen


def pool_stats(app) -> dict:
    return app.extensions["mcp_flask"]["services"]["db"].database.pool.stats()


def tools_call(arguments: dict, msg_id=77, progress: str | None = None) -> dict:
    params = {"name": "get_table_data", "arguments": arguments}
    if progress is not None:
        params["_meta"] = {"progressToken": progress}
    return {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": params}


def sse_events(body: bytes) -> list[tuple[str | None, bytes]]:
    """``(event id, data)`` of every event carrying data (priming events have empty data)."""
    out = []
    for block in body.split(b"\n\n"):
        eid, data = None, None
        for line in block.split(b"\n"):
            if line.startswith(b"id: "):
                eid = line[4:].decode()
            elif line.startswith(b"data: "):
                data = line[6:]
        if data is not None:
            out.append((eid, data))
    return out


ARGS = [
    {"tableName": "big", "limit": N},
    {"tableName": "big", "limit": 10_000, "offset": 500, "order": "id desc", "includeCount": True},
    {"tableName": "big", "fields": ["id", "label", "doc"], "filter": "id > 100", "limit": 11_000},
]


# ---------------------------------------------------------------------------- the pieces
def test_lazy_documents_encode_exactly_like_eager_json(monkeypatch):
    import orjson

    from mcp_flask import protocol, sse
    rows = [{"s": "".join(chr(c) for c in range(1, 300)) + ' "\\ \u2028 ✓ 日本', "n": i, "d": Decimal("1.50")}
            for i in range(40)]
    monkeypatch.setattr(encoding, "ESCAPE_SLICE", 7)           # cuts inside escapes and UTF-8
    lazy = encoding.EncodedRows()
    for start in range(0, 40, 9):
        lazy.add(encoding.dumps(rows[start:start + 9]), len(rows[start:start + 9]))
    assert len(lazy) == 40 and list(lazy) == orjson.loads(encoding.dumps(rows))
    for structured in (True, False):
        eager = encoding.dumps(protocol.Protocol.tool_result({"resource": rows, "meta": {"q": '"'}}, structured))
        result = protocol.Protocol.tool_result({"resource": lazy, "meta": {"q": '"'}}, structured)
        doc = encoding.encode_lazy(result)
        assert isinstance(doc, encoding.Lazy)
        pieces = list(encoding.write_pieces(doc, small=16))
        assert b"".join(pieces) == eager and doc.size() == len(eager) and all(pieces)
        assert encoding.dumps(result) == eager               # joined when one bytes object is needed
        assert b"".join(sse.event_pieces(result, "s_1")) == sse.event(result, "s_1") == sse.event(eager, "s_1")


_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2 ** 64, max_value=2 ** 64), st.floats(allow_nan=False),
    st.text(max_size=8), st.decimals(allow_nan=True, places=None), st.binary(max_size=6),
    st.timedeltas(), st.datetimes(), st.dates(), st.times(), st.frozensets(st.integers(0, 9), max_size=3))
_KEYS = st.one_of(st.text(max_size=4), st.integers(-3, 3), st.none(), st.booleans())
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=4)), max_leaves=12)


def _reference(value):
    """What ``dumps`` always did: one orjson call with the full rules; bytes or the error."""
    import orjson
    try:
        return orjson.dumps(value, default=encoding._default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        return type(exc), str(exc)


def _encoded(fn, value):
    try:
        out = fn(value)
    except TypeError as exc:
        return type(exc), str(exc)
    return out if isinstance(out, bytes) else b"".join(out.pieces())


@settings(max_examples=400, deadline=None)
@given(_VALUES)
def test_dumps_fast_first_try_gives_the_bytes_or_error_of_the_full_rules(value):
    """The first try (exact str keys, Decimal only, no Python callback) and the retries after
    it: byte for byte the one-call encoding, non-str keys, bytes, intervals, sets, 65-bit
    integers (an error either way) included."""
    expected = _reference(value)
    assert _encoded(encoding.dumps, value) == expected
    assert _encoded(encoding.encode_lazy, value) == expected


def test_encode_lazy_after_a_failed_first_try_numbers_its_markers_afresh():
    """A Lazy part beside a non-str key fails the first two tries: the document is still
    right (the markers of the failed try are forgotten)."""
    lazy = encoding.EncodedRows()
    lazy.add(encoding.dumps([{"a": Decimal("1.0")}]), 1)
    value = {"rows": lazy, "x": [b"\x00", {1: lazy, "d": Decimal("2")}]}
    doc = encoding.encode_lazy(value)
    assert isinstance(doc, encoding.Lazy)
    assert b"".join(doc.pieces()) == encoding.dumps(value) == \
        b'{"rows":[{"a":"1.0"}],"x":["AA==",{"1":[{"a":"1.0"}],"d":"2"}]}'


def test_socket_gone_sees_close_and_reset_but_not_pending_data():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        for how in ("close", "reset", "half-close"):
            peer = socket.create_connection(listener.getsockname())
            ours, _ = listener.accept()
            assert liveness.socket_gone(ours) is False
            peer.sendall(b"pipelined bytes")
            time.sleep(0.02)
            assert liveness.socket_gone(ours) is False       # unread data is not a goodbye
            if how == "reset":
                peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                peer.close()
            elif how == "half-close":
                peer.shutdown(socket.SHUT_WR)
            else:
                peer.close()
            time.sleep(0.02)
            assert liveness.socket_gone(ours) is True, how
            assert ours.recv(100) == b"pipelined bytes"      # nothing was consumed
            ours.close()
            peer.close()
    finally:
        listener.close()
    with liveness.watching(lambda: True):
        assert liveness.client_gone() is True
        with liveness.watching(None):                        # nothing to watch: the outer stays
            assert liveness.client_gone() is True
    assert liveness.client_gone() is False


# ---------------------------------------------------------------------------- byte-exact
@pytest.mark.parametrize("arguments", ARGS, ids=["all", "page-more-count", "fields-filter"])
def test_streamed_json_response_is_byte_exact(client, arguments, small_pieces, spy_streamed, monkeypatch):
    streamed = client.post(tools_call(arguments), Accept="application/json")
    assert streamed.status_code == 200
    assert int(streamed.headers["Content-Length"]) == len(streamed.data)
    assert spy_streamed and len(spy_streamed[0].chunks) > 10     # encoded batch by batch
    monkeypatch.setattr(rr, "STREAM_ABOVE", 10 ** 9)              # the eager path, same rows
    eager = client.post(tools_call(arguments), Accept="application/json")
    assert len(spy_streamed) == 1
    assert streamed.data == eager.data
    result = json.loads(streamed.data)["result"]
    assert result["isError"] is False
    payload = result["structuredContent"]
    assert json.loads(result["content"][0]["text"]) == payload
    meta = payload["meta"]
    assert meta["returned"] == len(payload["resource"]) == min(arguments["limit"], N - arguments.get("offset", 0)
                                                               - (100 if "filter" in arguments else 0))
    if arguments.get("includeCount"):
        assert meta["more"] is True and meta["count"] == N and meta["next"] == 10_500


def test_streamed_values_are_exact(client, big_db):
    """Spot-check decoded values of the streamed page against the reference rows."""
    payload = client.data("get_table_data", {"tableName": "big", "limit": N})
    rows = payload["resource"]
    assert [r["id"] for r in rows] == list(range(1, N + 1))
    r = rows[2]                                       # id 3: the awkward label
    assert r["label"] == 'row 3 "quoted" back\\slash\ttab naïve ✓ 日本 3'
    assert r["amount"] == "0.03" and r["at"] == "2024-01-04T03:03:21"
    assert rows[4]["raw"] == "BQ8=" and rows[3]["doc"] == {"i": 4, "s": 'x"y\\z'}
    assert rows[9]["label"] is None and rows[1]["flag"] is True and rows[0]["flag"] is False


def test_streamed_sse_response_equals_json_and_reports_progress(client, small_pieces, monkeypatch):
    monkeypatch.setattr(rr, "PROGRESS_EVERY", 2000)
    arguments = {"tableName": "big", "limit": 11_000}
    plain = client.post(tools_call(arguments, msg_id=5), Accept="application/json")
    r = client.post(tools_call(arguments, msg_id=5, progress="tok"))
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(r.data)
    messages = [json.loads(d) for _, d in events if d]
    progress = [m["params"] for m in messages if m.get("method") == "notifications/progress"]
    done = [p["progress"] for p in progress]
    assert len(done) >= 2 and done == sorted(set(done)) and 0 < done[0] and done[-1] <= 11_000
    assert all(b - a >= 2000 for a, b in zip(done, done[1:]))     # at most one per PROGRESS_EVERY rows
    assert all(p["progressToken"] == "tok" and p["total"] == 11_001 for p in progress)
    assert events[-1][1] == plain.data          # the result event: the same bytes as the JSON answer


def test_sse_replay_of_a_huge_result_asks_to_call_again(client):
    from mcp_flask import transport
    r = client.post(tools_call({"tableName": "big", "limit": N}, msg_id=9, progress="p"))
    events = sse_events(r.data)
    result = json.loads(events[-1][1])["result"]
    assert result["isError"] is False and len(result["structuredContent"]["resource"]) == N
    assert len(events[-1][1]) > transport.REPLAY_MAX_BYTES
    # Reconnect after the priming event: the replay ends with a stand-in, not a copy of the rows.
    priming = next(eid for eid, data in events if data == b"")
    replay = client.http.get(client.path, headers=client.headers(Accept="text/event-stream",
                                                                 **{"Last-Event-ID": priming}))
    last = json.loads(sse_events(replay.data)[-1][1])
    assert last["id"] == 9 and last["result"]["isError"] is True
    assert "too large to keep for replay" in last["result"]["content"][0]["text"]


def test_stateless_large_read_json_and_sse(big_app, small_pieces, monkeypatch):
    """The 2026-07-28 era: the same lazy result through ModernTransport's JSON and SSE answers."""
    v = "2026-07-28"
    meta = {"io.modelcontextprotocol/protocolVersion": v, "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "pytest", "version": "1"}}
    http = big_app.test_client()

    def post(accept: str, progress: bool):
        m = dict(meta, progressToken="s") if progress else meta
        body = {"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                "params": {"name": "get_table_data", "arguments": {"tableName": "big", "limit": N}, "_meta": m}}
        return http.post("/mcp/db", data=json.dumps(body), headers={
            "Accept": accept, "Content-Type": "application/json", "Host": "localhost",
            "MCP-Protocol-Version": v, "Mcp-Method": "tools/call", "Mcp-Name": "get_table_data"})
    plain = post("application/json", False)
    assert int(plain.headers["Content-Length"]) == len(plain.data)
    streamed = post("application/json, text/event-stream", True)
    assert streamed.headers["Content-Type"].startswith("text/event-stream")
    events = sse_events(streamed.data)
    assert any(b"notifications/progress" in data for _, data in events)
    assert events[-1][1] == plain.data            # the result event: the JSON answer's bytes
    monkeypatch.setattr(rr, "STREAM_ABOVE", 10 ** 9)
    eager = post("application/json", False)
    assert plain.data == eager.data


# ---------------------------------------------------------------------------- failures mid-way
def test_error_mid_fetch_is_a_tool_error(client, big_app, big_db, monkeypatch):
    monkeypatch.setattr(rr, "PROGRESS_EVERY", 1000)
    r = client.post(tools_call({"tableName": "bad", "limit": N}, progress="e"))
    messages = [json.loads(d) for _, d in sse_events(r.data) if d]
    result = messages[-1]["result"]
    assert result["isError"] is True
    assert result["content"][0]["text"].startswith("Database Error")
    if big_db.kind != "mysql":
        # PostgreSQL and SQLite fail at row 9000, after batches were encoded and reported.
        assert any(m.get("method") == "notifications/progress" for m in messages)
    assert pool_stats(big_app)["in_use"] == 0
    assert client.data("get_table_data", {"tableName": "big", "limit": 3})["meta"]["returned"] == 3


def test_client_gone_stops_the_read_and_frees_the_connection(client, big_app, big_db, small_pieces):
    asked = []

    def probe():
        asked.append(1)
        return len(asked) >= 3               # the client "leaves" after the third batch

    with liveness.watching(probe):
        result = client.call("get_table_data", {"tableName": "big", "limit": N})
    assert result["isError"] is True
    assert result["content"][0]["text"] == "Cancelled: the client closed the connection; the read was stopped"
    assert len(asked) == 3                   # no batch was read after the client was gone
    assert pool_stats(big_app)["in_use"] == 0
    if big_db.kind == "postgresql":
        busy = big_db.rows("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND application_name = 'mcp-flask' AND state <> 'idle'")[0][0]
        assert busy == 0                     # no open cursor or transaction left behind
    # The service is fine afterwards (MySQL may have dropped the half-read connection).
    assert client.data("get_table_data", {"tableName": "big", "limit": 6000})["meta"]["returned"] == 6000


# ---------------------------------------------------------------------------- memory
def test_100k_row_sqlite_read_peaks_near_its_encoded_size(tmp_path, app_factory):
    """No full row list is built: the traced peak stays near the JSON size of the page, where
    the rows as Python tuples and dicts would take several times that."""
    path = str(tmp_path / "m.db")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, price NUMERIC(10,2), "
                 "created_at DATETIME)")
    conn.execute("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 100000) "
                 "INSERT INTO items SELECT i, 'item number ' || i, i % 97, (i % 5000) / 100.0, "
                 "'2024-05-01 10:00:00' FROM s")
    conn.commit()
    conn.close()
    app = app_factory({"m": {"url": "sqlite:///" + path, "max_rows": 100_000}})
    wsgi = app.extensions["mcp_flask"]["transport"]

    def post(body: dict, sid=None):
        raw = json.dumps(body).encode()
        environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/mcp/m", "HTTP_HOST": "localhost",
                   "CONTENT_TYPE": "application/json", "HTTP_ACCEPT": "application/json",
                   "CONTENT_LENGTH": str(len(raw)), "wsgi.input": io.BytesIO(raw)}
        if sid:
            environ.update(HTTP_MCP_SESSION_ID=sid, HTTP_MCP_PROTOCOL_VERSION="2025-11-25")
        headers = {}
        body_iter = wsgi(environ, lambda status, hdrs, exc=None: headers.update(hdrs))
        return headers, body_iter

    headers, it = post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    b"".join(it)
    sid = headers["Mcp-Session-Id"]
    call = tools_call({"tableName": "items", "limit": 100_000})
    headers, it = post(call, sid)                 # warm: schema cache, connection
    warm = json.loads(b"".join(it))["result"]
    page_json = len(json.dumps(warm["structuredContent"], separators=(",", ":"), ensure_ascii=False).encode())
    assert len(warm["structuredContent"]["resource"]) == 100_000 and page_json > 5_000_000
    del warm
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        headers, it = post(call, sid)
        written = 0
        for piece in it:                          # written and dropped, as a server does
            assert isinstance(piece, bytes)
            written += len(piece)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert written == int(headers["Content-Length"])
    # The page's JSON is ~10 MB; built eagerly (rows, dicts, two encodings) the peak is ~160 MB.
    assert peak < 1.5 * page_json + 3_000_000, (peak, page_json)


# ---------------------------------------------------------------------------- real gunicorn
@pytest.fixture(scope="module")
def live_pg(tmp_path_factory):
    """A PostgreSQL database with ``big`` and the slow view ``crawl``, and gunicorn serving it."""
    import psycopg2  # noqa: F401 - create_pg_database skips without it

    from conftest import LiveServer
    url, name, connect, drop = create_pg_database("mcpf_stream_")
    conn = connect()
    try:
        with conn.cursor() as cur:
            cur.execute(DDL["postgresql"][0])
            rows = list(big_rows())
            for start in range(0, len(rows), 500):
                part = rows[start:start + 500]
                cur.execute(f"INSERT INTO big ({COLUMNS}) VALUES " + ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"]
                                                                              * len(part)),
                            [v for row in part for v in row])
            # A read that crawls, row by row: ~0.3 ms per 2 kB row (small FETCHes), ~4 s in all.
            # STABLE with a high COST keeps the plan an index scan that evaluates it lazily,
            # row by row as FETCH asks (a volatile call would be evaluated for every row
            # before a sort, all in the first FETCH).
            cur.execute("CREATE FUNCTION crawl_pad(i int) RETURNS json LANGUAGE plpgsql STABLE COST 1000000 "
                        "AS $$ BEGIN PERFORM pg_sleep(0.0002); RETURN to_json(repeat('x', 2000)); END $$")
            cur.execute("CREATE VIEW crawl AS SELECT id, crawl_pad(id) AS pad FROM big")
    finally:
        conn.close()
    work = str(tmp_path_factory.mktemp("live-stream"))
    server = LiveServer(f'[services.pg]\nurl = "{url}"\nmax_rows = 50000\n', work)
    try:
        yield server, name, connect
    finally:
        server.stop()
        drop()


def _session(base_url: str):
    import httpx
    h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    r = httpx.post(base_url, headers=h, json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    h.update({"Mcp-Session-Id": r.headers["Mcp-Session-Id"], "MCP-Protocol-Version": "2025-11-25"})
    httpx.post(base_url, headers=h, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    return h


def test_live_large_read_json_and_sse(live_pg):
    import httpx
    server, _, _ = live_pg
    h = _session(server.url("pg"))
    call = tools_call({"tableName": "big", "limit": N}, msg_id=3)
    r = httpx.post(server.url("pg"), headers=dict(h, Accept="application/json"), json=call, timeout=60)
    assert r.status_code == 200 and int(r.headers["content-length"]) == len(r.content)
    result = r.json()["result"]
    assert result["isError"] is False and len(result["structuredContent"]["resource"]) == N
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
    call["params"]["_meta"] = {"progressToken": 1}
    s = httpx.post(server.url("pg"), headers=h, json=call, timeout=60)
    assert s.headers["content-type"].startswith("text/event-stream")
    events = sse_events(s.content)
    assert events[-1][1] == r.content
    assert any(b"notifications/progress" in d for _, d in events)


def test_live_client_disconnect_frees_the_connection_within_a_second(live_pg):
    server, name, connect = live_pg
    h = _session(server.url("pg"))
    body = json.dumps(tools_call({"tableName": "crawl", "limit": N})).encode()
    head = (f"POST /mcp/pg HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in dict(h, Accept="application/json").items()) + "\r\n")
    watcher = connect()

    def busy() -> int:
        with watcher.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                        "AND application_name = 'mcp-flask' AND state <> 'idle'", (name,))
            return cur.fetchone()[0]
    try:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(head.encode() + body)
        deadline = time.monotonic() + 10
        while busy() == 0:                               # the read is under way
            assert time.monotonic() < deadline, "the read never started"
            time.sleep(0.05)
        time.sleep(0.8)
        assert busy() == 1                               # still reading
        sock.close()                                     # the client gives up mid-call
        gone_at = time.monotonic()
        while busy():
            assert time.monotonic() - gone_at < 1.0, "the connection was not released within a second"
            time.sleep(0.02)
    finally:
        watcher.close()
    # The worker is healthy and the pooled connection reusable.
    import httpx
    r = httpx.post(server.url("pg"), headers=dict(h, Accept="application/json"),
                   json=tools_call({"tableName": "big", "limit": 5}), timeout=30)
    assert r.json()["result"]["structuredContent"]["meta"]["returned"] == 5


# ---------------------------------------------------------------- SQLite decimal text fast path
@settings(max_examples=3000, deadline=None)
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**63, 2**63 - 1),
                       st.decimals(places=4, min_value=-10**9, max_value=10**9, allow_nan=False).map(float)),
       scale=st.one_of(st.none(), st.integers(0, 10)))
def test_sqlite_decimal_decoder_prints_exactly_what_the_decimal_path_prints(value, scale):
    """The SQLite decoder's shortcut (the repr padded with zeros, no Decimal built) must
    encode to the same JSON as the general path (Decimal of the repr, quantized)."""
    from decimal import InvalidOperation

    from mcp_flask import encoding
    from mcp_flask.config import ServiceConfig
    from mcp_flask.dialects import dialect_for
    from mcp_flask.metadata import Column
    dialect = dialect_for(ServiceConfig(name="d", url="sqlite:///:memory:"))
    col = Column(name="price", type="decimal", db_type=f"NUMERIC(20,{scale})", precision=20, scale=scale)
    try:
        expected = encoding.dumps(dialect.decode_value(col, value))
    except InvalidOperation:
        return              # too many digits for the scale: the general path raises too
    try:
        got = encoding.dumps(dialect.decoder(col)(value))
    except InvalidOperation:
        raise AssertionError(f"the shortcut raised where the general path did not: {value!r}") from None
    assert got == expected, (value, scale)


@settings(max_examples=1500, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.floats(), st.integers(-2**63, 2**63 - 1),
                                 st.decimals(places=3, min_value=-10**6, max_value=10**6,
                                             allow_nan=False).map(float),
                                 st.sampled_from(["x", "2024-01-01 00:00:00"])), max_size=30),
       scale=st.integers(0, 6), homogeneous=st.booleans())
def test_sqlite_column_decoders_equal_value_by_value_decoding(values, scale, homogeneous):
    """``dec.column`` (a whole column through C-level maps) gives exactly ``dec`` per value."""
    from mcp_flask.config import ServiceConfig
    from mcp_flask.dialects import dialect_for
    from mcp_flask.metadata import Column
    dialect = dialect_for(ServiceConfig(name="d", url="sqlite:///:memory:"))
    if homogeneous:      # the fast path's case: no NULLs, one Python type
        values = [v for v in values if isinstance(v, float)] or [1.5, 2.25]
    for col in (Column(name="p", type="decimal", db_type=f"NUMERIC(12,{scale})", precision=12, scale=scale),
                Column(name="t", type="datetime", db_type="DATETIME")):
        dec = dialect.decoder(col)
        expected = [None if v is None else dec(v) for v in values]
        got = dec.column(tuple(values))
        assert encoding.dumps(got) == encoding.dumps(expected), (col.type, values)


def test_sqlite_datetime_column_decoder_takes_the_fast_path_for_valid_text():
    from mcp_flask.config import ServiceConfig
    from mcp_flask.dialects import dialect_for
    from mcp_flask.metadata import Column
    dialect = dialect_for(ServiceConfig(name="d", url="sqlite:///:memory:"))
    dec = dialect.decoder(Column(name="t", type="datetime", db_type="DATETIME"))
    got = dec.column(("2024-01-01 00:00:01", "2024-02-29 23:59:59"))
    assert encoding.dumps(got) == b'["2024-01-01T00:00:01","2024-02-29T23:59:59"]'
    # An invalid date anywhere: every value still decoded as value-by-value decoding does.
    assert dec.column(("2024-02-30 00:00:00", "2024-01-01 00:00:01"))[0] == "2024-02-30 00:00:00"
