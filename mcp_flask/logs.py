"""Structured logging: one JSON object per line, with the request's context on every line.

The request context (request id, session, service) lives in one ``contextvars``
variable.
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
import io
import itertools
import logging
import os
import re
import sys
import threading
import time

import orjson

# The logging context of one request: a plain tuple ``(request_id, session, service,
# audited)``.  One ``ContextVar`` holds the whole context: binding a request is one
# ``set`` (and its end one ``reset``) instead of one per field, and a log line reads one
# variable.  Immutable: a change (the session becoming known, the audit record written)
# sets a new one, so a context copied for another greenlet or thread keeps the values
# it had, as separate variables would.  A plain tuple, not a named subclass: making one
# is a few times cheaper, and it is made twice per request.
_EMPTY = ("", "", "", False)
_CONTEXT = contextvars.ContextVar("mcp_log_context", default=_EMPTY)
_get = _CONTEXT.get


class _Field:
    """One field of the request's logging context, read (and set) like a ``ContextVar``.

    The names ``REQUEST_ID``, ``SESSION``, ``SERVICE`` and ``AUDITED`` keep working for
    code that reads a single field; the hot paths read ``_CONTEXT`` at once."""

    __slots__ = ("index", "name")

    def __init__(self, index: int, name: str):
        self.index, self.name = index, name

    def get(self):
        return _get()[self.index]

    def set(self, value) -> None:
        ctx = list(_get())
        ctx[self.index] = value
        _CONTEXT.set(tuple(ctx))

    def __repr__(self) -> str:
        return f"<logs.{self.name}>"


REQUEST_ID = _Field(0, "REQUEST_ID")
SESSION = _Field(1, "SESSION")
SERVICE = _Field(2, "SERVICE")
#: Set when the request's tool call wrote its audit record (audit.py): that record, with
#: the request id, stands for the request, so the middleware writes no access line too.
AUDITED = _Field(3, "AUDITED")


def mark_audited() -> None:
    """The current request's audit record is written (see ``AUDITED``)."""
    rid, session, service, _ = _get()
    _CONTEXT.set((rid, session, service, True))


def audited() -> bool:
    """Whether the current request's audit record is written."""
    return _get()[3]


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
    ids = _IDS      # _IDS.next(), written out: one frame fewer per request
    return f"{ids.prefix}{next(ids.counter):016x}"


def session_tag(session_id: str | None) -> str:
    """The loggable prefix of a session id (enough to correlate, not enough to use it)."""
    return session_id[:SESSION_TAG_LEN] if session_id else ""


def bind(request_id: str = "", session: str = "", service: str = ""):
    """Set the logging context of the current request; returns a token for ``reset``."""
    return _CONTEXT.set((request_id, session[:SESSION_TAG_LEN] if session else "", service, False))


def set_session(session_id: str) -> None:
    """Record the session once it is known (initialize creates it mid-request)."""
    rid, _, service, audited_ = _get()
    _CONTEXT.set((rid, session_tag(session_id), service, audited_))


def reset(token) -> None:
    """End the context ``bind`` set (back to the one before)."""
    try:
        _CONTEXT.reset(token)
    except ValueError:  # reset from another context (a generator closed elsewhere)
        _CONTEXT.set(_EMPTY)


class ContextFilter(logging.Filter):
    """Adds ``request_id``, ``session`` and ``service`` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id, record.session, record.service, _ = _get()
        return True


def lean_records() -> None:
    """Skip the LogRecord fields no mcp-flask format prints (caller file/line/function,
    thread and process names): looking up the caller walks the stack on every record,
    a cost paid per tool call by the audit log.  Process ids are still recorded."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False


_ts_cache = [-1, ""]
#: ".000Z" to ".999Z": the millisecond part of a stamp, looked up instead of formatted.
_MS = tuple(f".{ms:03d}Z" for ms in range(1000))


def utc_stamp(created: float) -> str:
    """``2026-11-24T02:31:50.990Z`` for a ``time.time()`` value (the second part is cached,
    the millisecond part comes from a table)."""
    sec = int(created)
    if sec != _ts_cache[0]:
        _ts_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _ts_cache[0] = sec
    ms = int((created - sec) * 1000)
    if 0 <= ms < 1000:
        return _ts_cache[1] + _MS[ms]
    return f"{_ts_cache[1]}.{ms:03d}Z"     # before 1970: as it always was formatted


