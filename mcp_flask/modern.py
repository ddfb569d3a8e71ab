"""The 2026-07-28 era of ``/mcp/<service>``: stateless requests served beside sessions.

One endpoint speaks both eras (spec 2026-07-28 basic/versioning, "dual-era"):
``initialize`` starts a session (transport.py, unchanged); a request whose
``params._meta`` carries ``io.modelcontextprotocol/protocolVersion`` (or that
is ``server/discover`` / ``subscriptions/listen``, or that announces
``MCP-Protocol-Version: 2026-07-28`` without a session) is served here, alone:
no session, no GET stream, no resumability, no server-to-client requests.

Per request, in this order (transports/streamable-http.mdx, basic/index.mdx):

1. credentials: ``authenticate(service, environ)`` on every request, and the
   role applies exactly as in a session (the same ``Protocol`` code runs);
2. the ``_meta`` envelope: protocolVersion and clientCapabilities required
   (else 400 + -32602); clientInfo optional;
3. headers: ``MCP-Protocol-Version`` equals the envelope's version,
   ``Mcp-Method`` equals the method, ``Mcp-Name`` (plain or ``=?base64?..?=``)
   equals the tool / prompt name or resource URI (else 400 + -32020);
4. the version is one we serve (else 400 + -32022, ``data.supported``);
5. dispatch: ``server/discover`` and ``subscriptions/listen`` here, the rest
   of the 2026-07-28 method set through ``Protocol.handle`` with a ``Call``
   whose session is None; unknown or removed methods (initialize, ping,
   logging/setLevel, resources/subscribe ...) are 404 + -32601.

Every result carries ``resultType`` and ``_meta["io.modelcontextprotocol/
serverInfo"]``; cacheable results carry ``ttlMs`` / ``cacheScope`` (SEP-2549).
A destructive tool's confirmation becomes an ``InputRequiredResult``
(input_required.py).  Change notifications reach ``subscriptions/listen``
streams through the session store's service channel (``broadcast`` /
``listen_service``), the same call that feeds session GET streams.

Mirrors the wire constants and the validation ladder of the official Python
SDK 2.3 (``mcp/shared/inbound.py``, ``mcp/server/_streamable_http_modern.py``).
Knows HTTP (it is part of the transport layer) but imports no Flask.
"""
from __future__ import annotations

import base64
import binascii
import contextvars
import logging
import queue
import re
import threading

from . import jsonrpc, sse
from .errors import (HEADER_MISMATCH, INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST,
                     METHOD_NOT_FOUND, MISSING_CLIENT_CAPABILITY, PARSE_ERROR, RESOURCE_NOT_FOUND,
                     UNSUPPORTED_PROTOCOL_VERSION, HttpError, InputRequired, ProtocolError)
from .input_required import Confirmer, state_key
from .protocol import LOG_LEVELS, SERVER_NAME, SERVER_VERSION, SESSION_VERSIONS, Call
from .subscriptions import listen

log = logging.getLogger("mcp_flask.modern")

MODERN_VERSION = "2026-07-28"
MODERN_VERSIONS = (MODERN_VERSION,)
#: What server/discover and -32022 name: every version this endpoint speaks, newest first
#: (a client that also speaks a session version can then fall back to initialize).
SUPPORTED_VERSIONS = MODERN_VERSIONS + SESSION_VERSIONS

META_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_LOG_LEVEL = "io.modelcontextprotocol/logLevel"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"

#: Methods whose name (or URI) is mirrored in the Mcp-Name header -> the params key.
NAME_BEARING = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
#: 2026-07-28 methods served by ``Protocol.handle`` (when the protocol has a handler).
DELEGATED = frozenset({"tools/list", "tools/call", "resources/list", "resources/templates/list",
                       "resources/read", "prompts/list", "prompts/get", "completion/complete"})
#: Methods that always belong to this era, even without the _meta envelope.
OWN_METHODS = frozenset({"server/discover", "subscriptions/listen"})
#: Params that only the MRTR retry carries; stripped before the method's schema check.
MRTR_PARAMS = ("inputResponses", "requestState")
#: Cache hints (SEP-2549): how long a result stays fresh, per method.  Tool, prompt and
#: template lists change only with the configuration; resources show live schemas.
CACHE_TTL_MS = {"server/discover": 300_000, "tools/list": 300_000, "prompts/list": 300_000,
                "resources/templates/list": 300_000, "resources/list": 0, "resources/read": 0}
