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
  ``notifications/cancelled`` POST can stop a running query;
* every SSE event sent on a stream (``append_event`` / ``events_after``), kept
  for ``replay_window`` seconds (``server.sse_replay_window``), so a client that
  reconnects with ``Last-Event-ID`` gets what it missed;
* answers to server-to-client requests (``expect_response`` /
  ``deliver_response`` / ``wait_response``): elicitation and sampling.

A Redis-backed store with the same interface lets many workers and hosts
share sessions (see the deployment notes).
"""
from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field


#: The stream id of the session's GET stream (POST streams get a fresh id each).
GET_STREAM = "get"


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
      be replayed; ids are unique within the session, encode the stream as
      ``<stream_id>_<entry>`` (stream ids may contain ``_``; entries may not) and grow
      within a stream.  ``message`` may be None: the transport records the 2025-11-25
      priming event that way, and replay must skip None messages.
      ``events_after(session_id, last_event_id) -> (stream_id, [(event_id, message)])``:
      what that stream sent after ``last_event_id`` (within the replay window), oldest
      first, None messages left out; ``(None, [])`` for an id the store did not issue.
      The transport tails a POST stream whose client reconnected by calling it again
      with the last id it replayed, until the request's response has gone by.
      ``publish(session_id, message) -> event_id | None``: queue a message for the GET
      stream (and record it for replay under stream ``"get"``); None when the session
      does not exist.
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

    Service-wide notifications (list_changed, resources/updated), for both eras
      ``broadcast(service, message)``: deliver a notification to everyone connected to
      ``service``: ``publish`` it to the service's sessions (only to sessions subscribed
      to the URI for ``notifications/resources/updated``) and append it to the service's
      channel read by 2026-07-28 ``subscriptions/listen`` streams, on every worker.
      ``service_cursor(service)``: an opaque position "now" in that channel.
      ``listen_service(service, cursor, timeout) -> (cursor, [message])``: wait up to
      ``timeout`` for messages broadcast after ``cursor``; ([] on timeout).
    """


class LocalCalls:
    """The tool calls running in this process, by (session, request id), so a
    ``notifications/cancelled`` can reach the call's scope.  Both stores use it (the
    Redis store also forwards a cancellation to the other workers).  The store sets up
    ``self._lock`` and ``self._calls`` (a dict).

    Every call is tracked and untracked (twice per request), so these take no lock:
    each is one dict operation (store, ``pop``, ``get``), which CPython performs
    atomically (the GIL is held throughout, and gevent only switches greenlets at
    blocking calls, never inside one).  ``calls_in_flight`` iterates over a snapshot
    (``list(dict)`` is one atomic copy), so a concurrent track cannot break the loop."""

    def track_call(self, session_id: str, request_id, scope) -> None:
        self._calls[(session_id, _key(request_id))] = scope

    def untrack_call(self, session_id: str, request_id) -> None:
        self._calls.pop((session_id, _key(request_id)), None)

    def cancel_local(self, session_id: str, request_id) -> bool:
        """Cancel the call if it runs in this process; False when it does not."""
        scope = self._calls.get((session_id, _key(request_id)))
        if scope is None:
            return False
        scope.cancel()
        return True

    def calls_in_flight(self, session_id: str) -> int:
        """Calls of the session running in this process."""
        return sum(1 for (sid, _) in list(self._calls) if sid == session_id)


