"""Prometheus metrics (prometheus-client), correct across gunicorn workers.

Under gunicorn, ``gunicorn_conf`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh
per-run directory before any worker starts; every worker writes its samples
there and ``/metrics`` (served by any worker) aggregates them with
``MultiProcessCollector``.  Without that variable (tests, ``flask run``) the
default in-process registry is used.  Dead workers' live gauges are removed by
the ``child_exit`` hook (``mark_process_dead``).

What is measured, and where:

* ``mcp_requests_total{service,method,tool,outcome}`` and
  ``mcp_request_duration_seconds{service,method}``: every JSON-RPC request,
  by a wrapper around ``Protocol.handle`` / ``Protocol.initialize`` installed by
  ``instrument_protocol`` (outcome: ``ok``, ``tool_error`` for ``isError``
  results, ``error`` for JSON-RPC errors);
* ``mcp_rows_returned_total{service,tool}``: rows tools report in ``call.audit``;
* ``mcp_errors_total{service,kind}``: JSON-RPC error codes, tool error classes,
  HTTP error statuses, store outages;
* ``mcp_http_requests_total{service,http_method,status}``: every HTTP request
  (the WSGI middleware);
* ``mcp_requests_in_flight{service}``, ``mcp_sse_streams_open{service,kind}``, ``mcp_sessions_active``,
  ``mcp_pool_connections{service,state}``: gauges.

Per call the cost is two counter increments and one histogram observation.  In
multiprocess mode the values are ``_mmap_value_class``'s (prometheus-client's files
and format, with an OS lock and direct mmap writes), and the hot paths update
labelled children through ``adder`` / ``observer``; the end of a request (gauge,
counter, histogram, rows) is one ``inc_all`` on those values (``_request_end``).
Imports only prometheus-client; the wiring lives in create_app.
"""
from __future__ import annotations

import os
import struct
from bisect import bisect_left
import time

from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram,
                               generate_latest, values)

from .native import native_lock

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_PID = [os.getpid()]


def _cached_pid() -> int:
    """This process's id, without a ``getpid()`` system call per metric update.

    prometheus-client's multiprocess values ask for the process id on every
    increment to notice a fork (about ten system calls per MCP call); the id only
    changes in a forked child, where ``os.register_at_fork`` refreshes it first.
    """
    return _PID[0]


