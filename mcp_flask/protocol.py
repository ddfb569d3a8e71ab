"""MCP methods: initialize, ping, tools, logging, resources, prompts; version negotiation.

The transport hands each JSON-RPC request here with a ``Call`` (the session,
the service, and ``emit`` for messages that belong on the request's own SSE
stream).  Handlers return a result dict or raise ``ProtocolError``.  This layer
knows no HTTP.

Two error channels (see errors.py): a bad method or params is a JSON-RPC error;
anything that goes wrong inside a tool is a tool result with ``isError: true``.
"""
from __future__ import annotations

import base64
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

from . import encoding
from .access import Access
from .database import CallScope, Database
from .errors import (RESOURCE_NOT_FOUND, PermissionDenied, INTERNAL_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND, InputRequired,
                     InvalidArguments, ProtocolError, ToolError)
from .prompts import DatabasePrompts
from .providers import ProvidedTool, Provider
from .resources import TableResources
from .schemas import Validator
from .sessions import Session
from .tools.registry import TOOLS, ToolContext, ToolSpec, normalize_arguments

log = logging.getLogger("mcp_flask.protocol")

SERVER_NAME = "mcp-flask"
SERVER_VERSION = "0.1.0"
#: Session-based protocol versions we speak, newest first.
SESSION_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
LATEST_SESSION_VERSION = SESSION_VERSIONS[0]
#: Versions that carry structuredContent / outputSchema / title.
STRUCTURED_VERSIONS = frozenset({"2025-06-18", "2025-11-25", "2026-07-28"})
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
LOG_RANK = {name: i for i, name in enumerate(LOG_LEVELS)}
PAGE_SIZE = 100
#: A tool call slower than this is reported to the client as a "warning" log message.
SLOW_CALL_S = 2.0
#: Most ``Access`` objects a service keeps (one per role name asked for).
ACCESS_CACHE_SIZE = 256


@dataclass
class ServiceRuntime:
    """A configured service as the protocol layer sees it."""

    config: object            # config.ServiceConfig
    database: Database
    #: Extra providers (create_app's ``providers``); the built-in ones are put first.
    providers: list = field(default_factory=list)

    def __post_init__(self):
        #: role name -> (config, role, service has roles, Access): see ``access``.
        self._access_cache: dict = {}
        # The database's own resources and prompts, then whatever was added.
        self.providers = [TableResources(self.config.name), DatabasePrompts(self.config.name)] + \
            [p for p in self.providers if isinstance(p, Provider)]
        #: name -> ProvidedTool, from every provider (checked against the registry once).
        self.extra_tools = {t.name: t for p in self.providers for t in p.tools()}
        self.extra_validators = {n: Validator(t.input_schema) for n, t in self.extra_tools.items()}
        clash = set(self.extra_tools) & set(TOOLS)
        if clash:
            raise RuntimeError(f"service {self.config.name}: provider tools shadow registry tools: "
                               f"{', '.join(sorted(clash))}")

    @property
    def name(self) -> str:
        return self.config.name

    def access(self, role_name: str) -> Access:
        """The ``Access`` of ``role_name`` on this service, built once per role and configuration.

        Every request asks for it (often several times), and an ``Access`` holds no
        per-call state, so one is shared.  An entry is used only while ``config`` and the
        role object are the very ones it was built from (and the service still has, or
        still lacks, roles: that decides what the empty role name means), so a config
        reload or a replaced role builds afresh.  Bounded: role names are the config's,
        but stale sessions may carry others.
        """
        config = self.config
        roles = config.roles
        role = roles.get(role_name) if role_name else None
        cache = self._access_cache
        got = cache.get(role_name)
        if got is not None and got[0] is config and got[1] is role and got[2] == bool(roles):
            return got[3]
        access = Access(config, role_name, role)
        if len(cache) >= ACCESS_CACHE_SIZE:
            cache.clear()
        cache[role_name] = (config, role, bool(roles), access)
        return access