class MemorySessionStore(LocalCalls):
    """Sessions of one process, expiring after ``ttl`` idle seconds."""

    #: Most undelivered GET-stream messages kept per session (oldest dropped first).
    MAX_PENDING = 1000

    #: Most events kept per session for ``Last-Event-ID`` replay (besides the time window).
    MAX_EVENTS = 5000

    def __init__(self, ttl: float, replay_window: float = 300.0):
        self.ttl = ttl
        #: Seconds an SSE event stays available for replay (``server.sse_replay_window``).
        self.replay_window = replay_window
        self._events: dict[str, deque] = {}     # session -> (seq, stream, event id, message, time)
        self._seq: dict[str, int] = {}
        self._replies: dict[tuple, list] = {}   # (session, request key) -> [Event, message]
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._outbox: dict[str, deque] = {}
        self._wake: dict[str, threading.Condition] = {}
        self._calls: dict[tuple, object] = {}
        self._last_sweep = time.monotonic()
        self._buckets: dict[str, list] = {}     # rate-limit key -> [tokens, monotonic time]
        self._channels: dict[str, _Channel] = {}  # service -> broadcast channel

    # ------------------------------------------------------------------ records
    def create(self, session: Session) -> Session:
        now = time.time()
        session.created = session.last_seen = now
        with self._lock:
            self._sessions[session.id] = session
        self._maybe_sweep()
        return session

    def get(self, session_id: str) -> Session | None:
        """The live session (its idle clock restarted), or None if unknown or expired.

        Lock-free on the hit path (every request asks): ``dict.get`` and the attribute
        store are each atomic in CPython, and gevent never switches greenlets inside
        this method (nothing here blocks), so a concurrent ``delete`` lands either
        before the lookup (None) or after it, exactly as if it had waited for the lock
        and run after this returned.  Only the expiry, which mutates several dicts,
        takes the lock, and re-checks under it that the record was not renewed or
        replaced meanwhile."""
        s = self._sessions.get(session_id)
        if s is None:
            return None
        now = time.time()
        if now - s.last_seen > self.ttl:
            with self._lock:
                if self._sessions.get(session_id) is s and now - s.last_seen > self.ttl:
                    self._drop(session_id)
                    return None
            return self.get(session_id)     # renewed or replaced meanwhile: ask again
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
        self._events.pop(session_id, None)
        self._seq.pop(session_id, None)
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

    # ------------------------------------------------------------------ SSE events and replay
    def append_event(self, session_id: str, stream_id, message) -> str:
        """Record ``message`` as sent on ``stream_id``; its SSE event id (``<stream>_<seq>``).

        ``message`` may be None (a priming event: an id with no data); replay skips it."""
        stream = str(stream_id)
        now = time.monotonic()
        with self._lock:
            seq = self._seq.get(session_id, 0) + 1
            self._seq[session_id] = seq
            log = self._events.setdefault(session_id, deque(maxlen=self.MAX_EVENTS))
            eid = f"{stream}_{seq}"
            log.append((seq, stream, eid, message, now))
            self._trim(log, now)
        return eid

    def _trim(self, log: deque, now: float) -> None:
        cutoff = now - self.replay_window
        while log and log[0][4] < cutoff:
            log.popleft()

    def events_after(self, session_id: str, last_event_id: str):
        """``(stream_id, [(event_id, message)])`` sent on that stream after ``last_event_id``.

        Only events still inside the replay window; ``(None, [])`` for an id we did not issue."""
        stream, sep, seq_text = (last_event_id or "").rpartition("_")
        if not sep or not seq_text.isdigit():
            return None, []
        after = int(seq_text)
        with self._lock:
            log = self._events.get(session_id)
            if log is None:
                return stream, []
            self._trim(log, time.monotonic())
            return stream, [(eid, m) for seq, st, eid, m, _ in log
                            if seq > after and st == stream and m is not None]

    # ------------------------------------------------------------------ GET stream messages
    def publish(self, session_id: str, message: dict) -> str | None:
        """Queue a server-to-client message for the session's GET stream.

        Returns its event id (the message is also kept for replay), or None when
        the session does not exist."""
        with self._lock:
            if session_id not in self._sessions:
                return None
        eid = self.append_event(session_id, GET_STREAM, message)
        with self._lock:
            box = self._outbox.setdefault(session_id, deque(maxlen=self.MAX_PENDING))
            box.append((eid, message))
            cond = self._wake.get(session_id)
        if cond is not None:
            with cond:
                cond.notify_all()
        return eid

    def listen(self, session_id: str, timeout: float) -> list | None:
        """Wait up to ``timeout`` for GET-stream messages.

        ``[(event_id, message)]``; [] on timeout; None once the session is gone."""
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

    # ------------------------------------------------------------------ server-to-client requests
    def expect_response(self, session_id: str, request_id) -> None:
        """Register interest in the client's answer to ``request_id`` before sending it."""
        with self._lock:
            self._replies[(session_id, _key(request_id))] = [threading.Event(), None]

    def deliver_response(self, session_id: str, request_id, message: dict) -> bool:
        """The client answered; False when nobody waits for that id (late or unknown)."""
        with self._lock:
            slot = self._replies.get((session_id, _key(request_id)))
            if slot is None:
                return False
            slot[1] = message
        slot[0].set()
        return True

    def wait_response(self, session_id: str, request_id, timeout: float):
        """The client's response message, or None after ``timeout`` (interest then ends)."""
        key = (session_id, _key(request_id))
        with self._lock:
            slot = self._replies.get(key)
        if slot is None:
            return None
        try:
            slot[0].wait(timeout)
            return slot[1]
        finally:
            with self._lock:
                self._replies.pop(key, None)

    # ------------------------------------------------------------------ calls in flight
    def cancel_call(self, session_id: str, request_id) -> bool:
        """Cancel the call ``request_id`` of the session if it is still running here."""
        return self.cancel_local(session_id, request_id)


    # ------------------------------------------------------------------ rate limits
    #: Most rate-limit buckets kept; full ones (idle callers) are dropped first.
    MAX_BUCKETS = 100_000

    def take_token(self, key: str, per_minute: int) -> bool:
        """Take one token from ``key``'s bucket (``per_minute`` capacity, refilled continuously)."""
        if per_minute <= 0:
            return True
        now = time.monotonic()
        rate = per_minute / 60.0
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.MAX_BUCKETS:
                    self._prune_buckets(now)
                bucket = self._buckets[key] = [float(per_minute), now]
            tokens = min(float(per_minute), bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return True
            bucket[0] = tokens
            return False

    def _prune_buckets(self, now: float) -> None:
        # A bucket idle for a minute is full again: forgetting it changes nothing.
        for k in [k for k, (_, at) in self._buckets.items() if now - at > 60.0]:
            del self._buckets[k]


    # ------------------------------------------------------------------ service-wide notifications
    def _channel(self, service: str) -> "_Channel":
        with self._lock:
            ch = self._channels.get(service)
            if ch is None:
                ch = self._channels[service] = _Channel(self.MAX_PENDING)
            return ch

    def broadcast(self, service: str, message: dict) -> None:
        """Send ``message`` to every session and every listen stream of ``service``."""
        updated_uri = None
        if message.get("method") == "notifications/resources/updated":
            updated_uri = (message.get("params") or {}).get("uri")
        for session in self.sessions_of(service):
            if updated_uri is None or updated_uri in session.subscriptions:
                self.publish(session.id, message)
        ch = self._channel(service)
        with ch.cond:
            ch.seq += 1
            ch.log.append((ch.seq, message))
            ch.cond.notify_all()

    def service_cursor(self, service: str) -> int:
        """The channel position now: listening from here sees only later broadcasts."""
        ch = self._channel(service)
        with ch.cond:
            return ch.seq

    def listen_service(self, service: str, cursor, timeout: float) -> tuple[int, list[dict]]:
        """Messages broadcast to ``service`` after ``cursor`` (waiting up to ``timeout``)."""
        ch = self._channel(service)
        with ch.cond:
            if ch.seq <= cursor:
                ch.cond.wait(timeout)
            # A reader that fell behind the bounded log loses the oldest messages, as
            # listen streams are not resumable (clients re-listen and refetch).
            return ch.seq, [m for seq, m in ch.log if seq > cursor]


class _Channel:
    """One service's broadcast log: a sequence number, the last messages, a wake-up."""

    def __init__(self, size: int):
        self.cond = threading.Condition()
        self.seq = 0
        self.log: deque = deque(maxlen=size)


def _key(request_id) -> str:
    # 1 and "1" are different JSON-RPC ids.
    return f"{type(request_id).__name__}:{request_id}"
