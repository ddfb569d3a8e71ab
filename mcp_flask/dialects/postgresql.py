"""PostgreSQL through psycopg2: connections, values, errors, introspection and routines.

What this module owns:

* ``connect``: one libpq connection per call, in autocommit mode, with the
  service's statement timeout (``-c statement_timeout``), an idle-in-transaction
  timeout, TCP keepalives and ``application_name``.  When the service names a
  ``schema``, the connection's ``search_path`` is set to it (then the extra
  schemas, then ``public``), the way Laravel/DreamFactory configure it.
* Introspection over ``pg_catalog`` in seven queries whatever the number of
  tables (tables, columns, constraints, indexes, routines, routine types, plus
  the default schema), inside one REPEATABLE READ READ ONLY snapshot.  Tables of
  the default schema are addressed by bare name, tables of ``extra_schemas`` as
  ``schema.table``.
* Values: JSON/JSONB come back as Python objects, ``numeric`` as ``Decimal``,
  ``uuid`` as ``UUID``, ``bytea`` as ``bytes``, intervals as ``timedelta``; JSON
  values are bound with ``Json``, arrays as array literals (so enum[] and uuid[]
  columns accept them), base64 text as ``bytea``.
* Errors: ``map_error`` by SQLSTATE; no driver exception leaves this module and
  no message carries SQL text, bound values or the password.
* Streaming through a server-side cursor (``DECLARE ... CURSOR`` + ``FETCH``).
* Prepared statements (service setting ``prepared_statements``, on by default):
  ``query`` runs a SQL text the service has seen ``PREPARE_AFTER`` times as
  ``EXECUTE`` of a statement prepared once per connection (LRU of
  ``PREPARED_PER_CONNECTION``), which spares PostgreSQL the parse and analysis of
  every call (and, once PostgreSQL settles on a generic plan, its planning: for
  that ``paginate`` writes the LIMIT as a literal).  Answers and errors are those
  of the plain SQL: parameter types are declared as psycopg2's literals type
  them, and anything PostgreSQL cannot prepare simply runs plain.  The EXECUTE
  carries the statement as a comment, for pg_stat_activity and the server logs.
* Stored procedures (``CALL``) and functions (``SELECT``), in named notation with
  every argument bound and cast to the declared parameter type.

psycopg2 interpolates parameters client-side with Python's ``%`` operator, and
the base class always passes a (possibly empty) tuple, so every SQL text that
reaches ``cursor.execute`` here is interpolated: a literal ``%`` must be written
``%%``.  ``quote`` therefore doubles ``%`` inside identifiers, and every
``execute`` in this module passes a tuple.

Imports only ``errors`` and ``metadata`` from the project (plus the driver, and
gevent lazily when psycogreen is active).
"""
from __future__ import annotations

import base64
import binascii
import datetime as _dt
import json
import math
import re
import uuid
from collections import OrderedDict
from decimal import Decimal, InvalidOperation
from typing import Any, Sequence

import psycopg2
import psycopg2.extensions as pgext
import psycopg2.extras

from ..errors import (DatabaseError, DatabaseUnavailable, InvalidArguments, McpFlaskError,
                      QueryTimeout)
from ..metadata import (INTEGER_TYPES, Catalog, Column, ForeignKey, Routine, RoutineParam, Table,
                        derive_relations)
from .base import Dialect

#: ``pg_constraint.confupdtype`` / ``confdeltype`` codes as DreamFactory spells them.
FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}

#: Relation kinds served as tables: ordinary, partitioned, view, materialized view, foreign.
RELKINDS = ("r", "p", "v", "m", "f")
VIEW_RELKINDS = ("v", "m")

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

#: Pseudo-types an argument cannot be cast to (polymorphic functions resolve them).
PSEUDO_ARG_TYPES = frozenset({"\"any\"", "any", "anyelement", "anyarray", "anynonarray", "anyenum",
                              "anyrange", "anymultirange", "anycompatible", "anycompatiblearray",
                              "anycompatiblenonarray", "anycompatiblerange",
                              "anycompatiblemultirange", "record", "cstring"})
#: format_type(oid, NULL) spellings whose bare cast would impose a length of 1.
UNSIZED_CASTS = {"character": "bpchar", "bit": None}

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

#: Most prepared statements one connection keeps; preparing one more DEALLOCATEs the least
#: recently used (PostgreSQL keeps every prepared statement's plan in the backend's memory).
PREPARED_PER_CONNECTION = 128
#: A SQL text is prepared once the service has run it this many times: preparing costs a
#: round trip, which a one-off statement (an IN list of a new length, an ad hoc filter)
#: would never earn back.  Counted per service, so a hot text is prepared on a connection
#: the first time that connection runs it.
PREPARE_AFTER = 2
#: Bound of the per-service memory of counted and of unpreparable SQL texts (emptied when full).
PREPARE_MEMORY = 1024
#: Characters of the statement repeated as a comment after ``EXECUTE`` (pg_stat_activity
#: keeps 1024 bytes of a query by default).
EXECUTE_COMMENT = 1000

#: Words in libpq/psycopg2 messages that mean the connection itself is gone (no SQLSTATE).
_GONE_WORDS = ("server closed the connection", "connection already closed", "ssl syscall",
               "could not receive data", "could not send data", "no connection to the server",
               "terminating connection", "connection has been closed", "eof detected",
               "lost synchronization")


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


def _strip_values(message: str) -> str:
    """Drop the double-quoted parts of a data-error message: in class 22 they are values."""
    message = re.sub(r'\s*:\s*"(?:[^"]|"")*"', "", message)
    return re.sub(r'\s*"(?:[^"]|"")*"', "", message).strip()


def _first_line(text: str, limit: int = 300) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line[:limit]


# --------------------------------------------------------------------- prepared statements
class PreparingConnection(pgext.connection):
    """A psycopg2 connection with a slot for its prepared statements (the C type takes no
    attributes).  ``connect`` opens these; a connection of any other class runs plain SQL."""

    __slots__ = ("mcpf_statements",)


