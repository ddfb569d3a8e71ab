"""The operating system's own primitives, even after gevent's monkey patching.

gevent replaces ``threading``'s locks and removes ``select.poll`` in a patched
worker.  A few hot spots need the originals, each where the original cannot
block a greenlet: a lock around a critical section that never waits (a dict
update, a 16-byte mmap write), and a zero-timeout ``poll``.  The originals still
exclude real threads, so the same code is right in a threaded or sync worker.

A leaf: imports nothing from the project.
"""
from __future__ import annotations

import select


def native_lock():
    """A new OS-level lock (``_thread.allocate_lock``), whether or not gevent patched ``threading``.

    Only for critical sections that never block nor yield: a greenlet holding it
    can then never be switched out, and it costs a fraction of gevent's
    cooperative lock."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        import _thread
        return _thread.allocate_lock()
    return monkey.get_original("_thread", "allocate_lock")()


def original_poll():
    """``select.poll`` as the standard library has it (gevent's patching removes it; a
    zero-timeout poll never blocks, so the original is safe in a greenlet); None where
    the platform has no poll."""
    try:
        from gevent import monkey
        return monkey.get_original("select", "poll")
    except Exception:  # noqa: BLE001 - no gevent: the standard library's
        return getattr(select, "poll", None)
