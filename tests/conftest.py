"""Shared fixtures: apps on the demo database, an MCP test client, and live gunicorn servers.

Nothing here mocks a database or a protocol peer: apps run against real SQLite
files (and PostgreSQL / MariaDB in the dialect suites), and ``live_server``
starts real gunicorn with gevent workers on a free loopback port.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCEPT_BOTH = "application/json, text/event-stream"
LATEST = "2025-11-25"


# ---------------------------------------------------------------------------- demo database
@pytest.fixture(scope="session")
def demo_template(tmp_path_factory):
    """One pristine demo database per test run; tests copy it (creation takes ~0.5 s)."""
    from mcp_flask.demo import create_demo_database
    path = str(tmp_path_factory.mktemp("demo-template") / "demo.db")
    create_demo_database(path)
    return path


@pytest.fixture
def demo_db(demo_template, tmp_path):
    """A private copy of the demo database for one test (writes do not leak between tests)."""
    path = str(tmp_path / "demo.db")
    shutil.copyfile(demo_template, path)
    return path


def make_settings(services: dict, **server):
    """Settings from plain dicts, exactly as a TOML file would give them."""
    from mcp_flask.config import load_settings
    data = {"services": services}
    if server:
        data["server"] = server
    return load_settings(data=data, env={})


@pytest.fixture
def app_factory(tmp_path):
    """Build apps from config dicts: ``app_factory({"demo": {"url": ...}}, session_ttl=5)``."""
    from mcp_flask import create_app

    def build(services: dict, **server):
        server.setdefault("data_dir", str(tmp_path))
        return create_app(make_settings(services, **server), check_databases=False)
    return build


@pytest.fixture
def demo_app(app_factory, demo_db):
    return app_factory({"demo": {"url": "sqlite:///" + demo_db}})


# ---------------------------------------------------------------------------- MCP test client
class McpTestClient:
    """A small MCP client over Flask's test client (for transport and tool tests).

    It speaks exactly what the spec says a client sends; tests that need a real
    client use the official SDK against ``live_server``.
    """

    def __init__(self, app, service: str = "demo", version: str = LATEST, headers=None):
        self.http = app.test_client()
        self.path = f"/mcp/{service}"
        self.version = version
        self.session_id = None
        self.extra = dict(headers or {})
        self._id = 0

    def headers(self, **extra):
        h = {"Accept": ACCEPT_BOTH, "Content-Type": "application/json", "Host": "localhost"}
        h.update(self.extra)
        if self.session_id:
            h["Mcp-Session-Id"] = self.session_id
            h["MCP-Protocol-Version"] = self.version
        h.update(extra)
        return {k: v for k, v in h.items() if v is not None}

    def post(self, payload, raw: bytes | None = None, **headers):
        data = raw if raw is not None else json.dumps(payload)
        return self.http.post(self.path, data=data, headers=self.headers(**headers))

    def initialize(self, version: str | None = None, capabilities=None):
        self._id += 1
        r = self.post({"jsonrpc": "2.0", "id": self._id, "method": "initialize",
                       "params": {"protocolVersion": version or self.version,
                                  "capabilities": capabilities or {},
                                  "clientInfo": {"name": "pytest", "version": "1"}}})
        assert r.status_code == 200, r.data
        self.session_id = r.headers["Mcp-Session-Id"]
        self.version = r.get_json()["result"]["protocolVersion"]
        n = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert n.status_code == 202
        return r.get_json()["result"]

    def request(self, method, params=None, **headers):
        self._id += 1
        msg = {"jsonrpc": "2.0", "id": self._id, "method": method}
        if params is not None:
            msg["params"] = params
        return self.post(msg, **headers)

    def rpc(self, method, params=None):
        """The JSON-RPC response body of a request answered with JSON."""
        r = self.request(method, params, Accept="application/json")
        assert r.status_code == 200, (r.status_code, r.data)
        return r.get_json()

    def call(self, tool, arguments=None):
        """A tools/call result dict (asserting it was not a JSON-RPC error)."""
        body = self.rpc("tools/call", {"name": tool, "arguments": arguments or {}})
        assert "result" in body, body
        return body["result"]

    def data(self, tool, arguments=None):
        """The JSON payload of a successful tool call."""
        result = self.call(tool, arguments)
        assert result["isError"] is False, result
        return json.loads(result["content"][0]["text"])

    def error_text(self, tool, arguments=None) -> str:
        result = self.call(tool, arguments)
        assert result["isError"] is True, result
        return result["content"][0]["text"]


@pytest.fixture
def client(demo_app):
    c = McpTestClient(demo_app)
    c.initialize()
    return c


# ---------------------------------------------------------------------------- live gunicorn
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll(predicate, deadline_s: float = 15.0, every: float = 0.02):
    """``predicate()``'s first truthy value, asked every ``every`` seconds; AssertionError
    when none comes before the deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met before the deadline")


