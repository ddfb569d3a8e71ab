"""Reading records: argument resolution against a table, row fetching, decoding, related records.

Shared by get_table_data and by the write tools (which read back the written
rows' ``fields`` in the same transaction).  Everything that reaches SQL was
first validated against the caller's view of the table (hidden columns are
absent from it, so they can neither be selected nor suggested) and is then
quoted by the dialect; every value is bound.

Speed matters here (the 10-row filtered, ordered read is the benchmark's hot
path): argument parsing is cached in ``record_args``; the select list, the
order, the caller's filter (without ``params``), a role's row filter and the
SELECT text itself are kept on the ``Table`` object (so a schema refresh drops
them all; bound values are never part of what is kept as text); per-column
decoders are computed once per query and skipped for columns that need none;
and rows become dicts through a comprehension generated once per row width.

Large pages (``read_page`` above ``STREAM_ABOVE`` rows) never exist as Python
objects all at once: each batch of the server-side cursor becomes dicts, is
encoded to JSON bytes at once and dropped; the page is an
``encoding.EncodedRows`` (about a third to a tenth of the memory of the rows it
stands for) that the transport writes piece by piece.  Between batches the read
stops when the client went away (``liveness.client_gone``), which closes the
cursor and returns the connection to the pool.

Imports errors, metadata, encoding, liveness, database (for suggestions), the
filter compiler and ``record_args``.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from itertools import repeat
from types import MethodType

from .. import encoding
from ..access import Access
from ..database import suggest
from ..dialects.where import coerce_value, compile_filter_text
from ..errors import InvalidArguments, LimitExceeded, NotFound, PermissionDenied, QueryCancelled
from ..liveness import client_gone
from ..metadata import INTEGER_TYPES, Column, Table
from .record_args import AGGREGATES, aggregate_alias, parse_aggregate, parse_ids, parse_names, parse_order

log = logging.getLogger("mcp_flask.tools")

# Column types a database cannot ORDER BY (PostgreSQL json has no ordering operator).
_UNORDERABLE = frozenset({"json", "array", "binary"})
#: Fetch with ``dialect.stream`` (and report progress) above this many rows.
STREAM_ABOVE = 5000
#: Report progress every this many streamed rows.
PROGRESS_EVERY = 5000
#: Rows in the first streamed batch, before the rows' encoded width is known.
FIRST_BATCH = 1000
#: Encoded bytes aimed at per later batch: big enough that PostgreSQL's FETCH round
#: trips and the per-batch overhead vanish, small enough that one batch's Python
#: objects (several times its JSON) stay a few MB; clamped to the bounds below.
BATCH_BYTES = 512 * 1024
MIN_BATCH, MAX_BATCH = 100, 10_000
#: Rows turned into dicts and encoded at a time within a batch.
ENCODE_ROWS = 1000


# ---------------------------------------------------------------- names
def table_memo(table: Table, name: str) -> dict:
    """The dict ``name`` kept on ``table``'s own object, made on first use.

    What this module remembers about a table (select lists, orders, filters, SELECT
    text) lives on the ``Table`` object itself, so a schema refresh, which builds new
    ``Table`` objects, drops it all at once.
    """
    memo = table.__dict__.get(name)
    if memo is None:
        memo = table.__dict__[name] = {}
    return memo


def column_of(table: Table, name: str, what: str) -> Column:
    """The column ``name`` of ``table`` (case-insensitive), or InvalidArguments with a suggestion."""
    col = table.column(name)
    if col is None:
        raise InvalidArguments(f"{what}: no column '{name}' in table '{table.name}'"
                               f"{suggest(name, [c.name for c in table.columns])}", details={"column": name})
    return col


def resolve_fields(table: Table, fields) -> list[Column]:
    """``fields`` (list, comma string, ``*`` or None) -> the table's columns, validated, in the order asked."""
    if fields is None:
        return list(table.columns)
    names = parse_names(fields, "fields")
    if names == ("*",):
        return list(table.columns)
    cols = []
    seen = set()
    for name in names:
        if name == "*":
            raise InvalidArguments("fields: '*' cannot be combined with column names")
        col = column_of(table, name, "fields")
        if col.name not in seen:
            seen.add(col.name)
            cols.append(col)
    return cols


