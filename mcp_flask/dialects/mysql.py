"""MySQL 8 and MariaDB 10.x, through pymysql (pure Python, so gevent makes it cooperative).

This module owns everything MySQL-specific: URL parsing, the per-session set-up
(strict SQL mode, UTC session time zone, statement timeout), backtick quoting,
paging and NULLS FIRST/LAST emulation, one-pass introspection from
``information_schema``, value conversion in both directions, server-side
streaming, cancellation with ``KILL QUERY``, stored routine calls and the
mapping of MySQL error numbers to the project's errors.

Two facts shape the code:

* pymysql binds values by client-side ``%`` interpolation, and this dialect
  *always* passes a parameter tuple (never ``None``), so every SQL text is
  interpolated exactly once.  A literal ``%`` in SQL text must therefore be
  written ``%%``; ``quote`` does that for identifiers (a column called
  ``100%`` or ``pct%s`` is safe), and no SQL text here contains another ``%``.
* MySQL and MariaDB differ in small ways the code checks by flavour, read once
  per connection from the server version string: the statement-timeout
  variable, how ``COLUMN_DEFAULT`` is spelled, and how JSON columns appear.

Imports only ``errors``, ``metadata`` and ``dialects.base`` from the project.
"""
from __future__ import annotations

import base64
import binascii
import difflib
import json
import logging
import math
import re
from datetime import date, datetime, timedelta, timezone
from urllib.parse import parse_qsl, unquote, urlsplit

import pymysql
import pymysql.cursors
from pymysql.constants import CLIENT

from ..errors import (ConfigError, DatabaseError, DatabaseUnavailable, InvalidArguments, McpFlaskError,
                      PermissionDenied, QueryTimeout)
from ..metadata import Catalog, Column, ForeignKey, Routine, RoutineParam, Table, derive_relations
from .base import Dialect

log = logging.getLogger(__name__)

# One SQL mode on every connection, whatever the server's default: strict (a bad or
# too-long value is an error, never silently truncated: STRICT_ALL_TABLES also covers
# non-transactional tables), no zero dates, and none of the modes that change how our
# SQL text parses (ANSI_QUOTES, NO_BACKSLASH_ESCAPES, PIPES_AS_CONCAT, MariaDB's
# ORACLE mode).  Every name here exists in MySQL 8 and MariaDB 10.x.
SQL_MODE = ("ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,STRICT_ALL_TABLES,NO_ZERO_IN_DATE,"
            "NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION")
#: MySQL's documented way to say "no limit" when only OFFSET is wanted (2**64 - 1).
NO_LIMIT = 18446744073709551615
#: URL query options understood after ``?`` in ``mysql://...``.
URL_OPTIONS = ("charset", "unix_socket", "ssl_ca", "ssl_cert", "ssl_key", "ssl_verify_cert",
               "ssl_verify_identity")
_TRUE = ("1", "true", "yes", "on")

# pymysql client codes (CR_*) and server codes (ER_*) meaning the connection is gone.
_DISCONNECT_CODES = frozenset({
    2003,   # CR_CONN_HOST_ERROR: cannot connect
    2006,   # CR_SERVER_GONE_ERROR
    2013,   # CR_SERVER_LOST (also pymysql's read/write timeout)
    2014,   # CR_COMMANDS_OUT_OF_SYNC: protocol state is lost
    2045,   # CR_NAMEDPIPEOPEN_ERROR
    2055,   # CR_SERVER_LOST_EXTENDED
    1053,   # ER_SERVER_SHUTDOWN
    1927,   # ER_CONNECTION_KILLED (MariaDB)
    4031,   # ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8.0.24+: idle connection closed)
})
_TIMEOUT_CODES = frozenset({3024, 1969, 1317})
_TYPE_CODES = frozenset({1264, 1265, 1366, 1292, 1406, 3140, 1690, 1367, 1411, 1918, 4078})
_PERMISSION_CODES = frozenset({1142, 1143, 1044, 1045, 1227, 1370, 1698})
_READ_ONLY_CODES = frozenset({1792, 1290, 1836})
_SCHEMA_CODES = frozenset({1146, 1054, 1305, 1318, 1356, 1049})
_SIGNAL_CODES = frozenset({1644})
# pymysql description type codes worth decoding when no catalog column is known.
_FIELD_JSON = 245
_FIELD_BIT = 16
_SPATIAL = frozenset({"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
                      "multipolygon", "geometrycollection", "geomcollection"})


class _Connection(pymysql.connections.Connection):
    """A pymysql connection that remembers which server flavour it talks to."""

    is_mariadb = False
    server_version: tuple = ()
    #: The session's default access mode is known to be read-only (dialect.session_read_only).
    read_only_session = False


# ============================================================================ type mapping

def simple_type(data_type: str, column_type: str, char_length=None, precision=None, scale=None):
    """``(DreamFactory type, length, precision, scale, extra)`` for one column or parameter.

    ``data_type`` is ``information_schema``'s DATA_TYPE (``varchar``), ``column_type``
    the full COLUMN_TYPE / DTD_IDENTIFIER (``varchar(20)``, ``enum('a','b')``).
    """
    dt = (data_type or "").lower()
    ct = (column_type or dt).lower()
    extra: dict = {}
    if "unsigned" in ct:
        extra["unsigned"] = True
    length = int(char_length) if char_length is not None else None
    if dt == "tinyint" and ct.startswith("tinyint(1)"):
        # MySQL's BOOL/BOOLEAN is tinyint(1); MySQL 8 keeps that display width for it alone.
        return "boolean", None, None, None, extra
    if dt in ("int", "integer"):
        return "integer", None, None, None, extra
    if dt in ("bigint", "smallint", "mediumint", "tinyint"):
        return dt, None, None, None, extra
    if dt in ("decimal", "numeric", "fixed", "dec"):
        return ("decimal", None, int(precision) if precision is not None else None,
                int(scale) if scale is not None else None, extra)
    if dt in ("double", "real", "double precision"):
        return "double", None, None, None, extra
    if dt == "float":
        return "float", None, None, None, extra
    if dt == "bit":
        m = re.match(r"bit\((\d+)\)", ct)
        bits = int(m.group(1)) if m else 1
        extra["bits"] = bits
        return ("boolean" if bits == 1 else "integer"), None, None, None, extra
    if dt in ("char", "varchar"):
        return "string", length, None, None, extra
    if dt in ("tinytext", "text"):
        return "text", length, None, None, extra
    if dt in ("mediumtext", "longtext"):
        return dt, length, None, None, extra
    if dt == "json":
        return "json", None, None, None, extra
    if dt in ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"):
        return "binary", length, None, None, extra
    if dt in ("enum", "set"):
        extra["picklist"] = enum_values(ct)
        if dt == "set":
            extra["set"] = True
        return "string", length, None, None, extra
    if dt in ("date", "time", "datetime", "timestamp"):
        return dt, None, None, None, extra
    if dt == "year":
        return "integer", None, None, None, extra
    if dt == "uuid":                       # MariaDB 10.7+
        return "uuid", None, None, None, extra
    if dt in _SPATIAL:
        extra["spatial"] = True
        return "binary", None, None, None, extra
    return "string", length, None, None, extra


