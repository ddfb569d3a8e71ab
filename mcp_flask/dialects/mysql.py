"""MySQL 8 and MariaDB 10.x, through pymysql (pure Python, so gevent makes it cooperative).

The MySQL dialect owns everything MySQL-specific: URL parsing, the per-session set-up
(strict SQL mode, UTC session time zone, statement timeout), backtick quoting,
paging and NULLS FIRST/LAST emulation, one-pass introspection from
``information_schema``, value conversion in both directions, server-side
streaming, cancellation with ``KILL QUERY``, stored routine calls and the
mapping of MySQL error numbers to the project's errors.

The dialect's own code lives here: URL parsing, connecting and the session
set-up, quoting, cancellation, execute/query/stream, transactions, paging and
ordering, insert and routine calls.  The rest is split by what it owns, and
mixed into ``MysqlDialect`` or imported:

* ``my_types``: column type mapping, literals and defaults, TIME/datetime helpers;
* ``my_values``: ``MysqlValues`` (``bind_value``, ``decoder``, ``decode_value``);
* ``my_catalog``: ``MysqlCatalog`` (``introspect`` from ``information_schema``);
* ``my_errors``: error-number sets and ``MysqlErrors`` (``map_error``).

None of them imports this module.  ``simple_type``, ``enum_values``,
``unescape_literal``, ``normalise_default``, ``format_time`` and ``to_naive_utc``
are re-exported here for callers that import them from ``dialects.mysql``.

Two facts shape the code:

* pymysql binds values by client-side ``%`` interpolation, and this dialect
  *always* passes a parameter tuple (never ``None``), so every SQL text is
  interpolated exactly once.  A literal ``%`` in SQL text must therefore be
  written ``%%``; ``quote`` does that for identifiers (a column called
  ``100%`` or ``pct%s`` is safe), and no SQL text here contains another ``%``.
* MySQL and MariaDB differ in small ways the code checks by flavour, read once
  per connection from the server version string: the statement-timeout
  variable, how ``COLUMN_DEFAULT`` is spelled, and how JSON columns appear.

Imports only ``errors``, ``metadata``, ``dialects.base`` and the ``dialects.my_*``
modules above from the project.
"""
from __future__ import annotations

import difflib
import math
import re
from urllib.parse import parse_qsl, unquote, urlsplit

import pymysql
import pymysql.cursors
from pymysql.constants import CLIENT

from ..errors import ConfigError, DatabaseUnavailable, InvalidArguments, McpFlaskError
from ..metadata import Column, Routine, Table
from .base import Dialect
from .my_catalog import MysqlCatalog
from .my_errors import _DISCONNECT_CODES, MysqlErrors, _errno
from .my_types import _description_column, _param_column
# Re-exported: tests and callers import the type helpers from this module, as before the split.
from .my_types import (enum_values, format_time, normalise_default, simple_type, to_naive_utc,  # noqa: F401
                       unescape_literal)
from .my_values import MysqlValues

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


class _Connection(pymysql.connections.Connection):
    """A pymysql connection that remembers which server flavour it talks to."""

    is_mariadb = False
    server_version: tuple = ()
    #: The session's default access mode is known to be read-only (dialect.session_read_only).
    read_only_session = False


def _version_tuple(version: str) -> tuple:
    # MariaDB advertises "5.5.5-10.11.6-MariaDB" to old clients: skip that prefix.
    version = re.sub(r"^5\.5\.5-", "", version)
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    return tuple(int(p) for p in m.groups()) if m else ()


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

class MysqlDialect(MysqlErrors, MysqlCatalog, MysqlValues, Dialect):
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
    def _quote(self, name: str) -> str:
        """`` `name` `` with embedded backticks doubled, and ``%`` doubled for pymysql's interpolation
        (``Dialect.quote`` memoizes this)."""
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

    def query(self, conn, sql: str, params=(), for_json: bool = False):
        """Run a query; its column names and all rows (buffered; use ``stream`` for large results).
        ``for_json`` changes nothing here (pymysql's values are what the encoder wants)."""
        cur = conn.cursor()
        try:
            cur.execute(sql, tuple(params))
            names = [d[0] for d in cur.description] if cur.description else []
            return names, list(cur.fetchall())
        except Exception as exc:  # noqa: BLE001
            raise self._fail(conn, exc) from None
        finally:
            self._close_cursor(conn, cur)

    def stream(self, conn, sql: str, params=(), batch: int = 500, for_json: bool = False):
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