class Select:
    """The validated select list of one read: SQL expressions, result keys and decoders."""

    __slots__ = ("exprs", "keys", "decoders", "columns", "aliases")

    def __init__(self):
        self.exprs: list[str] = []       # SQL text, in result order
        self.keys: list[str] = []        # result key per expression
        self.decoders: list = []         # (position, decode) for values that need decoding
        self.columns: list[Column] = []  # plain columns selected (for related keys)
        self.aliases: dict[str, str] = {}  # aggregate name as written / alias -> alias

    def copy(self) -> "Select":
        """An independent copy (for adding helper columns to a cached select)."""
        other = Select()
        other.exprs, other.keys = list(self.exprs), list(self.keys)
        other.decoders, other.columns = list(self.decoders), list(self.columns)
        other.aliases = dict(self.aliases)
        return other

    def add_column(self, dialect, col: Column) -> int:
        """Append plain column ``col`` (quoted, with its decoder); its position in the result."""
        pos = len(self.exprs)
        self.exprs.append(dialect.quote(col.name))
        self.keys.append(col.name)
        self.columns.append(col)
        dec = dialect.decoder(col)
        if dec is not None:
            self.decoders.append((pos, dec))
        return pos

    def position(self, name: str) -> int | None:
        """Where plain column ``name`` sits in the result."""
        for i, col in enumerate(self.columns):
            if col.name == name:
                return i
        return None


def cached_select(table: Table, dialect, fields) -> Select:
    """The plain select for ``fields`` on ``table``, built once per table object and argument.

    Kept on the ``Table`` itself, so a schema refresh (new Table objects) drops it.
    Callers that add helper columns must ``copy()`` it first.
    """
    cache = table_memo(table, "_record_selects")
    key = (fields if fields is None or isinstance(fields, str) else tuple(fields), dialect.name)
    sel = cache.get(key)
    if sel is None:
        sel = plain_select(table, dialect, resolve_fields(table, fields))
        if len(cache) < 256:
            cache[key] = sel
    return sel


def plain_select(table: Table, dialect, cols: list[Column]) -> Select:
    """A select of exactly ``cols``."""
    sel = Select()
    for col in cols:
        sel.add_column(dialect, col)
    return sel


def grouped_select(table: Table, dialect, fields, group_cols: list[Column]) -> Select:
    """Select list for a grouped read: group columns and aggregates only (the rule on every database)."""
    sel = Select()
    group_names = {c.name for c in group_cols}
    names = parse_names(fields, "fields") if fields is not None else None
    if names is None or names == ("*",):
        for col in group_cols:
            sel.add_column(dialect, col)
        return sel
    for item in names:
        agg = parse_aggregate(item)
        if agg is None:
            col = column_of(table, item, "fields")
            if col.name not in group_names:
                raise InvalidArguments(f"fields: '{col.name}' is not in group; with group, fields may only "
                                       f"name grouped columns or aggregates ({', '.join(AGGREGATES)})")
            sel.add_column(dialect, col)
            continue
        func, arg = agg
        col = column_of(table, arg, f"fields {item}") if arg is not None else None
        alias = aggregate_alias(func, col.name if col else None)
        if alias in sel.keys:
            continue
        inner = dialect.quote(col.name) if col else "*"
        sel.exprs.append(f"{func}({inner}) AS {dialect.quote(alias)}")
        sel.keys.append(alias)
        sel.aliases[item.replace(" ", "").upper()] = alias
        sel.aliases[alias.upper()] = alias
        dec = _aggregate_decoder(dialect, func, col)
        if dec is not None:
            sel.decoders.append((len(sel.exprs) - 1, dec))
    return sel


