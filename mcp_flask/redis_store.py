"""The Redis-backed session store: many gunicorn workers, many hosts, one set of sessions.

Implements the ``SessionStore`` interface documented in ``sessions.py`` (the
in-memory store is the reference for one process).  Everything a session needs
between requests lives in Redis, so any worker on any host can serve any request:

=========================  ==============================================================
key (after the prefix)      what it holds
=========================  ==============================================================
``s:<sid>``                 the session record (JSON), expiring after ``ttl`` idle seconds
``idx``                     sorted set sid -> last seen (count, sessions_of, sweeping)
``ev:<sid>``                a Redis stream: every SSE event of the session (field ``s`` =
                            stream id, ``m`` = message), trimmed to the replay window; an
                            entry ``t=end`` marks a deleted session (wakes GET listeners)
``gc:<sid>``                the last stream entry the GET stream delivered (its cursor)
``cancel``                  pub/sub channel: cancellations, read by every worker (the one
                            running the call stops it)
``exp:<sid>:<rid>``         marks a server-to-client request waiting for its response
``resp:<sid>:<rid>``        list receiving that response (BLPOP by the waiting worker)
``tb:<key>``                token bucket of one rate-limit key (updated by a Lua script)
``svc:<service>``           a Redis stream: the service's broadcast channel (list_changed,
                            resources/updated) read by 2026-07-28 listen streams
``inv``                     pub/sub channel: ids of sessions saved or deleted (evicts them
                            from every worker's local cache, see below)
=========================  ==============================================================

Event ids are ``<stream id>_<stream entry id>`` (entry ids are ``<ms>-<seq>``, unique
and ordered within the session), so ``Last-Event-ID`` names both the stream to resume
and the position in it, even on another worker.

Local record cache (the hot path).  Every MCP request looks its session up, and a Redis
round trip for each one cost as much as a second worker gains.  So each worker (each store
object) keeps the records it read for ``touch_interval`` seconds (default
``min(ttl / 10, 2 s)``) and serves ``get`` from memory, with the same answers:

* ``save`` and ``delete`` publish the session id on ``inv``.  Every store subscribes on a
  connection of its own and, before serving a cached record, reads whatever that socket
  already holds without blocking.  The usual answer, "nothing", comes from one
  zero-timeout ``poll`` of the socket (the original, not gevent's: it never blocks, and
  gevent's would switch to the hub): a drain always reads until redis-py's buffer is
  empty, so an idle socket means nothing is pending.  Only when bytes are there does
  redis-py read them (``can_read(0)`` and ``read_response``, a few µs each).  Redis queues a PUBLISH
  for its subscribers and the reply for the publisher in the same event-loop turn and
  writes both before it polls again, microseconds apart; a client that got worker A's
  DELETE answer and then asks worker B is several network hops later, so B finds the
  message in its socket and answers 404.
* A record read while an invalidation came in is not cached (a sequence check), and the
  cache is used only while the subscription is up: when it drops (Redis restarted,
  CLIENT KILL, a fork) the cache is emptied and bypassed, and emptied again once a
  background thread has subscribed anew (messages may have been lost in between).
* Idle expiry stays in Redis: a cached record is read again with GETEX (which restarts
  its TTL) once it is ``touch_interval`` old, so a session used through one worker's
  cache is touched at least every ``touch_interval`` while in use, and one idle
  everywhere expires.  Its Redis TTL is ``ttl + touch_interval``, because the last touch
  may precede the last use by up to ``touch_interval``: a session is never dropped early
  and at most ``touch_interval`` late.  ``count`` and ``sessions_of`` use the same window.
* ``touch_interval`` also bounds how long a cached record could outlive a change Redis
  does not announce (key eviction, FLUSHDB, a subscriber socket that died silently),
  for one GETEX per session per worker every 2 s at most.
* ``get`` hands out a copy (callers set ``log_level`` or add subscriptions, then
  ``save``): concurrent requests never share a mutable record.

Blocking reads (XREAD BLOCK, BLPOP) and the cancellation subscriber use redis-py
over the standard socket module, which gevent patches: they yield to other
greenlets instead of blocking the worker.

When Redis cannot be reached every method raises ``SessionStoreUnavailable``, an
``HttpError`` the transport answers with 503 and a JSON-RPC error body; the
connection pool reconnects by itself once Redis is back.

Imports ``errors``, ``encoding`` and ``sessions`` from the project, plus redis-py.
"""
from __future__ import annotations