class _Statements:
    """One connection's prepared statements: ``(sql, types) -> (name, EXECUTE text)``, LRU first."""

    __slots__ = ("names", "seq", "stale")

    def __init__(self):
        self.names: OrderedDict = OrderedDict()
        self.seq = 0
        #: Names still prepared in the session but no longer in ``names`` (a plan that went
        #: stale inside a transaction): DEALLOCATEd when the connection is next idle.
        self.stale: list[str] = []


#: Parameter types by Python type, as psycopg2's literal types them in plain SQL: text,
#: NULL and JSON become untyped literals (``unknown``: PostgreSQL infers the type from the
#: context, exactly as it does for the literal), the others carry their type.
_FIXED_PARAM_TYPES = {str: "unknown", type(None): "unknown", psycopg2.extras.Json: "unknown",
                      bool: "boolean", bytes: "bytea", bytearray: "bytea", memoryview: "bytea",
                      Decimal: "numeric"}
_INT4_MIN, _INT4_MAX = -2 ** 31, 2 ** 31 - 1
_INT8_MIN, _INT8_MAX = -2 ** 63, 2 ** 63 - 1


def param_types(params: Sequence) -> tuple[str, ...] | None:
    """The PREPARE parameter types that make ``EXECUTE`` answer as the plain SQL would, or
    None when a value's literal type is not known here (the statement then runs plain).

    Declaring the type of a typed literal matters: ``id > 1.5`` compares as numeric, but a
    parameter inferred from ``id`` would be integer and 1.5 would round to 2.
    """
    types = []
    for value in params:
        kind = type(value)
        name = _FIXED_PARAM_TYPES.get(kind)
        if name is None:
            if kind is int:
                # How PostgreSQL types the integer literal psycopg2 writes.
                name = ("int4" if _INT4_MIN <= value <= _INT4_MAX
                        else "int8" if _INT8_MIN <= value <= _INT8_MAX else "numeric")
            elif kind is float:
                # 1.5 and 1e+100 are numeric literals; psycopg2 writes 'NaN'::float for the rest.
                name = "numeric" if math.isfinite(value) else "float8"
            else:
                return None
        types.append(name)
    return tuple(types)


_PERCENT = re.compile(r"%(.?)", re.S)


def numbered_sql(sql: str, count: int) -> str | None:
    """``sql`` with psycopg2's ``%s`` placeholders as ``$1..$n`` (``%%`` stays ``%%``), or None
    when it holds another ``%`` form or not ``count`` placeholders (psycopg2 decides then)."""
    n = 0
    bad = False

    def number(m):
        nonlocal n, bad
        c = m.group(1)
        if c == "%":
            return "%%"
        if c == "s":
            n += 1
            return f"${n}"
        bad = True
        return m.group(0)
    text = _PERCENT.sub(number, sql)
    return None if bad or n != count else text


# --------------------------------------------------------------------- catalog SQL
# The type facts every mapping needs, for a pg_type row ``t``: the base type after
# unwrapping a domain (``bt``), its element type when it is an array (``et``), and
# the enum labels of whichever of the two is an enum.
_TYPE_FACTS = """
    bt.typname::text, bt.typtype::text, bt.typcategory::text,
    et.typname::text, et.typtype::text, et.typcategory::text, format_type(et.oid, NULL),
    CASE WHEN COALESCE(et.typtype, bt.typtype) = 'e' THEN
        ARRAY(SELECT e.enumlabel::text FROM pg_enum e
              WHERE e.enumtypid = COALESCE(et.oid, bt.oid) ORDER BY e.enumsortorder) END"""
_TYPE_JOINS = """
    JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
    LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'"""

# Partitions are left out (``relispartition``): the partitioned parent serves their rows.
_RELATION_FILTER = f"""
    n.nspname = ANY(%s) AND c.relkind IN ({", ".join(f"'{k}'" for k in RELKINDS)})
    AND NOT c.relispartition"""

SCHEMAS_SQL = """
SELECT current_schema()::text,
       ARRAY(SELECT nspname::text FROM pg_namespace WHERE nspname = ANY(%s))"""

TABLES_SQL = f"""
SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, obj_description(c.oid, 'pg_class')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_RELATION_FILTER}
ORDER BY n.nspname, c.relname"""

COLUMNS_SQL = f"""
SELECT a.attrelid, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.attidentity::text, a.attgenerated::text, pg_get_expr(d.adbin, d.adrelid),
       col_description(a.attrelid, a.attnum),
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
       {_TYPE_FACTS}
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
{_TYPE_JOINS}
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE {_RELATION_FILTER} AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum"""

# Primary, unique and foreign keys with their column names in key order.  Clones of
# a foreign key made for each partition of a partitioned table (conparentid <> 0)
# are left out: the parent constraint describes them all.
CONSTRAINTS_SQL = f"""
SELECT con.conrelid, con.conname::text, con.contype::text,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num
             ORDER BY k.ord),
       rn.nspname::text, rc.relname::text,
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num
             ORDER BY k.ord),
       con.confupdtype::text, con.confdeltype::text
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class rc ON rc.oid = con.confrelid
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE {_RELATION_FILTER} AND con.contype IN ('p', 'u', 'f') AND con.conparentid = 0
ORDER BY con.conrelid, con.conname"""

INDEXES_SQL = f"""
SELECT i.indrelid, ic.relname::text, i.indisunique, i.indpred IS NOT NULL OR i.indexprs IS NOT NULL,
       i.indnkeyatts,
       ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num
             WHERE k.ord <= i.indnkeyatts ORDER BY k.ord)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE {_RELATION_FILTER}"""

