"""A bounded DB-API connection pool that waits, checks health and never leaks.

psycopg2's own pools raise at once when exhausted; a web worker under load
should instead wait a little (``timeout``) and then answer "database busy".
The pool is written with ``threading`` primitives, which gevent's monkey
patching turns cooperative inside gunicorn's gevent workers, so a waiting
greenlet yields instead of blocking the worker.

* ``acquire`` reuses the most recently returned connection (LIFO keeps few
  connections warm), drops one the driver already knows is closed
  (``is_broken``, no round trip), pings one that sat idle longer than
  ``idle_check``, and opens a new one while fewer than ``size`` exist.
* ``release(conn, broken=True)`` closes a connection that failed, and
  ``purge_idle()`` drops the idle ones that died with it, so a restarted
  database is recovered from on the next request.
* ``connection()`` is the context manager every caller uses; it returns the
  connection in ``finally``, also when a streaming response is abandoned.

Imports only ``errors`` from the project.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager

from .errors import DatabaseBusy


class Pool:
    """A pool of at most ``size`` connections made by ``create``."""

    def __init__(self, create, *, size: int, timeout: float, idle_check: float = 30.0,
                 ping=None, close=None, is_broken=None, name: str = ""):
        self._create = create
        self._ping = ping
        #: A no-round-trip check (socket closed?) run on every checkout of an idle connection.
        self._is_broken = is_broken
        self._close = close or (lambda c: c.close())
        self.size = size
        self.timeout = timeout
        self.idle_check = idle_check
        self.name = name
        self._idle: deque = deque()          # (conn, returned_at)
        self._open = 0                       # connections that exist (idle + in use + being made)
        self._waiting = 0
        self._cond = threading.Condition()
        self._closed = False

    # ------------------------------------------------------------------ checkout
    def acquire(self, timeout: float | None = None):
        """A healthy connection, waiting up to ``timeout`` seconds for a free slot.

        Raises ``DatabaseBusy`` when none frees up in time, and whatever ``create``
        raises (``DatabaseUnavailable``) when a new connection cannot be made.

        An idle connection is taken without the lock (``deque.pop`` is atomic, and
        every other taker pops too); the lock guards the slot count and the waiting.
        """
        deadline = None
        idle = self._idle
        is_broken = self._is_broken
        while True:
            try:
                conn, returned_at = idle.pop()
            except IndexError:
                wait = self.timeout if timeout is None else timeout
                if deadline is None:
                    deadline = time.monotonic() + wait
                conn, returned_at, fresh = self._checkout_slow(deadline, wait)
                if fresh:
                    try:
                        return self._create()
                    except BaseException:
                        self._forget()
                        raise
            # The broken check inline (not ``_broken``): it runs on every checkout.
            if is_broken is not None:
                try:
                    broken = is_broken(conn)
                except Exception:  # noqa: BLE001 - a check that fails means an unusable connection
                    broken = True
                if broken:
                    self._discard(conn)
                    continue
            if self._ping is None or time.monotonic() - returned_at < self.idle_check:
                return conn
            try:
                self._ping(conn)
                return conn
            except Exception:  # noqa: BLE001 - a stale connection is replaced, not reported
                self._discard(conn)

    def _checkout_slow(self, deadline: float, wait: float) -> tuple:
        """Under the lock: an idle connection, or a slot for a new one (``fresh``), waiting
        for a release until ``deadline``: ``(conn, returned_at, fresh)``."""
        with self._cond:
            # Counted as waiting before looking: a release that does not see the count
            # appended before this look, so the look finds its connection.
            self._waiting += 1
            try:
                while True:
                    # Popped, not tested then popped: lock-free takers may empty the deque
                    # between the two.
                    try:
                        conn, returned_at = self._idle.pop()
                        return conn, returned_at, False
                    except IndexError:
                        pass
                    if self._open < self.size:
                        self._open += 1
                        return None, 0.0, True
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise DatabaseBusy(
                            f"all {self.size} database connections stayed busy for "
                            f"{wait:g} s; try again shortly")
                    self._cond.wait(remaining)
            finally:
                self._waiting -= 1

    def release(self, conn, broken: bool = False) -> None:
        """Give ``conn`` back; a ``broken`` one is closed and its slot freed."""
        if broken or self._closed:
            self._discard(conn)
            return
        self._idle.append((conn, time.monotonic()))
        if self._waiting:
            # Someone may be waiting (see _checkout_slow): wake one.
            with self._cond:
                self._cond.notify()

    @contextmanager
    def connection(self, timeout: float | None = None):
        """``with pool.connection() as conn``: returned (or discarded on error) in ``finally``."""
        conn = self.acquire(timeout)
        broken = True
        try:
            yield conn
            broken = False
        finally:
            self.release(conn, broken=broken)

    # ------------------------------------------------------------------ bookkeeping
    def _forget(self) -> None:
        with self._cond:
            self._open -= 1
            self._cond.notify()

    def _discard(self, conn) -> None:
        try:
            self._close(conn)
        except Exception:  # noqa: BLE001 - closing a dead connection can fail; it is gone
            pass
        self._forget()

    def purge_idle(self) -> int:
        """Close every idle connection (the server they talk to went away); how many.

        Called when a connection turned out dead: its idle siblings almost always
        died with it (a database restart), and pinging them one by one on later
        checkouts would cost each request a failed round trip.
        """
        dead = []
        while True:
            # One atomic pop at a time: a connection taken meanwhile is never also purged.
            try:
                dead.append(self._idle.pop()[0])
            except IndexError:
                break
        for conn in dead:
            self._discard(conn)
        return len(dead)

    def close_all(self) -> None:
        """Close idle connections and refuse to keep returned ones (shutdown)."""
        self._closed = True
        while True:
            try:
                conn, _ = self._idle.pop()
            except IndexError:
                return
            self._discard(conn)

    def stats(self) -> dict:
        """Sizes for /metrics and /readyz."""
        with self._cond:
            idle = len(self._idle)
            return {"size": self.size, "open": self._open, "idle": idle,
                    "in_use": self._open - idle, "waiting": self._waiting}
