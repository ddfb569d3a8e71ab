"""Real clients against real gunicorn (gevent workers): the official MCP Python SDK.

* mcp 2.x (``from mcp import Client``, installed in the test virtualenv): the
  default mode probes the 2026-07-28 ``server/discover`` first and must fall
  back to ``initialize``; ``mode="legacy"`` goes straight to 2025-11-25.
* mcp 1.x (``streamablehttp_client`` + ``ClientSession``), the previous major,
  run in a subprocess from its own virtualenv, created on demand under
  ``~/.cache/mcp-flask-test/venv-mcp1`` and reused (set MCP_FLASK_MCP1_PYTHON to
  use another interpreter).  Skipped only when it cannot be installed and
  MCP_FLASK_REQUIRE_MCP1 is not set.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap

import pytest

mcp = pytest.importorskip("mcp")

CATALOG_CALLS = [
    ("get_tables", {}),
    ("get_table_schema", {"tableName": "customers"}),
    ("get_table_fields", {"tableName": "orders", "fields": "id,status"}),
    ("get_table_relationships", {"tableName": "products"}),
    ("get_database_resources", {"asList": True}),
    ("list_tools", {"names_only": True}),
]


def run(coro):
    return asyncio.run(coro)


async def session_with(url: str, mode: str):
    from mcp import Client
    out = {}
    async with Client(url, mode=mode) as client:
        out["version"] = client.protocol_version
        out["server"] = client.server_info.name if client.server_info else None
        tools = await client.list_tools()
        out["tools"] = [t.name for t in tools.tools]
        out["calls"] = {}
        for name, args in CATALOG_CALLS:
            res = await client.call_tool(name, args)
            out["calls"][name] = (res.is_error, res.content[0].text, res.structured_content)
        bad = await client.call_tool("get_table_schema", {"tableName": "custmers"})
        out["bad"] = (bad.is_error, bad.content[0].text)
        if mode == "legacy":
            await client.send_ping()
    return out


def check_calls(out):
    assert {n for n, _ in CATALOG_CALLS} <= set(out["tools"])
    for name, (is_error, text, structured) in out["calls"].items():
        assert is_error is False, (name, text)
        assert json.loads(text) == structured, name
    assert out["calls"]["get_database_resources"][2]["resource"][:2] == ["categories", "customer_order_totals"]
    assert out["calls"]["get_table_fields"][2]["resource"][1]["name"] == "status"
    assert out["bad"][0] is True and "did you mean 'customers'" in out["bad"][1]


def test_sdk2_legacy_mode(live_server):
    out = run(session_with(live_server.url(), "legacy"))
    assert out["version"] == "2025-11-25"
    assert out["server"] == "mcp-flask"
    check_calls(out)


def test_sdk2_default_mode_probes_then_works(live_server):
    """Default mode POSTs server/discover first; whatever it settles on must work."""
    out = run(session_with(live_server.url(), "auto"))
    assert out["version"]
    check_calls(out)


def test_sdk2_unknown_service_fails_cleanly(live_server):
    with pytest.raises(BaseException):
        run(session_with(live_server.url("nope"), "legacy"))
    # The server still serves the real one.
    assert run(session_with(live_server.url(), "legacy"))["version"] == "2025-11-25"


# ---------------------------------------------------------------------------- mcp 1.x
MCP1_SCRIPT = textwrap.dedent('''
    import asyncio, json, sys
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    CALLS = json.loads(sys.argv[2])

    async def main():
        out = {}
        async with streamablehttp_client(sys.argv[1]) as (read, write, get_session_id):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                out["version"] = init.protocolVersion
                out["session"] = bool(get_session_id())
                tools = await session.list_tools()
                out["tools"] = [t.name for t in tools.tools]
                await session.send_ping()
                out["calls"] = {}
                for name, args in CALLS:
                    r = await session.call_tool(name, args)
                    out["calls"][name] = (r.isError, r.content[0].text, r.structuredContent)
                bad = await session.call_tool("get_table_schema", {"tableName": "custmers"})
                out["bad"] = (bad.isError, bad.content[0].text)
        print(json.dumps(out))

    asyncio.run(main())
''')


@pytest.fixture(scope="session")
def mcp1_python():
    """A Python with ``mcp<2`` installed (created once, then reused)."""
    explicit = os.environ.get("MCP_FLASK_MCP1_PYTHON")
    if explicit:
        return explicit
    base = os.path.expanduser("~/.cache/mcp-flask-test")
    venv = os.path.join(base, "venv-mcp1")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        os.makedirs(base, exist_ok=True)
        tmp = f"{venv}.{os.getpid()}.tmp"
        try:
            subprocess.run([sys.executable, "-m", "venv", tmp], check=True, capture_output=True, timeout=120)
            subprocess.run([os.path.join(tmp, "bin", "python"), "-m", "pip", "install", "-q", "mcp<2"],
                           check=True, capture_output=True, timeout=600)
            try:
                os.rename(tmp, venv)        # atomic: a concurrent run may have won, that is fine
            except OSError:
                pass
        except (subprocess.SubprocessError, OSError) as exc:
            if os.environ.get("MCP_FLASK_REQUIRE_MCP1"):
                raise
            pytest.skip(f"cannot create a virtualenv with mcp<2: {exc}")
    probe = subprocess.run([python, "-c", "import mcp, importlib.metadata as m; print(m.version('mcp'))"],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith("1."), probe.stdout
    return python


def test_sdk1_client(live_server, mcp1_python, tmp_path):
    script = tmp_path / "client_v1.py"
    script.write_text(MCP1_SCRIPT)
    proc = subprocess.run([mcp1_python, str(script), live_server.url(), json.dumps(CATALOG_CALLS)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["version"] == "2025-11-25"
    assert out["session"] is True
    check_calls(out)


async def resources_and_prompts(url: str):
    from mcp import Client
    out = {}
    async with Client(url, mode="legacy") as client:
        res = await client.list_resources()
        out["resources"] = [str(r.uri) for r in res.resources]
        templates = await client.list_resource_templates()
        out["templates"] = [t.uri_template for t in templates.resource_templates]
        read = await client.read_resource("db://demo/tables/tags")
        out["read"] = json.loads(read.contents[0].text)
        await client.subscribe_resource("db://demo/tables/tags")
        await client.unsubscribe_resource("db://demo/tables/tags")
        prompts = await client.list_prompts()
        out["prompts"] = [p.name for p in prompts.prompts]
        got = await client.get_prompt("draft_safe_filter", {"table": "orders", "question": "paid orders"})
        out["prompt_text"] = got.messages[0].content.text
    return out


def test_sdk2_resources_and_prompts(live_server):
    out = run(resources_and_prompts(live_server.url()))
    assert "db://demo/tables/orders" in out["resources"] and len(out["resources"]) == 10
    assert out["templates"] == ["db://demo/tables/{name}"]
    assert out["read"]["name"] == "tags" and out["read"]["primary_key"] == ["id"]
    assert out["prompts"] == ["explore_database", "explain_table", "draft_safe_filter"]
    assert "status" in out["prompt_text"] and "paid orders" in out["prompt_text"]
