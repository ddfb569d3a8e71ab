"""Stored routine tools: get_stored_procedures, call_stored_procedure, get_stored_functions,
call_stored_function (DreamFactory's ``_proc`` / ``_func`` resources).

Offered only where the service's database has routines (``needs_routines``:
PostgreSQL, MySQL/MariaDB; never SQLite).  Listings show only routines the
caller's role may call; a hidden routine is reported exactly like a missing one.

Calls, in order, all before any SQL runs:

1. ``parameters`` is unwrapped from any of DreamFactory's forms (``normalize_parameters``):
   a name -> value object, a positional list, ``{"params": [{"name", "value"}]}``,
   ``{"params": {...}}`` or ``{"params": [..positional..]}``;
2. the values are checked against the routine's signature (``bind_arguments``):
   unknown names (with a "did you mean"), missing required IN parameters, too many
   positional values, values that cannot be of the declared type.  Values are
   converted lightly (``"5"`` for an integer parameter becomes ``5``) and later
   always bound by the dialect, never written into SQL;
3. for an overloaded PostgreSQL function the first signature the arguments fit
   is called (exact JSON types first, then light conversions).

The call runs in one read-write transaction (a routine may write) on the
service's pool, rows capped at the service's ``max_rows``, and the result is
shaped the DreamFactory way (``shape_result``): one result set flat under
``wrapper`` (default ``resource``), several as a list of lists, OUT/INOUT values
merged at the top level, a scalar function's value under ``value``, ``returns``
coercing the scalar, and ``meta.truncated`` when rows were cut.
"""
from __future__ import annotations

import base64
import inspect
import re
from decimal import Decimal, InvalidOperation

from ..database import suggest
from ..errors import InvalidArguments
from ..metadata import DECIMAL_TYPES, FLOAT_TYPES, INTEGER_TYPES, Routine
from .registry import tool

#: ``returns`` values and the scalar kind they coerce to.
RETURNS = {"integer": "integer", "int": "integer", "bigint": "integer",
           "number": "float", "float": "float", "double": "float", "decimal": "decimal",
           "string": "string", "text": "string", "boolean": "boolean", "bool": "boolean"}
#: Simple types whose parameters take text only (dates, uuids, enums ...).
TEXTUAL_TYPES = frozenset({"string", "text", "longtext", "mediumtext", "date", "time", "timetz",
                           "datetime", "datetimetz", "timestamp", "timestamptz", "uuid", "interval"})
_INT_TEXT = re.compile(r"^\s*[+-]?\d+\s*$")
_TRUE = frozenset({"true", "t", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "f", "0", "no", "n", "off"})
#: Keys of the result payload an OUT parameter must not overwrite.
_RESERVED = frozenset({"value", "meta"})

_ACCEPTS_MAX_ROWS: dict[type, bool] = {}


# ---------------------------------------------------------------------------- listings
def _listing(ctx, args, kind: str) -> dict:
    cat = ctx.database.catalog(args.get("refresh", False))
    group = cat.procedures if kind == "procedure" else cat.functions
    allowed = ctx.access.routine_allowed
    wanted = args.get("names")
    if wanted:
        routines = []
        for name in wanted:
            # Each asked-for name must exist (and be visible): a typo gets a suggestion.
            routines.append(ctx.database.routine(kind, name, visible=allowed))
    else:
        routines = [r for r in group.values() if allowed(r.name)]
    out = [describe(r) for r in routines]
    ctx.audit["rows"] = len(out)
    return {"resource": out}


def describe(routine: Routine) -> dict:
    """DreamFactory's routine object: name, label, description, native, return type, params."""
    item = routine.to_dict()
    item["type"] = routine.kind
    if routine.result_columns:
        item["result_columns"] = list(routine.result_columns)
    if routine.overloads:
        item["overloads"] = [{"params": [p.to_dict() for p in o.params], "return_type": o.return_type,
                              "return_db_type": o.return_db_type, "returns_set": o.returns_set}
                             for o in routine.overloads]
    return item


@tool("get_stored_procedures", title="List stored procedures",
      description="The stored procedures you may call, with their parameters (name, position, "
                  "param_type IN/OUT/INOUT, type, db_type, default). Pass 'names' to describe only some.",
      verb="read", read_only=True, needs_routines=True)
def get_stored_procedures(ctx, args):
    return _listing(ctx, args, "procedure")