@dataclass
class Call:
    """One JSON-RPC request being served."""

    service: ServiceRuntime
    session: Session | None
    protocol_version: str
    request_id: object = None
    #: Sends a message on this request's SSE stream; None when answering with plain JSON.
    emit: Callable | None = None
    #: Sends a message on the session's GET stream (notifications unrelated to a request).
    publish: Callable | None = None
    #: Asks the user to confirm (``ask(message) -> bool``; ToolContext.confirm); None if unavailable.
    ask: Callable | None = None
    #: Sends the client a request and waits for its response message (session era, over
    #: this request's SSE stream): ``request(method, params, timeout=None) -> dict | None``.
    request: Callable | None = None
    scope: CallScope = field(default_factory=CallScope)
    audit: dict = field(default_factory=dict)
    #: Stateless (2026-07-28) calls have no session: the caller's role and credential
    #: (authenticated on this very request) and the per-request log level live here.
    role: str | None = None
    credential: str = ""
    log_level: str | None = None
    #: Stateless calls: the request's declared client capabilities, and what an
    #: InputRequiredResult retry carries back (``inputResponses``, ``requestState``).
    client_capabilities: dict | None = None
    input_responses: dict | None = None
    request_state: str | None = None

    @property
    def role_name(self) -> str:
        """The caller's role: the session's, or (stateless) the one authenticated on this request."""
        if self.session is not None:
            return self.session.role
        return self.role if self.role is not None else self.service.config.default_role

    @property
    def structured(self) -> bool:
        return self.protocol_version in STRUCTURED_VERSIONS


def duration_ms(seconds: float) -> float:
    """``round(seconds * 1000, 3)``: the same float, for a tool call's audited duration.

    ``round(x, 3)`` converts through a decimal string (dtoa and back) on every
    call.  Here the microseconds are rounded as an integer and divided by 1000,
    which is exact whenever the product is clearly away from a halfway point (a
    double division of two exact integers is the nearest double to their quotient,
    as the string round trip is); near a tie, for zero or negatives (``-0.0``) and
    for huge values ``round`` itself decides.
    """
    ms = seconds * 1000
    micro = ms * 1000.0
    if 0.0 < micro < 1e12:      # (false for NaN too)
        n = round(micro)
        if -0.49 < micro - n < 0.49:
            return n / 1000
    return round(ms, 3)


def negotiate(requested: str) -> str:
    """Echo a supported version; otherwise answer with the newest we support (lifecycle spec)."""
    return requested if requested in SESSION_VERSIONS else LATEST_SESSION_VERSION


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


def decode_cursor(cursor: str | None) -> int:
    """The offset an opaque cursor stands for; -32602 for one we did not issue."""
    if cursor is None:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        if text.startswith("o:") and text[2:].isdigit():
            return int(text[2:])
    except (ValueError, UnicodeError):
        pass
    raise ProtocolError(INVALID_PARAMS, "Invalid params: unknown cursor")


def page(items: list, cursor: str | None, size: int = PAGE_SIZE) -> tuple[list, str | None]:
    start = decode_cursor(cursor)
    chunk = items[start:start + size]
    nxt = encode_cursor(start + size) if start + size < len(items) else None
    return chunk, nxt


