"""A small WSGI app for ``test_lean_worker``: run by real gunicorn with the lean worker.

Routes (by path prefix):

* ``/echo...``: the request as the app saw it, as JSON (method, PATH_INFO, QUERY_STRING,
  RAW_URI, the body's length and SHA-256, the HTTP_* keys, url scheme, a few more);
* ``/lines``: the body read line by line through ``wsgi.input``'s iterator;
* ``/unread``: answers without reading the body;
* ``/stream?flag=PATH``: a generator without Content-Length: yields ``first``, waits
  until the file ``PATH`` exists (the test creates it after reading the first chunk),
  then yields ``second``;
* ``/nolength``: a list body without Content-Length;
* ``/overlong``: declares 3 bytes, yields 6; ``/short``: declares 10, yields 3;
* ``/empty204``: 204 with a Content-Length the server must drop;
* ``/boom``: raises before starting the response (a 500 without traceback);
* ``/boom-late``: raises after the first chunk was sent (the connection is cut);
* ``/close``: asks the server to close after the response (``force_close``);
* ``/pid``: the worker's process id;
* ``/hooks``: what the last ``pre_request`` / ``post_request`` hooks saw (the test
  config's hooks record it here).
"""
import hashlib
import json
import os
import time

#: Filled by the test config's hooks (same worker process as the app).
HOOKS: dict = {}


def _json(start_response, payload, status="200 OK", extra=()):
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))] + list(extra))
    return [body]


def _stream(flag):
    yield b"first\n"
    deadline = time.monotonic() + 10
    while not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.01)            # gevent-patched: lets the worker serve others
    yield b"second\n"


def _late_failure():
    yield b"partial"
    raise RuntimeError("secret-detail-after-headers")


def app(environ, start_response):
    """Dispatch on PATH_INFO (see the module docstring)."""
    path = environ["PATH_INFO"]
    if path.startswith("/echo"):
        body = environ["wsgi.input"].read()
        return _json(start_response, {
            "method": environ["REQUEST_METHOD"], "path": path, "query": environ["QUERY_STRING"],
            "raw_uri": environ["RAW_URI"], "protocol": environ["SERVER_PROTOCOL"],
            "length": len(body), "sha256": hashlib.sha256(body).hexdigest(),
            "content_length": environ.get("CONTENT_LENGTH"), "content_type": environ.get("CONTENT_TYPE"),
            "http": {k: v for k, v in environ.items() if k.startswith("HTTP_")},
            "scheme": environ["wsgi.url_scheme"], "script_name": environ["SCRIPT_NAME"],
            "remote_addr": environ.get("REMOTE_ADDR"), "server_name": environ.get("SERVER_NAME"),
            "server_port": environ.get("SERVER_PORT"),
            "has_socket": environ.get("gunicorn.socket") is not None,
            "input_terminated": environ.get("wsgi.input_terminated"),
        })
    if path == "/lines":
        lines = [line.decode() for line in environ["wsgi.input"]]
        return _json(start_response, {"lines": lines})
    if path == "/unread":
        return _json(start_response, {"read": False})
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _stream(environ["QUERY_STRING"].split("=", 1)[1])
    if path == "/nolength":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"abc", b"def"]
    if path == "/overlong":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"abc", b"def"]
    if path == "/short":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
        return [b"abc"]
    if path == "/empty204":
        start_response("204 No Content", [("Content-Length", "5")])
        return [b"hello"]
    if path == "/boom":
        raise RuntimeError("secret-detail-before-headers")
    if path == "/boom-late":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _late_failure()
    if path == "/close":
        start_response.__self__.force_close()
        return _json(start_response, {"closing": True})
    if path == "/pid":
        return _json(start_response, {"pid": os.getpid()})
    if path == "/hooks":
        return _json(start_response, HOOKS)
    return _json(start_response, {"error": "not found"}, status="404 Not Found")