@tool("call_stored_procedure", title="Call a stored procedure",
      description="Call a stored procedure. 'parameters' is an object of name -> value, a positional list, "
                  "or {\"params\": [{\"name\": ..., \"value\": ...}]}. Returns result rows under 'wrapper' "
                  "(default 'resource'; several result sets as a list of lists) and OUT/INOUT values at the "
                  "top level. The procedure may change data.",
      verb="routine", read_only=False, destructive=True, idempotent=False, needs_routines=True)
def call_stored_procedure(ctx, args):
    return _call(ctx, args, "procedure", args["procedureName"])


@tool("get_stored_functions", title="List stored functions",
      description="The stored functions you may call, with their parameters (name, position, "
                  "param_type, type, db_type, default) and return type. Pass 'names' to describe only some.",
      verb="read", read_only=True, needs_routines=True)
def get_stored_functions(ctx, args):
    return _listing(ctx, args, "function")


@tool("call_stored_function", title="Call a stored function",
      description="Call a stored function. 'parameters' is an object of name -> value, a positional list, "
                  "or {\"params\": [{\"name\": ..., \"value\": ...}]}. A scalar result comes back as "
                  "'value' (coerce it with 'returns'); rows under 'wrapper' (default 'resource'); OUT values "
                  "at the top level. The function may change data.",
      verb="routine", read_only=False, destructive=True, idempotent=False, needs_routines=True)
def call_stored_function(ctx, args):
    return _call(ctx, args, "function", args["functionName"])


# ---------------------------------------------------------------------------- calls
def _call(ctx, args, kind: str, name: str) -> dict:
    db = ctx.database
    routine = db.routine(kind, name, visible=ctx.access.routine_allowed)
    ctx.audit["table"] = routine.name
    wrapper = args.get("wrapper") or "resource"
    returns = args.get("returns")
    if returns is not None:
        returns = RETURNS.get(returns.strip().lower())
        if returns is None:
            raise InvalidArguments(f"argument 'returns' must be one of: {', '.join(sorted(RETURNS))}")
    routine, values = choose_signature(routine, args.get("parameters"))
    if returns is not None and scalar_source(routine) is None:
        raise InvalidArguments(f"'returns' applies to a single scalar result; '{routine.name}' returns "
                               "rows or several values")
    max_rows = db.config.max_rows
    dialect = db.dialect
    kwargs = {"max_rows": max_rows} if _accepts_max_rows(dialect) else {}
    with db.transaction(scope=ctx.scope) as conn:
        raw = dialect.call_routine(conn, routine, values, **kwargs)
        # Shaped inside the transaction: a failed 'returns' coercion rolls the call back.
        payload = shape_result(routine, raw, wrapper, returns, max_rows)
    ctx.audit["rows"] = sum(len(s) for s in raw.get("result_sets") or ())
    return payload


def _accepts_max_rows(dialect) -> bool:
    """Whether this dialect's ``call_routine`` takes ``max_rows`` (checked once per class)."""
    cls = type(dialect)
    got = _ACCEPTS_MAX_ROWS.get(cls)
    if got is None:
        got = _ACCEPTS_MAX_ROWS[cls] = "max_rows" in inspect.signature(dialect.call_routine).parameters
    return got


# ---------------------------------------------------------------------------- parameters
def normalize_parameters(routine: Routine, parameters) -> tuple[str, object]:
    """``("named", {name: value})`` or ``("positional", [values])`` from any accepted form."""
    if parameters is None:
        return "named", {}
    if isinstance(parameters, dict) and set(parameters) == {"params"} and not _has_input(routine, "params"):
        parameters = parameters["params"]
        if parameters is None:
            return "named", {}
    if isinstance(parameters, dict):
        return "named", dict(parameters)
    if isinstance(parameters, list):
        if parameters and all(isinstance(p, dict) and "name" in p for p in parameters):
            named: dict = {}
            for item in parameters:
                extra = set(item) - {"name", "value", "param_type", "type"}
                if extra:
                    raise InvalidArguments(f"parameter entries are {{\"name\", \"value\"}}; unexpected key "
                                           f"'{sorted(extra)[0]}'")
                pname = item["name"]
                if not isinstance(pname, str) or not pname:
                    raise InvalidArguments("every parameter entry needs a non-empty string 'name'")
                if pname in named:
                    raise InvalidArguments(f"parameter '{pname}' given twice")
                named[pname] = item.get("value")
            return "named", named
        if any(isinstance(p, dict) and "name" in p for p in parameters):
            raise InvalidArguments("do not mix {\"name\", \"value\"} entries with positional values")
        return "positional", list(parameters)
    raise InvalidArguments("'parameters' must be an object, a list, or {\"params\": [...]}")


