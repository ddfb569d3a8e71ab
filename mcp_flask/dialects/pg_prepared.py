"""PostgreSQL server-side prepared statements (service setting ``prepared_statements``).

What this module owns:

* The tunables ``PREPARED_PER_CONNECTION``, ``PREPARE_AFTER``, ``PREPARE_MEMORY``
  and ``EXECUTE_COMMENT`` (read here at call time: patch them on this module).
* ``PreparingConnection`` (the connection class ``connect`` opens, with a slot
  for its statements) and ``_Statements`` (one connection's LRU of statements).
* ``param_types`` (PREPARE parameter types as psycopg2's literals type them) and
  ``numbered_sql`` (``%s`` placeholders as ``$1..$n``).
* ``PreparedQueries``, a mixin of ``PostgresDialect`` that owns ``query``: a SQL
  text run ``PREPARE_AFTER`` times is prepared once per connection and then run as
  ``EXECUTE``; anything PostgreSQL cannot prepare runs plain (``super().query``,
  the base ``Dialect``'s).  It also PREPAREs, DEALLOCATEs and forgets stale plans.

Imports only ``pg_errors`` (SQLSTATE constants) from the project, plus psycopg2.
The mixin uses the dialect's ``map_error``, ``is_disconnect``, ``read_cursor``, ``_seen``
and ``_unpreparable`` (set by ``PostgresDialect.__init__``).
"""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from decimal import Decimal
from typing import Sequence

import psycopg2.extensions as pgext
import psycopg2.extras

from .pg_errors import FEATURE_NOT_SUPPORTED, INVALID_STATEMENT_NAME, QUERY_CANCELED


#: Most prepared statements one connection keeps; preparing one more DEALLOCATEs the least
#: recently used (PostgreSQL keeps every prepared statement's plan in the backend's memory).
PREPARED_PER_CONNECTION = 128
#: A SQL text is prepared once the service has run it this many times: preparing costs a
#: round trip, which a one-off statement (an IN list of a new length, an ad hoc filter)
#: would never earn back.  Counted per service, so a hot text is prepared on a connection
#: the first time that connection runs it.
PREPARE_AFTER = 2
#: Bound of the per-service memory of counted and of unpreparable SQL texts (emptied when full).
PREPARE_MEMORY = 1024
#: Characters of the statement repeated as a comment after ``EXECUTE`` (pg_stat_activity
#: keeps 1024 bytes of a query by default).
EXECUTE_COMMENT = 1000
#: Most rows an EXECUTE may return for its cursor to be kept for the connection's next one:
#: a kept cursor holds its last result (libpq's copy) until then, so a large one is closed.
REUSE_CURSOR_ROWS = 100


# --------------------------------------------------------------------- prepared statements
class PreparingConnection(pgext.connection):
    """A psycopg2 connection with a slot for its prepared statements (the C type takes no
    attributes).  ``connect`` opens these; a connection of any other class runs plain SQL."""

    __slots__ = ("mcpf_statements",)


class _Statements:
    """One connection's prepared statements: ``(sql, types) -> [name, EXECUTE text, column
    names (once run)]``, least recently used first."""

    __slots__ = ("names", "seq", "stale", "cursor", "json_cursor")

    def __init__(self):
        self.names: OrderedDict = OrderedDict()
        self.seq = 0
        #: Names still prepared in the session but no longer in ``names`` (a plan that went
        #: stale inside a transaction): DEALLOCATEd when the connection is next idle.
        self.stale: list[str] = []
        #: The (client-side) cursor of the last EXECUTE that succeeded with a small result,
        #: kept for the connection's next EXECUTE (see ``PreparedQueries.query``), or None.
        self.cursor = None
        #: The same for reads whose rows go straight to JSON (``Dialect.read_cursor``).
        self.json_cursor = None


#: Parameter types by Python type, as psycopg2's literal types them in plain SQL: text,
#: NULL and JSON become untyped literals (``unknown``: PostgreSQL infers the type from the
#: context, exactly as it does for the literal), the others carry their type.
_FIXED_PARAM_TYPES = {str: "unknown", type(None): "unknown", psycopg2.extras.Json: "unknown",
                      bool: "boolean", bytes: "bytea", bytearray: "bytea", memoryview: "bytea",
                      Decimal: "numeric"}
_INT4_MIN, _INT4_MAX = -2 ** 31, 2 ** 31 - 1
_INT8_MIN, _INT8_MAX = -2 ** 63, 2 ** 63 - 1


