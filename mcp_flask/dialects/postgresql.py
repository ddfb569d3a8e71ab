"""PostgreSQL through psycopg2: connections, values, errors, introspection and routines.

What this module owns (``PostgresDialect`` itself):

* ``connect``: one libpq connection per call, in autocommit mode, with the
  service's statement timeout (``-c statement_timeout``), an idle-in-transaction
  timeout, TCP keepalives and ``application_name``.  When the service names a
  ``schema``, the connection's ``search_path`` is set to it (then the extra
  schemas, then ``public``), the way Laravel/DreamFactory configure it.
* Session and transaction state (``transaction_status``, ``reset``, ``begin``,
  ``commit``, ``session_read_only``), ``quote``, ``paginate`` and ``like_sql``.
* Values: JSON/JSONB come back as Python objects, ``numeric`` as ``Decimal``,
  ``uuid`` as ``UUID``, ``bytea`` as ``bytes``, intervals as ``timedelta``; JSON
  values are bound with ``Json``, arrays as array literals (so enum[] and uuid[]
  columns accept them), base64 text as ``bytea`` (``bind_value``,
  ``decode_value``; the conversions live in ``pg_types``).
* Streaming through a server-side cursor (``DECLARE ... CURSOR`` + ``FETCH``).

The rest of the dialect lives in mixins and helpers of its own modules:

* ``pg_types``: catalog types -> DreamFactory types, defaults, array literals,
  ranges, bytea, the binding of one JSON value.
* ``pg_catalog`` (``CatalogReader``): introspection over ``pg_catalog`` in seven
  queries whatever the number of tables (tables, columns, constraints, indexes,
  routines, routine types, plus the default schema), inside one REPEATABLE READ
  READ ONLY snapshot.  Tables of the default schema are addressed by bare name,
  tables of ``extra_schemas`` as ``schema.table``.
* ``pg_prepared`` (``PreparedQueries``): prepared statements (service setting
  ``prepared_statements``, on by default): ``query`` runs a SQL text the service
  has seen ``PREPARE_AFTER`` times as ``EXECUTE`` of a statement prepared once per
  connection (LRU of ``PREPARED_PER_CONNECTION``), which spares PostgreSQL the
  parse and analysis of every call (and, once PostgreSQL settles on a generic
  plan, its planning: for that ``paginate`` writes the LIMIT as a literal).
  Answers and errors are those of the plain SQL: parameter types are declared as
  psycopg2's literals type them, and anything PostgreSQL cannot prepare simply
  runs plain.  The EXECUTE carries the statement as a comment, for
  pg_stat_activity and the server logs.
* ``pg_routines`` (``RoutineCalls``): stored procedures (``CALL``) and functions
  (``SELECT``), in named notation with every argument bound and cast to the
  declared parameter type.
* ``pg_errors`` (``ErrorMapping``): ``map_error`` by SQLSTATE and
  ``is_disconnect``; no driver exception leaves the dialect and no message
  carries SQL text, bound values or the password.

psycopg2 interpolates parameters client-side with Python's ``%`` operator, and
the base class always passes a (possibly empty) tuple, so every SQL text that
reaches ``cursor.execute`` here is interpolated: a literal ``%`` must be written
``%%``.  ``quote`` therefore doubles ``%`` inside identifiers, and every
``execute`` in this module and in the ``pg_*`` modules passes a tuple.

Imports ``errors``, ``metadata``, ``base`` and the ``pg_*`` modules above from the
project (plus the driver, and gevent lazily when psycogreen is active); none of
them imports this module.  ``array_literal``, ``literal_default``, ``parse_array``,
``param_types``, ``numbered_sql`` and ``PreparingConnection`` stay importable from
here; the tunable constants (``PREPARE_AFTER`` ...) are read in their own module.
"""
from __future__ import annotations

import json
import math
import re
import uuid
from typing import Any, Sequence

import psycopg2
import psycopg2.extensions as pgext
import psycopg2.extras

