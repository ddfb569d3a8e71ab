"""PostgreSQL errors: SQLSTATE tables and the mapping of driver exceptions to project errors.

What this module owns:

* The SQLSTATEs the dialect treats specially (also read by ``pg_prepared``) and
  the libpq words that mean a connection is gone.
* ``ErrorMapping``, a mixin of ``PostgresDialect``: ``map_error`` (by SQLSTATE;
  no driver exception leaves the dialect and no message carries SQL text, bound
  values or the password), its ``_constraint_error``, and ``is_disconnect``.
  ``_constraint_error`` reads the dialect's ``_constraint_columns``, which
  ``pg_catalog`` fills at introspection.
* ``_strip_values`` and ``_first_line``, which keep values out of messages.

Imports only ``errors`` from the project (plus psycopg2).
"""
from __future__ import annotations

import re

import psycopg2

from ..errors import DatabaseError, DatabaseUnavailable, McpFlaskError, QueryTimeout


# SQLSTATEs (PostgreSQL appendix A) this module treats specially.
UNIQUE_VIOLATION = "23505"
FOREIGN_KEY_VIOLATION = "23503"
RESTRICT_VIOLATION = "23001"
NOT_NULL_VIOLATION = "23502"
CHECK_VIOLATION = "23514"
EXCLUSION_VIOLATION = "23P01"
QUERY_CANCELED = "57014"
READ_ONLY_TRANSACTION = "25006"
INSUFFICIENT_PRIVILEGE = "42501"
SYNTAX_ERROR = "42601"
LOCK_NOT_AVAILABLE = "55P03"
LOCK_CODES = ("40001", "40P01", LOCK_NOT_AVAILABLE)
#: admin_shutdown, crash_shutdown, cannot_connect_now, too_many_connections, idle session timeouts.
GONE_CODES = ("57P01", "57P02", "57P03", "53300", "25P03", "57P05")
SCHEMA_CODES = ("42P01", "42703", "42704", "42883", "3F000")
TYPE_CODES_42 = ("42804", "42846", "42P18", "42725")
#: Classes whose primary message names objects only (values live in the DETAIL line).
SAFE_MESSAGE_CLASSES = ("23", "42", "0A", "55", "2B", "44", "P0", "2D", "39", "38")
#: EXECUTE of a prepared statement whose plan must be redone: "cached plan must not change
#: result type" (a column's type changed) is feature_not_supported; "prepared statement ...
#: does not exist" (something ran DEALLOCATE ALL / DISCARD ALL) is invalid_sql_statement_name.
FEATURE_NOT_SUPPORTED = "0A000"
INVALID_STATEMENT_NAME = "26000"

#: Words in libpq/psycopg2 messages that mean the connection itself is gone (no SQLSTATE).
_GONE_WORDS = ("server closed the connection", "connection already closed", "ssl syscall",
               "could not receive data", "could not send data", "no connection to the server",
               "terminating connection", "connection has been closed", "eof detected",
               "lost synchronization")


def _strip_values(message: str) -> str:
    """Drop the double-quoted parts of a data-error message: in class 22 they are values."""
    message = re.sub(r'\s*:\s*"(?:[^"]|"")*"', "", message)
    return re.sub(r'\s*"(?:[^"]|"")*"', "", message).strip()


def _first_line(text: str, limit: int = 300) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line[:limit]


