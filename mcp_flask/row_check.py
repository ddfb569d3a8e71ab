"""Does a record satisfy a role's row filter?  The filter grammar evaluated in Python.

A role's row filter is ANDed into the WHERE of every read, update and delete, so
rows outside it are unreachable there.  A *create* has no WHERE: the new record
itself must satisfy the filter before it is written (DreamFactory validates
records against role filters the same way, ``compareByOperator``).

Values on both sides are coerced by the column's type exactly as the SQL
compiler does (``dialects.where.coerce_value``), so ``total > 10`` compares
numbers and ``ordered_at >= '2024-01-01'`` compares canonical ISO text.
Anything that cannot be compared (a null, a type mismatch) is *false*, so a
doubtful record is refused rather than written.

Updates pass ``partial=True``: columns the patch does not set keep their current
values, which the UPDATE's own WHERE already holds to the filter, so predicates
on them are *unknown*; Kleene logic decides, and only a definite *false* refuses.

Imports errors, filters, metadata and ``dialects.where``.
"""
from __future__ import annotations

import re
from functools import lru_cache

from .dialects.where import _lookup, coerce_value
from .errors import InvalidArguments
from .filters import And, Between, Compare, InList, IsNull, Like, Literal, Lookup, Not, Or, Param, parse_filter

UNKNOWN = None  # Kleene's third truth value


@lru_cache(maxsize=256)
def _parsed(text: str):
    return parse_filter(text)


def record_satisfies(text: str, lookups: dict, table, record: dict, partial: bool = False,
                     like_ci: bool = True) -> bool:
    """Whether ``record`` (column -> JSON value) lies inside the row filter ``text`` on ``table``.

    Raises ``InvalidArguments`` when the filter names a column ``table`` lacks or a lookup
    has no value (a configuration mistake: callers treat it as "no").
    """
    values = {}
    for key, value in record.items():
        col = table.column(key) if isinstance(key, str) else None
        if col is not None:
            values[col.name] = value
    result = _Evaluator(table, lookups, values, partial, like_ci).node(_parsed(text))
    return result is True or (partial and result is UNKNOWN)


class _Evaluator:
    def __init__(self, table, lookups, values, partial, like_ci):
        self.table = table
        self.lookups = lookups
        self.values = values
        self.partial = partial
        self.like_ci = like_ci

    def node(self, n):
        if isinstance(n, And):
            results = [self.node(i) for i in n.items]
            if any(r is False for r in results):
                return False
            return True if all(r is True for r in results) else UNKNOWN
        if isinstance(n, Or):
            results = [self.node(i) for i in n.items]
            if any(r is True for r in results):
                return True
            return False if all(r is False for r in results) else UNKNOWN
        if isinstance(n, Not):
            r = self.node(n.item)
            return UNKNOWN if r is UNKNOWN else not r
        return self.predicate(n)

    def predicate(self, p):
        col = self.table.column(p.column)
        if col is None:
            raise InvalidArguments(f"row filter names a column missing from '{self.table.name}'")
        if col.name not in self.values:
            if self.partial:
                return UNKNOWN
            current = None           # a create: an unset column is null (or a default we cannot see)
        else:
            current = self.values[col.name]
        if isinstance(p, IsNull):
            return (current is not None) if p.negate else (current is None)
        if current is None or isinstance(current, (dict, list)):
            return False
        try:
            mine = coerce_value(col, current)
        except InvalidArguments:
            return False
        if isinstance(p, Compare):
            other = self.resolve(p.value)
            if other is None:
                return False
            return _compare(mine, p.op, coerce_value(col, other))
        if isinstance(p, InList):
            found = any(_compare(mine, "=", coerce_value(col, self.resolve(v))) for v in p.values)
            return not found if p.negate else found
        if isinstance(p, Between):
            lo, hi = self.resolve(p.lo), self.resolve(p.hi)
            if lo is None or hi is None:
                return False
            inside = _compare(mine, ">=", coerce_value(col, lo)) and _compare(mine, "<=", coerce_value(col, hi))
            return not inside if p.negate else inside
        if isinstance(p, Like):
            other = self.resolve(p.value)
            if other is None:
                return False
            hit = _like(str(mine), str(other), p.kind, self.like_ci)
            return not hit if p.negate else hit
        return False

    def resolve(self, value):
        if isinstance(value, Literal):
            return value.value
        if isinstance(value, Lookup):
            found, result = _lookup(self.lookups, value.name)
            if not found:
                raise InvalidArguments("row filter lookup has no value")
            return result
        if isinstance(value, Param):
            raise InvalidArguments("row filters may not use :params")
        return None


def _compare(a, op: str, b) -> bool:
    try:
        if op == "=":
            return a == b
        if op == "!=":
            return a != b
        if op == ">":
            return a > b
        if op == ">=":
            return a >= b
        if op == "<":
            return a < b
        if op == "<=":
            return a <= b
    except TypeError:
        return False
    return False


def _like(text: str, pattern: str, kind: str, ci: bool) -> bool:
    if kind == "like":
        rx = []
        i = 0
        while i < len(pattern):
            ch = pattern[i]
            if ch == "\\" and i + 1 < len(pattern):
                rx.append(re.escape(pattern[i + 1]))
                i += 2
                continue
            rx.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
            i += 1
        regex = "".join(rx)
    else:
        body = re.escape(pattern)
        regex = {"starts": body + ".*", "ends": ".*" + body, "contains": ".*" + body + ".*"}[kind]
    return re.fullmatch(regex, text, re.DOTALL | (re.IGNORECASE if ci else 0)) is not None