from ..errors import DatabaseError, DatabaseUnavailable
from ..metadata import Column, Routine
from .base import Dialect
from .pg_catalog import CatalogReader
from .pg_errors import ErrorMapping, _first_line
from .pg_json_values import json_cursor
from .pg_prepared import (PreparedQueries, PreparingConnection, _Statements,  # noqa: F401
                          numbered_sql, param_types)
from .pg_routines import RoutineCalls
from .pg_types import (_bind_typed, _range_text, array_literal, literal_default,  # noqa: F401
                       parse_array)


#: libpq transaction status codes -> the names ``transaction_status`` reports.
_STATUS_NAMES = {pgext.TRANSACTION_STATUS_IDLE: "idle", pgext.TRANSACTION_STATUS_ACTIVE: "active",
                 pgext.TRANSACTION_STATUS_INTRANS: "in_transaction",
                 pgext.TRANSACTION_STATUS_INERROR: "in_error"}
_KNOWN_STATUS = frozenset(_STATUS_NAMES)
_IN_TRANSACTION = frozenset({pgext.TRANSACTION_STATUS_INTRANS, pgext.TRANSACTION_STATUS_INERROR})


# --------------------------------------------------------------------- the dialect
class PostgresDialect(PreparedQueries, CatalogReader, RoutineCalls, ErrorMapping, Dialect):
    """PostgreSQL 11+ (OUT parameters in ``CALL`` need 14+) through psycopg2.

    The mixins come before ``Dialect``: their ``query``, ``introspect``,
    ``call_routine``, ``map_error`` and ``is_disconnect`` override the base class's,
    and ``PreparedQueries.query`` falls back on ``Dialect.query`` through ``super()``.
    """

    name = "postgresql"
    placeholder = "%s"
    supports_routines = True
    #: Rows per FETCH when the caller does not say (callers may resize batches: see ``stream``).
    stream_batch = 2000
    #: Most rows ``stream`` turns into Python tuples (and yields) at a time.
    stream_slice = 1000
    #: Column types whose values ``decode_value`` never changes, so reads skip the per-cell
    #: call (Dialect.decoder).  It only rewrites bytea memoryviews, ranges, arrays and lists
    #: of those: none of these types' values (ints, Decimal, float, bool, str, date/time,
    #: UUID).  Not "string" (enums, ranges and composites map to it), "array", "binary", JSON.
    plain_types = frozenset({"smallint", "integer", "bigint", "smallid", "id", "bigid", "decimal", "money",
                             "float", "double", "boolean", "text", "date", "time", "timetz", "datetime",
                             "datetimetz", "uuid"})
    application_name = "mcp-flask"
    #: Lower bound of the idle-in-transaction timeout: it only catches leaked or
    #: abandoned transactions (a stream whose reader stalled), never a live statement.
    idle_in_transaction_floor = 60.0

    def __init__(self, service):
        super().__init__(service)
        self._dsn: dict | None = None
        #: (schema, constraint or index name) -> (table name, column names); read by map_error.
        self._constraint_columns: dict[tuple[str | None, str], tuple[str, tuple[str, ...]]] = {}
        self.prepared_statements = bool(getattr(service, "prepared_statements", True))
        #: SQL text -> times run unprepared (up to PREPARE_AFTER), over all connections.
        self._seen: dict[str, int] = {}
        #: SQL texts PostgreSQL refused to PREPARE although they run plain (an untyped
        #: parameter, "could not determine data type of parameter $1"): always run plain.
        self._unpreparable: set[str] = set()

    # ---------------------------------------------------------------- identifiers
    def _quote(self, name: str) -> str:
        """Double-quote ``name``; ``%`` is doubled because psycopg2 interpolates with ``%``
        (``Dialect.quote`` memoizes this)."""
        return super()._quote(name).replace("%", "%%")

    def routine_sql(self, routine: Routine) -> str:
        """The quoted, schema-qualified name of a routine."""
        if routine.schema:
            return f"{self.quote(routine.schema)}.{self.quote(routine.native_name)}"
        return self.quote(routine.native_name)

    # ---------------------------------------------------------------- connections
    def connect_params(self) -> dict:
        """libpq keywords for this service: the URL's own, then ours (never logged: has the password)."""
        if self._dsn is None:
            self._dsn = self._build_params()
        return dict(self._dsn)

    def _build_params(self) -> dict:
        url = re.sub(r"^(postgres(?:ql)?)\+\w+:", r"\1:", self.service.url)
        try:
            params = pgext.parse_dsn(url)
        except psycopg2.Error:
            raise DatabaseUnavailable("the service URL is not a valid PostgreSQL URL") from None
        # libpq counts whole seconds; anything below one would mean "wait forever".
        params["connect_timeout"] = str(max(1, math.ceil(self.service.connect_timeout)))
        params.setdefault("application_name", self.application_name)
        for key, value in (("keepalives", "1"), ("keepalives_idle", "30"),
                           ("keepalives_interval", "10"), ("keepalives_count", "3")):
            params.setdefault(key, value)
        timeout_ms = max(1, int(self.service.statement_timeout * 1000))
        idle_ms = int(max(self.idle_in_transaction_floor, 2 * self.service.statement_timeout) * 1000)
        # default_transaction_read_only: a statement outside BEGIN READ WRITE cannot write,
        # so a single SELECT needs no BEGIN READ ONLY / COMMIT round trips (Database.read).
        options = [f"-c statement_timeout={timeout_ms}",
                   f"-c idle_in_transaction_session_timeout={idle_ms}",
                   "-c default_transaction_read_only=on"]
        if self.service.schema:
            path = [self.service.schema] + [s for s in self.service.extra_schemas
                                            if s != self.service.schema]
            if "public" not in path:
                path.append("public")
            value = ",".join('"' + s.replace('"', '""') + '"' for s in path)
            # libpq splits ``options`` at unescaped spaces and unescapes backslashes.
            value = value.replace("\\", "\\\\").replace(" ", "\\ ")
            options.append(f"-c search_path={value}")
        # Ours come last so they win over the same setting in the URL.
        params["options"] = " ".join(([params["options"]] if params.get("options") else []) + options)
        return params

    def where(self) -> str:
        """The service's address for messages and logs: no password, ever."""
        try:
            p = self.connect_params()
        except DatabaseUnavailable:
            return "(invalid URL)"
        user = p.get("user", "")
        host = p.get("host") or "localhost"
        port = p.get("port") or "5432"
        return f"postgresql://{user + '@' if user else ''}{host}:{port}/{p.get('dbname', '')}"

    def connect(self):
        """Open an autocommit connection with the service's timeouts and our typecasters.

        Raises ``DatabaseUnavailable`` (its message names the server, never the password).
        """
        params = self.connect_params()
        try:
            conn = self._open(params)
        except psycopg2.Error as exc:
            reason = _first_line(str(exc)) or "connection failed"
            if params.get("password"):
                reason = reason.replace(params["password"], "***")
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {self.where()}: {reason}") from None
        try:
            conn.autocommit = True
            # Per-connection typecasters (no round trip): json/jsonb -> Python objects
            # whatever the process-wide registrations are, uuid -> uuid.UUID.
            psycopg2.extras.register_default_json(conn, loads=json.loads)
            psycopg2.extras.register_default_jsonb(conn, loads=json.loads)
            psycopg2.extras.register_uuid(conn_or_curs=conn)
            if self.prepared_statements and isinstance(conn, PreparingConnection):
                conn.mcpf_statements = _Statements()
        except Exception:
            self.close(conn)
            raise DatabaseUnavailable(f"cannot set up the connection to {self.where()}") from None
        return conn

    def _open(self, params: dict):
        params = dict(params, connection_factory=PreparingConnection)
        if pgext.get_wait_callback() is None:
            return psycopg2.connect(**params)
        # With psycogreen, libpq connects in non-blocking mode, where it ignores
        # connect_timeout (it is the caller's job with PQconnectPoll): enforce it here.
        try:
            import gevent
        except ImportError:                 # a wait callback from some other green library
            return psycopg2.connect(**params)
        timer = gevent.Timeout(self.service.connect_timeout)
        timer.start()
        try:
            return psycopg2.connect(**params)
        except gevent.Timeout as t:
            if t is not timer:
                raise
            raise psycopg2.OperationalError("timeout expired") from None
        finally:
            timer.close()

    def close(self, conn) -> None:
        """Close ``conn``; its kept cursors (``pg_prepared``) are dropped first, so the pairs'
        reference cycles do not outlive the connection until a garbage collection."""
        state = getattr(conn, "mcpf_statements", None)
        if state is not None:
            state.cursor = state.json_cursor = None
        super().close(conn)

    def ping(self, conn) -> None:
        """Raise ``DatabaseUnavailable``/``DatabaseError`` unless ``conn`` answers ``SELECT 1``."""
        if conn.closed:
            raise DatabaseUnavailable("the database connection is closed")
        self.query(conn, "SELECT 1")

    def cancel(self, conn) -> bool:
        """Ask the server to stop the statement running on ``conn`` (thread/greenlet safe).

        Sends a PostgreSQL cancel request on a separate socket; the running
        statement then fails with SQLSTATE 57014 (mapped to ``QueryTimeout``).
        Best effort: returns False when the request could not be sent (the
        statement timeout still bounds the statement).
        """
        try:
            conn.cancel()
            return True
        except Exception:  # noqa: BLE001 - closed connection or server unreachable
            return False

    def backend_pid(self, conn) -> int | None:
        """The server process id serving ``conn`` (for logs and pg_stat_activity), no round trip."""
        try:
            return conn.info.backend_pid or None
        except Exception:  # noqa: BLE001
            return None

    def server_version(self, conn) -> int:
        """The server version as an integer (150004 for 15.4)."""
        return conn.server_version

    def transaction_status(self, conn) -> str:
        """``idle``, ``active``, ``in_transaction``, ``in_error`` or ``unknown`` (broken/closed)."""
        if conn.closed:
            return "unknown"
        return _STATUS_NAMES.get(conn.get_transaction_status(), "unknown")

    # ``in_transaction`` and ``is_broken`` run on every pooled read (Database.read): they ask
    # libpq directly (``get_transaction_status`` is one C call; ``conn.info`` builds a new
    # object per access) and compare codes rather than names.
    def in_transaction(self, conn) -> bool:
        """True when ``conn`` is inside a transaction block (open or failed)."""
        return not conn.closed and conn.get_transaction_status() in _IN_TRANSACTION

    def is_broken(self, conn) -> bool:
        """True when ``conn`` is closed or its state is unknown: discard it, do not reuse it."""
        return bool(conn.closed) or conn.get_transaction_status() not in _KNOWN_STATUS

    def reset(self, conn) -> None:
        """Make a connection fit to go back to the pool: roll back any open transaction.

        Raises ``DatabaseUnavailable`` when the connection is broken.
        """
        status = self.transaction_status(conn)
        if status == "unknown":
            raise DatabaseUnavailable("the database connection is broken")
        if status in ("in_transaction", "in_error"):
            self.execute(conn, "ROLLBACK")

    # ---------------------------------------------------------------- transactions
    autocommit_reads = True

    def session_read_only(self, conn) -> bool | None:
        """The session default is still ``default_transaction_read_only = on`` (None: cannot tell).

        PostgreSQL >= 14 reports this setting to the client whenever it changes
        (ParameterStatus), so libpq knows it without a round trip: a routine that ran
        ``set_config('default_transaction_read_only', 'off', false)`` is noticed here
        and the connection is discarded.  Older servers report nothing (None): reads
        then keep their explicit read-only transaction.
        """
        try:
            status = conn.get_parameter_status("default_transaction_read_only")
        except Exception:  # noqa: BLE001 - a closed connection
            return False
        return None if status is None else status == "on"

    def begin(self, conn, read_only: bool = False) -> None:
        """``BEGIN READ ONLY`` or ``BEGIN READ WRITE`` (the session default is read-only;
        writes in a read-only transaction fail with SQLSTATE 25006)."""
        self.execute(conn, "BEGIN READ ONLY" if read_only else "BEGIN READ WRITE")

    def commit(self, conn) -> None:
        """``COMMIT``; raises if the server rolled back instead (the transaction had failed)."""
        cur = None
        try:
            cur = conn.cursor()
            cur.execute("COMMIT", ())
            tag = cur.statusmessage
        except Exception as exc:  # noqa: BLE001
            raise self.map_error(exc) from None
        finally:
            if cur is not None:
                cur.close()
        if tag == "ROLLBACK":
            # PostgreSQL answers COMMIT of a failed transaction with a silent ROLLBACK.
            raise DatabaseError("the transaction was rolled back because a statement in it failed",
                                kind="rolled_back")

    # ---------------------------------------------------------------- composition
    def paginate(self, limit: int | None, offset: int | None) -> tuple[str, list]:
        """``LIMIT``/``OFFSET`` with bound values (PostgreSQL has no ``LIMIT -1``).

        With prepared statements on, the LIMIT is written as an integer literal (``int()``
        of it, so nothing but digits reaches the SQL): with ``LIMIT $n`` the planner must
        guess the row count of a generic plan (a tenth of the table), so PostgreSQL would
        plan every EXECUTE afresh and preparing would save next to nothing.  OFFSET stays
        bound: its values are many, and a page beyond the first is rarely the hot path.
        """
        sql, params = "", []
        if limit is not None:
            if self.prepared_statements:
                sql += f" LIMIT {int(limit):d}"
            else:
                sql += " LIMIT %s"
                params.append(int(limit))
        if offset:
            sql += " OFFSET %s"
            params.append(int(offset))
        return sql, params

    def like_sql(self, column_sql: str, negate: bool = False) -> str:
        """``col LIKE %s ESCAPE E'\\\\'``: an escape-string literal means one backslash
        whatever ``standard_conforming_strings`` is (``'\\'`` would not parse with it off)."""
        esc = self.like_escape.replace("\\", "\\\\").replace("'", "''")
        return f"{column_sql} {'NOT ' if negate else ''}LIKE %s ESCAPE E'{esc}'"

    # ---------------------------------------------------------------- execution
    def read_cursor(self, conn, for_json: bool = False):
        """A cursor; for rows bound straight for JSON, one that reads NUMERIC, timestamps,
        dates and times as their exact JSON text (``pg_json_values``)."""
        return json_cursor(conn) if for_json else conn.cursor()

    def stream(self, conn, sql: str, params: Sequence = (), batch: int | None = None,
               for_json: bool = False):
        """Yield ``(names, rows)`` batches from a server-side cursor: memory stays flat.

        A ``DECLARE ... NO SCROLL CURSOR`` read with ``FETCH FORWARD batch``.
        Cursors live in a transaction: inside the caller's transaction the cursor
        is closed at the end and the transaction left open; on an idle connection
        the stream opens its own transaction and ends it (COMMIT, or ROLLBACK
        after an error).  Closing the generator early does the same cleanup, so
        the connection goes back to the pool as it came.  (psycopg2's named
        cursors are not used: they refuse autocommit connections, and switching
        autocommit off would hide a caller's own ``BEGIN`` from psycopg2.)

        Each FETCH of ``batch`` rows is a round trip, and is yielded in slices of
        at most ``stream_slice`` rows.  A consumer that learns how wide the rows are
        may ``send()`` a new batch size into the generator (``record_reads`` sizes
        batches by their encoded bytes), which the next FETCH uses.  ``for_json``: the
        rows go straight into a JSON answer (``read_cursor``).
        """
        batch = int(batch or self.stream_batch)
        cursor_name = self.quote("mcpf_" + uuid.uuid4().hex)
        cur = None
        own_tx = declared = failed = False
        try:
            cur = self.read_cursor(conn, for_json)
            if conn.get_transaction_status() == pgext.TRANSACTION_STATUS_IDLE:
                cur.execute("BEGIN", ())
                own_tx = True
            cur.execute(f"DECLARE {cursor_name} NO SCROLL CURSOR FOR {sql}", tuple(params))
            declared = True
            names = None
            while True:
                asked, got = batch, 0
                cur.execute(f"FETCH FORWARD {asked} FROM {cursor_name}", ())
                if names is None:
                    names = [d[0] for d in cur.description]
                # The FETCH result sits in libpq as compact text; it becomes Python tuples
                # at most stream_slice rows at a time.
                while True:
                    rows = cur.fetchmany(self.stream_slice)
                    if not rows:
                        break
                    got += len(rows)
                    wanted = yield names, rows
                    if wanted:
                        batch = max(1, int(wanted))
                if got < asked:
                    return      # the cursor is exhausted: no empty FETCH round trip
        except GeneratorExit:
            raise
        except Exception as exc:  # noqa: BLE001 - every driver error is mapped
            failed = True
            raise self.map_error(exc) from None
        finally:
            self._end_stream(conn, cur, cursor_name, own_tx, declared, failed)

    @staticmethod
    def _end_stream(conn, cur, cursor_name: str, own_tx: bool, declared: bool, failed: bool) -> None:
        """Close the stream's cursor (and its own transaction) without raising."""
        try:
            if conn.closed or cur is None:
                return
            status = conn.get_transaction_status()
            if own_tx:
                if status == pgext.TRANSACTION_STATUS_INTRANS and not failed:
                    cur.execute("COMMIT", ())      # also closes the cursor
                elif status in (pgext.TRANSACTION_STATUS_INTRANS, pgext.TRANSACTION_STATUS_INERROR):
                    cur.execute("ROLLBACK", ())
            elif declared and status == pgext.TRANSACTION_STATUS_INTRANS:
                cur.execute(f"CLOSE {cursor_name}", ())
        except Exception:  # noqa: BLE001 - a broken connection is the pool's to discard
            pass
        finally:
            if cur is not None:
                try:
                    cur.close()
                except Exception:  # noqa: BLE001
                    pass

    # ---------------------------------------------------------------- values
    def bind_value(self, column: Column | None, value: Any) -> Any:
        """JSON value -> what psycopg2 should bind for ``column``.

        json/jsonb: ``Json(value)`` (text is taken as JSON text); arrays: an array
        literal; binary: base64 text -> bytes (``InvalidArguments`` if not base64).
        Everything else is bound as-is and converted by PostgreSQL's own input
        functions (dates, uuids, enums, intervals, numerics as text or numbers).
        """
        if column is None:
            if isinstance(value, dict):
                return psycopg2.extras.Json(value)
            return value
        return _bind_typed(column.type, value, f"column '{column.name}'",
                           column.extra.get("element_type"))

    def decoder(self, column: Column | None):
        """None (no per-cell call) for ``plain_types`` and for plain character columns
        (``string`` also covers enums, ranges and composites, which are decoded)."""
        if column is not None and column.type == "string":
            db_type = (column.db_type or "").lower()
            if db_type == "name" or db_type == "character" or db_type.startswith(("character varying",
                                                                                  "character(")):
                return None
        return super().decoder(column)

    def decode_value(self, column: Column | None, value: Any) -> Any:
        """Driver value -> Python value for the JSON encoder.

        Leaves Decimal, datetimes, timedelta, UUID and JSON objects alone; bytea
        memoryviews become bytes, ranges their text form, and arrays of types
        psycopg2 does not know (enum[] ...) are parsed into lists.
        """
        if value is None:
            return None
        if isinstance(value, memoryview):
            return value.tobytes()
        if isinstance(value, str):
            if column is not None and column.type == "array":
                return parse_array(value)
            return value
        if isinstance(value, list):
            if any(isinstance(v, (memoryview, list)) for v in value):
                return [self.decode_value(None, v) for v in value]
            return value
        if isinstance(value, psycopg2.extras.Range):
            return _range_text(value)
        return value
