"""Admission control for tool calls: concurrent calls per session, request rate per key.

``Protocol.tools_call`` runs every tool handler inside ``limiter.admit(call, access)``.
Admission either succeeds at once or raises ``LimitExceeded`` (a ``Limit Error``
tool result the model can read): it never waits, so a flood of calls can not
pile up greenlets or hang a worker.

* ``max_concurrent_calls`` (per service): tool calls one session may have running
  at once in this worker process.  Counted here, not in the store, so pings and
  other cheap requests never count against it.  (One session's requests normally
  reach one worker; with several, each worker caps it separately.  Stateless
  2026-07-28 calls have no session and are capped by the rate limit only.)
* ``rate_limit`` (per service, tool calls per minute; 0 = off): a token bucket per
  API key (``service:key-id``), kept by the session store's ``take_token`` so that
  with Redis every worker and host draws from the same bucket.  Callers without a
  key share the service's anonymous bucket: a per-session bucket would be escaped
  by opening new sessions.

The other limits live where the work is: ``max_rows`` / ``max_batch`` in the
tools, the request body size in the transport (413), the statement timeout in
the dialects.

Imports ``errors`` and ``native`` only.
"""
from __future__ import annotations

from .errors import LimitExceeded
from .native import native_lock


class Limiter:
    """Per-session concurrency and per-key rate limits for one process."""

    def __init__(self, store):
        self.store = store
        self._running: dict[str, int] = {}
        # Its critical sections are a dict read and a dict write: they never block (native_lock).
        self._lock = native_lock()

    def admit(self, call, access) -> "_Admission":
        """A context manager running its body as one admitted tool call, or raising
        ``LimitExceeded`` on entry.  Nothing is counted until the ``with`` enters."""
        # _Admission(self, call) without the __init__ frame (one admission per tool call).
        admission = _new_admission(_Admission)
        admission.limiter = self
        admission.call = call
        admission.sid = None
        return admission

    def running(self, session_id: str) -> int:
        """Tool calls of ``session_id`` running in this process (for tests and metrics)."""
        return self._running.get(session_id, 0)


class _Admission:
    """One ``Limiter.admit``: counts the session's call on enter, uncounts it on exit.

    A small class rather than a ``@contextmanager`` generator: one is made per tool
    call, and the generator machinery (a frame kept alive, two ``next`` calls,
    ``contextlib`` frames) costs more than the admission itself.
    """

    __slots__ = ("limiter", "call", "sid")

    def __init__(self, limiter: Limiter, call):
        # (Limiter.admit sets the same three attributes itself.)
        self.limiter = limiter
        self.call = call
        #: The counted session id, set once admitted (None: nothing to uncount).
        self.sid = None

    def __enter__(self) -> None:
        limiter = self.limiter
        call = self.call
        cfg = call.service.config
        session = call.session
        # Stateless (2026-07-28) calls have no session to cap; the rate limit still applies.
        if session is not None:
            sid = session.id
            if sid is not None:
                limit = cfg.max_concurrent_calls
                running = limiter._running
                with limiter._lock:
                    count = running.get(sid, 0)
                    if count < limit:
                        running[sid] = count + 1
                        self.sid = sid
                if self.sid is None:
                    raise LimitExceeded(f"too many calls at once: this session may run {limit} tool call"
                                        f"{'s' if limit != 1 else ''} at a time; wait for one to finish")
        if cfg.rate_limit:
            try:
                credential = session.credential if session is not None else getattr(call, "credential", "")
                if not limiter.store.take_token(f"rate:{cfg.name}:{credential or '-'}", cfg.rate_limit):
                    raise LimitExceeded(f"rate limit reached: {cfg.rate_limit} tool calls per minute "
                                        f"for this {'API key' if credential else 'service'}; "
                                        f"try again in a few seconds")
            except BaseException:
                # Not admitted after all: the ``with`` will not call __exit__, so give the slot back.
                self.__exit__(None, None, None)
                raise

    def __exit__(self, exc_type, exc, tb) -> None:
        sid = self.sid
        if sid is None:
            return
        self.sid = None
        limiter = self.limiter
        running = limiter._running
        with limiter._lock:
            left = running.get(sid, 1) - 1
            if left > 0:
                running[sid] = left
            else:
                running.pop(sid, None)


_new_admission = object.__new__