def _aggregate_decoder(dialect, func: str, col: Column | None):
    """How to decode an aggregate's value so it means the same on every database.

    COUNT and SUM of whole numbers are integers (MySQL returns SUM as DECIMAL);
    MIN, MAX and SUM of other columns take the column's own decoder (SQLite's
    SUM of a DECIMAL column is a float: the decimal decoder rounds it to the
    column's scale); AVG is left as the database computes it.
    """
    if func == "COUNT" or (func == "SUM" and col is not None and col.type in INTEGER_TYPES):
        return int
    if func in ("MIN", "MAX", "SUM") and col is not None:
        return dialect.decoder(col)
    return None


def aggregates_without_group(fields) -> None:
    """DreamFactory's rule: aggregates in ``fields`` only when ``group`` is given."""
    if fields is None:
        return
    for item in parse_names(fields, "fields"):
        if parse_aggregate(item) is not None:
            raise InvalidArguments(f"fields: aggregate '{item}' needs 'group' (e.g. group: \"status\"); "
                                   f"to count rows use countOnly or includeCount")


def resolve_order(table: Table, order, sel: Select, grouped: bool) -> list[tuple[str, str, str | None]]:
    """Validated ``(column_or_alias, direction, nulls)`` triples."""
    if order is None:
        return []
    out = []
    for name, direction, nulls in parse_order(order):
        if grouped:
            alias = sel.aliases.get(name.replace(" ", "").upper())
            if alias is not None:
                if nulls:
                    raise InvalidArguments(f"order: nulls first/last is not supported for aggregate '{name}'")
                out.append((alias, direction, None))
                continue
            if parse_aggregate(name) is not None:
                raise InvalidArguments(f"order: aggregate '{name}' must also be requested in fields")
        col = column_of(table, name, "order")
        if grouped and col.name not in sel.keys:
            raise InvalidArguments(f"order: '{col.name}' is not in group; order by grouped columns or aggregates")
        out.append((col.name, direction, nulls))
    return out


def stable_order(table: Table, order: list, sel: Select, grouped: bool, group_cols: list[Column]) -> list:
    """``order`` plus a unique tie-breaker (the primary key), so pages never overlap or skip rows."""
    have = {o[0] for o in order}
    if grouped:
        tail = [c.name for c in group_cols]
    else:
        pk = table.primary_key
        tail = pk if pk else [c.name for c in table.columns if c.type not in _UNORDERABLE]
    extra = [(name, "ASC", None) for name in tail if name not in have]
    return order + extra if extra else order


def plain_order(table: Table, order) -> list:
    """Validated, tie-broken ORDER BY triples of an ungrouped read; cached per table object and text."""
    cache = table_memo(table, "_record_orders")
    key = order if order is None or isinstance(order, str) else tuple(order)
    got = cache.get(key)
    if got is None:
        got = stable_order(table, resolve_order(table, order, None, False), None, False, [])
        if len(cache) < 256:
            cache[key] = got
    return got


def key_columns(table: Table, id_field) -> list[Column]:
    """The columns ``ids`` refer to: ``idField`` if given, else the primary key."""
    if id_field is not None:
        return [column_of(table, n, "idField") for n in parse_names(id_field, "idField")]
    pk = table.primary_key
    if not pk:
        raise InvalidArguments(f"table '{table.name}' has no primary key; pass idField (the column the ids are in) "
                               f"or use a filter")
    return [table.column(n) for n in pk]


def coerce(col: Column, value, what: str):
    """``value`` as ``col``'s type (filter rules), with a message that names ``what``."""
    try:
        return coerce_value(col, value)
    except InvalidArguments:
        shown = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "..."
        raise InvalidArguments(f"{what}: {shown!r} does not fit column '{col.name}' of type {col.type}",
                               details={"column": col.name}) from None


def ids_where(table: Table, dialect, ids, id_field) -> tuple[str, list, list[Column], list]:
    """``(where_sql, params, key_columns, ids)`` for an ``ids`` argument (single-column keys)."""
    keys = key_columns(table, id_field)
    values = parse_ids(ids)
    if not values:
        raise InvalidArguments("ids is empty")
    if len(keys) != 1:
        raise InvalidArguments(f"table '{table.name}' has a composite key ({', '.join(c.name for c in keys)}); "
                               f"select rows with a filter instead of ids")
    col = keys[0]
    params = [dialect.bind_value(col, coerce(col, v, "ids")) for v in values]
    return "(" + dialect.in_sql(dialect.quote(col.name), len(values)) + ")", params, keys, values