def _mmap_value_class(process_identifier=_cached_pid):
    """prometheus-client's multiprocess value class (``values.MultiProcessValue``), leaner.

    Same files, same keys, same bytes: one ``<type>[_<mode>]_<pid>.db`` file per
    kind of value and process, written with ``prometheus_client.mmap_dict``, read
    back by ``MultiProcessCollector`` unchanged.  What differs:

    * an OS lock instead of ``threading.Lock`` (``native.native_lock``: the critical section never blocks);
    * no process-id check per update: a forked child reopens its own files from
      an ``os.register_at_fork`` hook instead (``after_fork``), as the library
      would on the child's first update;
    * an update writes its 16 bytes (value, timestamp) straight into the mmap at
      the value's position, found once, instead of through ``write_value`` (a
      dictionary lookup and two calls).  That uses ``MmapedDict``'s private
      ``_m`` and ``_positions``; when they are missing (a future
      prometheus-client) values fall back to ``write_value``, and
      tests/test_metrics.py fails loudly.
    """
    from prometheus_client import values as pc_values
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    lock = native_lock()
    files: dict = {}
    instances: list = []
    pid = [process_identifier()]
    pack = struct.Struct("dd").pack

    def cleanup() -> None:
        for f in files.values():
            f.close()
        files.clear()
        instances.clear()

    cleanups = getattr(pc_values, "_multi_process_cleanups", None)
    if cleanups is not None:    # values.close_all_multiprocess_files() closes ours too
        cleanups.append(cleanup)

    class MmapValue:
        """A float in this process's mmapped metrics file (one sample of one metric)."""

        _multiprocess = True

        def __init__(self, typ, metric_name, name, labelnames, labelvalues, help_text, multiprocess_mode="",
                     **kwargs):
            self._params = typ, metric_name, name, labelnames, labelvalues, help_text, multiprocess_mode
            with lock:
                self._reset()
                instances.append(self)

        def _reset(self) -> None:
            typ, metric_name, name, labelnames, labelvalues, help_text, multiprocess_mode = self._params
            prefix = typ + "_" + multiprocess_mode if typ == "gauge" else typ
            f = files.get(prefix)
            if f is None:
                f = files[prefix] = MmapedDict(os.path.join(os.environ.get(MULTIPROC_ENV),
                                                            "{}_{}.db".format(prefix, pid[0])))
            self._file = f
            self._key = mmap_key(metric_name, name, labelnames, labelvalues, help_text)
            self._value, self._timestamp = f.read_value(self._key)
            # The value's 16 bytes in the file (read_value has allocated them): fixed for
            # the file's life, since entries are only ever appended (growth remaps _m).
            pos = getattr(f, "_positions", {}).get(self._key)
            self._span = slice(pos, pos + 16) if pos is not None and hasattr(f, "_m") else None

        # inc and set write the value themselves (no helper call: they run several times
        # per request): one slice assignment, as mmap_dict does (pack_into would briefly
        # write zeros a concurrent reader could see).
        def inc(self, amount) -> None:
            with lock:
                self._value = value = self._value + amount
                self._timestamp = 0.0
                span = self._span
                if span is None:
                    self._file.write_value(self._key, value, 0.0)
                else:
                    self._file._m[span] = pack(value, 0.0)

        def set(self, value, timestamp=None) -> None:
            with lock:
                self._value = value
                self._timestamp = timestamp = timestamp or 0.0
                span = self._span
                if span is None:
                    self._file.write_value(self._key, value, timestamp)
                else:
                    self._file._m[span] = pack(value, timestamp)

        @staticmethod
        def inc_all(updates) -> None:
            """``value.inc(amount)`` for each ``(value, amount)`` of ``updates``, under one
            taking of the lock (the end of a request updates four or five values at once:
            one call instead of one each, see ``instrument_protocol``)."""
            with lock:
                for value, amount in updates:
                    value._value = total = value._value + amount
                    value._timestamp = 0.0
                    span = value._span
                    if span is None:
                        value._file.write_value(value._key, total, 0.0)
                    else:
                        value._file._m[span] = pack(total, 0.0)

        def set_exemplar(self, exemplar) -> None:
            return  # not supported in multiprocess mode (as in prometheus-client)

        def get(self):
            with lock:
                return self._value

        def get_exemplar(self):
            return None

        @classmethod
        def close_all_files(cls) -> None:
            with lock:
                cleanup()

        @staticmethod
        def after_fork(new_pid: int) -> None:
            """In a forked child: this process's own files, and its values read from them."""
            nonlocal lock
            if pid[0] == new_pid:
                return
            pid[0] = new_pid
            lock = native_lock()   # the parent may have forked while another thread held it
            for f in files.values():
                f.close()
            files.clear()
            for value in instances:
                value._reset()

    return MmapValue


def _after_fork() -> None:
    _PID[0] = os.getpid()
    after = getattr(values.ValueClass, "after_fork", None)
    if after is not None:
        after(_PID[0])


os.register_at_fork(after_in_child=_after_fork)
if os.environ.get(MULTIPROC_ENV):
    # Before the metrics below are created: they take their value class from here.
    values.ValueClass = _mmap_value_class()

#: Latency buckets (seconds): from sub-millisecond metadata calls to long queries.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

REQUESTS = Counter("mcp_requests", "JSON-RPC requests served, by method, tool and outcome",
                   ["service", "method", "tool", "outcome"])
LATENCY = Histogram("mcp_request_duration_seconds", "Time to serve one JSON-RPC request",
                    ["service", "method"], buckets=LATENCY_BUCKETS)
ROWS = Counter("mcp_rows_returned", "Rows returned by tool calls", ["service", "tool"])
ERRORS = Counter("mcp_errors", "Errors by kind (jsonrpc_<code>, tool_<class>, http_<status>, "
                               "store_unavailable)", ["service", "kind"])
HTTP = Counter("mcp_http_requests", "HTTP requests by method and status", ["service", "http_method", "status"])
IN_FLIGHT = Gauge("mcp_requests_in_flight", "JSON-RPC requests being served right now", ["service"],
                  multiprocess_mode="livesum")
SSE_OPEN = Gauge("mcp_sse_streams_open", "Open SSE response streams (kind: get or post)",
                 ["service", "kind"], multiprocess_mode="livesum")
