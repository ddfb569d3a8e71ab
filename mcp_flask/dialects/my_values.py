"""MySQL/MariaDB value conversion in both directions, as a mixin of ``MysqlDialect``.

This module owns ``MysqlValues``: ``bind_value`` (a JSON value as pymysql should
bind it for a column), ``decoder`` (which columns need no per-cell decoding) and
``decode_value`` (a pymysql value made ready for JSON).  ``decoder`` falls back to
``Dialect.decoder`` through ``super()``, so ``MysqlValues`` must come before
``Dialect`` in the dialect's bases.

Imports ``errors``, ``metadata`` and ``dialects.my_types`` from the project.
"""
from __future__ import annotations

import base64
import binascii
import json
from datetime import date, datetime, timedelta

from ..errors import InvalidArguments
from ..metadata import Column
from .my_types import format_time, to_naive_utc


class MysqlValues:
    """``bind_value``, ``decoder`` and ``decode_value`` for ``MysqlDialect``."""

    # ---------------------------------------------------------------- values
    def bind_value(self, column: Column | None, value):
        """A JSON value as pymysql should bind it for ``column``.

        bool -> 0/1; dict/list -> JSON text (for JSON columns numbers and booleans
        too; a string is taken as JSON text already); list -> ``a,b`` for SET
        columns; base64 text -> bytes for binary columns (``InvalidArguments`` when
        it is not base64); ISO datetimes with 'T' or an offset -> naive UTC datetime
        for datetime/timestamp columns.
        """
        if value is None:
            return None
        t = column.type if column is not None else None
        if t == "json":
            if isinstance(value, (str, bytes)):
                return value
            return json.dumps(value, ensure_ascii=False)
        if isinstance(value, bool):
            return int(value)
        if column is None:
            if isinstance(value, (dict, list, tuple)):
                return json.dumps(value, ensure_ascii=False)
            return value
        if column.extra.get("set") and isinstance(value, (list, tuple, set, frozenset)):
            return ",".join(str(v) for v in value)
        if t == "binary" and isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidArguments(f"column '{column.name}' holds binary data: send it as base64 text",
                                       details={"column": column.name}) from None
        if t in ("datetime", "timestamp", "datetimetz", "timestamptz"):
            return to_naive_utc(value)
        if isinstance(value, (dict, list, tuple)):
            return json.dumps(value, ensure_ascii=False)
        return value

    #: Column types whose values ``decode_value`` leaves alone, except BIT columns (typed
    #: boolean/integer, read as bytes) and SET columns (typed string): see ``decoder``.
    #: Column types ``decode_value`` leaves alone (base ``Dialect.decoder``: no per-cell call),
    #: except BIT and SET columns, which share the integer and string types (``decoder``).
    plain_types = frozenset({"integer", "bigint", "smallint", "mediumint", "tinyint", "id", "bigid",
                             "decimal", "double", "float", "string", "text", "mediumtext", "longtext", "uuid"})

    def decoder(self, column: Column | None):
        """None (no per-cell call) for columns whose values ``decode_value`` never changes:
        numbers, text and UUIDs, but not BIT or SET columns; else the per-value decoder."""
        if column is not None and (column.extra.get("set") or (column.db_type or "").lower().startswith("bit")):
            decode = self.decode_value
            return lambda value: decode(column, value)
        return super().decoder(column)

    def decode_value(self, column: Column | None, value):
        """A pymysql value read from ``column``, made ready for JSON encoding.

        TIME (timedelta) -> ``HH:MM:SS[.ffffff]``; JSON text -> objects; SET text ->
        list; BIT bytes -> int (bool for bit(1)); tinyint(1) -> bool; datetime text
        (from user variables) -> datetime.  Bytes stay bytes (the encoder base64s them).
        """
        if value is None:
            return None
        if isinstance(value, timedelta):
            return format_time(value)
        if column is None:
            return value
        t = column.type
        if t == "json":
            if isinstance(value, (bytes, bytearray)):
                value = value.decode("utf-8", "replace")
            if isinstance(value, str):
                try:
                    return json.loads(value)
                except ValueError:
                    return value
            return value
        if column.extra.get("set"):
            if isinstance(value, (set, frozenset)):
                order = {v: i for i, v in enumerate(column.extra.get("picklist") or [])}
                return sorted(value, key=lambda v: (order.get(v, len(order)), v))
            if isinstance(value, str):
                return value.split(",") if value else []
            return value
        if isinstance(value, (bytes, bytearray)) and column.db_type.lower().startswith("bit"):
            n = int.from_bytes(value, "big")
            return bool(n) if t == "boolean" else n
        if t == "boolean" and isinstance(value, int):
            return bool(value)
        if isinstance(value, str) and t in ("datetime", "timestamp", "date"):
            try:
                return (date.fromisoformat(value) if t == "date" else datetime.fromisoformat(value))
            except ValueError:
                return value                  # zero dates and the like stay as the server wrote them
        return value
