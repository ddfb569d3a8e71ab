"""The WSGI layer around every request: request id, log context, HTTP metrics, SSE streams, shutdown.

``RequestMiddleware`` wraps the whole application (the MCP transport and the
Flask app).  For each request it

* takes ``X-Request-ID`` (or makes one), binds it with the session and service
  to the logging context (logs.py) and echoes it in the response;
* counts the HTTP request by status (metrics.py) and writes one structured
  access-log line when the response ends (``mcp_flask.access``), except for a
  tool call answered with 200: its audit record (audit.py, same request id) is
  that request's line;
* keeps ``mcp_sse_streams_open`` right for SSE responses, and ends them cleanly
  when the worker is shutting down (a last comment, then the end of the body,
  so the client reconnects, with ``Last-Event-ID``, to a worker that stays);
* when operator endpoints have their own address (``MCP_FLASK_OPS_BIND``),
  keeps ``/readyz`` and ``/metrics`` off the public port and MCP off the ops port.

``begin_shutdown(store)`` is called from the worker's SIGTERM handler
(gunicorn_conf): in-flight calls keep running to completion (gunicorn waits up
to ``graceful_timeout``), only the open-ended SSE streams are ended.
"""
from __future__ import annotations

import logging
import time

from . import logs, metrics, sse

access_log = logging.getLogger("mcp_flask.access")
_METHODS = frozenset({"GET", "POST", "DELETE", "OPTIONS", "HEAD", "PUT", "PATCH"})
_JSON_404 = b'{"error":"not found"}'
_perf = time.perf_counter


class _State:
    stopping = False


STATE = _State()


def begin_shutdown(store=None) -> None:
    """The worker is stopping: end SSE streams at their next chunk and wake blocked listeners."""
    STATE.stopping = True
    shutdown = getattr(store, "shutdown", None)
    if shutdown is not None:
        shutdown()


class _Body:
    """The response body, with the request's bookkeeping done when the server closes it."""

    __slots__ = ("it", "mw", "environ", "info", "tokens", "started", "sse", "done")

    def __init__(self, it, mw, environ, info, tokens, started, is_sse):
        self.it, self.mw, self.environ, self.info = it, mw, environ, info
        self.tokens, self.started, self.sse, self.done = tokens, started, is_sse, False

    def __iter__(self):
        if not self.sse:
            return iter(self.it)
        return self._stream()

    def _stream(self):
        try:
            for chunk in self.it:
                yield chunk
                if STATE.stopping:
                    # Graceful shutdown: end the stream so the client reconnects elsewhere.
                    yield sse.comment("server restarting; reconnect")
                    break
        except Exception as exc:  # noqa: BLE001 - e.g. Redis went away mid-stream
            # The headers are gone already: end the stream (the client reconnects and then
            # gets a proper error status) with one log line instead of a server traceback.
            access_log.warning("stream ended early: %s", type(exc).__name__)
            return
        if STATE.stopping:
            # Close the connection after the stream (gunicorn would keep it alive, and the
            # retiring worker would wait for the idle connection until graceful_timeout).
            force_close = _force_close(self.info.get("start_response"))
            if force_close is not None:
                force_close()

    def close(self):
        if self.done:
            return
        self.done = True
        try:
            close = getattr(self.it, "close", None)
            if close is not None:
                close()
        finally:
            self.mw.finish(self.environ, self.info, self.started, self.sse)
            logs.reset(self.tokens)