# Memory store: one worker, its own count; Redis store: every worker sees the global count.
SESSIONS = Gauge("mcp_sessions_active", "Sessions alive in the session store", multiprocess_mode="livemax")
POOL = Gauge("mcp_pool_connections", "Database pool connections (state: size, open, in_use, waiting)",
             ["service", "state"], multiprocess_mode="livesum")


def adder(child):
    """``f(amount)`` adding ``amount`` to a labelled Counter or Gauge child, for the hot paths.

    ``Counter.inc`` / ``Gauge.inc`` check, on every call, things settled when the child
    was made (it has all its labels; the gauge is not a "mostrecent" one) before
    calling their value's ``inc``: this calls the value directly (prometheus-client's
    private ``_value``; the public method when it is missing or the gauge is of a
    mode that needs the check).  The amount must be >= 0 for a counter, as with
    ``inc``."""
    value = getattr(child, "_value", None)
    if value is None or not callable(getattr(value, "inc", None)) or getattr(child, "_is_most_recent", False):
        return child.inc
    return value.inc


def _histogram_parts(child):
    """``(sum value, bucket values, upper bounds)`` of a labelled Histogram child, or None
    when prometheus-client's private ``_sum``, ``_buckets`` and ``_upper_bounds`` are not
    as ``observer`` expects them."""
    total = getattr(child, "_sum", None)
    buckets = getattr(child, "_buckets", None)
    bounds = getattr(child, "_upper_bounds", None)
    if (total is None or not isinstance(buckets, list) or not isinstance(bounds, list)
            or len(buckets) != len(bounds) or not bounds or bounds[-1] != float("inf")
            or list(bounds) != sorted(bounds)):
        return None
    return total, tuple(buckets), tuple(bounds)


def observer(child):
    """``f(amount)`` observing ``amount`` in a labelled Histogram child, for the hot paths.

    Does what ``Histogram.observe`` does without exemplars (add to the sum, count one
    in the first bucket whose bound is >= amount, ``bisect_left``) straight on the
    child's values; the public method when prometheus-client's private ``_sum``,
    ``_buckets`` and ``_upper_bounds`` are not as expected."""
    parts = _histogram_parts(child)
    if parts is None:
        return child.observe
    total, buckets, bounds = parts
    add_sum = total.inc
    counts = [b.inc for b in buckets]

    def observe(amount) -> None:
        add_sum(amount)
        counts[bisect_left(bounds, amount)](1)
    return observe


def _mmap_value(child):
    """The ``MmapValue`` a Counter or Gauge child's ``adder`` would increment, or None
    (another value class, or a gauge that needs the public path)."""
    value = getattr(child, "_value", None)
    inc_all = getattr(values.ValueClass, "inc_all", None)
    if inc_all is None or type(value) is not values.ValueClass or getattr(child, "_is_most_recent", False):
        return None
    return value


def _request_end(key, running, rows_of):
    """``end(elapsed, rows)`` for requests labelled ``key`` = (service, method, tool, outcome):
    the in-flight gauge down by one (``running`` is the service's adder, taken first),
    the request counted, its latency observed and ``rows`` (when true) added to
    ``mcp_rows_returned_total{service, tool}`` (``rows_of(service, tool)``: that
    counter's adder, made on first use so an unused label set never appears).

    With ``_mmap_value_class`` values the updates are made by one ``inc_all`` (one
    lock, no call per value); otherwise through ``adder`` / ``observer``, one by one.
    Either way each value gets the same additions, so the samples are the same."""
    service, label, tool, _ = key
    counter_child = REQUESTS.labels(*key)
    hist_child = LATENCY.labels(service, label)
    gauge = _mmap_value(IN_FLIGHT.labels(service))
    count = _mmap_value(counter_child)
    parts = _histogram_parts(hist_child)
    if (gauge is not None and count is not None and parts is not None
            and all(type(v) is values.ValueClass for v in (parts[0],) + parts[1])):
        inc_all = values.ValueClass.inc_all
        total, buckets, bounds = parts
        row_value: list = [None]

        def end(elapsed, rows) -> None:
            bucket = buckets[bisect_left(bounds, elapsed)]
            if not rows:
                inc_all(((gauge, -1), (count, 1), (total, elapsed), (bucket, 1)))
                return
            rv = row_value[0]
            if rv is None:
                rv = _mmap_value(ROWS.labels(service, tool))
                if rv is None:      # not an MmapValue after all: the adder, separately
                    rows_of(service, tool)(rows)
                    inc_all(((gauge, -1), (count, 1), (total, elapsed), (bucket, 1)))
                    return
                row_value[0] = rv
            inc_all(((gauge, -1), (count, 1), (total, elapsed), (bucket, 1), (rv, rows)))
        return end

    counter = adder(counter_child)
    observe = observer(hist_child)

    def end(elapsed, rows) -> None:
        if rows:
            rows_of(service, tool)(rows)
        running(-1)
        counter(1)
        observe(elapsed)
    return end


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def render() -> tuple[bytes, str]:
    """The exposition text for every worker of this server, and its content type."""
    if multiprocess():
        from prometheus_client import multiprocess as mp
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    return generate_latest(registry), CONTENT_TYPE_LATEST


