"""gunicorn settings for mcp-flask (the top-level ``gunicorn.conf.py`` re-exports these).

Production defaults, each overridable by environment variables:

* gevent workers (one greenlet per request: SSE streams and slow queries do not
  pin a worker); ``MCP_FLASK_WORKERS`` (default: the config's ``server.workers``, 1).
  More than one worker needs Redis for sessions; without it start-up is refused.
* bind ``MCP_FLASK_BIND`` (default 127.0.0.1:8000: loopback, never all interfaces).
* keep-alive 75 s (longer than nginx's upstream keepalive_timeout 60 s), so the
  server is never the side that closes a reused connection mid-request.
* ``timeout`` is the worker heartbeat for gevent workers, not a request limit:
  long SSE streams are fine.  ``graceful_timeout`` lets in-flight calls finish.
* ``forwarded_allow_ips``: trust X-Forwarded-* only from the configured proxies.

``post_worker_init`` makes psycopg2 cooperative (psycogreen) inside each worker,
after gevent's monkey-patching: without it one slow PostgreSQL query freezes
every request in that worker.
"""
import os
import sys

from mcp_flask.config import load_settings
from mcp_flask.errors import ConfigError

try:
    _settings = load_settings()
except ConfigError as _exc:
    sys.stderr.write(f"mcp-flask: {_exc}\n")
    sys.exit(2)

bind = _settings.server.bind
workers = _settings.server.workers
worker_class = os.environ.get("MCP_FLASK_WORKER_CLASS", "gevent")
worker_connections = int(os.environ.get("MCP_FLASK_WORKER_CONNECTIONS", "1000"))
keepalive = int(os.environ.get("MCP_FLASK_KEEPALIVE", "75"))
timeout = int(os.environ.get("MCP_FLASK_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("MCP_FLASK_GRACEFUL_TIMEOUT", "30"))
forwarded_allow_ips = _settings.server.forwarded_allow_ips
loglevel = _settings.server.log_level
accesslog = os.environ.get("MCP_FLASK_ACCESS_LOG") or None
errorlog = "-"
# Large SSE responses must not be buffered by gunicorn either.
sendfile = False

if workers > 1 and not _settings.server.redis_url:
    sys.stderr.write(
        "mcp-flask: refusing to start %d workers without Redis: sessions created by one worker would be "
        "unknown to the others (requests would fail with 404 at random). Set MCP_FLASK_REDIS_URL "
        "(or server.redis_url), or run one worker.\n" % workers)
    sys.exit(2)


def post_worker_init(worker):
    """Inside each worker, after gevent patched the standard library: make psycopg2 cooperative."""
    if worker_class.startswith("gevent"):
        try:
            from psycogreen.gevent import patch_psycopg
        except ImportError:  # psycopg2 services will then block the worker on every query
            worker.log.warning("psycogreen is not installed: PostgreSQL queries will block the worker")
            return
        patch_psycopg()
