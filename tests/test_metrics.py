"""metrics.py's multiprocess value class and fast update paths, against prometheus-client itself.

metrics.py replaces prometheus-client's multiprocess value class with a leaner one
(OS lock, fork handled by an at-fork hook, direct mmap writes) and updates
labelled children without the public wrappers.  Both rely on prometheus-client
internals: these tests fail loudly when a new prometheus-client changes them, and
check that the numbers ``MultiProcessCollector`` reads (across forked processes,
after fork, after growth of the files) are the ones the library itself would
produce.

Each scenario runs in a fresh interpreter: the value class is chosen when
metrics.py is imported, from ``PROMETHEUS_MULTIPROC_DIR``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(code: str, tmp_path, gevent: bool = True) -> dict:
    """Run ``code`` in a fresh interpreter in multiprocess mode; returns the JSON it prints last."""
    prelude = "from gevent import monkey; monkey.patch_all()\n" if gevent else ""
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path), PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


#: Collects every sample as {"name{label=value,...}": value}.
COLLECT = """
def collect():
    from prometheus_client import CollectorRegistry, multiprocess
    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg)
    out = {}
    for fam in reg.collect():
        for s in fam.samples:
            out[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
    return out
"""


def test_prometheus_client_internals_metrics_py_relies_on():
    """The private attributes the fast paths use.  When this fails, prometheus-client changed:
    metrics.py still works (it falls back to the public paths) but is slower; adapt it."""
    from prometheus_client import Counter, Gauge, Histogram, values
    from prometheus_client.mmap_dict import MmapedDict, mmap_key
    assert callable(mmap_key)
    assert isinstance(getattr(values, "_multi_process_cleanups", None), list)
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        f = MmapedDict(os.path.join(d, "x.db"))
        f.read_value("k")
        assert isinstance(f._positions["k"], int) and f._m is not None
        f.close()
    c = Counter("t_internals_c", "h", ["a"], registry=None).labels("x")
    g = Gauge("t_internals_g", "h", ["a"], registry=None).labels("x")
    h = Histogram("t_internals_h", "h", ["a"], buckets=(1.0, 2.0), registry=None).labels("x")
    assert hasattr(c, "_value") and hasattr(g, "_value")
    assert hasattr(h, "_sum") and len(h._buckets) == len(h._upper_bounds) == 3


def test_values_match_prometheus_client_across_forked_processes(tmp_path):
    """The same updates through prometheus-client's own value class and through ours give the
    same samples, summed over a parent and two forked children (one child grows its files
    past their first size, so they are remapped)."""
    code = COLLECT + textwrap.dedent("""
    import json, os
    from prometheus_client import Counter, Gauge, Histogram, values
    if MINE:
        from mcp_flask.metrics import adder, observer  # installs its value class
        assert values.ValueClass.__name__ == "MmapValue", values.ValueClass
        add = lambda child, amount=1: adder(child)(amount)
        observe = lambda child, amount: observer(child)(amount)
    else:
        assert values.ValueClass.__name__ == "MmapedValue", values.ValueClass
        add = lambda child, amount=1: child.inc(amount)
        observe = lambda child, amount: child.observe(amount)
    req = Counter("t_requests", "h", ["service", "tool"], registry=None)
    err = Counter("t_errors", "h", ["kind"], registry=None)
    lat = Histogram("t_latency", "h", ["service"], buckets=(0.001, 0.01, 1.0), registry=None)
    live = Gauge("t_live", "h", ["service"], multiprocess_mode="livesum", registry=None)
    top = Gauge("t_top", "h", multiprocess_mode="livemax", registry=None)
    each = Gauge("t_each", "h", ["service"], registry=None)            # mode "all": one sample per pid

    def work(k):
        add(req.labels("svc", "t"))
        req.labels("svc", "t").inc(k)
        observe(lat.labels("svc"), 0.003 * k)
        lat.labels("svc").observe(7.5)
        add(live.labels("svc"), k)
        add(live.labels("svc"), -1)
        top.set(k)
        each.labels("svc").set(k * 1.5)

    work(1)
    pid = os.fork()
    if pid == 0:
        work(2)
        os._exit(0)
    os.waitpid(pid, 0)
    work(3)
    pid = os.fork()
    if pid == 0:
        for i in range(3000):
            add(err.labels("kind_%d" % i), i)
        work(4)
        assert req.labels("svc", "t")._value.get() == 5
        os._exit(0)
    os.waitpid(pid, 0)
    assert req.labels("svc", "t")._value.get() == 2 + 4
    me = '"pid": "%d"' % os.getpid()
    print(json.dumps({k.replace(me, '"pid": "PARENT"'): v for k, v in collect().items()}))
    """)
    # Without gevent: its patched os.waitpid does not always see these children exit.
    mine = run(code.replace("MINE", "True"), tmp_path / "mine", gevent=False)
    ref = run(code.replace("MINE", "False"), tmp_path / "ref", gevent=False)
    assert len(mine) > 3000
    # "all" gauges carry the pid: the children's differ between the runs.
    drop = [k for k in ref if k.startswith("t_each") and "PARENT" not in k]
    assert len(drop) == 2
    for k in drop:
        ref.pop(k)
    mine = {k: v for k, v in mine.items()
            if k.startswith("t_") and not (k.startswith("t_each") and "PARENT" not in k)}
    assert mine == ref
    assert mine['t_requests_total{"service": "svc", "tool": "t"}'] == 2 + 3 + 4 + 5
    assert mine['t_errors_total{"kind": "kind_2999"}'] == 2999
    assert mine['t_latency_count{"service": "svc"}'] == 8
    assert mine['t_live{"service": "svc"}'] == 0 + 1 + 2 + 3
    assert mine['t_top{}'] == 4


@pytest.fixture(autouse=True)
def _dirs(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "ref").mkdir()


def test_adder_and_observer_do_what_inc_and_observe_do():
    """The hot-path shortcuts take the fast route with this prometheus-client, and count the same."""
    from prometheus_client import Counter, Gauge, Histogram

    from mcp_flask.metrics import adder, observer
    bounds = (0.001, 0.0025, 0.01, 1.0)
    c = Counter("t_fast_c", "h", ["a"], registry=None)
    g = Gauge("t_fast_g", "h", ["a"], registry=None)
    h = Histogram("t_fast_h", "h", ["a"], buckets=bounds, registry=None)
    fast_c, fast_g, fast_h = adder(c.labels("fast")), adder(g.labels("fast")), observer(h.labels("fast"))
    assert fast_c != c.labels("fast").inc and fast_h != h.labels("fast").observe, "fast paths not taken"
    for amount in (1, 1, 5, 0, 2.5):
        fast_c(amount)
        c.labels("slow").inc(amount)
    for amount in (1, -1, 3, -2):
        fast_g(amount)
        g.labels("slow").inc(amount)
    # Every bucket, the exact bounds, beyond the last bound, zero and negatives.
    for amount in (0.0, 0.0005, 0.001, 0.0010001, 0.0025, 0.003, 0.01, 0.5, 1.0, 1.5, 1e9, -1.0):
        fast_h(amount)
        h.labels("slow").observe(amount)

    def samples(metric, label):
        return sorted((s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "a")), s.value)
                      for fam in metric.collect() for s in fam.samples
                      if s.labels.get("a") == label and not s.name.endswith("_created"))
    for metric in (c, g, h):
        assert samples(metric, "fast") == samples(metric, "slow") != []


def test_adder_keeps_public_paths_for_mostrecent_gauges():
    from prometheus_client import Gauge

    from mcp_flask.metrics import adder
    g = Gauge("t_recent", "h", ["a"], multiprocess_mode="mostrecent", registry=None).labels("x")
    assert adder(g) == g.inc


def test_mmap_values_write_the_same_bytes_without_their_position(tmp_path, monkeypatch):
    """The fallback (no known position in the file: write_value) and the direct write agree."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    from prometheus_client.mmap_dict import MmapedDict

    from mcp_flask import metrics
    cls = metrics._mmap_value_class(lambda: 4242)
    fast = cls("counter", "t_fb", "t_fb_total", ("a",), ("x",), "h")
    slow = cls("counter", "t_fb", "t_fb_total", ("a",), ("y",), "h")
    slow._span = None
    for v in (fast, slow):
        v.inc(2)
        v.inc(0.5)
        assert v.get() == 2.5
    seen = {k: (v, ts) for k, v, ts, _ in MmapedDict.read_all_values_from_file(str(tmp_path / "counter_4242.db"))}
    assert sorted(seen.values()) == [(2.5, 0.0), (2.5, 0.0)]
    for v in (fast, slow):
        v.set(5.5, 7.0)
    seen = {k: (v, ts) for k, v, ts, _ in MmapedDict.read_all_values_from_file(str(tmp_path / "counter_4242.db"))}
    assert sorted(seen.values()) == [(5.5, 7.0), (5.5, 7.0)]
    cls.close_all_files()


def test_request_end_updates_match_one_by_one(tmp_path):
    """``instrument_protocol`` ends a request with one ``inc_all`` on the multiprocess values;
    with ``inc_all`` taken away it updates them one by one through adder / observer.  Both
    give the very same samples (counts, rows, in-flight, latency sums and buckets)."""
    code = COLLECT + textwrap.dedent("""
    import itertools, json, types
    from mcp_flask import metrics
    from mcp_flask.errors import ProtocolError
    from prometheus_client import values
    assert values.ValueClass.__name__ == "MmapValue"
    if not FUSED:
        del values.ValueClass.inc_all
    ticks = itertools.count()
    metrics.time = types.SimpleNamespace(perf_counter=lambda: next(ticks) * 0.004)

    class Proto:
        handlers = {"tools/call": None, "ping": None}
        def handle(self, method, params, call):
            for _ in range(call.wait):      # later calls take longer: several buckets are used
                metrics.time.perf_counter()
            call.audit.update(params.get("audit", {}))
            if params.get("fail"):
                raise ProtocolError(-32602, "bad")
            if params.get("boom"):
                raise RuntimeError("boom")
            return {"isError": bool(params.get("error"))}
        def initialize(self, *a):
            return {}

    p = Proto()
    metrics.instrument_protocol(p)
    svc = types.SimpleNamespace(name="s1")
    calls = [("tools/call", {"audit": {"tool": "get_table_data", "rows": 10}}),
             ("tools/call", {"audit": {"tool": "get_table_data", "rows": 0}}),
             ("tools/call", {"audit": {"tool": "get_tables", "rows": 3}}),
             ("tools/call", {"audit": {"tool": "get_tables", "outcome": "QueryError"}, "error": True}),
             ("tools/call", {"audit": {"rows": 4}}),
             ("tools/call", {"audit": {"tool": "x", "rows": 2}, "fail": True}),
             ("tools/call", {"audit": {"tool": "y", "rows": 2}, "boom": True}),
             ("ping", {}), ("nope", {})]
    for i in range(40):
        method, params = calls[i % len(calls)]
        call = types.SimpleNamespace(service=svc, audit={}, wait=i % 4)
        try:
            p.handle(method, params, call)
        except Exception:
            pass
    print(json.dumps(collect()))
    """)
    fused = run(code.replace("FUSED", "True"), tmp_path / "mine", gevent=False)
    single = run(code.replace("FUSED", "False"), tmp_path / "ref", gevent=False)
    assert fused == single
    assert fused['mcp_rows_returned_total{"service": "s1", "tool": "get_table_data"}'] == 50
    assert fused['mcp_rows_returned_total{"service": "s1", "tool": ""}'] == 16
    assert fused['mcp_requests_in_flight{"service": "s1"}'] == 0
    assert fused['mcp_request_duration_seconds_count{"method": "tools/call", "service": "s1"}'] == 32
    assert len({k for k in fused if k.startswith("mcp_request_duration_seconds_bucket")
                and fused[k] not in (0, 32) and '"tools/call"' in k}) >= 2
