"""The fast "certainly valid" path (schema_fastpath) never accepts what jsonschema rejects.

For every schema file it compiles, generated documents (random JSON, and
mutations of typical valid messages) are checked: whenever the fast path says
valid, jsonschema must agree.  And it must actually accept the common messages
(else it saves nothing).
"""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from conftest import ROOT
from mcp_flask.schema_fastpath import compile_accept


def schema_files():
    base = os.path.join(ROOT, "schemas")
    for dirpath, _, files in os.walk(base):
        for f in sorted(files):
            if f.endswith(".json"):
                path = os.path.join(dirpath, f)
                with open(path) as fh:
                    yield os.path.relpath(path, base), json.load(fh)


COMPILED = [(name, schema, compile_accept(schema)) for name, schema in schema_files()]
FAST = [(n, s, f) for n, s, f in COMPILED if f is not None]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=False, width=32),
                    st.sampled_from([1.0, 0.0, -1.0, 2.5]),
                    st.text(max_size=4), st.sampled_from(["2.0", "1.0", "", "ping", "tools/call", "info",
                                                          "debug", "loud", "x" * 300, "get_tables"]))
keys = st.sampled_from(["jsonrpc", "id", "method", "params", "result", "error", "name", "arguments", "_meta",
                        "progressToken", "cursor", "level", "uri", "requestId", "reason", "protocolVersion",
                        "capabilities", "clientInfo", "version", "tableName", "extra", "code", "message"])
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                          st.dictionaries(keys, inner, max_size=5)),
                         max_leaves=12)


def test_the_fast_path_covers_the_hot_schemas():
    names = {n for n, _, _ in FAST}
    for hot in ("jsonrpc/request.json", "jsonrpc/notification.json", "methods/tools/call.json",
                "methods/ping.json", "methods/tools/list.json"):
        assert hot in names


def test_typical_messages_take_the_fast_path():
    by = {n: f for n, _, f in FAST}
    assert by["jsonrpc/request.json"]({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}})
    assert by["methods/tools/call.json"]({"name": "get_table_data", "arguments": {"tableName": "t"},
                                          "_meta": {"progressToken": "p"}})
    assert not by["jsonrpc/request.json"]({"jsonrpc": "2.0", "id": True, "method": "x"})
    assert not by["jsonrpc/request.json"]({"jsonrpc": "2.0", "id": 1.5, "method": "x"})


@pytest.mark.parametrize("name,schema,fast", FAST, ids=[n for n, _, _ in FAST])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(doc=documents)
def test_never_accepts_what_jsonschema_rejects(name, schema, fast, doc):
    if fast(doc):
        assert Draft202012Validator(schema).is_valid(doc), (name, doc)