def update_gauges(services: dict, store) -> None:
    """Refresh the sampled gauges (pool states, sessions) of this worker.

    Called when /metrics is scraped and periodically by each worker, so the pool
    code stays free of metrics calls on its hot path."""
    for name, svc in services.items():
        stats = svc.database.pool.stats()
        for state in ("size", "open", "in_use", "waiting"):
            if state in stats:
                POOL.labels(name, state).set(stats[state])
    try:
        SESSIONS.set(store.count())
    except Exception:  # noqa: BLE001 - a store outage is reported by /readyz, not here
        pass


def instrument_protocol(protocol) -> None:
    """Count and time every request the protocol layer serves (wraps handle and initialize)."""
    from .errors import ProtocolError

    handle = protocol.handle
    known = protocol.handlers
    # Labelled children looked up once per label set (labels() takes a lock and builds tuples):
    # the in-flight gauge's and the rows counters' adders, and per (service, method, tool,
    # outcome) the updates that end a request (``_request_end``).
    in_flight: dict = {}
    row_counters: dict = {}
    ends: dict = {}
    initialize = protocol.initialize
    perf = time.perf_counter

    def rows_of(service, tool):
        rkey = (service, tool)
        child = row_counters.get(rkey)
        if child is None:
            child = row_counters[rkey] = adder(ROWS.labels(*rkey))
        return child

    def counted_handle(method, params, call):
        started = perf()
        service = call.service.name
        outcome = "ok"
        rows = None
        running = in_flight.get(service)
        if running is None:
            running = in_flight[service] = adder(IN_FLIGHT.labels(service))
        running(1)
        # Unknown methods share one label value: clients must not grow the label set.
        label = method if method in known else "(unknown)"
        try:
            result = handle(method, params, call)
            if method == "tools/call":
                audit = call.audit
                if isinstance(result, dict) and result.get("isError"):
                    outcome = "tool_error"
                    ERRORS.labels(service, "tool_" + str(audit.get("outcome", "error"))).inc()
                rows = audit.get("rows")
                if rows:
                    rtool = audit.get("tool", "")
                    if not rtool:
                        # Rows without a tool name: labelled "" (the request itself "(unknown)").
                        rows_of(service, rtool)(rows)
                        rows = None
            return result
        except ProtocolError as exc:
            outcome = "error"
            ERRORS.labels(service, f"jsonrpc_{exc.code}").inc()
            raise
        except BaseException:
            outcome = "error"
            ERRORS.labels(service, "internal").inc()
            raise
        finally:
            tool = call.audit.get("tool", "") if method == "tools/call" else ""
            if method == "tools/call" and not tool and isinstance(params, dict):
                # An unknown tool: keep the label set bounded.
                tool = "(unknown)"
            key = (service, label, tool, outcome)
            end = ends.get(key)
            if end is None:
                end = ends[key] = _request_end(key, running, rows_of)
            end(perf() - started, rows)

    def counted_initialize(params, service, session, access):
        started = perf()
        outcome = "ok"
        try:
            return initialize(params, service, session, access)
        except ProtocolError as exc:
            outcome = "error"
            ERRORS.labels(service.name, f"jsonrpc_{exc.code}").inc()
            raise
        finally:
            REQUESTS.labels(service.name, "initialize", "", outcome).inc()
            LATENCY.labels(service.name, "initialize").observe(perf() - started)

    protocol.handle = counted_handle
    protocol.initialize = counted_initialize