import logging
import os
import re
import select
import threading
import time
from contextlib import contextmanager

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import encoding
from .errors import HttpError
from .native import original_poll
from .sessions import GET_STREAM, LocalCalls, Session, _key

log = logging.getLogger("mcp_flask.redis_store")

#: JSON-RPC "server error" code (implementation-defined range) for an unreachable store.
STORE_UNAVAILABLE = -32000
_ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
#: Longest single blocking read; the blocking client's socket timeout is this plus a margin,
#: so a Redis host that vanished without closing the connection is noticed.
MAX_BLOCK_S = 60.0
#: Longest single XREAD of a GET-stream listener (see ``listen``).
LISTEN_SLICE_MS = 5000
#: Upper bound of ``touch_interval`` (cached records are re-read, and their TTL restarted,
#: at least this often): bounds staleness Redis does not announce, costs one GETEX per
#: session per worker per interval.
TOUCH_MAX_S = 2.0
#: How often the background thread drains the invalidation socket when no request does
#: (keeps Redis' pub/sub output buffer short) and drops records past their interval.
INV_POLL_S = 0.5
#: Most records cached per worker (beyond it, records are served from Redis uncached).
MAX_CACHED = 100_000

#: ``select.poll`` even under gevent, for the cached hit's zero-timeout check of the
#: invalidation socket (None: no poll here, every drain asks redis-py).
_POLL = original_poll()

#: +1 in every child process after a fork: stores compare it with the value they started
#: their subscriber under, which is cheaper per request than asking ``os.getpid()``.
_fork_epoch = 0


def _forked() -> None:
    global _fork_epoch
    _fork_epoch += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)

# Token bucket: KEYS[1] = bucket hash; ARGV = capacity, refill per second.
# Time comes from the Redis server (one clock for every worker and host).
_TAKE_TOKEN = """
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil then
  tokens = cap
  ts = now
end
tokens = math.min(cap, tokens + (now - ts) * rate)
local ok = 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(cap / rate * 1000) + 1000)
return ok
"""

# Deliver a response only to a request somebody is waiting for (no junk keys from
# unsolicited or late responses).  KEYS: exp, resp; ARGV: message, ttl ms.
_DELIVER = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""

# Queue a GET-stream message only while the session exists.  KEYS: record, events;
# ARGV: stream id, message, minid, ttl ms.  Returns the entry id or false.
_PUBLISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local id = redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[3], '*', 's', ARGV[1], 'm', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return id
"""


class SessionStoreUnavailable(HttpError):
    """Redis cannot be reached: the request is answered 503 and may be retried."""

    def __init__(self):
        super().__init__(503, "Service Unavailable: the session store (Redis) cannot be reached; "
                              "retry shortly", code=STORE_UNAVAILABLE, headers={"Retry-After": "2"})


@contextmanager
def _available():
    """Turn redis-py's connection failures into one clear, client-safe error."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError) as exc:
        log.warning("session store unavailable: %s", type(exc).__name__)
        raise SessionStoreUnavailable() from None
    except redis.ResponseError as exc:
        # e.g. MISCONF / READONLY replica: Redis answers but cannot serve us.
        log.warning("session store refused a command: %s", str(exc).split("\n", 1)[0][:120])
        raise SessionStoreUnavailable() from None


def _loads(raw):
    return orjson.loads(raw)


def _copy(session: Session, last_seen: float) -> Session:
    """A private copy of a cached record (callers mutate what ``get`` returns, then save).

    Shallow, except the subscription set, the one container callers change in place;
    ``client_info`` and ``client_capabilities`` are only read.  About 1 µs."""
    c = object.__new__(Session)
    c.__dict__.update(session.__dict__)
    c.subscriptions = set(session.subscriptions)
    c.last_seen = last_seen
    return c


