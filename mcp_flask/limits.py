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

Imports errors only.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

from .errors import LimitExceeded


class Limiter:
    """Per-session concurrency and per-key rate limits for one process."""

    def __init__(self, store):
        self.store = store
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def admit(self, call, access):
        """Run the body as one admitted tool call, or raise ``LimitExceeded``."""
        cfg = call.service.config
        session = call.session
        # Stateless (2026-07-28) calls have no session to cap; the rate limit still applies.
        sid = session.id if session is not None else None
        limit = cfg.max_concurrent_calls
        refused = False
        if sid is not None:
            with self._lock:
                running = self._running.get(sid, 0)
                if running >= limit:
                    refused = True
                else:
                    self._running[sid] = running + 1
        if refused:
            raise LimitExceeded(f"too many calls at once: this session may run {limit} tool call"
                                f"{'s' if limit != 1 else ''} at a time; wait for one to finish")
        try:
            if cfg.rate_limit:
                credential = session.credential if session is not None else getattr(call, "credential", "")
                if not self.store.take_token(f"rate:{cfg.name}:{credential or '-'}", cfg.rate_limit):
                    raise LimitExceeded(f"rate limit reached: {cfg.rate_limit} tool calls per minute "
                                        f"for this {'API key' if credential else 'service'}; "
                                        f"try again in a few seconds")
            yield
        finally:
            if sid is not None:
                with self._lock:
                    left = self._running.get(sid, 1) - 1
                    if left > 0:
                        self._running[sid] = left
                    else:
                        self._running.pop(sid, None)

    def running(self, session_id: str) -> int:
        """Tool calls of ``session_id`` running in this process (for tests and metrics)."""
        return self._running.get(session_id, 0)
