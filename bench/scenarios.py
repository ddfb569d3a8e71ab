"""Server-side scenarios: the load matrix, large fetches with peak RSS, slow-query isolation, profiling.

Each function takes a running ``BenchServer`` (and the service name) and returns
plain dicts that ``run.py`` prints and stores.  The queries mirror ``floors``:
the 10-row read is ``get_table_data`` on ``bench_items`` with
``filter = "id > 500000 and qty >= 0"``, ``order = "id"``, ``limit = 10`` (an
indexed range scan returning 10 rows, the same SQL as ``floors.small_query``).
"""
from __future__ import annotations

import collections
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

from . import floors, loadgen
from .client import McpClient
from .server import CpuMeter

TABLE = "bench_items"
#: The 10-row read starts in the middle of the table (rows // 2; 500000 for the full table).
START_ID = 500000


def small_args(start_id: int = START_ID) -> dict:
    """The 10-row call: an indexed range on the key plus a second condition, ordered by the key."""
    return {"tableName": TABLE, "filter": f"id > {start_id} and qty >= 0", "order": "id", "limit": 10}


def large_args(rows: int) -> dict:
    return {"tableName": TABLE, "order": "id", "limit": rows}


# ---------------------------------------------------------------------------- a Python load generator
def run_python_load(url: str, body: str, connections: int, seconds: float, sessions, version: str,
                    extra_headers: dict | None = None) -> dict:
    """Fallback when wrk is missing: threads with keep-alive connections (client-bound near 2k/s)."""
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    lat: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    end = [0.0]
    gate = threading.Event()

    def worker(i):
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        headers = {"Content-Type": "application/json", "Accept": "application/json", "Host": "127.0.0.1"}
        if sessions:
            headers["Mcp-Session-Id"] = sessions[i % len(sessions)]
        if version:
            headers["MCP-Protocol-Version"] = version
        headers.update(extra_headers or {})
        gate.wait()
        n = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= end[0]:
                break
            n += 1
            try:
                conn.request("POST", parts.path, body.replace("__ID__", str(n)), headers)
                r = conn.getresponse()
                data = r.read()
                if r.status != 200 or b'"isError":true' in data or b'"error":{"code"' in data:
                    errors[i] += 1
            except Exception:  # noqa: BLE001 - count and reconnect
                errors[i] += 1
                conn.close()
            lat[i].append(time.perf_counter() - t0)
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    end[0] = began + seconds
    gate.set()
    for t in threads:
        t.join()
    out = floors.summarize([x for xs in lat for x in xs], time.perf_counter() - began, sum(errors))
    out["connections"] = connections
    out["loadgen"] = "python"
    return out


def drive(url: str, body: str | None, connections: int, seconds: float, sessions=(), version: str = "",
          headers: dict | None = None) -> dict:
    """One load run with wrk, or the Python fallback when wrk is not installed."""
    if loadgen.wrk_path():
        out = loadgen.run_wrk(url, body, connections, seconds, sessions, version, headers=headers)
        out["loadgen"] = "wrk"
        return out
    if body is None:
        body = ""
    return run_python_load(url, body, connections, seconds, sessions, version, headers)


# ---------------------------------------------------------------------------- scenarios
def ceiling(server, service: str, seconds: float, connections=(16,)) -> dict:
    """What the load generator + server reach on trivial requests: /healthz and an MCP ping."""
    out = {}
    sessions, version = loadgen.open_sessions(server.url(service), max(connections))
    for c in connections:
        if loadgen.wrk_path():
            out[f"healthz c{c}"] = drive(server.base + "/healthz", None, c, seconds)
        out[f"ping c{c}"] = drive(server.url(service), loadgen.PING_BODY, c, seconds, sessions[:c], version)
    return out


def check_small_call(url: str, start_id: int = START_ID) -> int:
    """Run the 10-row call once and check it really returns 10 rows (before timing it)."""
    from .client import tool_payload
    c = McpClient(url)
    try:
        payload = tool_payload(c.call("get_table_data", small_args(start_id)))
    finally:
        c.close()
    rows = payload.get("resource", [])
    if len(rows) != 10 or rows[0].get("id") != start_id + 1:
        raise RuntimeError(f"the 10-row call returned {len(rows)} rows starting at {rows[:1]}")
    return len(rows)


def load_matrix(server, service: str, seconds: float, concurrency=(1, 16, 64), start_id: int = START_ID) -> dict:
    """calls/s, p50, p99 and errors of the 10-row get_table_data at each concurrency."""
    url = server.url(service)
    check_small_call(url, start_id)
    sessions, version = loadgen.open_sessions(url, max(concurrency))
    body = loadgen.tool_call_body("get_table_data", small_args(start_id))
    drive(url, body, min(concurrency), min(seconds, 1.0), sessions[:1], version)  # warm-up
    out = {}
    for c in concurrency:
        out[c] = _measured(server, lambda: drive(url, body, c, seconds, sessions[:c], version))
    return out


