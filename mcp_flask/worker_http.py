"""gunicorn's HTTP/1 request and response classes, tuned for gunicorn's gevent worker.

``gunicorn_conf.post_worker_init`` installs them when the worker class is gunicorn's own
``gevent`` (``MCP_FLASK_WORKER_CLASS=gevent``); the default lean worker (lean_worker.py)
has its own connection loop and takes only ``http_date`` and the constants from here:

* ``one_send_response_class``: the status line and headers go out with the first body
  chunk (one ``send()`` per ordinary answer);
* ``install_http_date``: the Date header is formatted once a second (``http_date``)
  instead of through ``email.utils`` on every response;
* ``peer_memo_request_class``: whether a peer is a trusted proxy
  (``forwarded_allow_ips``) is decided once per peer address, not per request.

Kept apart from ``gunicorn_conf`` because importing that module configures the process
(settings, metrics directory, logging): this one has no side effects, so tests import it.
Imports nothing from the project.
"""
import email.utils
import time


#: Largest first body chunk sent in the same ``send()`` as the headers (copying a bigger
#: one to join them would cost more than the second system call).
COALESCE_MAX = 64 * 1024


def one_send_response_class():
    """gunicorn's HTTP/1 ``Response``, with the status line and headers sent together
    with the first body chunk: one ``send()`` per ordinary answer instead of two.

    On a VM a ``send()`` that wakes the client is the most expensive step of a small
    MCP call (11% of a worker's samples under load).  gunicorn writes the headers as
    soon as they are ready; this keeps them until the first body bytes (or the end of
    the response) and writes both at once.  Bodies that gunicorn frames itself
    (chunked) and large first chunks go as before, right after the headers.
    """
    from gunicorn import util
    from gunicorn.http import wsgi

    class OneSendResponse(wsgi.Response):
        _head = None

        def send_headers(self):
            if self.headers_sent:
                return
            tosend = self.default_headers()
            tosend.extend(["%s: %s\r\n" % (k, v) for k, v in self.headers])
            self._head = ("%s\r\n" % "".join(tosend)).encode("latin-1")
            self.headers_sent = True

        def _flush_head(self):
            head = self._head
            if head is not None:
                self._head = None
                util.write(self.sock, head)

        def _emit_body(self, data):
            head = self._head
            if head is not None and not self.chunked and len(data) <= COALESCE_MAX:
                self._head = None
                util.write(self.sock, head + data)
                return
            self._flush_head()
            super()._emit_body(data)

        def write(self, arg):
            super().write(arg)
            # A body gunicorn dropped (HEAD, 204, 304) or clipped to nothing: the head goes now.
            self._flush_head()

        def sendfile(self, respiter):
            self.send_headers()
            self._flush_head()
            return super().sendfile(respiter)

        def close(self):
            if not self.headers_sent:
                self.send_headers()
            self._flush_head()
            super().close()

    return OneSendResponse


_date_cache = [-1, ""]


def http_date(timestamp=None) -> str:
    """gunicorn's ``util.http_date``, formatting the current time once per second.

    gunicorn formats the Date header through ``email.utils`` on every response (~2% of a
    worker's time on small calls); ``install_http_date`` puts this in its place.  An
    explicit ``timestamp`` is formatted as gunicorn would."""
    if timestamp is not None:
        return email.utils.formatdate(timestamp, localtime=False, usegmt=True)
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[1] = email.utils.formatdate(now, localtime=False, usegmt=True)
        _date_cache[0] = now
    return _date_cache[1]


def install_http_date() -> None:
    """Make gunicorn's responses take their Date header from ``http_date``."""
    from gunicorn import util
    util.http_date = http_date


#: Peers remembered by ``TrustedPeers`` before its memo starts again.
PEER_MEMO_SIZE = 1024


class TrustedPeers:
    """Whether a peer may set the forwarding and secure-scheme headers
    (``forwarded_allow_ips``), decided the way gunicorn decides it, once per address.

    gunicorn decides it for every request by parsing the address with ``ipaddress``
    and testing it against each allowed network; the answer depends only on the
    address and the configuration, both fixed for a worker's life.  Used by
    ``peer_memo_request_class`` (gunicorn's own loop) and by the lean worker."""

    def __init__(self, cfg):
        from gunicorn.http.message import _ip_in_allow_list

        allow, networks = cfg.forwarded_allow_ips, cfg.forwarded_allow_networks()
        self._decide = lambda host: _ip_in_allow_list(host, allow, networks)
        self._memo: dict = {}

    def __call__(self, addr) -> bool:
        """``addr`` is a peer address as the socket gives it (a tuple; else a UNIX socket,
        which gunicorn trusts too)."""
        if not isinstance(addr, tuple):
            return True
        trusted = self._memo.get(addr[0])
        if trusted is None:
            if len(self._memo) >= PEER_MEMO_SIZE:
                self._memo.clear()
            trusted = self._memo[addr[0]] = self._decide(addr[0])
        return trusted


def peer_memo_request_class():
    """gunicorn's HTTP/1 ``Request``, deciding whether its peer is a trusted proxy through
    one ``TrustedPeers`` per worker instead of afresh for every request."""
    from gunicorn.http import message

    peers: list = []

    class PeerMemoRequest(message.Request):
        def _peer_is_trusted_proxy(self):
            if not peers:
                peers.append(TrustedPeers(self.cfg))     # the worker's config, fixed
            return peers[0](self.peer_addr)

    return PeerMemoRequest
