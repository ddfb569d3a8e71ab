"""Streamable HTTP at ``/mcp/<service>``: headers, sessions, JSON or SSE answers.

This is a plain WSGI application rather than a Flask view: it is the hot path
of every MCP call, and skipping Flask's request/response machinery here is
worth several hundred microseconds per call.  The app factory mounts it in
front of the Flask app (which keeps /healthz, /metrics and friends).

Order of checks (transports spec, 2025-11-25; see shared/reference/mcp-protocol.md):

1. Host and Origin against the allow-list (DNS-rebinding protection): a bad
   Host is 421, a bad Origin 403; this runs before anything else, so even an
   ``initialize`` without a session is refused.
2. The service exists (404).
3. Method: POST, GET (SSE stream), DELETE (end session), OPTIONS (CORS); else 405.
4. POST: Content-Type (415), Accept (406), body size (413), JSON (400/-32700),
   envelope (400/-32600); a 2026-07-28 request (``_meta`` protocol version,
   ``server/discover``, ``subscriptions/listen``) is served statelessly by
   modern.py; ``initialize`` creates the session; every other
   message needs ``Mcp-Session-Id`` (400 without, 404 unknown/expired) and a
   supported ``MCP-Protocol-Version`` when present (400).
5. Requests are answered as ``application/json``, or ``text/event-stream``
   when the client accepts it and the call will send more than one message
   (progress, log messages, a question to the user).  Notifications and
   responses get 202 with no body.

Large results (``encoding.Lazy``: a page of rows encoded batch by batch) are
written piece by piece, never as one bytes object: a JSON answer with its exact
Content-Length (``respond``), an SSE answer as one ``data:`` line in pieces.
While a request answered inline (JSON) runs, ``liveness`` can tell whether its
client is still connected, so a long read stops as soon as the client leaves.
A resumable SSE stream's call keeps running instead (a disconnect is not a
cancellation there), and a result too large to keep for replay
(``REPLAY_MAX_BYTES``) is recorded in the event store as a short tool error
asking to call again, not copied.
"""
from __future__ import annotations

import contextvars
import logging
import queue
import secrets
import threading
from functools import lru_cache
from urllib.parse import urlsplit

from . import encoding, jsonrpc, liveness, sse
from .errors import HttpError, LimitExceeded, ProtocolError
from .protocol import SESSION_VERSIONS, Call, negotiate
from .modern import ModernTransport
from .sessions import GET_STREAM, Session, new_session_id

log = logging.getLogger("mcp_flask.transport")

JSON_HEADERS = [("Content-Type", "application/json")]
SESSION_HEADER = "Mcp-Session-Id"
_STATUS = {200: "200 OK", 202: "202 Accepted", 204: "204 No Content", 400: "400 Bad Request",
           401: "401 Unauthorized", 403: "403 Forbidden", 404: "404 Not Found",
           405: "405 Method Not Allowed", 406: "406 Not Acceptable", 409: "409 Conflict",
           413: "413 Payload Too Large", 415: "415 Unsupported Media Type",
           421: "421 Misdirected Request", 429: "429 Too Many Requests",
           500: "500 Internal Server Error", 503: "503 Service Unavailable"}
#: Every version a session-mode request may announce in MCP-Protocol-Version.
HEADER_VERSIONS = frozenset(SESSION_VERSIONS)
_DONE = object()
#: How often a resumed POST stream looks for new events of a call still running.
RESUME_POLL_S = 0.05
#: Never set: an interruptible (gevent-friendly) way to wait between polls.
_RESUME_WAIT = threading.Event()
#: Longest wait for the client's answer to a server-to-client request.
ASK_TIMEOUT_S = 300.0
#: Largest lazy (streamed) result recorded whole in the session's event store for
#: Last-Event-ID replay; a larger one is recorded as a short "call again" tool error
#: (the in-memory store would keep the rows alive for the replay window, Redis would
#: get a copy of every byte).
REPLAY_MAX_BYTES = 1 << 20


def client_socket(environ):
    """This request's client socket (gunicorn's workers; ``gunicorn.sock`` under gevent's
    pywsgi worker), for ``liveness``; None elsewhere."""
    return environ.get("gunicorn.socket") or environ.get("gunicorn.sock")