def _measured(server, run) -> dict:
    """``run()``'s result plus the server's peak RSS and its workers' CPU time per call:
    microseconds of worker CPU per call hardly depend on what else the machine is doing,
    unlike calls/s on a shared 2-core box."""
    server.rss.reset()
    meter = CpuMeter(server.worker_pids)
    r = run()
    split = meter.per_call(r.get("calls") or 0)
    r["rss_peak_mb"] = server.rss.peak() / 1024
    r["cpu_us_per_call"] = split.get("server")
    r["cpu_split_us"] = split
    return r


def served_by(start_server, service: str, seconds: float, start_id: int = START_ID,
              connections: int = 16) -> dict:
    """The 10-row call at ``connections`` on a server from ``start_server()`` (the run's settings
    under another interpreter), for the report's comparison line: ``{"small": {c: result}}``,
    or ``{"error": ...}`` when it could not be measured."""
    try:
        server = start_server()
    except Exception as exc:  # noqa: BLE001 - the comparison line says why it is missing
        return {"error": f"{type(exc).__name__}: {exc}"}
    try:
        return {"small": load_matrix(server, service, seconds, (connections,), start_id)}
    except Exception as exc:  # noqa: BLE001
        server.keep = True
        return {"error": f"{type(exc).__name__}: {exc} (server log kept: {server.log_path})"}
    finally:
        server.stop()


def stateless_matrix(server, service: str, seconds: float, concurrency=(1, 16, 64),
                     start_id: int = START_ID) -> dict:
    """The same 10-row call as 2026-07-28 stateless requests: no initialize, no session lookup."""
    from urllib.parse import urlsplit
    url = server.url(service)
    body = loadgen.tool_call_body("get_table_data", small_args(start_id), stateless=True)
    headers = loadgen.stateless_headers("get_table_data")
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("POST", parts.path, body.replace("__ID__", "1"),
                 {"Content-Type": "application/json", "Accept": "application/json", "Host": "127.0.0.1",
                  "MCP-Protocol-Version": loadgen.STATELESS_VERSION, **headers})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    if r.status != 200 or b'"isError":false' not in data:
        return {"skipped": f"stateless call failed: HTTP {r.status}: {data[:200]!r}"}
    out = {}
    for c in concurrency:
        out[c] = _measured(server, lambda: drive(url, body, c, seconds, (), loadgen.STATELESS_VERSION, headers))
    return out


def _timed_call(client: McpClient, args: dict) -> tuple[float, int]:
    t0 = time.perf_counter()
    status, body = client.call_raw("get_table_data", args)
    elapsed = time.perf_counter() - t0
    if status != 200 or b'"isError":false' not in body:
        raise RuntimeError(f"large fetch failed: HTTP {status}: {body[:300]!r}")
    return elapsed, len(body)


def large_fetches(server, service: str, sizes, repeats: int = 3) -> dict:
    """Median time and the server tree's peak RSS for one call fetching each size."""
    from .client import tool_payload
    url = server.url(service)
    client = McpClient(url)
    out = {}
    try:
        for n in sizes:
            payload = tool_payload(client.call("get_table_data", large_args(n)))  # warm + verify
            got = len(payload.get("resource", []))
            if got != n:
                raise RuntimeError(f"{service}: asked for {n} rows, got {got}")
            del payload
            base = server.rss.reset()
            times, size = [], 0
            for _ in range(repeats):
                t, size = _timed_call(client, large_args(n))
                times.append(t)
            peak = server.rss.peak()
            out[n] = {"ms": statistics.median(times) * 1000, "all_ms": [t * 1000 for t in times],
                      "bytes": size, "rss_before_mb": base / 1024, "rss_peak_mb": peak / 1024,
                      "rss_growth_mb": (peak - base) / 1024}
    finally:
        client.close()
    return out


