"""PostgreSQL stored routines: calling procedures (``CALL``) and functions (``SELECT``).

What this module owns:

* ``RoutineCalls``, a mixin of ``PostgresDialect``: ``call_routine`` and
  ``call_statement`` write calls in named notation with every argument bound and
  cast to the declared parameter type (``_call_args``, ``_cast``), and shape the
  answer (rows, OUT values or a scalar).
* The pseudo-types an argument cannot be cast to and the type spellings whose
  bare cast would impose a length.

Imports ``errors``, ``metadata`` and ``pg_types`` (``_bind_typed``) from the
project.  The mixin uses the dialect's ``placeholder``, ``quote``,
``routine_sql``, ``decode_value`` and ``map_error``.
"""
from __future__ import annotations

from ..errors import InvalidArguments
from ..metadata import Routine
from .pg_types import _bind_typed


#: Pseudo-types an argument cannot be cast to (polymorphic functions resolve them).
PSEUDO_ARG_TYPES = frozenset({"\"any\"", "any", "anyelement", "anyarray", "anynonarray", "anyenum",
                              "anyrange", "anymultirange", "anycompatible", "anycompatiblearray",
                              "anycompatiblenonarray", "anycompatiblerange",
                              "anycompatiblemultirange", "record", "cstring"})
#: format_type(oid, NULL) spellings whose bare cast would impose a length of 1.
UNSIZED_CASTS = {"character": "bpchar", "bit": None}


class RoutineCalls:
    """Mixin of ``PostgresDialect``: calls of the routines the catalog lists."""


    def call_routine(self, conn, routine: Routine, args: dict, max_rows: int | None = None) -> dict:
        """Call ``routine`` with ``args`` (IN/INOUT name -> JSON value); every value is bound.

        * functions returning rows (SETOF, RETURNS TABLE): ``SELECT * FROM fn(...)``
          -> ``result_sets = [rows]``;
        * functions with OUT/INOUT parameters (one row): ``out = {name: value}``;
        * functions returning one composite row: ``result_sets = [[row]]``;
        * scalar functions: ``SELECT fn(...)`` -> ``value`` (None for void);
        * procedures: ``CALL proc(...)`` with NULL for OUT parameters -> ``out``.

        Arguments use named notation (``name => %s::type``) so omitted ones take
        their defaults and the cast picks this overload; unnamed parameters
        (``$1``) are passed positionally.  A missing INOUT parameter without a
        default is passed as NULL.  With ``max_rows``, at most that many rows are
        kept and ``"truncated"`` says whether there were more.
        """
        sql, values, shape = self.call_statement(routine, args)
        if max_rows is not None and shape == "rows":
            # Bound in the database too: libpq would otherwise receive every row.
            sql += f" LIMIT {self.placeholder}"
            values.append(int(max_rows) + 1)
        result: dict = {"result_sets": [], "out": {}, "value": None}
        cur = None
        try:
            cur = conn.cursor()
            cur.execute(sql, tuple(values))
            if cur.description is None:
                names, rows, more = [], [], False
            else:
                names = [d[0] for d in cur.description]
                if max_rows is None:
                    rows, more = cur.fetchall(), False
                else:
                    rows = cur.fetchmany(max_rows + 1)
                    more = len(rows) > max_rows
                    rows = rows[:max_rows]
        except Exception as exc:  # noqa: BLE001
            raise self.map_error(exc) from None
        finally:
            if cur is not None:
                cur.close()
        dec = self.decode_value
        if shape == "rows":
            result["result_sets"] = [[{n: dec(None, v) for n, v in zip(names, r)} for r in rows]]
        elif shape == "out":
            if rows:
                result["out"] = {n: dec(None, v) for n, v in zip(names, rows[0])}
        elif rows:
            result["value"] = dec(None, rows[0][0])
        if max_rows is not None:
            result["truncated"] = more
        return result

    def call_statement(self, routine: Routine, args: dict) -> tuple[str, list, str]:
        """``(sql, values, shape)`` for calling ``routine``; shape is rows | out | value.

        ``call_routine`` runs it; a caller expecting a very large set-returning
        function can hand a ``rows`` statement to ``stream`` instead.
        """
        arg_sql, values = self._call_args(routine, args)
        target = self.routine_sql(routine)
        if routine.kind == "procedure":
            return f"CALL {target}({arg_sql})", values, "out"
        if routine.returns_set:
            return f"SELECT * FROM {target}({arg_sql})", values, "rows"
        if any(p.param_type in ("OUT", "INOUT") for p in routine.params):
            return f"SELECT * FROM {target}({arg_sql})", values, "out"
        if routine.return_type == "row":
            return f"SELECT * FROM {target}({arg_sql})", values, "rows"
        return f"SELECT {target}({arg_sql})", values, "value"

    def _call_args(self, routine: Routine, args: dict) -> tuple[str, list]:
        """The argument list of a call (SQL text with placeholders) and its bound values."""
        known = {p.name for p in routine.params if p.param_type in ("IN", "INOUT")}
        unknown = sorted(set(args) - known)
        if unknown:
            raise InvalidArguments(f"'{routine.name}' has no input parameter '{unknown[0]}'")
        # CALL takes OUT parameters too (PostgreSQL 14+); a function call does not.
        listed = [p for p in routine.params
                  if p.param_type in ("IN", "INOUT") or routine.kind == "procedure"]
        last_unnamed = max((i for i, p in enumerate(listed) if p.name.startswith("$")), default=-1)
        parts: list[str] = []
        values: list = []
        for i, p in enumerate(listed):
            what = f"parameter '{p.name}'"
            if p.param_type == "OUT":
                value = None
            elif p.name in args:
                value = _bind_typed(p.type, args[p.name], what, getattr(p, "pg_element_type", None))
            elif p.has_default and i > last_unnamed:
                continue                              # named notation: the default applies
            elif p.param_type == "INOUT":
                value = None
            else:
                raise InvalidArguments(f"'{routine.name}' needs {what}")
            arg = f"{self.placeholder}{self._cast(p.db_type)}"
            if getattr(p, "pg_variadic", False):
                arg = "VARIADIC " + (arg if i <= last_unnamed else f"{self.quote(p.name)} => {arg}")
            elif i > last_unnamed:
                arg = f"{self.quote(p.name)} => {arg}"
            parts.append(arg)
            values.append(value)
        return ", ".join(parts), values

    @staticmethod
    def _cast(db_type: str | None) -> str:
        """``::type`` for a bound argument (the catalog's own spelling), or nothing."""
        if not db_type or db_type in PSEUDO_ARG_TYPES:
            return ""
        if db_type in UNSIZED_CASTS:
            alt = UNSIZED_CASTS[db_type]
            return f"::{alt}" if alt else ""
        return "::" + db_type.replace("%", "%%")