#: Compiled role row filters kept per table object (one per role policy, normally).
ROLE_FILTER_CACHE = 256


def row_filter(ctx, verb: str, table: Table, dialect) -> tuple[str, list]:
    """The caller's role's row filter for ``verb`` on ``table`` as SQL (access hook), or ``("", [])``.

    Hook point for access control: ``ctx.access.row_filter(verb, table_name)``
    returns ``(filter_text, lookups)`` or None; it is compiled with the same
    grammar as the caller's filter and ANDed into every read, update and delete.
    """
    hook = getattr(ctx.access, "row_filter", None)
    if hook is None:
        return "", []
    got = hook(verb, table.name)
    if not got:
        return "", []
    text, lookups = got
    # Against the full table: a role's row filter may use columns the role cannot see.
    base = getattr(table, "base", table)
    # The built-in Access hands out one (text, lookups) tuple per role policy and table, never
    # changed: its compiled SQL is kept on the table (a schema refresh drops it), for that very
    # tuple and dialect.  Other hooks may build their answer per call: compiled every time.
    cacheable = type(hook) is MethodType and hook.__func__ is Access.row_filter
    if cacheable:
        cache = table_memo(base, "_role_filters")
        hit = cache.get(id(got))
        if hit is not None and hit[0] is got and hit[1] is dialect:
            return hit[2], list(hit[3])
    # A filter that does not fit the table is the operator's mistake: never echo it.
    try:
        sql, params = compile_filter_text(text, base, dialect, None, lookups)
    except InvalidArguments:
        log.warning("row filter of role %r on table %r does not compile", getattr(ctx.access, "role_name", ""),
                    table.name)
        raise PermissionDenied(f"permission denied: the role's row filter for '{table.name}' cannot be "
                               f"applied; ask the administrator") from None
    if cacheable:
        if len(cache) >= ROLE_FILTER_CACHE:
            cache.clear()
        # ``got`` is kept in the entry, so its id cannot be reused while the entry lives.
        cache[id(got)] = (got, dialect, sql, list(params))
    return sql, params


def filter_sql(table: Table, dialect, text: str, params) -> tuple[str, list]:
    """The caller's ``filter`` as SQL; compiled once per table object when it has no ``params``.

    The compiled fragment depends only on the text, the table and its dialect, so
    the hot path (the same filter again and again) skips the compiler entirely.
    """
    if params:
        return compile_filter_text(text, table, dialect, params)
    cache = table_memo(table, "_record_filters")
    hit = cache.get(text)
    if hit is None:
        hit = compile_filter_text(text, table, dialect)
        if len(cache) < 256:
            cache[text] = hit
    return hit[0], list(hit[1])


def combine(parts: list[tuple[str, list]]) -> tuple[str, list]:
    """AND the non-empty WHERE fragments (each already parenthesised)."""
    sqls, params = [], []
    for sql, p in parts:
        if sql:
            sqls.append(sql)
            params.extend(p)
    return " AND ".join(sqls), params


#: SELECT statements ``select_sql`` keeps per table object.
SELECT_SQL_CACHE = 256