def param_types(params: Sequence) -> tuple[str, ...] | None:
    """The PREPARE parameter types that make ``EXECUTE`` answer as the plain SQL would, or
    None when a value's literal type is not known here (the statement then runs plain).

    Declaring the type of a typed literal matters: ``id > 1.5`` compares as numeric, but a
    parameter inferred from ``id`` would be integer and 1.5 would round to 2.
    """
    types = []
    for value in params:
        kind = type(value)
        name = _FIXED_PARAM_TYPES.get(kind)
        if name is None:
            if kind is int:
                # How PostgreSQL types the integer literal psycopg2 writes.
                name = ("int4" if _INT4_MIN <= value <= _INT4_MAX
                        else "int8" if _INT8_MIN <= value <= _INT8_MAX else "numeric")
            elif kind is float:
                # 1.5 and 1e+100 are numeric literals; psycopg2 writes 'NaN'::float for the rest.
                name = "numeric" if math.isfinite(value) else "float8"
            else:
                return None
        types.append(name)
    return tuple(types)


_PERCENT = re.compile(r"%(.?)", re.S)


def numbered_sql(sql: str, count: int) -> str | None:
    """``sql`` with psycopg2's ``%s`` placeholders as ``$1..$n`` (``%%`` stays ``%%``), or None
    when it holds another ``%`` form or not ``count`` placeholders (psycopg2 decides then)."""
    n = 0
    bad = False

    def number(m):
        nonlocal n, bad
        c = m.group(1)
        if c == "%":
            return "%%"
        if c == "s":
            n += 1
            return f"${n}"
        bad = True
        return m.group(0)
    text = _PERCENT.sub(number, sql)
    return None if bad or n != count else text


