"""Database values -> JSON, losslessly and fast (orjson).

* dates, times and datetimes: ISO 8601 (orjson's native encoding; offsets kept);
* ``Decimal``: a string, so ``12.50`` never becomes ``12.499999``;
* ``bytes`` / ``memoryview``: base64;
* ``timedelta`` (PostgreSQL intervals): ISO 8601 durations (``P1DT2H``);
* ``UUID``: its canonical string; sets: sorted lists.

``dumps`` returns bytes; ``Raw`` wraps already-encoded JSON so it can be
embedded in a larger document without being parsed and encoded again.

Imports nothing from the project.
"""
from __future__ import annotations

import base64
import datetime as _dt
from decimal import Decimal

import orjson

_OPTS = orjson.OPT_NON_STR_KEYS
Raw = orjson.Fragment


def iso_duration(td: _dt.timedelta) -> str:
    """``timedelta`` as an ISO 8601 duration: ``P3DT4H5M6.5S``, negative with a leading ``-``."""
    total = td.total_seconds()
    sign = "-" if total < 0 else ""
    total = abs(td)
    days = total.days
    secs = total.seconds
    micros = total.microseconds
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    out = f"{sign}P{days}D" if days else f"{sign}P"
    time_part = ""
    if h:
        time_part += f"{h}H"
    if m:
        time_part += f"{m}M"
    if s or micros:
        time_part += (f"{s}.{micros:06d}".rstrip("0") + "S") if micros else f"{s}S"
    if time_part:
        out += "T" + time_part
    return out if out not in ("P", "-P") else "PT0S"


def _default(value):
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, _dt.timedelta):
        return iso_duration(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    # Last resort (e.g. a driver's Range type): its text form, never a failure mid-response.
    return str(value)


def dumps(value) -> bytes:
    """Compact JSON bytes for ``value`` (see the module docstring for type rules)."""
    return orjson.dumps(value, default=_default, option=_OPTS)


def loads(data):
    """Parse JSON bytes or str (orjson: strict UTF-8, no NaN)."""
    return orjson.loads(data)


JSONDecodeError = orjson.JSONDecodeError
