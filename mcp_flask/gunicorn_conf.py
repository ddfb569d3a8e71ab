"""gunicorn settings for mcp-flask (the top-level ``gunicorn.conf.py`` re-exports these).

Production defaults, each overridable by environment variables:

* ``worker_class`` lean (``MCP_FLASK_WORKER_CLASS``): gunicorn's gevent worker with
  our own HTTP/1.1 connection loop (``lean_worker.LeanGeventWorker``: a quarter of
  gunicorn's per-request CPU); one greenlet per connection, so SSE streams and slow
  queries do not pin a worker.  ``gevent`` is gunicorn's own gevent worker (with the
  ``worker_http`` tweaks), ``gevent_pywsgi`` gevent's HTTP server; any other value is
  passed to gunicorn as it is.
* ``workers`` (``MCP_FLASK_WORKERS`` / ``server.workers``; ``auto`` = one per CPU
  core, capped at 8).  Why cores and not the sync-worker rule ``2*cores+1``: a gevent
  worker already multiplexes ~1000 connections and only burns CPU while it
  encodes JSON or parses rows; one worker per core uses every core without
  contending for it.  More than one worker needs Redis for sessions; without it
  start-up is refused with the reason.
* ``bind`` ``MCP_FLASK_BIND`` (default 127.0.0.1:8000: loopback, never all interfaces),
  plus ``MCP_FLASK_OPS_BIND`` for a separate operator address (/readyz, /metrics).
* ``keepalive`` 75 s (``MCP_FLASK_KEEPALIVE``): longer than nginx's upstream
  ``keepalive_timeout`` (60 s), so nginx, not gunicorn, closes idle reused connections
  and never sends a request on a socket gunicorn just closed.
* ``timeout`` (``MCP_FLASK_TIMEOUT``, 60 s) is the worker *heartbeat* for gevent
  workers, not a request limit: SSE streams may stay open for hours.
* ``graceful_timeout`` (``MCP_FLASK_GRACEFUL_TIMEOUT``, 30 s): on SIGTERM or a HUP
  reload, in-flight calls get this long to finish (statement_timeout defaults to 30 s).
* ``forwarded_allow_ips``: X-Forwarded-* are trusted only from the configured proxies
  (``MCP_FLASK_FORWARDED_ALLOW_IPS`` / ``server.forwarded_allow_ips``, default loopback).

Hooks: ``pre_request`` yields to the gevent hub (fairness between connections) under
gunicorn's gevent workers (the lean worker does it itself, only when needed);
``post_worker_init`` also swaps in gunicorn's request and response classes of
``worker_http`` (headers sent with the first body chunk, the Date header formatted once a
second, trusted proxies remembered per peer);
``post_worker_init`` makes psycopg2 cooperative (psycogreen) and installs the
graceful-shutdown handler; ``worker_exit`` returns pool connections; ``child_exit``
drops a dead worker's live gauges (prometheus multiprocess mode); ``on_exit``
removes the metrics directory this run created.
"""
import os
import shutil
import signal
import sys
import tempfile

from mcp_flask.config import load_settings
from mcp_flask.errors import ConfigError

def default_workers(cores: int | None = None) -> int:
    """One gevent worker per core, at most 8 (see the module docstring)."""
    return max(1, min(cores or os.cpu_count() or 1, 8))


if os.environ.get("MCP_FLASK_WORKERS", "").strip().lower() == "auto":
    os.environ["MCP_FLASK_WORKERS"] = str(default_workers())

try:
    _settings = load_settings()
except ConfigError as _exc:
    sys.stderr.write(f"mcp-flask: {_exc}\n")
    sys.exit(2)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        sys.stderr.write(f"mcp-flask: {name} must be a whole number, got {value!r}\n")
        sys.exit(2)


# -------------------------------------------------------------------- metrics directory
def _fresh_metrics_dir() -> str:
    """``$TMPDIR/mcp-flask-metrics-<uid>/<master pid>-<random>``, after removing the
    directories of masters that died without cleaning up (SIGKILL, crash)."""
    parent = os.path.join(tempfile.gettempdir(), f"mcp-flask-metrics-{os.getuid()}")
    os.makedirs(parent, mode=0o700, exist_ok=True)
    for name in os.listdir(parent):
        pid = name.split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        except PermissionError:
            pass            # alive, someone else's
    return tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=parent)