class ErrorMapping:
    """Mixin of ``PostgresDialect``: driver exceptions -> project errors.

    Uses the dialect's ``_constraint_columns`` ((schema, constraint) -> (table, columns)).
    """

    def is_disconnect(self, exc: BaseException) -> bool:
        """True when ``exc`` (a psycopg2 error, or one ``map_error`` made) means the connection is gone."""
        if isinstance(exc, DatabaseUnavailable):
            return True
        if not isinstance(exc, psycopg2.Error):
            return False
        if isinstance(exc, psycopg2.InterfaceError):
            return True
        cur = getattr(exc, "cursor", None)
        if cur is not None and getattr(cur, "connection", None) is not None and cur.connection.closed:
            return True
        code = exc.pgcode
        if code:
            return code.startswith("08") or code in GONE_CODES
        if isinstance(exc, psycopg2.OperationalError):
            # libpq-level failures carry no SQLSTATE: the socket or protocol is gone.
            return True
        msg = str(exc).lower()
        return any(w in msg for w in _GONE_WORDS)

    def map_error(self, exc: BaseException) -> Exception:
        """A project error for any exception from the driver (SQLSTATE-driven).

        Messages carry names (table, column, constraint, type) but never SQL text,
        bound values, DETAIL lines (they quote values) or connection strings.
        """
        if isinstance(exc, McpFlaskError):
            return exc
        if not isinstance(exc, psycopg2.Error):
            return DatabaseError("the database driver failed to run the statement")
        code = exc.pgcode or ""
        diag = exc.diag
        primary = _first_line(diag.message_primary or "") if code else ""
        details = {"sqlstate": code} if code else None

        if code == QUERY_CANCELED:
            return QueryTimeout()
        if self.is_disconnect(exc) or code.startswith("08") or code in GONE_CODES:
            return DatabaseUnavailable("the connection to the database was lost; try again")
        if code.startswith("23") or code == EXCLUSION_VIOLATION:
            return self._constraint_error(code, diag, primary, details)
        if code.startswith("22"):
            return DatabaseError(_strip_values(primary) or "a value is not valid for its column type",
                                 kind="type", column=diag.column_name, details=details)
        if code in LOCK_CODES:
            what = {"40001": "the transaction could not be serialised with a concurrent one",
                    "40P01": "a deadlock with another transaction was detected",
                    LOCK_NOT_AVAILABLE: "a row or table is locked by another transaction"}[code]
            return DatabaseError(what + "; try again", kind="lock", details=details)
        if code == READ_ONLY_TRANSACTION:
            return DatabaseError("the transaction is read-only: writes are not allowed",
                                 kind="read_only", details=details)
        if code == INSUFFICIENT_PRIVILEGE:
            return DatabaseError(primary or "permission denied", kind="permission", details=details)
        if code == SYNTAX_ERROR:
            return DatabaseError("the statement could not be parsed", details=details)
        if code in SCHEMA_CODES:
            return DatabaseError(primary + " (the schema may have changed; refresh it)",
                                 kind="schema", details=details)
        if code in TYPE_CODES_42 or code == "428C9":
            return DatabaseError(primary, kind="type" if code != "428C9" else "constraint",
                                 details=details)
        if code.startswith(SAFE_MESSAGE_CLASSES) and primary:
            kind = "raise" if code.startswith("P0") else "error"
            return DatabaseError(primary, kind=kind, details=details)
        if code.startswith("53") or code.startswith("54"):
            return DatabaseError("the database ran out of resources for this statement",
                                 kind="resources", details=details)
        if not code:
            if isinstance(exc, psycopg2.ProgrammingError) and "can't adapt" in str(exc):
                return DatabaseError("a value has a type that cannot be sent to the database",
                                     kind="type")
            if isinstance(exc, psycopg2.DataError):
                return DatabaseError("a value read from the database cannot be represented "
                                     "(out of range?)", kind="type")
            return DatabaseError("the database reported an error")
        return DatabaseError(f"the database reported an error (SQLSTATE {code})", details=details)

    def _constraint_error(self, code: str, diag, primary: str, details) -> DatabaseError:
        """Integrity violations: kind, constraint and column(s), without the offending values."""
        constraint = diag.constraint_name
        known = self._constraint_columns.get((diag.schema_name, constraint)) if constraint else None
        if code == NOT_NULL_VIOLATION:
            return DatabaseError(primary or "a required value is missing", kind="not_null",
                                 column=diag.column_name, details=details)
        if code == CHECK_VIOLATION:
            return DatabaseError(primary or "a value violates a check constraint", kind="check",
                                 constraint=constraint, details=details)
        columns = None
        if known:
            columns = ", ".join(known[1])
        else:
            # "Key (a, b)=(1, 2) already exists.": the column list precedes the values.
            m = re.match(r"^Key \((.*?)\)=\(", diag.message_detail or "")
            if m:
                columns = m.group(1)
        if code == UNIQUE_VIOLATION:
            msg = primary or "duplicate value violates a unique constraint"
            if columns:
                msg += f" (columns: {columns})"
            return DatabaseError(msg, kind="unique", constraint=constraint, column=columns,
                                 details=details)
        if code in (FOREIGN_KEY_VIOLATION, RESTRICT_VIOLATION):
            return DatabaseError(primary or "a foreign key constraint is violated", kind="foreign_key",
                                 constraint=constraint, column=columns, details=details)
        return DatabaseError(primary or "the record violates a constraint", kind="constraint",
                             constraint=constraint, column=columns, details=details)