def select_sql(table: Table, dialect, sel: Select, where: str, params: list, order: list, limit: int,
               offset: int) -> tuple[str, list]:
    """``dialect.select_sql`` of an ungrouped read of the cached ``sel`` and ``order``, built once.

    The statement text depends only on the table, the select list, the WHERE text
    (values are bound, never in it), the order, and the LIMIT/OFFSET values, so it is
    kept on the ``Table`` (a schema refresh drops it) keyed by exactly those; the
    select and order objects, the dialect and the number of WHERE values must be the
    very ones it was built with.  What the dialect binds after the WHERE values (the
    page's) is kept too; the WHERE values themselves are this call's.  Only a result
    whose values start with this call's WHERE values, as given, is kept: anything else
    is built afresh every time.
    """
    cache = table_memo(table, "_record_sql")
    key = (id(sel), id(order), where, limit, offset)
    got = cache.get(key)
    if got is not None and got[0] is sel and got[1] is order and got[2] is dialect and got[3] == len(params):
        return got[4], params + got[5]
    sql, out = dialect.select_sql(table, sel.exprs, where, params, order, limit, offset)
    n = len(params)
    if len(out) >= n and all(a is b for a, b in zip(out, params)):
        if len(cache) >= SELECT_SQL_CACHE:
            cache.clear()     # e.g. a client paging by offset: start again rather than grow
        cache[key] = (sel, order, dialect, n, sql, out[n:])
    return sql, out


# ---------------------------------------------------------------- fetching
def fetch(ctx, dialect, conn, sql: str, params: list, expect: int, for_json: bool = False) -> list[tuple]:
    """All rows of a query; large results come through ``dialect.stream`` with progress reports.
    ``for_json``: the rows go straight into the answer (``Dialect.read_cursor``)."""
    if expect <= STREAM_ABOVE:
        return dialect.query(conn, sql, params, for_json)[1]
    rows: list = []
    progress = ctx.progress
    next_report = PROGRESS_EVERY
    for _names, batch in dialect.stream(conn, sql, params, for_json=for_json):
        rows.extend(batch)
        if progress is not None and len(rows) >= next_report:
            progress(len(rows), expect)
            next_report += PROGRESS_EVERY
    return rows


def read_page(ctx, dialect, conn, sql: str, params: list, limit: int, keys: list[str], decoders: list,
              encode: bool = True) -> tuple[list | None, list | encoding.EncodedRows, bool]:
    """One page of at most ``limit`` rows of ``sql`` (which asks for ``limit + 1``): ``(rows, out, more)``.

    ``out`` is the page as dicts over ``keys`` (decoded), ``rows`` the driver's
    tuples (for related records), ``more`` whether a row beyond ``limit`` exists.
    A page that may hold more than ``STREAM_ABOVE`` rows is streamed and encoded
    batch by batch when ``encode`` is true: ``rows`` is then None and ``out`` an
    ``encoding.EncodedRows`` (``len()`` gives its row count).
    """
    if limit + 1 <= STREAM_ABOVE or not encode:
        # Rows that feed related records keep their Python values (keys are matched);
        # the others go straight into the answer, in their JSON text form where exact.
        rows = fetch(ctx, dialect, conn, sql, params, limit + 1, for_json=encode)
        more = len(rows) > limit
        if more:
            rows = rows[:limit]
        return rows, to_dicts(rows, keys, decoders), more
    out, more = stream_encoded(ctx, dialect, conn, sql, params, limit, keys, decoders)
    return None, out, more


