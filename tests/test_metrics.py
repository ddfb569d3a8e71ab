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
    from prometheus_client.mmap_dict import MmapedDict
    from prometheus_client.mmap_dict import mmap_key  # noqa: F401 - must exist
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
        import mcp_flask.metrics  # installs its value class
        assert values.ValueClass.__name__ == "MmapValue", values.ValueClass
    else:
        assert values.ValueClass.__name__ == "MmapedValue", values.ValueClass
    req = Counter("t_requests", "h", ["service", "tool"], registry=None)
    err = Counter("t_errors", "h", ["kind"], registry=None)
    lat = Histogram("t_latency", "h", ["service"], buckets=(0.001, 0.01, 1.0), registry=None)
    live = Gauge("t_live", "h", ["service"], multiprocess_mode="livesum", registry=None)
    top = Gauge("t_top", "h", multiprocess_mode="livemax", registry=None)
    each = Gauge("t_each", "h", ["service"], registry=None)            # mode "all": one sample per pid

    def work(k):
        req.labels("svc", "t").inc()
        req.labels("svc", "t").inc(k)
        lat.labels("svc").observe(0.003 * k)
        lat.labels("svc").observe(7.5)
        live.labels("svc").inc(k)
        live.labels("svc").dec()
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
            err.labels("kind_%d" % i).inc(i)
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