@pytest.mark.parametrize("doc", [
    {"jsonrpc": "2.0", "id": 1.0, "method": "ping"},          # 1.0 is an integer in JSON Schema
    {"jsonrpc": "2.0", "id": "a", "method": "m" * 256},
    {"jsonrpc": "2.0", "id": "a", "method": "m" * 257},
    {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": []},
    {"jsonrpc": "2.0", "id": 1, "method": "ping", "x": 1},
    {"jsonrpc": "2.0", "id": None, "method": "ping"},
    {"jsonrpc": 2.0, "id": 1, "method": "ping"},
])
def test_edge_cases_agree(doc):
    (schema,) = [s for n, s, _ in FAST if n == "jsonrpc/request.json"]
    fast = compile_accept(schema)
    assert fast(doc) == Draft202012Validator(schema).is_valid(doc)


def tool_schema(name):
    with open(os.path.join(ROOT, "schemas", "tools", name + ".json")) as fh:
        return json.load(fh)


def test_tool_arguments_with_one_of_take_the_fast_path():
    """The read tools' arguments (oneOf string-or-list, maxItems) no longer need jsonschema."""
    schema = tool_schema("get_table_data")
    fast = compile_accept(schema)
    assert fast is not None
    good = {"tableName": "orders", "filter": "id > 1", "order": "id desc", "limit": 10,
            "fields": ["id", "total"], "ids": [1, "2"], "related": "*", "includeCount": True}
    assert fast(good) and Draft202012Validator(schema).is_valid(good)
    assert not fast(dict(good, fields=7))            # neither branch of oneOf: left to jsonschema
    assert not fast(dict(good, limit=0))
    assert not fast(dict(good, fields=["x"] * 1001))  # maxItems


tool_values = st.one_of(scalars, st.lists(scalars, max_size=3), st.lists(st.text(max_size=3), max_size=3),
                        st.dictionaries(st.sampled_from(["resource", "a"]), st.lists(st.dictionaries(
                            st.text(max_size=2), scalars, max_size=2), max_size=2), max_size=2))


@pytest.mark.parametrize("tool", ["get_table_data", "create_records", "update_records", "delete_records",
                                  "get_table_fields", "get_database_resources"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_tool_arguments_never_accepted_when_invalid(tool, data):
    schema = tool_schema(tool)
    fast = compile_accept(schema)
    assert fast is not None
    names = sorted(schema["properties"]) + ["unknown"]
    doc = data.draw(st.dictionaries(st.sampled_from(names), tool_values, max_size=5))
    if fast(doc):
        assert Draft202012Validator(schema).is_valid(doc), (tool, doc)


# ---------------------------------------------------------------------------- the generated code
@pytest.mark.parametrize("name,schema,fast", FAST, ids=[n for n, _, _ in FAST])
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(doc=documents)
def test_generated_check_agrees_with_jsonschema_both_ways(name, schema, fast, doc):
    """On plain JSON values the generated function is exact: it accepts every valid document
    (so it saves the jsonschema walk) and nothing else."""
    assert fast(doc) == Draft202012Validator(schema).is_valid(doc), (name, doc, fast.source)


@pytest.mark.parametrize("tool", ["get_table_data", "create_records", "update_records", "delete_records",
                                  "get_table_fields", "get_database_resources", "get_tables"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_tool_arguments_agree_both_ways(tool, data):
    schema = tool_schema(tool)
    fast = compile_accept(schema)
    names = sorted(schema["properties"]) + ["unknown"]
    doc = data.draw(st.dictionaries(st.sampled_from(names), tool_values, max_size=5))
    assert fast(doc) == Draft202012Validator(schema).is_valid(doc), (tool, doc)


def test_the_generated_source_is_inspectable():
    schema = tool_schema("get_table_data")
    fast = compile_accept(schema)
    assert fast.source.startswith("def make(")
    assert "'tableName' in v0" in fast.source and "<= 256" in fast.source
    assert fast.constants["_k1"] == frozenset(schema["properties"])


def test_schema_constants_are_embedded_as_literals_only():
    """Property names, const and enum values are repr-escaped: quotes, newlines and
    code-like text stay data."""
    odd = "x'); import os; os.system('echo pwned') #\n\"y"
    schema = {"type": "object", "properties": {odd: {"const": odd}, "e": {"enum": [odd, "b\\"]}},
              "required": [odd], "additionalProperties": False}
    fast = compile_accept(schema)
    assert fast is not None
    check = Draft202012Validator(schema).is_valid
    for doc in ({odd: odd}, {odd: odd, "e": "b\\"}, {odd: odd, "e": odd}, {odd: "x"}, {"e": "b\\"},
                {odd: odd, "other": 1}, {odd: odd, "e": "b"}):
        assert fast(doc) == check(doc), doc


@pytest.mark.parametrize("schema", [
    {"type": "string", "pattern": "^a"},
    {"type": "object", "additionalProperties": {"type": "string"}},
    {"oneOf": [{"type": "integer"}, {"type": "number"}]},          # overlapping branches
    {"oneOf": [{"minLength": 1}, {"type": "string"}]},             # a branch without a type
    {"const": {"a": 1}},
    {"enum": [[1]]},
    {"type": "integer", "minimum": True},
    {"type": "widget"},
    False,
])
def test_unsupported_schemas_are_left_to_jsonschema(schema):
    assert compile_accept(schema) is None


def test_only_exact_json_classes_are_accepted():
    """A subclass (not something JSON parsing produces) is answered False: jsonschema decides."""
    class S(str):
        pass

    class D(dict):
        pass
    assert compile_accept({"type": "string"})("x")
    assert not compile_accept({"type": "string"})(S("x"))
    assert not compile_accept({"type": "object"})(D())
    assert not compile_accept({"type": "integer"})(True)
    assert compile_accept({"type": "integer"})(3.0)
    assert not compile_accept({"type": "integer"})(3.5)


@pytest.mark.parametrize("schema,good,bad", [
    ({"minLength": 2}, ["ab", 5, None], ["a"]),                    # no type: skipped for non-strings
    ({"maximum": 3}, [3, 2.5, "zzzz", True], [4, 3.5]),
    ({"minItems": 1, "items": {"type": "integer"}}, [[1], {}, "s"], [[], [1.5]]),
    ({"required": ["a"], "properties": {"a": {"type": "null"}}}, [{"a": None}, [], 3], [{}, {"a": 0}]),
    ({"type": ["string", "null"], "maxLength": 1}, ["a", None], ["ab", 0]),
    ({"enum": [1, "a", None, True]}, [1, 1.0, "a", None, True], [0, False, "b", 2]),
    ({"const": 0}, [0, 0.0], [False, "0"]),
])
def test_keywords_apply_to_their_types_only(schema, good, bad):
    fast = compile_accept(schema)
    check = Draft202012Validator(schema).is_valid
    for doc in good:
        assert fast(doc) and check(doc), (schema, doc)
    for doc in bad:
        assert not fast(doc) and not check(doc), (schema, doc)


def test_a_schema_nested_beyond_what_python_compiles_is_left_to_jsonschema():
    """CPython refuses more than 20 nested blocks: such a schema gets no fast path (and
    does not stop the server)."""
    schema = {"type": "string"}
    for _ in range(30):
        schema = {"type": "array", "items": schema}     # one nested loop per level
    assert compile_accept(schema) is None
    deep = {"type": "string"}
    for _ in range(40):
        deep = {"type": "object", "properties": {"a": deep}}    # nested ifs: no such limit
    doc = "x"
    for _ in range(40):
        doc = {"a": doc}
    assert compile_accept(deep)(doc) and Draft202012Validator(deep).is_valid(doc)
    shallow = {"type": "string"}
    for _ in range(5):
        shallow = {"type": "object", "properties": {"a": shallow}}
    fast = compile_accept(shallow)
    doc = "x"
    for _ in range(5):
        doc = {"a": doc}
    assert fast(doc) and not fast({"a": {"a": {"a": {"a": {"a": 1}}}}})