def stream_encoded(ctx, dialect, conn, sql: str, params: list, limit: int, keys: list[str],
                   decoders: list) -> tuple[encoding.EncodedRows, bool]:
    """At most ``limit`` rows of ``sql`` as JSON bytes, batch by batch; ``(rows, more)``.

    Each batch is decoded, turned into dicts and encoded with orjson right away;
    only its bytes are kept.  After the first batch the batch size follows the
    rows' encoded width (``BATCH_BYTES``).  Progress is reported every
    ``PROGRESS_EVERY`` rows.  When the client has gone away the read stops
    (``QueryCancelled``): closing the stream closes the cursor, and the caller's
    ``Database.read`` / ``transaction`` gives the connection back at once.
    Database errors mid-way propagate as they are: nothing was written yet.
    """
    out = encoding.EncodedRows()
    more = False
    progress = ctx.progress
    next_report = PROGRESS_EVERY
    size = FIRST_BATCH
    batches = dialect.stream(conn, sql, params, batch=size, for_json=True)
    try:
        item = next(batches)
        while True:
            rows = item[1]
            item = None
            room = limit - out.count
            if len(rows) > room:
                more = True
                rows = rows[:room]
            # Dicts for at most ENCODE_ROWS rows exist at a time (they are the bulk of a
            # batch's Python objects); the batch's objects go once encoded, its bytes stay.
            for start in range(0, len(rows), ENCODE_ROWS):
                part = rows[start:start + ENCODE_ROWS]
                out.add(encoding.dumps(to_dicts(part, keys, decoders)), len(part))
            rows = part = None
            if progress is not None and out.count >= next_report:
                progress(out.count, limit + 1)        # the total counts the look-ahead row
                next_report = (out.count // PROGRESS_EVERY + 1) * PROGRESS_EVERY
            if client_gone():
                raise QueryCancelled("the client closed the connection; the read was stopped")
            want = None
            if out.count:
                per_row = max(1, out.size() // out.count)
                target = min(MAX_BATCH, max(MIN_BATCH, BATCH_BYTES // per_row))
                if target != size:
                    want = size = target
            item = batches.send(want)
    except StopIteration:
        pass
    finally:
        batches.close()
    return out, more


def to_dicts(rows: list[tuple], keys: list[str], decoders: list) -> list[dict]:
    """Rows -> dicts over the first ``len(keys)`` values (later ones are helper columns), decoded.

    Decoding goes column by column (one comprehension per decoded column over the
    transposed rows) rather than copying each row into a list: fewer bytecodes per
    cell, which is what a 10,000-row page spends its time on.  The dicts come from a
    comprehension generated per width (``_dict_builder``).
    """
    if not rows:
        return []
    if decoders:
        cols = list(zip(*rows))
        for pos, dec in decoders:
            # A decoder may decode a whole column at once (``dec.column``: C-level maps for the
            # common case, same values as ``dec`` one by one).
            whole = getattr(dec, "column", None)
            cols[pos] = whole(cols[pos]) if whole is not None else [None if v is None else dec(v) for v in cols[pos]]
        rows = list(zip(*cols))
    width = len(keys)
    if 0 < width <= GENERATED_MAX_WIDTH:
        # All rows of one result have the same length: the first tells whether helper columns follow.
        return _dict_builder(width, len(rows[0]) == width)(rows, keys)
    return list(map(dict, map(zip, repeat(keys), rows)))


#: Widest row ``to_dicts`` builds with a generated comprehension (wider ones use ``dict(zip())``).
GENERATED_MAX_WIDTH = 128


@lru_cache(maxsize=2 * GENERATED_MAX_WIDTH)
def _dict_builder(width: int, exact: bool):
    """``build(rows, keys)``: ``[{keys[0]: row[0], ...} for row in rows]`` over ``width`` keys.

    A dict display with the keys in locals does about half the work of
    ``dict(zip(keys, row))`` per row.  The generated source holds only generated
    names (``k0``, ``v0`` ...): the column names are data, passed in ``keys`` at each
    call, so nothing a database or a caller names ever reaches ``exec``.  ``exact``:
    rows have exactly ``width`` values (unpacked), else more (indexed; the rest are
    helper columns).  Same result as ``dict(zip(keys, row))``, a repeated key included
    (the last value wins in both).
    """
    names = range(width)
    unpack_keys = ", ".join(f"k{i}" for i in names) + ","
    display = "{" + ", ".join(f"k{i}: v{i}" for i in names) + "}"
    if exact:
        loop = "for " + ", ".join(f"v{i}" for i in names) + ", in rows"
    else:
        display = "{" + ", ".join(f"k{i}: r[{i}]" for i in names) + "}"
        loop = "for r in rows"
    source = f"def build(rows, keys):\n    {unpack_keys} = keys\n    return [{display} {loop}]\n"
    namespace: dict = {}
    exec(compile(source, f"<to_dicts width={width}>", "exec"), namespace)  # noqa: S102 - generated names only
    return namespace["build"]


# ---------------------------------------------------------------- related records
def _ref_view(ctx, name: str) -> Table | None:
    """The caller's view of a related table, or None when they may not read it."""
    access = ctx.access
    if not access.visible_table(name) or not access.can("read", name):
        return None
    try:
        table = ctx.database.table(name, visible=access.visible_table)
    except NotFound:
        return None
    view = getattr(access, "table_view", None)
    return view(table) if view else table


def resolve_related(ctx, table: Table, related) -> list:
    """``related`` names (or ``*``) -> ``[(relation, ref_view, junction_view)]`` the caller may read."""
    if related is None:
        return []
    names = parse_names(related, "related")
    usable = []
    for rel in table.relations:
        ref = _ref_view(ctx, rel.ref_table)
        if ref is None:
            continue
        junction = None
        if rel.junction_table is not None:
            junction = _ref_view(ctx, rel.junction_table)
            if junction is None:
                continue
        if any(table.column(f) is None for f in rel.field) or \
                (rel.type != "many_many" and any(ref.column(f) is None for f in rel.ref_field)):
            continue     # a key column is hidden from this caller
        usable.append((rel, ref, junction))
    if names == ("*",):
        return usable
    by_name = {u[0].name: u for u in usable}
    out = []
    for name in names:
        got = by_name.get(name)
        if got is None:
            raise NotFound(f"related: no relationship '{name}' on '{table.name}'{suggest(name, list(by_name))} "
                           f"(get_table_relationships lists them)")
        if got not in out:
            out.append(got)
    return out


def related_key_columns(relations: list) -> list[str]:
    """Local columns the page must carry to attach ``relations``."""
    out: list[str] = []
    for rel, _ref, _j in relations:
        for f in rel.field:
            if f not in out:
                out.append(f)
    return out


def attach_related(ctx, dialect, conn, table: Table, sel: Select, rows: list[tuple], out: list[dict],
                   relations: list) -> None:
    """Fill ``out[i][relation.name]`` for every relation: one query per relation, never one per row."""
    cap = max(ctx.database.config.max_rows * 10, 1000)
    for rel, ref, junction in relations:
        positions = [sel.position(f) for f in rel.field]
        page_keys = [tuple(row[p] for p in positions) for row in rows]
        distinct = list(dict.fromkeys(k for k in page_keys if None not in k))
        many = rel.type != "belongs_to"
        found: dict = {}
        if distinct:
            rsel = plain_select(ref, dialect, list(ref.columns))
            rf_sql, rf_params = row_filter(ctx, "read", ref, dialect)
            order = [(n, "ASC", None) for n in (ref.primary_key or [])]
            key_params = [v for key in distinct for v in key]
            if rel.type == "many_many":
                sql, tail = dialect.junction_sql(ref, rsel.keys, rel.ref_field, junction, rel.junction_field,
                                                 rel.junction_ref_field, len(distinct), rf_sql, order, cap + 1)
                width = len(rel.junction_field)
                rows_r = dialect.query(conn, sql, rf_params + key_params + tail)[1]
                keyed = [(r[:width], r[width:]) for r in rows_r]
            else:
                match_pos = []
                for f in rel.ref_field:
                    pos = rsel.position(f)
                    if pos is None:
                        pos = rsel.add_column(dialect, ref.column(f))
                    match_pos.append(pos)
                sql, tail = dialect.related_sql(ref, [c.name for c in rsel.columns], rel.ref_field,
                                                len(distinct), rf_sql, order, cap + 1)
                rows_r = dialect.query(conn, sql, rf_params + key_params + tail)[1]
                keyed = [(tuple(r[p] for p in match_pos), r) for r in rows_r]
            if len(keyed) > cap:
                raise LimitExceeded(f"related '{rel.name}' has more than {cap} records for this page; "
                                    f"ask for fewer rows (limit) or narrow the filter")
            width = len(ref.columns)
            keys_out = rsel.keys[:width]
            dicts = to_dicts([r for _k, r in keyed], keys_out, [d for d in rsel.decoders if d[0] < width])
            for (k, _r), d in zip(keyed, dicts):
                if many:
                    found.setdefault(k, []).append(d)
                else:
                    found.setdefault(k, d)
        for i, key in enumerate(page_keys):
            out[i][rel.name] = found.get(key, [] if many else None) if None not in key else ([] if many else None)