def concurrent_fetch_rss(server, service: str, rows: int = 10000, clients: int = 16) -> dict:
    """Peak RSS growth while ``clients`` calls of ``rows`` rows run at once."""
    url = server.url(service)
    conns = [McpClient(url) for _ in range(clients)]
    gate = threading.Barrier(clients + 1)
    errors = []
    times = []

    def one(c):
        gate.wait()
        try:
            times.append(_timed_call(c, large_args(rows))[0])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(str(exc)[:200])

    threads = [threading.Thread(target=one, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    base = server.rss.reset()
    gate.wait()
    for t in threads:
        t.join()
    peak = server.rss.peak()
    for c in conns:
        c.close()
    return {"clients": clients, "rows": rows, "rss_before_mb": base / 1024, "rss_peak_mb": peak / 1024,
            "rss_growth_mb": (peak - base) / 1024, "errors": len(errors),
            "wall_ms": max(times) * 1000 if times else None, "error_sample": errors[:1]}


def isolation(server, service: str, seconds: float, slow_count: int = 5, connections: int = 16,
              start_id: int = START_ID) -> dict:
    """p99 of fast calls while ``slow_count`` 2-second calls are in flight, vs idle p99.

    The slow call reads the view ``bench_slow`` (``seed``), which sleeps 2 seconds
    inside the database without using CPU: what is measured is whether a call
    waiting on the database holds up the others in the same worker (gevent
    cooperation: psycogreen for psycopg2, patched sockets for PyMySQL), not how
    the database copes with CPU-heavy queries on a 2-core box.
    """
    url = server.url(service)
    probe = McpClient(url)
    slow_tool, slow_args = "get_table_data", {"tableName": "bench_slow"}
    t0 = time.perf_counter()
    status, body = probe.call_raw(slow_tool, slow_args)
    slow_alone = time.perf_counter() - t0
    probe.close()
    if status != 200 or b'"isError":false' not in body:
        return {"skipped": f"slow call failed: HTTP {status}: {body[:200]!r}"}
    sessions, version = loadgen.open_sessions(url, connections)
    body_fast = loadgen.tool_call_body("get_table_data", small_args(start_id))
    idle = drive(url, body_fast, connections, seconds, sessions, version)

    stop = threading.Event()
    slow_done = []
    slow_clients = [McpClient(url) for _ in range(slow_count)]

    def slow_loop(c):
        while not stop.is_set():
            t = time.perf_counter()
            st, b = c.call_raw(slow_tool, slow_args)
            slow_done.append((time.perf_counter() - t, st == 200 and b'"isError":false' in b))

    threads = [threading.Thread(target=slow_loop, args=(c,), daemon=True) for c in slow_clients]
    for t in threads:
        t.start()
    time.sleep(min(0.5, slow_alone / 2))  # let the slow calls get into the database first
    busy = drive(url, body_fast, connections, seconds, sessions, version)
    stop.set()
    for t in threads:
        t.join(slow_alone * 3 + 30)
    for c in slow_clients:
        c.close()
    return {"slow_call": f"{slow_tool} {json.dumps(slow_args)}", "slow_alone_ms": slow_alone * 1000,
            "slow_calls_completed": len(slow_done), "slow_calls_ok": sum(1 for _, ok in slow_done if ok),
            "idle": idle, "with_slow": busy,
            "p99_ratio": (busy["p99_ms"] / idle["p99_ms"]) if idle.get("p99_ms") else None}


def profile(server, service: str, seconds: float, out_dir: str, stamp: str, connections: int = 16,
            start_id: int = START_ID) -> dict:
    """py-spy samples of the worker under the c16 load; inclusive/self shares of the hottest frames."""
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(spy):
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    worker = server.worker_pids()[0]
    url = server.url(service)
    sessions, version = loadgen.open_sessions(url, connections)
    body = loadgen.tool_call_body("get_table_data", small_args(start_id))
    raw = os.path.join(out_dir, f"profile-{stamp}.txt")
    svg = os.path.join(out_dir, f"profile-{stamp}.svg")
    dur = max(2, int(seconds))
    procs = [subprocess.Popen([spy, "record", "--pid", str(worker), "--duration", str(dur), "--rate", "250",
                               "--format", fmt, "--output", path, "--nonblocking"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for fmt, path in (("raw", raw), ("flamegraph", svg))]
    time.sleep(0.3)
    load = drive(url, body, connections, dur + 1, sessions, version)
    for p in procs:
        p.wait(dur + 30)
    if not os.path.exists(raw):
        return {"skipped": "py-spy produced no output: " + procs[0].stderr.read().decode()[-300:]}
    stacks = parse_collapsed(raw)
    return {"load": load, "raw": raw, "svg": svg if os.path.exists(svg) else None, **stacks}


def parse_collapsed(path: str, top: int = 30) -> dict:
    """Inclusive and self sample shares per frame from py-spy's collapsed-stack output."""
    inclusive: collections.Counter = collections.Counter()
    self_: collections.Counter = collections.Counter()
    total = 0
    with open(path) as fh:
        for line in fh:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            n = int(count)
            total += n
            frames = [_short(f) for f in stack.split(";")]
            for f in set(frames):
                inclusive[f] += n
            self_[frames[-1]] += n
    if not total:
        return {"samples": 0, "inclusive": [], "self": []}
    return {"samples": total,
            "inclusive": [(f, round(100 * n / total, 1)) for f, n in inclusive.most_common(top)],
            "self": [(f, round(100 * n / total, 1)) for f, n in self_.most_common(top)]}


def _short(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py)``: one entry per function, not per line."""
    name, _, loc = frame.partition(" (")
    loc = loc.rstrip(")")
    file = loc.rsplit(":", 1)[0]
    parts = file.split("/")
    short = "/".join(parts[-2:]) if "mcp_flask" in parts else parts[-1]
    return f"{name} ({short})"
