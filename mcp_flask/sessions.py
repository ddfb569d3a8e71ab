"""Sessions: the record ``initialize`` creates, and the store that keeps it.

A session id is 256 random bits (``secrets.token_urlsafe(32)``): unguessable,
visible ASCII.  The record keeps what the spec and the seed document ask for:
the negotiated protocol version, client info and capabilities, the caller's
credentials (the role, and which API key authenticated it) and the tool
context (log level, resource subscriptions).

``MemorySessionStore`` serves one process (the default, one worker).  It also
carries what a session needs between requests inside that process:

* server-to-client messages for the session's GET stream (``publish`` /
  ``listen``), so a notification produced while serving one request reaches
  the stream another request opened;
* calls in flight (``track_call`` / ``cancel_call``), so a
  ``notifications/cancelled`` POST can stop a running query.

A Redis-backed store with the same interface lets many workers and hosts
share sessions (see the deployment notes).
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field


def new_session_id() -> str:
    """256 random bits, URL-safe (visible ASCII only, as the transport spec requires)."""
    return secrets.token_urlsafe(32)


@dataclass
class Session:
    """One client's conversation with one service."""

    id: str
    service: str
    protocol_version: str
    client_info: dict = field(default_factory=dict)
    client_capabilities: dict = field(default_factory=dict)
    role: str = ""
    credential: str = ""          # id of the API key that created it ("" when none)
    created: float = 0.0
    last_seen: float = 0.0
    initialized: bool = False
    log_level: str | None = None  # set by logging/setLevel; None = no log notifications
    subscriptions: set = field(default_factory=set)

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["subscriptions"] = sorted(self.subscriptions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Session":
        d = dict(d)
        d["subscriptions"] = set(d.get("subscriptions") or ())
        return cls(**d)


class SessionStore:
    """The interface every session store implements (memory: one process; Redis: many).

    Records
      ``create(session)``, ``get(id) -> Session | None`` (restarts the idle clock;
      None when unknown or expired), ``save(session)``, ``delete(id) -> bool``,
      ``count()``, ``sessions_of(service) -> list[Session]``.

    Streams and resumability (SSE event ids, ``Last-Event-ID`` replay)
      ``append_event(session_id, stream_id, message) -> event_id``: record a message
      sent on a stream (a POST's SSE stream, or ``"get"`` for the GET stream) so it can
      be replayed; ids are unique within the session and encode the stream.
      ``events_after(session_id, last_event_id) -> (stream_id, [(event_id, message)])``:
      what that stream sent after ``last_event_id`` (within the replay window).
      ``publish(session_id, message)``: queue a message for the GET stream.
      ``listen(session_id, timeout) -> list[(event_id, message)] | None``: wait for
      GET-stream messages ([] on timeout, None once the session is gone).

    Calls in flight (cancellation from any worker)
      ``track_call(session_id, request_id, scope)``, ``untrack_call(...)``,
      ``cancel_call(session_id, request_id) -> bool``, ``calls_in_flight(session_id)``.

    Server-to-client requests (elicitation, sampling)
      ``expect_response(session_id, request_id)``: register interest before sending;
      ``deliver_response(session_id, request_id, message) -> bool``: a client's
      response arrived (on any worker); ``wait_response(session_id, request_id,
      timeout) -> dict | None``.

    Rate limits
      ``take_token(key, per_minute) -> bool``: a token bucket shared by all workers.
    """


class MemorySessionStore:
    """Sessions of one process, expiring after ``ttl`` idle seconds."""

    #: Most undelivered GET-stream messages kept per session (oldest dropped first).
    MAX_PENDING = 1000

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._outbox: dict[str, deque] = {}
        self._wake: dict[str, threading.Condition] = {}
        self._calls: dict[tuple, object] = {}
        self._last_sweep = time.monotonic()

    # ------------------------------------------------------------------ records
    def create(self, session: Session) -> Session:
        now = time.time()
        session.created = session.last_seen = now
        with self._lock:
            self._sessions[session.id] = session
        self._maybe_sweep()
        return session

    def get(self, session_id: str) -> Session | None:
        """The live session (its idle clock restarted), or None if unknown or expired."""
        with self._lock:
            s = self._sessions.get(session_id)
            if s is None:
                return None
            now = time.time()
            if now - s.last_seen > self.ttl:
                self._drop(session_id)
                return None
            s.last_seen = now
            return s

    def save(self, session: Session) -> None:
        """Persist changes made to a record (a no-op in memory: the object is shared)."""
        with self._lock:
            if session.id in self._sessions:
                self._sessions[session.id] = session

    def delete(self, session_id: str) -> bool:
        with self._lock:
            return self._drop(session_id)

    def _drop(self, session_id: str) -> bool:
        existed = self._sessions.pop(session_id, None) is not None
        self._outbox.pop(session_id, None)
        cond = self._wake.pop(session_id, None)
        if cond is not None:
            with cond:
                cond.notify_all()
        return existed

    def count(self) -> int:
        return len(self._sessions)

    def _maybe_sweep(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < min(60.0, self.ttl):
            return
        self._last_sweep = now
        cutoff = time.time() - self.ttl
        with self._lock:
            for sid in [sid for sid, s in self._sessions.items() if s.last_seen < cutoff]:
                self._drop(sid)

    def sessions_of(self, service: str) -> list[Session]:
        with self._lock:
            return [s for s in self._sessions.values() if s.service == service]

    # ------------------------------------------------------------------ GET stream messages
    def publish(self, session_id: str, message: dict) -> None:
        """Queue a server-to-client message for the session's GET stream."""
        with self._lock:
            if session_id not in self._sessions:
                return
            box = self._outbox.setdefault(session_id, deque(maxlen=self.MAX_PENDING))
            box.append(message)
            cond = self._wake.get(session_id)
        if cond is not None:
            with cond:
                cond.notify_all()

    def listen(self, session_id: str, timeout: float) -> list[dict] | None:
        """Wait up to ``timeout`` for messages; [] on timeout, None when the session ended."""
        with self._lock:
            if session_id not in self._sessions:
                return None
            cond = self._wake.setdefault(session_id, threading.Condition())
            box = self._outbox.setdefault(session_id, deque(maxlen=self.MAX_PENDING))
        with cond:
            if not box:
                cond.wait(timeout)
        with self._lock:
            if session_id not in self._sessions:
                return None
            out = list(box)
            box.clear()
            return out

    # ------------------------------------------------------------------ calls in flight
    def track_call(self, session_id: str, request_id, scope) -> None:
        with self._lock:
            self._calls[(session_id, _key(request_id))] = scope

    def untrack_call(self, session_id: str, request_id) -> None:
        with self._lock:
            self._calls.pop((session_id, _key(request_id)), None)

    def cancel_call(self, session_id: str, request_id) -> bool:
        """Cancel the call ``request_id`` of the session if it is still running here."""
        with self._lock:
            scope = self._calls.get((session_id, _key(request_id)))
        if scope is None:
            return False
        scope.cancel()
        return True

    def calls_in_flight(self, session_id: str) -> int:
        with self._lock:
            return sum(1 for (sid, _) in self._calls if sid == session_id)


def _key(request_id) -> str:
    # 1 and "1" are different JSON-RPC ids.
    return f"{type(request_id).__name__}:{request_id}"
