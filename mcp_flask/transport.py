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
   envelope (400/-32600); ``initialize`` creates the session; every other
   message needs ``Mcp-Session-Id`` (400 without, 404 unknown/expired) and a
   supported ``MCP-Protocol-Version`` when present (400).
5. Requests are answered as ``application/json``, or ``text/event-stream``
   when the client accepts it and the call will send more than one message
   (progress, log messages, a question to the user).  Notifications and
   responses get 202 with no body.
"""
from __future__ import annotations

import logging
import queue
import threading
from urllib.parse import urlsplit

from . import encoding, jsonrpc, sse
from .errors import (INVALID_REQUEST, HttpError, ProtocolError)
from .protocol import SESSION_VERSIONS, Call, negotiate
from .sessions import Session, new_session_id

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


def host_of(value: str) -> str:
    """The host part of a Host header or URL netloc, lower-cased, IPv6 kept in brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[:end + 1] if end > 0 else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


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
        accept = accept.lower()
        major = mime.split("/", 1)[0]
        return mime in accept or "*/*" in accept or f"{major}/*" in accept

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
        hdrs = list(headers or [])
        if body:
            hdrs.append(("Content-Length", str(len(body))))
        hdrs += self.cors_headers(environ)
        start_response(_STATUS.get(status, f"{status} Error"), hdrs)
        return [body] if body else []

    def json(self, environ, start_response, payload, status: int = 200, extra=None):
        return self.respond(environ, start_response, status, encoding.dumps(payload),
                            JSON_HEADERS + list(extra or []))

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
        ctype = (environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            raise HttpError(415, "Unsupported Media Type: Content-Type must be application/json")
        if not (self.accepts(environ, "application/json") or self.accepts(environ, sse.CONTENT_TYPE)):
            raise HttpError(406, "Not Acceptable: Accept must include application/json or text/event-stream")
        body = self.read_body(environ)
        try:
            messages, is_batch = jsonrpc.parse(body, self.protocol.schemas)
        except ProtocolError as exc:
            return self.json(environ, start_response, jsonrpc.error_for(exc), exc.http_status)
        first = messages[0]
        if not is_batch and first.kind == jsonrpc.REQUEST and first.method == "initialize":
            return self.initialize(environ, start_response, service, first)
        if any(m.method == "initialize" for m in messages):
            raise HttpError(400, "Invalid Request: initialize must not be part of a batch")
        session = self.session_for(environ, service)
        version = self.check_version_header(environ, session)
        self.check_credentials(environ, service, session)
        if is_batch and session.protocol_version != "2025-03-26":
            raise HttpError(400, f"Invalid Request: JSON-RPC batches are not supported in protocol "
                                 f"version {session.protocol_version}")
        requests = [m for m in messages if m.kind == jsonrpc.REQUEST]
        for m in messages:
            if m.kind == jsonrpc.NOTIFICATION:
                self.protocol.notify(m.method, m.params, self.call(service, session, version, None))
            elif m.kind == jsonrpc.RESPONSE:
                self.on_client_response(session, m)
        if not requests:
            return self.respond(environ, start_response, 202)
        if is_batch:
            out = [self.serve(service, session, version, m) for m in requests]
            return self.json(environ, start_response, out)
        msg = requests[0]
        if self.wants_stream(environ, session, msg):
            return self.stream(environ, start_response, service, session, version, msg)
        return self.json(environ, start_response, self.serve(service, session, version, msg))

    def check_credentials(self, environ, service, session: Session) -> None:
        """A session may only be used with the credentials that created it."""
        role, credential = self.authenticate(service, environ)
        if credential != session.credential or role != session.role:
            raise HttpError(403, "Forbidden: these credentials do not match the session's")

    def call(self, service, session, version, request_id, emit=None) -> Call:
        return Call(service=service, session=session, protocol_version=version, request_id=request_id,
                    emit=emit, publish=(lambda m: self.store.publish(session.id, m)) if session else None)

    def serve(self, service, session, version, msg, emit=None) -> dict:
        """Run one request; its JSON-RPC response dict."""
        call = self.call(service, session, version, msg.id, emit)
        self.store.track_call(session.id, msg.id, call.scope)
        try:
            return jsonrpc.result(msg.id, self.protocol.handle(msg.method, msg.params, call))
        except ProtocolError as exc:
            return jsonrpc.error(msg.id, exc)
        finally:
            self.store.untrack_call(session.id, msg.id)

    def wants_stream(self, environ, session: Session, msg) -> bool:
        """SSE only when the client accepts it and the call may send more than its result."""
        if msg.method != "tools/call" or not self.accepts(environ, sse.CONTENT_TYPE):
            return False
        meta = msg.params.get("_meta") if isinstance(msg.params, dict) else None
        return bool((isinstance(meta, dict) and "progressToken" in meta) or session.log_level)

    def stream(self, environ, start_response, service, session, version, msg):
        """Answer one request over SSE: notifications as the work advances, then the result."""
        events: queue.Queue = queue.Queue()
        call_box = {}

        def worker():
            try:
                response = self.serve(service, session, version, msg, emit=events.put)
                call_box["cancelled"] = response is None
                events.put(response)
            except BaseException:  # noqa: BLE001 - the stream must always end
                log.exception("streamed call failed")
                events.put(jsonrpc.error(msg.id, ProtocolError(-32603, "Internal error")))
            finally:
                events.put(_DONE)

        threading.Thread(target=worker, daemon=True).start()

        def body():
            while True:
                try:
                    item = events.get(timeout=self.server.sse_keepalive)
                except queue.Empty:
                    yield sse.comment()
                    continue
                if item is _DONE:
                    return
                if item is not None:
                    yield sse.event(item)

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
        if not self.accepts(environ, sse.CONTENT_TYPE) or "text/event-stream" not in (environ.get("HTTP_ACCEPT") or ""):
            raise HttpError(406, "Not Acceptable: GET needs Accept: text/event-stream")
        session = self.session_for(environ, service)
        self.check_version_header(environ, session)
        self.check_credentials(environ, service, session)
        keepalive = self.server.sse_keepalive
        store = self.store

        def body():
            yield sse.comment("stream open")
            while True:
                messages = store.listen(session.id, keepalive)
                if messages is None:
                    return          # the session ended: close the stream
                if not messages:
                    yield sse.comment()
                for m in messages:
                    yield sse.event(m)

        start_response("200 OK", sse.HEADERS + self.cors_headers(environ))
        return body()

    def delete(self, environ, start_response, service):
        session = self.session_for(environ, service)
        self.check_credentials(environ, service, session)
        self.store.delete(session.id)
        return self.respond(environ, start_response, 204)
