"""Per-layer CPU cost of one 10-row call, measured in-process (``python -m bench.layers``).

Builds the real app (``create_app``) on the benchmark PostgreSQL database and
times each step of the hot path on its own, in a loop, without HTTP, gunicorn
or gevent: the numbers are microseconds of Python per call, the budget that
decides calls/s on a 2-core box.  Steps (in request order):

* ``wsgi_total``: the whole ``/mcp/pg`` WSGI call (transport -> protocol ->
  tool -> database -> encoding), including the PostgreSQL round trips;
* ``jsonrpc_parse``: body -> envelope (orjson + the envelope's jsonschema);
* ``params_check``: the ``tools/call`` params schema;
* ``args_normalize`` / ``args_validate``: argument names, then the tool's input schema;
* ``tool_handler``: ``get_table_data`` itself (filter, SQL, database, rows);
* ``db_roundtrips``: the same SQL through ``Database.transaction`` + ``dialect.query``
  (BEGIN READ ONLY, SELECT, COMMIT) and, beside it, a bare ``cursor.execute``;
* ``result_encode``: ``Protocol.tool_result`` + the JSON-RPC envelope to bytes.

The difference between ``wsgi_total`` and the sum of the parts is the
transport's own work (headers, session lookup, Call/ToolContext objects, hooks).
"""
from __future__ import annotations

import io
import json
import os
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import floors, seed  # noqa: E402
from bench.scenarios import small_args  # noqa: E402


def _timeit(fn, n: int) -> float:
    """Median-of-3 microseconds per call of ``fn`` over ``n`` calls."""
    runs = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t0) / n * 1e6)
    return sorted(runs)[1]


def measure_layers(n: int = 2000, start_id: int = 500000, service: str = "pg") -> dict:
    """{step: microseconds per call} for the 10-row call on PostgreSQL (see the module docstring)."""
    from mcp_flask import create_app, encoding, jsonrpc
    from mcp_flask.config import load_settings
    from mcp_flask.tools.registry import TOOLS, ToolContext, normalize_arguments

    url, _ = seed.seed_postgres(1_000_000)
    settings = load_settings(data={"server": {"log_level": "warning"},
                                   "services": {service: {"url": url, "max_rows": 100000}}}, env={})
    app = create_app(settings, check_databases=False)
    ext = app.extensions["mcp_flask"]
    protocol, transport = ext["protocol"], ext["transport"]
    args = small_args(start_id)
    body = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                       "params": {"name": "get_table_data", "arguments": args}}).encode()
    captured: dict = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, headers

    def environ(payload: bytes, sid: str | None) -> dict:
        env = {"REQUEST_METHOD": "POST", "PATH_INFO": f"/mcp/{service}", "HTTP_HOST": "127.0.0.1",
               "CONTENT_TYPE": "application/json", "HTTP_ACCEPT": "application/json",
               "CONTENT_LENGTH": str(len(payload)), "wsgi.input": io.BytesIO(payload),
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
               "wsgi.url_scheme": "http", "REMOTE_ADDR": "127.0.0.1", "SCRIPT_NAME": "",
               "QUERY_STRING": "", "wsgi.errors": sys.stderr}
        if sid:
            env["HTTP_MCP_SESSION_ID"] = sid
            env["HTTP_MCP_PROTOCOL_VERSION"] = "2025-11-25"
        return env

    init = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                       "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                  "clientInfo": {"name": "layers", "version": "1"}}}).encode()
    b"".join(app(environ(init, None), start_response))
    sid = dict(captured["headers"])["Mcp-Session-Id"]
    out = b"".join(app(environ(body, sid), start_response))
    if not (captured["status"].startswith("200") and b'"isError":false' in out):
        raise RuntimeError(f"the call failed: {captured['status']} {out[:300]!r}")

    schemas = protocol.schemas
    spec = TOOLS["get_table_data"]
    msg = jsonrpc.parse(body, schemas)[0][0]
    params = msg.params
    norm = normalize_arguments(spec, params["arguments"])
    svc = ext["services"][service]
    session = ext["store"].get(sid)
    call = transport.call(svc, session, "2025-11-25", 7)
    access = protocol.access_for(call)
    db = svc.database

    def ctx():
        return ToolContext(database=db, access=access, scope=call.scope, audit={})

    payload = spec.handler(ctx(), norm)
    sql, sql_params = floors.small_query("postgresql", start_id)
    raw = floors.connect("postgresql")

    def db_transaction():
        with db.transaction(read_only=True) as conn:
            db.dialect.query(conn, sql, sql_params)

    result = {}
    steps = {
        "wsgi_total (whole call, with 3 PG round trips)": lambda: b"".join(app(environ(body, sid), start_response)),
        "flask dispatch + middleware (healthz GET, for scale)":
            lambda: b"".join(app({**environ(b"", None), "REQUEST_METHOD": "GET", "PATH_INFO": "/healthz",
                                  "CONTENT_LENGTH": "0"}, start_response)),
        "jsonrpc_parse (orjson + envelope schema)": lambda: jsonrpc.parse(body, schemas),
        "params_check (tools/call params schema)": lambda: protocol.check_params("tools/call", params),
        "args_normalize (argument names)": lambda: normalize_arguments(spec, params["arguments"]),
        "args_validate (tool input schema)": lambda: schemas.tools["get_table_data"].error(norm),
        "tool_handler (get_table_data incl. DB)": lambda: spec.handler(ctx(), norm),
        "db: transaction + BEGIN/SELECT/COMMIT": db_transaction,
        "db: bare cursor.execute + fetchall (1 round trip)": lambda: floors.run_once(raw, sql, sql_params),
        "result_encode (tool_result + envelope -> bytes)":
            lambda: encoding.dumps(jsonrpc.result(7, protocol.tool_result(payload, True))),
    }
    for name, fn in steps.items():
        fn()
        result[name] = round(_timeit(fn, n), 1)
    raw.close()
    db.close()
    return result


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    res = measure_layers(n)
    width = max(len(k) for k in res)
    print(f"microseconds per call, in-process, median of 3 x {n} (no HTTP server, no gevent):")
    for k, v in res.items():
        print(f"  {k:<{width}}  {v:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