#: JSON-RPC error code -> HTTP status in this era (the SDK's ERROR_CODE_HTTP_STATUS).
ERROR_STATUS = {PARSE_ERROR: 400, INVALID_REQUEST: 400, INVALID_PARAMS: 400, HEADER_MISMATCH: 400,
                MISSING_CLIENT_CAPABILITY: 400, UNSUPPORTED_PROTOCOL_VERSION: 400,
                METHOD_NOT_FOUND: 404}

_B64_SENTINEL = re.compile(r"^=\?base64\?(?P<payload>.*)\?=$")
_DONE = object()


def decode_header_value(value: str | None) -> str | None:
    """An ``Mcp-Name`` value: verbatim, or the UTF-8 inside ``=?base64?...?=``.

    A malformed sentinel (bad or non-canonical base64, bad UTF-8) is None, so a
    corrupt header never matches a body value by accident.
    """
    if value is None:
        return None
    m = _B64_SENTINEL.fullmatch(value)
    if m is None:
        return value
    payload = m.group("payload")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(raw).decode("ascii") != payload:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def error_for(code: int, message: str, data=None) -> ProtocolError:
    """A ProtocolError carrying this era's HTTP status for ``code``."""
    return ProtocolError(code, message, data=data, http_status=ERROR_STATUS.get(code, 200))


