"""mcp-flask: an MCP server that exposes SQL databases as services at ``/mcp/<name>``.

``create_app`` is the one place that wires things together: settings, schemas,
the tool registry, one ``Database`` per configured service, the session store,
the protocol layer, the Streamable HTTP transport and the operator endpoints.
Nothing connects to a database at import time (gunicorn forks workers first).
"""
from __future__ import annotations

import logging
import os
import threading

__version__ = "0.1.0"

log = logging.getLogger("mcp_flask")


class PathDispatcher:
    """Send ``/mcp/...`` straight to the MCP transport (a lean WSGI app); the rest to Flask."""

    def __init__(self, flask_wsgi, transport, prefix: str = "/mcp/"):
        self.flask_wsgi = flask_wsgi
        self.transport = transport
        self.prefix = prefix

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith(self.prefix):
            return self.transport(environ, start_response)
        return self.flask_wsgi(environ, start_response)


def create_app(settings=None, config_path: str | None = None, check_databases: bool = True,
               providers: dict | None = None):
    """Build the WSGI application.

    ``settings`` is a ``config.Settings`` (tests build their own); otherwise the
    configuration is read from ``config_path`` / ``$MCP_FLASK_CONFIG`` / the demo default.
    ``providers`` maps a service name to extra ``providers.Provider`` objects (tools,
    resources, prompts beyond the database's own; see ``mcp_flask/providers.py``).
    """
    from flask import Flask

    from . import metrics, ops
    from .middleware import RequestMiddleware
    from .access import authenticate
    from .audit import Auditor
    from .config import load_settings
    from .database import Database
    from .limits import Limiter
    from .protocol import Protocol, ServiceRuntime
    from .schemas import SchemaSet
    from .tools import load_tools
    from .transport import Transport

    if settings is None:
        settings = load_settings(config_path)
    schemas = SchemaSet()
    load_tools(schemas)
    services = {}
    for name, svc in settings.services.items():
        if svc.demo:
            from .demo import create_demo_database
            create_demo_database(svc.url.split("sqlite:///", 1)[1])
        services[name] = ServiceRuntime(config=svc, database=Database(svc),
                                        providers=list((providers or {}).get(name, ())))
    store = make_store(settings)
    protocol = Protocol(settings, schemas, store)
    metrics.instrument_protocol(protocol)
    protocol.limiter = Limiter(store)
    protocol.auditor = Auditor()
    transport = Transport(settings, protocol, services, store)
    transport.authenticate = authenticate

    app = Flask("mcp_flask")
    app.config["MCP_SETTINGS"] = settings
    app.extensions["mcp_flask"] = {"settings": settings, "services": services, "store": store,
                                   "protocol": protocol, "transport": transport, "schemas": schemas}
    app.register_blueprint(ops.blueprint)
    # The request middleware wraps everything: request ids, log context, HTTP metrics, SSE shutdown.
    app.wsgi_app = RequestMiddleware(PathDispatcher(app.wsgi_app, transport), services=services,
                                     ops_port=ops_port_from_env())
    if metrics.multiprocess():
        # Under gunicorn: keep this worker's pool/session gauges fresh for /metrics.
        threading.Thread(target=_gauge_loop, args=(services, store), daemon=True,
                         name="mcp-flask-gauges").start()
    if check_databases:
        # Log unreachable databases at start-up without delaying it; services answer
        # with a clear "cannot be reached" error until their database comes back.
        threading.Thread(target=_startup_check, args=(services,), daemon=True).start()
    return app


def _startup_check(services) -> None:
    for name, svc in services.items():
        status = svc.database.check()
        if not status["ok"]:
            log.warning("service %s: database not reachable at start-up: %s", name, status.get("error"))


def make_store(settings):
    """The session store: Redis when ``server.redis_url`` is set (many workers/hosts), else memory.

    ``MCP_FLASK_REDIS_PREFIX`` namespaces the keys, so several deployments (or test
    runs) can share one Redis database."""
    if settings.server.redis_url:
        from .redis_store import RedisSessionStore
        return RedisSessionStore(settings.server.redis_url, ttl=settings.server.session_ttl,
                                 prefix=os.environ.get("MCP_FLASK_REDIS_PREFIX", "mcp-flask:"),
                                 replay_window=settings.server.sse_replay_window)
    from .sessions import MemorySessionStore
    return MemorySessionStore(ttl=settings.server.session_ttl, replay_window=settings.server.sse_replay_window)


def ops_port_from_env() -> str | None:
    """The port of ``MCP_FLASK_OPS_BIND`` (operator endpoints on their own address), if set."""
    bind = os.environ.get("MCP_FLASK_OPS_BIND", "")
    return bind.rsplit(":", 1)[1] if ":" in bind else None


def _gauge_loop(services, store, every: float = 5.0) -> None:
    import time

    from . import metrics
    while True:
        try:
            metrics.update_gauges(services, store)
        except Exception:  # noqa: BLE001 - metrics must never take a worker down
            log.debug("gauge update failed", exc_info=True)
        time.sleep(every)


def close_app(app) -> None:
    """Return every pooled connection and close the session store (worker exit)."""
    state = app.extensions.get("mcp_flask") or {}
    for svc in (state.get("services") or {}).values():
        try:
            svc.database.close()
        except Exception:  # noqa: BLE001 - keep closing the others
            log.warning("closing service %s failed", svc.name)
    close = getattr(state.get("store"), "close", None)
    if close is not None:
        close()
