"""MySQL/MariaDB error mapping: MySQL error numbers to the project's errors.

This module owns the error-number sets (``_DISCONNECT_CODES`` and the rest), the
helpers that read a pymysql error (``_errno``, ``_errmsg``) and pick the column a
message names without any of its values (``_last_identifier``, ``_column_in``),
and ``MysqlErrors``, the mixin of ``MysqlDialect`` with ``map_error``,
``_map_mysql``, ``_duplicate`` and ``_constraint_in``.  The mixin reads the
dialect's ``_unique_keys`` and ``_json_checks`` (filled by ``my_catalog``).

Imports only ``errors`` from the project.
"""
from __future__ import annotations

import logging
import re

import pymysql

from ..errors import DatabaseError, DatabaseUnavailable, McpFlaskError, PermissionDenied, QueryTimeout

# The logger of mysql.py, where this code lived: logging set-up that names it still applies.
log = logging.getLogger(__name__.rpartition(".")[0] + ".mysql")

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



class MysqlErrors:
    """``map_error`` and its helpers for ``MysqlDialect`` (reads ``_unique_keys``, ``_json_checks``)."""

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
