"""PostgreSQL types: catalog facts -> DreamFactory types, and JSON values <-> driver values.

What this module owns:

* The mapping of a ``pg_type`` row (after unwrapping domains and arrays) to a
  DreamFactory simple type with its length/precision/scale (``_map_type``,
  ``_scalar_simple``, ``_sizes``), and ``literal_default`` for the defaults
  ``pg_get_expr`` gives as SQL text.
* Arrays: ``parse_array`` reads the text form psycopg2 leaves for arrays of
  types it does not know (enum[] ...); ``array_literal`` writes a list as an
  untyped array literal that coerces to any array type.
* ``_range_text`` (a psycopg2 ``Range`` in PostgreSQL's own text form),
  ``_decode_bytes`` (base64 text -> bytea) and ``_bind_typed`` (one JSON value
  for a column or routine parameter of a given simple type).

Imports only ``errors`` (``InvalidArguments``) and ``metadata`` (``INTEGER_TYPES``)
from the project, plus psycopg2's ``extras``.  Holds no SQL and runs no statement.
"""
from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Sequence

import psycopg2.extras

from ..errors import InvalidArguments
from ..metadata import INTEGER_TYPES

#: Base type name (``pg_type.typname``) -> DreamFactory simple type.
SIMPLE_TYPES = {
    "int2": "smallint", "int4": "integer", "int8": "bigint", "oid": "bigint",
    "numeric": "decimal", "money": "money", "float4": "float", "float8": "double",
    "bool": "boolean",
    "varchar": "string", "bpchar": "string", "char": "string", "name": "string",
    "text": "text", "citext": "text", "xml": "text", "tsvector": "text", "tsquery": "text",
    "date": "date", "time": "time", "timetz": "timetz",
    "timestamp": "datetime", "timestamptz": "datetimetz",
    # No DreamFactory type fits an interval; values come back as timedelta.
    "interval": "string",
    "uuid": "uuid", "json": "json", "jsonb": "jsonb", "bytea": "binary",
}
#: Fallback by ``pg_type.typcategory`` for types not listed above.
CATEGORY_TYPES = {"S": "text", "B": "boolean", "D": "datetime", "N": "decimal"}
#: Integer types that become DreamFactory's id types when they are an auto-increment key.
AUTO_ID_TYPES = {"int2": "smallid", "int4": "id", "int8": "bigid"}


# --------------------------------------------------------------------- type helpers
def _scalar_simple(typname: str | None, typtype: str | None, category: str | None) -> str:
    """DreamFactory simple type of a non-array base type."""
    if typtype in ("e", "r", "m", "c"):
        # enum (with a picklist), range, multirange, composite: exchanged as text.
        return "string"
    if typname in SIMPLE_TYPES:
        return SIMPLE_TYPES[typname]
    return CATEGORY_TYPES.get(category or "", "string")


def _sizes(typname: str | None, typmod: int | None) -> tuple[int | None, int | None, int | None]:
    """(length, precision, scale) decoded from a type modifier, as format_type reads it."""
    if typmod is None or typmod < 0:
        return None, None, None
    if typname in ("varchar", "bpchar"):
        return typmod - 4, None, None                     # VARHDRSZ
    if typname == "numeric":
        t = typmod - 4
        scale = t & 0x7FF
        if scale & 0x400:                                  # PostgreSQL 15 allows negative scales
            scale -= 0x800
        return None, (t >> 16) & 0xFFFF, scale
    if typname in ("time", "timetz", "timestamp", "timestamptz"):
        return None, typmod, None
    if typname == "interval":
        p = typmod & 0xFFFF
        return None, (None if p == 0xFFFF else p), None
    if typname in ("bit", "varbit"):
        return typmod, None, None
    return None, None, None


def _map_type(facts: Sequence, typmod: int | None = -1):
    """(simple type, length, precision, scale, extra) from a row of ``_TYPE_FACTS``."""
    btn, btt, bcat, etn, ett, ecat, edb, labels = facts
    if bcat == "A" and etn is not None:
        extra: dict = {"element_type": _scalar_simple(etn, ett, ecat), "element_db_type": edb}
        if labels is not None:
            extra["element_picklist"] = list(labels)
        return "array", None, None, None, extra
    length, precision, scale = _sizes(btn, typmod)
    extra = {}
    if labels is not None:
        extra["picklist"] = list(labels)
    if btn == "interval":
        extra["pg_type"] = "interval"
    return _scalar_simple(btn, btt, bcat), length, precision, scale, extra


_QUOTED_LITERAL = re.compile(r"""^'((?:[^']|'')*)'(?:::(?:"(?:[^"]|"")+"|[\w .\[\]()])+)*$""", re.S)
_NUMBER = re.compile(r"^\(?(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\)?(?:::[\w .\[\]()]+)?$")