def replay_stand_in(message: dict, size: int) -> dict:
    """What the event store keeps instead of a ``size``-byte result: a tool error saying
    it cannot be replayed (the live stream still sends the real result)."""
    err = LimitExceeded(f"the result ({size} bytes) was too large to keep for replay after a reconnect; "
                        f"call the tool again (a smaller limit is safer)")
    return jsonrpc.result(message.get("id"), {"content": [{"type": "text", "text": err.text()}],
                                              "isError": True})


def confirmer(request):
    """``Call.ask`` (``ToolContext.confirm``) over elicitation: ``confirm(message) -> bool``.

    Only an explicit accept with ``confirm: true`` allows the change; decline, cancel,
    a timeout or anything malformed changes nothing."""
    from .input_required import CONFIRM_SCHEMA

    def confirm(message: str) -> bool:
        answer = request("elicitation/create", {"mode": "form", "message": message,
                                                "requestedSchema": CONFIRM_SCHEMA})
        result = answer.get("result") if isinstance(answer, dict) else None
        if not isinstance(result, dict) or result.get("action") != "accept":
            return False
        content = result.get("content")
        return isinstance(content, dict) and content.get("confirm") is True
    return confirm


#: Distinct header values remembered by the per-request parsing helpers below.  Clients
#: send the same few Host and Accept values over and over; a client sending a new one
#: each time only evicts (the answers never depend on anything but the text).
PARSE_CACHE_SIZE = 256


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def host_of(value: str) -> str:
    """The host part of a Host header or URL netloc, lower-cased, IPv6 kept in brackets.

    Memoised (a pure function of the text, asked on every request)."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[:end + 1] if end > 0 else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def _accepts(accept: str, mime: str) -> bool:
    """Does the (non-empty) Accept header ``accept`` admit ``mime``?  Memoised: a pure
    function of the two texts, asked once or twice per request."""
    accept = accept.lower()
    major = mime.split("/", 1)[0]
    return mime in accept or "*/*" in accept or f"{major}/*" in accept


class Transport:
    """The WSGI app serving every ``/mcp/<service>`` endpoint."""

    def __init__(self, settings, protocol, services: dict, store, prefix: str = "/mcp/"):
        self.settings = settings
        self.server = settings.server
        self.protocol = protocol
        self.services = services
        self.store = store
        self.prefix = prefix
        self.allowed_hosts = frozenset(h.lower() for h in self.server.allowed_hosts)
        self.any_host = "*" in self.allowed_hosts
        self.allowed_origins = frozenset(o.lower().rstrip("/") for o in self.server.allowed_origins)
        self.any_origin = "*" in self.allowed_origins
        #: Hook for access control: (service, environ) -> (role_name, credential_id) or raise HttpError.
        self.authenticate = lambda service, environ: (service.config.default_role, "")
        #: The stateless 2026-07-28 era, served beside sessions (modern.py).
        self.modern = ModernTransport(self)
        attach = getattr(protocol, "attach", None)
        if attach is not None:
            for service in services.values():
                attach(service)

    # ------------------------------------------------------------------ WSGI entry
    def __call__(self, environ, start_response):
        try:
            self.check_origin(environ)
            service = self.service_for(environ)
            method = environ["REQUEST_METHOD"]
            if method == "POST":
                return self.post(environ, start_response, service)
            if method == "GET":
                return self.get(environ, start_response, service)
            if method == "DELETE":
                return self.delete(environ, start_response, service)
            if method == "OPTIONS":
                return self.preflight(environ, start_response)
            raise HttpError(405, f"Method Not Allowed: {method}", headers={"Allow": "GET, POST, DELETE, OPTIONS"})
        except HttpError as exc:
            return self.http_error(environ, start_response, exc)

    # ------------------------------------------------------------------ checks
    def check_origin(self, environ) -> None:
        """DNS-rebinding protection: Host and (when sent) Origin must be allowed names."""
        host = environ.get("HTTP_HOST")
        if host is None or (not self.any_host and host_of(host) not in self.allowed_hosts):
            raise HttpError(421, "Invalid Host header")
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and not self.origin_allowed(origin):
            raise HttpError(403, "Forbidden: invalid Origin header")

    def origin_allowed(self, origin: str) -> bool:
        if self.any_origin:
            return True
        o = origin.strip().lower().rstrip("/")
        if o in self.allowed_origins:
            return True
        parts = urlsplit(o)
        return parts.scheme in ("http", "https") and host_of(parts.netloc) in self.allowed_hosts

    def service_for(self, environ):
        path = environ.get("PATH_INFO", "")
        name = path[len(self.prefix):] if path.startswith(self.prefix) else ""
        service = self.services.get(name.rstrip("/"))
        if service is None:
            raise HttpError(404, "Not Found: no such MCP service")
        return service

    @staticmethod
    def accepts(environ, mime: str) -> bool:
        accept = environ.get("HTTP_ACCEPT")
        if not accept:
            return mime == "application/json"
        return _accepts(accept, mime)

    def read_body(self, environ) -> bytes:
        limit = self.server.max_body_bytes
        length = environ.get("CONTENT_LENGTH")
        if length:
            try:
                n = int(length)
            except ValueError:
                raise HttpError(400, "Bad Request: invalid Content-Length") from None
            if n > limit:
                raise HttpError(413, f"Payload Too Large: the limit is {limit} bytes")
            body = environ["wsgi.input"].read(n)
        else:
            # Chunked or unknown length: read one byte past the limit to detect excess.
            body = environ["wsgi.input"].read(limit + 1)
            if len(body) > limit:
                raise HttpError(413, f"Payload Too Large: the limit is {limit} bytes")
        return body

    def session_for(self, environ, service, required: bool = True) -> Session | None:
        sid = environ.get("HTTP_MCP_SESSION_ID")
        if not sid:
            if required:
                raise HttpError(400, "Bad Request: Mcp-Session-Id header is required")
            return None
        session = self.store.get(sid)
        if session is None or session.service != service.name:
            raise HttpError(404, "Not Found: session expired or unknown; initialize again")
        return session

    def check_version_header(self, environ, session: Session | None) -> str:
        """The protocol version for this request: the header if present (must be supported)."""
        header = environ.get("HTTP_MCP_PROTOCOL_VERSION")
        if header is None:
            # No header: the session knows; without one the spec says assume 2025-03-26.
            return session.protocol_version if session else "2025-03-26"
        if header not in HEADER_VERSIONS:
            raise HttpError(400, f"Bad Request: unsupported MCP-Protocol-Version {header[:40]!r}; "
                                 f"supported: {', '.join(SESSION_VERSIONS)}",
                            data={"supported": list(SESSION_VERSIONS)})
        # A supported but different header is served under the negotiated version
        # (conformance server-sse-multiple-streams sends 2025-03-26 in 2025-11-25 sessions).
        return session.protocol_version if session else header

    # ------------------------------------------------------------------ responses
    def cors_headers(self, environ) -> list:
        origin = environ.get("HTTP_ORIGIN")
        if not origin:
            return []
        return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin"),
                ("Access-Control-Expose-Headers", "Mcp-Session-Id, MCP-Protocol-Version")]

    def respond(self, environ, start_response, status: int, body: bytes = b"", headers=None):
        """Start the response; its body iterable.  ``body`` is bytes or an ``encoding.Lazy``
        document, written in pieces with its exact Content-Length known up front."""
        hdrs = list(headers) if headers else []
        # Always a length, 0 included: without one gunicorn frames an empty 202 as a
        # chunked body (an extra write for its terminator).
        hdrs.append(("Content-Length", str(encoding.size_of(body))))
        if "HTTP_ORIGIN" in environ:
            hdrs += self.cors_headers(environ)
        start_response(_STATUS.get(status) or f"{status} Error", hdrs)
        if isinstance(body, encoding.Lazy):
            return encoding.write_pieces(body)
        return [body] if body else []

    def json(self, environ, start_response, payload, status: int = 200, extra=None):
        body = encoding.encode_lazy(payload)
        if type(body) is bytes and not extra and "HTTP_ORIGIN" not in environ:
            # ``respond`` written out for the common answer (every tool call's): an encoded
            # body, no extra headers, no CORS.  Same status line, headers and body.
            start_response(_STATUS.get(status) or f"{status} Error",
                           [JSON_HEADERS[0], ("Content-Length", str(len(body)))])
            return [body] if body else []
        return self.respond(environ, start_response, status, body,
                            JSON_HEADERS + list(extra) if extra else JSON_HEADERS)

    def http_error(self, environ, start_response, exc: HttpError):
        headers = JSON_HEADERS + list(exc.headers.items())
        body = encoding.dumps(jsonrpc.error(None, exc))
        return self.respond(environ, start_response, exc.http_status, body, headers)

    def preflight(self, environ, start_response):
        headers = [("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS"),
                   ("Access-Control-Allow-Headers",
                    "Content-Type, Accept, Authorization, Mcp-Session-Id, MCP-Protocol-Version, "
                    "Last-Event-ID, X-API-Key, X-DreamFactory-API-Key, Mcp-Method, Mcp-Name"),
                   ("Access-Control-Max-Age", "600")]
        return self.respond(environ, start_response, 204, b"", headers)

    # ------------------------------------------------------------------ POST
    def post(self, environ, start_response, service):
        ctype = environ.get("CONTENT_TYPE")
        if ctype != "application/json" and \
                (ctype or "").split(";", 1)[0].strip().lower() != "application/json":
            raise HttpError(415, "Unsupported Media Type: Content-Type must be application/json")
        # ``accepts`` inlined: no header (or an empty one) admits JSON.
        accept = environ.get("HTTP_ACCEPT")
        if accept and not (_accepts(accept, "application/json") or _accepts(accept, sse.CONTENT_TYPE)):
            raise HttpError(406, "Not Acceptable: Accept must include application/json or text/event-stream")
        body = self.read_body(environ)
        try:
            messages, is_batch = jsonrpc.parse(body, self.protocol.schemas)
        except ProtocolError as exc:
            return self.json(environ, start_response, jsonrpc.error_for(exc), exc.http_status)
        first = messages[0]
        if not is_batch and self.modern.wants(environ, first):
            # Stateless calls are answered inline (or over a stream whose closing cancels
            # them): a client that leaves ends the call's reads either way.
            watched = liveness.watch(client_socket(environ))
            try:
                return self.modern.post(environ, start_response, service, first)
            finally:
                liveness.unwatch(watched)
        if not is_batch and first.kind == jsonrpc.REQUEST and first.method == "initialize":
            return self.initialize(environ, start_response, service, first)
        if (first.method == "initialize" if not is_batch
                else any(m.method == "initialize" for m in messages)):
            raise HttpError(400, "Invalid Request: initialize must not be part of a batch")
        session = self.session_for(environ, service)
        version = self.check_version_header(environ, session)
        self.check_credentials(environ, service, session)
        if is_batch and session.protocol_version != "2025-03-26":
            raise HttpError(400, f"Invalid Request: JSON-RPC batches are not supported in protocol "
                                 f"version {session.protocol_version}")
        if not is_batch and first.kind == jsonrpc.REQUEST:
            requests = messages         # the common case: one request, nothing else to route
        else:
            requests = [m for m in messages if m.kind == jsonrpc.REQUEST]
            for m in messages:
                if m.kind == jsonrpc.NOTIFICATION:
                    self.protocol.notify(m.method, m.params, self.call(service, session, version, None))
                elif m.kind == jsonrpc.RESPONSE:
                    self.on_client_response(session, m)
        if not requests:
            return self.respond(environ, start_response, 202)
        if is_batch:
            watched = liveness.watch(client_socket(environ))
            try:
                out = [r for r in (self.serve(service, session, version, m) for m in requests) if r is not None]
            finally:
                liveness.unwatch(watched)
            if not out:
                return self.respond(environ, start_response, 202)
            return self.json(environ, start_response, out)
        msg = requests[0]
        if self.wants_stream(environ, service, session, msg):
            return self.stream(environ, start_response, service, session, version, msg)
        # Answered inline: a long read stops if the client leaves (not so for SSE streams
        # above, which are resumable: there a disconnect is not a cancellation).
        # Plain watch/unwatch rather than ``liveness.watching``: a @contextmanager costs a
        # generator and four calls per request.
        watched = liveness.watch(client_socket(environ))
        try:
            response = self.serve(service, session, version, msg)
        finally:
            liveness.unwatch(watched)
        if response is None:
            # Cancelled by the client: no response is sent for it (cancellation spec).
            return self.respond(environ, start_response, 202)
        return self.json(environ, start_response, response)

    def check_credentials(self, environ, service, session: Session) -> None:
        """A session may only be used with the credentials that created it."""
        role, credential = self.authenticate(service, environ)
        if credential != session.credential or role != session.role:
            raise HttpError(403, "Forbidden: these credentials do not match the session's")

    def call(self, service, session, version, request_id, emit=None) -> Call:
        return Call(service=service, session=session, protocol_version=version, request_id=request_id,
                    emit=emit, publish=(lambda m: self.store.publish(session.id, m)) if session else None)

    def serve(self, service, session, version, msg, emit=None, request=None) -> dict | None:
        """Run one request; its JSON-RPC response dict, or None when the client cancelled it."""
        call = Call(service=service, session=session, protocol_version=version, request_id=msg.id,
                    emit=emit, publish=lambda m: self.store.publish(session.id, m))     # ``call``, inlined
        if request is not None:
            call.request = request
            if service.config.confirm_destructive and "elicitation" in (session.client_capabilities or {}):
                call.ask = confirmer(request)
        self.store.track_call(session.id, msg.id, call.scope)
        try:
            response = jsonrpc.result(msg.id, self.protocol.handle(msg.method, msg.params, call))
        except ProtocolError as exc:
            response = jsonrpc.error(msg.id, exc)
        finally:
            self.store.untrack_call(session.id, msg.id)
        return None if call.scope.cancelled else response

    def wants_stream(self, environ, service, session: Session, msg) -> bool:
        """SSE only when the client accepts it and the call may send more than its result."""
        if msg.method != "tools/call" or not self.accepts(environ, sse.CONTENT_TYPE):
            return False
        meta = msg.params.get("_meta") if isinstance(msg.params, dict) else None
        return bool((isinstance(meta, dict) and "progressToken" in meta) or session.log_level
                    or self.protocol.may_stream(service, session, msg.params))

    def stream(self, environ, start_response, service, session, version, msg):
        """Answer one request over SSE: notifications (and questions to the client) as the
        work advances, then the result.

        Every event is recorded in the session store under this stream's id before it is
        sent, so a client that loses the connection can GET with ``Last-Event-ID`` and
        receive the rest (the call keeps running when the connection drops: a disconnect
        is not a cancellation)."""
        store = self.store
        stream_id = "p" + secrets.token_hex(6)
        events: queue.Queue = queue.Queue()

        def emit(message) -> None:
            # Encoded once here: the queue carries bytes, or a lazy document for a large result.
            body = encoding.encode_lazy(message)
            kept = message
            if isinstance(body, encoding.Lazy) and body.size() > REPLAY_MAX_BYTES:
                kept = replay_stand_in(message, body.size())
            events.put((store.append_event(session.id, stream_id, kept), body))

        def request(method: str, params: dict, timeout: float | None = None):
            rid = f"srv-{secrets.token_hex(8)}"
            store.expect_response(session.id, rid)
            emit(jsonrpc.request(rid, method, params))
            return store.wait_response(session.id, rid, timeout or ASK_TIMEOUT_S)

        def worker():
            try:
                response = self.serve(service, session, version, msg, emit=emit, request=request)
                if response is not None:
                    emit(response)
            except BaseException:  # noqa: BLE001 - the stream must always end
                log.exception("streamed call failed")
                emit(jsonrpc.error(msg.id, ProtocolError(-32603, "Internal error")))
            finally:
                events.put(_DONE)

        priming = None
        if version >= "2025-11-25":
            # 2025-11-25: an event id with empty data first, so the client can resume even
            # before the first real event; retry tells it how soon to reconnect.
            priming = sse.priming(store.append_event(session.id, stream_id, None), self.server.sse_retry_ms)
        # The call runs beside the response body; it keeps this request's log context.
        threading.Thread(target=contextvars.copy_context().run, args=(worker,), daemon=True).start()
        keepalive = self.server.sse_keepalive

        def body():
            if priming is not None:
                yield priming
            while True:
                try:
                    item = events.get(timeout=keepalive)
                except queue.Empty:
                    yield sse.comment()
                    continue
                if item is _DONE:
                    return
                yield from sse.event_pieces(item[1], item[0])

        start_response("200 OK", sse.HEADERS + self.cors_headers(environ))
        return body()

    def on_client_response(self, session: Session, msg) -> None:
        """A response to a server-initiated request (elicitation); routed by the protocol layer."""
        handler = getattr(self.protocol, "on_client_response", None)
        if handler is not None:
            handler(session, msg)

    # ------------------------------------------------------------------ initialize
    def initialize(self, environ, start_response, service, msg):
        role, credential = self.authenticate(service, environ)
        params = msg.params
        try:
            self.protocol.check_params("initialize", params)
        except ProtocolError as exc:
            return self.json(environ, start_response, jsonrpc.error(msg.id, exc), 200)
        session = Session(id=new_session_id(), service=service.name,
                          protocol_version=negotiate(params["protocolVersion"]),
                          client_info=params.get("clientInfo") or {},
                          client_capabilities=params.get("capabilities") or {},
                          role=role, credential=credential)
        access = service.access(role)
        result = self.protocol.initialize(params, service, session, access)
        self.store.create(session)
        return self.json(environ, start_response, jsonrpc.result(msg.id, result),
                         extra=[(SESSION_HEADER, session.id)])

    # ------------------------------------------------------------------ GET and DELETE
    def get(self, environ, start_response, service):
        if self.modern.refuses_get_or_delete(environ):
            raise HttpError(405, "Method Not Allowed: no GET stream in protocol version 2026-07-28",
                            headers={"Allow": "POST"})
        if not self.accepts(environ, sse.CONTENT_TYPE) or "text/event-stream" not in (environ.get("HTTP_ACCEPT") or ""):
            raise HttpError(406, "Not Acceptable: GET needs Accept: text/event-stream")
        session = self.session_for(environ, service)
        self.check_version_header(environ, session)
        self.check_credentials(environ, service, session)
        last = environ.get("HTTP_LAST_EVENT_ID")
        if last:
            stream_id, _ = self.store.events_after(session.id, last)
            if stream_id is None:
                raise HttpError(400, "Bad Request: unknown Last-Event-ID")
            if stream_id != GET_STREAM:
                body = self.resume_post_stream(session, stream_id, last)
                start_response("200 OK", sse.HEADERS + self.cors_headers(environ))
                return body
        body = self.get_stream(session, last)
        start_response("200 OK", sse.HEADERS + self.cors_headers(environ))
        return body

    def get_stream(self, session: Session, last_event_id: str | None):
        """The session's GET stream: what it missed after ``last_event_id``, then new messages."""
        keepalive = self.server.sse_keepalive
        store = self.store
        retry = self.server.sse_retry_ms

        def body():
            yield b"retry: " + str(int(retry)).encode() + b"\n: stream open\n\n"
            sent = set()
            if last_event_id:
                for eid, m in store.events_after(session.id, last_event_id)[1]:
                    sent.add(eid)
                    if m is not None:       # a priming event: nothing to resend
                        yield sse.event(m, eid)
            while True:
                items = store.listen(session.id, keepalive)
                if items is None:
                    return          # the session ended: close the stream
                if not items:
                    yield sse.comment()
                for eid, m in items:
                    if eid not in sent:     # replayed already: never twice
                        yield sse.event(m, eid)
                sent.clear() if len(sent) > 10000 else None
        return body()

    def resume_post_stream(self, session: Session, stream_id: str, last_event_id: str):
        """Replay a POST stream after ``last_event_id``, then follow it until its response.

        The call may still be running (possibly in another worker), so the store is
        polled; the stream ends once the JSON-RPC response has been sent, or with the
        session."""
        store = self.store
        keepalive = self.server.sse_keepalive

        def body():
            last = last_event_id
            idle = 0.0
            while True:
                _, items = store.events_after(session.id, last)
                for eid, m in items:
                    last = eid
                    if m is None:           # a priming event: nothing to resend
                        continue
                    yield sse.event(m, eid)
                    if isinstance(m, dict) and "method" not in m and ("result" in m or "error" in m):
                        return      # the response went by: this stream is complete
                if items:
                    idle = 0.0
                    continue
                if store.get(session.id) is None:
                    return
                _RESUME_WAIT.wait(RESUME_POLL_S)
                idle += RESUME_POLL_S
                if idle >= keepalive:
                    idle = 0.0
                    yield sse.comment()
        return body()

    def delete(self, environ, start_response, service):
        if self.modern.refuses_get_or_delete(environ):
            raise HttpError(405, "Method Not Allowed: no sessions in protocol version 2026-07-28",
                            headers={"Allow": "POST"})
        session = self.session_for(environ, service)
        self.check_credentials(environ, service, session)
        self.store.delete(session.id)
        return self.respond(environ, start_response, 204)
