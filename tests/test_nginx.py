"""The deployment topology for real: nginx (the shipped site config) in front of two
gunicorn instances (two gevent workers each) sharing sessions through Redis.

Complete MCP sessions run through nginx with the official Python SDK client
(mcp 2.x, ``mode="legacy"``): initialize on one instance, calls and the GET
stream spread across both (nginx's access log names the upstream of every
request), a notification published on one side reaching the GET stream held by
the other, one instance stopped mid-session while the session carries on
through the other.  Metrics of both instances are scraped and must account for
every call exactly; the structured logs carry nginx's request ids.

nginx runs as a foreground process with a config written to a temp dir (pid,
logs, temp paths there), loopback ports only.  CI installs it with
``apt-get install -y nginx``.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import ROOT, free_port, wait_http
from redis_helpers import RedisScope

pytestmark = [pytest.mark.gunicorn, pytest.mark.slow]

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
SITE = os.path.join(ROOT, "deploy", "nginx", "mcp-flask.conf")


class Nginx:
    """nginx in the foreground on a loopback port, proxying to ``upstreams`` with the shipped site."""

    def __init__(self, workdir: str, upstreams: list[str]):
        self.dir = workdir
        self.port = free_port()
        site = open(SITE).read()
        servers = "".join(f"    server {u} max_fails=1 fail_timeout=10s;\n" for u in upstreams)
        site, n = re.subn(r"(?m)^    server 127\.0\.0\.1:800\d[^\n]*\n", "", site)
        assert n == 2, "the shipped upstream block changed; update this test"
        site = site.replace("upstream mcp_flask {\n", "upstream mcp_flask {\n" + servers, 1)
        site, n = re.subn(r"(?m)^    listen 80;", f"    listen 127.0.0.1:{self.port};", site)
        assert n == 1
        self.access_log = os.path.join(workdir, "access.log")
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = f"""{user}worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log info;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {workdir}/client_temp;
    proxy_temp_path {workdir}/proxy_temp;
    fastcgi_temp_path {workdir}/fastcgi_temp;
    uwsgi_temp_path {workdir}/uwsgi_temp;
    scgi_temp_path {workdir}/scgi_temp;
    log_format upstreams '$request_method|$uri|$status|$upstream_addr|$mcp_request_id|$upstream_status';
    access_log {self.access_log} upstreams;
{site}
}}
"""
        self.conf = os.path.join(workdir, "nginx.conf")
        with open(self.conf, "w") as fh:
            fh.write(conf)
        check = subprocess.run([NGINX, "-t", "-p", workdir, "-e", os.path.join(workdir, "error.log"),
                                "-c", self.conf], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen([NGINX, "-p", workdir, "-e", os.path.join(workdir, "error.log"),
                                      "-c", self.conf, "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{self.port}/healthz")

    def url(self, service="demo") -> str:
        return f"http://127.0.0.1:{self.port}/mcp/{service}"

    def log_lines(self) -> list[list[str]]:
        with open(self.access_log) as fh:
            # upstream_addr lists every instance tried ("a:1, b:2") when nginx failed over.
            return [line.rstrip("\n").split("|") for line in fh if line.strip()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def redis_scope():
    s = RedisScope()
    yield s
    s.cleanup()


@pytest.fixture
def topology(start_server, demo_db, redis_scope, tmp_path):
    if NGINX is None:
        pytest.skip("nginx is not installed (CI: apt-get install -y nginx)")
    env = {"MCP_FLASK_REDIS_URL": redis_scope.url, "MCP_FLASK_REDIS_PREFIX": redis_scope.prefix,
           "MCP_FLASK_LOG_FORMAT": "json", "MCP_FLASK_GRACEFUL_TIMEOUT": "10"}
    config = f'[services.demo]\nurl = "sqlite:///{demo_db}"\n'
    a = start_server(config, workers=2, env=env)
    b = start_server(config, workers=2, env=env)
    ngx_dir = tmp_path / "nginx"
    ngx_dir.mkdir()
    ngx = Nginx(str(ngx_dir), [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
    yield ngx, a, b
    ngx.stop()


def scrape(server) -> str:
    import httpx
    return httpx.get(server.base + "/metrics", timeout=10).text


def metric(text: str, name: str, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


async def wait_for(predicate, deadline_s=15.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met before the deadline")


def test_sessions_through_nginx_across_two_instances(topology, redis_scope, demo_db):
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from mcp_flask.redis_store import RedisSessionStore

    ngx, a, b = topology
    by_port = {str(a.port): a, str(b.port): b}
    seen = {"sid": None, "statuses": []}
    logs: list = []
    store = RedisSessionStore(redis_scope.url, ttl=600, prefix=redis_scope.prefix)

    async def on_response(response):
        sid = response.headers.get("mcp-session-id")
        if sid:
            seen["sid"] = sid
        seen["statuses"].append((response.request.method, response.status_code))

    async def on_log(params):
        logs.append(params.data)

    notes: list = []

    async def on_message(message):
        method = getattr(message, "method", None) or getattr(getattr(message, "root", None), "method", None)
        if method:
            notes.append(method)

    async def session():
        http = httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=60), event_hooks={"response": [on_response]})
        async with Client(streamable_http_client(ngx.url(), http_client=http), mode="legacy",
                          logging_callback=on_log, message_handler=on_message) as client:
            assert client.protocol_version == "2025-11-25"
            sid = seen["sid"]
            assert sid
            tools = await client.list_tools()
            assert "get_tables" in {t.name for t in tools.tools}
            phase1 = 12
            for _ in range(phase1 - 1):
                res = await client.call_tool("get_tables", {})
                assert res.is_error is False
            rows = await client.call_tool("get_table_data", {"tableName": "customers", "limit": 3})
            assert rows.is_error is False

            # A notification published on "another worker" (the store, as any worker would
            # publish it) reaches the GET stream, wherever nginx put it.
            store.publish(sid, {"jsonrpc": "2.0", "method": "notifications/message",
                                "params": {"level": "info", "logger": "test", "data": "cross-1"}})
            await wait_for(lambda: "cross-1" in logs)

            # A real server-initiated notification: a table appears, a refresh on whichever
            # instance nginx picks notices it, and the GET stream (wherever it is) is told.
            import sqlite3
            with sqlite3.connect(demo_db) as db:
                db.execute("CREATE TABLE appeared_in_test (id INTEGER PRIMARY KEY)")
            res = await client.call_tool("get_tables", {"refresh": True})
            assert res.is_error is False and "appeared_in_test" in res.content[0].text
            await wait_for(lambda: "notifications/resources/list_changed" in notes)

            # Both instances served this session (nginx's log names the upstream of each request).
            lines = [l for l in ngx.log_lines() if l[1] == "/mcp/demo"]
            used = {addr.rsplit(":", 1)[1] for l in lines for addr in l[3].split(", ") if addr != "-"}
            assert used == set(by_port), lines
            gets = [l for l in lines if l[0] == "GET"]
            assert gets or "cross-1" in logs

            # Metrics: both instances together account for every call exactly.
            texts = {p: scrape(s) for p, s in by_port.items()}
            total = sum(metric(t, "mcp_requests_total", service="demo", method="tools/call",
                               tool="get_tables", outcome="ok") for t in texts.values())
            assert total == phase1
            assert sum(metric(t, "mcp_requests_total", service="demo", method="initialize")
                       for t in texts.values()) == 1
            assert sum(metric(t, "mcp_rows_returned_total", service="demo", tool="get_table_data")
                       for t in texts.values()) == 3

            # Stop one instance mid-session: the session carries on through the other.
            b_count_before = metric(texts[str(b.port)], "mcp_requests_total", service="demo",
                                    method="tools/call", tool="get_tables", outcome="ok")
            a.stop()
            phase2 = 6
            for _ in range(phase2):
                res = await client.call_tool("get_tables", {})
                assert res.is_error is False
            store.publish(sid, {"jsonrpc": "2.0", "method": "notifications/message",
                                "params": {"level": "info", "logger": "test", "data": "cross-2"}})
            await wait_for(lambda: "cross-2" in logs, deadline_s=20)
            after = metric(scrape(b), "mcp_requests_total", service="demo", method="tools/call",
                           tool="get_tables", outcome="ok")
            assert after == b_count_before + phase2
            return sid

    try:
        sid = asyncio.run(session())
    finally:
        store.close()
    # The client's DELETE ended the session in Redis.
    assert store.r.exists(f"{redis_scope.prefix}s:{sid}") == 0
    assert logs.count("cross-1") == 1 and logs.count("cross-2") == 1
    assert all(status < 500 for _, status in seen["statuses"]), seen["statuses"]

    # Structured logs: JSON lines carrying nginx's request id, the session tag and the service.
    ids = {l[4] for l in ngx.log_lines() if l[1] == "/mcp/demo"}
    server_lines = []
    for s in (a, b):
        with open(s.log.name, encoding="utf-8", errors="replace") as fh:   # a is stopped already
            text = fh.read()
        for line in text.splitlines():
            if line.startswith("{"):
                rec = json.loads(line)
                # One line per request: the access line, or a tool call's audit record.
                if rec.get("logger") in ("mcp_flask.access", "mcp_flask.audit") and rec.get("service") == "demo":
                    server_lines.append(rec)
    assert server_lines
    assert {r["request_id"] for r in server_lines} <= ids
    assert all(r["session"] in ("", sid[:12]) for r in server_lines)
    assert sum(1 for r in server_lines if r["session"] == sid[:12]) >= 12
