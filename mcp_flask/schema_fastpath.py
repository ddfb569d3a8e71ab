"""A fast "certainly valid" check for the simple JSON Schemas on the hot path.

jsonschema's validator costs hundreds of microseconds per small document (it
walks a generic keyword machinery), and every MCP request is checked three
times (envelope, method params, tool arguments).  ``compile_accept(schema)``
turns a schema that uses only a small, exactly-implemented subset of keywords
(type, const, enum, required, properties, additionalProperties: bool,
minLength/maxLength, minimum/maximum, minItems/maxItems, items, oneOf whose branches
have disjoint types, $schema/title/description/default)
into a plain Python predicate:

* ``True``: the instance is valid (the predicate implements those keywords with
  JSON Schema 2020-12 semantics, e.g. ``1.0`` is an integer and ``True`` is not);
* ``False``: it may be invalid, so the caller runs the real jsonschema validator,
  which decides and words the error.

A schema using any other keyword compiles to ``None`` (always use jsonschema).
So jsonschema remains the judge of every rejection, and the fast path can only
skip work for documents that are valid anyway.  ``tests/test_schema_fastpath.py``
checks the two agree on generated documents.  Imports nothing from the project.
"""
from __future__ import annotations

from typing import Callable

_ANNOTATIONS = {"$schema", "$id", "title", "description", "default", "examples", "$comment"}
_SUPPORTED = _ANNOTATIONS | {"type", "const", "enum", "required", "properties", "additionalProperties",
                             "minLength", "maxLength", "minimum", "maximum", "items", "minItems", "maxItems",
                             "oneOf"}
#: JSON types whose instances can overlap (every integer is a number).
_OVERLAP = {"integer": {"integer", "number"}, "number": {"integer", "number"}}


def _types(schema) -> set[str] | None:
    """The JSON types a (sub)schema admits, when it says so with ``type``; else None."""
    if not isinstance(schema, dict) or "type" not in schema:
        return None
    t = schema["type"]
    names = {t} if isinstance(t, str) else set(t) if isinstance(t, list) else None
    if not names:
        return None
    out: set[str] = set()
    for n in names:
        out |= _OVERLAP.get(n, {n})
    return out


def _one_of(branches) -> Callable | None:
    """``oneOf`` whose branches admit disjoint types: the one branch an instance's type picks
    decides (the others certainly fail on ``type``); anything else is left to jsonschema."""
    if not isinstance(branches, list) or not branches:
        return None
    compiled = []
    seen: set[str] = set()
    for b in branches:
        types, fn = _types(b), compile_accept(b)
        if types is None or fn is None or types & seen:
            return None
        seen |= types
        compiled.append((tuple(types), fn))

    def accept(v):
        for types, fn in compiled:
            if any(_is_type(v, t) for t in types):
                return fn(v)
        return False
    return accept


def _is_type(value, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if name == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if name == "number":
        return isinstance(value, (int, float))
    raise ValueError(name)


def _equal(a, b) -> bool:
    # JSON equality: 1 == 1.0, but True is not 1.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b and type(a) in (int, float, str, type(None)) and type(b) in (int, float, str, type(None))


def compile_accept(schema) -> Callable | None:
    """A predicate ``instance -> bool`` (True = certainly valid), or None if unsupported."""
    if schema is True:
        return lambda v: True
    if not isinstance(schema, dict) or not set(schema) <= _SUPPORTED:
        return None
    checks: list[Callable] = []
    t = schema.get("type")
    if t is not None:
        names = [t] if isinstance(t, str) else list(t)
        if not names or any(n not in ("object", "array", "string", "boolean", "null", "integer", "number")
                            for n in names):
            return None
        checks.append(lambda v, names=names: any(_is_type(v, n) for n in names))
    if "const" in schema:
        c = schema["const"]
        if isinstance(c, (dict, list)):
            return None
        checks.append(lambda v, c=c: _equal(v, c))
    if "enum" in schema:
        options = schema["enum"]
        if not isinstance(options, list) or any(isinstance(o, (dict, list)) for o in options):
            return None
        checks.append(lambda v, options=options: any(_equal(v, o) for o in options))
    for key, op in (("minLength", lambda n, m: n >= m), ("maxLength", lambda n, m: n <= m)):
        if key in schema:
            m = schema[key]
            checks.append(lambda v, m=m, op=op: not isinstance(v, str) or op(len(v), m))
    for key, op in (("minimum", lambda n, m: n >= m), ("maximum", lambda n, m: n <= m)):
        if key in schema:
            m = schema[key]
            checks.append(lambda v, m=m, op=op: isinstance(v, bool) or not isinstance(v, (int, float))
                          or op(v, m))
    for key, op in (("minItems", lambda n, m: n >= m), ("maxItems", lambda n, m: n <= m)):
        if key in schema:
            m = schema[key]
            checks.append(lambda v, m=m, op=op: not isinstance(v, list) or op(len(v), m))
    if "oneOf" in schema:
        one = _one_of(schema["oneOf"])
        if one is None:
            return None
        checks.append(one)
    if "items" in schema:
        item = compile_accept(schema["items"])
        if item is None:
            return None
        checks.append(lambda v, item=item: not isinstance(v, list) or all(item(x) for x in v))
    props = schema.get("properties", {})
    if not isinstance(props, dict):
        return None
    compiled = {}
    for name, sub in props.items():
        fn = compile_accept(sub)
        if fn is None:
            return None
        compiled[name] = fn
    extra = schema.get("additionalProperties", True)
    if not isinstance(extra, bool):
        return None
    required = schema.get("required", [])
    if compiled or required or not extra:
        def object_ok(v, compiled=compiled, required=tuple(required), extra=extra):
            if not isinstance(v, dict):
                return True
            for r in required:
                if r not in v:
                    return False
            for k, x in v.items():
                fn = compiled.get(k)
                if fn is None:
                    if not extra:
                        return False
                elif not fn(x):
                    return False
            return True
        checks.append(object_ok)
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(c(v) for c in checks)
