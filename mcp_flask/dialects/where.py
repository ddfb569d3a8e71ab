"""Render a parsed filter (``filters`` AST) as a SQL WHERE fragment with bound values.

Here the grammar meets a real table and a real dialect:

* every column is looked up in the ``Table`` passed in (``table.column``: exact,
  then case-insensitive) and reaches SQL only through ``dialect.quote``, under its
  real name.  An unknown name gets a "did you mean" drawn from that same table,
  so a table with hidden columns removed never hints at them;
* every value (literal, ``:param``, ``{lookup}``) is coerced by the column's
  DreamFactory type, passed through ``dialect.bind_value`` and bound with
  ``dialect.placeholder``: no value is ever part of the SQL text;
* every predicate and every AND/OR/NOT group is parenthesised, so the fragment
  can be ANDed with others (a role's row filter with the caller's filter).

Imports ``errors``, ``metadata``, the pure ``filters`` AST and ``dialects.base``.
"""
from __future__ import annotations

import datetime as dt
import difflib
import math
import re
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from ..errors import InvalidArguments
from ..filters import (And, Between, Compare, InList, IsNull, Like, Literal, Lookup, Node, Not, Or,
                       Param, Value, parse_filter)
from ..metadata import DATETIME_TYPES, DECIMAL_TYPES, FLOAT_TYPES, INTEGER_TYPES, TEXT_TYPES, Column, Table
from .base import Dialect

