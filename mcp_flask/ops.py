"""Operator endpoints: ``/healthz`` (the process is alive) and ``/readyz`` (dependencies reachable).

Flask is fine here: these are not on the MCP hot path.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify

blueprint = Blueprint("ops", __name__)


@blueprint.get("/healthz")
def healthz():
    """Liveness: answers as long as the worker can serve requests."""
    return jsonify({"status": "ok"})


@blueprint.get("/readyz")
def readyz():
    """Readiness: every configured database reachable, with per-service detail."""
    state = current_app.extensions["mcp_flask"]
    checks = {name: svc.database.check() for name, svc in state["services"].items()}
    ok = all(c["ok"] for c in checks.values())
    return jsonify({"status": "ok" if ok else "unavailable", "services": checks}), (200 if ok else 503)