def enum_values(column_type: str) -> list[str]:
    """The allowed values of ``enum('a','b''c')`` / ``set(...)``, unescaped."""
    inner = column_type[column_type.find("(") + 1:column_type.rfind(")")]
    return [unescape_literal(v) for v in re.findall(r"'((?:[^'\\]|\\.|'')*)'", inner, re.S)]


_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}


def unescape_literal(body: str) -> str:
    """The text of a MySQL string literal body (``it''s``, ``x\\\\y`` -> ``it's``, ``x\\y``)."""
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            # \% and \_ keep their backslash in MySQL (they are LIKE escapes).
            out.append(_ESCAPES.get(nxt, "\\" + nxt if nxt in "%_" else nxt))
            i += 2
        elif ch == "'" and body[i + 1:i + 2] == "'":
            out.append("'")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _typed_literal(text: str, stype: str, extra: dict):
    """A default's literal text as the column's JSON value (numbers as numbers)."""
    bits = re.fullmatch(r"b'([01]*)'", text)
    if bits:
        n = int(bits.group(1) or "0", 2)
        return bool(n) if stype == "boolean" else n
    try:
        if stype == "boolean":
            return bool(int(text))
        if stype in ("integer", "bigint", "smallint", "mediumint", "tinyint", "id", "bigid"):
            return int(text)
        if stype in ("float", "double"):
            return float(text)
    except ValueError:
        pass
    # Decimal defaults stay text ("1.50"): exact, and JSON-safe without a custom encoder.
    return text


def normalise_default(raw, stype: str, extra_text: str, mariadb_quoted: bool, extra: dict):
    """``COLUMN_DEFAULT`` as a value, or the expression text for computed defaults.

    MariaDB 10.2.7+ writes literals quoted (``'abc'``), NULL as ``NULL`` and
    expressions bare (``current_timestamp()``); MySQL writes literals bare and
    flags expressions with ``DEFAULT_GENERATED`` in EXTRA.  Expression defaults set
    ``extra["default_expression"]``; CURRENT_TIMESTAMP is spelled one way for both.
    """
    if raw is None:
        return None
    raw = _text(raw)
    if mariadb_quoted:
        if raw == "NULL":
            return None
        if len(raw) >= 2 and raw[0] == raw[-1] == "'":
            return _typed_literal(unescape_literal(raw[1:-1]), stype, extra)
        is_literal = bool(re.fullmatch(r"-?\d+(\.\d*)?([eE][-+]?\d+)?|b'[01]*'", raw))
    else:
        is_literal = "default_generated" not in extra_text.lower()
    if is_literal:
        return _typed_literal(raw, stype, extra)
    extra["default_expression"] = True
    m = re.fullmatch(r"(?i)(?:current_timestamp|now|localtimestamp|localtime)(?:\((\d*)\))?", raw)
    if m:
        return f"CURRENT_TIMESTAMP({m.group(1)})" if m.group(1) else "CURRENT_TIMESTAMP"
    return raw


def _text(value):
    """information_schema text; some MySQL 8 columns arrive as bytes."""
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return value


def _version_tuple(version: str) -> tuple:
    # MariaDB advertises "5.5.5-10.11.6-MariaDB" to old clients: skip that prefix.
    version = re.sub(r"^5\.5\.5-", "", version)
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    return tuple(int(p) for p in m.groups()) if m else ()


