"""Loads the JSON Schema files under ``schemas/`` once, and compiles one validator each.

Layout (one file per thing, named after it):

* ``jsonrpc/{request,notification,response}.json``: the JSON-RPC envelope;
* ``methods/<method>.json``: each MCP method's params (``methods/tools/call.json``);
* ``tools/<tool>.json``: each tool's ``inputSchema``, published verbatim in tools/list;
* ``outputs/<tool>.json``: each tool's ``outputSchema``.

Every file is checked against its metaschema at start-up (a broken schema stops
the server, it does not fail per request).  Validation errors are turned into
one short sentence naming the argument path and the reason.
"""
from __future__ import annotations

import json
import os

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from .schema_fastpath import compile_accept


def schema_dir() -> str:
    """The ``schemas/`` directory: beside the package in a checkout, inside it when installed."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.path.join(os.path.dirname(here), "schemas"), os.path.join(here, "_schemas")):
        if os.path.isdir(os.path.join(candidate, "tools")):
            return candidate
    raise RuntimeError("cannot find the schemas/ directory next to the mcp_flask package")


#: Canonical texts of schemas already checked against the metaschema in this process.
#: The check costs ~40 ms per file; apps built again (tests, reloads) skip it.
_CHECKED: set = set()


def check_schema(schema: dict) -> None:
    """Raise ``SchemaError`` unless ``schema`` is a valid 2020-12 schema (memoised)."""
    key = json.dumps(schema, sort_keys=True)
    if key not in _CHECKED:
        Draft202012Validator.check_schema(schema)
        _CHECKED.add(key)


#: Valid instances remembered per validator (their canonical JSON), and the largest one kept.
MEMO_SIZE = 1024
MEMO_KEY_BYTES = 1024


def memo_key(instance) -> bytes | None:
    """The canonical JSON of a small instance (keys sorted), or None when it must not be
    remembered: too large, not JSON (orjson raises), or holding ``null`` (orjson also
    writes NaN and infinities as ``null``, and those validate differently)."""
    try:
        key = orjson.dumps(instance, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        return None
    if len(key) > MEMO_KEY_BYTES or b"null" in key:
        return None
    return key


class Validator:
    """One compiled schema.  ``errors(instance)`` -> None or a readable message.

    Most schemas compile to a generated "certainly valid" check (schema_fastpath),
    tried first.  For the rest: agents repeat the same arguments call after call (the
    same table, filter and page size), so the validator remembers the canonical JSON of small instances it
    found valid: a repeat costs one ``orjson.dumps`` and a set lookup instead of a
    walk of the schema.  Validity depends only on the instance's JSON value, which
    the key is; only successes are remembered, every rejection is worded afresh.
    """

    __slots__ = ("schema", "_v", "_fast", "_valid", "_memo")

    def __init__(self, schema: dict, memo: bool = True):
        check_schema(schema)
        self.schema = schema
        self._v = Draft202012Validator(schema)
        # A plain-Python "certainly valid" check for simple schemas (see schema_fastpath);
        # jsonschema still decides (and words) every rejection.
        self._fast = compile_accept(schema)
        self._valid: set = set()
        self._memo = memo

    def is_valid(self, instance) -> bool:
        return self.error(instance) is None

    def error(self, instance) -> str | None:
        """None when valid; otherwise the most relevant error as one sentence."""
        fast = self._fast
        if fast is not None and fast(instance):
            # The generated check answers a valid instance in well under a microsecond,
            # less than computing the memo key would cost: the memo only serves schemas
            # (or instances) the fast path cannot vouch for.
            return None
        key = memo_key(instance) if self._memo else None
        if key is not None and key in self._valid:
            return None
        if self._v.is_valid(instance):
            if key is not None:
                if len(self._valid) >= MEMO_SIZE:
                    self._valid.clear()     # a new working set: start again (no LRU bookkeeping)
                self._valid.add(key)
            return None
        err = best_match(self._v.iter_errors(instance))
        return describe_error(err)


def describe_error(err) -> str:
    """``argument 'limit': -1 is less than the minimum of 1`` style text (values truncated)."""
    path = ".".join(str(p) for p in err.absolute_path)
    msg = err.message
    if len(msg) > 300:
        msg = msg[:300] + "..."
    if err.validator == "additionalProperties" and not path:
        return msg
    if err.validator == "oneOf":
        # best_match picks the oneOf itself when no branch is closer: name the accepted shapes.
        shapes = [s.get("type", "object") for s in err.schema.get("oneOf", [])]
        msg = "expected " + " or ".join(
            ("/".join(t) if isinstance(t, list) else str(t)) for t in shapes)
    return f"argument '{path}': {msg}" if path else msg


class SchemaSet:
    """All schemas of the server, compiled once."""

    def __init__(self, root: str | None = None):
        self.root = root or schema_dir()
        # Envelopes differ in every request (the id): nothing to remember there.
        self.envelope = {n: Validator(self._load("jsonrpc", n), memo=False) for n in ("request", "notification", "response")}
        self.methods: dict[str, Validator] = {}
        base = os.path.join(self.root, "methods")
        for dirpath, _, files in os.walk(base):
            for f in files:
                if f.endswith(".json"):
                    rel = os.path.relpath(os.path.join(dirpath, f), base)[:-5]
                    self.methods[rel.replace(os.sep, "/")] = Validator(self._read(os.path.join(dirpath, f)))
        self.tool_inputs = self._folder("tools")
        self.tool_outputs = self._folder("outputs")
        self.tools = {n: Validator(s) for n, s in self.tool_inputs.items()}

    def _read(self, path: str) -> dict:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)

    def _load(self, folder: str, name: str) -> dict:
        return self._read(os.path.join(self.root, folder, name + ".json"))

    def _folder(self, folder: str) -> dict:
        out = {}
        base = os.path.join(self.root, folder)
        for f in sorted(os.listdir(base)):
            if f.endswith(".json"):
                schema = self._read(os.path.join(base, f))
                check_schema(schema)
                out[f[:-5]] = schema
        return out
