"""wrk as the load generator: sessions prepared here, requests sent by ``mcp_session.lua``.

``run_wrk(url, body, connections, seconds, sessions)`` runs
``wrk -t T -c C -d Ns --latency -s mcp_session.lua`` (T = min(C, 2): the box has
two cores shared with the server and the databases) and returns
``{"calls_s", "p50_ms", "p99_ms", "errors", "calls", ...}``; ``errors`` adds
socket errors, non-200 answers, JSON-RPC errors and tool results with
``isError: true``.

wrk is C with LuaJIT: it drives ~10x more requests per core than a Python
client, so it is not the bottleneck here (the harness prints its ceiling
against trivial endpoints to show it).  Install: ``apt-get install -y wrk``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess

from .client import McpClient

LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mcp_session.lua")


def wrk_path() -> str | None:
    return shutil.which("wrk")


#: The stateless protocol version (2026-07-28): no initialize, the version rides in params._meta.
STATELESS_VERSION = "2026-07-28"


def stateless_meta() -> dict:
    return {"io.modelcontextprotocol/protocolVersion": STATELESS_VERSION,
            "io.modelcontextprotocol/clientCapabilities": {}}


def stateless_headers(tool: str) -> dict:
    """Headers a 2026-07-28 request must carry besides MCP-Protocol-Version."""
    return {"Mcp-Method": "tools/call", "Mcp-Name": tool}


def tool_call_body(tool: str, arguments: dict, stateless: bool = False) -> str:
    """A tools/call body with ``__ID__`` where the per-request id goes (``stateless``: 2026-07-28 _meta)."""
    params = {"name": tool, "arguments": arguments}
    if stateless:
        params["_meta"] = stateless_meta()
    body = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "tools/call", "params": params},
                      separators=(",", ":"))
    return body.replace('"id":0', '"id":__ID__', 1)


PING_BODY = '{"jsonrpc":"2.0","id":__ID__,"method":"ping"}'


def open_sessions(url: str, count: int) -> tuple[list[str], str]:
    """``count`` initialized MCP sessions on ``url``: their ids and the negotiated version."""
    ids, version = [], ""
    for _ in range(count):
        c = McpClient(url)
        ids.append(c.session_id)
        version = c.version
        c.close()
    return ids, version


def run_wrk(url: str, body: str | None, connections: int, seconds: float, sessions=(),
            version: str = "", threads: int | None = None, headers: dict | None = None) -> dict:
    """One wrk run; ``body`` None sends GET (for /healthz)."""
    exe = wrk_path()
    if exe is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    threads = threads or min(connections, 2)
    env = dict(os.environ)
    env.update({"MCPF_PATH": parts.path or "/", "MCPF_METHOD": "GET" if body is None else "POST",
                "MCPF_BODY": body or "", "MCPF_SESSIONS": ",".join(sessions),
                "MCPF_VERSION": version, "MCPF_THREADS": str(threads),
                "MCPF_HEADERS": "\n".join(f"{k}: {v}" for k, v in (headers or {}).items())})
    base = f"{parts.scheme}://{parts.netloc}"
    # A request still unanswered after half the run counts as a timeout error (wrk only
    # reports completed requests: without this a stalled server would show "0 errors").
    timeout = max(2, round(seconds / 2))
    cmd = [exe, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
           "--timeout", f"{timeout}s", "--latency", "-s", LUA, base]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("MCPF_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result (exit {out.returncode}): {out.stderr[-500:]} {out.stdout[-500:]}")
    r = json.loads(line[len("MCPF_RESULT "):])
    secs = r["duration_us"] / 1e6
    socket_errors = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
    return {"calls": r["requests"], "calls_s": r["requests"] / secs if secs else 0.0,
            "p50_ms": r["p50_us"] / 1000, "p90_ms": r["p90_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
            "max_ms": r["max_us"] / 1000,
            "errors": socket_errors + r["bad_status"] + r["rpc_errors"],
            "error_detail": {"socket": socket_errors, "http": r["bad_status"], "rpc": r["rpc_errors"]},
            "connections": connections, "threads": threads}