class ModernTransport:
    """Serves stateless (2026-07-28) POSTs for the ``Transport`` that owns it."""

    def __init__(self, transport):
        self.transport = transport
        self.protocol = transport.protocol
        self.store = transport.store
        self.server = transport.server
        self._server_info: dict = {}
        self._state_keys: dict = {}

    # ------------------------------------------------------------------ routing
    @staticmethod
    def wants(environ, msg) -> bool:
        """Whether this single (non-batch) message belongs to the 2026-07-28 era."""
        if msg.method in OWN_METHODS:
            return True
        params = msg.params
        if isinstance(params, dict):
            meta = params.get("_meta")
            if isinstance(meta, dict) and META_VERSION in meta:
                return True
        # No envelope but a modern header and no session: answer in this era's terms
        # (-32602 for the missing _meta).  ``initialize`` always starts a session.
        return (msg.method != "initialize" and not environ.get("HTTP_MCP_SESSION_ID")
                and environ.get("HTTP_MCP_PROTOCOL_VERSION") in MODERN_VERSIONS)

    @staticmethod
    def refuses_get_or_delete(environ) -> bool:
        """GET and DELETE do not exist in 2026-07-28: a modern client gets 405."""
        return environ.get("HTTP_MCP_PROTOCOL_VERSION") in MODERN_VERSIONS

    # ------------------------------------------------------------------ POST
    def post(self, environ, start_response, service, msg):
        """Answer one parsed message of the 2026-07-28 era."""
        t = self.transport
        if msg.kind == jsonrpc.RESPONSE:
            raise HttpError(400, "Invalid Request: clients send no responses in protocol version "
                                 f"{MODERN_VERSION}")
        if msg.kind == jsonrpc.NOTIFICATION:
            # Nothing to act on without a session (cancellation is closing the stream):
            # acknowledged and dropped, as the SDK does; an unknown version is told so.
            requested = environ.get("HTTP_MCP_PROTOCOL_VERSION", "")
            if requested not in MODERN_VERSIONS:
                return self.error(environ, start_response, None, self.unsupported(requested))
            return t.respond(environ, start_response, 202)
        try:
            role, credential = t.authenticate(service, environ)
            meta = self.check_envelope(environ, msg)
            return self.dispatch(environ, start_response, service, msg, meta, role, credential)
        except ProtocolError as exc:
            return self.error(environ, start_response, msg.id, exc)
        except Exception:  # noqa: BLE001 - logged here; the client gets no internals
            log.exception("stateless %s failed unexpectedly", msg.method)
            return self.error(environ, start_response, msg.id, ProtocolError(INTERNAL_ERROR, "Internal error"))

    def check_envelope(self, environ, msg) -> dict:
        """The validation ladder; the request's ``_meta`` when every rung holds."""
        params = msg.params
        meta = params.get("_meta") if isinstance(params, dict) else None
        if not isinstance(meta, dict):
            raise error_for(INVALID_PARAMS, f"Invalid params: params._meta must be an object carrying "
                                         f"{META_VERSION!r} and {META_CAPABILITIES!r}")
        missing = [k for k in (META_VERSION, META_CAPABILITIES) if k not in meta]
        if missing:
            raise error_for(INVALID_PARAMS, f"Invalid params: params._meta is missing "
                                            f"{', '.join(missing)}")
        version = meta[META_VERSION]
        header = environ.get("HTTP_MCP_PROTOCOL_VERSION")
        if header is None or header != version:
            raise error_for(HEADER_MISMATCH, "Header mismatch: MCP-Protocol-Version does not match "
                                          "params._meta protocolVersion")
        if environ.get("HTTP_MCP_METHOD") != msg.method:
            raise error_for(HEADER_MISMATCH, "Header mismatch: Mcp-Method does not match the method")
        name_key = NAME_BEARING.get(msg.method)
        if name_key is not None:
            body_value = params.get(name_key)
            if body_value is not None and decode_header_value(environ.get("HTTP_MCP_NAME")) != body_value:
                raise error_for(HEADER_MISMATCH, f"Header mismatch: Mcp-Name does not match params.{name_key}")
        if not isinstance(version, str):
            raise error_for(INVALID_PARAMS, "Invalid params: the protocol version must be a string")
        if version not in MODERN_VERSIONS:
            raise self.unsupported(version)
        if not isinstance(meta[META_CAPABILITIES], dict):
            raise error_for(INVALID_PARAMS, f"Invalid params: {META_CAPABILITIES} must be an object")
        level = meta.get(META_LOG_LEVEL)
        if level is not None and level not in LOG_LEVELS:
            raise error_for(INVALID_PARAMS, f"Invalid params: {META_LOG_LEVEL} must be one of "
                                         f"{', '.join(LOG_LEVELS)}")
        return meta

    @staticmethod
    def unsupported(requested) -> ProtocolError:
        return error_for(UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
                      data={"supported": list(SUPPORTED_VERSIONS), "requested": requested})

    # ------------------------------------------------------------------ dispatch
    def dispatch(self, environ, start_response, service, msg, meta, role, credential):
        method = msg.method
        if method == "server/discover":
            return self.answer(environ, start_response, service, msg,
                               self.discover(service, service.access(role)))
        if method == "subscriptions/listen":
            return listen(self, environ, start_response, service, msg)
        if method not in DELEGATED or method not in self.protocol.handlers:
            raise error_for(METHOD_NOT_FOUND, f"Method not found: {method}")
        raw = msg.params
        # The MRTR retry's extra params go on the Call, not through the method's schema.
        params = {k: v for k, v in raw.items() if k not in MRTR_PARAMS} \
            if any(k in raw for k in MRTR_PARAMS) else raw
        responses, state = raw.get("inputResponses"), raw.get("requestState")
        call = Call(service=service, session=None, protocol_version=MODERN_VERSION,
                    request_id=msg.id, role=role, credential=credential,
                    log_level=meta.get(META_LOG_LEVEL), client_capabilities=meta[META_CAPABILITIES],
                    input_responses=responses if isinstance(responses, dict) else None,
                    request_state=state if isinstance(state, str) else None)
        if method == "tools/call":
            call.ask = self.confirmer(service, call, params)
            if self.wants_stream(environ, params, call):
                return self.stream(environ, start_response, service, msg, params, call)
        return self.answer(environ, start_response, service, msg, self.run(method, params, call))

    def run(self, method: str, params: dict, call: Call) -> dict:
        """The protocol's result for one request, or the InputRequiredResult it asks for."""
        try:
            return self.protocol.handle(method, params, call)
        except InputRequired as need:
            out = {"resultType": "input_required", "inputRequests": need.input_requests}
            if need.request_state is not None:
                out["requestState"] = need.request_state
            return out
        except ProtocolError as exc:
            if exc.code == RESOURCE_NOT_FOUND:
                # 2026-07-28 (SEP-2164): a missing resource is -32602 naming the uri.
                raise error_for(INVALID_PARAMS, exc.message, data={"uri": params.get("uri")}) from None
            raise

    def confirmer(self, service, call: Call, params: dict):
        """``Call.ask`` for a stateless tools/call: MRTR, when the client can show a form."""
        if not service.config.confirm_destructive:
            return None     # as in a session: confirmation is the service's choice
        elicitation = call.client_capabilities.get("elicitation")
        if not isinstance(elicitation, dict) or (elicitation and "form" not in elicitation):
            return None     # no form elicitation: exactly as a session without elicitation
        key = self._state_keys.get(service.name)
        if key is None:
            key = self._state_keys[service.name] = state_key(service.config)
        return Confirmer(key, call.credential, params.get("name"), params.get("arguments"),
                         call.input_responses, call.request_state)

    # ------------------------------------------------------------------ results
    def server_info(self, service) -> dict:
        info = self._server_info.get(service.name)
        if info is None:
            info = self._server_info[service.name] = {
                "name": SERVER_NAME, "title": f"mcp-flask: {service.name}", "version": SERVER_VERSION}
        return info

    def finish(self, service, method: str, result: dict) -> dict:
        """Stamp resultType, serverInfo and (for cacheable methods) the cache hints."""
        result.setdefault("resultType", "complete")
        ttl = CACHE_TTL_MS.get(method)
        if ttl is not None and result["resultType"] == "complete":
            result.setdefault("ttlMs", ttl)
            # One answer for everyone without authentication; otherwise per credential.
            result.setdefault("cacheScope", "public" if service.config.auth == "none" else "private")
        meta = result.get("_meta")
        meta = dict(meta) if isinstance(meta, dict) else {}
        meta.setdefault(META_SERVER_INFO, self.server_info(service))
        result["_meta"] = meta
        return result

    def discover(self, service, access) -> dict:
        return {"supportedVersions": list(SUPPORTED_VERSIONS),
                "capabilities": self.protocol.capabilities(service),
                "instructions": self.protocol.instructions(service, access)}

    def answer(self, environ, start_response, service, msg, result: dict):
        body = jsonrpc.result(msg.id, self.finish(service, msg.method, result))
        return self.transport.json(environ, start_response, body)

    def error(self, environ, start_response, msg_id, exc: ProtocolError):
        """A JSON-RPC error carrying the request's id, with this era's HTTP status."""
        headers = list(getattr(exc, "headers", {}).items())
        status = exc.http_status if isinstance(exc, HttpError) else ERROR_STATUS.get(exc.code, 200)
        return self.transport.json(environ, start_response, jsonrpc.error(msg_id, exc), status, headers)

    # ------------------------------------------------------------------ SSE answers
    def wants_stream(self, environ, params: dict, call: Call) -> bool:
        """SSE only when the client accepts it and the call may send more than its result."""
        if not self.transport.accepts(environ, sse.CONTENT_TYPE):
            return False
        meta = params.get("_meta")
        return bool(call.log_level or (isinstance(meta, dict) and "progressToken" in meta))

    def stream(self, environ, start_response, service, msg, params: dict, call: Call):
        """Progress and log messages as the call advances, then its result; closing is cancelling."""
        events: queue.Queue = queue.Queue()
        call.emit = events.put

        def worker():
            try:
                body = jsonrpc.result(msg.id, self.finish(service, msg.method,
                                                          self.run(msg.method, params, call)))
            except ProtocolError as exc:
                body = jsonrpc.error(msg.id, exc)
            except BaseException:  # noqa: BLE001 - the stream must always end
                log.exception("streamed stateless call failed")
                body = jsonrpc.error(msg.id, ProtocolError(INTERNAL_ERROR, "Internal error"))
            events.put(body)
            events.put(_DONE)

        # The call runs beside the response body; it keeps this request's log context.
        threading.Thread(target=contextvars.copy_context().run, args=(worker,), daemon=True).start()
        keepalive = self.server.sse_keepalive

        def body():
            finished = False
            try:
                while True:
                    try:
                        item = events.get(timeout=keepalive)
                    except queue.Empty:
                        yield sse.comment()
                        continue
                    if item is _DONE:
                        finished = True
                        return
                    yield from sse.event_pieces(item)     # a large result in pieces
            finally:
                if not finished:
                    # 2026-07-28: the client closing the request's stream cancels the request.
                    call.scope.cancel()

        start_response("200 OK", sse.HEADERS + self.transport.cors_headers(environ))
        return body()