# Callable routines of the service's schemas.  Left out: aggregates and window
# functions (prokind), C/internal-language functions, trigger and handler functions,
# functions taking ``internal``, functions owned by an extension, and functions
# returning a bare ``record`` without OUT/TABLE columns (a caller would have to
# write a column definition list).
ROUTINES_SQL = """
SELECT p.oid, n.nspname::text, p.proname::text, p.prokind::text, p.proretset,
       p.prorettype::int8, format_type(p.prorettype, NULL), rt.typtype::text, rt.typname::text,
       COALESCE(p.proallargtypes, p.proargtypes::oid[])::int8[],
       p.proargmodes::text[], p.proargnames, p.pronargdefaults,
       ARRAY(SELECT pg_get_function_arg_default(p.oid, g)
             FROM generate_series(1, COALESCE(array_length(p.proallargtypes, 1), p.pronargs)) g
             ORDER BY g),
       CASE WHEN rt.typtype = 'c' THEN
           ARRAY(SELECT a.attname::text FROM pg_attribute a
                 WHERE a.attrelid = rt.typrelid AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY a.attnum) END,
       obj_description(p.oid, 'pg_proc')
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang
JOIN pg_type rt ON rt.oid = p.prorettype
WHERE n.nspname = ANY(%s) AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND p.prokind IN ('f', 'p')
  AND l.lanname NOT IN ('internal', 'c')
  AND rt.typname NOT IN ('trigger', 'event_trigger', 'internal', 'language_handler',
                         'fdw_handler', 'index_am_handler', 'tsm_handler', 'table_am_handler')
  AND NOT ('internal'::regtype::oid = ANY(p.proargtypes::oid[]))
  AND NOT (rt.typname = 'record' AND p.proallargtypes IS NULL)
  AND NOT EXISTS (SELECT 1 FROM pg_depend dep
                  WHERE dep.classid = 'pg_proc'::regclass AND dep.objid = p.oid AND dep.deptype = 'e')
ORDER BY n.nspname, p.proname, p.oid"""

TYPES_SQL = f"""
SELECT t.oid::int8, format_type(t.oid, NULL), {_TYPE_FACTS}
FROM pg_type t
{_TYPE_JOINS}
WHERE t.oid = ANY(%s::oid[])"""


