"""The dialect contract, and the SQL composition every dialect shares.

All SQL text in the project lives under ``dialects/``.  A dialect supplies
quoting (``quote``: the one function per dialect that turns a name into an
identifier), the placeholder for a bound value, paging, connection set-up,
transaction control, introspection and error mapping; the composition below
(select, count, insert, update, delete) is written once on top of those.

Rules every method keeps:

* identifiers only ever reach SQL through ``quote`` / ``table_sql``, and only
  names that were validated against the introspected catalog;
* values only ever reach SQL as bound parameters (``self.placeholder``);
* no driver exception escapes a dialect: ``map_error`` turns them into the
  project's ``errors`` types.

Connections are used in the driver's autocommit mode; transactions are opened
explicitly with ``begin`` so read-only transactions and isolation are the
dialect's decision, never a leftover session default on a pooled connection.

Imports only ``errors`` and ``metadata`` from the project.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from ..errors import DatabaseError, InvalidArguments
from ..metadata import Catalog, Column, Routine, Table

#: Most identifiers one dialect keeps quoted (``Dialect.quote``); the memo is emptied when full,
#: so names made up by callers (aliases, savepoints) can never grow it without bound.
QUOTE_MEMO = 4096


class Dialect:
    """Base class; one subclass per database.  One instance per configured service."""

    name = "base"
    #: The DB-API marker for one bound value.
    placeholder = "?"
    #: Whether this database has stored procedures and functions.
    supports_routines = False
    #: Column types (DreamFactory simple types) whose driver values ``decode_value`` leaves
    #: unchanged: ``decoder`` returns None for them, so reads skip them cell by cell.
    plain_types: frozenset = frozenset()
    #: Character used to escape % and _ in LIKE patterns (``ESCAPE`` clause).
    like_escape = "\\"

    def __init__(self, service):
        #: The ``config.ServiceConfig`` this dialect serves.
        self.service = service
        #: name -> its quoted form, for names ``_quote`` accepted (see ``quote``).
        self._quoted: dict[str, str] = {}

    # ---------------------------------------------------------------- identifiers
    def quote(self, name: str) -> str:
        """Quote one identifier.  The only place identifiers become SQL text.

        Dialects implement the rule in ``_quote``; this memoizes its answers per dialect
        (a read quotes the same few catalog names on every call).  Only accepted names are
        remembered: a name ``_quote`` refuses (NUL) raises on every call, as it never
        reaches the memo.  Only exact ``str`` names are memoized.
        """
        memo = self._quoted
        quoted = memo.get(name) if name.__class__ is str else None
        if quoted is None:
            quoted = self._quote(name)
            if name.__class__ is str:
                if len(memo) >= QUOTE_MEMO:
                    memo.clear()
                memo[name] = quoted
        return quoted

    def _quote(self, name: str) -> str:
        """The quoting rule (``quote`` memoizes it): double quotes, NUL refused."""
        if "\x00" in name:
            raise InvalidArguments("identifiers may not contain NUL characters")
        return '"' + name.replace('"', '""') + '"'

    def table_sql(self, table: Table) -> str:
        """The quoted (schema-qualified when needed) name of ``table``."""
        if table.schema:
            return f"{self.quote(table.schema)}.{self.quote(table.native_name)}"
        return self.quote(table.native_name)

    def column_list(self, names: Iterable[str], alias: str | None = None) -> str:
        prefix = f"{alias}." if alias else ""
        return ", ".join(prefix + self.quote(n) for n in names)

    # ---------------------------------------------------------------- connections
    def connect(self):
        """Open a new DB-API connection in autocommit mode with the service's timeouts."""
        raise NotImplementedError

    def ping(self, conn) -> None:
        """Raise if ``conn`` is no longer usable (cheap round trip)."""
        cur = conn.cursor()
        try:
            cur.execute("SELECT 1")
            cur.fetchall()
        finally:
            cur.close()

    def is_disconnect(self, exc: BaseException) -> bool:
        """True when ``exc`` means the connection is broken and must be discarded."""
        return False

    def cancel(self, conn) -> None:
        """Stop the statement running on ``conn`` (called from another greenlet)."""
        raise NotImplementedError

    def close(self, conn) -> None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing a broken connection may fail; it is gone either way
            pass

    # ---------------------------------------------------------------- transactions
    #: True when connections are opened read-only by default (the session's default
    #: transaction access mode), so one SELECT in autocommit is already a read-only
    #: transaction at the engine: ``Database.read`` then skips BEGIN and COMMIT.
    autocommit_reads = False

    def session_read_only(self, conn) -> bool | None:
        """True when ``conn`` provably still has its read-only session default (no round
        trip); False when it provably lost it (the connection is then discarded); None
        when the dialect cannot tell.

        ``Database.read`` runs a single statement without a transaction only then;
        otherwise it falls back to an explicit read-only transaction.
        """
        return False

    def start_read(self, conn) -> None:
        """Before an autocommit read (``Database.read``): per-call set-up without a round
        trip (SQLite arms its statement timeout here); nothing on the server databases."""

    def restore_session(self, conn) -> None:
        """Re-assert the connection's session defaults after user code (a routine or a
        trigger) may have changed them; the base has none to restore."""

    def begin(self, conn, read_only: bool = False) -> None:
        """Open a transaction; read-only ones are enforced by the engine."""
        self.execute(conn, "START TRANSACTION READ ONLY" if read_only else "BEGIN")

    def commit(self, conn) -> None:
        self.execute(conn, "COMMIT")

    def rollback(self, conn) -> None:
        self.execute(conn, "ROLLBACK")

    def savepoint(self, conn, name: str) -> None:
        self.execute(conn, f"SAVEPOINT {self.quote(name)}")

    def rollback_to(self, conn, name: str) -> None:
        self.execute(conn, f"ROLLBACK TO SAVEPOINT {self.quote(name)}")

    def release(self, conn, name: str) -> None:
        self.execute(conn, f"RELEASE SAVEPOINT {self.quote(name)}")

    # ---------------------------------------------------------------- execution
    def execute(self, conn, sql: str, params: Sequence = ()) -> int:
        """Run one statement that returns no rows; the affected row count."""
        cur = None
        try:
            # cursor() itself raises on a closed connection: keep it inside the mapping.
            cur = conn.cursor()
            cur.execute(sql, tuple(params))
            return cur.rowcount
        except Exception as exc:  # noqa: BLE001 - every driver error is mapped
            raise self.map_error(exc) from None
        finally:
            if cur is not None:
                cur.close()

    def read_cursor(self, conn, for_json: bool = False):
        """A cursor for a read; ``for_json``: its rows go straight into a JSON answer, so the
        dialect may hand back values in their exact JSON text form (PostgreSQL does)."""
        return conn.cursor()

    def query(self, conn, sql: str, params: Sequence = (), for_json: bool = False) -> tuple[list[str], list[tuple]]:
        """Run a query; its column names and all rows (use ``stream`` for large results).
        ``for_json``: see ``read_cursor``."""
        cur = None
        try:
            cur = self.read_cursor(conn, for_json)
            cur.execute(sql, tuple(params))
            if cur.description is None:
                # A statement that returns no rows: some drivers raise on fetchall() here.
                return [], []
            return [d[0] for d in cur.description], cur.fetchall()
        except Exception as exc:  # noqa: BLE001
            raise self.map_error(exc) from None
        finally:
            if cur is not None:
                cur.close()

    def stream(self, conn, sql: str, params: Sequence = (), batch: int = 500, for_json: bool = False):
        """Yield ``(names, rows_batch)`` pairs without holding the whole result in memory.

        The base version iterates an ordinary cursor; server databases override it
        with a server-side cursor.  The generator closes its cursor when closed early.
        A consumer may ``send()`` a new batch size into the generator; later batches
        use it (every dialect's ``stream`` accepts this).  ``for_json``: see ``read_cursor``.
        """
        cur = None
        try:
            cur = self.read_cursor(conn, for_json)
            cur.execute(sql, tuple(params))
            names = [d[0] for d in cur.description]
            while True:
                rows = cur.fetchmany(batch)
                if not rows:
                    return
                wanted = yield names, rows
                if wanted:
                    batch = max(1, int(wanted))
        except Exception as exc:  # noqa: BLE001
            raise self.map_error(exc) from None
        finally:
            if cur is not None:
                cur.close()

    # ---------------------------------------------------------------- values
    def bind_value(self, column: Column | None, value: Any) -> Any:
        """Convert a JSON value to what the driver should bind for ``column``."""
        return value

    def decode_value(self, column: Column | None, value: Any) -> Any:
        """Convert a driver value read from ``column`` before JSON encoding."""
        return value

    def decoder(self, column: Column | None):
        """A one-argument function decoding non-null values read from ``column``, or None.

        Tools call this once per column per query (never per cell) and skip the
        call entirely when it returns None.  The default wraps ``decode_value``;
        it returns None when the dialect does not override ``decode_value``.
        Dialects list in ``plain_types`` the column types their ``decode_value``
        never changes (or override this), so the hot read path does no per-cell work.
        """
        if type(self).decode_value is Dialect.decode_value:
            return None
        if column is not None and column.type in self.plain_types:
            return None
        decode = self.decode_value
        return lambda value: decode(column, value)

    def like_pattern(self, text: str, prefix: bool, suffix: bool) -> str:
        """``text`` with LIKE wildcards escaped, wrapped in % as asked (contains/starts/ends)."""
        e = self.like_escape
        text = text.replace(e, e + e).replace("%", e + "%").replace("_", e + "_")
        return ("%" if prefix else "") + text + ("%" if suffix else "")

    def like_sql(self, column_sql: str, negate: bool = False) -> str:
        """``col LIKE ? ESCAPE '\\'`` (case rules are the database's own)."""
        e = self.like_escape.replace("'", "''")
        return f"{column_sql} {'NOT ' if negate else ''}LIKE {self.placeholder} ESCAPE '{e}'"

    # ---------------------------------------------------------------- composition
    def paginate(self, limit: int | None, offset: int | None) -> tuple[str, list]:
        """The LIMIT/OFFSET clause with bound values."""
        sql, params = "", []
        if limit is not None:
            sql += f" LIMIT {self.placeholder}"
            params.append(int(limit))
        if offset:
            if limit is None:
                sql += " LIMIT -1"
            sql += f" OFFSET {self.placeholder}"
            params.append(int(offset))
        return sql, params

    def order_sql(self, order: Sequence[tuple[str, str, str | None]], alias: str | None = None) -> str:
        """``ORDER BY`` from validated ``(column, 'ASC'|'DESC', 'FIRST'|'LAST'|None)`` triples."""
        if not order:
            return ""
        parts = []
        prefix = f"{alias}." if alias else ""
        for col, direction, nulls in order:
            part = f"{prefix}{self.quote(col)} {direction}"
            if nulls:
                part += self.nulls_sql(prefix + self.quote(col), direction, nulls)
            parts.append(part)
        return " ORDER BY " + ", ".join(parts)

    def nulls_sql(self, column_sql: str, direction: str, nulls: str) -> str:
        return f" NULLS {nulls}"

    def select_sql(self, table: Table, columns: Sequence[str], where: str = "", where_params=(),
                   order=(), limit: int | None = None, offset: int | None = None,
                   group: Sequence[str] = ()) -> tuple[str, list]:
        """A SELECT of validated ``columns`` (or aggregate expressions already composed)."""
        cols = ", ".join(columns)
        sql = f"SELECT {cols} FROM {self.table_sql(table)}"
        params = list(where_params)
        if where:
            sql += f" WHERE {where}"
        if group:
            sql += " GROUP BY " + ", ".join(self.quote(g) for g in group)
        sql += self.order_sql(order)
        page, page_params = self.paginate(limit, offset)
        return sql + page, params + page_params

    def count_sql(self, table: Table, where: str = "", where_params=()) -> tuple[str, list]:
        sql = f"SELECT COUNT(*) FROM {self.table_sql(table)}"
        if where:
            sql += f" WHERE {where}"
        return sql, list(where_params)

    def count_groups_sql(self, table: Table, group: Sequence[str], where: str = "",
                         where_params=()) -> tuple[str, list]:
        """The number of groups a ``GROUP BY`` of validated ``group`` columns yields."""
        inner = f"SELECT 1 AS one FROM {self.table_sql(table)}"
        if where:
            inner += f" WHERE {where}"
        inner += " GROUP BY " + ", ".join(self.quote(g) for g in group)
        return f"SELECT COUNT(*) FROM ({inner}) grouped", list(where_params)

    def keys_match_sql(self, column_sqls: Sequence[str], count: int) -> str:
        """``count`` key tuples over already-quoted ``column_sqls`` (IN for one column, OR of ANDs else)."""
        if len(column_sqls) == 1:
            return self.in_sql(column_sqls[0], count)
        one = "(" + " AND ".join(f"{c} = {self.placeholder}" for c in column_sqls) + ")"
        return "(" + " OR ".join([one] * count) + ")"

    def related_sql(self, ref: Table, columns: Sequence[str], match: Sequence[str], key_count: int,
                    where: str = "", order=(), limit: int | None = None) -> tuple[str, list]:
        """Rows of ``ref`` whose validated ``match`` columns equal one of ``key_count`` key tuples.

        Fetches belongs_to / has_many related records for a whole page in one query.
        ``where`` is an extra fragment over ``ref``'s columns (a row filter).
        Bind ``where``'s params, then the key values row by row, then the returned params.
        """
        sql = f"SELECT {self.column_list(columns)} FROM {self.table_sql(ref)} WHERE "
        if where:
            sql += f"{where} AND "
        sql += self.keys_match_sql([self.quote(m) for m in match], key_count)
        sql += self.order_sql(order)
        page, page_params = self.paginate(limit, None)
        return sql + page, page_params

    def junction_sql(self, ref: Table, columns: Sequence[str], ref_field: Sequence[str], junction: Table,
                     junction_field: Sequence[str], junction_ref_field: Sequence[str], key_count: int,
                     where: str = "", order=(), limit: int | None = None) -> tuple[str, list]:
        """Many-to-many rows: the junction's key columns, then ``columns`` of ``ref``.

        ``SELECT j.<junction_field...>, r.<columns...> FROM (SELECT ... FROM ref
        [WHERE where]) r JOIN junction j ON r.<ref_field> = j.<junction_ref_field>
        WHERE j.<junction_field> matches one of ``key_count`` key tuples``.  The
        sub-select lets a row filter over ``ref`` use unqualified column names.
        Bind ``where``'s params, then the key values row by row, then the returned params.
        """
        inner_cols = list(dict.fromkeys(list(columns) + list(ref_field)))
        inner = f"SELECT {self.column_list(inner_cols)} FROM {self.table_sql(ref)}"
        if where:
            inner += f" WHERE {where}"
        on = " AND ".join(f"r.{self.quote(a)} = j.{self.quote(b)}" for a, b in zip(ref_field, junction_ref_field))
        sql = (f"SELECT {self.column_list(junction_field, 'j')}, {self.column_list(columns, 'r')} "
               f"FROM ({inner}) r JOIN {self.table_sql(junction)} j ON {on} WHERE "
               + self.keys_match_sql([f"j.{self.quote(c)}" for c in junction_field], key_count))
        sql += self.order_sql(order, alias="r")
        page, page_params = self.paginate(limit, None)
        return sql + page, page_params

    def in_sql(self, column_sql: str, count: int, negate: bool = False) -> str:
        """``col IN (?, ?, ...)`` for ``count`` bound values."""
        marks = ", ".join([self.placeholder] * count)
        return f"{column_sql} {'NOT ' if negate else ''}IN ({marks})"

    def key_where(self, key_columns: Sequence[str], count: int) -> str:
        """WHERE text matching ``count`` keys, single or composite (bind values row by row)."""
        if len(key_columns) == 1:
            return self.in_sql(self.quote(key_columns[0]), count)
        one = "(" + " AND ".join(f"{self.quote(c)} = {self.placeholder}" for c in key_columns) + ")"
        return "(" + " OR ".join([one] * count) + ")"

    def insert(self, conn, table: Table, record: dict) -> dict:
        """Insert one record (validated column names -> bound values); return its key values."""
        cols = list(record)
        marks = ", ".join([self.placeholder] * len(cols))
        if cols:
            sql = f"INSERT INTO {self.table_sql(table)} ({self.column_list(cols)}) VALUES ({marks})"
        else:
            sql = f"INSERT INTO {self.table_sql(table)} DEFAULT VALUES"
        return self._insert_returning_key(conn, table, sql, [record[c] for c in cols], record)

    def _insert_returning_key(self, conn, table: Table, sql: str, params: list, record: dict) -> dict:
        """Run the INSERT and read back the primary key (RETURNING where supported)."""
        pk = table.primary_key
        if not pk:
            self.execute(conn, sql, params)
            return {}
        names, rows = self.query(conn, sql + " RETURNING " + self.column_list(pk), params)
        return dict(zip(names, rows[0])) if rows else {}

    def update_sql(self, table: Table, values: dict, where: str, where_params=()) -> tuple[str, list]:
        sets = ", ".join(f"{self.quote(c)} = {self.placeholder}" for c in values)
        return (f"UPDATE {self.table_sql(table)} SET {sets} WHERE {where}",
                list(values.values()) + list(where_params))

    def delete_sql(self, table: Table, where: str, where_params=()) -> tuple[str, list]:
        return f"DELETE FROM {self.table_sql(table)} WHERE {where}", list(where_params)

    # ---------------------------------------------------------------- introspection
    def introspect(self, conn) -> Catalog:
        """Read tables, views, columns, keys (and routines) into a ``Catalog``."""
        raise NotImplementedError

    # ---------------------------------------------------------------- routines
    def call_routine(self, conn, routine: Routine, args: dict) -> dict:
        """Call a procedure or function with validated, bound ``args`` (name -> value).

        Returns ``{"result_sets": [[row dict, ...], ...], "out": {name: value},
        "value": scalar-or-None}``.
        """
        raise NotImplementedError

    # ---------------------------------------------------------------- errors
    def map_error(self, exc: BaseException) -> Exception:
        """Turn a driver exception into a project error (never re-raise the driver's)."""
        return DatabaseError("the database reported an error")
