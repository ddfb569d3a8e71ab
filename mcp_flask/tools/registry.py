"""The tool registry: one ``ToolSpec`` per tool, the call context, argument checking.

Each tool module declares its tools with ``@tool(...)``; the input schema is
the file ``schemas/tools/<name>.json`` (exactly the ``inputSchema`` published
in tools/list) and the output schema ``schemas/outputs/<name>.json``.

Arguments are checked in two steps, both before the handler runs:

1. names: camelCase is canonical (DreamFactory's documented names); any other
   casing (``table_name``, ``TABLE_NAME``, ``table-name``) is accepted as an
   alias; an unknown key is an error with a "did you mean", and a key given
   twice under two spellings is an error (never silently dropped: DreamFactory
   issue #66);
2. values: the compiled jsonschema validator for the tool.

Tools know no HTTP and no JSON-RPC: a handler takes ``(ctx, args)`` and returns
a JSON-able payload, or raises a ``ToolError``.
"""
from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import InvalidArguments

#: Registration order is the order of tools/list.
TOOLS: dict[str, "ToolSpec"] = {}


@dataclass
class ToolSpec:
    """One tool: its handler and everything tools/list publishes about it."""

    name: str
    title: str
    description: str
    handler: Callable
    #: What the tool does to data, for access control: read | create | update | delete | routine | meta
    verb: str
    read_only: bool
    destructive: bool = False
    idempotent: bool = True
    #: Only offered when the service's database has stored routines.
    needs_routines: bool = False
    input_schema: dict = field(default_factory=dict)
    output_schema: dict | None = None
    #: alias (normalised) -> canonical argument name
    aliases: dict = field(default_factory=dict)
    #: The canonical names that are their own alias (``aliases[_norm(k)] == k``): arguments
    #: spelled exactly so need no mapping (``normalize_arguments``' fast path).
    canonical: frozenset = field(default_factory=frozenset)

    @property
    def annotations(self) -> dict:
        ann = {"title": self.title, "readOnlyHint": self.read_only, "openWorldHint": False}
        if not self.read_only:
            ann["destructiveHint"] = self.destructive
            ann["idempotentHint"] = self.idempotent
        else:
            ann["destructiveHint"] = False
            ann["idempotentHint"] = True
        return ann

    def describe(self, with_output: bool = True, with_title: bool = True) -> dict:
        """The tools/list entry (``outputSchema`` and ``title`` for 2025-06-18+ clients)."""
        out = {"name": self.name, "description": self.description,
               "inputSchema": self.input_schema, "annotations": self.annotations}
        if with_title:
            out["title"] = self.title
        if with_output and self.output_schema is not None:
            out["outputSchema"] = self.output_schema
        return out


def tool(name: str, *, title: str, description: str, verb: str, read_only: bool,
         destructive: bool = False, idempotent: bool = True, needs_routines: bool = False):
    """Register the decorated ``handler(ctx, args)`` as tool ``name``."""
    def register(handler):
        TOOLS[name] = ToolSpec(name=name, title=title, description=description.strip(),
                               handler=handler, verb=verb, read_only=read_only,
                               destructive=destructive, idempotent=idempotent,
                               needs_routines=needs_routines)
        return handler
    return register


@functools.lru_cache(maxsize=1024)
def _norm(key: str) -> str:
    """The spelling-free form of an argument name: ``tableName`` == ``table_name`` == ``TABLE-NAME``."""
    return re.sub(r"[^a-z0-9]", "", key.lower())


def attach_schemas(input_schemas: dict, output_schemas: dict) -> None:
    """Give each registered tool its schemas (from ``schemas.SchemaSet``) and aliases."""
    missing = sorted(set(TOOLS) - set(input_schemas))
    if missing:
        raise RuntimeError(f"tools without an input schema file: {', '.join(missing)}")
    for spec in TOOLS.values():
        spec.input_schema = input_schemas[spec.name]
        spec.output_schema = output_schemas.get(spec.name)
        spec.aliases = {_norm(k): k for k in spec.input_schema.get("properties", {})}
        # Only names their own normal form maps back to: were two properties to share a
        # normal form, the slow path would call them one argument given twice.
        spec.canonical = frozenset(k for k in spec.aliases.values())


def normalize_arguments(spec: ToolSpec, args: Any) -> dict:
    """Map every key of ``args`` to its canonical name, or raise ``InvalidArguments``."""
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise InvalidArguments(f"arguments for {spec.name} must be an object")
    # Fast path (every call of a well-behaved client): all keys already canonical.  Distinct
    # canonical keys have distinct normal forms, so none can be "given twice"; the result is
    # what the loop below builds (a new dict, same keys, same order).
    if args.keys() <= spec.canonical:
        return dict(args)
    out: dict = {}
    given: dict = {}
    for key, value in args.items():
        canon = spec.aliases.get(_norm(key))
        if canon is None:
            valid = list(spec.input_schema.get("properties", {}))
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f"; did you mean '{close[0]}'?" if close else (
                f"; valid arguments: {', '.join(valid)}" if valid else "; this tool takes no arguments")
            raise InvalidArguments(f"unknown argument '{key}'{hint}")
        if canon in out:
            raise InvalidArguments(f"argument '{canon}' given twice (as '{given[canon]}' and '{key}')")
        out[canon] = value
        given[canon] = key
    return out


@dataclass
class ToolContext:
    """What a tool handler may use.  Built per call by the protocol layer."""

    database: Any                 # database.Database
    access: Any                   # access.Access: what the caller's role may do
    scope: Any = None             # database.CallScope, for cancellation
    progress: Callable | None = None   # progress(done, total=None, message=None)
    log: Callable | None = None        # log(level, message_dict)
    confirm: Callable | None = None    # confirm(message) -> bool (elicitation), None if unavailable
    tools: Callable | None = None      # tools() -> list of ToolSpec offered to this caller
    audit: dict = field(default_factory=dict)  # tools fill table / rows for the audit record
