"""logs.py: the request's logging context, timestamps, and the direct (no LogRecord) write path.

The context is one ``ContextVar`` holding an immutable record; the per-field names
(``REQUEST_ID`` ...) and ``bind`` / ``set_session`` / ``reset`` keep their meaning.
``utc_stamp`` caches the second and looks the millisecond up in a table: checked
against plain formatting across second boundaries.  ``info`` writes the lines of
the standard configurations itself (JSON lines, audit.py's record-only lines),
without the handler lock when under gevent that lock protects nothing: the bytes
must be those logging writes.
"""
from __future__ import annotations

import contextvars
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import time

from mcp_flask import logs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bind_set_session_and_reset():
    before = (logs.REQUEST_ID.get(), logs.SESSION.get(), logs.SERVICE.get(), logs.AUDITED.get())
    token = logs.bind("rid-1", "0123456789abcdef-session", "svc")
    try:
        assert (logs.REQUEST_ID.get(), logs.SESSION.get(), logs.SERVICE.get()) == ("rid-1", "0123456789ab", "svc")
        assert logs.AUDITED.get() is False and logs.audited() is False
        logs.set_session("fedcba9876543210")
        assert logs.SESSION.get() == "fedcba987654" and logs.REQUEST_ID.get() == "rid-1"
        logs.mark_audited()
        assert logs.audited() is True and logs.AUDITED.get() is True
        assert (logs.REQUEST_ID.get(), logs.SESSION.get(), logs.SERVICE.get()) == ("rid-1", "fedcba987654", "svc")
        inner = logs.bind("rid-2", "", "")
        assert (logs.REQUEST_ID.get(), logs.SESSION.get(), logs.AUDITED.get()) == ("rid-2", "", False)
        logs.reset(inner)
        assert logs.REQUEST_ID.get() == "rid-1" and logs.audited() is True
    finally:
        logs.reset(token)
    assert (logs.REQUEST_ID.get(), logs.SESSION.get(), logs.SERVICE.get(), logs.AUDITED.get()) == before


def test_reset_from_another_context_empties_the_context():
    token = logs.bind("rid-x", "s", "svc")
    ctx = contextvars.copy_context()
    logs.reset(token)

    def elsewhere():
        logs.reset(token)   # already used: ValueError inside, the context is emptied
        return logs.REQUEST_ID.get(), logs.SERVICE.get(), logs.audited()
    try:
        ctx.run(elsewhere)
    except RuntimeError:    # a token can be used once; another context sees ValueError first
        pass
    token2 = logs.bind("rid-y", "s", "svc")
    other = contextvars.Context()
    assert other.run(lambda: (logs.reset(token2), logs.REQUEST_ID.get(), logs.audited())[1:]) == ("", False)
    logs.reset(token2)


def test_changes_in_a_copied_context_stay_there():
    """As with separate ContextVars: a greenlet or thread started with a copy of the context
    does not change the request's own context (the record is never mutated in place)."""
    token = logs.bind("rid-1", "session-a", "svc")
    try:
        ctx = contextvars.copy_context()
        ctx.run(logs.mark_audited)
        ctx.run(logs.set_session, "other-session")
        ctx.run(logs.SERVICE.set, "elsewhere")
        assert ctx.run(lambda: (logs.audited(), logs.SESSION.get(), logs.SERVICE.get())) == \
            (True, "other-sessio", "elsewhere")
        assert (logs.audited(), logs.SESSION.get(), logs.SERVICE.get()) == (False, "session-a", "svc")
    finally:
        logs.reset(token)


def test_context_filter_and_json_formatter_carry_the_context():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("test_logs.ctx")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    token = logs.bind("rid-9", "abcdefghijklmnop", "svc9")
    try:
        logger.info("hello %s", "you", extra={"x": 1})
    finally:
        logs.reset(token)
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert list(line)[:8] == ["ts", "level", "logger", "msg", "request_id", "session", "service", "pid"]
    assert (line["msg"], line["request_id"], line["session"], line["service"], line["x"]) == \
        ("hello you", "rid-9", "abcdefghijkl", "svc9", 1)


