"""A minimal blocking MCP client (keep-alive ``http.client``) for set-up calls and large fetches.

Used to create sessions for wrk, to time single large ``get_table_data`` calls,
and to run the slow calls of the isolation scenario.  Not used for throughput
(wrk does that).
"""
from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

VERSION = "2025-11-25"


class McpClient:
    """One MCP session over one keep-alive connection (``stateless`` skips initialize)."""

    def __init__(self, url: str, stateless: bool = False, version: str = VERSION, timeout: float = 120.0):
        parts = urlsplit(url)
        self.path = parts.path
        self.host = parts.netloc
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        self.version = version
        self.session_id = None
        self._id = 0
        if not stateless:
            result = self.request("initialize", {"protocolVersion": version, "capabilities": {},
                                                 "clientInfo": {"name": "mcpf-bench", "version": "1"}})
            self.version = result["result"]["protocolVersion"]
            self.notify("notifications/initialized")

    def _headers(self) -> dict:
        h = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
             "Host": "127.0.0.1"}
        if self.session_id:
            h["Mcp-Session-Id"] = self.session_id
            h["MCP-Protocol-Version"] = self.version
        return h

    def post(self, payload: dict) -> tuple[int, bytes]:
        self.conn.request("POST", self.path, json.dumps(payload), self._headers())
        r = self.conn.getresponse()
        body = r.read()
        sid = r.getheader("Mcp-Session-Id")
        if sid and not self.session_id:
            self.session_id = sid
        if r.getheader("Content-Type", "").startswith("text/event-stream"):
            body = _last_sse_data(body)
        return r.status, body

    def request(self, method: str, params: dict | None = None) -> dict:
        self._id += 1
        msg = {"jsonrpc": "2.0", "id": self._id, "method": method}
        if params is not None:
            msg["params"] = params
        status, body = self.post(msg)
        if status != 200:
            raise RuntimeError(f"{method}: HTTP {status}: {body[:300]!r}")
        return json.loads(body)

    def notify(self, method: str) -> None:
        status, _ = self.post({"jsonrpc": "2.0", "method": method})
        if status != 202:
            raise RuntimeError(f"{method}: HTTP {status}")

    def call_raw(self, tool: str, arguments: dict) -> tuple[int, bytes]:
        """One tools/call; the HTTP status and raw body (for timing without parsing)."""
        self._id += 1
        return self.post({"jsonrpc": "2.0", "id": self._id, "method": "tools/call",
                          "params": {"name": tool, "arguments": arguments}})

    def call(self, tool: str, arguments: dict) -> dict:
        status, body = self.call_raw(tool, arguments)
        if status != 200:
            raise RuntimeError(f"tools/call {tool}: HTTP {status}: {body[:300]!r}")
        return json.loads(body)

    def tools(self) -> list[str]:
        return [t["name"] for t in self.request("tools/list", {})["result"]["tools"]]

    def close(self) -> None:
        self.conn.close()


def _last_sse_data(body: bytes) -> bytes:
    data = [line[5:].strip() for line in body.split(b"\n") if line.startswith(b"data:")]
    return data[-1] if data else b""


def tool_payload(response: dict) -> dict:
    """The JSON payload of a successful tools/call response (raises on errors)."""
    if "error" in response:
        raise RuntimeError(f"JSON-RPC error: {response['error']}")
    result = response["result"]
    if result.get("isError"):
        raise RuntimeError(f"tool error: {result['content'][0]['text'][:300]}")
    if "structuredContent" in result:
        return result["structuredContent"]
    return json.loads(result["content"][0]["text"])
