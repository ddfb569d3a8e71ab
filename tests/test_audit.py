"""The audit log (audit.py): one structured record per tool call, and no secrets anywhere.

Records are read from the ``mcp_flask.audit`` logger (caplog) for the in-process
app, and from a real gunicorn server's stderr for the live check.  Secrets
(API keys, session ids, argument values, DSN passwords) must appear in neither
responses nor logs.
"""
from __future__ import annotations

import json
import logging
import time

import pytest

from conftest import ACCEPT_BOTH, McpTestClient
from mcp_flask.audit import fingerprint
from mcp_flask.cli import hash_api_key

KEY = "audit-key-0123456789abcdef0123456789"
SECRET_VALUE = "Zebra-Secret-Value-42"
FIELDS = {"time", "event", "service", "session", "role", "key", "tool", "table", "rows", "duration_ms", "outcome"}


@pytest.fixture
def app(app_factory, demo_db):
    return app_factory({"demo": {
        "url": "sqlite:///" + demo_db, "auth": "api_key", "rate_limit": 1000,
        "roles": {"analyst": {"deny_tables": {"employees": "*"}}},
        "api_keys": [{"hash": hash_api_key(KEY), "role": "analyst", "id": "laptop"}]}})


def audit_records(caplog) -> list[dict]:
    return [r.audit for r in caplog.records if r.name == "mcp_flask.audit"]


def test_one_record_per_tool_call_with_every_field(app, caplog):
    caplog.set_level(logging.INFO, logger="mcp_flask.audit")
    c = McpTestClient(app, headers={"X-API-Key": KEY})
    c.initialize()
    c.data("get_tables")
    c.data("get_table_data", {"tableName": "customers", "filter": f"first_name = '{SECRET_VALUE}'"})
    c.error_text("get_table_schema", {"tableName": "employees"})
    c.rpc("ping")
    recs = audit_records(caplog)
    assert len(recs) == 3
    for rec in recs:
        assert set(rec) == FIELDS
        assert rec["service"] == "demo" and rec["role"] == "analyst" and rec["key"] == "laptop"
        assert rec["session"] == fingerprint(c.session_id) and c.session_id not in json.dumps(rec)
        assert rec["time"].endswith("Z") and isinstance(rec["duration_ms"], float)
    assert [r["tool"] for r in recs] == ["get_tables", "get_table_data", "get_table_schema"]
    assert recs[0]["outcome"] == "ok" and recs[0]["rows"] > 0
    assert recs[1]["table"] == "customers" and recs[1]["rows"] == 0
    assert recs[2]["outcome"] == "NotFound"


def test_refused_and_unknown_tools_are_audited(app, caplog):
    caplog.set_level(logging.INFO, logger="mcp_flask.audit")
    c = McpTestClient(app, headers={"X-API-Key": KEY})
    c.initialize()
    assert c.rpc("tools/call", {"name": "drop_database", "arguments": {}})["error"]["code"] == -32602
    c.error_text("get_table_data", {"tableName": "customers", "limit": "many"})
    recs = audit_records(caplog)
    assert [(r["tool"], r["outcome"]) for r in recs] == [("drop_database", "unknown_tool"),
                                                          ("get_table_data", "InvalidArguments")]


def test_no_values_keys_or_session_ids_in_logs(app, caplog):
    caplog.set_level(logging.DEBUG)
    c = McpTestClient(app, headers={"Authorization": f"Bearer {KEY}"})
    c.initialize()
    c.call("get_table_data", {"tableName": "customers", "filter": f"last_name = '{SECRET_VALUE}'"})
    c.call("create_records", {"tableName": "tags", "records": [{"name": SECRET_VALUE}]})
    c.call("update_records", {"tableName": "tags", "filter": f"name = '{SECRET_VALUE}'",
                              "records": [{"name": SECRET_VALUE + "2"}]})
    text = "\n".join(f"{r.getMessage()} {getattr(r, 'audit', '')}" for r in caplog.records)
    by_tool = {r["tool"]: r for r in audit_records(caplog)}
    assert by_tool["create_records"]["rows"] == 1 and by_tool["create_records"]["table"] == "tags"
    assert by_tool["update_records"]["rows"] == 1
    for secret in (SECRET_VALUE, KEY, c.session_id, hash_api_key(KEY)):
        assert secret not in text


def test_dsn_passwords_never_reach_responses_or_logs(app_factory, caplog):
    caplog.set_level(logging.DEBUG)
    # Nothing listens on port 1: the connection fails, and the error must not carry the DSN.
    app = app_factory({"pg": {"url": "postgresql://app:Hunter2Secret@127.0.0.1:1/db", "connect_timeout": 1,
                              "pool_timeout": 1}})
    c = McpTestClient(app, service="pg")
    c.initialize()
    result = c.call("get_tables")
    assert result["isError"] is True
    assert "Hunter2Secret" not in json.dumps(result)
    logged = "\n".join(r.getMessage() + str(r.__dict__.get("audit", "")) for r in caplog.records)
    assert "Hunter2Secret" not in logged
    assert audit_records(caplog)[-1]["outcome"] != "ok"


