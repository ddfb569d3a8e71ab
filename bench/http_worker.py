"""The HTTP cost of a gunicorn worker class: a constant WSGI app under wrk.

Starts gunicorn on loopback (2 workers) with ``app`` below (reads the POST body, answers
a constant ~200-byte JSON document), drives it with wrk (16 keep-alive connections,
POST with a small JSON body) and prints, per worker class, calls/s and the **worker
CPU µs per request**: the workers' utime+stime (``/proc/<pid>/stat``) before and
after each run divided by the requests wrk counted.  The CPU figure is what a request
costs the worker, and it hardly moves when wrk competes for the same cores.

Variants (``--variants``, comma-separated):

* ``gevent``: gunicorn's gevent worker, stock;
* ``gevent-tuned``: the same with the production tweaks of ``mcp_flask.worker_http``
  (one send per response, Date once a second, trusted-peer memo) and the production
  ``pre_request`` (``gevent.sleep(0)``), as ``mcp_flask.gunicorn_conf`` installs them;
* ``lean``: ``mcp_flask.lean_worker.LeanGeventWorker`` as ``mcp_flask.gunicorn_conf`` runs
  it: no ``pre_request`` yield (the lean loop yields by itself when the hub has not run
  since the connection's previous request; a constant app never waits, so it yields
  before every request but the first, as the tuned variant does).

Usage::

    /work/venv/bin/python bench/http_worker.py [--duration 4] [--repeat 3]
        [--variants gevent,gevent-tuned,lean] [--connections 16]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.server import children, cpu_s, free_port  # noqa: E402 - after the path is set

#: The constant answer: a JSON-RPC result of about 200 bytes.
BODY = json.dumps({"jsonrpc": "2.0", "id": 1, "result": {
    "content": [{"type": "text", "text": "x" * 96}], "isError": False,
    "meta": {"server": "bench"}}}).encode()
#: What wrk posts.
REQUEST_BODY = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"ping"}}'

_HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]


def app(environ, start_response):
    """The constant WSGI app: reads the request body, answers ``BODY``."""
    length = environ.get("CONTENT_LENGTH")
    if length:
        environ["wsgi.input"].read(int(length))
    start_response("200 OK", list(_HEADERS))
    return [BODY]


#: gunicorn settings per variant: (worker class, extra config lines).
_PRE_REQUEST = """
def pre_request(worker, req):
    from gevent import sleep
    sleep(0)
"""
_TUNED = """
def post_worker_init(worker):
    from gunicorn.http import parser, wsgi
    from mcp_flask.worker_http import install_http_date, one_send_response_class, peer_memo_request_class
    wsgi.Response = one_send_response_class()
    install_http_date()
    parser.RequestParser.mesg_class = peer_memo_request_class()
"""
VARIANTS = {
    "gevent": ("gevent", ""),
    "gevent-tuned": ("gevent", _PRE_REQUEST + _TUNED),
    "lean": ("mcp_flask.lean_worker.LeanGeventWorker", ""),
}

_WRK_LUA = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json"
""" % REQUEST_BODY


class Gunicorn:
    """gunicorn with ``app`` and one variant's settings on a free loopback port."""

    def __init__(self, variant: str, workers: int, tmp: str):
        worker_class, extra = VARIANTS[variant]
        self.port = free_port()
        conf = os.path.join(tmp, f"conf-{variant}.py")
        with open(conf, "w") as fh:
            fh.write("keepalive = 75\nloglevel = 'warning'\ncontrol_socket_disable = True\n" + extra)
        self.log = open(os.path.join(tmp, f"gunicorn-{variant}.log"), "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", conf, "-k", worker_class, "-w", str(workers),
             "-b", f"127.0.0.1:{self.port}", "bench.http_worker:app"],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        self.workers = workers
        self._wait()

    def _wait(self, deadline_s: float = 30.0) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}; see {self.log.name}")
            if len(children(self.proc.pid)) >= self.workers and self._answers():
                return
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not come up; see {self.log.name}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def worker_cpu_s(self) -> float:
        """CPU seconds the workers (not the master) have used so far."""
        return cpu_s(children(self.proc.pid))

    def stop(self) -> None:
        """SIGTERM gunicorn (SIGKILL after 15 s)."""
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def wrk(port: int, script: str, duration: float, connections: int) -> tuple[int, float]:
    """(requests, seconds) of one wrk run; raises when wrk saw errors."""
    out = subprocess.run(
        ["wrk", "-t", str(min(connections, 2)), "-c", str(connections), "-d", f"{max(1, round(duration))}s",
         "-s", script, f"http://127.0.0.1:{port}/mcp/bench"],
        capture_output=True, text=True, check=True).stdout
    m = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    if not m:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    seconds = float(m.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[m.group(3)]
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return int(m.group(1)), seconds


def measure(variant: str, args, tmp: str, script: str) -> dict:
    """One variant: warm-up, then ``args.repeat`` runs; every run's calls/s and µs/request."""
    server = Gunicorn(variant, args.workers, tmp)
    runs = []
    try:
        wrk(server.port, script, 1, args.connections)           # warm-up (imports, caches)
        for _ in range(args.repeat):
            before = server.worker_cpu_s()
            n, seconds = wrk(server.port, script, args.duration, args.connections)
            used = server.worker_cpu_s() - before
            runs.append({"rps": n / seconds, "cpu_us": used / n * 1e6, "requests": n})
    finally:
        server.stop()
    return {"variant": variant, "runs": runs,
            "rps": statistics.median(r["rps"] for r in runs),
            "cpu_us": statistics.median(r["cpu_us"] for r in runs)}


def main(argv=None) -> int:
    """Run the variants and print one line each (medians of the repeats)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", default="gevent,gevent-tuned,lean")
    p.add_argument("--duration", type=float, default=4.0, help="seconds per run")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", action="store_true", help="also print every run as JSON")
    args = p.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; known: {sorted(VARIANTS)}")
    with tempfile.TemporaryDirectory(prefix="http-worker-bench-") as tmp:
        script = os.path.join(tmp, "post.lua")
        with open(script, "w") as fh:
            fh.write(_WRK_LUA)
        results = [measure(v, args, tmp, script) for v in variants]
    print(f"constant app, {args.workers} workers, wrk c{args.connections}, {args.duration:g} s x {args.repeat} "
          f"(medians; worker CPU per request from /proc/<pid>/stat)")
    print(f"{'variant':<14} {'calls/s':>10} {'worker cpu µs/req':>18}   runs (µs)")
    for r in results:
        each = " ".join(f"{x['cpu_us']:.1f}" for x in r["runs"])
        print(f"{r['variant']:<14} {r['rps']:>10.0f} {r['cpu_us']:>18.1f}   {each}")
    if args.json:
        print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