class Protocol:
    """Dispatches MCP methods for every service."""

    def __init__(self, settings, schemas, store):
        self.settings = settings
        self.schemas = schemas
        self.store = store
        #: Items per page of every list method (tests lower it to exercise cursors).
        self.page_size = PAGE_SIZE
        self.handlers: dict[str, Callable] = {
            "ping": self.ping,
            "tools/list": self.tools_list,
            "tools/call": self.tools_call,
            "logging/setLevel": self.set_level,
            "resources/list": self.resources_list,
            "resources/templates/list": self.resource_templates_list,
            "prompts/list": self.prompts_list,
            "resources/read": self.resources_read,
            "resources/subscribe": self.resources_subscribe,
            "resources/unsubscribe": self.resources_unsubscribe,
            "prompts/get": self.prompts_get,
            "completion/complete": self.complete,
        }
        #: (service, role) -> tools offered (the list and the names); tools never change at run time.
        self._offered: dict[tuple, tuple] = {}
        #: Admission control (per-session concurrency, rate limits): ``admit(call, access)``
        #: returns a context manager, raising ``ToolError`` to refuse.  Set by create_app.
        self.limiter = None
        #: Audit log: ``record(call, access)`` once per tool call.  Set by create_app.
        self.auditor = None
        self.notification_handlers: dict[str, Callable] = {
            "notifications/initialized": self.on_initialized,
            "notifications/cancelled": self.on_cancelled,
        }

    # ------------------------------------------------------------------ capabilities
    def capabilities(self, service: ServiceRuntime) -> dict:
        return {"tools": {"listChanged": False}, "resources": {"subscribe": True, "listChanged": True},
                "prompts": {"listChanged": False}, "logging": {}, "completions": {}}

    # ------------------------------------------------------------------ services and clients
    def attach(self, service: ServiceRuntime) -> None:
        """Let every provider of ``service`` hook in (e.g. catalog-change listeners); once."""
        def notify(method: str, params: dict, uri: str | None = None) -> None:
            msg = {"jsonrpc": "2.0", "method": method, "params": params}
            broadcast = getattr(self.store, "broadcast", None)
            if broadcast is not None:
                # Sessions (subscribed ones for resources/updated) and 2026-07-28 listen streams.
                broadcast(service.name, msg)
                return
            for session in self.store.sessions_of(service.name):
                if uri is None or uri in session.subscriptions:
                    self.store.publish(session.id, msg)
        for provider in service.providers:
            provider.attach(service, notify)

    def on_client_response(self, session: Session, msg) -> None:
        """A response to one of our requests arrived (by POST, on any worker): hand it over."""
        if session is not None and msg.id is not None:
            self.store.deliver_response(session.id, msg.id, msg.raw)

    def may_stream(self, service: ServiceRuntime, session: Session, params) -> bool:
        """Whether a tools/call may send more than its result (so it is answered over SSE)."""
        name = params.get("name") if isinstance(params, dict) else None
        if not isinstance(name, str):
            return False        # not validated yet: a dict here is unhashable (hostile suite)
        extra = service.extra_tools.get(name)
        if extra is not None:
            return extra.streams
        spec = TOOLS.get(name)
        return bool(spec is not None and spec.destructive and service.config.confirm_destructive
                    and "elicitation" in (session.client_capabilities or {}))

    def instructions(self, service: ServiceRuntime, access: Access) -> str:
        cfg = service.config
        db = service.database
        lines = [f'You are connected to the "{cfg.name}" database service '
                 f"({db.dialect.name}){': ' + cfg.description if cfg.description else ''}."]
        if access.read_only:
            lines.append("THIS SERVICE IS READ-ONLY: you can look at data but not change it.")
        lines += [
            "Start with get_tables, then get_table_schema for the tables you need; "
            "query with get_table_data.",
            "Filter syntax: field = value, field > 10, field like 'J%', field in (1, 2, 3), "
            "field between 1 and 10, field starts with 'Ab', field contains 'x', field is null; "
            "combine with and / or / not and parentheses. Quote text values with single quotes.",
            "Order: 'field asc, other desc'. Paging: limit and offset; meta.next gives the next offset. "
            "Related records: related='orders_by_customer_id' (names from get_table_relationships).",
        ]
        if self.settings.server.instructions:
            lines.append(self.settings.server.instructions)
        return "\n".join(lines)

    # ------------------------------------------------------------------ initialize
    def initialize(self, params: dict, service: ServiceRuntime, session: Session, access: Access) -> dict:
        """The InitializeResult for a new ``session`` (whose version the transport negotiated)."""
        self.check_params("initialize", params)
        return {
            "protocolVersion": session.protocol_version,
            "capabilities": self.capabilities(service),
            "serverInfo": {"name": SERVER_NAME, "title": f"mcp-flask: {service.name}",
                           "version": SERVER_VERSION},
            "instructions": self.instructions(service, access),
        }

    # ------------------------------------------------------------------ dispatch
    def check_params(self, method: str, params) -> None:
        validator = self.schemas.methods.get(method)
        if validator is not None:
            err = validator.error(params)
            if err is not None:
                raise ProtocolError(INVALID_PARAMS, f"Invalid params: {err}")

    def handle(self, method: str, params: dict, call: Call) -> dict:
        """Serve one request; its result dict (raises ProtocolError)."""
        handler = self.handlers.get(method)
        if handler is None:
            raise ProtocolError(METHOD_NOT_FOUND, f"Method not found: {method}")
        # self.check_params(method, params), written out: this runs on every request.
        validator = self.schemas.methods.get(method)
        if validator is not None:
            err = validator.error(params)
            if err is not None:
                raise ProtocolError(INVALID_PARAMS, f"Invalid params: {err}")
        return handler(params, call)

    def notify(self, method: str, params: dict, call: Call) -> None:
        """Take one notification from the client (unknown ones are ignored, as the spec allows)."""
        handler = self.notification_handlers.get(method)
        if handler is None:
            return
        validator = self.schemas.methods.get(method)
        if validator is not None and not validator.is_valid(params):
            return
        handler(params, call)

    # ------------------------------------------------------------------ notifications
    def on_initialized(self, params, call: Call) -> None:
        if call.session is not None and not call.session.initialized:
            call.session.initialized = True
            self.store.save(call.session)

    def on_cancelled(self, params, call: Call) -> None:
        if call.session is not None and "requestId" in params:
            self.store.cancel_call(call.session.id, params["requestId"])

    # ------------------------------------------------------------------ simple methods
    def ping(self, params, call: Call) -> dict:
        return {}

    def set_level(self, params, call: Call) -> dict:
        if call.session is not None:
            call.session.log_level = params["level"]
            self.store.save(call.session)
        return {}

    # ------------------------------------------------------------------ resources, prompts, completion
    def _paged(self, key: str, items: list, params) -> dict:
        chunk, nxt = page(items, params.get("cursor"), self.page_size)
        out = {key: chunk}
        if nxt:
            out["nextCursor"] = nxt
        return out

    def resources_list(self, params, call: Call) -> dict:
        items = [r for p in call.service.providers for r in p.resources(call)]
        return self._paged("resources", items, params)

    def resource_templates_list(self, params, call: Call) -> dict:
        items = [r for p in call.service.providers for r in p.resource_templates(call)]
        return self._paged("resourceTemplates", items, params)

    def resources_read(self, params, call: Call) -> dict:
        uri = params["uri"]
        for provider in call.service.providers:
            contents = provider.read_resource(uri, call)
            if contents is not None:
                return {"contents": contents}
        raise ProtocolError(RESOURCE_NOT_FOUND, "Resource not found", data={"uri": uri[:500]})

    def resources_subscribe(self, params, call: Call) -> dict:
        # Any URI may be watched: one that appears later (a new table) will notify too.
        if call.session is not None and params["uri"] not in call.session.subscriptions:
            call.session.subscriptions.add(params["uri"])
            self.store.save(call.session)
        return {}

    def resources_unsubscribe(self, params, call: Call) -> dict:
        if call.session is not None and params["uri"] in call.session.subscriptions:
            call.session.subscriptions.discard(params["uri"])
            self.store.save(call.session)
        return {}

    def prompts_list(self, params, call: Call) -> dict:
        items = [pr for p in call.service.providers for pr in p.prompts(call)]
        return self._paged("prompts", items, params)

    def prompts_get(self, params, call: Call) -> dict:
        name = params["name"]
        args = params.get("arguments") or {}
        for provider in call.service.providers:
            result = provider.get_prompt(name, args, call)
            if result is not None:
                return result
        raise ProtocolError(INVALID_PARAMS, f"Invalid params: no prompt named '{name[:100]}'")

    def complete(self, params, call: Call) -> dict:
        ref, argument = params["ref"], params["argument"]
        context = params.get("context") or {}
        values: list = []
        for provider in call.service.providers:
            got = provider.complete(ref, argument, context, call)
            if got is not None:
                values = got
                break
        return {"completion": {"values": values[:100], "total": len(values), "hasMore": len(values) > 100}}

    # ------------------------------------------------------------------ tools
    def offered_tools(self, service: ServiceRuntime, access: Access) -> list[ToolSpec]:
        """The tools this caller is offered: registry order, then the providers' tools."""
        return self._offer(service, access)[0]

    def _offer(self, service: ServiceRuntime, access: Access) -> tuple:
        # Cached per (service, role): the registry, the service's switches and the role's
        # tool rules are fixed at start-up, and this runs on every tools/call.
        key = (service.name, access.role_name)
        got = self._offered.get(key)
        if got is None:
            routines = service.database.supports_routines
            specs = [spec for spec in list(TOOLS.values()) + list(service.extra_tools.values())
                     if (routines or not spec.needs_routines) and access.tool_allowed(spec)]
            got = self._offered[key] = (specs, frozenset(s.name for s in specs))
        return got

    def access_for(self, call: Call) -> Access:
        return call.service.access(call.role_name)

    def tools_list(self, params, call: Call) -> dict:
        specs = self.offered_tools(call.service, self.access_for(call))
        chunk, nxt = page(specs, params.get("cursor"), self.page_size)
        out = {"tools": [s.describe(with_output=call.structured, with_title=call.structured) for s in chunk]}
        if nxt:
            out["nextCursor"] = nxt
        return out

    def tools_call(self, params, call: Call) -> dict:
        name = params["name"]
        access = call.service.access(call.role_name)    # self.access_for(call), one frame fewer
        spec = TOOLS.get(name)
        if spec is None:
            spec = call.service.extra_tools.get(name)
        if spec is None or name not in self._offer(call.service, access)[1]:
            # Audited too: a hidden tool called by name is exactly what an ops team wants to see.
            call.audit.update(tool=name[:128], outcome="unknown_tool", duration_ms=0.0)
            if self.auditor is not None:
                self.auditor.record(call, access)
            raise ProtocolError(INVALID_PARAMS, f"Unknown tool: {name}")
        call.audit["tool"] = name
        started = time.perf_counter()
        session = call.session
        # No log level set (the usual case): no logger, without the _logger call.
        logger = self._logger(call) if call.log_level is not None or (
            session is not None and session.log_level is not None) else None
        provided = isinstance(spec, ProvidedTool)
        try:
            if provided:
                args = params.get("arguments") or {}
                err = call.service.extra_validators[name].error(args)
            else:
                args = normalize_arguments(spec, params.get("arguments"))
                err = self.schemas.tools[name].error(args)
            if err is not None:
                raise InvalidArguments(err)
            ctx = ToolContext(database=call.service.database, access=access, scope=call.scope,
                              # No stream to send progress on: no sender (the usual case).
                              progress=self._progress_sender(params, call) if call.emit is not None else None,
                              log=logger, confirm=call.ask,
                              tools=lambda: self.offered_tools(call.service, access),
                              audit=call.audit)
            with (self.limiter.admit(call, access) if self.limiter else nullcontext()):
                if provided:
                    # Provider tools build their whole CallToolResult (any content types).
                    return spec.handler(ctx, args, call)
                payload = spec.handler(ctx, args)
        except ToolError as exc:
            call.audit["outcome"] = type(exc).__name__
            if logger is not None and isinstance(exc, PermissionDenied):
                logger("warning", {"event": "permission_denied", "tool": name, "message": exc.message})
            return self.error_result(exc.text(), exc.details)
        except InputRequired:
            # Stateless era: the user must answer first (modern.py sends InputRequiredResult).
            call.audit["outcome"] = "input_required"
            raise
        except ProtocolError:
            # A provider tool answering with a deliberate JSON-RPC error (e.g. -32021).
            call.audit["outcome"] = "protocol_error"
            raise
        except Exception:  # noqa: BLE001 - logged here; the client gets no internals
            log.exception("tool %s failed unexpectedly", name)
            call.audit["outcome"] = "internal"
            raise ProtocolError(INTERNAL_ERROR, "Internal error") from None
        finally:
            elapsed = time.perf_counter() - started
            if logger is not None and elapsed > SLOW_CALL_S:
                logger("warning", {"event": "slow_call", "tool": name, "seconds": round(elapsed, 3)})
            call.audit["duration_ms"] = duration_ms(elapsed)
            call.audit.setdefault("outcome", "ok")
            if self.auditor is not None:
                self.auditor.record(call, access)
        if logger is not None and isinstance(payload, dict):
            meta = payload.get("meta")
            if isinstance(meta, dict) and (meta.get("truncated") or meta.get("more")):
                logger("info", {"event": "partial_result", "tool": name,
                                "returned": meta.get("returned", meta.get("count")),
                                "next_offset": meta.get("next")})
        return self.tool_result(payload, call.protocol_version in STRUCTURED_VERSIONS)   # call.structured

    @staticmethod
    def tool_result(payload, structured: bool) -> dict:
        """A CallToolResult: the JSON text block, plus structuredContent for 2025-06-18+.

        The payload is encoded once and embedded twice (as the text block's string
        and as raw JSON).  A payload holding ``encoding.Lazy`` parts (a large page of
        rows, already encoded batch by batch) stays lazy: the text block is an
        ``encoding.JsonString`` and structuredContent the ``encoding.Document``
        itself, both written piece by piece by the transport, with the same bytes
        the eager path would give.
        """
        body = encoding.encode_lazy(payload)
        if not isinstance(body, bytes):
            out = {"content": [{"type": "text", "text": encoding.JsonString(body)}], "isError": False}
            if structured and isinstance(payload, dict):
                out["structuredContent"] = body
            return out
        out = {"content": [{"type": "text", "text": body.decode()}], "isError": False}
        if structured and isinstance(payload, dict):
            out["structuredContent"] = encoding.Raw(body)
        return out

    @staticmethod
    def error_result(text: str, details: dict | None = None) -> dict:
        out = {"content": [{"type": "text", "text": text}], "isError": True}
        if details:
            out["content"].append({"type": "text", "text": encoding.dumps(details).decode()})
        return out

    def _progress_sender(self, params, call: Call):
        token = (params.get("_meta") or {}).get("progressToken")
        if token is None or call.emit is None:
            return None
        last = [None]

        def progress(done, total=None, message=None):
            # The spec requires strictly increasing progress values.
            if last[0] is not None and done <= last[0]:
                return
            last[0] = done
            p = {"progressToken": token, "progress": done}
            if total is not None:
                p["total"] = total
            if message:
                p["message"] = message
            call.emit({"jsonrpc": "2.0", "method": "notifications/progress", "params": p})
        return progress

    def _logger(self, call: Call):
        session = call.session
        level = call.log_level or (session.log_level if session is not None else None)
        if level is None:
            return None
        threshold = LOG_RANK[level]
        send = call.emit or call.publish
        if send is None:
            return None

        def emit_log(level: str, data, logger: str = "mcp-flask"):
            if LOG_RANK.get(level, 0) >= threshold:
                send({"jsonrpc": "2.0", "method": "notifications/message",
                      "params": {"level": level, "logger": logger, "data": data}})
        return emit_log