_SQL_COMPARE = {"=": "=", "!=": "<>", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
# (prefix %, suffix %) for the plain-text LIKE forms.
_LIKE_WRAP = {"starts": (False, True), "ends": (True, False), "contains": (True, True)}
# LIKE is only offered on text columns: PostgreSQL rejects ``integer LIKE text`` while
# SQLite and MySQL accept it, and a filter should mean the same on every database.
_LIKE_TYPES = TEXT_TYPES
_INT64 = (-(2 ** 63), 2 ** 63 - 1)
# Plain decimal notation, ASCII only (``Decimal``/``float`` would also take '1_000', 'nan', '٣').
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_INTEGER = re.compile(r"[+-]?\d+", re.ASCII)
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def compile_filter(node: Node, table: Table, dialect: Dialect, params: dict | None = None,
                   lookups: dict | None = None) -> tuple[str, list]:
    """``(sql, values)`` for ``node`` on ``table``: a parenthesised WHERE fragment and its bound values.

    ``params`` supplies ``:name`` placeholders (keys ``"name"`` or ``":name"``);
    ``lookups`` supplies ``{role.x}``/``{user.x}`` (flat ``"role.x"`` keys or nested
    ``{"role": {"x": ...}}``).  Raises ``InvalidArguments`` for an unknown column,
    a missing parameter or lookup, or a value that does not fit its column.
    """
    return _Compiler(table, dialect, params or {}, lookups or {}).compile(node)


@lru_cache(maxsize=256)
def _parse_cached(text: str) -> Node:
    # Safe to share: parse_filter is pure and its nodes are frozen.  Errors are not cached.
    return parse_filter(text)


def compile_filter_text(text: str, table: Table, dialect: Dialect, params: dict | None = None,
                        lookups: dict | None = None) -> tuple[str, list]:
    """Parse ``text`` (cached) and compile it; see ``compile_filter``."""
    if not isinstance(text, str):
        raise InvalidArguments("filter must be a string")
    return compile_filter(_parse_cached(text), table, dialect, params, lookups)


class _Compiler:
    """One compilation: collects bound values in the order their placeholders appear."""

    def __init__(self, table: Table, dialect: Dialect, params: dict, lookups: dict):
        self.table = table
        self.dialect = dialect
        self.params = params
        self.lookups = lookups
        self.values: list = []

    def compile(self, node: Node) -> tuple[str, list]:
        return self.node(node), self.values

    # -- structure
    def node(self, node: Node) -> str:
        if isinstance(node, And):
            return "(" + " AND ".join(self.node(n) for n in node.items) + ")"
        if isinstance(node, Or):
            return "(" + " OR ".join(self.node(n) for n in node.items) + ")"
        if isinstance(node, Not):
            return f"(NOT {self.node(node.item)})"
        if isinstance(node, Compare):
            return self.compare(node)
        if isinstance(node, IsNull):
            return self.is_null(self.column(node.column), node.negate)
        if isinstance(node, InList):
            return self.in_list(node)
        if isinstance(node, Between):
            return self.between(node)
        if isinstance(node, Like):
            return self.like(node)
        raise TypeError(f"not a filter node: {node!r}")

    # -- predicates
    def compare(self, node: Compare) -> str:
        col = self.column(node.column)
        value = self.resolve(node.value)
        if value is None:
            # A null :param or lookup means what ``x = null`` means.
            if node.op in ("=", "!="):
                return self.is_null(col, node.op == "!=")
            raise InvalidArguments(f"filter: a null value can only be compared with = or != "
                                   f"(column '{col.name}')")
        return f"({self.dialect.quote(col.name)} {_SQL_COMPARE[node.op]} {self.bind(col, value)})"

    def is_null(self, col: Column, negate: bool) -> str:
        return f"({self.dialect.quote(col.name)} IS {'NOT ' if negate else ''}NULL)"

    def in_list(self, node: InList) -> str:
        col = self.column(node.column)
        for v in node.values:
            value = self.resolve(v)
            if value is None:
                # SQL's ``x NOT IN (1, NULL)`` is never true: refuse rather than surprise.
                raise InvalidArguments(f"filter: IN lists may not contain null (column '{col.name}'); "
                                       f"use 'or {col.name} is null'")
            self.values.append(self.dialect.bind_value(col, coerce_value(col, value)))
        return "(" + self.dialect.in_sql(self.dialect.quote(col.name), len(node.values), node.negate) + ")"

    def between(self, node: Between) -> str:
        col = self.column(node.column)
        lo, hi = self.resolve(node.lo), self.resolve(node.hi)
        if lo is None or hi is None:
            raise InvalidArguments(f"filter: BETWEEN needs two non-null values (column '{col.name}')")
        return (f"({self.dialect.quote(col.name)} {'NOT ' if node.negate else ''}BETWEEN "
                f"{self.bind(col, lo)} AND {self.bind(col, hi)})")

    def like(self, node: Like) -> str:
        col = self.column(node.column)
        if col.type not in _LIKE_TYPES:
            word = {"like": "LIKE", "starts": "STARTS WITH", "ends": "ENDS WITH"}.get(node.kind, "CONTAINS")
            raise InvalidArguments(f"filter: {word} needs a text column; '{col.name}' is {col.type}")
        value = self.resolve(node.value)
        if value is None or isinstance(value, bool):
            raise InvalidArguments(f"filter: {node.kind} needs a text value (column '{col.name}')")
        text = str(value)
        if node.kind == "like":
            pattern = user_like_pattern(self.dialect, text)
        else:
            # DreamFactory wrapped the quotes too ('App'%); here the value is already unquoted.
            pattern = self.dialect.like_pattern(text, *_LIKE_WRAP[node.kind])
        self.values.append(self.dialect.bind_value(col, pattern))
        return "(" + self.dialect.like_sql(self.dialect.quote(col.name), node.negate) + ")"

    # -- names and values
    def column(self, name: str) -> Column:
        col = self.table.column(name)
        if col is None:
            raise InvalidArguments(f"filter: no column '{name}' in table '{self.table.name}'"
                                   + _did_you_mean(name, [c.name for c in self.table.columns]),
                                   details={"column": name})
        return col

    def bind(self, col: Column, value: Any) -> str:
        self.values.append(self.dialect.bind_value(col, coerce_value(col, value)))
        return self.dialect.placeholder

    def resolve(self, value: Value) -> Any:
        """The Python value a value node stands for (text for literals)."""
        if isinstance(value, Literal):
            return value.value
        if isinstance(value, Param):
            for key in (":" + value.name, value.name):
                if key in self.params:
                    return _plain(self.params[key], f"parameter ':{value.name}'")
            raise InvalidArguments(f"filter parameter ':{value.name}' has no value in params")
        if isinstance(value, Lookup):
            found, result = _lookup(self.lookups, value.name)
            if not found:
                raise InvalidArguments(f"filter lookup '{{{value.name}}}' has no value")
            return _plain(result, f"lookup '{{{value.name}}}'")
        raise TypeError(f"not a filter value: {value!r}")


def _lookup(lookups: dict, name: str) -> tuple[bool, Any]:
    """Find ``role.region`` as a flat key, else by walking nested dicts."""
    if name in lookups:
        return True, lookups[name]
    current: Any = lookups
    for part in name.split("."):
        if not isinstance(current, dict) or part not in current:
            return False, None
        current = current[part]
    return True, current


def _plain(value: Any, what: str) -> Any:
    """Parameters and lookups must be scalars: a list or object has no place in one comparison."""
    if value is None or isinstance(value, (str, int, float, Decimal)):
        return value
    raise InvalidArguments(f"filter {what} must be a string, number, boolean or null")


def _did_you_mean(name: str, candidates: list[str]) -> str:
    by_lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"; did you mean '{by_lower[close[0]]}'?" if close else ""


def user_like_pattern(dialect: Dialect, text: str) -> str:
    """A user's LIKE pattern re-escaped for ``dialect``.

    In the filter grammar ``%`` and ``_`` are wildcards and a backslash makes the
    next character literal, on every database, whatever escape character the
    dialect's ``ESCAPE`` clause uses; everything else is literal text.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            out.append(dialect.like_pattern(text[i + 1], False, False))
            i += 2
            continue
        out.append(ch if ch in "%_" else dialect.like_pattern(ch, False, False))
        i += 1
    return "".join(out)


# ------------------------------------------------------------------------ coercion

def coerce_value(column: Column, value: Any) -> Any:
    """``value`` (filter text, or a JSON scalar from params/lookups) as ``column``'s type.

    Whole numbers -> int, decimal/money -> Decimal, float/double -> float,
    boolean -> bool, date/time/datetime -> validated ISO text in SQL's canonical
    form (``2024-01-31 10:00:00``), anything else -> str.  A value that does not
    fit raises ``InvalidArguments`` naming the column and the value.
    """
    t = column.type
    try:
        if t in INTEGER_TYPES:
            return _to_int(value)
        if t in DECIMAL_TYPES:
            return _to_decimal(value)
        if t in FLOAT_TYPES:
            return _to_float(value)
        if t == "boolean":
            return _to_bool(value)
        if t == "date":
            return dt.date.fromisoformat(_text_only(value)).isoformat()
        if t in ("time", "timetz"):
            return dt.time.fromisoformat(_text_only(value)).isoformat()
        if t in DATETIME_TYPES:
            # A space, not 'T': the form PostgreSQL and MySQL print and SQLite's
            # datetime() stores, so text comparisons in SQLite order correctly.
            return dt.datetime.fromisoformat(_text_only(value)).isoformat(sep=" ")
    except (ValueError, TypeError, InvalidOperation, OverflowError):
        shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "..."
        raise InvalidArguments(f"filter value {shown!r} does not fit column '{column.name}' "
                               f"of type {t}", details={"column": column.name}) from None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _text_only(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected text")
    return value


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, str):
        if not _INTEGER.fullmatch(value):
            raise ValueError("not an integer")
        result = int(value)
    elif isinstance(value, int):
        result = value
    elif isinstance(value, (float, Decimal)) and math.isfinite(value) and value == int(value):
        result = int(value)
    else:
        raise ValueError("not an integer")
    # Out-of-range values would otherwise surface as a driver OverflowError.
    if not _INT64[0] <= result <= _INT64[1]:
        raise OverflowError("integer out of range")
    return result


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, str):
        if not _NUMBER.fullmatch(value):
            raise ValueError("not a number")
        result = Decimal(value)
    elif isinstance(value, float):
        result = Decimal(repr(value))   # repr: 0.1 stays 0.1, not its binary expansion
    else:
        result = Decimal(value)
    if not result.is_finite():
        raise ValueError("not a finite number")
    return result


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, str) and not _NUMBER.fullmatch(value):
        raise ValueError("not a number")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError("not a finite number")
    return result


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _BOOLEANS:
        return _BOOLEANS[value.lower()]
    raise ValueError("not a boolean")
