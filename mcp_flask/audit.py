"""The audit log: one structured JSON record per tool call, on logger ``mcp_flask.audit``.

``Protocol.tools_call`` calls ``auditor.record(call, access)`` exactly once per
tool call (success, tool error, limit refusal or internal failure alike).  The
tools fill ``call.audit`` with what they touched (``table``, ``rows``); the
protocol adds ``tool``, ``duration_ms`` and ``outcome``.

A record::

    {"time": "2026-11-23T23:59:01.123Z", "event": "tool_call", "service": "sales",
     "session": "3f9c0a1b2c4d5e6f", "role": "analyst", "key": "ops-laptop",
     "tool": "get_table_data", "table": "orders", "rows": 25, "duration_ms": 3.2,
     "outcome": "ok"}

What it never holds: argument values, filters, record contents, API keys or
passwords.  The session appears as a short SHA-256 fingerprint, not the id
itself: with ``auth = "none"`` a session id is all it takes to use a session,
and log readers should not be able to.  ``key`` is the configured key's label
(``api_keys[].id``), never the key.

The record travels as the ``audit`` attribute of a ``LogRecord`` whose message is
``tool_call``: under gunicorn the JSON log formatter (``logs.JsonFormatter``)
writes it as ``{"logger": "mcp_flask.audit", "msg": "tool_call", "audit": {...}}``
on stderr with the request id.  When no logging is configured at all (a bare
``create_app`` in a script), a handler printing the record alone as one JSON line
is attached instead.  The audit logger is pinned at INFO so a quieter
``log_level`` never silences it.  In both standard setups ``logs.info`` writes the
very line logging would, without building the ``LogRecord`` (``DIRECT_FORMATS``).

Imports only ``logs`` from the project (to mark the request as logged: its audit
record stands for the access line, see middleware.py).
"""
from __future__ import annotations

import functools
import hashlib
import logging
import sys
import time

import orjson

from .logs import DIRECT_FORMATS, info, mark_audited, utc_stamp

log = logging.getLogger("mcp_flask.audit")

#: ``call.audit`` keys copied into the record, beside the ones the auditor adds
#: (``Auditor.record`` spells them out, in this order).
FIELDS = ("tool", "table", "rows", "duration_ms", "outcome")


@functools.lru_cache(maxsize=4096)
def fingerprint(session_id: str) -> str:
    """A short, stable, non-reversible label for a session id (cached: computed once
    per live session, not on every call)."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:16] if session_id else ""


class AuditLineFormatter(logging.Formatter):
    """The audit record alone, as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        rec = getattr(record, "audit", None)
        return orjson.dumps(rec, default=str).decode() if rec is not None else record.getMessage()


def _audit_line(name: str, msg: str, extra: dict, stamp: str) -> str:
    """``AuditLineFormatter``'s line for ``logs.info`` to write directly (same bytes)."""
    rec = extra.get("audit")
    return orjson.dumps(rec, default=str).decode() if rec is not None else msg


DIRECT_FORMATS[AuditLineFormatter] = _audit_line


def ensure_handler(logger: logging.Logger = log) -> None:
    """Keep audit records flowing: through configured logging, else to stderr as JSON lines."""
    logger.setLevel(logging.INFO)
    if logger.handlers or logging.getLogger().handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(AuditLineFormatter())
    logger.addHandler(handler)
    logger.propagate = False


class Auditor:
    """Writes the audit record of each tool call."""

    def __init__(self, logger: logging.Logger = log):
        self.log = logger
        ensure_handler(logger)

    def record(self, call, access) -> dict | None:
        """Log one tool call; returns the record (None when the logger is disabled)."""
        if not self.log.isEnabledFor(logging.INFO):
            return None
        session = call.session
        stamp = utc_stamp(time.time())   # the record's time, and its log line's ts
        get = call.audit.get
        # One literal, in FIELDS order for the tool's part (no loop: this runs per call).
        rec = {
            "time": stamp,
            "event": "tool_call",
            "service": call.service.name,
            "session": fingerprint(session.id) if session is not None else "",
            "role": getattr(access, "role_name", "") or "",
            # Stateless (2026-07-28) calls carry the credential on the call itself.
            "key": session.credential if session is not None else getattr(call, "credential", ""),
            "tool": get("tool"), "table": get("table"), "rows": get("rows"),
            "duration_ms": get("duration_ms"), "outcome": get("outcome"),
        }
        info(self.log, "tool_call", {"audit": rec}, stamp)
        mark_audited()
        return rec