def format_time(value: timedelta) -> str:
    """A TIME value (pymysql gives ``timedelta``) as ``[-]HH:MM:SS[.ffffff]``; hours may exceed 24."""
    total = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if total < 0 else ""
    secs, micros = divmod(abs(total), 1_000_000)
    hours, rest = divmod(secs, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{sign}{hours:02d}:{minutes:02d}:{seconds:02d}"
    return text + f".{micros:06d}" if micros else text


# An offset after a time of day (a bare date's "-01" is not one).
_TZ_SUFFIX = re.compile(r"\d:\d\d(?::\d\d(?:\.\d+)?)?\s*(?:[zZ]|[+-]\d\d(?::?\d\d)?)$")


def to_naive_utc(value):
    """An ISO datetime text with 'T' and/or an offset (or an aware datetime) as naive UTC.

    MySQL rejects ``2024-01-01T10:00:00+02:00``; the session time zone is UTC, so an
    offset is applied here and the wall-clock UTC value is bound.  Other text is
    returned unchanged for the database to judge.
    """
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return value.astimezone(timezone.utc).replace(tzinfo=None)
        return value
    if not isinstance(value, str):
        return value
    text = value.strip()
    if "T" not in text and "t" not in text and not _TZ_SUFFIX.search(text):
        return value
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


def _errno(exc) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _errmsg(exc) -> str:
    args = getattr(exc, "args", ())
    return str(args[1]) if len(args) > 1 else str(exc)


def _last_identifier(text: str) -> str:
    """The column in ```db`.`t`.`c``` or ``'c'`` or ``'t.c'`` as MySQL messages write it."""
    text = text.strip()
    ticks = re.findall(r"`((?:[^`]|``)*)`", text)
    if ticks:
        return ticks[-1].replace("``", "`")
    return text.strip("'\"")


def _column_in(msg: str) -> str | None:
    """The column a MySQL error message names, never any of the value it quotes."""
    for pattern in (r"^Column (.+) cannot be null$", r"^Field (.+) doesn't have a default value$",
                    r"for column (.+?) at row \d+\.?$", r"in value for column (.+?)\.?$",
                    r"^Data too long for column (.+?) at row \d+$"):
        m = re.search(pattern, msg)
        if m:
            name = _last_identifier(m.group(1))
            if pattern.startswith("in value") and "." in name:
                name = name.split(".", 1)[1]   # MySQL writes 'table.column' there
            return name
    return None


def _param_column(p: RoutineParam) -> Column:
    """A Column standing in for a routine parameter, so values convert like a column's."""
    _, _, _, _, extra = simple_type(p.db_type.split("(")[0], p.db_type)
    return Column(name=p.name, type=p.type, db_type=p.db_type, length=p.length,
                  precision=p.precision, scale=p.scale, extra=extra)


def _description_column(desc) -> Column | None:
    """A Column for a result column whose catalog column is unknown (routine result sets)."""
    if desc[1] == _FIELD_JSON:
        return Column(name=desc[0], type="json", db_type="json")
    if desc[1] == _FIELD_BIT:
        return Column(name=desc[0], type="integer", db_type="bit")
    return None


def _unique_names(names: list[str]) -> list[str]:
    """Result-set column names made unique (``n``, ``n_2``) so no value is lost in a dict."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0) + 1
        seen[n] = k
        out.append(n if k == 1 else f"{n}_{k}")
    return out


# ============================================================================ the dialect

class MysqlDialect(Dialect):
    """MySQL 8 and MariaDB 10.x through pymysql.

    Public beyond the base contract: ``order_terms`` (NULLS FIRST/LAST emulation),
    ``is_closed`` (no-round-trip liveness for the pool), ``parse_url`` with
    ``connect_args`` / ``display_url`` (password masked), ``database`` (the schema
    served), and the tunables ``read_timeout_margin`` and ``stream_drain_rows``.
    """

    name = "mysql"
    placeholder = "%s"
    supports_routines = True
    # '!' rather than MySQL's default backslash: a backslash inside a string literal
    # would need doubling (and NO_BACKSLASH_ESCAPES changes that), '!' never does.
    like_escape = "!"
    #: Seconds the client waits beyond the statement timeout before giving up on a
    #: silent server (pymysql read/write timeout), so a hung server never hangs a worker.
    read_timeout_margin = 5.0
    #: Most unread rows an abandoned stream reads and discards to keep its connection;
    #: beyond that the connection is closed instead (cheaper than draining, and an
    #: unread result would otherwise break the next query: "Packets out of order").
    stream_drain_rows = 10_000

    def __init__(self, service):
        super().__init__(service)
        self.connect_args, self.display_url = self.parse_url(service)
        #: The database (schema) this service serves; tables are addressed unqualified.
        self.database = self.connect_args["database"]
        # Filled by introspect() for error messages: unique key name -> {table: columns},
        # and MariaDB's json_valid() CHECK constraint names -> column.
        self._unique_keys: dict[str, dict[str, tuple]] = {}
        self._json_checks: dict[str, str] = {}

    # ---------------------------------------------------------------- URL
    @staticmethod
    def parse_url(service) -> tuple[dict, str]:
        """pymysql keyword arguments from ``mysql://user:pass@host:port/db?charset=...``.

        Returns ``(kwargs, display)`` where ``display`` is the URL with the password
        masked, the only form that may appear in a message.
        """
        key = f"services.{service.name}.url"
        parts = urlsplit(service.url)
        scheme = parts.scheme.split("+", 1)[0].lower()
        if scheme not in ("mysql", "mariadb"):
            raise ConfigError(key, "expected mysql://user:password@host:3306/database or mariadb://...")
        try:
            port = parts.port or 3306
        except ValueError:
            raise ConfigError(key, "the port is not a number") from None
        database = unquote(parts.path.lstrip("/"))
        if not database or "/" in database:
            raise ConfigError(key, "name one database: mysql://user:password@host:3306/database")
        user = unquote(parts.username) if parts.username else None
        host = parts.hostname or "localhost"
        args = {"host": host, "port": port, "user": user,
                "password": unquote(parts.password) if parts.password is not None else "",
                "database": database, "charset": "utf8mb4"}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name not in URL_OPTIONS:
                close = difflib.get_close_matches(name, URL_OPTIONS, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(URL_OPTIONS)}"
                raise ConfigError(key, f"unknown URL option '{name}'{hint}")
            if name in ("ssl_verify_cert", "ssl_verify_identity"):
                args[name] = value.lower() in _TRUE
            else:
                args[name] = value
        if host in ("127.0.0.1", "localhost", "::1") or "unix_socket" in args:
            if not any(k.startswith("ssl_") for k in args):
                # TLS on loopback protects nothing, and PyMySQL's default "preferred" mode
                # loads the system CA bundle on every connect (~250 ms of blocked worker).
                args["ssl_disabled"] = True
        netloc_host = f"[{host}]" if ":" in host else host
        who = f"{user or ''}{':***' if parts.password else ''}@" if (user or parts.password) else ""
        display = f"{scheme}://{who}{netloc_host}:{port}/{database}"
        return args, display

    # ---------------------------------------------------------------- identifiers
    def quote(self, name: str) -> str:
        """`` `name` `` with embedded backticks doubled, and ``%`` doubled for pymysql's interpolation."""
        if "\x00" in name:
            raise InvalidArguments("identifiers may not contain NUL characters")
        return "`" + name.replace("`", "``").replace("%", "%%") + "`"

    # ---------------------------------------------------------------- connections
    def _open(self, connect_timeout: float, read_timeout: float) -> _Connection:
        # FOUND_ROWS: an UPDATE reports the rows it matched, not only those whose values
        # changed, as PostgreSQL and SQLite do (else re-saving a record looks like "not found").
        return _Connection(**self.connect_args, connect_timeout=connect_timeout, read_timeout=read_timeout,
                           write_timeout=read_timeout, autocommit=True, local_infile=False,
                           client_flag=CLIENT.FOUND_ROWS)

    def connect(self):
        """A new autocommit connection with strict mode, UTC session time and the statement timeout.

        Raises ``DatabaseUnavailable`` (the URL shown with its password masked).
        """
        svc = self.service
        try:
            conn = self._open(svc.connect_timeout, svc.statement_timeout + self.read_timeout_margin)
        except Exception as exc:  # noqa: BLE001 - pymysql wraps socket errors, but not every one
            raise DatabaseUnavailable(self._unreachable(exc)) from None
        try:
            self._init_session(conn)
        except Exception as exc:  # noqa: BLE001
            self.close(conn)
            raise self.map_error(exc) from None
        return conn

    def _unreachable(self, exc) -> str:
        # Built from the masked display URL and our own words: a driver message can
        # echo host names and user names, but we never pass on its text wholesale.
        reason = {1045: "access denied (check the user name and password)",
                  1044: "access to the database denied", 1049: "unknown database",
                  1040: "too many connections", 2003: "cannot reach the server",
                  2013: "lost the connection during the handshake"}.get(_errno(exc), "connection failed")
        return f"cannot connect to {self.display_url}: {reason}"

    def _init_session(self, conn: _Connection) -> None:
        """One round trip of session settings, after reading the server flavour."""
        version = conn.get_server_info() or ""
        conn.is_mariadb = "mariadb" in version.lower()
        conn.server_version = _version_tuple(version)
        timeout = self.service.statement_timeout
        if conn.is_mariadb:
            # MariaDB: seconds (fractions allowed); covers every statement kind.
            limit_sql, limit = "max_statement_time = %s", float(timeout)
        else:
            # MySQL: milliseconds, and it only stops SELECTs; writes stuck on locks are
            # bounded by the lock wait timeouts below, and the client read timeout.
            limit_sql, limit = "max_execution_time = %s", max(1, int(round(timeout * 1000)))
        lock_wait = max(1, math.ceil(timeout))
        # Read-only by default (see restore_session): an autocommit SELECT is then a
        # read-only transaction at the engine, with no START TRANSACTION / COMMIT round trips.
        self.execute(conn, f"SET SESSION sql_mode = %s, time_zone = '+00:00', {limit_sql}, "
                           f"innodb_lock_wait_timeout = %s, lock_wait_timeout = %s, "
                           f"{self._read_only_var(conn)} = 1",
                     (SQL_MODE, limit, lock_wait, lock_wait))
        conn.read_only_session = True

    @staticmethod
    def _read_only_var(conn) -> str:
        # MariaDB (before 11.1) knows only tx_read_only; MySQL 8 removed it for transaction_read_only.
        return "tx_read_only" if conn.is_mariadb else "transaction_read_only"

    def ping(self, conn) -> None:
        """A COM_PING round trip; raises ``DatabaseUnavailable`` when the connection is gone."""
        if self.is_closed(conn):
            raise DatabaseUnavailable("the database connection is closed")
        try:
            conn.ping(reconnect=False)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(conn, exc) from None

    def is_closed(self, conn) -> bool:
        """True when ``conn`` is known to be unusable without a round trip.

        An abandoned stream may close its connection (see ``stream``); a pool should
        check this before handing a connection out again.
        """
        return not getattr(conn, "open", False)

    def is_disconnect(self, exc: BaseException) -> bool:
        """True for lost connections, driver errors or mapped ones (their ``__context__`` is the driver's)."""
        seen = set()
        e = exc
        while e is not None and id(e) not in seen:
            seen.add(id(e))
            if isinstance(e, DatabaseUnavailable):
                return True
            if isinstance(e, (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)):
                return True
            if isinstance(e, pymysql.err.MySQLError):
                code = _errno(e)
                if code in _DISCONNECT_CODES:
                    return True
                # pymysql raises InterfaceError(0, "") on a closed socket.
                if isinstance(e, pymysql.err.InterfaceError) and code in (0, None):
                    return True
                if "already closed" in str(e).lower():
                    return True
            e = e.__cause__ or e.__context__
        return False

    def cancel(self, conn) -> None:
        """``KILL QUERY`` the statement running on ``conn`` from a short-lived second connection.

        Safe to call from another greenlet or thread.  The connection itself stays
        usable; the interrupted statement fails with error 1317 (``QueryTimeout``,
        which the caller's layer reports as cancelled).  If the statement already
        finished there is nothing to stop; like every KILL QUERY this can in
        principle hit a statement started in the same instant on ``conn``.
        """
        self._kill(conn.thread_id(), query_only=True)

    def _kill(self, thread_id: int, query_only: bool) -> None:
        svc = self.service
        try:
            side = self._open(svc.connect_timeout, svc.connect_timeout + self.read_timeout_margin)
        except Exception as exc:  # noqa: BLE001
            raise DatabaseUnavailable(self._unreachable(exc)) from None
        try:
            cur = side.cursor()
            try:
                cur.execute(("KILL QUERY %s" if query_only else "KILL %s"), (int(thread_id),))
            finally:
                cur.close()
        except Exception as exc:  # noqa: BLE001
            if _errno(exc) != 1094:         # ER_NO_SUCH_THREAD: it already finished
                raise self.map_error(exc) from None
        finally:
            self.close(side)

    # ---------------------------------------------------------------- execution
    def _fail(self, conn, exc: BaseException) -> Exception:
        """Map ``exc``; after a client-side timeout, also stop the statement on the server.

        pymysql gave up waiting and closed the socket, but the server may still be
        running the statement (MySQL's max_execution_time covers SELECT only,
        MariaDB's max_statement_time skips statements inside routines), holding
        locks: kill that server thread.
        """
        if _errno(exc) == 2013 and "timed out" in str(exc):
            try:
                self._kill(conn.thread_id(), query_only=False)
            except McpFlaskError:
                pass
        return self.map_error(exc)

    def _close_cursor(self, conn, cur) -> None:
        try:
            cur.close()
        except Exception:  # noqa: BLE001 - finishing the result failed: the protocol state is unknown
            self._discard(conn, cur)

    def _discard(self, conn, cur) -> None:
        """Close ``conn`` under an unfinished result, so no later query can read its rows."""
        self.close(conn)
        # The cursor and its result would try to drain again on close()/__del__
        # through the closed socket (and log "Exception ignored"): detach them.
        # ``unbuffered_active`` is pymysql's own flag for "rows still unread".
        result = getattr(cur, "_result", None)
        if result is not None and getattr(result, "unbuffered_active", False):
            result.unbuffered_active = False
        cur.connection = None

    def execute(self, conn, sql: str, params=()) -> int:
        """Run one statement that returns no rows; the affected row count."""
        cur = conn.cursor()
        try:
            cur.execute(sql, tuple(params))
            return cur.rowcount
        except Exception as exc:  # noqa: BLE001 - every driver error is mapped
            raise self._fail(conn, exc) from None
        finally:
            self._close_cursor(conn, cur)

    def query(self, conn, sql: str, params=()):
        """Run a query; its column names and all rows (buffered; use ``stream`` for large results)."""
        cur = conn.cursor()
        try:
            cur.execute(sql, tuple(params))
            names = [d[0] for d in cur.description] if cur.description else []
            return names, list(cur.fetchall())
        except Exception as exc:  # noqa: BLE001
            raise self._fail(conn, exc) from None
        finally:
            self._close_cursor(conn, cur)

    def stream(self, conn, sql: str, params=(), batch: int = 500):
        """Yield ``(names, rows_batch)`` from an unbuffered server-side cursor (flat memory).

        Closed early (the client went away), the generator reads and discards at
        most ``stream_drain_rows`` unread rows so the connection stays usable;
        with more left it closes the connection instead (``is_closed`` turns true)
        because draining millions of rows costs more than a reconnect.  Either way
        no unread result reaches the next query.  A consumer may ``send()`` a new
        batch size into the generator; later batches use it.
        """
        cur = conn.cursor(pymysql.cursors.SSCursor)
        finished = False
        try:
            cur.execute(sql, tuple(params))
            if cur.description is None:
                finished = True
                return
            names = [d[0] for d in cur.description]
            while True:
                rows = cur.fetchmany(batch)
                if not rows:
                    finished = True
                    return
                wanted = yield names, rows
                if wanted:
                    batch = max(1, int(wanted))
        except Exception as exc:  # noqa: BLE001
            # pymysql marks an unbuffered result finished when the server sends an
            # error packet (e.g. the statement timeout mid-stream), so close() is safe.
            finished = True
            raise self._fail(conn, exc) from None
        finally:
            if finished:
                self._close_cursor(conn, cur)
            else:
                self._abandon(conn, cur)

    def _abandon(self, conn, cur) -> None:
        """Discard an unfinished unbuffered result: drain a little, else close the connection."""
        drained = 0
        try:
            while drained <= self.stream_drain_rows:
                rows = cur.fetchmany(1000)
                if not rows:
                    cur.close()
                    return
                drained += len(rows)
        except Exception:  # noqa: BLE001 - a failed drain means the connection is unusable
            pass
        self._discard(conn, cur)

    # ---------------------------------------------------------------- transactions
    autocommit_reads = True

    def session_read_only(self, conn) -> bool:
        """The connection's session is still read-only by default.

        MySQL does not report session variables to the client (PyMySQL ignores session
        state tracking), so this is our own flag: cleared when a transaction may run
        user code that could change it, set again by ``restore_session``.
        """
        return bool(getattr(conn, "read_only_session", False))

    def restore_session(self, conn) -> None:
        """After writes or routine calls: the session default back to read-only (one round trip).

        A procedure or trigger can run ``SET SESSION TRANSACTION READ WRITE``; without
        this, later autocommit reads on the pooled connection could write.
        """
        conn.read_only_session = False
        self.execute(conn, f"SET SESSION {self._read_only_var(conn)} = 1")
        conn.read_only_session = True

    def begin(self, conn, read_only: bool = False) -> None:
        """``START TRANSACTION READ ONLY | READ WRITE``: the engine refuses writes in a read-only one (1792)."""
        self.execute(conn, "START TRANSACTION READ ONLY" if read_only else "START TRANSACTION READ WRITE")

    # ---------------------------------------------------------------- values
    def bind_value(self, column: Column | None, value):
        """A JSON value as pymysql should bind it for ``column``.

        bool -> 0/1; dict/list -> JSON text (for JSON columns numbers and booleans
        too; a string is taken as JSON text already); list -> ``a,b`` for SET
        columns; base64 text -> bytes for binary columns (``InvalidArguments`` when
        it is not base64); ISO datetimes with 'T' or an offset -> naive UTC datetime
        for datetime/timestamp columns.
        """
        if value is None:
            return None
        t = column.type if column is not None else None
        if t == "json":
            if isinstance(value, (str, bytes)):
                return value
            return json.dumps(value, ensure_ascii=False)
        if isinstance(value, bool):
            return int(value)
        if column is None:
            if isinstance(value, (dict, list, tuple)):
                return json.dumps(value, ensure_ascii=False)
            return value
        if column.extra.get("set") and isinstance(value, (list, tuple, set, frozenset)):
            return ",".join(str(v) for v in value)
        if t == "binary" and isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidArguments(f"column '{column.name}' holds binary data: send it as base64 text",
                                       details={"column": column.name}) from None
        if t in ("datetime", "timestamp", "datetimetz", "timestamptz"):
            return to_naive_utc(value)
        if isinstance(value, (dict, list, tuple)):
            return json.dumps(value, ensure_ascii=False)
        return value

    #: Column types whose values ``decode_value`` leaves alone, except BIT columns (typed
    #: boolean/integer, read as bytes) and SET columns (typed string): see ``decoder``.
    _PLAIN_TYPES = frozenset({"integer", "bigint", "smallint", "mediumint", "tinyint", "id", "bigid",
                              "decimal", "double", "float", "string", "text", "mediumtext", "longtext", "uuid"})

    def decoder(self, column: Column | None):
        """None (no per-cell call) for columns whose values ``decode_value`` never changes:
        numbers, text and UUIDs, but not BIT or SET columns; else the per-value decoder."""
        if (column is not None and column.type in self._PLAIN_TYPES and not column.extra.get("set")
                and not (column.db_type or "").lower().startswith("bit")):
            return None
        return super().decoder(column)

    def decode_value(self, column: Column | None, value):
        """A pymysql value read from ``column``, made ready for JSON encoding.

        TIME (timedelta) -> ``HH:MM:SS[.ffffff]``; JSON text -> objects; SET text ->
        list; BIT bytes -> int (bool for bit(1)); tinyint(1) -> bool; datetime text
        (from user variables) -> datetime.  Bytes stay bytes (the encoder base64s them).
        """
        if value is None:
            return None
        if isinstance(value, timedelta):
            return format_time(value)
        if column is None:
            return value
        t = column.type
        if t == "json":
            if isinstance(value, (bytes, bytearray)):
                value = value.decode("utf-8", "replace")
            if isinstance(value, str):
                try:
                    return json.loads(value)
                except ValueError:
                    return value
            return value
        if column.extra.get("set"):
            if isinstance(value, (set, frozenset)):
                order = {v: i for i, v in enumerate(column.extra.get("picklist") or [])}
                return sorted(value, key=lambda v: (order.get(v, len(order)), v))
            if isinstance(value, str):
                return value.split(",") if value else []
            return value
        if isinstance(value, (bytes, bytearray)) and column.db_type.lower().startswith("bit"):
            n = int.from_bytes(value, "big")
            return bool(n) if t == "boolean" else n
        if t == "boolean" and isinstance(value, int):
            return bool(value)
        if isinstance(value, str) and t in ("datetime", "timestamp", "date"):
            try:
                return (date.fromisoformat(value) if t == "date" else datetime.fromisoformat(value))
            except ValueError:
                return value                  # zero dates and the like stay as the server wrote them
        return value

    # ---------------------------------------------------------------- composition
    def paginate(self, limit: int | None, offset: int | None):
        """``LIMIT %s [OFFSET %s]``; MySQL has no OFFSET without LIMIT, so a huge LIMIT stands in."""
        if limit is None and not offset:
            return "", []
        if (limit is not None and int(limit) < 0) or (offset and int(offset) < 0):
            raise InvalidArguments("limit and offset must not be negative")
        sql, params = f" LIMIT {self.placeholder}", [int(limit) if limit is not None else NO_LIMIT]
        if offset:
            sql += f" OFFSET {self.placeholder}"
            params.append(int(offset))
        return sql, params

    def order_terms(self, column_sql: str, direction: str, nulls: str | None) -> list[str]:
        """ORDER BY terms for one column; NULLS FIRST/LAST as a leading ``col IS NULL`` term.

        MySQL sorts NULL lowest and has no NULLS clause; ``col IS NULL`` is 1 for
        NULLs, so ``IS NULL DESC`` puts them first and ``IS NULL ASC`` last.
        """
        direction = direction.upper()
        if direction not in ("ASC", "DESC"):
            raise InvalidArguments(f"order direction must be ASC or DESC, got {direction!r}")
        terms = []
        if nulls:
            nulls = nulls.upper()
            if nulls not in ("FIRST", "LAST"):
                raise InvalidArguments(f"nulls order must be FIRST or LAST, got {nulls!r}")
            terms.append(f"{column_sql} IS NULL {'DESC' if nulls == 'FIRST' else 'ASC'}")
        terms.append(f"{column_sql} {direction}")
        return terms

    def order_sql(self, order, alias: str | None = None) -> str:
        """``ORDER BY`` with NULLS FIRST/LAST emulated (see ``order_terms``)."""
        if not order:
            return ""
        prefix = f"{alias}." if alias else ""
        parts: list[str] = []
        for col, direction, nulls in order:
            parts.extend(self.order_terms(prefix + self.quote(col), direction, nulls))
        return " ORDER BY " + ", ".join(parts)

    def nulls_sql(self, column_sql: str, direction: str, nulls: str) -> str:
        """No suffix exists in MySQL; ``order_sql``/``order_terms`` emulate NULLS FIRST/LAST."""
        return ""

    def insert(self, conn, table: Table, record: dict) -> dict:
        """Insert one record; ``INSERT INTO t () VALUES ()`` when it is empty (no DEFAULT VALUES in MySQL)."""
        if not record:
            return self._insert_returning_key(conn, table, f"INSERT INTO {self.table_sql(table)} () VALUES ()",
                                              [], record)
        return super().insert(conn, table, record)

    def _insert_returning_key(self, conn, table: Table, sql: str, params: list, record: dict) -> dict:
        """Run the INSERT; the key from ``cursor.lastrowid`` (auto_increment) or the record.

        One code path for MySQL and MariaDB (only MariaDB 10.5+ has RETURNING).  A key
        column filled by an expression default (``uuid()``) cannot be read back
        without RETURNING, so it is left out of the result.
        """
        cur = conn.cursor()
        try:
            cur.execute(sql, tuple(params))
            last = cur.lastrowid
        except Exception as exc:  # noqa: BLE001
            raise self._fail(conn, exc) from None
        finally:
            self._close_cursor(conn, cur)
        key = {}
        for name in table.primary_key:
            col = table.column(name)
            if record.get(name) is not None:
                key[name] = record[name]
            elif col.auto_increment and last:
                key[name] = last
            elif col.default is not None and not col.extra.get("default_expression"):
                key[name] = col.default
        return key

    # ---------------------------------------------------------------- introspection
    def introspect(self, conn) -> Catalog:
        """The whole database in seven queries (no per-table round trips)."""
        mariadb = bool(getattr(conn, "is_mariadb", False))
        quoted_defaults = mariadb and getattr(conn, "server_version", ()) >= (10, 2, 7)
        db = (self.database,)
        _, table_rows = self.query(conn, "SELECT TABLE_NAME, TABLE_TYPE, TABLE_COMMENT FROM information_schema.TABLES "
                                         "WHERE TABLE_SCHEMA = %s ORDER BY BINARY TABLE_NAME", db)
        # BINARY: the same byte order as PostgreSQL's "C" sort and SQLite, not the collation's.
        _, column_rows = self.query(
            conn, "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_DEFAULT, IS_NULLABLE, DATA_TYPE, "
                  "CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, COLUMN_TYPE, EXTRA, "
                  "COLUMN_COMMENT FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                  "ORDER BY TABLE_NAME, ORDINAL_POSITION", db)
        _, index_rows = self.query(
            conn, "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS "
                  "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX", db)
        _, fk_rows = self.query(
            conn, "SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA, "
                  "k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE "
                  "FROM information_schema.KEY_COLUMN_USAGE k "
                  "JOIN information_schema.REFERENTIAL_CONSTRAINTS r "
                  "ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME "
                  "AND r.TABLE_NAME = k.TABLE_NAME "
                  "WHERE k.TABLE_SCHEMA = %s AND k.REFERENCED_TABLE_NAME IS NOT NULL "
                  "ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION", db)
        json_checks, json_constraints = self._json_check_columns(conn) if mariadb else ({}, {})

        # Indexes: which columns are primary, unique on their own, or indexed at all.
        indexes: dict[tuple, dict] = {}
        for tname, iname, non_unique, cname in index_rows:
            tname, iname, cname = _text(tname), _text(iname), _text(cname)
            entry = indexes.setdefault((tname, iname), {"unique": not int(non_unique), "cols": []})
            if cname is not None:          # MySQL 8 functional index parts have no column
                entry["cols"].append(cname)
        primary: dict[str, list] = {}
        unique_single: set[tuple] = set()
        indexed: set[tuple] = set()
        unique_keys: dict[str, dict[str, tuple]] = {}
        for (tname, iname), entry in indexes.items():
            if iname == "PRIMARY":
                primary[tname] = entry["cols"]
            if entry["unique"]:
                unique_keys.setdefault(iname, {})[tname] = tuple(entry["cols"])
                if len(entry["cols"]) == 1:
                    unique_single.add((tname, entry["cols"][0]))
            for c in entry["cols"]:
                indexed.add((tname, c))

        # Foreign keys, composite ones kept together in column order.
        grouped: dict[tuple, list] = {}
        for row in fk_rows:
            row = tuple(_text(v) for v in row)
            grouped.setdefault((row[0], row[1]), []).append(row)
        fks_by_table: dict[str, list[ForeignKey]] = {}
        fk_single: dict[tuple, ForeignKey] = {}
        fk_member: set[tuple] = set()
        for (tname, cname), parts in grouped.items():
            ref_schema, ref_table = parts[0][3], parts[0][4]
            if ref_schema != self.database:
                ref_table = f"{ref_schema}.{ref_table}"   # another database: shown, not related
            fk = ForeignKey(name=cname, columns=tuple(p[2] for p in parts), ref_table=ref_table,
                            ref_columns=tuple(p[5] for p in parts), on_update=parts[0][6],
                            on_delete=parts[0][7])
            if ref_schema == self.database:
                fks_by_table.setdefault(tname, []).append(fk)
            for c in fk.columns:
                fk_member.add((tname, c))
            if len(fk.columns) == 1:
                fk_single[(tname, fk.columns[0])] = fk

        columns_by_table: dict[str, list[Column]] = {}
        for (tname, cname, raw_default, nullable, data_type, char_len, num_prec, num_scale,
             column_type, extra_text, comment) in column_rows:
            tname, cname = _text(tname), _text(cname)
            data_type, column_type = _text(data_type), _text(column_type)
            extra_text = _text(extra_text) or ""
            stype, length, precision, scale, extra = simple_type(data_type, column_type, char_len,
                                                                 num_prec, num_scale)
            if json_checks.get(tname, set()) and cname in json_checks[tname] and data_type.lower() == "longtext":
                stype, length = "json", None      # MariaDB's JSON alias: longtext + CHECK (json_valid(col))
                extra["json_check"] = True
            auto_increment = "auto_increment" in extra_text.lower()
            is_pk = cname in primary.get(tname, ())
            if auto_increment and is_pk and stype in ("integer", "bigint", "smallint", "mediumint", "tinyint"):
                stype = "bigid" if stype == "bigint" else "id"
            if re.search(r"(?i)\b(virtual|stored|persistent) generated\b|^(virtual|persistent|stored)$",
                         extra_text):
                extra["generated"] = True
            if "on update" in extra_text.lower():
                extra["on_update"] = "CURRENT_TIMESTAMP"
            if "invisible" in extra_text.lower():
                extra["invisible"] = True
            default = normalise_default(raw_default, stype, extra_text, quoted_defaults, extra)
            fk = fk_single.get((tname, cname))
            columns_by_table.setdefault(tname, []).append(Column(
                name=cname, type=stype, db_type=column_type, length=length, precision=precision, scale=scale,
                default=default, allow_null=_text(nullable) == "YES", auto_increment=auto_increment,
                is_primary_key=is_pk,
                is_unique=(tname, cname) in unique_single or (is_pk and len(primary[tname]) == 1),
                is_index=(tname, cname) in indexed, is_foreign_key=(tname, cname) in fk_member,
                ref_table=fk.ref_table if fk else None, ref_field=fk.ref_columns[0] if fk else None,
                ref_on_update=fk.on_update if fk else None, ref_on_delete=fk.on_delete if fk else None,
                comment=_text(comment) or None, extra=extra))

        tables: dict[str, Table] = {}
        for tname, ttype, tcomment in table_rows:
            tname, ttype, tcomment = _text(tname), _text(ttype) or "", _text(tcomment)
            is_view = "VIEW" in ttype.upper()
            if is_view and tcomment == "VIEW":
                tcomment = None                   # MySQL writes 'VIEW' as every view's comment
            tables[tname] = Table(name=tname, columns=columns_by_table.get(tname, []), is_view=is_view,
                                  foreign_keys=fks_by_table.get(tname, []), comment=tcomment or None)
        derive_relations(tables)
        procedures, functions = self._routines(conn)
        self._unique_keys = unique_keys
        self._json_checks = json_constraints
        return Catalog(tables=tables, procedures=procedures, functions=functions)

    def _json_check_columns(self, conn) -> tuple[dict[str, set], dict[str, str]]:
        """MariaDB's JSON columns, which are longtext with a ``CHECK (json_valid(`col`))``.

        Returns ``(table -> columns, constraint name -> column)``; error 4025 names a
        column-level constraint ``table.column``, a table-level one by its own name,
        so both spellings are kept.
        """
        try:
            _, rows = self.query(conn, "SELECT TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE "
                                       "FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %s",
                                 (self.database,))
        except DatabaseError:
            return {}, {}              # MariaDB before 10.3.10 has no CHECK_CONSTRAINTS table
        columns: dict[str, set] = {}
        constraints: dict[str, str] = {}
        for tname, cname, clause in rows:
            m = re.fullmatch(r"(?is)\s*json_valid\(\s*`((?:[^`]|``)+)`\s*\)\s*", _text(clause) or "")
            if m:
                tname, cname, column = _text(tname), _text(cname), m.group(1).replace("``", "`")
                columns.setdefault(tname, set()).add(column)
                constraints[f"{tname}.{cname}"] = column
                constraints.setdefault(cname, column)
        return columns, constraints

    def _routines(self, conn) -> tuple[dict, dict]:
        """Procedures and functions with their parameters, in two queries."""
        _, rows = self.query(
            conn, "SELECT ROUTINE_NAME, ROUTINE_TYPE, DATA_TYPE, DTD_IDENTIFIER, CHARACTER_MAXIMUM_LENGTH, "
                  "NUMERIC_PRECISION, NUMERIC_SCALE, ROUTINE_COMMENT FROM information_schema.ROUTINES "
                  "WHERE ROUTINE_SCHEMA = %s ORDER BY ROUTINE_NAME", (self.database,))
        _, prows = self.query(
            conn, "SELECT SPECIFIC_NAME, ROUTINE_TYPE, ORDINAL_POSITION, PARAMETER_MODE, PARAMETER_NAME, "
                  "DATA_TYPE, DTD_IDENTIFIER, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE "
                  "FROM information_schema.PARAMETERS WHERE SPECIFIC_SCHEMA = %s AND ORDINAL_POSITION > 0 "
                  "ORDER BY SPECIFIC_NAME, ROUTINE_TYPE, ORDINAL_POSITION", (self.database,))
        params: dict[tuple, list[RoutineParam]] = {}
        for (rname, rtype, pos, mode, pname, data_type, dtd, clen, nprec, nscale) in prows:
            stype, length, precision, scale, _ = simple_type(_text(data_type), _text(dtd), clen, nprec, nscale)
            params.setdefault((_text(rname), _text(rtype).lower()), []).append(RoutineParam(
                name=_text(pname), position=int(pos), param_type=(_text(mode) or "IN").upper(), type=stype,
                db_type=_text(dtd) or _text(data_type), length=length, precision=precision, scale=scale))
        procedures: dict[str, Routine] = {}
        functions: dict[str, Routine] = {}
        for rname, rtype, data_type, dtd, clen, nprec, nscale, comment in rows:
            rname, kind = _text(rname), (_text(rtype) or "").lower()
            if kind not in ("procedure", "function"):
                continue                       # MariaDB packages (sql_mode=ORACLE)
            routine = Routine(name=rname, kind=kind, params=params.get((rname, kind), []),
                              description=_text(comment) or None)
            if kind == "function":
                routine.return_type = simple_type(_text(data_type), _text(dtd), clen, nprec, nscale)[0]
                routine.return_db_type = _text(dtd) or _text(data_type)
                functions[rname] = routine
            else:
                procedures[rname] = routine
        return procedures, functions

    # ---------------------------------------------------------------- routines
    def _routine_sql(self, routine: Routine) -> str:
        return f"{self.quote(routine.schema or self.database)}.{self.quote(routine.native_name)}"

    def call_routine(self, conn, routine: Routine, args: dict, max_rows: int | None = None) -> dict:
        """Call a function (``SELECT db.fn(...)``) or procedure (``CALL db.proc(...)``).

        Returns ``{"result_sets": [[{col: value}, ...], ...], "out": {name: value},
        "value": scalar-or-None}``, plus ``"truncated": True`` when a result set had
        more than ``max_rows`` rows (default: the service's; the rest were read and dropped).
        OUT/INOUT parameters travel through session variables ``@mcpf_<position>``;
        INOUT ones are set first, all are read back after the CALL.
        """
        ordered = sorted(routine.params, key=lambda p: p.position)
        for p in ordered:
            if p.param_type == "IN" and p.name not in args:
                raise InvalidArguments(f"missing argument '{p.name}' (MySQL routines have no defaults)")
        if routine.kind == "function":
            values = [self.bind_value(_param_column(p), args.get(p.name)) for p in ordered]
            marks = ", ".join([self.placeholder] * len(values))
            _, rows = self.query(conn, f"SELECT {self._routine_sql(routine)}({marks})", values)
            ret = Column(name="value", type=routine.return_type or "string", db_type=routine.return_db_type or "")
            if ret.db_type.lower().startswith("set("):
                ret.extra["set"] = True
            return {"result_sets": [], "out": {},
                    "value": self.decode_value(ret, rows[0][0]) if rows else None}

        marks, values, sets, set_values, outs = [], [], [], [], []
        for p in ordered:
            col = _param_column(p)
            if p.param_type == "IN":
                marks.append(self.placeholder)
                values.append(self.bind_value(col, args.get(p.name)))
                continue
            var = f"@mcpf_{p.position}"
            marks.append(var)
            outs.append((p, var, col))
            # INOUT carries the caller's value in; OUT starts NULL so nothing from an
            # earlier call on this pooled connection can show through.
            sets.append(f"{var} = {self.placeholder}")
            set_values.append(self.bind_value(col, args.get(p.name)) if p.param_type == "INOUT" else None)
        if sets:
            self.execute(conn, "SET " + ", ".join(sets), set_values)

        cap = self.service.max_rows if max_rows is None else max_rows
        result_sets: list[list[dict]] = []
        truncated = False
        # Unbuffered, so a procedure returning a huge set cannot exhaust memory: rows
        # past max_rows are read and dropped.  Every set and the final status packet
        # are consumed before the cursor closes, so nothing unread is left behind.
        cur = conn.cursor(pymysql.cursors.SSCursor)
        try:
            cur.execute(f"CALL {self._routine_sql(routine)}({', '.join(marks)})", tuple(values))
            while True:
                if cur.description:
                    names = _unique_names([d[0] for d in cur.description])
                    cols = [_description_column(d) for d in cur.description]
                    rows_out: list[dict] = []
                    while True:
                        batch = cur.fetchmany(500)
                        if not batch:
                            break
                        for row in batch:
                            if len(rows_out) >= cap:
                                truncated = True
                                continue
                            rows_out.append({n: self.decode_value(c, v) for n, c, v in zip(names, cols, row)})
                    result_sets.append(rows_out)
                if not cur.nextset():
                    break
        except Exception as exc:  # noqa: BLE001
            raise self._fail(conn, exc) from None
        finally:
            self._close_cursor(conn, cur)

        out = {}
        if outs:
            _, rows = self.query(conn, "SELECT " + ", ".join(var for _, var, _ in outs))
            for (p, _, col), value in zip(outs, rows[0]):
                out[p.name] = self.decode_value(col, value)
        result = {"result_sets": result_sets, "out": out, "value": None}
        if truncated:
            result["truncated"] = True
        return result

    # ---------------------------------------------------------------- errors
    def map_error(self, exc: BaseException) -> Exception:
        """A project error for ``exc``, chosen by MySQL error number.

        Messages name columns, keys and constraints, never the SQL text, the
        offending values, the DSN or a trace.
        """
        if isinstance(exc, McpFlaskError):
            return exc
        if isinstance(exc, pymysql.err.MySQLError):
            return self._map_mysql(exc)
        if isinstance(exc, (OSError, EOFError)):
            return DatabaseUnavailable("lost the connection to the database")
        if isinstance(exc, (TypeError, ValueError, OverflowError)):
            return DatabaseError("a value has a type the database driver cannot send", kind="type")
        log.debug("unmapped error from the MySQL dialect: %s", type(exc).__name__)
        return DatabaseError("the database reported an error")

    def _map_mysql(self, exc) -> Exception:
        code, msg = _errno(exc), _errmsg(exc)
        if code is None:
            low = str(exc).lower()
            if "already closed" in low:
                return DatabaseUnavailable("the database connection is closed")
            if "can not be used with mysql" in low:   # pymysql refuses inf / nan floats
                return DatabaseError("infinite and NaN numbers cannot be stored", kind="type")
            return DatabaseError("the database driver refused the statement")
        if code == 0 or code in _DISCONNECT_CODES or code == 1040:
            return DatabaseUnavailable("too many connections to the database; try again shortly" if code == 1040
                                       else "lost the connection to the database")
        if code in _TIMEOUT_CODES or code == 1028:    # 1028: sort aborted by the same kill
            return QueryTimeout()
        if code == 1062:
            return self._duplicate(msg)
        if code in (1451, 1217):
            c = self._constraint_in(msg)
            return DatabaseError("other rows still refer to this record" + (f" (foreign key {c})" if c else ""),
                                 kind="foreign_key", constraint=c)
        if code in (1452, 1216):
            c = self._constraint_in(msg)
            m = re.search(r"FOREIGN KEY \(((?:`(?:[^`]|``)*`(?:, )?)+)\)", msg)
            cols = ", ".join(v.replace("``", "`") for v in re.findall(r"`((?:[^`]|``)*)`", m.group(1))) if m else None
            where = f" for {cols}" if cols else ""
            return DatabaseError(f"no matching referenced row{where}" + (f" (foreign key {c})" if c else ""),
                                 kind="foreign_key", constraint=c, column=cols)
        if code == 1048:
            col = _column_in(msg)
            return DatabaseError(f"column {col} may not be null", kind="not_null", column=col)
        if code == 1364:
            col = _column_in(msg)
            return DatabaseError(f"column {col} is required (it has no default value)", kind="not_null",
                                 column=col)
        if code in (3819, 4025):
            m = re.search(r"(?:Check constraint|CONSTRAINT) [`']((?:[^`']|``)*)[`']", msg)
            c = m.group(1).replace("``", "`") if m else None
            if c is not None and c in self._json_checks:
                return DatabaseError(f"column {self._json_checks[c]} must hold valid JSON", kind="type",
                                     constraint=c, column=self._json_checks[c])
            return DatabaseError("a value violates check constraint" + (f" {c}" if c else ""),
                                 kind="check", constraint=c)
        if code in _TYPE_CODES:
            col = _column_in(msg)
            what = {1406: "is too long for", 1264: "is out of range for", 1690: "is out of range for",
                    1292: "is not a valid date/time for", 3140: "is not valid JSON for"}.get(code, "does not fit")
            return DatabaseError(f"a value {what} column {col}" if col else "a value has the wrong type or is "
                                 "out of range", kind="type", column=col)
        if code == 1205:
            return DatabaseError("timed out waiting for a lock held by another transaction; try again",
                                 kind="lock")
        if code == 1213:
            return DatabaseError("deadlock with another transaction (the transaction was rolled back); "
                                 "try again", kind="lock")
        if code in _READ_ONLY_CODES:
            return DatabaseError("the transaction or database is read-only", kind="read_only")
        if code in _PERMISSION_CODES:
            return PermissionDenied("the database user lacks the privilege for this operation")
        if code in _SCHEMA_CODES:
            return DatabaseError("the database schema changed (a table, column or routine no longer matches); "
                                 "refresh the schema and try again", kind="schema")
        if code in _SIGNAL_CODES or (getattr(exc, "sqlstate", None) or "").startswith("45"):
            # SIGNAL SQLSTATE '45000' in a routine or trigger: its text was written for
            # callers by whoever wrote the routine, so it is passed on (shortened).
            return DatabaseError(f"the database raised: {msg[:200]}", kind="signal")
        log.debug("unmapped MySQL error %s", code)
        return DatabaseError(f"the database reported an error (MySQL error {code})")

    def _duplicate(self, msg: str) -> DatabaseError:
        m = re.search(r"for key '(.*)'$", msg)
        key = m.group(1) if m else None
        table = None
        if key is not None and key not in self._unique_keys and "." in key:
            table, key = key.split(".", 1)     # MySQL 8 writes 'table.key'
        cols = None
        owners = self._unique_keys.get(key or "", {})
        if table in owners:
            cols = owners[table]
        elif len(owners) == 1:
            cols = next(iter(owners.values()))
        column = ", ".join(cols) if cols else None
        what = f"the same {column}" if column else (f"the same key {key}" if key else "the same unique key")
        return DatabaseError(f"duplicate value: a record with {what} already exists", kind="unique",
                             constraint=key, column=column)

    @staticmethod
    def _constraint_in(msg: str) -> str | None:
        m = re.search(r"CONSTRAINT `((?:[^`]|``)*)`", msg)
        return m.group(1).replace("``", "`") if m else None
