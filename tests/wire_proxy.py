"""A TCP proxy in front of PostgreSQL or MySQL that records the statements clients send.

Tests point a service's URL at the proxy and read ``proxy.statements``: the text of
every simple query (PostgreSQL ``Q`` message) or ``COM_QUERY`` (MySQL) that crossed
the wire, in order.  Nothing is mocked: the real driver talks to the real server,
the proxy only copies bytes and parses the client -> server framing.

* PostgreSQL: after the untyped startup packet, every message is ``type (1 byte) +
  length (4 bytes, includes itself) + body``; ``Q`` carries the SQL, NUL-terminated.
  (SSL requests are answered ``N`` by loopback servers without TLS: the parser sees the
  8-byte SSLRequest as a startup packet and the real one follows.)
* MySQL: every packet is ``length (3 bytes LE) + sequence (1) + payload``; a client
  packet with sequence 0 whose payload starts with 0x03 is ``COM_QUERY`` + SQL.
"""
from __future__ import annotations

import socket
import struct
import threading


class WireProxy:
    """``WireProxy("postgresql", "127.0.0.1", 5432)``; ``.port``, ``.statements``, ``.close()``."""

    def __init__(self, kind: str, host: str, port: int):
        assert kind in ("postgresql", "mysql")
        self.kind, self.target = kind, (host, port)
        self.statements: list[str] = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self._closed = False
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def take(self) -> list[str]:
        """The statements recorded since the last ``take`` (and forget them)."""
        with self._lock:
            out, self.statements = self.statements, []
        return out

    def close(self) -> None:
        self._closed = True
        for s in [self._listener] + self._socks:
            try:
                s.close()
            except OSError:
                pass

    # ------------------------------------------------------------------ plumbing
    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            self._socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        buf = b""
        started = False          # PostgreSQL: the untyped startup packet(s) seen
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_client:
                    # Record before forwarding: the server's answer (and so the test's next
                    # step) can then never come before its statement is in the list.
                    buf += data
                    buf, started = self._parse(buf, started)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _parse(self, buf: bytes, started: bool) -> tuple[bytes, bool]:
        while True:
            if self.kind == "postgresql":
                if not started:
                    if len(buf) < 8:
                        return buf, started
                    (length,) = struct.unpack("!I", buf[:4])
                    if len(buf) < length:
                        return buf, started
                    code = struct.unpack("!I", buf[4:8])[0]
                    buf = buf[length:]
                    # 80877103 = SSLRequest, 80877104 = GSSENCRequest: the real startup follows.
                    started = code not in (80877103, 80877104)
                    continue
                if len(buf) < 5:
                    return buf, started
                kind = buf[:1]
                (length,) = struct.unpack("!I", buf[1:5])
                if len(buf) < 1 + length:
                    return buf, started
                body, buf = buf[5:1 + length], buf[1 + length:]
                if kind == b"Q":
                    self._record(body.rstrip(b"\x00").decode("utf-8", "replace"))
            else:
                if len(buf) < 4:
                    return buf, started
                length = buf[0] | buf[1] << 8 | buf[2] << 16
                if len(buf) < 4 + length:
                    return buf, started
                seq, payload, buf = buf[3], buf[4:4 + length], buf[4 + length:]
                if seq == 0 and payload[:1] == b"\x03":
                    self._record(payload[1:].decode("utf-8", "replace"))

    def _record(self, sql: str) -> None:
        with self._lock:
            self.statements.append(sql.strip())