def _has_input(routine: Routine, name: str) -> bool:
    return any(p.name == name and p.param_type in ("IN", "INOUT") for p in routine.params)


def choose_signature(routine: Routine, parameters) -> tuple[Routine, dict]:
    """The routine (or PostgreSQL overload) the arguments fit, and its checked values.

    Exact JSON types are tried on every signature before light conversions, so
    ``describe(5)`` picks ``describe(integer)`` and ``describe("5")`` ``describe(text)``.
    """
    candidates = [routine] + list(routine.overloads)
    first_error = None
    for strict in ((True, False) if len(candidates) > 1 else (False,)):
        for cand in candidates:
            try:
                return cand, bind_arguments(cand, parameters, strict=strict)
            except InvalidArguments as exc:
                if first_error is None and not strict:
                    first_error = exc
    if len(candidates) > 1:
        raise InvalidArguments(f"the arguments fit no signature of '{routine.name}': {first_error.message}")
    raise first_error


def bind_arguments(routine: Routine, parameters, strict: bool = False) -> dict:
    """``{parameter name: checked value}`` for ``routine``; ``InvalidArguments`` on any mismatch."""
    form, given = normalize_parameters(routine, parameters)
    params = sorted(routine.params, key=lambda p: p.position)
    inputs = [p for p in params if p.param_type in ("IN", "INOUT")]
    named: dict = {}
    if form == "positional":
        if len(given) > len(inputs) and len(given) <= len(params):
            # DreamFactory's positional form counts every parameter, OUT ones included.
            for p, value in zip(params, given):
                if p.param_type == "OUT":
                    if value is not None:
                        raise InvalidArguments(f"parameter '{p.name}' of '{routine.name}' is OUT: it is "
                                               "returned, not passed (send null in its place)")
                    continue
                named[p.name] = value
        elif len(given) > len(inputs):
            raise InvalidArguments(f"'{routine.name}' takes {len(inputs)} input parameter"
                                   f"{'' if len(inputs) == 1 else 's'}, got {len(given)} values")
        else:
            named = {p.name: v for p, v in zip(inputs, given)}
    else:
        by_name = {p.name: p for p in params}
        by_lower = {p.name.lower(): p for p in params}
        for key, value in given.items():
            p = by_name.get(key) if isinstance(key, str) else None
            if p is None and isinstance(key, str):
                p = by_lower.get(key.lower())
            if p is None:
                names = [q.name for q in inputs]
                hint = suggest(str(key), names) or (
                    f"; its parameters are: {', '.join(names)}" if names else "; it takes no parameters")
                raise InvalidArguments(f"'{routine.name}' has no parameter '{key}'{hint}")
            if p.param_type == "OUT":
                if value is not None:
                    raise InvalidArguments(f"parameter '{p.name}' of '{routine.name}' is OUT: it is "
                                           "returned, not passed")
                continue
            if p.name in named:
                raise InvalidArguments(f"parameter '{p.name}' given twice")
            named[p.name] = value
    out: dict = {}
    for p in inputs:
        if p.name in named:
            out[p.name] = check_value(p, named[p.name], routine.name, strict)
        elif p.param_type == "IN" and not p.has_default:
            raise InvalidArguments(f"'{routine.name}' needs parameter '{p.name}' ({p.type})")
    return out