class RedisSessionStore(LocalCalls):
    """Sessions shared by every worker and host that points at the same Redis and prefix."""

    def __init__(self, url: str, ttl: float, *, prefix: str = "mcp-flask:", replay_window: float = 300.0,
                 socket_timeout: float = 5.0, max_connections: int = 1000,
                 touch_interval: float | None = None):
        self.ttl = float(ttl)
        #: Seconds a cached record is served before it is read again (and its TTL restarted).
        self.touch_interval = float(touch_interval if touch_interval is not None
                                    else min(self.ttl / 10, TOUCH_MAX_S))
        # The Redis TTL covers the idle time after the last use, which may come up to
        # touch_interval after the last touch (see the module docstring).
        self.ttl_ms = max(1, int((self.ttl + self.touch_interval) * 1000))
        self.replay_window_ms = max(1000, int(replay_window * 1000))
        self.prefix = prefix
        self.url = url
        common = dict(socket_connect_timeout=socket_timeout, socket_keepalive=True,
                      health_check_interval=30, max_connections=max_connections)
        # Two pools: short commands time out quickly; blocking reads need a longer socket timeout.
        self.r = redis.Redis.from_url(url, socket_timeout=socket_timeout, **common)
        self.rb = redis.Redis.from_url(url, socket_timeout=MAX_BLOCK_S + 10, **common)
        self._take_token = self.r.register_script(_TAKE_TOKEN)
        self._deliver = self.r.register_script(_DELIVER)
        self._publish = self.r.register_script(_PUBLISH)
        self._idx = prefix + "idx"
        # Calls running in this process (scopes cannot leave it); the cancellation subscriber.
        self._calls: dict[tuple, object] = {}
        self._lock = threading.Lock()
        self._subscriber = None
        self._subscriber_epoch = -1     # the _fork_epoch the cancellation subscriber runs under
        self._closing = False
        # The local record cache: sid -> (Session, monotonic time of the GETEX it came from).
        self._cache: dict[str, tuple[Session, float]] = {}
        self._inv_channel = prefix + "inv"
        # The invalidation subscription: its own connection, RESP2 (messages are plain
        # replies), no hidden retries or reconnects: a lost subscription must be noticed,
        # never silently replaced by one that missed messages.
        self._inv_pool = redis.ConnectionPool.from_url(
            url, protocol=2, health_check_interval=0, retry=Retry(NoBackoff(), 0),
            socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout, socket_keepalive=True)
        self._inv_pool.connection_kwargs["protocol"] = 2      # even if the URL asks for RESP3
        self._inv_lock = threading.Lock()
        self._inv_conn = None           # the subscribed connection, None while not subscribed
        self._inv_poller = None         # (connection, poll object watching its socket, the socket)
        self._inv_client_id = None      # its CLIENT ID (diagnostics, tests)
        self._inv_pid = None            # the process the subscription belongs to
        self._inv_epoch = -1            # the _fork_epoch it was started under
        self._inv_drains = 0            # +1 as a drain starts and as it ends (odd: under way)
        self._inv_gen = 0               # +1 on every (re)subscription and loss
        self._inv_seq = 0               # +1 on every invalidation received
        self._stats = {"hits": 0, "misses": 0, "subscriptions": 0, "losses": 0}

    # ------------------------------------------------------------------ keys
    def _k(self, kind: str, sid: str) -> str:
        return f"{self.prefix}{kind}:{sid}"

    def _cutoff_ms(self) -> str:
        return str(max(0, int(time.time() * 1000) - self.replay_window_ms))

    def _events_ttl(self) -> int:
        return self.ttl_ms + self.replay_window_ms

    # ------------------------------------------------------------------ health and lifecycle
    def ping(self) -> dict:
        """Reachability for /readyz and ``mcp-flask check``: {"ok", "error"?, "latency_ms"?}."""
        started = time.perf_counter()
        try:
            self.r.ping()
        except redis.RedisError as exc:
            return {"ok": False, "error": f"Redis cannot be reached ({type(exc).__name__})"}
        return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 3)}

    def shutdown(self) -> None:
        """The worker is stopping: end GET streams now (their clients reconnect elsewhere).

        Closing the blocking pool's sockets makes every greenlet blocked in XREAD/BLPOP
        return; ``listen`` then answers None so the transport ends the stream.
        """
        self._closing = True
        try:
            self.rb.connection_pool.disconnect(inuse_connections=True)
        except Exception:  # noqa: BLE001 - best effort during shutdown
            log.debug("closing blocking connections failed", exc_info=True)

    def close(self) -> None:
        self.shutdown()
        with self._inv_lock:
            self._lose_subscription(log_it=False)
        self.r.connection_pool.disconnect()

    # ------------------------------------------------------------------ records
    def create(self, session: Session) -> Session:
        """Store a new record (and cache it here: nobody else knows its id yet)."""
        self._check_process()
        now = time.time()
        checked = time.monotonic()
        session.created = session.last_seen = now
        with _available():
            p = self.r.pipeline(transaction=False)
            p.set(self._k("s", session.id), encoding.dumps(session.to_dict()), px=self.ttl_ms)
            p.zadd(self._idx, {session.id: now})
            p.execute()
        if self._inv_conn is not None and len(self._cache) < MAX_CACHED:
            self._cache[session.id] = (_copy(session, now), checked)
        return session

    def get(self, session_id: str) -> Session | None:
        """The live session (its idle clock restarted), or None if unknown or expired.

        Served from this worker's cache while the record is younger than
        ``touch_interval`` and no invalidation for it is pending; otherwise read from
        Redis with GETEX, which restarts its TTL.  Always a private copy."""
        if self._inv_epoch != _fork_epoch:
            self._check_process()
        now = time.time()
        entry = self._cache.get(session_id)
        if entry is not None and time.monotonic() - entry[1] < self.touch_interval:
            # Read invalidations already in the socket first: a save or delete another
            # worker answered before this request was sent is there by now.
            if self._nothing_pending():
                live = True
            else:
                with self._inv_lock:
                    live = self._drain()
            if live:
                entry = self._cache.get(session_id)
                if entry is not None:
                    self._stats["hits"] += 1
                    return _copy(entry[0], now)
        self._stats["misses"] += 1
        # Taken before the read (after applying what already arrived): an invalidation
        # received after this point, or a lost subscription, means the record read may be
        # stale, so it is not cached.
        with self._inv_lock:
            subscribed = self._drain()
            gen, seq = self._inv_gen, self._inv_seq
        checked = time.monotonic()
        with _available():
            p = self.r.pipeline(transaction=False)
            p.getex(self._k("s", session_id), px=self.ttl_ms)
            p.zadd(self._idx, {session_id: now}, xx=True, ch=True)
            raw, indexed = p.execute()
        if raw is None:
            self._cache.pop(session_id, None)
            if indexed:
                # The record expired but its index entry was just refreshed: drop it, so
                # count() does not report the session for another ttl.
                with _available():
                    self.r.zrem(self._idx, session_id)
            return None
        s = Session.from_dict(_loads(raw))
        s.last_seen = now
        if subscribed:
            with self._inv_lock:
                if (self._drain() and self._inv_gen == gen and self._inv_seq == seq
                        and len(self._cache) < MAX_CACHED):
                    self._cache[session_id] = (_copy(s, now), checked)
        return s

    def save(self, session: Session) -> None:
        """Persist changes made to a record (only while it exists: a deleted session stays deleted).

        Every worker's cached copy is invalidated before this returns (see ``get``)."""
        with _available():
            p = self.r.pipeline(transaction=False)
            p.set(self._k("s", session.id), encoding.dumps(session.to_dict()), px=self.ttl_ms, xx=True)
            p.publish(self._inv_channel, session.id)
            p.execute()
        self._cache.pop(session.id, None)

    def delete(self, session_id: str) -> bool:
        """End a session everywhere (record, replay cursor, every worker's cached copy)."""
        with _available():
            p = self.r.pipeline(transaction=False)
            p.delete(self._k("s", session_id), self._k("gc", session_id))
            p.zrem(self._idx, session_id)
            # The end marker wakes GET listeners on every worker; the events go soon after.
            p.xadd(self._k("ev", session_id), {"t": "end"})
            p.pexpire(self._k("ev", session_id), 10_000)
            p.publish(self._inv_channel, session_id)
            deleted = p.execute()[0]
        self._cache.pop(session_id, None)
        return deleted > 0

    def _idle_cutoff(self) -> float:
        # idx scores are touch times; a record lives ttl + touch_interval after its last touch.
        return time.time() - self.ttl - self.touch_interval

    def count(self) -> int:
        with _available():
            p = self.r.pipeline(transaction=False)
            p.zremrangebyscore(self._idx, "-inf", f"({self._idle_cutoff()}")
            p.zcard(self._idx)
            return int(p.execute()[1])

    def sessions_of(self, service: str) -> list[Session]:
        out = []
        with _available():
            sids = self.r.zrangebyscore(self._idx, self._idle_cutoff(), "+inf")
            for i in range(0, len(sids), 500):
                chunk = sids[i:i + 500]
                for raw in self.r.mget([self._k("s", sid.decode()) for sid in chunk]):
                    if raw is not None:
                        s = Session.from_dict(_loads(raw))
                        if s.service == service:
                            out.append(s)
        return out

    # ------------------------------------------------------------------ the local record cache
    def cache_stats(self) -> dict:
        """This worker's cache: hits, misses, entries, whether invalidations are subscribed,
        how many subscriptions were made and lost, the subscriber's Redis CLIENT ID."""
        return dict(self._stats, entries=len(self._cache), subscribed=self._inv_conn is not None,
                    client_id=self._inv_client_id)

    def _check_process(self) -> None:
        """Start the invalidation subscriber once per process (a fork copies the parent's
        socket and cache: neither may be used by the child)."""
        if self._inv_pid != os.getpid():
            self._start_invalidations()
        else:
            self._inv_epoch = _fork_epoch           # this process's: get skips the check

    def _start_invalidations(self) -> None:
        with self._lock:
            pid = os.getpid()
            if self._inv_pid == pid:
                return
            self._inv_lock = threading.Lock()       # never one a parent thread held at fork
            self._inv_conn = None                   # the parent's socket: not ours to read
            self._inv_poller = None
            self._inv_drains = 0                    # even if a parent thread was draining
            self._cache = {}
            self._inv_gen += 1
            self._inv_pid = pid
            self._inv_epoch = _fork_epoch
            threading.Thread(target=self._invalidation_loop, args=(pid,),
                             name="mcp-flask-session-cache", daemon=True).start()

    def _nothing_pending(self) -> bool:
        """True when no invalidation can be waiting, known without taking ``_inv_lock``.

        The lock (gevent's, a Python-level object) costs more than the rest of a cached
        hit.  Without it: no drain was under way when we looked (``_inv_drains`` even),
        the subscriber socket holds nothing (one zero-timeout poll), and no drain started
        or ended meanwhile (``_inv_drains`` unchanged).  Between drains redis-py's buffer
        is empty (see ``_drain``), so then nothing has arrived.  Any doubt (a drain under
        way, bytes in the socket, no poller yet) answers False: the caller drains under
        the lock, as before."""
        drains = self._inv_drains
        if drains & 1:
            return False
        poller = self._inv_poller
        conn = self._inv_conn
        # The same connection on the same socket (never a descriptor since reused).
        if poller is None or poller[0] is not conn or poller[2] is not conn._sock or poller[1].poll(0):
            return False
        return self._inv_drains == drains

    def _drain(self, full: bool = False) -> bool:
        """Apply every invalidation already received (the count ``_inv_drains`` is odd
        meanwhile); see ``_drain_now``."""
        self._inv_drains += 1
        try:
            return self._drain_now(full)
        finally:
            self._inv_drains += 1

    def _drain_now(self, full: bool) -> bool:
        """Apply every invalidation already received, without waiting; True while subscribed.

        Unless ``full``, an idle socket is taken to mean nothing is pending: every drain
        reads until redis-py's buffer is empty (``can_read(0)`` is False only then), so
        bytes not yet applied can only be in the socket.  The subscriber thread's periodic
        drain is ``full`` anyway.  Caller holds ``_inv_lock``."""
        conn = self._inv_conn
        if conn is None:
            return False
        try:
            # redis-py reconnects a closed connection on use: never let it do so here,
            # a fresh connection would not be subscribed.
            sock = getattr(conn, "_sock", True)
            if sock is None:
                raise redis.ConnectionError("subscriber connection closed")
            if not full and _POLL is not None and sock is not True:
                poller = self._inv_poller
                if poller is None or poller[0] is not conn or poller[2] is not sock:
                    poller = (conn, _POLL(), sock)
                    # Readable data, a hang-up or an error all show as an event: each
                    # sends the drain to redis-py (which raises for the last two).
                    poller[1].register(sock.fileno(), select.POLLIN)
                    self._inv_poller = poller
                if not poller[1].poll(0):
                    return True
            while conn.can_read(0):
                msg = conn.read_response()
                if isinstance(msg, list) and len(msg) == 3 and msg[0] == b"message":
                    self._inv_seq += 1
                    self._cache.pop(msg[2].decode("utf-8", "replace"), None)
        except Exception:  # noqa: BLE001 - any failure: the subscription can no longer be trusted
            self._lose_subscription()
            return False
        return True

    def _lose_subscription(self, log_it: bool = True) -> None:
        """The subscription is gone: empty the cache and bypass it until resubscribed.

        Caller holds ``_inv_lock``."""
        conn = self._inv_conn
        self._inv_conn = None
        self._inv_poller = None
        self._inv_gen += 1
        self._cache.clear()
        self._inv_drains += 2       # a lock-free check that began before this fails
        if conn is None:
            return
        self._stats["losses"] += 1
        if log_it:
            log.warning("session invalidation channel lost; serving sessions from Redis until resubscribed")
        try:
            conn.disconnect()
        except Exception:  # noqa: BLE001 - the socket is already broken
            pass

    def _subscribe(self):
        """A new connection subscribed to the invalidation channel, and its CLIENT ID."""
        conn = self._inv_pool.connection_class(**self._inv_pool.connection_kwargs)
        try:
            conn.connect()
            client_id = None
            try:
                conn.send_command("CLIENT", "ID")
                client_id = int(conn.read_response())
            except redis.ResponseError:     # e.g. an ACL without CLIENT: diagnostics only
                pass
            conn.send_command("SUBSCRIBE", self._inv_channel)
            reply = conn.read_response()
            if not (isinstance(reply, list) and reply and reply[0] == b"subscribe"):
                raise redis.ConnectionError("unexpected reply to SUBSCRIBE")
        except BaseException:
            conn.disconnect()
            raise
        return conn, client_id

    def _invalidation_loop(self, pid: int) -> None:
        """(Re)subscribe whenever not subscribed; between requests, drain and prune."""
        delay = 0.05
        failing = False
        while not self._closing and self._inv_pid == pid:
            try:
                if self._inv_conn is None:
                    try:
                        conn, client_id = self._subscribe()
                    except Exception:  # noqa: BLE001 - Redis away: retry with backoff
                        if not failing:
                            log.warning("session invalidation channel unavailable; retrying")
                        failing = True
                        time.sleep(delay)
                        delay = min(delay * 2, 2.0)
                        continue
                    failing, delay = False, 0.05
                    with self._inv_lock:
                        if self._closing or self._inv_pid != pid:
                            conn.disconnect()
                            return
                        # Messages sent while unsubscribed are lost: start from nothing.
                        self._cache.clear()
                        self._inv_gen += 1
                        self._inv_conn, self._inv_client_id = conn, client_id
                        self._stats["subscriptions"] += 1
                        # Whatever arrived with the SUBSCRIBE reply is in redis-py's
                        # buffer, not the socket: apply it now (see ``_drain``).
                        self._drain(full=True)
                else:
                    with self._inv_lock:
                        self._drain(full=True)
                    self._prune()
            except Exception:  # noqa: BLE001 - never let the thread die
                log.debug("session cache maintenance failed", exc_info=True)
            time.sleep(INV_POLL_S if self._inv_conn is not None else delay)

    def _prune(self) -> None:
        """Drop records past their interval (they would be read again anyway)."""
        oldest = time.monotonic() - self.touch_interval
        for sid, entry in list(self._cache.items()):
            if entry[1] < oldest and self._cache.get(sid) is entry:   # not replaced meanwhile
                self._cache.pop(sid, None)

    # ------------------------------------------------------------------ SSE events and replay
    def append_event(self, session_id: str, stream_id, message) -> str:
        """Record a message sent on a stream; its SSE event id (``<stream>_<entry>``).

        ``message`` may be None (a priming event: an id with no data); replay skips it."""
        stream = str(stream_id)
        key = self._k("ev", session_id)
        with _available():
            p = self.r.pipeline(transaction=False)
            p.xadd(key, {"s": stream, "m": encoding.dumps(message)}, minid=self._cutoff_ms(), approximate=True)
            p.pexpire(key, self._events_ttl())
            entry = p.execute()[0]
        return f"{stream}_{entry.decode()}"

    def events_after(self, session_id: str, last_event_id: str):
        """``(stream_id, [(event_id, message)])`` sent on that stream after ``last_event_id``.

        ``(None, [])`` for an id this store did not issue."""
        stream, sep, entry = (last_event_id or "").rpartition("_")
        if not sep or not _ENTRY_ID.match(entry):
            return None, []
        out = []
        with _available():
            rows = self.r.xrange(self._k("ev", session_id), min="(" + entry, max="+")
        want = stream.encode()
        for eid, fields in rows:
            # Priming events (message None, stored as JSON null) keep their id but are not replayed.
            if fields.get(b"s") == want and fields.get(b"m", b"null") != b"null":
                out.append((f"{stream}_{eid.decode()}", _loads(fields[b"m"])))
        return stream, out

    # ------------------------------------------------------------------ GET stream messages
    def publish(self, session_id: str, message: dict):
        """Queue a server-to-client message for the session's GET stream (any worker's).

        Returns its event id, or None when the session does not exist."""
        with _available():
            entry = self._publish(keys=[self._k("s", session_id), self._k("ev", session_id)],
                                  args=[GET_STREAM, encoding.dumps(message), self._cutoff_ms(),
                                        self._events_ttl()])
        return f"{GET_STREAM}_{entry.decode()}" if entry else None

    def listen(self, session_id: str, timeout: float):
        """Wait up to ``timeout`` for GET-stream messages.

        ``[(event_id, message)]``; [] on timeout; None once the session is gone (or this
        worker is shutting down, so the client reconnects to another one)."""
        if self._closing:
            return None
        ev, gc = self._k("ev", session_id), self._k("gc", session_id)
        deadline = time.monotonic() + min(timeout, MAX_BLOCK_S)
        try:
            with _available():
                cursor = self.r.get(gc) or b"0-0"
                while not self._closing:
                    left_ms = int((deadline - time.monotonic()) * 1000)
                    if left_ms <= 0:
                        break
                    # Blocks in slices, so a shutdown that raced past the socket close still
                    # ends the stream within a slice.
                    got = self.rb.xread({ev: cursor}, count=100, block=min(left_ms, LISTEN_SLICE_MS))
                    if not got:
                        break
                    out = []
                    for eid, fields in got[0][1]:
                        cursor = eid
                        if fields.get(b"t") == b"end":
                            return None
                        if fields.get(b"s") == b"get" and fields.get(b"m", b"null") != b"null":
                            out.append((f"{GET_STREAM}_{eid.decode()}", _loads(fields[b"m"])))
                    self.r.set(gc, cursor, px=self._events_ttl())
                    if out:
                        return out
                if self._closing or not self.r.exists(self._k("s", session_id)):
                    return None
                return []
        except Exception:
            # shutdown() closed the socket under a blocked read (redis-py may then raise
            # anything from ConnectionError to ValueError): end the stream quietly.
            if self._closing:
                return None
            raise

    # ------------------------------------------------------------------ service-wide notifications
    #: Most broadcasts kept per service channel (listen streams are not resumable).
    CHANNEL_LEN = 1000

    def broadcast(self, service: str, message: dict) -> None:
        """Send ``message`` to every session of ``service`` (only subscribers of the URI for
        ``notifications/resources/updated``) and to its channel, read by every worker."""
        updated_uri = None
        if message.get("method") == "notifications/resources/updated":
            updated_uri = (message.get("params") or {}).get("uri")
        for session in self.sessions_of(service):
            if updated_uri is None or updated_uri in session.subscriptions:
                self.publish(session.id, message)
        with _available():
            self.r.xadd(self._k("svc", service), {"m": encoding.dumps(message)},
                        maxlen=self.CHANNEL_LEN, approximate=True)

    def service_cursor(self, service: str) -> str:
        """The channel position now: listening from here sees only later broadcasts."""
        with _available():
            last = self.r.xrevrange(self._k("svc", service), count=1)
        return last[0][0].decode() if last else "0-0"

    def listen_service(self, service: str, cursor, timeout: float):
        """``(cursor, [message])`` broadcast to ``service`` after ``cursor``, waiting up to ``timeout``."""
        cursor = str(cursor or "0-0")
        if not _ENTRY_ID.match(cursor):
            cursor = "0-0"
        if self._closing:
            return cursor, []
        try:
            with _available():
                got = self.rb.xread({self._k("svc", service): cursor}, count=self.CHANNEL_LEN,
                                    block=max(1, int(min(timeout, MAX_BLOCK_S) * 1000)))
        except Exception:
            if self._closing:
                return cursor, []
            raise
        out = []
        for eid, fields in (got[0][1] if got else ()):
            cursor = eid.decode()
            out.append(_loads(fields[b"m"]))
        return cursor, out

    # ------------------------------------------------------------------ calls in flight
    # Calls are tracked in this process only: a call's scope (its connection) cannot leave
    # it, and writing every call to Redis would cost two round trips per call for the rare
    # cancellation.  A cancellation for a call not running here is published on one
    # channel every worker subscribes to; the worker running the call stops it.

    def _ensure_subscriber(self) -> None:
        if self._subscriber_epoch == _fork_epoch:
            return                  # started in this process (asked on every call: no getpid)
        pid = os.getpid()
        if self._subscriber is not None and self._subscriber[1] == pid:
            self._subscriber_epoch = _fork_epoch
            return
        with self._lock:
            if self._subscriber is not None and self._subscriber[1] == pid:
                return
            ready = threading.Event()            # a new subscriber per process (after a fork)
            t = threading.Thread(target=self._cancel_loop, args=(self.prefix + "cancel", ready),
                                 name="mcp-flask-cancel", daemon=True)
            self._subscriber = (t, pid)
            self._subscriber_epoch = _fork_epoch
            t.start()
        # Once per worker: wait (briefly) until subscribed, so a cancellation published
        # right after this call starts is not missed.
        ready.wait(2.0)

    def _cancel_loop(self, channel: str, ready: threading.Event) -> None:
        """Receive cancellations published by other workers; reconnect when Redis drops."""
        backoff = 0.5
        while not self._closing:
            pubsub = self.rb.pubsub()
            try:
                pubsub.subscribe(channel)
                backoff = 0.5
                while not self._closing:
                    msg = pubsub.get_message(timeout=MAX_BLOCK_S)
                    if msg is None:
                        continue
                    if msg.get("type") == "subscribe":
                        ready.set()
                    if msg.get("type") != "message":
                        continue
                    try:
                        sid, rkey = _loads(msg["data"])
                    except (ValueError, TypeError):
                        continue
                    with self._lock:
                        scope = self._calls.get((sid, rkey))
                    if scope is not None:
                        scope.cancel()
            except Exception:  # noqa: BLE001 - Redis went away: retry until it returns
                if self._closing:
                    return
                log.warning("cancellation channel lost; reconnecting")
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                try:
                    pubsub.close()
                except Exception:  # noqa: BLE001
                    pass

    def track_call(self, session_id: str, request_id, scope) -> None:
        self._ensure_subscriber()       # cancellations from other workers must reach it
        super().track_call(session_id, request_id, scope)

    def cancel_call(self, session_id: str, request_id) -> bool:
        """Cancel the call wherever it runs.

        True when it runs here (and is now cancelled), or when the cancellation reached
        the other workers (the one running the call stops it; unknown ids are ignored)."""
        if self.cancel_local(session_id, request_id):
            return True
        with _available():
            receivers = self.r.publish(self.prefix + "cancel", orjson.dumps([session_id, _key(request_id)]))
        return receivers > 0

    # ------------------------------------------------------------------ server-to-client requests
    def _rkeys(self, session_id: str, request_id) -> tuple[str, str]:
        rkey = _key(request_id)
        return self._k("exp", f"{session_id}:{rkey}"), self._k("resp", f"{session_id}:{rkey}")

    def expect_response(self, session_id: str, request_id) -> None:
        """Register interest in the client's answer before sending the request."""
        exp, _ = self._rkeys(session_id, request_id)
        with _available():
            self.r.set(exp, b"1", px=self.ttl_ms)

    def deliver_response(self, session_id: str, request_id, message: dict) -> bool:
        """The client answered (on any worker); False when nobody waits for it."""
        exp, resp = self._rkeys(session_id, request_id)
        with _available():
            return bool(self._deliver(keys=[exp, resp], args=[encoding.dumps(message), self.ttl_ms]))

    def wait_response(self, session_id: str, request_id, timeout: float):
        """The client's response message, or None after ``timeout`` seconds (interest then ends)."""
        exp, resp = self._rkeys(session_id, request_id)
        try:
            with _available():
                got = self.rb.blpop([resp], timeout=max(0.01, min(timeout, MAX_BLOCK_S)))
        finally:
            try:
                self.r.delete(exp, resp)
            except redis.RedisError:
                pass
        return _loads(got[1]) if got else None

    # ------------------------------------------------------------------ rate limits
    def take_token(self, key: str, per_minute: int) -> bool:
        """One token from ``key``'s bucket (capacity ``per_minute``, refilled continuously)."""
        if per_minute <= 0:
            return True
        with _available():
            return bool(self._take_token(keys=[self._k("tb", key)], args=[per_minute, per_minute / 60.0]))
