"""SQLite, through the standard library's ``sqlite3``: the embedded default.

Introspection reads the ``pragma_*`` table-valued functions with bound table
names (never an f-string ``PRAGMA table_info(...)``: that is how the reference
SQLite MCP server was injected).  Read-only transactions use ``query_only``;
the statement timeout and cancellation use a progress handler and
``interrupt()``.  SQLite has no stored routines, so the routine tools are not
offered for SQLite services.
"""
from __future__ import annotations

import base64
import binascii
import datetime
import json
import re
import sqlite3
import time
import urllib.parse
from decimal import Decimal, InvalidOperation

from ..errors import (DatabaseError, DatabaseUnavailable, InvalidArguments, QueryCancelled,
                      QueryTimeout)
from ..metadata import Catalog, Column, ForeignKey, Table, derive_relations
from .base import Dialect


class _Connection(sqlite3.Connection):
    """A connection that carries its own deadline and cancel flag for the progress handler."""

    deadline = 0.0
    cancelled = False
    #: ``PRAGMA query_only`` is on (the session default; see ``begin``).
    read_only_session = False


def simple_type(decl: str) -> tuple[str, int | None, int | None, int | None]:
    """Map a declared SQLite type to (DreamFactory type, length, precision, scale)."""
    d = decl.strip().lower()
    m = re.match(r"^([a-z ]+?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?$", d)
    base = m.group(1).strip() if m else d
    a = int(m.group(2)) if m and m.group(2) else None
    b = int(m.group(3)) if m and m.group(3) else None
    if base in ("bool", "boolean"):
        return "boolean", None, None, None
    if base == "bigint":
        return "bigint", None, None, None
    if base in ("smallint", "tinyint", "mediumint"):
        return base, None, None, None
    if "int" in base:
        return "integer", None, None, None
    if base in ("decimal", "numeric", "money"):
        return "decimal", None, a, b
    if base in ("real", "double", "double precision", "float"):
        return ("float" if base == "float" else "double"), None, None, None
    if base == "date":
        return "date", None, None, None
    if base in ("datetime", "timestamp"):
        return "datetime", None, None, None
    if base == "time":
        return "time", None, None, None
    if base in ("blob", "binary", "varbinary", "bytea"):
        return "binary", a, None, None
    if base in ("json", "jsonb"):
        return "json", None, None, None
    if base == "uuid":
        return "uuid", None, None, None
    if base in ("text", "clob", "longtext", "mediumtext"):
        return "text", None, None, None
    if "char" in base or base == "string":
        return "string", a, None, None
    if not base:
        return "string", None, None, None
    return "string", a, None, None


def _default(value):
    """pragma_table_info gives defaults as SQL text; unquote literals, keep expressions."""
    if value is None:
        return None
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1].replace("''", "'")
    if re.fullmatch(r"-?\d+", value):
        return int(value)
    if re.fullmatch(r"-?\d*\.\d+", value):
        return float(value)
    if value.upper() == "NULL":
        return None
    return value


