"""MySQL/MariaDB column types and literals: what ``information_schema`` says, as project types.

This module owns the mapping of a column's DATA_TYPE / COLUMN_TYPE to the
project's simple types (``simple_type``, ``enum_values``), MySQL string-literal
unescaping, the normalising of ``COLUMN_DEFAULT`` into a value or an expression
(``normalise_default``), the TIME and datetime conversions the value code needs
(``format_time``, ``to_naive_utc``), and the stand-in Columns for routine
parameters and unknown result columns (``_param_column``, ``_description_column``).
Everything here is a pure function: no connection, no SQL.

Imports only ``metadata`` from the project.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from ..metadata import Column, RoutineParam

# pymysql description type codes worth decoding when no catalog column is known.
_FIELD_JSON = 245
_FIELD_BIT = 16
_SPATIAL = frozenset({"geometry", "point", "linestring", "polygon", "multipoint", "multilinestring",
                      "multipolygon", "geometrycollection", "geomcollection"})


# ============================================================================ type mapping

def simple_type(data_type: str, column_type: str, char_length=None, precision=None, scale=None):
    """``(DreamFactory type, length, precision, scale, extra)`` for one column or parameter.

    ``data_type`` is ``information_schema``'s DATA_TYPE (``varchar``), ``column_type``
    the full COLUMN_TYPE / DTD_IDENTIFIER (``varchar(20)``, ``enum('a','b')``).
    """
    dt = (data_type or "").lower()
    ct = (column_type or dt).lower()
    extra: dict = {}
    if "unsigned" in ct:
        extra["unsigned"] = True
    length = int(char_length) if char_length is not None else None
    if dt == "tinyint" and ct.startswith("tinyint(1)"):
        # MySQL's BOOL/BOOLEAN is tinyint(1); MySQL 8 keeps that display width for it alone.
        return "boolean", None, None, None, extra
    if dt in ("int", "integer"):
        return "integer", None, None, None, extra
    if dt in ("bigint", "smallint", "mediumint", "tinyint"):
        return dt, None, None, None, extra
    if dt in ("decimal", "numeric", "fixed", "dec"):
        return ("decimal", None, int(precision) if precision is not None else None,
                int(scale) if scale is not None else None, extra)
    if dt in ("double", "real", "double precision"):
        return "double", None, None, None, extra
    if dt == "float":
        return "float", None, None, None, extra
    if dt == "bit":
        m = re.match(r"bit\((\d+)\)", ct)
        bits = int(m.group(1)) if m else 1
        extra["bits"] = bits
        return ("boolean" if bits == 1 else "integer"), None, None, None, extra
    if dt in ("char", "varchar"):
        return "string", length, None, None, extra
    if dt in ("tinytext", "text"):
        return "text", length, None, None, extra
    if dt in ("mediumtext", "longtext"):
        return dt, length, None, None, extra
    if dt == "json":
        return "json", None, None, None, extra
    if dt in ("binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"):
        return "binary", length, None, None, extra
    if dt in ("enum", "set"):
        extra["picklist"] = enum_values(ct)
        if dt == "set":
            extra["set"] = True
        return "string", length, None, None, extra
    if dt in ("date", "time", "datetime", "timestamp"):
        return dt, None, None, None, extra
    if dt == "year":
        return "integer", None, None, None, extra
    if dt == "uuid":                       # MariaDB 10.7+
        return "uuid", None, None, None, extra
    if dt in _SPATIAL:
        extra["spatial"] = True
        return "binary", None, None, None, extra
    return "string", length, None, None, extra


def enum_values(column_type: str) -> list[str]:
    """The allowed values of ``enum('a','b''c')`` / ``set(...)``, unescaped."""
    inner = column_type[column_type.find("(") + 1:column_type.rfind(")")]
    return [unescape_literal(v) for v in re.findall(r"'((?:[^'\\]|\\.|'')*)'", inner, re.S)]


_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}


def unescape_literal(body: str) -> str:
    """The text of a MySQL string literal body (``it''s``, ``x\\\\y`` -> ``it's``, ``x\\y``)."""
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            # \% and \_ keep their backslash in MySQL (they are LIKE escapes).
            out.append(_ESCAPES.get(nxt, "\\" + nxt if nxt in "%_" else nxt))
            i += 2
        elif ch == "'" and body[i + 1:i + 2] == "'":
            out.append("'")
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _typed_literal(text: str, stype: str, extra: dict):
    """A default's literal text as the column's JSON value (numbers as numbers)."""
    bits = re.fullmatch(r"b'([01]*)'", text)
    if bits:
        n = int(bits.group(1) or "0", 2)
        return bool(n) if stype == "boolean" else n
    try:
        if stype == "boolean":
            return bool(int(text))
        if stype in ("integer", "bigint", "smallint", "mediumint", "tinyint", "id", "bigid"):
            return int(text)
        if stype in ("float", "double"):
            return float(text)
    except ValueError:
        pass
    # Decimal defaults stay text ("1.50"): exact, and JSON-safe without a custom encoder.
    return text


def normalise_default(raw, stype: str, extra_text: str, mariadb_quoted: bool, extra: dict):
    """``COLUMN_DEFAULT`` as a value, or the expression text for computed defaults.

    MariaDB 10.2.7+ writes literals quoted (``'abc'``), NULL as ``NULL`` and
    expressions bare (``current_timestamp()``); MySQL writes literals bare and
    flags expressions with ``DEFAULT_GENERATED`` in EXTRA.  Expression defaults set
    ``extra["default_expression"]``; CURRENT_TIMESTAMP is spelled one way for both.
    """
    if raw is None:
        return None
    raw = _text(raw)
    if mariadb_quoted:
        if raw == "NULL":
            return None
        if len(raw) >= 2 and raw[0] == raw[-1] == "'":
            return _typed_literal(unescape_literal(raw[1:-1]), stype, extra)
        is_literal = bool(re.fullmatch(r"-?\d+(\.\d*)?([eE][-+]?\d+)?|b'[01]*'", raw))
    else:
        is_literal = "default_generated" not in extra_text.lower()
    if is_literal:
        return _typed_literal(raw, stype, extra)
    extra["default_expression"] = True
    m = re.fullmatch(r"(?i)(?:current_timestamp|now|localtimestamp|localtime)(?:\((\d*)\))?", raw)
    if m:
        return f"CURRENT_TIMESTAMP({m.group(1)})" if m.group(1) else "CURRENT_TIMESTAMP"
    return raw


def _text(value):
    """information_schema text; some MySQL 8 columns arrive as bytes."""
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return value


def format_time(value: timedelta) -> str:
    """A TIME value (pymysql gives ``timedelta``) as ``[-]HH:MM:SS[.ffffff]``; hours may exceed 24."""
    total = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    sign = "-" if total < 0 else ""
    secs, micros = divmod(abs(total), 1_000_000)
    hours, rest = divmod(secs, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{sign}{hours:02d}:{minutes:02d}:{seconds:02d}"
    return text + f".{micros:06d}" if micros else text


# An offset after a time of day (a bare date's "-01" is not one).
_TZ_SUFFIX = re.compile(r"\d:\d\d(?::\d\d(?:\.\d+)?)?\s*(?:[zZ]|[+-]\d\d(?::?\d\d)?)$")


def to_naive_utc(value):
    """An ISO datetime text with 'T' and/or an offset (or an aware datetime) as naive UTC.

    MySQL rejects ``2024-01-01T10:00:00+02:00``; the session time zone is UTC, so an
    offset is applied here and the wall-clock UTC value is bound.  Other text is
    returned unchanged for the database to judge.
    """
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return value.astimezone(timezone.utc).replace(tzinfo=None)
        return value
    if not isinstance(value, str):
        return value
    text = value.strip()
    if "T" not in text and "t" not in text and not _TZ_SUFFIX.search(text):
        return value
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        return value
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


def _param_column(p: RoutineParam) -> Column:
    """A Column standing in for a routine parameter, so values convert like a column's."""
    _, _, _, _, extra = simple_type(p.db_type.split("(")[0], p.db_type)
    return Column(name=p.name, type=p.type, db_type=p.db_type, length=p.length,
                  precision=p.precision, scale=p.scale, extra=extra)


def _description_column(desc) -> Column | None:
    """A Column for a result column whose catalog column is unknown (routine result sets)."""
    if desc[1] == _FIELD_JSON:
        return Column(name=desc[0], type="json", db_type="json")
    if desc[1] == _FIELD_BIT:
        return Column(name=desc[0], type="integer", db_type="bit")
    return None

