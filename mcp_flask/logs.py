"""Structured logging: one JSON object per line, with the request's context on every line.

The request context (request id, session, service) lives in ``contextvars``.
Under gevent each greenlet runs in its own context (greenlet >= 1.0 keeps a
``gr_context`` per greenlet), so concurrent requests in one worker never see
each other's ids; a thread or greenlet started for a request does not inherit
the context unless it is started with ``contextvars.copy_context().run``.

* ``bind(request_id=..., session=..., service=...)`` sets the context for the
  current request and returns a token for ``reset``;
* ``ContextFilter`` copies the context onto every ``LogRecord``;
* ``JsonFormatter`` writes ``{"ts","level","logger","msg","request_id","session",
  "service", ...extra}``; exceptions appear as their type and first line only
  (no stack traces in logs: they can carry values and paths);
* ``lean_records()`` turns off the record fields no format prints (caller lookup);
* ``configure(level, fmt)`` installs both on the root logger (gunicorn's own
  loggers use them too, through ``gunicorn_conf.logconfig_dict``).

Session ids are logged shortened (``session_tag``): the full id is a bearer
credential for the session and does not belong in log files.

Imports nothing from the project.
"""
from __future__ import annotations

import contextvars
import itertools
import logging
import os
import re
import sys
import time

import orjson

REQUEST_ID = contextvars.ContextVar("mcp_request_id", default="")
SESSION = contextvars.ContextVar("mcp_session", default="")
SERVICE = contextvars.ContextVar("mcp_service", default="")
#: Set when the request's tool call wrote its audit record (audit.py): that record, with
#: the request id, stands for the request, so the middleware writes no access line too.
AUDITED = contextvars.ContextVar("mcp_audited", default=False)

#: Accepted client-supplied request ids: short, visible, no separators that could
#: forge log fields or headers.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
SESSION_TAG_LEN = 12
#: LogRecord attributes that are not "extra" fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime",
                                                                                  "request_id", "session",
                                                                                  "service"}


class _Ids:
    """Fresh request ids: a random 64-bit prefix per process, then a counter.

    Unique across workers and restarts (the prefix is drawn again in every forked
    child) and a fraction of the cost of 128 random bits per request, which is a
    ``getrandom`` system call.  A request id correlates log lines; it is no secret."""

    def __init__(self):
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(1)
        self.pid = os.getpid()      # for direct log lines (``info``), without a system call each

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


_IDS = _Ids()


def request_id_from(header: str | None) -> str:
    """The client's ``X-Request-ID`` when it is a sane token, else a fresh id (32 hex digits)."""
    if header and _REQUEST_ID_RE.match(header):
        return header
    return _IDS.next()


def session_tag(session_id: str | None) -> str:
    """The loggable prefix of a session id (enough to correlate, not enough to use it)."""
    return session_id[:SESSION_TAG_LEN] if session_id else ""


def bind(request_id: str = "", session: str = "", service: str = ""):
    """Set the logging context of the current request; returns tokens for ``reset``."""
    return (REQUEST_ID.set(request_id), SESSION.set(session_tag(session)), SERVICE.set(service),
            AUDITED.set(False))


def set_session(session_id: str) -> None:
    """Record the session once it is known (initialize creates it mid-request)."""
    SESSION.set(session_tag(session_id))


def reset(tokens) -> None:
    for var, token in zip((REQUEST_ID, SESSION, SERVICE, AUDITED), tokens):
        try:
            var.reset(token)
        except ValueError:  # reset from another context (a generator closed elsewhere)
            var.set(False if var is AUDITED else "")


class ContextFilter(logging.Filter):
    """Adds ``request_id``, ``session`` and ``service`` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        record.session = SESSION.get()
        record.service = SERVICE.get()
        return True


def lean_records() -> None:
    """Skip the LogRecord fields no mcp-flask format prints (caller file/line/function,
    thread and process names): looking up the caller walks the stack on every record,
    a cost paid per tool call by the audit log.  Process ids are still recorded."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False


_ts_cache = [-1, ""]


def utc_stamp(created: float) -> str:
    """``2026-11-24T02:31:50.990Z`` for a ``time.time()`` value (the second part is cached)."""
    sec = int(created)
    if sec != _ts_cache[0]:
        _ts_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _ts_cache[0] = sec
    return f"{_ts_cache[1]}.{int((created - sec) * 1000):03d}Z"


def _line_fields(created: float, level: str, logger: str, msg: str, request_id: str, session: str,
                 service: str, pid) -> dict:
    """The fields every JSON log line starts with, in their order."""
    return {"ts": utc_stamp(created), "level": level, "logger": logger, "msg": msg,
            "request_id": request_id, "session": session, "service": service, "pid": pid}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields passed with ``extra=`` are kept."""

    def format(self, record: logging.LogRecord) -> str:
        out = _line_fields(record.created, record.levelname.lower(), record.name, record.getMessage(),
                           getattr(record, "request_id", "") or REQUEST_ID.get(),
                           getattr(record, "session", "") or SESSION.get(),
                           getattr(record, "service", "") or SERVICE.get(), record.process)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            exc = record.exc_info[1]
            out["exc_type"] = record.exc_info[0].__name__
            out["exc"] = str(exc).split("\n", 1)[0][:200]
        return orjson.dumps(out, default=str).decode()


def direct_handler(logger: logging.Logger):
    """The handler ``logger``'s INFO records end at, when writing a line to it directly gives
    the very bytes ``logger.info`` would: mcp-flask's own JSON ``StreamHandler`` (with only
    ``ContextFilter``), reached by propagation from loggers with no filters or other
    handlers.  None in any other configuration (the caller then logs normally)."""
    found = None
    node = logger
    while node is not None:
        if node.filters:
            return None
        for h in node.handlers:
            if found is not None:
                return None
            found = h
        if not node.propagate:
            break
        node = node.parent
    if (found is None or type(found) is not logging.StreamHandler or found.level > logging.INFO
            or type(found.formatter) is not JsonFormatter
            or any(type(f) is not ContextFilter for f in found.filters)):
        return None
    return found


def info(logger: logging.Logger, msg: str, extra: dict) -> None:
    """``logger.info(msg, extra=extra)``, for lines written on every request (the audit log).

    With the standard configuration (gunicorn_conf, ``configure``) the JSON line is
    written straight to the handler's stream, under its lock: the same bytes, without
    a LogRecord, the handler chain and the formatter's generic field walk (a third
    of a small tool call's logging cost).  Any other configuration goes through
    ``logger.info``.  The caller has checked ``logger.isEnabledFor(logging.INFO)``."""
    handler = direct_handler(logger)
    if handler is None:
        logger.info(msg, extra=extra)
        return
    out = _line_fields(time.time(), "info", logger.name, msg, REQUEST_ID.get(), SESSION.get(),
                       SERVICE.get(), _IDS.pid if logging.logProcesses else None)
    out.update(extra)
    line = orjson.dumps(out, default=str).decode() + handler.terminator
    handler.acquire()
    try:
        handler.stream.write(line)
        handler.flush()
    except Exception:  # noqa: BLE001 - as logging does: report on stderr, never fail the request
        handler.handleError(logging.makeLogRecord({"name": logger.name, "msg": msg}))
    finally:
        handler.release()


def configure(level: str = "info", fmt: str = "json", stream=None) -> None:
    """Route every logger through one handler on stderr (JSON or plain text)."""
    lean_records()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(service)s %(session)s] %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_mcp_flask", False):
            root.removeHandler(h)
    handler._mcp_flask = True
    root.addHandler(handler)
    root.setLevel(level.upper())
