"""Is the client of the request being served still connected?

A long read (a 100,000-row ``get_table_data``) holds a pooled connection and a
server-side cursor for as long as it fetches.  When the client gives up half way
(a timeout, a closed tab, nginx dropping the upstream after the client left),
nobody will read the answer: the read should stop at once and give the
connection back, not finish the fetch and then fail to write.

The transport registers the client socket of the request it answers inline
with ``watch(sock)`` (a context variable, so it follows the request into the
greenlet or thread that runs the call); code that loops over batches asks
``client_gone()`` between them.  A zero-argument callable may stand in for the
socket (tests).  Where no probe is registered (tests calling the
protocol directly, resumable SSE streams, where a disconnect is not a
cancellation) ``client_gone()`` is always False.

``socket_gone(sock)`` checks a TCP client socket (gunicorn puts it in
``environ["gunicorn.socket"]``): a zero-timeout ``poll`` for ``POLLRDHUP`` /
``POLLHUP`` / ``POLLERR`` (the peer closed or reset), which never reads or
consumes a byte and works the same under TLS; where ``POLLRDHUP`` is missing, a
``MSG_PEEK`` read that returns ``b""`` (end of stream).

Imports ``native`` only.
"""
from __future__ import annotations

import contextvars
import select
import socket
from contextlib import contextmanager

from .native import original_poll

#: The current request's client: a socket, or a zero-argument callable answering "gone?".
_CLIENT: contextvars.ContextVar = contextvars.ContextVar("mcp_client", default=None)


def client_gone() -> bool:
    """True when the current request's client provably went away (never raises)."""
    client = _CLIENT.get()
    if client is None:
        return False
    try:
        return bool(client()) if callable(client) else socket_gone(client)
    except Exception:  # noqa: BLE001 - a probe that fails proves nothing: keep serving
        return False


def watch(client):
    """Make ``client`` (a socket or a probe) the current request's; a token for ``unwatch``.

    ``None`` (nothing to watch) changes nothing.  Cheap enough for every request:
    the socket is only looked at when a long read asks ``client_gone()``.
    """
    return _CLIENT.set(client) if client is not None else None


def unwatch(token) -> None:
    """Undo ``watch``."""
    if token is not None:
        _CLIENT.reset(token)


@contextmanager
def watching(client):
    """``watch(client)`` for the ``with`` block."""
    token = watch(client)
    try:
        yield
    finally:
        unwatch(token)


_POLL = original_poll()
_GONE_EVENTS = getattr(select, "POLLRDHUP", 0) | getattr(select, "POLLHUP", 0) | getattr(select, "POLLERR", 0)


def socket_gone(sock) -> bool:
    """Did the peer of ``sock`` close or reset the connection?  Never reads a byte."""
    fd = sock.fileno()
    if fd < 0:
        return True              # closed on our side already
    if _POLL is not None and _GONE_EVENTS & getattr(select, "POLLRDHUP", 0):
        p = _POLL()
        p.register(fd, select.POLLIN | _GONE_EVENTS)
        return any(ev & _GONE_EVENTS for _fd, ev in p.poll(0))
    readable, _, _ = select.select([fd], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True              # reset by the peer