def literal_default(expr: str | None, stype: str):
    """A column or parameter default as DreamFactory shows it.

    ``pg_get_expr`` gives SQL text: quoted literals (``'ok'::mood``) are unquoted,
    numbers and booleans become JSON numbers/booleans, ``NULL`` becomes None, and
    expressions (``nextval(...)``, ``now()``) stay as text.
    """
    if expr is None:
        return None
    e = expr.strip()
    m = _QUOTED_LITERAL.match(e)
    if m:
        text = m.group(1).replace("''", "'")
    else:
        n = _NUMBER.match(e)
        if n:
            text = n.group(1)
        elif e in ("true", "false"):
            return e == "true"
        elif re.match(r"^NULL(::.*)?$", e, re.I):
            return None
        else:
            return e
    try:
        if stype in INTEGER_TYPES:
            return int(text)
        if stype in ("decimal", "money"):
            return Decimal(text)
        if stype in ("float", "double"):
            return float(text)
        if stype == "boolean":
            low = text.lower()
            if low in ("t", "true", "y", "yes", "on", "1"):
                return True
            if low in ("f", "false", "n", "no", "off", "0"):
                return False
    except (ValueError, InvalidOperation):
        pass
    return text


def parse_array(text: str):
    """Parse a PostgreSQL array literal (``{a,"b c",NULL,{1,2}}``) into nested lists of str.

    psycopg2 only knows the array types of built-in element types; arrays of
    enums, domains or extension types arrive as this text.  Returns ``text``
    unchanged when it is not a well-formed literal.
    """
    s = text
    if s.startswith("["):                                 # "[0:1]={...}" dimension decoration
        s = s[s.find("=") + 1:]

    def parse(i: int):
        items: list = []
        i += 1
        if s[i] == "}":
            return items, i + 1
        while True:
            c = s[i]
            if c == "{":
                val, i = parse(i)
            elif c == '"':
                i += 1
                buf = []
                while s[i] != '"':
                    if s[i] == "\\":
                        i += 1
                    buf.append(s[i])
                    i += 1
                i += 1
                val = "".join(buf)
            else:
                j = i
                buf = []
                while s[j] not in ",}":
                    if s[j] == "\\":
                        j += 1
                    buf.append(s[j])
                    j += 1
                raw = "".join(buf).strip()
                val = None if raw.upper() == "NULL" else raw
                i = j
            items.append(val)
            if s[i] == ",":
                i += 1
                continue
            if s[i] == "}":
                return items, i + 1
            raise ValueError("malformed array literal")

    try:
        if not s.startswith("{"):
            return text
        value, end = parse(0)
        return value if end == len(s) else text
    except (IndexError, ValueError):
        return text


def _range_text(r) -> str:
    """A psycopg2 ``Range`` in PostgreSQL's own text form (``[1,10)``), which binds back as-is."""
    if r.isempty:
        return "empty"

    def bound(v):
        if v is None:
            return ""
        if isinstance(v, (int, float, Decimal)):
            return str(v)
        return '"' + (v.isoformat() if hasattr(v, "isoformat") else str(v)) + '"'
    return (("[" if r.lower_inc else "(") + bound(r.lower) + "," + bound(r.upper)
            + ("]" if r.upper_inc else ")"))


def _decode_bytes(value, what: str) -> bytes:
    """Bytes for a bytea column/parameter: bytes as-is, text as base64 (JSON has no bytes)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArguments(f"{what} is binary: send its content as base64 text") from None
    raise InvalidArguments(f"{what} is binary: send its content as base64 text")


def _array_element(v, elem_type: str, what: str) -> str:
    """One element of an array literal, always double-quoted (valid for every element type)."""
    if isinstance(v, bool):
        text = "true" if v else "false"
    elif elem_type in ("json", "jsonb"):
        text = v if isinstance(v, str) else json.dumps(v)
    elif elem_type == "binary":
        text = "\\x" + _decode_bytes(v, what).hex()
    elif isinstance(v, dict):
        raise InvalidArguments(f"{what} takes a list of {elem_type} values, not objects")
    elif isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        text = v.isoformat()
    else:
        text = str(v)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def array_literal(values, elem_type: str = "string", what: str = "the value") -> str:
    """A Python list as a PostgreSQL array literal (``{"a","b"}``).

    Bound as an untyped string literal, it coerces to whatever array type the
    target has: ``ARRAY['a','b']`` (what psycopg2 makes of a list) is ``text[]``,
    which an enum[] or uuid[] column refuses.
    """
    parts = []
    for v in values:
        if isinstance(v, (list, tuple)):
            parts.append(array_literal(v, elem_type, what))
        elif v is None:
            parts.append("NULL")
        else:
            parts.append(_array_element(v, elem_type, what))
    return "{" + ",".join(parts) + "}"


def _bind_typed(stype: str | None, value, what: str, elem_type: str | None = None):
    """Convert one JSON value for a column/parameter of simple type ``stype``."""
    if value is None:
        return None
    if stype in ("json", "jsonb"):
        # Text is taken to be JSON already (a model often sends '{"a": 1}'); anything
        # else is serialised here.
        return value if isinstance(value, str) else psycopg2.extras.Json(value)
    if stype == "array":
        if isinstance(value, (list, tuple)):
            return array_literal(value, elem_type or "string", what)
        if isinstance(value, str):
            return value                                # already an array literal
        raise InvalidArguments(f"{what} is an array: send a list")
    if stype == "binary":
        return _decode_bytes(value, what)
    if isinstance(value, dict):
        raise InvalidArguments(f"{what} ({stype}) cannot take a JSON object")
    if isinstance(value, list):
        if stype is None:
            return value
        raise InvalidArguments(f"{what} ({stype}) cannot take a list")
    return value
