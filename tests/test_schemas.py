"""Tools and their schema files match one to one; tools/list publishes the files verbatim.

``schemas/tools/<name>.json`` is a tool's inputSchema and ``schemas/outputs/<name>.json``
its outputSchema.  The full DreamFactory tool set is 14 tools; the records and
routines tools live in other modules (tools/records.py, tools/routines.py).
"""
from __future__ import annotations

import json
import os

import pytest

from conftest import ROOT, McpTestClient

#: DreamFactory's MCP tools (seed document): every one must exist, with both schema files.
DREAMFACTORY_TOOLS = {
    "get_tables", "get_table_schema", "get_table_fields", "get_table_relationships",
    "get_database_resources", "list_tools",
    "get_table_data", "create_records", "update_records", "delete_records",
    "get_stored_procedures", "get_stored_functions", "call_stored_procedure", "call_stored_function",
}
SCHEMAS = os.path.join(ROOT, "schemas")


def names_in(folder: str) -> set[str]:
    return {f[:-5] for f in os.listdir(os.path.join(SCHEMAS, folder)) if f.endswith(".json")}


def registered() -> dict:
    from mcp_flask.schemas import SchemaSet
    from mcp_flask.tools import load_tools
    return dict(load_tools(SchemaSet()))


def test_schema_files_are_the_dreamfactory_set():
    assert names_in("tools") == DREAMFACTORY_TOOLS
    assert names_in("outputs") == DREAMFACTORY_TOOLS


def test_registered_tools_match_the_schema_files_one_to_one():
    """Fails until every DreamFactory tool is registered (records and routines tools)."""
    assert set(registered()) == names_in("tools")


def test_every_registered_tool_has_both_schema_files():
    for name in registered():
        assert name in names_in("tools"), name
        assert name in names_in("outputs"), name


def test_every_tool_describes_itself(demo_app):
    for spec in registered().values():
        assert len(spec.description) >= 30, spec.name
        ann = spec.annotations
        assert isinstance(ann["readOnlyHint"], bool)
        assert isinstance(ann["destructiveHint"], bool)
        assert isinstance(ann["idempotentHint"], bool)
        if spec.read_only:
            assert ann["destructiveHint"] is False
        assert spec.title


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
def test_tools_list_publishes_the_files_verbatim(demo_app, version):
    c = McpTestClient(demo_app, version=version)
    c.initialize()
    for t in c.rpc("tools/list")["result"]["tools"]:
        with open(os.path.join(SCHEMAS, "tools", t["name"] + ".json")) as fh:
            assert t["inputSchema"] == json.load(fh), t["name"]
        with open(os.path.join(SCHEMAS, "outputs", t["name"] + ".json")) as fh:
            assert t["outputSchema"] == json.load(fh), t["name"]
        assert t["description"] and t["annotations"]["readOnlyHint"] in (True, False)


def test_every_schema_file_is_a_valid_object_schema():
    from jsonschema import Draft202012Validator
    for folder in ("tools", "outputs"):
        for name in names_in(folder):
            with open(os.path.join(SCHEMAS, folder, name + ".json")) as fh:
                schema = json.load(fh)
            Draft202012Validator.check_schema(schema)
            assert schema.get("type") == "object", (folder, name)


def test_every_method_handler_has_a_params_schema(demo_app):
    protocol = demo_app.extensions["mcp_flask"]["protocol"]
    for method in protocol.handlers:
        assert method in protocol.schemas.methods, method


# ------------------------------------------------------------------ remembered valid instances
def _limit_validator(fast: bool = False):
    """A validator; without ``fast``, its generated check is removed, as for a schema
    schema_fastpath does not support (the memo serves those)."""
    from mcp_flask.schemas import Validator
    v = Validator({"type": "object", "properties": {"limit": {"type": "integer", "minimum": 1},
                                                    "x": {"type": ["string", "null"]}},
                   "additionalProperties": False})
    if not fast:
        v._fast = None
    return v


def test_the_generated_check_answers_valid_instances_before_the_memo():
    v = _limit_validator(fast=True)
    assert v._fast is not None
    assert v.error({"limit": 5}) is None
    assert v._valid == set()            # nothing to remember: the fast path vouched
    v._v = None                         # and jsonschema is not consulted at all
    assert v.error({"limit": 5}) is None
    v = _limit_validator(fast=True)
    assert "minimum" in v.error({"limit": 0})   # rejections are still worded by jsonschema


def test_a_valid_instance_is_remembered_and_a_repeat_skips_the_schema_walk():
    v = _limit_validator()
    assert v.error({"limit": 5}) is None
    assert len(v._valid) == 1
    # A repeat is answered from the memo: a predicate that would reject proves it.
    v._fast = lambda instance: False
    v._v = None
    assert v.error({"limit": 5}) is None
    assert v.is_valid({"limit": 5})


def test_rejections_are_never_remembered_and_key_order_does_not_matter():
    v = _limit_validator()
    for _ in range(3):
        assert "minimum" in v.error({"limit": 0})
    assert "zzz" in v.error({"limit": 1, "zzz": 1})
    assert v._valid == set()
    v2 = _limit_validator()
    assert v2.error({"limit": 2, "x": "a"}) is None
    assert v2.error({"x": "a", "limit": 2}) is None
    assert len(v2._valid) == 1
    # Same text, other JSON type: 1 is valid, true is not (a bool is not an integer).
    assert v2.error({"limit": True}) is not None


def test_values_orjson_writes_as_null_are_not_remembered():
    """NaN would encode like None: an instance holding null is never remembered."""
    v = _limit_validator()
    assert v.error({"x": None}) is None
    assert v._valid == set()
    assert v.error({"x": float("nan")}) is not None


def test_large_or_non_json_instances_are_not_remembered_and_the_memo_is_bounded(monkeypatch):
    from mcp_flask import schemas
    v = _limit_validator()
    assert v.error({"x": "y" * (schemas.MEMO_KEY_BYTES + 1)}) is None
    assert v.error({"limit": 2 ** 70}) is None          # beyond orjson's integers
    assert v._valid == set()
    monkeypatch.setattr(schemas, "MEMO_SIZE", 4)
    for i in range(1, 10):
        assert v.error({"limit": i}) is None
        assert len(v._valid) <= 4
