"""The peer: Google's MCP Toolbox for Databases serving the same PostgreSQL query (``--peers``).

Toolbox is a Go binary; npm ships it (``@toolbox-sdk/server@1.12.0``, the
platform package ``@toolbox-sdk/server-linux-x64`` holds ``bin/toolbox``), so
``npm install`` into ``~/.cache/mcp-flask-bench/toolbox`` is the whole set-up
(done on first use; the binary itself needs no Node at run time).

It serves a custom ``postgres-sql`` tool named ``get_table_data`` running the
exact SQL our server generates for the 10-row call (``floors.small_query``)
with the row limit as a parameter, so the large fetches use it too.  Its
Streamable HTTP is stateless: the same wrk script runs with no session header.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from . import seed
from .scenarios import START_ID, drive
from .server import CpuMeter, RssSampler, free_port

VERSION = "1.12.0"
DIR = os.path.join(seed.CACHE_DIR, "toolbox")
BINARY = os.path.join(DIR, "node_modules", "@toolbox-sdk", "server-linux-x64", "bin", "toolbox")

CONFIG = """sources:
  bench-pg:
    kind: postgres
    host: 127.0.0.1
    port: 5432
    database: {db}
    user: postgres
    password: "unused-trust-auth"
tools:
  get_table_data:
    kind: postgres-sql
    source: bench-pg
    description: Read bench_items rows after start_id (qty >= 0), ordered by id.
    parameters:
      - name: start_id
        type: integer
        description: rows with id greater than this
      - name: row_limit
        type: integer
        description: rows to return
    statement: >-
      SELECT id, name, qty, price, created_at, category_id FROM bench_items
      WHERE id > $1 AND qty >= 0 ORDER BY id LIMIT $2
"""


def install() -> str:
    """The Toolbox binary, installing it with npm on first use; raises with the reason if impossible."""
    if os.path.exists(BINARY):
        return BINARY
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed (needed once to fetch the Toolbox binary)")
    os.makedirs(DIR, exist_ok=True)
    out = subprocess.run([npm, "install", "--no-audit", "--no-fund", f"@toolbox-sdk/server@{VERSION}"],
                         cwd=DIR, capture_output=True, text=True, timeout=600)
    if not os.path.exists(BINARY):
        raise RuntimeError(f"npm install @toolbox-sdk/server@{VERSION} gave no linux-x64 binary: "
                           f"{out.stderr[-300:]}")
    return BINARY


def _body(start_id: int, limit: int, with_id: bool = True) -> str:
    body = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "tools/call",
                       "params": {"name": "get_table_data",
                                  "arguments": {"start_id": start_id, "row_limit": limit}}},
                      separators=(",", ":"))
    return body.replace('"id":0', '"id":__ID__', 1) if with_id else body


def run_toolbox(seconds: float, concurrency, sizes, start_id: int = START_ID) -> dict:
    """Toolbox's calls/s at each concurrency and its large-fetch times and RSS."""
    try:
        binary = install()
    except Exception as exc:  # noqa: BLE001 - the report says why the peer did not run
        return {"skipped": str(exc)}
    work = tempfile.mkdtemp(prefix="mcpf-toolbox-")
    cfg = os.path.join(work, "tools.yaml")
    with open(cfg, "w") as fh:
        fh.write(CONFIG.format(db=seed.DB_NAME))
    port = free_port()
    log = open(os.path.join(work, "toolbox.log"), "wb")
    proc = subprocess.Popen([binary, "--config", cfg, "--port", str(port), "--address", "127.0.0.1",
                             "--disable-version-check", "--disable-reload", "--log-level", "ERROR",
                             "--allowed-hosts", "127.0.0.1"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/mcp"
    failed = False      # a failed run keeps ``work`` (its config and log) for a look
    try:
        _wait(port, proc)
        rss = RssSampler(proc.pid)
        out: dict = {"version": VERSION, "idle_rss_mb": rss.current_kb() / 1024, "small": {}, "large": {}}
        drive(url, _body(start_id, 10), 1, 1.0)  # warm-up
        for c in concurrency:
            rss.reset()
            meter = CpuMeter(lambda: [proc.pid])
            r = drive(url, _body(start_id, 10), c, seconds)
            r["cpu_split_us"] = meter.per_call(r.get("calls") or 0)
            r["rss_peak_mb"] = rss.peak() / 1024
            out["small"][c] = r
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for n in sizes:
            _post(conn, _body(0, n, with_id=False))
            base = rss.reset()
            times, size = [], 0
            for _ in range(3):
                t0 = time.perf_counter()
                size = len(_post(conn, _body(0, n, with_id=False)))
                times.append(time.perf_counter() - t0)
            peak = rss.peak()
            out["large"][n] = {"ms": statistics.median(times) * 1000, "all_ms": [t * 1000 for t in times],
                               "bytes": size, "rss_growth_mb": (peak - base) / 1024}
        conn.close()
        rss.stop()
        return out
    except Exception as exc:  # noqa: BLE001 - keep our own results
        failed = True
        return {"skipped": f"toolbox run failed: {type(exc).__name__}: {exc} (its log: {log.name})"}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if not failed:
            shutil.rmtree(work, ignore_errors=True)


def _post(conn, body: str) -> bytes:
    conn.request("POST", "/mcp", body, {"Content-Type": "application/json", "Accept": "application/json",
                                        "Host": "127.0.0.1"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200 or b'"error"' in data[:200]:
        raise RuntimeError(f"toolbox answered HTTP {r.status}: {data[:200]!r}")
    return data


def _wait(port: int, proc, deadline_s: float = 20.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"toolbox exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            _post(conn, '{"jsonrpc":"2.0","id":1,"method":"ping"}')
            conn.close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("toolbox did not come up")