# prometheus-client's multiprocess mode: every worker writes its samples to files in
# PROMETHEUS_MULTIPROC_DIR.  It must be set before any worker imports prometheus_client,
# and be fresh for each run (stale files would add old counts).  A HUP reload re-reads
# this file in the master: keep the directory of the running master.
if not os.environ.get("MCP_FLASK_METRICS_DIR_OWNER"):
    _given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if _given:
        os.makedirs(_given, exist_ok=True)
        for _f in os.listdir(_given):
            if _f.endswith(".db"):
                os.remove(os.path.join(_given, _f))
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _fresh_metrics_dir()
        os.environ["MCP_FLASK_METRICS_DIR_CREATED"] = "1"
    os.environ["MCP_FLASK_METRICS_DIR_OWNER"] = str(os.getpid())

# -------------------------------------------------------------------- settings
workers = _settings.server.workers
bind = [_settings.server.bind]
ops_bind = os.environ.get("MCP_FLASK_OPS_BIND", "")
if ops_bind:
    bind.append(ops_bind)
#: Short names of worker classes; the default is the lean one.
WORKER_CLASSES = {"lean": "mcp_flask.lean_worker.LeanGeventWorker"}
worker_class = os.environ.get("MCP_FLASK_WORKER_CLASS", "").strip() or "lean"
worker_class = WORKER_CLASSES.get(worker_class, worker_class)
#: A gevent worker (monkey-patched, greenlets): psycopg2 must be made cooperative.
_GREEN = worker_class.startswith("gevent") or worker_class == WORKER_CLASSES["lean"]
worker_connections = _env_int("MCP_FLASK_WORKER_CONNECTIONS", 1000)
keepalive = _env_int("MCP_FLASK_KEEPALIVE", 75)
timeout = _env_int("MCP_FLASK_TIMEOUT", 60)
graceful_timeout = _env_int("MCP_FLASK_GRACEFUL_TIMEOUT", 30)
forwarded_allow_ips = _settings.server.forwarded_allow_ips
loglevel = _settings.server.log_level
# Access lines come from the app's request middleware (JSON, with request id and session);
# set MCP_FLASK_ACCESS_LOG to also get gunicorn's classic access log.
accesslog = os.environ.get("MCP_FLASK_ACCESS_LOG") or None
errorlog = "-"
# Large SSE responses must not be buffered by gunicorn either.
sendfile = False
proc_name = "mcp-flask"
# gunicorn >= 25 opens a control socket at one fixed per-user path by default: two
# instances on a host would fight over it, and it is a management interface.
# Off unless MCP_FLASK_CONTROL_SOCKET names a path.
control_socket = os.environ.get("MCP_FLASK_CONTROL_SOCKET", "")
control_socket_disable = not control_socket
if not control_socket:
    del control_socket

try:
    from gunicorn.glogging import Logger as _GunicornLogger
except ImportError:                     # imported outside gunicorn (tests of this module)
    _GunicornLogger = None

if _GunicornLogger is not None:
    class QuietAccessLogger(_GunicornLogger):
        """gunicorn's logger, but its access log only runs when ``MCP_FLASK_ACCESS_LOG`` asks.

        gunicorn builds the access-log atoms of every request whenever any logging
        config is set (we set ``logconfig_dict`` for JSON lines), even when no access
        line is written: ~5% of a worker's time under load.  The app's middleware
        writes the access lines (mcp_flask.access) already.
        """

        def _compute_access_log_enabled(self):
            return bool(self.cfg.accesslog)

    logger_class = QuietAccessLogger

