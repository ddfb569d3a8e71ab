"""Property tests (hypothesis) of the record tools' argument parsing: order, fields, group, ids.

Any input either raises ``InvalidArguments`` or yields names that the tools then
validate against the table: a parsed name never carries SQL punctuation, and
valid specifications round-trip.  An end-to-end property runs random order and
fields text through get_table_data on SQLite: an error or rows, never changed data.
"""
from __future__ import annotations

import hashlib
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_flask.errors import InvalidArguments
from mcp_flask.tools.record_args import aggregate_alias, parse_aggregate, parse_ids, parse_names, parse_order

NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
DIRECTION = st.sampled_from(["", " asc", " desc", " ASC", " Desc"])
NULLS = st.sampled_from(["", " nulls first", " NULLS LAST"])


@given(st.lists(st.tuples(NAME, DIRECTION, NULLS), min_size=1, max_size=6))
def test_valid_order_specs_round_trip(terms):
    text = ", ".join(n + d + u for n, d, u in terms)
    parsed = parse_order(text)
    assert [p[0] for p in parsed] == [n for n, _d, _u in terms]
    assert [p[1] for p in parsed] == [(d.strip().upper() or "ASC") for _n, d, _u in terms]
    assert [p[2] for p in parsed] == [(u.split()[-1].upper() if u else None) for _n, _d, u in terms]
    assert parse_order([n + d + u for n, d, u in terms]) == parsed


@given(st.text(max_size=200))
def test_any_order_text_parses_to_plain_names_or_is_refused(text):
    try:
        parsed = parse_order(text)
    except InvalidArguments:
        return
    for name, direction, nulls in parsed:
        assert name and not any(c in name for c in " \t\r\n,;")
        assert direction in ("ASC", "DESC") and nulls in (None, "FIRST", "LAST")


@given(st.text(max_size=200))
def test_any_fields_text_parses_to_stripped_names_or_is_refused(text):
    try:
        names = parse_names(text, "fields")
    except InvalidArguments:
        return
    assert names and all(n and n == n.strip() and "," not in n for n in names)


@given(st.text(max_size=60))
def test_aggregates_are_a_closed_set(text):
    try:
        got = parse_aggregate(text)
    except InvalidArguments:
        assert "(" in text or ")" in text
        return
    if got is None:
        assert "(" not in text and ")" not in text
        return
    func, column = got
    assert func in ("COUNT", "SUM", "AVG", "MIN", "MAX")
    assert column is None or not any(c in column for c in " ()*,;")
    assert aggregate_alias(func, column) == (f"{func}_{column}" if column else "COUNT_ALL")


@given(st.one_of(st.integers(), st.lists(st.one_of(st.integers(), st.text(max_size=5)), max_size=5),
                 st.text(max_size=30)))
def test_ids_are_scalars_or_refused(value):
    try:
        ids = parse_ids(value)
    except InvalidArguments:
        return
    assert all(isinstance(v, (int, float, str)) for v in ids)


def test_examples():
    assert parse_order("a desc nulls last,b") == (("a", "DESC", "LAST"), ("b", "ASC", None))
    assert parse_aggregate("count( * )") == ("COUNT", None)
    assert parse_aggregate("Sum(total)") == ("SUM", "total")
    for bad in ("SUM(*)", "AVG()", "SUM(a,b)", "SUM((a))", "max(a) x"):
        with pytest.raises(InvalidArguments):
            parse_aggregate(bad)
    for bad in ("a;", "a b c", "a desc desc", "a nulls", ",a", "a,,b", ""):
        with pytest.raises(InvalidArguments):
            parse_order(bad)
    assert parse_ids("1, 2,x") == ["1", "2", "x"]


# -------------------------------------------------------------------- end to end on SQLite
def _digest(path: str) -> str:
    conn = sqlite3.connect(path)
    try:
        h = hashlib.sha256()
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"):
            for row in conn.execute(f'SELECT * FROM "{name}" ORDER BY 1, 2'):
                h.update(repr(row).encode())
        return h.hexdigest()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def demo_client(tmp_path_factory):
    from conftest import McpTestClient, make_settings
    from mcp_flask import close_app, create_app
    from mcp_flask.demo import create_demo_database
    d = tmp_path_factory.mktemp("props")
    path = str(d / "demo.db")
    create_demo_database(path)
    app = create_app(make_settings({"demo": {"url": "sqlite:///" + path}}, data_dir=str(d)),
                     check_databases=False)
    c = McpTestClient(app)
    c.initialize()
    yield c, path
    close_app(app)


ARG_TEXT = st.one_of(st.text(max_size=80),
                     st.lists(st.sampled_from(["id", "total", "status", "desc", "nulls", "last", ",", ";", "'",
                                               "--", "(", ")", "SUM(total)", "COUNT(*)", " ", "\"", "drop"]),
                              max_size=8).map("".join))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=ARG_TEXT, fields=ARG_TEXT, group=st.one_of(st.none(), ARG_TEXT))
def test_random_order_fields_group_give_rows_or_an_error_and_change_nothing(demo_client, order, fields, group):
    client, path = demo_client
    before = _digest(path)
    args = {"tableName": "orders", "order": order, "fields": fields, "limit": 3}
    if group is not None:
        args["group"] = group
    result = client.call("get_table_data", args)
    if not result["isError"]:
        import json
        data = json.loads(result["content"][0]["text"])
        assert len(data["resource"]) <= 3
    else:
        assert "Traceback" not in result["content"][0]["text"]
    assert _digest(path) == before
