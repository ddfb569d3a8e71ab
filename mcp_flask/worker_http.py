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


#: Peers remembered by ``peer_memo_request_class`` before the memo starts again.
PEER_MEMO_SIZE = 1024


def peer_memo_request_class():
    """gunicorn's HTTP/1 ``Request``, remembering per peer address whether it is a trusted
    proxy (``forwarded_allow_ips``).

    gunicorn decides it for every request by parsing the address with ``ipaddress``
    and testing it against each allowed network; the answer depends only on the
    address and the configuration, both fixed for a worker's connection."""
    from gunicorn.http import message

    memo: dict = {}

    class PeerMemoRequest(message.Request):
        def _peer_is_trusted_proxy(self):
            peer = self.peer_addr
            if not isinstance(peer, tuple):
                return True             # a UNIX socket: gunicorn trusts it too
            trusted = memo.get(peer[0])
            if trusted is None:
                if len(memo) >= PEER_MEMO_SIZE:
                    memo.clear()
                trusted = memo[peer[0]] = super()._peer_is_trusted_proxy()
            return trusted

    return PeerMemoRequest
