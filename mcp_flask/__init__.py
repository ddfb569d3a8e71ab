"""mcp-flask: an MCP server that exposes SQL databases as services at ``/mcp/<name>``.

``create_app`` is the one place that wires things together: settings, schemas,
the tool registry, one ``Database`` per configured service, the session store,
the protocol layer, the Streamable HTTP transport and the operator endpoints.
Nothing connects to a database at import time (gunicorn forks workers first).
"""
from __future__ import annotations

import logging
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


def create_app(settings=None, config_path: str | None = None, check_databases: bool = True):
    """Build the WSGI application.

    ``settings`` is a ``config.Settings`` (tests build their own); otherwise the
    configuration is read from ``config_path`` / ``$MCP_FLASK_CONFIG`` / the demo default.
    """
    from flask import Flask

    from . import ops
    from .access import authenticate
    from .config import load_settings
    from .database import Database
    from .protocol import Protocol, ServiceRuntime
    from .schemas import SchemaSet
    from .sessions import MemorySessionStore
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
        services[name] = ServiceRuntime(config=svc, database=Database(svc))
    store = MemorySessionStore(ttl=settings.server.session_ttl)
    protocol = Protocol(settings, schemas, store)
    transport = Transport(settings, protocol, services, store)
    transport.authenticate = authenticate

    app = Flask("mcp_flask")
    app.config["MCP_SETTINGS"] = settings
    app.extensions["mcp_flask"] = {"settings": settings, "services": services, "store": store,
                                   "protocol": protocol, "transport": transport, "schemas": schemas}
    app.register_blueprint(ops.blueprint)
    app.wsgi_app = PathDispatcher(app.wsgi_app, transport)
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