def _line_fields(created: float, level: str, logger: str, msg: str, request_id: str, session: str,
                 service: str, pid) -> dict:
    """The fields every JSON log line starts with, in their order."""
    return {"ts": utc_stamp(created), "level": level, "logger": logger, "msg": msg,
            "request_id": request_id, "session": session, "service": service, "pid": pid}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields passed with ``extra=`` are kept."""

    def format(self, record: logging.LogRecord) -> str:
        ctx = _get()
        out = _line_fields(record.created, record.levelname.lower(), record.name, record.getMessage(),
                           getattr(record, "request_id", "") or ctx[0],
                           getattr(record, "session", "") or ctx[1],
                           getattr(record, "service", "") or ctx[2], record.process)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            exc = record.exc_info[1]
            out["exc_type"] = record.exc_info[0].__name__
            out["exc"] = str(exc).split("\n", 1)[0][:200]
        return orjson.dumps(out, default=str).decode()


#: Formatter classes whose INFO line ``info`` writes itself, each with the function that
#: makes the line: ``f(logger_name, msg, extra, stamp)`` -> the formatter's very output.
#: audit.py adds its own formatter (the record alone).
DIRECT_FORMATS: dict = {}


def _json_line(name: str, msg: str, extra: dict, stamp: str) -> str:
    rid, session, service, _ = _get()
    out = {"ts": stamp, "level": "info", "logger": name, "msg": msg, "request_id": rid,
           "session": session, "service": service, "pid": _IDS.pid if logging.logProcesses else None}
    out.update(extra)
    return orjson.dumps(out, default=str).decode()


DIRECT_FORMATS[JsonFormatter] = _json_line


def direct_handler(logger: logging.Logger):
    """The handler ``logger``'s INFO records end at, when writing a line to it directly gives
    the very bytes ``logger.info`` would: a plain ``StreamHandler`` whose formatter is one
    of ``DIRECT_FORMATS`` (mcp-flask's JSON lines, the audit record alone), with no filter
    but ``ContextFilter``, reached by propagation from loggers with no filters or other
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
            or type(found.formatter) not in DIRECT_FORMATS):
        return None
    for f in found.filters:     # a loop, not any(<generator>): usually there are none
        if type(f) is not ContextFilter:
            return None
    return found


def _plain_stream(stream) -> bool:
    """A stream whose ``write`` and ``flush`` never switch greenlets: an in-memory text
    buffer, or a text file over a (buffered) OS file descriptor.  gevent makes sockets
    and its own file objects cooperative, never these (a write to a pipe or a file
    blocks the whole worker, greenlets included, until it is done)."""
    t = type(stream)
    if t is io.StringIO:
        return True
    if t is not io.TextIOWrapper:
        return False
    raw = stream.buffer
    if type(raw) in (io.BufferedWriter, io.BufferedRandom):
        raw = raw.raw
    return type(raw) is io.FileIO


def _greenlet_lock(lock) -> bool:
    """``lock`` only excludes greenlets: the pure-Python ``threading.RLock`` that logging
    creates once gevent has patched ``threading`` (it sits on gevent's lock)."""
    return type(lock) is getattr(threading, "_PyRLock", None) and "gevent" in sys.modules and \
        sys.modules["gevent"].monkey.is_module_patched("threading")


class _Direct:
    """What ``info`` knows about a handler it writes to (kept on the handler)."""

    __slots__ = ("stream", "lock", "lock_free")

    def __init__(self, handler):
        self.stream, self.lock = handler.stream, handler.lock
        # Under gevent the handler's lock (logging's RLock, built on gevent's lock; gevent
        # converts the locks of handlers made before it patched, gunicorn's included) only
        # keeps greenlets apart, and a write to a plain stream never lets another greenlet
        # run before it is done: taking the lock (a few Python-level calls each way) then
        # protects nothing, so the line is written without it.  An OS lock is kept.
        self.lock_free = _plain_stream(self.stream) and _greenlet_lock(self.lock)


def info(logger: logging.Logger, msg: str, extra: dict, stamp: str | None = None) -> None:
    """``logger.info(msg, extra=extra)``, for lines written on every request (the audit log).

    With the standard configurations (gunicorn_conf, ``configure``, audit.py's own
    handler) the line is written straight to the handler's stream: the same bytes,
    without a LogRecord, the handler chain and the formatter's generic field walk (a
    third of a small tool call's logging cost).  Any other configuration goes through
    ``logger.info``.  ``stamp`` is the line's ``ts`` (``utc_stamp`` of now when not
    given; the audit record passes its own ``time``).  The caller has checked
    ``logger.isEnabledFor(logging.INFO)``."""
    handler = direct_handler(logger)
    if handler is None:
        logger.info(msg, extra=extra)
        return
    line = DIRECT_FORMATS[type(handler.formatter)](
        logger.name, msg, extra, stamp or utc_stamp(time.time())) + handler.terminator
    direct = handler.__dict__.get("_mcp_direct")
    if direct is None or direct.stream is not handler.stream or direct.lock is not handler.lock:
        direct = handler._mcp_direct = _Direct(handler)
    try:
        if direct.lock_free:
            stream = direct.stream
            stream.write(line)
            stream.flush()
            return
        handler.acquire()
        try:
            handler.stream.write(line)
            handler.flush()
        finally:
            handler.release()
    except Exception:  # noqa: BLE001 - as logging does: report on stderr, never fail the request
        handler.handleError(logging.makeLogRecord({"name": logger.name, "msg": msg}))


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