_log_format = os.environ.get("MCP_FLASK_LOG_FORMAT", "json")
from mcp_flask.logs import lean_records  # noqa: E402 - after the environment is settled
lean_records()
if _log_format == "json":
    # gunicorn's own messages (boot, worker exits, timeouts) in the same JSON lines as the app's.
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "mcp_flask.logs.ContextFilter"}},
        "formatters": {"json": {"()": "mcp_flask.logs.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "json", "filters": ["context"]}},
        "root": {"level": loglevel.upper(), "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": loglevel.upper(), "handlers": [], "propagate": True},
            # The app's mcp_flask.access lines replace gunicorn's unless MCP_FLASK_ACCESS_LOG is set.
            "gunicorn.access": {"level": "INFO" if accesslog else "WARNING", "handlers": [],
                                "propagate": True},
        },
    }

if workers > 1 and not _settings.server.redis_url:
    sys.stderr.write(
        "mcp-flask: refusing to start %d workers without Redis: sessions created by one worker would be "
        "unknown to the others (requests would fail with 404 at random). Set MCP_FLASK_REDIS_URL "
        "(or server.redis_url), or run one worker.\n" % workers)
    sys.exit(2)


# -------------------------------------------------------------------- hooks
_sleep = None
if worker_class.startswith("gevent"):
    # gunicorn's gevent workers; the lean worker yields by itself, and only when a
    # request never waited (see lean_worker).
    try:
        from gevent import sleep as _sleep
    except ImportError:         # the worker class will fail to load anyway, with gunicorn's message
        _sleep = None


def post_worker_init(worker):
    """Inside each worker, after gevent patched the standard library.

    Makes psycopg2 cooperative, and chains a SIGTERM handler (SIGTERM is also how
    the master retires old workers on HUP) that ends SSE streams at once, while
    gunicorn lets in-flight calls finish within ``graceful_timeout``."""
    if worker_class == "gevent":
        # gunicorn's gevent worker builds its responses through wsgi.create(), which
        # takes the class from this module attribute.
        from gunicorn.http import parser, wsgi

        from mcp_flask.worker_http import install_http_date, one_send_response_class, peer_memo_request_class
        wsgi.Response = one_send_response_class()
        install_http_date()
        parser.RequestParser.mesg_class = peer_memo_request_class()
    if _GREEN:
        try:
            from psycogreen.gevent import patch_psycopg
        except ImportError:  # psycopg2 services will then block the worker on every query
            worker.log.warning("psycogreen is not installed: PostgreSQL queries will block the worker")
        else:
            patch_psycopg()

    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        if callable(previous):
            previous(signum, frame)       # gunicorn: stop accepting, drain in-flight requests
        _begin_shutdown(worker)

    signal.signal(signal.SIGTERM, on_term)


def pre_request(worker, req):
    """Under gevent, let the other connections' greenlets run before each request.

    gevent switches greenlets only when one would block.  On a keep-alive connection
    whose client sends its next request as soon as it has the answer, the next
    request is already in the socket when the greenlet reads it, so a request that
    never waits (SQLite, a metadata call served from cache, a ping) never yields:
    that one connection keeps the worker and the others' requests wait in their
    sockets (measured: p99 of 1-2 s at 16 connections on SQLite with two workers).
    One switch through the hub per request keeps the worker fair.
    """
    if _sleep is not None:
        _sleep(0)


def _begin_shutdown(worker):
    from mcp_flask.middleware import begin_shutdown
    store = _app_state(worker).get("store")
    try:
        import gevent
        gevent.spawn(begin_shutdown, store)   # out of the signal handler: it does I/O
    except ImportError:
        begin_shutdown(store)


def _app_state(worker) -> dict:
    app = getattr(worker, "wsgi", None)
    return (getattr(app, "extensions", None) or {}).get("mcp_flask") or {}


def worker_exit(server, worker):
    """The worker is leaving: return pooled database connections and Redis connections."""
    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        from mcp_flask import close_app
        close_app(app)


def child_exit(server, worker):
    """In the master: a worker died; drop its live gauges (multiprocess metrics)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid, path)


def on_exit(server):
    """The master is leaving: remove the metrics directory this run created."""
    if os.environ.get("MCP_FLASK_METRICS_DIR_CREATED") and \
            os.environ.get("MCP_FLASK_METRICS_DIR_OWNER") == str(os.getpid()):
        shutil.rmtree(os.environ.get("PROMETHEUS_MULTIPROC_DIR", ""), ignore_errors=True)