def check_value(p, value, routine_name: str, strict: bool = False):
    """``value`` made fit for parameter ``p``'s declared type, or ``InvalidArguments``.

    ``strict`` accepts only the JSON type that matches (used to pick an overload).
    """
    if value is None:
        return None
    stype = p.type
    # The simple type, not db_type: the same message on every database (int(11) vs integer).
    what = f"parameter '{p.name}' of '{routine_name}' is {stype}"
    if stype in INTEGER_TYPES:
        if isinstance(value, bool):
            raise InvalidArguments(f"{what}: got a boolean")
        if isinstance(value, int):
            return value
        if not strict and isinstance(value, float) and value.is_integer():
            return int(value)
        if not strict and isinstance(value, str) and _INT_TEXT.match(value):
            return int(value)
        raise InvalidArguments(f"{what}: got {_json_kind(value)}")
    if stype in DECIMAL_TYPES or stype in FLOAT_TYPES:
        if isinstance(value, bool):
            raise InvalidArguments(f"{what}: got a boolean")
        if isinstance(value, (int, float)):
            return value
        if not strict and isinstance(value, str):
            try:
                Decimal(value.strip())
            except InvalidOperation:
                raise InvalidArguments(f"{what}: got text that is not a number") from None
            # Decimals travel as text so no precision is lost on the way.
            return value.strip()
        raise InvalidArguments(f"{what}: got {_json_kind(value)}")
    if stype == "boolean":
        if isinstance(value, bool):
            return value
        if not strict and isinstance(value, int) and value in (0, 1):
            return bool(value)
        if not strict and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise InvalidArguments(f"{what}: got {_json_kind(value)}")
    if stype in TEXTUAL_TYPES:
        if isinstance(value, str):
            return value
        if not strict and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and stype in ("string", "text", "longtext", "mediumtext"):
            return str(value)
        raise InvalidArguments(f"{what}: got {_json_kind(value)}")
    if stype == "binary":
        if isinstance(value, str):
            return value
        raise InvalidArguments(f"{what}: send binary values as base64 text")
    if stype == "array":
        if isinstance(value, (list, str)):
            return value
        raise InvalidArguments(f"{what}: send a list")
    # json/jsonb and types without a simple mapping: the dialect binds them.
    return value


def _json_kind(value) -> str:
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# ---------------------------------------------------------------------------- results
def scalar_source(routine: Routine) -> str | None:
    """Where a call's single scalar lives: ``"value"``, ``"out:<name>"``, or None (rows / several)."""
    outs = [p for p in routine.params if p.param_type in ("OUT", "INOUT")]
    if routine.kind == "function" and not routine.returns_set and not outs \
            and routine.return_type not in ("row", "table"):
        return "value"
    if len(outs) == 1:
        return "out:" + outs[0].name
    return None


def shape_result(routine: Routine, raw: dict, wrapper: str, returns: str | None, max_rows: int) -> dict:
    """DreamFactory's response from a dialect's ``{"result_sets", "out", "value", "truncated"?}``."""
    sets = raw.get("result_sets") or []
    out = raw.get("out") or {}
    payload: dict = {}
    source = scalar_source(routine)
    if source == "value":
        value = raw.get("value")
        payload["value"] = coerce(value, returns) if returns else value
    if len(sets) == 1:
        payload[wrapper] = sets[0]
    elif sets:
        payload[wrapper] = sets
    if out:
        if returns and source and source.startswith("out:"):
            key = source[4:]
            out = {k: (coerce(v, returns) if k == key else v) for k, v in out.items()}
        if any(k == wrapper or k in _RESERVED for k in out):
            payload["out"] = out          # a parameter named like a payload key: keep both intact
        else:
            payload.update(out)
    if not payload:
        payload[wrapper] = []            # a procedure that returned nothing at all
    if raw.get("truncated"):
        payload["meta"] = {"truncated": True, "max_rows": max_rows,
                           "message": f"result sets were cut at the service's max_rows ({max_rows})"}
    return payload


def coerce(value, kind: str):
    """``returns``: ``value`` as integer, float, decimal text, string or boolean (None stays None)."""
    if value is None:
        return None
    try:
        if kind == "integer":
            if isinstance(value, bool):
                return int(value)
            d = Decimal(str(value).strip())
            if d != d.to_integral_value():
                raise ValueError
            return int(d)
        if kind == "float":
            if isinstance(value, bool):
                return float(value)
            return float(Decimal(str(value).strip()))
        if kind == "decimal":
            return str(Decimal(str(value).strip()))
        if kind == "boolean":
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float, Decimal)):
                return value != 0
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        # string
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (bytes, bytearray, memoryview)):
            return base64.b64encode(bytes(value)).decode("ascii")
        if hasattr(value, "isoformat"):
            return value.isoformat()
        return str(value)
    except (ValueError, InvalidOperation, ArithmeticError):
        raise InvalidArguments(f"the result cannot be returned as {kind} ('returns')") from None
