"""``subscriptions/listen`` (2026-07-28, SEP-2575): change notifications without sessions.

A 2026-07-28 client opts in to server events by POSTing ``subscriptions/listen``
whose response IS the stream (there is no GET stream in that era).  This
module serves it: the acknowledgement first (``notifications/subscriptions/
acknowledged`` with the honoured subset of the client's filter), then every
matching notification, each tagged ``_meta["io.modelcontextprotocol/
subscriptionId"]`` = the listen request's id; keep-alive comments in between.

Notifications come from the session store's service channel
(``broadcast`` / ``service_cursor`` / ``listen_service``, see sessions.py), the
same call that feeds session GET streams, so both eras hear the same changes,
across workers when the store is shared.  Only kinds the server's capabilities
announce are honoured; the stream is not resumable (clients re-listen and refetch).
"""
from __future__ import annotations

import logging
import threading

from . import jsonrpc, sse
from .errors import INTERNAL_ERROR, INVALID_PARAMS, HttpError

log = logging.getLogger("mcp_flask.subscriptions")

#: Most listen streams one worker holds open (each is a greenlet and a socket); more are refused.
MAX_STREAMS = 512
_open = [0]
_open_lock = threading.Lock()

META_SUBSCRIPTION = "io.modelcontextprotocol/subscriptionId"
#: Listen-stream notification -> (the SubscriptionFilter flag that opts in to it, capability).
LIST_CHANGED = {"notifications/tools/list_changed": ("toolsListChanged", "tools"),
                "notifications/prompts/list_changed": ("promptsListChanged", "prompts"),
                "notifications/resources/list_changed": ("resourcesListChanged", "resources")}


def honored(capabilities: dict, requested: dict) -> dict:
    """The part of the client's filter we deliver (only kinds our capabilities announce)."""
    out = {}
    for flag, cap in LIST_CHANGED.values():
        if requested.get(flag) is True and (capabilities.get(cap) or {}).get("listChanged"):
            out[flag] = True
    uris = requested.get("resourceSubscriptions")
    if isinstance(uris, list) and uris and (capabilities.get("resources") or {}).get("subscribe"):
        out["resourceSubscriptions"] = [u for u in uris if isinstance(u, str)]
    return out


def delivers(honored: dict, message: dict) -> bool:
    """Whether ``message`` is something this stream's client asked for."""
    method = message.get("method")
    if method in LIST_CHANGED:
        return honored.get(LIST_CHANGED[method][0]) is True
    if method == "notifications/resources/updated":
        return (message.get("params") or {}).get("uri") in honored.get("resourceSubscriptions", ())
    return False


def listen(modern, environ, start_response, service, msg):
    """A long-lived SSE response for ``modern`` (a ``ModernTransport``): ack, then notifications."""
    transport = modern.transport
    if not transport.accepts(environ, sse.CONTENT_TYPE) \
            or sse.CONTENT_TYPE not in (environ.get("HTTP_ACCEPT") or ""):
        raise HttpError(406, "Not Acceptable: subscriptions/listen answers with text/event-stream")
    requested = msg.params.get("notifications")
    if not isinstance(requested, dict):
        raise HttpError(400, "Invalid params: notifications must be an object", code=INVALID_PARAMS)
    if _open[0] >= MAX_STREAMS:
        raise HttpError(503, "Service Unavailable: too many open subscriptions/listen streams",
                        code=INTERNAL_ERROR, headers={"Retry-After": "5"})
    store, name, keepalive = modern.store, service.name, modern.server.sse_keepalive
    channel = hasattr(store, "listen_service")
    if not channel:
        log.warning("session store %s has no service channel: listen streams stay quiet",
                    type(store).__name__)
    agreed = honored(modern.protocol.capabilities(service), requested) if channel else {}
    tag = {META_SUBSCRIPTION: msg.id}
    # Take the position before acknowledging, so nothing broadcast in between is lost.
    cursor = store.service_cursor(name) if channel else 0
    ack = jsonrpc.notification("notifications/subscriptions/acknowledged",
                               {"notifications": agreed, "_meta": dict(tag)})

    def body():
        nonlocal cursor
        with _open_lock:
            _open[0] += 1
        try:
            yield sse.event(ack)
            while True:
                if channel:
                    cursor, messages = store.listen_service(name, cursor, keepalive)
                else:
                    threading.Event().wait(keepalive)
                    messages = []
                sent = False
                for m in messages:
                    if delivers(agreed, m):
                        params = dict(m.get("params") or {})
                        params["_meta"] = {**(params.get("_meta") or {}), **tag}
                        yield sse.event({**m, "params": params})
                        sent = True
                if not sent:
                    yield sse.comment()
        finally:
            # The client went away (or the worker is stopping): free the slot.
            with _open_lock:
                _open[0] -= 1

    start_response("200 OK", sse.HEADERS + transport.cors_headers(environ))
    return body()