class RequestMiddleware:
    """Request id, logging context, HTTP metrics and SSE accounting around ``app``."""

    def __init__(self, app, services=(), mcp_prefix: str = "/mcp/", ops_port: str | None = None,
                 ops_paths=frozenset({"/readyz", "/metrics"})):
        self.app = app
        #: Configured service names: anything else in the path is labelled "(unknown)", so
        #: clients cannot grow the metrics' label sets (or the logs' service field) at will.
        self.services = frozenset(services)
        self.prefix = mcp_prefix
        self.ops_port = ops_port
        self.ops_paths = ops_paths
        # Labelled metric children, looked up once (labels() takes a lock and builds tuples),
        # kept as their metrics.adder.
        self._http: dict = {}
        self._errors: dict = {}

    def __call__(self, environ, start_response):
        started = _perf()
        path = environ.get("PATH_INFO", "")
        service = path[len(self.prefix):].rstrip("/") if path.startswith(self.prefix) else ""
        if service and service not in self.services:
            service = "(unknown)"
        rid = logs.request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        environ["mcp_flask.request_id"] = rid
        tokens = logs.bind(rid, environ.get("HTTP_MCP_SESSION_ID", ""), service)
        # start_response is kept for _force_close, looked up only when a stream ends at shutdown.
        info = {"service": service, "status": 0, "sse": False, "start_response": start_response}

        def start(status, headers, exc_info=None):
            info["status"] = int(status[:3])
            for name, value in headers:
                # The length first: most headers are neither, and need no lower-casing.
                n = len(name)
                if n == 12:
                    if value.startswith(sse.CONTENT_TYPE) and name.lower() == "content-type":
                        info["sse"] = True
                elif n == 14 and name.lower() == "mcp-session-id":
                    logs.set_session(value)
            headers.append(("X-Request-ID", rid))
            return start_response(status, headers, exc_info)

        try:
            if self.ops_port is not None and not self._port_allows(environ, path):
                start("404 Not Found", [("Content-Type", "application/json"),
                                        ("Content-Length", str(len(_JSON_404)))])
                it = [_JSON_404]
            else:
                it = self.app(environ, start)
        except BaseException:
            self.finish(environ, info, started, False)
            logs.reset(tokens)
            raise
        if info["sse"]:
            metrics.SSE_OPEN.labels(service, _kind(environ)).inc()
        elif type(it) is list:
            # The transport's JSON answers are complete lists: account for them now, no wrapper.
            self.finish(environ, info, started, False)
            logs.reset(tokens)
            return it
        return _Body(it, self, environ, info, tokens, started, info["sse"])

    def _port_allows(self, environ, path: str) -> bool:
        on_ops = environ.get("SERVER_PORT") == self.ops_port
        if path in self.ops_paths:
            return on_ops
        return not on_ops or path == "/healthz"

    def finish(self, environ, info, started, was_sse) -> None:
        """Count the request and write its access-log line (when the body is closed)."""
        service, status = info["service"], info["status"]
        method = environ.get("REQUEST_METHOD", "")
        if was_sse:
            metrics.SSE_OPEN.labels(service, _kind(environ)).dec()
        if service:
            key = (service, method, status)
            child = self._http.get(key)
            if child is None:
                # Only the standard methods get their own label value.
                m = method if method in _METHODS else "OTHER"
                child = self._http[key] = metrics.adder(metrics.HTTP.labels(service, m, str(status)))
            child(1)
            if status >= 400:
                err = self._errors.get(key[0::2])
                if err is None:
                    err = self._errors[key[0::2]] = metrics.adder(metrics.ERRORS.labels(service, f"http_{status}"))
                err(1)
        # One line per request: a tool call's audit record (with the request id, duration
        # and outcome) already is its line, unless the HTTP exchange itself failed.
        # The cheapest tests first: a tool call's 200 usually settles it.
        if not (status < 400 and not was_sse and logs.audited()) and access_log.isEnabledFor(logging.INFO):
            access_log.info("%s %s %s", method, environ.get("PATH_INFO", ""), status, extra={
                "http_method": method, "path": environ.get("PATH_INFO", ""), "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "sse": was_sse, "remote": environ.get("REMOTE_ADDR", "")})


def _force_close(start_response):
    """gunicorn's start_response is a method of its Response, whose force_close() ends the
    keep-alive connection after this response (used at shutdown); None for other servers."""
    return getattr(getattr(start_response, "__self__", None), "force_close", None)


def _kind(environ) -> str:
    return "get" if environ.get("REQUEST_METHOD") == "GET" else "post"