class PreparedQueries:
    """Mixin of ``PostgresDialect``: ``query`` through prepared statements when they pay."""

    def query(self, conn, sql: str, params: Sequence = (), for_json: bool = False) -> tuple[list[str], list[tuple]]:
        """Run a query; its column names and all rows (``stream`` for large results).
        ``for_json``: the rows go straight into a JSON answer (``Dialect.read_cursor``).

        With the service's ``prepared_statements`` on, a SQL text run ``PREPARE_AFTER``
        times is prepared on the connection when it is idle (``PREPARE mcpf_<n> (types)
        AS ...``) and then run as ``EXECUTE mcpf_<n>(values)``, also inside transactions.
        Otherwise, and whenever preparing does not apply, plain SQL as the base class runs it.
        """
        state = getattr(conn, "mcpf_statements", None)
        if state is None:
            return super().query(conn, sql, params, for_json)
        params = tuple(params)
        types = param_types(params)
        if types is None:
            return super().query(conn, sql, params, for_json)
        key = (sql, types)
        idle = conn.get_transaction_status() == pgext.TRANSACTION_STATUS_IDLE
        if state.stale and idle:
            self._drop_stale(conn, state)
        entry = state.names.get(key)
        if entry is None:
            # Runs inside transactions count too, but PREPARE happens only outside one:
            # a failed PREPARE would abort the caller's transaction.
            if not self._hot(sql) or not idle or sql in self._unpreparable:
                return super().query(conn, sql, params, for_json)
            entry = self._prepare(conn, state, key)
            if entry is None:
                # Plain SQL decides: its answer, or its error exactly as without preparing.
                result = super().query(conn, sql, params, for_json)
                if len(self._unpreparable) >= PREPARE_MEMORY:
                    self._unpreparable.clear()
                self._unpreparable.add(sql)
                return result
        else:
            state.names.move_to_end(key)
        # psycopg2 makes a cursor at a cost of several thousand instructions (each one
        # imports ``datetime`` for its tzinfo factory), so the connection keeps the cursor of
        # its last small EXECUTE.  Nothing of the earlier call can show through: ``execute``
        # replaces the result, description and row count (a failed one clears them), and
        # the cursor is taken off the connection while in use and put back only after a
        # complete, successful fetch.  An error or an interrupted call closes it.
        # Reads bound straight for JSON keep their own cursor (its typecasters differ).
        if for_json:
            cur = state.json_cursor
            state.json_cursor = None
        else:
            cur = state.cursor
            state.cursor = None
        keep = False
        try:
            if cur is None or cur.closed:
                cur = self.read_cursor(conn, for_json)
            cur.execute(entry[1], params)
            description = cur.description
            if description is None:
                keep = True
                return [], []
            # A prepared statement's columns are fixed: a change fails it as a stale plan
            # (and forgets it), so their names are read off the description once.
            names = entry[2]
            if names is None:
                names = entry[2] = tuple([d[0] for d in description])
            rows = cur.fetchall()
            keep = len(rows) <= REUSE_CURSOR_ROWS
            return list(names), rows
        except Exception as exc:  # noqa: BLE001 - every driver error is mapped
            if not self._forget_failed(conn, state, key, entry[0], exc, idle):
                mapped = self.map_error(exc)
                if getattr(exc, "pgcode", None) == FEATURE_NOT_SUPPORTED:
                    # A stale plan inside a transaction: the transaction is lost, but the
                    # statement is forgotten, so the same work again succeeds (Database.read
                    # repeats a read-only transaction once for this).
                    mapped.stale_plan = True
                raise mapped from None
        finally:
            if cur is not None:
                if not keep:
                    cur.close()
                elif for_json:
                    state.json_cursor = cur
                else:
                    state.cursor = cur
        # The statement's plan is gone or stale and nothing else ran in between (no
        # transaction): answer with the plain SQL; the next call prepares it afresh.
        return super().query(conn, sql, params, for_json)

    def _hot(self, sql: str) -> bool:
        """Count one unprepared run of ``sql``; True once it is worth preparing."""
        seen = self._seen
        n = seen.get(sql, 0)
        if n + 1 >= PREPARE_AFTER:
            return True
        if n == 0 and len(seen) >= PREPARE_MEMORY:
            seen.clear()
        seen[sql] = n + 1
        return False

    def _prepare(self, conn, state: _Statements, key: tuple) -> list | None:
        """PREPARE ``key``'s SQL on idle ``conn``; its entry (``_Statements``), or None when
        PostgreSQL (or psycopg2) would not prepare it.  Raises only when the connection is
        gone or the PREPARE was cancelled (a cancel must stop the call)."""
        sql, types = key
        numbered = numbered_sql(sql, len(types))
        if numbered is None:
            return None
        state.seq += 1
        name = f"mcpf_{state.seq}"
        head = f"PREPARE {name} ({', '.join(types)}) AS " if types else f"PREPARE {name} AS "
        cur = None
        try:
            cur = conn.cursor()
            # An empty tuple, so psycopg2 turns the %% of the SQL into % (and $n stays as is).
            cur.execute(head + numbered, ())
        except Exception as exc:  # noqa: BLE001
            if self.is_disconnect(exc) or getattr(exc, "pgcode", None) == QUERY_CANCELED:
                raise self.map_error(exc) from None
            return None
        finally:
            if cur is not None:
                cur.close()
        execute = f"EXECUTE {name}({', '.join(['%s'] * len(types))})" if types else f"EXECUTE {name}"
        # The statement as a line comment, so pg_stat_activity and the server's logs show what
        # runs, not just a name.  One line (a newline would end the comment), at most
        # EXECUTE_COMMENT characters, no cut-off "%" (psycopg2 would take it for a placeholder).
        shown = numbered[:EXECUTE_COMMENT].replace("\n", " ").replace("\r", " ").rstrip("%")
        execute += " -- " + shown
        # [name, EXECUTE text, the result's column names once known]
        state.names[key] = entry = [name, execute, None]
        if len(state.names) > PREPARED_PER_CONNECTION:
            _, (old, _, _) = state.names.popitem(last=False)
            self._deallocate(conn, state, old)
        return entry

    def _forget_failed(self, conn, state: _Statements, key: tuple, name: str, exc: BaseException,
                       idle: bool) -> bool:
        """After a failed EXECUTE: True when the plain SQL should answer instead.

        Only for a plan PostgreSQL will not reuse (a column changed type) or a statement
        the session lost (DEALLOCATE ALL, DISCARD ALL); the entry is forgotten either way.
        Inside a transaction the error stands (the transaction is aborted): the caller
        raises it, marked ``stale_plan`` for a plan that changed type.
        """
        code = getattr(exc, "pgcode", None)
        if code not in (FEATURE_NOT_SUPPORTED, INVALID_STATEMENT_NAME):
            return False
        if state.names.get(key, (None,))[0] == name:
            del state.names[key]
        if code == FEATURE_NOT_SUPPORTED:
            if idle:
                self._deallocate(conn, state, name)
            else:
                state.stale.append(name)
        return idle

    def _deallocate(self, conn, state: _Statements, name: str) -> None:
        """``DEALLOCATE name`` on idle ``conn``, never raising: a connection that broke is
        noticed by the statement that follows; a statement that could not go waits in
        ``state.stale``."""
        exc = _deallocate_now(conn, name)
        if (exc is not None and getattr(exc, "pgcode", None) != INVALID_STATEMENT_NAME
                and not self.is_disconnect(exc)):
            state.stale.append(name)

    def _drop_stale(self, conn, state: _Statements) -> None:
        """DEALLOCATE the statements left behind by failures (one try each: gone already,
        or the connection broke)."""
        stale, state.stale = state.stale, []
        for name in stale:
            _deallocate_now(conn, name)


def _deallocate_now(conn, name: str) -> BaseException | None:
    """Run ``DEALLOCATE name``; the exception it raised, or None."""
    cur = None
    try:
        cur = conn.cursor()
        cur.execute(f"DEALLOCATE {name}", ())
        return None
    except Exception as exc:  # noqa: BLE001 - the caller decides what a failure means
        return exc
    finally:
        if cur is not None:
            cur.close()