class SqliteDialect(Dialect):
    """SQLite 3.35+ (RETURNING)."""

    name = "sqlite"
    placeholder = "?"
    supports_routines = False
    # decode_value only touches boolean, decimal, datetime/timestamp and json columns.
    plain_types = frozenset({"id", "bigid", "smallid", "mediumid", "integer", "bigint", "smallint",
                             "mediumint", "tinyint", "string", "text", "longtext", "mediumtext", "float",
                             "double", "date", "time", "binary", "uuid"})

    def __init__(self, service):
        super().__init__(service)
        self.path = service.url.split("sqlite:///", 1)[1]

    # ---------------------------------------------------------------- connections
    def connect(self):
        # mode=rw: a missing file is an error, never a new empty database (a typo in the
        # path would otherwise serve an empty catalog forever).  ":memory:" stays as is.
        target, uri = self.path, False
        if self.path != ":memory:":
            target, uri = "file:" + urllib.parse.quote(self.path) + "?mode=rw", True
        try:
            conn = sqlite3.connect(target, timeout=self.service.connect_timeout, uri=uri,
                                   isolation_level=None, check_same_thread=False,
                                   factory=_Connection)
        except sqlite3.Error:
            raise DatabaseUnavailable(f"the SQLite database of service '{self.service.name}' "
                                      f"cannot be opened (missing file or no permission)") from None
        conn.execute("PRAGMA foreign_keys = ON")
        # Read-only by default (as on the server databases): a single SELECT then runs
        # without BEGIN / COMMIT; writes switch it off inside their transaction (begin).
        conn.execute("PRAGMA query_only = 1")
        conn.read_only_session = True
        conn.set_progress_handler(self._progress(conn), 5000)
        return conn

    @staticmethod
    def _progress(conn):
        def check():
            # A non-zero return interrupts the running statement.
            return 1 if conn.cancelled or (conn.deadline and time.monotonic() > conn.deadline) else 0
        return check

    def arm(self, conn) -> None:
        """Start the statement-timeout clock for one call on ``conn``."""
        conn.cancelled = False
        conn.deadline = time.monotonic() + self.service.statement_timeout

    def cancel(self, conn) -> None:
        conn.cancelled = True
        conn.interrupt()

    def is_disconnect(self, exc) -> bool:
        return isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc)

    # ---------------------------------------------------------------- transactions
    autocommit_reads = True

    def session_read_only(self, conn) -> bool:
        """``PRAGMA query_only`` is on (only ``begin``/``_end`` change it: SQLite has no
        routines, and triggers cannot run PRAGMAs)."""
        return bool(getattr(conn, "read_only_session", False))

    def start_read(self, conn) -> None:
        """Arm the statement timeout for an autocommit read (``Database.read``)."""
        self.arm(conn)

    def begin(self, conn, read_only: bool = False) -> None:
        self.arm(conn)
        if not read_only:
            conn.read_only_session = False
            self.execute(conn, "PRAGMA query_only = 0")
        self.execute(conn, "BEGIN")

    def _end(self, conn, sql: str) -> None:
        try:
            if conn.in_transaction:
                self.execute(conn, sql)
        finally:
            if not conn.read_only_session:
                conn.execute("PRAGMA query_only = 1")
                conn.read_only_session = True
            conn.deadline = 0.0

    def commit(self, conn) -> None:
        self._end(conn, "COMMIT")

    def rollback(self, conn) -> None:
        self._end(conn, "ROLLBACK")

    # ---------------------------------------------------------------- values
    def bind_value(self, column, value):
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, (dict, list)):
            return json.dumps(value)
        if isinstance(value, str) and column is not None and column.type == "binary":
            # Binary values travel as base64 (the encoder writes them so), as on the server databases.
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidArguments(f"column '{column.name}' holds binary data: send it as base64 text",
                                       details={"column": column.name}) from None
        return value

    def decoder(self, column):
        """The per-value decoder, specialised for the two common decoded types (large reads
        call it once per cell): decimal columns read as REAL (Decimal of the float's repr,
        quantized to the column's scale) and datetime text; anything else goes through
        ``decode_value``, so the result is always exactly what it returns."""
        generic = super().decoder(column)
        if generic is None or column is None:
            return generic
        if column.type == "decimal":
            scale = column.scale
            quantum = Decimal(1).scaleb(-scale) if scale is not None else None
            zeros = "0" * (scale or 0)

            def decimal_value(value, _float=float, _int=int, _decimal=Decimal, _repr=repr):
                kind = type(value)
                if kind is _float:
                    r = _repr(value)
                    if scale is not None and "e" not in r and "n" not in r and (value or scale <= 6):
                        # Plain repr (|v| >= 1e-4: no exponent, not inf/nan) with no more
                        # decimals than the scale: the quantized value's text is the repr
                        # padded with zeros, exactly what str(Decimal) would print (the JSON
                        # encoder writes decimals as that text), without building one.
                        # (Zero at a scale above 6 prints as "0E-7": left to Decimal.)
                        frac = len(r) - r.index(".") - 1
                        if frac <= scale:
                            return r + zeros[:scale - frac]
                        if scale == 0 and r.endswith(".0"):
                            return r[:-2]
                    d = _decimal(r)
                    if quantum is None:
                        return d
                    try:
                        return d.quantize(quantum)
                    except InvalidOperation:     # more digits than the scale allows: as stored
                        return d
                if kind is _int and scale is not None and (value or scale <= 6) and -10 ** 15 < value < 10 ** 15:
                    # SQLite stores integral numerics as INTEGER: 12 -> "12.00".
                    return f"{value}.{zeros}" if scale else str(value)
                return generic(value)

            if scale is not None and scale <= 6:
                fmt = f"%.{scale}f".__mod__
                # Below this magnitude half a float's ulp is far below half a unit of the
                # last decimal, so '%.<scale>f' of a double lands on its repr's decimals.
                bound = 2.0 ** 52 / 10 ** scale / 16

                def decimal_column(values, _float=float, _list=list, _map=map):
                    # A whole column at C speed: '%.2f' of a (not too large) double whose
                    # text, read back, is the same double had a repr with at most 2
                    # decimals, so it is the repr padded with zeros: what decimal_value
                    # returns for every value.  Anything else (NULLs, text, nan, large
                    # numbers, more decimals) fails a check and goes value by value.
                    if None not in values and values:
                        try:
                            if not -bound < min(values) <= max(values) < bound:
                                raise ValueError
                            texts = _list(_map(fmt, values))
                            if _list(_map(_float, texts)) == _list(values):
                                return texts
                        except (TypeError, ValueError, OverflowError):
                            pass
                    return [None if v is None else decimal_value(v) for v in values]
                decimal_value.column = decimal_column
            return decimal_value
        if column.type in ("datetime", "timestamp"):
            parse = datetime.datetime.fromisoformat

            def datetime_value(value, _str=str):
                if type(value) is _str:
                    try:
                        return parse(value)
                    except ValueError:
                        return value
                return generic(value)

            def datetime_column(values, _list=list, _map=map):
                # The common case (text, all valid, no NULL) parsed by C code alone.
                if None not in values:
                    try:
                        return _list(_map(parse, values))
                    except (TypeError, ValueError):
                        pass
                return [None if v is None else datetime_value(v) for v in values]
            datetime_value.column = datetime_column
            return datetime_value
        return generic

    def decode_value(self, column, value):
        if value is None or column is None:
            return value
        t = column.type
        if t == "boolean" and isinstance(value, int):
            return bool(value)
        if isinstance(value, str) and t in ("datetime", "timestamp"):
            # Stored as text; return a datetime so every database prints the same ISO 8601 form.
            try:
                return datetime.datetime.fromisoformat(value)
            except ValueError:
                return value
        if t == "json" and isinstance(value, str):
            # JSON columns are text in SQLite; return the document, as PostgreSQL and MySQL do.
            try:
                return json.loads(value)
            except ValueError:
                return value
        if t == "decimal" and isinstance(value, (int, float, str)):
            try:
                d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
            except InvalidOperation:
                return value
            if column.scale is not None:
                try:
                    d = d.quantize(Decimal(1).scaleb(-column.scale))
                except InvalidOperation:     # SQLite does not enforce the declared precision
                    pass
            return d
        return value

    # ---------------------------------------------------------------- composition
    def nulls_sql(self, column_sql, direction, nulls):
        return f" NULLS {nulls}"

    # ---------------------------------------------------------------- introspection
    def introspect(self, conn) -> Catalog:
        names, rows = self.query(conn, "SELECT name, type FROM sqlite_master "
                                       "WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
                                       "ORDER BY name")
        tables: dict[str, Table] = {}
        for name, kind in rows:
            tables[name] = self._table(conn, name, kind == "view")
        derive_relations(tables)
        return Catalog(tables=tables)

    def _table(self, conn, name: str, is_view: bool) -> Table:
        _, cols = self.query(conn, "SELECT cid, name, type, \"notnull\", dflt_value, pk, hidden "
                                   "FROM pragma_table_xinfo(?) ORDER BY cid", (name,))
        _, fks = self.query(conn, "SELECT id, seq, \"table\", \"from\", \"to\", on_update, on_delete "
                                  "FROM pragma_foreign_key_list(?) ORDER BY id, seq", (name,))
        _, idx = self.query(conn, "SELECT il.name, il.\"unique\", il.origin, ii.name "
                                  "FROM pragma_index_list(?) AS il, pragma_index_info(il.name) AS ii",
                            (name,))
        pk_cols = [c for c in cols if c[5]]
        single_pk = len(pk_cols) == 1
        index_members: dict[str, list[str]] = {}
        unique_single: set[str] = set()
        indexed: set[str] = set()
        for iname, unique, origin, col in idx:
            index_members.setdefault(iname, []).append(col)
        for iname, unique, origin, col in idx:
            if col is None:
                continue
            indexed.add(col)
            if unique and len(index_members[iname]) == 1:
                unique_single.add(col)
        fk_by_col: dict[str, tuple] = {}
        grouped: dict[int, list[tuple]] = {}
        for fk in fks:
            grouped.setdefault(fk[0], []).append(fk)
        foreign_keys = []
        for parts in grouped.values():
            ref_table = parts[0][2]
            ref_cols = tuple(p[4] for p in parts)
            if any(r is None for r in ref_cols):
                # FK to the referenced table's primary key, columns not spelled out.
                _, rcols = self.query(conn, "SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk",
                                      (ref_table,))
                ref_cols = tuple(r[0] for r in rcols)
            fk = ForeignKey(name=None, columns=tuple(p[3] for p in parts), ref_table=ref_table,
                            ref_columns=ref_cols, on_update=parts[0][5], on_delete=parts[0][6])
            foreign_keys.append(fk)
            if len(parts) == 1:
                fk_by_col[fk.columns[0]] = fk
        columns = []
        for cid, cname, decl, notnull, dflt, pk, hidden in cols:
            if hidden == 1:      # hidden columns of virtual tables
                continue
            stype, length, precision, scale = simple_type(decl or "")
            is_rowid_alias = bool(pk) and single_pk and (decl or "").strip().upper() == "INTEGER"
            if is_rowid_alias:
                stype = "id"
            fk = fk_by_col.get(cname)
            columns.append(Column(
                name=cname, type=stype, db_type=(decl or "").lower(), length=length,
                precision=precision, scale=scale, default=_default(dflt),
                allow_null=not notnull and not pk, auto_increment=is_rowid_alias,
                is_primary_key=bool(pk), is_unique=cname in unique_single or (bool(pk) and single_pk),
                is_index=cname in indexed or bool(pk), is_foreign_key=fk is not None
                or any(cname in f.columns for f in foreign_keys),
                ref_table=fk.ref_table if fk else None, ref_field=fk.ref_columns[0] if fk else None,
                ref_on_update=fk.on_update if fk else None, ref_on_delete=fk.on_delete if fk else None,
                extra={"generated": hidden in (2, 3)}))
        return Table(name=name, columns=columns, is_view=is_view, foreign_keys=foreign_keys)

    # ---------------------------------------------------------------- errors
    def map_error(self, exc):
        if isinstance(exc, (DatabaseError, InvalidArguments)):
            return exc
        msg = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and "interrupted" in msg:
            return QueryTimeout() if not getattr(exc, "_cancelled", False) else QueryCancelled()
        if isinstance(exc, sqlite3.IntegrityError):
            m = re.match(r"(UNIQUE|NOT NULL|CHECK|FOREIGN KEY) constraint failed(?::\s*(.*))?", msg)
            if m:
                kind = {"UNIQUE": "unique", "NOT NULL": "not_null", "CHECK": "check",
                        "FOREIGN KEY": "foreign_key"}[m.group(1)]
                detail = m.group(2) or ""
                column = None
                constraint = None
                if kind in ("unique", "not_null") and detail:
                    column = ", ".join(d.split(".", 1)[-1] for d in detail.split(", "))
                elif kind == "check":
                    constraint = detail or None
                text = {"unique": f"duplicate value violates a unique constraint on {column}",
                        "not_null": f"column {column} may not be null",
                        "check": f"value violates check constraint {constraint or ''}".strip(),
                        "foreign_key": "value violates a foreign key constraint (no such referenced row, "
                                       "or rows still refer to this one)"}[kind]
                return DatabaseError(text, kind=kind, constraint=constraint, column=column)
            return DatabaseError("the record violates a constraint", kind="constraint")
        if isinstance(exc, sqlite3.OperationalError) and "locked" in msg:
            return DatabaseError("the database is locked by another writer; try again", kind="lock")
        if isinstance(exc, sqlite3.OperationalError) and "readonly" in msg.replace(" ", "").lower():
            return DatabaseError("the transaction is read-only", kind="read_only")
        if isinstance(exc, sqlite3.OperationalError) and ("unable to open" in msg or "disk I/O" in msg):
            return DatabaseUnavailable("cannot open the SQLite database file")
        if isinstance(exc, (sqlite3.InterfaceError, sqlite3.ProgrammingError)) and "type" in msg:
            return DatabaseError("a value has a type the database cannot store", kind="type")
        if isinstance(exc, sqlite3.DataError):
            return DatabaseError("a value is out of range or malformed", kind="type")
        return DatabaseError("the database reported an error", kind="error")
