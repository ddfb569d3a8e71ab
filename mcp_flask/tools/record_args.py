"""Pure parsing of the record tools' list-like arguments: fields, order, group, ids.

Each parser turns the caller's text (or list) into a small tuple and raises
``InvalidArguments`` on anything malformed.  Nothing here knows a table: names
are validated against the table's columns by ``record_reads``.  The parsers are
pure, so they are cached (``lru_cache``): the same ``order`` string on the hot
path is parsed once per process, not once per call.

Imports only ``errors``.
"""
from __future__ import annotations

import re
from functools import lru_cache

from ..errors import InvalidArguments

#: Aggregates allowed in ``fields`` when ``group`` is given (DreamFactory's set).
AGGREGATES = ("COUNT", "SUM", "AVG", "MIN", "MAX")

# One ORDER BY term: a name, then optional ASC|DESC, then optional NULLS FIRST|LAST.
# The name may be an aggregate such as SUM(total); it is validated against a whitelist later.
_ORDER_TERM = re.compile(r"([^\s,;]+)(?:\s+(asc|desc))?(?:\s+nulls\s+(first|last))?", re.I | re.ASCII)
_AGGREGATE = re.compile(r"(count|sum|avg|min|max)\s*\(\s*(\*|[^\s()*,;]+)\s*\)", re.I | re.ASCII)


def _text(value, what: str) -> str:
    """A list argument as one comma-joined string (the cache key), or its string form."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, str) for v in value):
            raise InvalidArguments(f"argument '{what}': every item must be a string")
        return ",".join(value)
    raise InvalidArguments(f"argument '{what}' must be a string or a list of strings")


def parse_names(value, what: str) -> tuple[str, ...]:
    """``"a, b"`` or ``["a", "b"]`` -> ``("a", "b")``; empty items are an error."""
    return _parse_names(_text(value, what), what)


@lru_cache(maxsize=1024)
def _parse_names(text: str, what: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(","))
    if not text.strip():
        raise InvalidArguments(f"argument '{what}' is empty")
    for i, item in enumerate(items):
        if not item:
            raise InvalidArguments(f"argument '{what}': item {i + 1} is empty (stray comma?)")
    return items


def parse_aggregate(item: str) -> tuple[str, str | None] | None:
    """``"SUM(total)"`` -> ``("SUM", "total")``; ``"COUNT(*)"`` -> ``("COUNT", None)``; else None.

    Raises for a malformed aggregate (``SUM(*)``, ``AVG()``), so a typo is never
    mistaken for a column name.
    """
    return _parse_aggregate(item)


@lru_cache(maxsize=1024)
def _parse_aggregate(item: str) -> tuple[str, str | None] | None:
    if "(" not in item and ")" not in item:
        return None
    m = _AGGREGATE.fullmatch(item.strip())
    if not m:
        raise InvalidArguments(f"'{item}' is not a supported aggregate; use COUNT(*), or "
                               f"COUNT, SUM, AVG, MIN or MAX of one column, e.g. SUM(total)")
    func, arg = m.group(1).upper(), m.group(2)
    if arg == "*":
        if func != "COUNT":
            raise InvalidArguments(f"'{item}': only COUNT may take *")
        return func, None
    return func, arg


def aggregate_alias(func: str, column: str | None) -> str:
    """DreamFactory's result name for an aggregate: ``SUM_total``, ``COUNT_ALL``."""
    return f"{func}_{column}" if column is not None else f"{func}_ALL"


def parse_order(value) -> tuple[tuple[str, str, str | None], ...]:
    """``"a desc, b nulls last"`` -> ``(("a", "DESC", None), ("b", "ASC", "LAST"))``."""
    return _parse_order(_text(value, "order"))


@lru_cache(maxsize=1024)
def _parse_order(text: str) -> tuple[tuple[str, str, str | None], ...]:
    if ";" in text:
        # DreamFactory's rule too; the name check below would refuse it anyway.
        raise InvalidArguments("order: ';' is not allowed")
    out = []
    for i, term in enumerate(text.split(",")):
        term = term.strip()
        if not term:
            raise InvalidArguments(f"order: term {i + 1} is empty (stray comma?)")
        m = _ORDER_TERM.fullmatch(term)
        if not m:
            raise InvalidArguments(f"order: cannot read '{term}'; write 'column [asc|desc] "
                                   f"[nulls first|last]', comma-separated")
        out.append((m.group(1), (m.group(2) or "asc").upper(), m.group(3).upper() if m.group(3) else None))
    return tuple(out)


def parse_ids(value) -> list:
    """``ids`` as a list of scalars: a list, a comma-separated string, or one number."""
    if value is None:
        return []
    if isinstance(value, bool):
        raise InvalidArguments("ids must be key values, not a boolean")
    if isinstance(value, (int, float)):
        return [value]
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
        if any(not v for v in items):
            raise InvalidArguments("ids: an item is empty (stray comma?)")
        return items
    if isinstance(value, list):
        if any(isinstance(v, bool) or not isinstance(v, (str, int, float)) for v in value):
            raise InvalidArguments("ids must be strings or numbers")
        return list(value)
    raise InvalidArguments("ids must be a list, a comma-separated string or a number")