def _plain_stamp(t: float) -> str:
    sec = int(t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + ".%03dZ" % int((t - sec) * 1000)


def test_utc_stamp_across_second_boundaries():
    base = 1795000000.0          # 2026-11-19
    times = []
    for s in range(4):
        for frac in (0.0, 0.0004, 0.001, 0.0099, 0.5, 0.998, 0.9989, 0.999, 0.9999, 0.99999999):
            times.append(base + s + frac)
    # Back and forth across boundaries (the cached second must follow), then the real clock.
    times += [base + 1.999, base + 2.0, base + 1.9995, base + 3.0005, base + 0.25, base + 86400 * 40 + 0.123]
    times += [time.time() for _ in range(5)]
    for t in times:
        assert logs.utc_stamp(t) == _plain_stamp(t), t
    assert logs.utc_stamp(base + 2.0) == "2026-11-18T11:06:42.000Z"
    assert logs.utc_stamp(base + 2.9995) == "2026-11-18T11:06:42.999Z"
    assert logs.utc_stamp(-1.5) == _plain_stamp(-1.5)    # outside the table: formatted as before


def _audit_only_logger(stream):
    """audit.py's own setup when no logging is configured: its handler, record-only lines."""
    from mcp_flask.audit import AuditLineFormatter
    logger = logging.getLogger("test_logs.audit_only")
    for h in list(logger.handlers):
        logger.removeHandler(h)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(AuditLineFormatter())
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_direct_record_only_lines_are_the_lines_logging_would_write():
    stream = io.StringIO()
    logger = _audit_only_logger(stream)
    rec = {"time": "2026-11-24T00:00:00.000Z", "event": "tool_call", "rows": 3, "odd": {1}, "none": None}
    assert logs.direct_handler(logger) is not None
    logs.info(logger, "tool_call", {"audit": rec}, "2026-11-24T00:00:00.000Z")
    logger.info("tool_call", extra={"audit": rec})
    logs.info(logger, "no record", {})
    logger.info("no record", extra={})
    direct, standard, direct2, standard2 = stream.getvalue().splitlines(keepends=True)
    assert direct == standard and json.loads(direct)["rows"] == 3
    assert direct2 == standard2 == "no record\n"


def test_direct_writes_follow_a_replaced_stream():
    first, second = io.StringIO(), io.StringIO()
    logger = _audit_only_logger(first)
    logs.info(logger, "tool_call", {"audit": {"n": 1}})
    logger.handlers[0].setStream(second)
    logs.info(logger, "tool_call", {"audit": {"n": 2}})
    assert first.getvalue() == '{"n":1}\n' and second.getvalue() == '{"n":2}\n'


def test_a_failing_stream_is_reported_not_raised(capsys):
    class Broken(io.StringIO):
        def write(self, s):
            raise OSError("disk full")
    logger = _audit_only_logger(Broken())
    logs.info(logger, "tool_call", {"audit": {"n": 1}})     # no exception
    assert "OSError" in capsys.readouterr().err


def test_the_lock_is_kept_without_gevent():
    if "gevent" in sys.modules and sys.modules["gevent"].monkey.is_module_patched("threading"):
        return      # this test process runs under gevent: see the next test
    stream = io.StringIO()
    logger = _audit_only_logger(stream)
    logs.info(logger, "tool_call", {"audit": {"n": 1}})
    assert logger.handlers[0]._mcp_direct.lock_free is False and stream.getvalue() == '{"n":1}\n'


def test_lock_free_only_under_gevent_and_for_plain_streams(tmp_path):
    """Under gevent the handler lock is skipped for files and in-memory buffers (nothing
    there can switch greenlets), kept for anything else and for OS locks; lines from many
    greenlets come out whole, in order, one per call."""
    code = textwrap.dedent("""
    import io, logging, socket, sys
    # Made before patching (as gunicorn's handlers are): gevent converts its lock too.
    before = logging.StreamHandler(io.StringIO())
    from gevent import monkey; monkey.patch_all()
    native = logging.StreamHandler(io.StringIO())
    native.lock = monkey.get_original("_thread", "RLock")()
    import gevent
    from mcp_flask import logs
    from mcp_flask.audit import AuditLineFormatter

    def direct(handler):
        logs.info(logger_for(handler), "tool_call", {"audit": {"k": 0}})
        return handler._mcp_direct.lock_free

    def logger_for(handler):
        logger = logging.getLogger("t.%d" % id(handler))
        logger.handlers[:] = [handler]
        logger.propagate = False
        handler.setFormatter(AuditLineFormatter())
        return logger

    path = sys.argv[1]
    f = open(path, "w")
    a, b = socket.socketpair()
    results = {
        "file": direct(logging.StreamHandler(f)),
        "stringio": direct(logging.StreamHandler(io.StringIO())),
        "socket": direct(logging.StreamHandler(a.makefile("w"))),
        "before": direct(before),
        "native": direct(native),
    }
    handler = logging.StreamHandler(f)
    logger = logger_for(handler)

    def many(g):
        for i in range(200):
            logs.info(logger, "tool_call", {"audit": {"g": g, "i": i, "pad": "x" * 300}})
            gevent.sleep(0)
    gevent.joinall([gevent.spawn(many, g) for g in range(10)])
    f.close()
    print(results)
    """)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "log")], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "{'file': True, 'stringio': True, 'socket': False, 'before': True, 'native': False}"
    lines = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines()]
    lines = [r for r in lines if "g" in r]
    assert len(lines) == 2000
    for g in range(10):
        assert [r["i"] for r in lines if r["g"] == g] == list(range(200))
