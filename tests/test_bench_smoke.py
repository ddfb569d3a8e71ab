"""Smoke test of the benchmark harness (bench/): its modules import, and a --quick mini run
against a small SQLite table produces real numbers (not timing thresholds: the box is shared).

Runs the real thing: seeds a 20,000-row SQLite table in a temporary cache directory,
measures the raw-driver floor, starts ``mcp-flask serve`` under gunicorn with a gevent
worker and drives it with wrk (or the Python load generator when wrk is missing).
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_harness_modules_import():
    for name in ("seed", "floors", "server", "client", "loadgen", "scenarios", "peers", "interpreter", "run"):
        mod = importlib.import_module(f"bench.{name}")
        assert mod.__doc__, f"bench.{name} has no module docstring"


def test_collapsed_stack_parsing(tmp_path):
    from bench.scenarios import parse_collapsed
    raw = tmp_path / "p.txt"
    raw.write_text("main (a.py:1);handle (/x/mcp_flask/transport.py:10);execute (/x/mcp_flask/dialects/pg.py:5) 3\n"
                   "main (a.py:1);handle (/x/mcp_flask/transport.py:12) 1\n")
    out = parse_collapsed(str(raw))
    assert out["samples"] == 4
    assert dict(out["inclusive"])["handle (mcp_flask/transport.py)"] == 100.0
    assert dict(out["self"])["execute (dialects/pg.py)"] == 75.0


def test_quick_run_against_sqlite_produces_numbers(tmp_path):
    out = tmp_path / "result.json"
    env = dict(os.environ, MCPF_BENCH_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "run.py"), "--quick", "--db", "sqlite",
         "--rows", "20000", "--seconds", "1", "--concurrency", "1,4", "--sizes", "1000,3000",
         "--stateless", "--python", "current", "--output", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    db = res["databases"]["sqlite"]
    assert db["seed_s"] > 0                                  # seeded into the fresh cache dir
    for c in ("1", "4"):
        for enc in ("raw", "json", "orjson"):
            assert db["floor"]["small"][c][enc]["calls"] > 0
        ours = db["ours"]["small"][c]
        assert ours["calls"] > 0 and ours["calls_s"] > 0, ours
        assert ours["errors"] == 0, ours
        assert ours["p99_ms"] >= ours["p50_ms"] > 0
        # Where the CPU went: the workers and the load generator worked, the machine at least as much.
        split = ours["cpu_split_us"]
        assert split["server"] > 0 and split["loadgen"] > 0 and split["server"] == ours["cpu_us_per_call"]
        assert split["busy"] >= max(split["server"], split["loadgen"]) * 0.9
        stateless = db["ours"]["small_stateless"][c]          # 2026-07-28: no sessions
        assert stateless["calls"] > 0 and stateless["errors"] == 0, stateless
    for n in ("1000", "3000"):
        large = db["ours"]["large"][n]
        assert large["ms"] > 0 and large["bytes"] > int(n) and large["rss_peak_mb"] > 0
        assert db["floor"]["large"][n]["json"]["bytes"] > 0
    assert res["ceiling"]["ping c16"]["calls"] > 0
    assert res["machine"]["nproc"] >= 1 and res["machine"]["cpu"]
    # the printed table carries the same numbers
    assert "10-row get_table_data" in proc.stdout and "sqlite" in proc.stdout
    assert "CPU per call at c4" in proc.stdout       # c16 when measured, else the most connections


def test_load_generator_counts_tool_errors(tmp_path, monkeypatch):
    """A call answered with isError: true (unknown table) is counted as an error, never as a success."""
    monkeypatch.setattr("bench.seed.CACHE_DIR", str(tmp_path))
    from bench import loadgen, scenarios, seed
    from bench.server import BenchServer
    url, _ = seed.seed_sqlite(2000)
    server = BenchServer({"sqlite": url}, pool=4)
    try:
        sessions, version = loadgen.open_sessions(server.url("sqlite"), 2)
        bad = loadgen.tool_call_body("get_table_data", {"tableName": "no_such_table"})
        r = scenarios.drive(server.url("sqlite"), bad, 2, 1.0, sessions, version)
        assert r["calls"] > 0
        assert r["errors"] == r["calls"], r
        good = loadgen.tool_call_body("get_table_data", scenarios.small_args(1000))
        r = scenarios.drive(server.url("sqlite"), good, 2, 1.0, sessions, version)
        assert r["calls"] > 0 and r["errors"] == 0, r
    finally:
        server.stop()
    # Its config and log (audit lines of every call) go with it: repeated runs must not fill /tmp.
    assert not os.path.exists(server.dir)


def test_a_failed_run_keeps_the_server_log(tmp_path, monkeypatch):
    """``keep`` (set by run.py when a scenario failed) leaves the log in place to be read."""
    import shutil
    monkeypatch.setattr("bench.seed.CACHE_DIR", str(tmp_path))
    from bench import seed
    from bench.server import BenchServer
    url, _ = seed.seed_sqlite(2000)
    server = BenchServer({"sqlite": url}, pool=4)
    server.keep = True
    server.stop()
    try:
        assert os.path.exists(server.log_path)
    finally:
        shutil.rmtree(server.dir, ignore_errors=True)


def test_target_lines_judge_what_was_measured():
    """The report's target verdicts follow the numbers (both ways), and a scenario that did
    not run is "not measured", never "met"."""
    from bench.run import target_lines
    small = {"16": {"calls_s": 4000.0, "p99_ms": 9.0, "errors": 0}}
    res = {"databases": {"postgresql": {
        "ours": {"small": small,
                 "large": {"10000": {"ms": 20.0}, "100000": {"rss_growth_mb": 31.0}},
                 "concurrent_10k": {"rss_growth_mb": 5.0, "errors": 0},
                 "isolation": {"p99_ratio": 2.5, "slow_calls_ok": 15, "slow_calls_completed": 15}},
        "floor": {"large": {"10000": {"json": {"ms": 30.0}}}}}},
        "peers": {"small": {"16": {"calls_s": 5000.0}}}}
    text = "\n".join(target_lines(res))
    assert "4,000 vs 5,000 (0.80x): NOT MET" in text
    assert "9.00 ms, 0 errors: met" in text
    assert "20.0 vs 30.0 ms (0.67x): met" in text
    assert "+31.0 MB: NOT MET" in text
    assert "+5.0 MB, 0 errors: met" in text
    assert "x2.50: NOT MET" in text
    res["peers"]["small"]["16"]["calls_s"] = 3000.0
    assert "(1.33x): met" in "\n".join(target_lines(res))
    del res["peers"]
    assert "calls/s: not measured (--peers)" in "\n".join(target_lines(res))


def test_interpreter_pick_needs_a_clear_gain():
    """Another interpreter replaces the running one only when it is at least 5% faster."""
    from bench.interpreter import pick
    assert pick(1.0, {"/a": 0.97}) is None                  # within the workload's noise
    assert pick(1.0, {"/a": 0.90, "/b": 0.80}) == "/b"      # the fastest clear winner
    assert pick(1.0, {"/a": 0.90, "/b": 0.88}) == "/b"      # even when close to another winner
    assert pick(1.0, {"/a": None, "/b": 1.2}) is None       # failed or slower: stay


def test_probe_describes_interpreters():
    import platform
    from bench.interpreter import describe, probe, select
    me = probe(sys.executable)
    assert me["version"] == platform.python_version() and me["implementation"] == "CPython"
    assert isinstance(me["libpython"], bool)
    assert describe(me).startswith(f"{me['version']} at {sys.executable} (")
    assert probe("/nonexistent/python3") is None
    sel = select("current")
    assert sel["base"] is sel["running"] and sel["reason"] == "--python current"
    assert select(sys.executable)["base"]["executable"] == sys.executable


#: The interpreter this test run's venv was made from (a different environment, same binary).
BASE_PYTHON = os.path.join(sys.base_prefix, "bin", "python%d.%d" % sys.version_info[:2])


def run_under(tmp_path, cache, python: str, concurrency: str):
    """A --quick SQLite run of the harness with ``--python python`` and its own bench cache:
    the finished process and its results file (None when it wrote none)."""
    out = tmp_path / "result.json"
    env = dict(os.environ, MCPF_BENCH_CACHE=str(cache))
    env.pop("MCPF_BENCH_INTERPRETER", None)
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "run.py"), "--quick", "--db", "sqlite",
         "--rows", "20000", "--seconds", "1", "--concurrency", concurrency, "--sizes", "1000",
         "--no-floors", "--python", python, "--output", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return proc, json.loads(out.read_text()) if out.exists() else None


def test_rerun_under_another_interpreter(tmp_path):
    """``--python PATH`` re-runs the harness under PATH in a venv of its own (made in the bench
    cache), and the report puts the starting interpreter's figure beside this run's."""
    base = BASE_PYTHON
    proc, res = run_under(tmp_path, tmp_path / "cache", base, "1,4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    sel = res["interpreter"]
    assert sel["base"]["path"] == base and sel["running"]["executable"] == sys.executable
    assert sel["reason"] == f"--python {base}"
    venvs = list((tmp_path / "cache").glob("venv-*/bin/python"))
    assert len(venvs) == 1, venvs                              # the re-run's own venv
    alt = res["running_interpreter"]
    assert alt["python"] == sys.executable and alt["db"] == "sqlite" and alt["connections"] == 4
    assert alt["small"]["4"]["calls"] > 0 and alt["small"]["4"]["errors"] == 0
    assert res["databases"]["sqlite"]["ours"]["small"]["4"]["calls"] > 0
    assert "instead of the starting" in proc.stdout
    assert "the same c4 sqlite call served by the starting interpreter" in proc.stdout


def test_an_interpreter_without_a_venv_leaves_the_run_where_it_is(tmp_path, monkeypatch):
    """When the chosen interpreter's venv cannot be made (here: a file stands where it would
    go), the harness says so and measures under the running interpreter instead of failing."""
    from bench.interpreter import probe, venv_dir
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setattr("bench.seed.CACHE_DIR", str(cache))
    with open(venv_dir(probe(BASE_PYTHON)), "w") as fh:
        fh.write("not a directory")
    proc, res = run_under(tmp_path, cache, BASE_PYTHON, "1")
    assert proc.returncode == 0 and "staying on the running one" in proc.stderr, proc.stderr[-3000:]
    sel = res["interpreter"]
    assert sel["base"]["executable"] == sys.executable and "its venv failed" in sel["reason"]
    assert "python -m venv for" in sel["reason"]               # which step failed, with its words
    assert "running_interpreter" not in res                   # nothing to compare with
