"""The server under test: ``mcp-flask serve`` (gunicorn, gevent workers) on a loopback port,
its process tree, and an RSS sampler.

``BenchServer`` writes a TOML config with one service per benchmark database
(``pg``, ``mysql``, ``sqlite``; ``max_rows`` raised to 100,000 for the large
fetches, pools sized for 64 connections), starts ``mcp-flask serve`` exactly
as an operator would, and waits for ``/healthz``.

``RssSampler`` polls ``VmRSS`` of the whole tree (master + workers) every 20 ms
in a background thread; ``peak()`` is the highest total seen since ``reset()``.
Workers' own ``VmHWM`` (kernel-tracked peak) is read too.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/<pid>/task/*/children)."""
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(x) for x in fh.read().split()]
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += children(p)
    return pids


#: Process names (``/proc/<pid>/comm`` prefixes) of the database servers whose CPU a call costs.
DB_PROCESS_NAMES = ("postgres", "mariadbd", "mysqld")


def cpu_s(pids) -> float:
    """CPU seconds (user + system) ``pids`` have used so far (from /proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])      # utime, stime (clock ticks)
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def db_pids() -> list[int]:
    """The database servers' processes (every PostgreSQL backend, MariaDB/MySQL)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as fh:
                    if fh.read().startswith(DB_PROCESS_NAMES):
                        out.append(int(entry))
            except OSError:
                pass
    return out


class CpuMeter:
    """Where the CPU of a load run went, per call: the server under test, the database
    servers, the load generator (this process's waited-for children: wrk) and the whole
    machine (/proc/stat).  On a 2-core box shared by all of them, calls/s is set by the
    sum, so a server is only as fast as its share of it."""

    def __init__(self, server_pids):
        self.server_pids = server_pids          # a callable: the pids now
        self.start = self._snap()

    def _snap(self) -> dict:
        import resource
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open("/proc/stat") as fh:
            cpu = [int(x) for x in fh.readline().split()[1:8]]
        tick = os.sysconf("SC_CLK_TCK")
        return {"server": cpu_s(self.server_pids()), "database": cpu_s(db_pids()),
                "loadgen": ru.ru_utime + ru.ru_stime, "busy": (sum(cpu) - cpu[3]) / tick}

    def per_call(self, calls: int) -> dict:
        """µs of CPU per call of each part since the meter started (None without calls)."""
        end = self._snap()
        if not calls:
            return {}
        return {k: round((end[k] - self.start[k]) / calls * 1e6, 1) for k in end}


def status_kb(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` field in kB (VmRSS, VmHWM); 0 if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssSampler:
    """Peak resident memory of a process tree, polled every ``interval`` seconds."""

    def __init__(self, root_pid: int, interval: float = 0.02):
        self.root = root_pid
        self.interval = interval
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def current_kb(self) -> int:
        return sum(status_kb(p, "VmRSS") for p in tree(self.root))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            total = self.current_kb()
            if total > self._peak:
                self._peak = total

    def reset(self) -> int:
        """Start a new measurement window; the tree's RSS now (kB)."""
        now = self.current_kb()
        self._peak = now
        return now

    def peak(self) -> int:
        return max(self._peak, self.current_kb())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(1)


def service_block(name: str, url: str, pool: int) -> str:
    return (f'[services.{name}]\nurl = "{url}"\nmax_rows = 100000\npool_size = {pool}\n'
            f'pool_timeout = 30.0\nmax_concurrent_calls = 64\nstatement_timeout = 60.0\n'
            f'description = "benchmark {name}"\n')


class BenchServer:
    """One ``mcp-flask serve`` process serving the benchmark services (under ``python``:
    default the harness's own interpreter; the checkout is its working directory, so
    ``-m mcp_flask.cli`` serves the checkout's code whatever that interpreter has installed)."""

    def __init__(self, services: dict, workers: int = 1, redis_url: str = "", pool: int = 70,
                 env: dict | None = None, python: str | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.dir = tempfile.mkdtemp(prefix="mcpf-bench-")
        #: Keep ``dir`` (config and server log) after ``stop``: set when something failed, so
        #: the log can be read; otherwise it goes (its audit lines reach ~20 MB per load point).
        self.keep = False
        self.config = os.path.join(self.dir, "bench.toml")
        server = [f'[server]\nbind = "127.0.0.1:{self.port}"\nlog_level = "warning"\n',
                  f'data_dir = "{self.dir}"\n', 'session_ttl = 3600.0\n']
        if redis_url:
            server.append(f'redis_url = "{redis_url}"\n')
        with open(self.config, "w") as fh:
            fh.write("".join(server) + "\n" + "\n".join(service_block(n, u, pool) for n, u in services.items()))
        self.log_path = os.path.join(self.dir, "server.log")
        self._log = open(self.log_path, "wb")
        e = dict(os.environ)
        e.update({"PYTHONUNBUFFERED": "1"})
        e.update(env or {})
        self.proc = subprocess.Popen(
            [python or sys.executable, "-m", "mcp_flask.cli", "serve", "--config", self.config,
             "--workers", str(workers)],
            cwd=ROOT, env=e, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.workers = workers
        try:
            self._wait_ready()
        except Exception:
            self.keep = True
            self.stop()
            raise
        self.rss = RssSampler(self.proc.pid)

    def _wait_ready(self, deadline_s: float = 30.0) -> None:
        end = time.monotonic() + deadline_s
        last = None
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()[-2000:]}")
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as r:
                    if r.status == 200 and len(children(self.proc.pid)) >= self.workers:
                        return
            except Exception as exc:  # noqa: BLE001 - poll until the deadline
                last = exc
            time.sleep(0.1)
        raise RuntimeError(f"server did not come up: {last}\n{self.output()[-2000:]}")

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid)

    def worker_cpu_s(self) -> float:
        """CPU seconds (user + system) the workers have used so far (from /proc/<pid>/stat)."""
        return cpu_s(self.worker_pids())

    def worker_hwm_kb(self) -> int:
        return sum(status_kb(p, "VmHWM") for p in self.worker_pids())

    def url(self, service: str) -> str:
        return f"{self.base}/mcp/{service}"

    def output(self) -> str:
        self._log.flush()
        with open(self.log_path, "rb") as fh:
            return fh.read().decode("utf-8", "replace")

    def stop(self) -> None:
        if getattr(self, "rss", None):
            self.rss.stop()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