def test_live_server_audit_log_accounts_for_every_call(start_server, demo_db):
    import urllib.request
    server = start_server(f'[services.demo]\nurl = "sqlite:///{demo_db}"\n')
    url = server.url()

    def post(payload, sid=None):
        headers = {"Content-Type": "application/json", "Accept": ACCEPT_BOTH}
        if sid:
            headers.update({"Mcp-Session-Id": sid, "MCP-Protocol-Version": "2025-11-25"})
        req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.headers.get("Mcp-Session-Id"), r.read()
    sid, _ = post({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                   "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                              "clientInfo": {"name": "t", "version": "1"}}})
    calls = [("get_tables", {}), ("get_table_schema", {"tableName": "nope"}), ("nope_tool", {}),
             ("get_table_data", {"tableName": "tags", "limit": 2}), ("list_tools", {})]
    for i, (name, args) in enumerate(calls, 1):
        post({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": name, "arguments": args}}, sid)

    def audit_lines():
        out = []
        for line in server.output().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict) and (rec.get("logger") == "mcp_flask.audit" or rec.get("event") == "tool_call"):
                out.append(rec.get("audit", rec))
        return out
    deadline = time.monotonic() + 10
    while len(audit_lines()) < len(calls) and time.monotonic() < deadline:
        time.sleep(0.05)
    recs = audit_lines()
    assert [r["tool"] for r in recs] == [n for n, _ in calls]
    assert all(set(r) == FIELDS for r in recs)
    assert sid not in server.output()


# ------------------------------------------------------------------ the direct write of audit lines
@pytest.fixture
def json_logging():
    """mcp-flask's standard JSON logging into a buffer, alone on the root logger (pytest's
    capture handlers, added around each test phase, are set aside); restored after."""
    import contextlib
    import io

    from mcp_flask import logs
    root = logging.getLogger()
    level = root.level
    buf = io.StringIO()

    @contextlib.contextmanager
    def alone():
        others = list(root.handlers)
        for h in others:
            root.removeHandler(h)
        logs.configure("info", "json", stream=buf)
        try:
            yield buf
        finally:
            for h in list(root.handlers):
                root.removeHandler(h)
            for h in others:
                root.addHandler(h)
            root.setLevel(level)
    return alone


def test_direct_audit_lines_are_the_lines_logging_would_write(json_logging):
    from mcp_flask import logs
    logger = logging.getLogger("mcp_flask.audit")
    rec = {"event": "tool_call", "tool": "get_table_data", "rows": 3, "odd": {1, 2}}
    tokens = logs.bind("rid-1", "0123456789abcdef-session", "svc")
    try:
        with json_logging() as buf:
            assert logs.direct_handler(logger) is not None
            logs.info(logger, "tool_call", {"audit": rec})
            logger.info("tool_call", extra={"audit": rec})
    finally:
        logs.reset(tokens)
    direct, standard = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert direct.pop("ts")[:10] == standard.pop("ts")[:10]
    assert list(direct) == list(standard) and direct == standard
    assert direct["request_id"] == "rid-1" and direct["session"] == "0123456789ab" and direct["audit"]["rows"] == 3


def test_any_other_logging_setup_gets_the_record_through_logging(json_logging):
    """A second handler, a filter, or a non-JSON formatter: the line goes through logging."""
    with json_logging() as buf:
        _other_setups(buf)


def _other_setups(buf):
    import io

    from mcp_flask import logs
    logger = logging.getLogger("mcp_flask.audit")
    assert logs.direct_handler(logger) is not None
    extra_buf = io.StringIO()
    extra = logging.StreamHandler(extra_buf)
    logger.addHandler(extra)
    try:
        assert logs.direct_handler(logger) is None
        logs.info(logger, "tool_call", {"audit": {"tool": "x"}})
    finally:
        logger.removeHandler(extra)
    assert extra_buf.getvalue() == "tool_call\n" and '"tool":"x"' in buf.getvalue()

    seen = []

    class Drop(logging.Filter):
        def filter(self, record):
            seen.append(record.getMessage())
            return False
    logger.addFilter(Drop())
    try:
        assert logs.direct_handler(logger) is None
        logs.info(logger, "dropped", {"audit": {}})
    finally:
        logger.filters.clear()
    assert seen == ["dropped"] and "dropped" not in buf.getvalue()
    root_handler = logging.getLogger().handlers[0]
    root_handler.setFormatter(logging.Formatter("%(message)s"))
    assert logs.direct_handler(logger) is None


def test_duration_ms_is_round_to_the_microsecond():
    """The audited ``duration_ms`` (protocol.duration_ms) is exactly ``round(seconds * 1000, 3)``:
    typical durations, halfway cases, values next to them, zero, -0.0, huge and tiny ones."""
    import math
    import random

    from mcp_flask.protocol import duration_ms
    rng = random.Random(1234)
    values = [0.0, -0.0, 1e-12, 5e-7, 1.5e-6, 2.5e-6, 0.0005, 0.0015, 0.0025, 1.0005, 1e9, 1e12, 1e300,
              -0.0025, float("inf"), float("nan"), 0.1234565, 2.0000005]
    values += [rng.random() * scale for scale in (1e-6, 1e-3, 1.0, 10.0, 3600.0, 1e7) for _ in range(20000)]
    values += [k / 2e6 for k in range(1, 4000)]            # exact and near halfway microseconds
    values += [math.nextafter(v, d) for v in values[-4000:] for d in (0.0, 1.0)]
    for v in values:
        want = round(v * 1000, 3)
        got = duration_ms(v)
        assert repr(got) == repr(want) and type(got) is float, (v, got, want)
