"""Operator endpoints: ``/healthz``, ``/readyz`` and ``/metrics``.

* ``/healthz``: the worker answers (liveness; no dependency is touched).
* ``/readyz``: every configured database and the session store (Redis) reachable,
  with per-dependency detail; 503 when any is not.
* ``/metrics``: Prometheus exposition for all workers of this server (see metrics.py).

Protection: with ``server.ops_token`` (``MCP_FLASK_OPS_TOKEN``) set, ``/readyz`` and
``/metrics`` need ``Authorization: Bearer <token>``.  With ``MCP_FLASK_OPS_BIND``
set, gunicorn listens on that second address too and the request middleware
serves ``/readyz`` and ``/metrics`` only there (and MCP only on the main one).
``/healthz`` stays open everywhere: load balancers probe it and it reveals nothing.

Flask is fine here: these are not on the MCP hot path.
"""
from __future__ import annotations

import hmac

from flask import Blueprint, Response, current_app, jsonify, request

from . import metrics

blueprint = Blueprint("ops", __name__)
OPS_PATHS = frozenset({"/readyz", "/metrics"})


def _authorized() -> bool:
    token = current_app.extensions["mcp_flask"]["settings"].server.ops_token
    if not token:
        return True
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _unauthorized():
    return (jsonify({"error": "unauthorized: send Authorization: Bearer <server.ops_token>"}), 401,
            {"WWW-Authenticate": 'Bearer realm="mcp-flask ops"'})


@blueprint.get("/healthz")
def healthz():
    """Liveness: answers as long as the worker can serve requests."""
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
def readyz():
    """Readiness: every configured database and the session store reachable, with detail."""
    if not _authorized():
        return _unauthorized()
    state = current_app.extensions["mcp_flask"]
    checks = {name: svc.database.check() for name, svc in state["services"].items()}
    store = state["store"]
    ping = getattr(store, "ping", None)
    store_check = ping() if ping is not None else {"ok": True}
    store_check["kind"] = "redis" if ping is not None else "memory"
    ok = all(c["ok"] for c in checks.values()) and store_check["ok"]
    body = {"status": "ok" if ok else "unavailable", "services": checks, "session_store": store_check}
    return jsonify(body), (200 if ok else 503)


@blueprint.get("/metrics")
def metrics_endpoint():
    """Prometheus metrics of every worker (multiprocess mode under gunicorn)."""
    if not _authorized():
        return _unauthorized()
    state = current_app.extensions["mcp_flask"]
    metrics.update_gauges(state["services"], state["store"])
    body, ctype = metrics.render()
    return Response(body, content_type=ctype)
