"""tools.registry: argument names (the canonical fast path and the alias path agree)."""
from __future__ import annotations

import pytest

from mcp_flask.errors import InvalidArguments
from mcp_flask.tools.registry import TOOLS, ToolSpec, _norm, normalize_arguments


def slow_normalize(spec: ToolSpec, args: dict) -> dict:
    """The alias loop alone (what normalize_arguments did before its fast path)."""
    bare = ToolSpec(name=spec.name, title=spec.title, description="", handler=spec.handler, verb=spec.verb,
                    read_only=spec.read_only, input_schema=spec.input_schema, aliases=spec.aliases)
    assert not bare.canonical
    return normalize_arguments(bare, args)


@pytest.fixture
def spec(demo_app):
    # Building an app attaches the schemas (and with them aliases and canonical names).
    return TOOLS["get_table_data"]


def test_canonical_names_are_exactly_the_schema_properties(spec):
    props = set(spec.input_schema["properties"])
    assert spec.canonical == props
    assert all(spec.aliases[_norm(k)] == k for k in spec.canonical)


@pytest.mark.parametrize("args", [
    {},
    {"tableName": "t"},
    {"tableName": "t", "filter": "id > 1", "order": "id", "limit": 10},
    {"limit": 3, "tableName": "t"},                     # order kept as given
])
def test_fast_path_equals_the_alias_path(spec, args):
    got = normalize_arguments(spec, args)
    assert got == slow_normalize(spec, args)
    assert list(got) == list(args)
    assert got is not args                               # a new dict, as before


def test_aliases_still_map_and_mixed_keys_take_the_slow_path(spec):
    got = normalize_arguments(spec, {"table_name": "t", "limit": 2, "ORDER": "id"})
    assert got == {"tableName": "t", "limit": 2, "order": "id"}


@pytest.mark.parametrize("args, message", [
    ({"tableName": "t", "table_name": "u"}, "given twice"),
    ({"tableName": "t", "tabelName": "u"}, "unknown argument 'tabelName'"),
    ({"nope": 1}, "unknown argument 'nope'"),
])
def test_errors_are_unchanged(spec, args, message):
    with pytest.raises(InvalidArguments) as fast:
        normalize_arguments(spec, args)
    with pytest.raises(InvalidArguments) as slow:
        slow_normalize(spec, args)
    assert message in str(fast.value) and str(fast.value) == str(slow.value)


def test_non_objects_are_refused(spec):
    assert normalize_arguments(spec, None) == {}
    with pytest.raises(InvalidArguments):
        normalize_arguments(spec, ["tableName"])


def test_properties_sharing_a_normal_form_are_not_canonical():
    # Two properties that differ only in spelling: the alias map keeps one, and only that
    # one may skip the loop; giving both is still "given twice".
    from mcp_flask.tools.registry import attach_schemas
    saved = dict(TOOLS)
    try:
        TOOLS.clear()
        TOOLS["x"] = ToolSpec(name="x", title="x", description="", handler=None, verb="read", read_only=True)
        attach_schemas({"x": {"type": "object", "properties": {"a_b": {}, "aB": {}}}}, {})
        x = TOOLS["x"]
        assert x.canonical == {"aB"}
        with pytest.raises(InvalidArguments, match="given twice"):
            normalize_arguments(x, {"aB": 1, "a_b": 2})
        assert normalize_arguments(x, {"a_b": 1}) == {"aB": 1}
    finally:
        TOOLS.clear()
        TOOLS.update(saved)