# --------------------------------------------------------------------- the dialect
class PostgresDialect(Dialect):
    """PostgreSQL 11+ (OUT parameters in ``CALL`` need 14+) through psycopg2."""

    name = "postgresql"
    placeholder = "%s"
    supports_routines = True
    #: Rows per FETCH when the caller does not say (callers may resize batches: see ``stream``).
    stream_batch = 2000
    #: Most rows ``stream`` turns into Python tuples (and yields) at a time.
    stream_slice = 1000
    #: Column types whose values ``decode_value`` never changes, so reads skip the per-cell
    #: call (Dialect.decoder).  It only rewrites bytea memoryviews, ranges, arrays and lists
    #: of those: none of these types' values (ints, Decimal, float, bool, str, date/time,
    #: UUID).  Not "string" (enums, ranges and composites map to it), "array", "binary", JSON.
    plain_types = frozenset({"smallint", "integer", "bigint", "smallid", "id", "bigid", "decimal", "money",
                             "float", "double", "boolean", "text", "date", "time", "timetz", "datetime",
                             "datetimetz", "uuid"})
    application_name = "mcp-flask"
    #: Lower bound of the idle-in-transaction timeout: it only catches leaked or
    #: abandoned transactions (a stream whose reader stalled), never a live statement.
    idle_in_transaction_floor = 60.0

    def __init__(self, service):
        super().__init__(service)
        self._dsn: dict | None = None
        #: (schema, constraint or index name) -> (table name, column names); read by map_error.
        self._constraint_columns: dict[tuple[str | None, str], tuple[str, tuple[str, ...]]] = {}
        self.prepared_statements = bool(getattr(service, "prepared_statements", True))
        #: SQL text -> times run unprepared (up to PREPARE_AFTER), over all connections.
        self._seen: dict[str, int] = {}
        #: SQL texts PostgreSQL refused to PREPARE although they run plain (an untyped
        #: parameter, "could not determine data type of parameter $1"): always run plain.
        self._unpreparable: set[str] = set()

    # ---------------------------------------------------------------- identifiers
    def quote(self, name: str) -> str:
        """Double-quote ``name``; ``%`` is doubled because psycopg2 interpolates with ``%``."""
        return super().quote(name).replace("%", "%%")

    def routine_sql(self, routine: Routine) -> str:
        """The quoted, schema-qualified name of a routine."""
        if routine.schema:
            return f"{self.quote(routine.schema)}.{self.quote(routine.native_name)}"
        return self.quote(routine.native_name)

    # ---------------------------------------------------------------- connections
    def connect_params(self) -> dict:
        """libpq keywords for this service: the URL's own, then ours (never logged: has the password)."""
        if self._dsn is None:
            self._dsn = self._build_params()
        return dict(self._dsn)

    def _build_params(self) -> dict:
        url = re.sub(r"^(postgres(?:ql)?)\+\w+:", r"\1:", self.service.url)
        try:
            params = pgext.parse_dsn(url)
        except psycopg2.Error:
            raise DatabaseUnavailable("the service URL is not a valid PostgreSQL URL") from None
        # libpq counts whole seconds; anything below one would mean "wait forever".
        params["connect_timeout"] = str(max(1, math.ceil(self.service.connect_timeout)))
        params.setdefault("application_name", self.application_name)
        for key, value in (("keepalives", "1"), ("keepalives_idle", "30"),
                           ("keepalives_interval", "10"), ("keepalives_count", "3")):
            params.setdefault(key, value)
        timeout_ms = max(1, int(self.service.statement_timeout * 1000))
        idle_ms = int(max(self.idle_in_transaction_floor, 2 * self.service.statement_timeout) * 1000)
        # default_transaction_read_only: a statement outside BEGIN READ WRITE cannot write,
        # so a single SELECT needs no BEGIN READ ONLY / COMMIT round trips (Database.read).
        options = [f"-c statement_timeout={timeout_ms}",
                   f"-c idle_in_transaction_session_timeout={idle_ms}",
                   "-c default_transaction_read_only=on"]
        if self.service.schema:
            path = [self.service.schema] + [s for s in self.service.extra_schemas
                                            if s != self.service.schema]
            if "public" not in path:
                path.append("public")
            value = ",".join('"' + s.replace('"', '""') + '"' for s in path)
            # libpq splits ``options`` at unescaped spaces and unescapes backslashes.
            value = value.replace("\\", "\\\\").replace(" ", "\\ ")
            options.append(f"-c search_path={value}")
        # Ours come last so they win over the same setting in the URL.
        params["options"] = " ".join(([params["options"]] if params.get("options") else []) + options)
        return params

    def where(self) -> str:
        """The service's address for messages and logs: no password, ever."""
        try:
            p = self.connect_params()
        except DatabaseUnavailable:
            return "(invalid URL)"
        user = p.get("user", "")
        host = p.get("host") or "localhost"
        port = p.get("port") or "5432"
        return f"postgresql://{user + '@' if user else ''}{host}:{port}/{p.get('dbname', '')}"

    def connect(self):
        """Open an autocommit connection with the service's timeouts and our typecasters.

        Raises ``DatabaseUnavailable`` (its message names the server, never the password).
        """
        params = self.connect_params()
        try:
            conn = self._open(params)
        except psycopg2.Error as exc:
            reason = _first_line(str(exc)) or "connection failed"
            if params.get("password"):
                reason = reason.replace(params["password"], "***")
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL at {self.where()}: {reason}") from None
        try:
            conn.autocommit = True
            # Per-connection typecasters (no round trip): json/jsonb -> Python objects
            # whatever the process-wide registrations are, uuid -> uuid.UUID.
            psycopg2.extras.register_default_json(conn, loads=json.loads)
            psycopg2.extras.register_default_jsonb(conn, loads=json.loads)
            psycopg2.extras.register_uuid(conn_or_curs=conn)
            if self.prepared_statements and isinstance(conn, PreparingConnection):
                conn.mcpf_statements = _Statements()
        except Exception:
            self.close(conn)
            raise DatabaseUnavailable(f"cannot set up the connection to {self.where()}") from None
        return conn

    def _open(self, params: dict):
        params = dict(params, connection_factory=PreparingConnection)
        if pgext.get_wait_callback() is None:
            return psycopg2.connect(**params)
        # With psycogreen, libpq connects in non-blocking mode, where it ignores
        # connect_timeout (it is the caller's job with PQconnectPoll): enforce it here.
        try:
            import gevent
        except ImportError:                 # a wait callback from some other green library
            return psycopg2.connect(**params)
        timer = gevent.Timeout(self.service.connect_timeout)
        timer.start()
        try:
            return psycopg2.connect(**params)
        except gevent.Timeout as t:
            if t is not timer:
                raise
            raise psycopg2.OperationalError("timeout expired") from None
        finally:
            timer.close()

    def ping(self, conn) -> None:
        """Raise ``DatabaseUnavailable``/``DatabaseError`` unless ``conn`` answers ``SELECT 1``."""
        if conn.closed:
            raise DatabaseUnavailable("the database connection is closed")
        self.query(conn, "SELECT 1")

    def cancel(self, conn) -> bool:
        """Ask the server to stop the statement running on ``conn`` (thread/greenlet safe).

        Sends a PostgreSQL cancel request on a separate socket; the running
        statement then fails with SQLSTATE 57014 (mapped to ``QueryTimeout``).
        Best effort: returns False when the request could not be sent (the
        statement timeout still bounds the statement).
        """
        try:
            conn.cancel()
            return True
        except Exception:  # noqa: BLE001 - closed connection or server unreachable
            return False

    def backend_pid(self, conn) -> int | None:
        """The server process id serving ``conn`` (for logs and pg_stat_activity), no round trip."""
        try:
            return conn.info.backend_pid or None
        except Exception:  # noqa: BLE001
            return None

    def server_version(self, conn) -> int:
        """The server version as an integer (150004 for 15.4)."""
        return conn.server_version

    def transaction_status(self, conn) -> str:
        """``idle``, ``active``, ``in_transaction``, ``in_error`` or ``unknown`` (broken/closed)."""
        if conn.closed:
            return "unknown"
        return {pgext.TRANSACTION_STATUS_IDLE: "idle", pgext.TRANSACTION_STATUS_ACTIVE: "active",
                pgext.TRANSACTION_STATUS_INTRANS: "in_transaction",
                pgext.TRANSACTION_STATUS_INERROR: "in_error"}.get(conn.info.transaction_status, "unknown")

    def in_transaction(self, conn) -> bool:
        """True when ``conn`` is inside a transaction block (open or failed)."""
        return self.transaction_status(conn) in ("in_transaction", "in_error")

    def is_broken(self, conn) -> bool:
        """True when ``conn`` is closed or its state is unknown: discard it, do not reuse it."""
        return self.transaction_status(conn) == "unknown"

    def reset(self, conn) -> None:
        """Make a connection fit to go back to the pool: roll back any open transaction.

        Raises ``DatabaseUnavailable`` when the connection is broken.
        """
        status = self.transaction_status(conn)
        if status == "unknown":
            raise DatabaseUnavailable("the database connection is broken")
        if status in ("in_transaction", "in_error"):
            self.execute(conn, "ROLLBACK")

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

    # ---------------------------------------------------------------- transactions
    autocommit_reads = True

    def session_read_only(self, conn) -> bool | None:
        """The session default is still ``default_transaction_read_only = on`` (None: cannot tell).

        PostgreSQL >= 14 reports this setting to the client whenever it changes
        (ParameterStatus), so libpq knows it without a round trip: a routine that ran
        ``set_config('default_transaction_read_only', 'off', false)`` is noticed here
        and the connection is discarded.  Older servers report nothing (None): reads
        then keep their explicit read-only transaction.
        """
        try:
            status = conn.get_parameter_status("default_transaction_read_only")
        except Exception:  # noqa: BLE001 - a closed connection
            return False
        return None if status is None else status == "on"

    def begin(self, conn, read_only: bool = False) -> None:
        """``BEGIN READ ONLY`` or ``BEGIN READ WRITE`` (the session default is read-only;
        writes in a read-only transaction fail with SQLSTATE 25006)."""
        self.execute(conn, "BEGIN READ ONLY" if read_only else "BEGIN READ WRITE")

    def commit(self, conn) -> None:
        """``COMMIT``; raises if the server rolled back instead (the transaction had failed)."""
        cur = None
        try:
            cur = conn.cursor()
            cur.execute("COMMIT", ())
            tag = cur.statusmessage
        except Exception as exc:  # noqa: BLE001
            raise self.map_error(exc) from None
        finally:
            if cur is not None:
                cur.close()
        if tag == "ROLLBACK":
            # PostgreSQL answers COMMIT of a failed transaction with a silent ROLLBACK.
            raise DatabaseError("the transaction was rolled back because a statement in it failed",
                                kind="rolled_back")

    # ---------------------------------------------------------------- composition
    def paginate(self, limit: int | None, offset: int | None) -> tuple[str, list]:
        """``LIMIT``/``OFFSET`` with bound values (PostgreSQL has no ``LIMIT -1``).

        With prepared statements on, the LIMIT is written as an integer literal (``int()``
        of it, so nothing but digits reaches the SQL): with ``LIMIT $n`` the planner must
        guess the row count of a generic plan (a tenth of the table), so PostgreSQL would
        plan every EXECUTE afresh and preparing would save next to nothing.  OFFSET stays
        bound: its values are many, and a page beyond the first is rarely the hot path.
        """
        sql, params = "", []
        if limit is not None:
            if self.prepared_statements:
                sql += f" LIMIT {int(limit):d}"
            else:
                sql += " LIMIT %s"
                params.append(int(limit))
        if offset:
            sql += " OFFSET %s"
            params.append(int(offset))
        return sql, params

    def like_sql(self, column_sql: str, negate: bool = False) -> str:
        """``col LIKE %s ESCAPE E'\\\\'``: an escape-string literal means one backslash
        whatever ``standard_conforming_strings`` is (``'\\'`` would not parse with it off)."""
        esc = self.like_escape.replace("\\", "\\\\").replace("'", "''")
        return f"{column_sql} {'NOT ' if negate else ''}LIKE %s ESCAPE E'{esc}'"

    # ---------------------------------------------------------------- execution
    def query(self, conn, sql: str, params: Sequence = ()) -> tuple[list[str], list[tuple]]:
        """Run a query; its column names and all rows (``stream`` for large results).

        With the service's ``prepared_statements`` on, a SQL text run ``PREPARE_AFTER``
        times is prepared on the connection when it is idle (``PREPARE mcpf_<n> (types)
        AS ...``) and then run as ``EXECUTE mcpf_<n>(values)``, also inside transactions.
        Otherwise, and whenever preparing does not apply, plain SQL as the base class runs it.
        """
        state = getattr(conn, "mcpf_statements", None)
        if state is None:
            return super().query(conn, sql, params)
        params = tuple(params)
        types = param_types(params)
        if types is None:
            return super().query(conn, sql, params)
        key = (sql, types)
        idle = conn.info.transaction_status == pgext.TRANSACTION_STATUS_IDLE
        if state.stale and idle:
            self._drop_stale(conn, state)
        entry = state.names.get(key)
        if entry is None:
            # Runs inside transactions count too, but PREPARE happens only outside one:
            # a failed PREPARE would abort the caller's transaction.
            if not self._hot(sql) or not idle or sql in self._unpreparable:
                return super().query(conn, sql, params)
            entry = self._prepare(conn, state, key)
            if entry is None:
                # Plain SQL decides: its answer, or its error exactly as without preparing.
                result = super().query(conn, sql, params)
                if len(self._unpreparable) >= PREPARE_MEMORY:
                    self._unpreparable.clear()
                self._unpreparable.add(sql)
                return result
        else:
            state.names.move_to_end(key)
        cur = None
        try:
            cur = conn.cursor()
            cur.execute(entry[1], params)
            if cur.description is None:
                return [], []
            return [d[0] for d in cur.description], cur.fetchall()
        except Exception as exc:  # noqa: BLE001 - every driver error is mapped
            if not self._forget_failed(conn, state, key, entry[0], exc, idle):
                raise self.map_error(exc) from None
        finally:
            if cur is not None:
                cur.close()
        # The statement's plan is gone or stale and nothing else ran in between (no
        # transaction): answer with the plain SQL; the next call prepares it afresh.
        return super().query(conn, sql, params)

    def _hot(self, sql: str) -> bool:
        """Count one unprepared run of ``sql``; True once it is worth preparing."""
        seen = self._seen
        n = seen.get(sql, 0)
        if n + 1 >= PREPARE_AFTER:
            return True
        if n == 0 and len(seen) >= PREPARE_MEMORY:
            seen.clear()
        seen[sql] = n + 1
        return False

    def _prepare(self, conn, state: _Statements, key: tuple) -> tuple[str, str] | None:
        """PREPARE ``key``'s SQL on idle ``conn``; its ``(name, EXECUTE text)``, or None when
        PostgreSQL (or psycopg2) would not prepare it.  Raises only when the connection is
        gone or the PREPARE was cancelled (a cancel must stop the call)."""
        sql, types = key
        numbered = numbered_sql(sql, len(types))
        if numbered is None:
            return None
        state.seq += 1
        name = f"mcpf_{state.seq}"
        head = f"PREPARE {name} ({', '.join(types)}) AS " if types else f"PREPARE {name} AS "
        cur = None
        try:
            cur = conn.cursor()
            # An empty tuple, so psycopg2 turns the %% of the SQL into % (and $n stays as is).
            cur.execute(head + numbered, ())
        except Exception as exc:  # noqa: BLE001
            if self.is_disconnect(exc) or getattr(exc, "pgcode", None) == QUERY_CANCELED:
                raise self.map_error(exc) from None
            return None
        finally:
            if cur is not None:
                cur.close()
        execute = f"EXECUTE {name}({', '.join(['%s'] * len(types))})" if types else f"EXECUTE {name}"
        # The statement as a line comment, so pg_stat_activity and the server's logs show what
        # runs, not just a name.  One line (a newline would end the comment), at most
        # EXECUTE_COMMENT characters, no cut-off "%" (psycopg2 would take it for a placeholder).
        shown = numbered[:EXECUTE_COMMENT].replace("\n", " ").replace("\r", " ").rstrip("%")
        execute += " -- " + shown
        state.names[key] = entry = (name, execute)
        if len(state.names) > PREPARED_PER_CONNECTION:
            _, (old, _) = state.names.popitem(last=False)
            self._deallocate(conn, state, old)
        return entry

    def _forget_failed(self, conn, state: _Statements, key: tuple, name: str, exc: BaseException,
                       idle: bool) -> bool:
        """After a failed EXECUTE: True when the plain SQL should answer instead.

        Only for a plan PostgreSQL will not reuse (a column changed type) or a statement
        the session lost (DEALLOCATE ALL, DISCARD ALL); the entry is forgotten either way.
        Inside a transaction the error stands (the transaction is aborted): the caller
        maps it as any other.
        """
        code = getattr(exc, "pgcode", None)
        if code not in (FEATURE_NOT_SUPPORTED, INVALID_STATEMENT_NAME):
            return False
        if state.names.get(key, (None,))[0] == name:
            del state.names[key]
        if code == FEATURE_NOT_SUPPORTED:
            if idle:
                self._deallocate(conn, state, name)
            else:
                state.stale.append(name)
        return idle

    def _deallocate(self, conn, state: _Statements, name: str) -> None:
        """``DEALLOCATE name`` on idle ``conn``, never raising: a connection that broke is
        noticed by the statement that follows; a statement that could not go waits in
        ``state.stale``."""
        cur = None
        try:
            cur = conn.cursor()
            cur.execute(f"DEALLOCATE {name}", ())
        except Exception as exc:  # noqa: BLE001
            if getattr(exc, "pgcode", None) != INVALID_STATEMENT_NAME and not self.is_disconnect(exc):
                state.stale.append(name)
        finally:
            if cur is not None:
                cur.close()

    def _drop_stale(self, conn, state: _Statements) -> None:
        """DEALLOCATE the statements left behind by failures (one try each)."""
        stale, state.stale = state.stale, []
        for name in stale:
            cur = None
            try:
                cur = conn.cursor()
                cur.execute(f"DEALLOCATE {name}", ())
            except Exception:  # noqa: BLE001 - gone already, or the connection broke
                pass
            finally:
                if cur is not None:
                    cur.close()

    def stream(self, conn, sql: str, params: Sequence = (), batch: int | None = None):
        """Yield ``(names, rows)`` batches from a server-side cursor: memory stays flat.

        A ``DECLARE ... NO SCROLL CURSOR`` read with ``FETCH FORWARD batch``.
        Cursors live in a transaction: inside the caller's transaction the cursor
        is closed at the end and the transaction left open; on an idle connection
        the stream opens its own transaction and ends it (COMMIT, or ROLLBACK
        after an error).  Closing the generator early does the same cleanup, so
        the connection goes back to the pool as it came.  (psycopg2's named
        cursors are not used: they refuse autocommit connections, and switching
        autocommit off would hide a caller's own ``BEGIN`` from psycopg2.)

        Each FETCH of ``batch`` rows is a round trip, and is yielded in slices of
        at most ``stream_slice`` rows.  A consumer that learns how wide the rows are
        may ``send()`` a new batch size into the generator (``record_reads`` sizes
        batches by their encoded bytes), which the next FETCH uses.
        """
        batch = int(batch or self.stream_batch)
        cursor_name = self.quote("mcpf_" + uuid.uuid4().hex)
        cur = None
        own_tx = declared = failed = False
        try:
            cur = conn.cursor()
            if conn.info.transaction_status == pgext.TRANSACTION_STATUS_IDLE:
                cur.execute("BEGIN", ())
                own_tx = True
            cur.execute(f"DECLARE {cursor_name} NO SCROLL CURSOR FOR {sql}", tuple(params))
            declared = True
            names = None
            while True:
                asked, got = batch, 0
                cur.execute(f"FETCH FORWARD {asked} FROM {cursor_name}", ())
                if names is None:
                    names = [d[0] for d in cur.description]
                # The FETCH result sits in libpq as compact text; it becomes Python tuples
                # at most stream_slice rows at a time.
                while True:
                    rows = cur.fetchmany(self.stream_slice)
                    if not rows:
                        break
                    got += len(rows)
                    wanted = yield names, rows
                    if wanted:
                        batch = max(1, int(wanted))
                if got < asked:
                    return      # the cursor is exhausted: no empty FETCH round trip
        except GeneratorExit:
            raise
        except Exception as exc:  # noqa: BLE001 - every driver error is mapped
            failed = True
            raise self.map_error(exc) from None
        finally:
            self._end_stream(conn, cur, cursor_name, own_tx, declared, failed)

    @staticmethod
    def _end_stream(conn, cur, cursor_name: str, own_tx: bool, declared: bool, failed: bool) -> None:
        """Close the stream's cursor (and its own transaction) without raising."""
        try:
            if conn.closed or cur is None:
                return
            status = conn.info.transaction_status
            if own_tx:
                if status == pgext.TRANSACTION_STATUS_INTRANS and not failed:
                    cur.execute("COMMIT", ())      # also closes the cursor
                elif status in (pgext.TRANSACTION_STATUS_INTRANS, pgext.TRANSACTION_STATUS_INERROR):
                    cur.execute("ROLLBACK", ())
            elif declared and status == pgext.TRANSACTION_STATUS_INTRANS:
                cur.execute(f"CLOSE {cursor_name}", ())
        except Exception:  # noqa: BLE001 - a broken connection is the pool's to discard
            pass
        finally:
            if cur is not None:
                try:
                    cur.close()
                except Exception:  # noqa: BLE001
                    pass

    # ---------------------------------------------------------------- values
    def bind_value(self, column: Column | None, value: Any) -> Any:
        """JSON value -> what psycopg2 should bind for ``column``.

        json/jsonb: ``Json(value)`` (text is taken as JSON text); arrays: an array
        literal; binary: base64 text -> bytes (``InvalidArguments`` if not base64).
        Everything else is bound as-is and converted by PostgreSQL's own input
        functions (dates, uuids, enums, intervals, numerics as text or numbers).
        """
        if column is None:
            if isinstance(value, dict):
                return psycopg2.extras.Json(value)
            return value
        return _bind_typed(column.type, value, f"column '{column.name}'",
                           column.extra.get("element_type"))

    def decoder(self, column: Column | None):
        """None (no per-cell call) for ``plain_types`` and for plain character columns
        (``string`` also covers enums, ranges and composites, which are decoded)."""
        if column is not None and column.type == "string":
            db_type = (column.db_type or "").lower()
            if db_type == "name" or db_type == "character" or db_type.startswith(("character varying",
                                                                                  "character(")):
                return None
        return super().decoder(column)

    def decode_value(self, column: Column | None, value: Any) -> Any:
        """Driver value -> Python value for the JSON encoder.

        Leaves Decimal, datetimes, timedelta, UUID and JSON objects alone; bytea
        memoryviews become bytes, ranges their text form, and arrays of types
        psycopg2 does not know (enum[] ...) are parsed into lists.
        """
        if value is None:
            return None
        if isinstance(value, memoryview):
            return value.tobytes()
        if isinstance(value, str):
            if column is not None and column.type == "array":
                return parse_array(value)
            return value
        if isinstance(value, list):
            if any(isinstance(v, (memoryview, list)) for v in value):
                return [self.decode_value(None, v) for v in value]
            return value
        if isinstance(value, psycopg2.extras.Range):
            return _range_text(value)
        return value

    # ---------------------------------------------------------------- introspection
    def introspect(self, conn) -> Catalog:
        """Tables, views, columns, keys, relations and routines of the service's schemas.

        Seven queries in one REPEATABLE READ snapshot (when the connection is idle),
        whatever the number of tables.  Raises ``DatabaseError`` (kind ``schema``)
        when a configured schema does not exist.
        """
        own = conn.info.transaction_status == pgext.TRANSACTION_STATUS_IDLE
        if own:
            self.execute(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            catalog = self._introspect(conn)
        except BaseException:
            if own:
                try:
                    self.execute(conn, "ROLLBACK")
                except McpFlaskError:
                    pass
            raise
        if own:
            self.execute(conn, "COMMIT")
        return catalog

    def _introspect(self, conn) -> Catalog:
        wanted = [s for s in ([self.service.schema] if self.service.schema else [])
                  + list(self.service.extra_schemas) if s]
        _, rows = self.query(conn, SCHEMAS_SQL, (wanted,))
        current, existing = rows[0]
        missing = [s for s in wanted if s not in existing]
        if missing:
            raise DatabaseError(f"schema '{missing[0]}' does not exist in the database", kind="schema")
        default = self.service.schema or current or "public"
        schemas = [default] + [s for s in self.service.extra_schemas if s and s != default]

        def public_name(nsp: str, rel: str) -> str:
            return rel if nsp == default else f"{nsp}.{rel}"

        _, rels = self.query(conn, TABLES_SQL, (schemas,))
        _, cols = self.query(conn, COLUMNS_SQL, (schemas,))
        _, cons = self.query(conn, CONSTRAINTS_SQL, (schemas,))
        _, idxs = self.query(conn, INDEXES_SQL, (schemas,))

        by_oid = {}
        for oid, nsp, rel, kind, comment in rels:
            by_oid[oid] = {"schema": nsp, "name": rel, "kind": kind, "comment": comment,
                           "cols": [], "pk": [], "fks": [], "unique1": set(), "indexed": set()}
        for row in cols:
            if row[0] in by_oid:
                by_oid[row[0]]["cols"].append(row)

        constraint_columns: dict = {}
        for relid, conname, contype, ccols, rnsp, rrel, rcols, upd, dele in cons:
            t = by_oid.get(relid)
            if t is None:
                continue
            constraint_columns[(t["schema"], conname)] = (public_name(t["schema"], t["name"]), tuple(ccols))
            if contype == "p":
                t["pk"] = list(ccols)
                t["indexed"].update(ccols)
                if len(ccols) == 1:
                    t["unique1"].add(ccols[0])
            elif contype == "u":
                if len(ccols) == 1:
                    t["unique1"].add(ccols[0])
            else:
                t["fks"].append(ForeignKey(
                    name=conname, columns=tuple(ccols), ref_table=public_name(rnsp, rrel),
                    ref_columns=tuple(rcols), on_update=FK_ACTIONS.get(upd), on_delete=FK_ACTIONS.get(dele)))
        for relid, iname, unique, partial_or_expr, nkey, icols in idxs:
            t = by_oid.get(relid)
            if t is None:
                continue
            t["indexed"].update(icols)
            if unique and not partial_or_expr:
                constraint_columns.setdefault((t["schema"], iname),
                                              (public_name(t["schema"], t["name"]), tuple(icols)))
                if nkey == 1 and len(icols) == 1:
                    t["unique1"].add(icols[0])

        tables: dict[str, Table] = {}
        for nsp in schemas:                     # default schema first, then extras in order
            for t in by_oid.values():
                if t["schema"] == nsp:
                    table = self._table(t, public_name(t["schema"], t["name"]))
                    tables[table.name] = table
        derive_relations(tables)
        procedures, functions = self._routines(conn, schemas, default)
        self._constraint_columns = constraint_columns
        return Catalog(tables=tables, procedures=procedures, functions=functions)

    def _table(self, t: dict, name: str) -> Table:
        """One Table from the grouped catalog rows."""
        pk = t["pk"]
        single_fk = {fk.columns[0]: fk for fk in t["fks"] if len(fk.columns) == 1}
        fk_cols = {c for fk in t["fks"] for c in fk.columns}
        columns = []
        for (_, cname, db_type, notnull, identity, generated, default_expr, comment, typmod,
             *facts) in t["cols"]:
            stype, length, precision, scale, extra = _map_type(facts, typmod)
            is_pk = cname in pk
            auto = bool(identity) or (default_expr or "").startswith("nextval(")
            if identity:
                extra["identity"] = "always" if identity == "a" else "by default"
            default = None
            if generated:
                # adbin holds the generation expression of a generated column, not a default.
                extra["generated"] = True
                extra["generation_expression"] = default_expr
            elif not (default_expr or "").startswith("nextval("):
                default = literal_default(default_expr, stype)
            elif default_expr:
                default = default_expr          # serial: the expression, kept as text
            if auto and is_pk and len(pk) == 1 and facts[0] in AUTO_ID_TYPES:
                stype = AUTO_ID_TYPES[facts[0]]
            fk = single_fk.get(cname)
            columns.append(Column(
                name=cname, type=stype, db_type=db_type, length=length, precision=precision,
                scale=scale, default=default, allow_null=not notnull, auto_increment=auto,
                is_primary_key=is_pk, is_unique=cname in t["unique1"], is_index=cname in t["indexed"],
                is_foreign_key=cname in fk_cols,
                ref_table=fk.ref_table if fk else None, ref_field=fk.ref_columns[0] if fk else None,
                ref_on_update=fk.on_update if fk else None, ref_on_delete=fk.on_delete if fk else None,
                comment=comment, extra=extra))
        return Table(name=name, columns=columns, is_view=t["kind"] in VIEW_RELKINDS,
                     schema=t["schema"], native_name=t["name"], foreign_keys=t["fks"],
                     comment=t["comment"])

    def _routines(self, conn, schemas: list[str], default_schema: str):
        """Procedures and functions (overloads under the first of their name), in two queries."""
        _, rows = self.query(conn, ROUTINES_SQL, (schemas,))
        oids = sorted({o for r in rows for o in (r[9] or [])} | {r[5] for r in rows})
        types: dict[int, tuple] = {}
        if oids:
            _, trows = self.query(conn, TYPES_SQL, (oids,))
            # oid -> (the catalog's spelling of the type, its facts)
            types = {r[0]: (r[1], tuple(r[2:])) for r in trows}
        procedures: dict[str, Routine] = {}
        functions: dict[str, Routine] = {}
        # Default schema first, then the extra schemas in their configured order;
        # within a name, creation order (oid) decides which overload is the main entry.
        rows = sorted(rows, key=lambda r: (schemas.index(r[1]), r[2], r[0]))
        for row in rows:
            routine = self._routine(row, types, default_schema)
            target = procedures if routine.kind == "procedure" else functions
            if routine.name in target:
                target[routine.name].overloads.append(routine)
            else:
                target[routine.name] = routine
        return procedures, functions

    def _routine(self, row, types: dict, default_schema: str) -> Routine:
        (oid, nsp, proname, prokind, retset, rettype, ret_db, ret_typtype, ret_typname,
         argtypes, modes, names, ndefaults, defaults, comp_cols, comment) = row
        argtypes = argtypes or []
        modes = modes or ["i"] * len(argtypes)
        names = names or [""] * len(argtypes)
        n_inputs = sum(1 for m in modes if m in ("i", "b", "v"))
        first_default = n_inputs - (ndefaults or 0)
        params: list[RoutineParam] = []
        out_cols: list[str] = []
        input_no = 0
        for i, (toid, mode) in enumerate(zip(argtypes, modes)):
            pname = names[i] if i < len(names) and names[i] else f"${i + 1}"
            if mode == "t":                        # RETURNS TABLE column: a result, not a parameter
                out_cols.append(pname)
                continue
            db_type, facts = types.get(toid, (None, None))
            mapped = _map_type(facts) if facts else ("string", None, None, None, {})
            stype = mapped[0]
            param_type = {"o": "OUT", "b": "INOUT"}.get(mode, "IN")
            has_default = False
            default = None
            if mode in ("i", "b", "v"):
                has_default = input_no >= first_default
                if has_default:
                    default = literal_default(defaults[i] if i < len(defaults) else None, stype)
                input_no += 1
            if mode in ("o", "b"):
                out_cols.append(pname)
            p = RoutineParam(name=pname, position=len(params) + 1, param_type=param_type, type=stype,
                             db_type=db_type or "", default=default, has_default=has_default)
            # RoutineParam has no field for these; call_routine needs them.
            p.pg_variadic = mode == "v"
            p.pg_element_type = mapped[4].get("element_type")
            params.append(p)
        kind = "procedure" if prokind == "p" else "function"
        return_type = return_db_type = None
        result_columns = None
        if kind == "function":
            return_db_type = ret_db
            if retset:
                return_type = "table"
            elif ret_typtype == "c" or ret_typname == "record":
                return_type = "row"
            elif ret_typname != "void":
                facts = types.get(rettype, (None, None))[1]
                return_type = _map_type(facts)[0] if facts else "string"
            if out_cols:
                result_columns = out_cols
            elif comp_cols is not None:
                result_columns = list(comp_cols)
            elif retset:
                result_columns = [proname]
        return Routine(name=proname if nsp == default_schema else f"{nsp}.{proname}", kind=kind,
                       params=params, return_type=return_type, return_db_type=return_db_type,
                       returns_set=bool(retset), schema=nsp, native_name=proname,
                       result_columns=result_columns, description=comment)

    # ---------------------------------------------------------------- routines
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

    # ---------------------------------------------------------------- errors
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