def wait_http(url: str, deadline_s: float = 30.0) -> None:
    import urllib.request
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not come up: {last}")


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a server started with ``start_new_session=True``: SIGTERM to its process group
    (gunicorn's master and workers), SIGKILL after 15 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


class LiveServer:
    """A real ``mcp-flask serve`` (gunicorn + gevent workers) on a loopback port."""

    def __init__(self, config_text: str, workdir: str, workers: int = 1, env=None, app: str | None = None):
        """``app``: a WSGI app under tests/ (``"fixture_service:app"``) run by gunicorn with the
        project's settings, instead of ``mcp-flask serve``'s own app."""
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = os.path.join(workdir, "mcp-flask.toml")
        with open(self.config, "w") as fh:
            fh.write(config_text)
        self.log = open(os.path.join(workdir, "server.log"), "wb")
        e = dict(os.environ)
        e.update({"MCP_FLASK_DATA_DIR": workdir, "PYTHONUNBUFFERED": "1"})
        e.update(env or {})
        if app is None:
            argv = [sys.executable, "-m", "mcp_flask.cli", "serve", "--config", self.config,
                    "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers)]
        else:
            e.update({"MCP_FLASK_CONFIG": self.config, "MCP_FLASK_BIND": f"127.0.0.1:{self.port}",
                      "MCP_FLASK_WORKERS": str(workers)})
            argv = [sys.executable, "-m", "gunicorn", "-c", "python:mcp_flask.gunicorn_conf",
                    "--pythonpath", os.path.join(ROOT, "tests"), app]
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=e, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            wait_http(self.base + "/healthz")
        except RuntimeError:
            self.stop()
            raise

    def url(self, service: str = "demo") -> str:
        return f"{self.base}/mcp/{service}"

    def stop(self) -> None:
        stop_group(self.proc)
        self.log.close()

    def output(self) -> str:
        self.log.flush()
        with open(self.log.name, "rb") as fh:
            return fh.read().decode("utf-8", "replace")


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, demo_template):
    """One gunicorn server with the demo service for the whole run (read-mostly tests)."""
    work = str(tmp_path_factory.mktemp("live"))
    db = os.path.join(work, "demo.db")
    shutil.copyfile(demo_template, db)
    server = LiveServer(f'[services.demo]\nurl = "sqlite:///{db}"\n', work)
    yield server
    server.stop()


@pytest.fixture
def start_server(tmp_path):
    """Start extra gunicorn servers with custom configs; all stopped after the test."""
    servers = []

    def start(config_text: str, workers: int = 1, env=None) -> LiveServer:
        d = tempfile.mkdtemp(dir=tmp_path)
        s = LiveServer(config_text, d, workers=workers, env=env)
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.stop()


# ---------------------------------------------------------------------------- no skips in CI
_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(f"{report.nodeid}: {report.longrepr[2] if isinstance(report.longrepr, tuple) else ''}")


def pytest_sessionfinish(session, exitstatus):
    """Where CI requires every service (MCP_FLASK_REQUIRE_DBS=1), a skipped test fails the run:
    a PostgreSQL or MySQL test that quietly skips would otherwise count as passing."""
    if os.environ.get("MCP_FLASK_REQUIRE_DBS") == "1" and _skipped:
        session.exitstatus = 1
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"FAILED: {len(_skipped)} test(s) skipped where CI requires everything:", red=True)
            for line in _skipped[:50]:
                reporter.write_line("  " + line)
