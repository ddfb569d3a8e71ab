"""Record tools: get_table_data, create_records, update_records, delete_records.

DreamFactory's contract (reference §1.2, §2.2, §2.3) with its bugs fixed:

* reads page consistently: ``limit`` defaults to and is capped by the service's
  ``max_rows``; one extra row is fetched to know whether more exist, and
  ``meta.next`` is set whenever they do (DreamFactory only sometimes said so);
* writes are all-or-nothing by default (one transaction); ``continue`` applies
  the good records (a savepoint per record) and reports each failure with its
  index; ``rollback`` makes the default explicit; both together are an error;
* update/delete need ids, a filter or records carrying keys: never a whole-table
  wipe (``force`` is accepted and ignored);
* every failure names the record index, the column and the constraint.

Access control hooks (see ``access``): ``ctx.access.require(verb, table)``,
the caller's view of a table from ``catalog.visible_table`` (hidden columns are
simply absent), ``ctx.access.row_filter(verb, table)`` ANDed into reads, updates
and deletes (``record_reads.row_filter``), and ``ctx.access.check_write(table,
record)`` before every written record, when the access layer provides them.

Reading lives in ``record_reads`` (select lists, related records, decoding),
batch writing in ``record_batches``, argument parsing in ``record_args``; this
module only declares the tools and strings those pieces together.
"""
from __future__ import annotations

from ..errors import Declined, InvalidArguments, NotFound, ToolError
from . import record_batches as rb
from . import record_reads as rr
from .catalog import schema_of, visible_table
from .record_args import parse_names
from .registry import tool

_FILTER_HELP = ("Filter syntax: column op value, combined with and / or / not and parentheses. Operators: "
                "= != <> > >= < <= (or eq ne gt gte lt lte), like 'pat%', not like, in (1, 2), not in (...), "
                "between 1 and 5, starts with 'x', ends with 'x', contains 'x', is null, is not null. "
                "Quote text with ' or \" ('O''Brien'); :name placeholders take values from params.")


# ====================================================================== get_table_data
@tool("get_table_data", title="Read records",
      description=(
          "Read rows of a table or view. Returns {\"resource\": [rows], \"meta\": {returned, more, limit, offset, "
          "next?, count?, schema?}}. Page with limit (default and maximum: the service's max_rows, usually 1000) "
          "and offset; when meta.more is true, call again with offset = meta.next. "
          "fields: columns to return (list or comma-separated; default all). "
          "order: \"column [asc|desc] [nulls first|last]\", comma-separated. "
          "ids: primary key values (idField names the key column for tables without a single primary key). "
          "includeCount adds meta.count (total matching rows); countOnly returns only meta.count. "
          "related: relationship names from get_table_relationships (e.g. orders_by_customer_id) or \"*\": "
          "belongs_to relations become an object, has_many/many_many an array. "
          "group: columns to group by; fields may then include COUNT(*), SUM(col), AVG(col), MIN(col), MAX(col), "
          "returned as COUNT_ALL, SUM_col ... " + _FILTER_HELP),
      verb="read", read_only=True)
def get_table_data(ctx, args):
    """Rows of a table or view: select list, where (filter, ids, row filter), order, page, related."""
    table = visible_table(ctx, args["tableName"], args.get("refresh", False))
    ctx.access.require("read", table.name)
    db = ctx.database
    dialect = db.dialect
    max_rows = db.config.max_rows
    fields = args.get("fields")
    group_arg = args.get("group")

    # -- the select list
    group_cols = [rr.column_of(table, n, "group") for n in parse_names(group_arg, "group")] if group_arg else []
    grouped = bool(group_cols)
    if grouped:
        sel = rr.grouped_select(table, dialect, fields, group_cols)
    else:
        if fields is not None:
            rr.aggregates_without_group(fields)
        sel = rr.cached_select(table, dialect, fields)
    out_width = len(sel.keys)
    related = args.get("related")
    relations = rr.resolve_related(ctx, table, related) if related is not None else []
    if relations:
        if grouped:
            raise InvalidArguments("related cannot be combined with group")
        sel = sel.copy()
        for name in rr.related_key_columns(relations):
            if sel.position(name) is None:
                sel.add_column(dialect, table.column(name))   # helper column, dropped from the output

    # -- the where clause: caller's filter, ids, the role's row filter
    parts = []
    text = args.get("filter")
    if text is not None and text.strip():
        parts.append(rr.filter_sql(table, dialect, text, args.get("params")))
    if args.get("ids") is not None:
        sql, params, _keys, _vals = rr.ids_where(table, dialect, args["ids"], args.get("idField"))
        parts.append((sql, params))
    parts.append(rr.row_filter(ctx, "read", table, dialect))
    where, params = rr.combine(parts)

    if grouped:
        order = rr.stable_order(table, rr.resolve_order(table, args.get("order"), sel, True), sel, True,
                                group_cols)
    else:
        order = rr.plain_order(table, args.get("order"))
    limit = args.get("limit") or max_rows
    limit = min(limit, max_rows)
    offset = args.get("offset") or 0

    def read(conn):
        if grouped or relations:
            sql, sql_params = dialect.select_sql(table, sel.exprs, where, params, order, limit + 1, offset,
                                                 [c.name for c in group_cols])
        else:
            # The cached select and order (the same objects every call): the text is cached too.
            sql, sql_params = rr.select_sql(table, dialect, sel, where, params, order, limit + 1, offset)
        if len(sel.keys) == out_width:
            keys, decoders = sel.keys, sel.decoders
        else:
            keys, decoders = sel.keys[:out_width], [d for d in sel.decoders if d[0] < out_width]
        # A large page without related records comes back already encoded (rr.read_page).
        rows, out, more = rr.read_page(ctx, dialect, conn, sql, sql_params, limit, keys, decoders,
                                       encode=not relations)
        if relations and rows:
            rr.attach_related(ctx, dialect, conn, table, sel, rows, out, relations)
        meta = {"returned": len(out), "more": more, "limit": limit, "offset": offset}
        if more:
            meta["next"] = offset + limit
        if args.get("includeCount"):
            if not more and (out or not offset):
                meta["count"] = offset + len(out)     # the page reached the end: no second query needed
            else:
                meta["count"] = _count(dialect, conn, table, group_cols, where, params)
        return out, meta

    if args.get("countOnly"):
        total = db.read(lambda conn: _count(dialect, conn, table, group_cols, where, params), scope=ctx.scope)
        ctx.audit["rows"] = 0
        return {"meta": {"count": total}}
    # One statement (one round trip, autocommit read) unless related rows or a count must
    # come from the same snapshot.
    out, meta = db.read(read, single=not (relations or args.get("includeCount")), scope=ctx.scope)
    if args.get("includeSchema"):
        meta["schema"] = schema_of(ctx, table)
    ctx.audit["rows"] = len(out)
    return {"resource": out, "meta": meta}


def _count(dialect, conn, table, group_cols, where, params) -> int:
    if group_cols:
        sql, p = dialect.count_groups_sql(table, [c.name for c in group_cols], where, params)
    else:
        sql, p = dialect.count_sql(table, where, params)
    return int(dialect.query(conn, sql, p)[1][0][0])


# ====================================================================== create_records
@tool("create_records", title="Create records",
      description=(
          "Insert records into a table. records: a list of objects (column -> value); dates as ISO 8601 text, "
          "binary as base64, JSON columns as objects. Returns {\"resource\": [key of each new record, in order], "
          "\"meta\": {count}}; pass fields (or \"*\") to get the written rows back instead. "
          "All-or-nothing by default: if one record fails (duplicate, missing required field, foreign key, "
          "check, wrong type) nothing is written and the error names the record index, column and constraint. "
          "continue=true writes the good records and lists each failure as {index, error} (meta.failed). "
          "Views are read-only."),
      verb="create", read_only=False, destructive=False, idempotent=False)
def create_records(ctx, args):
    """Insert each record; keys (or read-back fields) per record, batch rules as the module says."""
    table = rb.writable(ctx, args, "create")
    records = rb.records_arg(args)
    rb.check_batch(ctx, len(records))
    db = ctx.database
    dialect = db.dialect
    items = []
    for i, rec in enumerate(records):
        try:
            values = rb.record_values(ctx, table, rec, i)
            rb.check_write(ctx, table, values)
            items.append((i, rb.bind_record(dialect, table, values), None))
        except ToolError as exc:
            items.append((i, None, exc))
    keep_going = bool(args.get("continue"))
    if not keep_going:
        for i, _b, exc in items:
            if exc is not None:
                raise rb.tag_error(exc, i)

    def apply(conn, item):
        index, bound, error = item
        if error is not None:
            raise error
        return rb.decode_key(dialect, table, dialect.insert(conn, table, bound))

    with db.transaction(scope=ctx.scope) as conn:
        results, failed = rb.run_batch(ctx, conn, items, apply, keep_going)
        bad = set(failed)
        keys = [r if i not in bad and rb.key_of(table, r) is not None else None for i, r in enumerate(results)]
        return rb.finish(ctx, conn, table, args, results, failed, keys)


# ====================================================================== update_records
@tool("update_records", title="Update records",
      description=(
          "Change fields of existing records (a patch: columns not given keep their values). Two ways: "
          "(1) records: a list of objects, each carrying its primary key plus the columns to change; "
          "(2) ids or filter plus exactly one record in records: that patch is applied to every matching row "
          "(at most the service's max_batch rows). Returns the key of each updated record (or the fields you "
          "ask for, read back after the update). All-or-nothing by default: one failing record (no such key, "
          "constraint, wrong type) changes nothing and the error names its index, column and constraint; "
          "continue=true applies the good records and lists each failure. " + _FILTER_HELP),
      verb="update", read_only=False, destructive=True, idempotent=True)
def update_records(ctx, args):
    """Patch records by their keys, or one patch over an ids/filter selection."""
    table = rb.writable(ctx, args, "update")
    records = rb.records_arg(args)
    db = ctx.database
    dialect = db.dialect
    pk = table.primary_key
    keep_going = bool(args.get("continue"))
    by_selection = args.get("ids") is not None or (args.get("filter") or "").strip()
    if by_selection:
        if len(records) != 1:
            raise InvalidArguments("with ids or filter, records must hold exactly one object: the patch applied "
                                   "to every matching row")
        patch = rb.record_values(ctx, table, records[0], 0)
        if not patch:
            raise InvalidArguments("the patch (records[0]) is empty: name the columns to change")
        rb.check_write(ctx, table, patch, partial=True)
    else:
        rb.check_batch(ctx, len(records))
        if not pk:
            raise InvalidArguments(f"table '{table.name}' has no primary key: update it with a filter and one patch")
    if by_selection and args.get("ids") is None:
        # A filter update can touch any number of rows: the "update without ids".
        confirm_first(ctx, f"Update every row of '{table.name}' {describe_selection(args, None)} "
                           f"with {sorted(patch)}?")
    with db.transaction(scope=ctx.scope) as conn:
        if by_selection:
            items = rb.select_items(ctx, conn, table, args, "update", patch)
            if items is None:        # no primary key: one statement over the filter
                return rb.update_unkeyed(ctx, conn, table, args, patch)
        else:
            items = []
            for i, rec in enumerate(records):
                try:
                    values = rb.record_values(ctx, table, rec, i)
                    key = {n: values.pop(n) for n in pk if n in values}
                    if len(key) != len(pk) or any(v is None for v in key.values()):
                        raise InvalidArguments(f"record {i} has no primary key ({', '.join(pk)}); "
                                               f"pass it, or use ids / filter with one patch")
                    if not values:
                        raise InvalidArguments(f"record {i} has nothing to change besides its key")
                    rb.check_write(ctx, table, values, partial=True)
                    items.append((i, key, values, None))
                except ToolError as exc:
                    if not keep_going:
                        raise rb.tag_error(exc, i)
                    items.append((i, None, None, exc))
            existing = rb.existing(ctx, conn, table, [it[1] for it in items if it[1] is not None], "update")
            items = [(i, k, v, e if e is not None or rb.norm_key(tuple(k[n] for n in pk)) in existing else
                      NotFound(f"no record with {rb.show_key(k)} in '{table.name}'"))
                     for i, k, v, e in items]
        rf_sql, rf_params = rr.row_filter(ctx, "update", table, dialect)

        def apply(conn, item):
            index, key, values, error = item
            if error is not None:
                raise error
            where, params = one_key_where(dialect, table, key, rf_sql, rf_params)
            sql, sql_params = dialect.update_sql(table, rb.bind_record(dialect, table, values), where, params)
            dialect.execute(conn, sql, sql_params)
            new_key = {n: values.get(n, key[n]) for n in pk}
            return rb.decode_key(dialect, table, new_key)

        results, failed = rb.run_batch(ctx, conn, items, apply, keep_going)
        bad = set(failed)
        keys = [r if i not in bad else None for i, r in enumerate(results)]
        return rb.finish(ctx, conn, table, args, results, failed, keys)


def one_key_where(dialect, table, key: dict, rf_sql: str, rf_params: list) -> tuple[str, list]:
    """WHERE text and bound values matching one record's primary key, ANDed with the role's row filter."""
    pk = table.primary_key
    where = dialect.keys_match_sql([dialect.quote(n) for n in pk], 1)
    params = [dialect.bind_value(table.column(n), key[n]) for n in pk]
    if rf_sql:
        return f"{where} AND {rf_sql}", params + rf_params
    return where, params


def describe_selection(args, records) -> str:
    """How a destructive call picks its rows, in words for a confirmation question."""
    if records:
        return f"({len(records)} record(s) given by key)"
    parts = []
    if args.get("ids") is not None:
        parts.append(f"with ids {args['ids']!r}")
    if (args.get("filter") or "").strip():
        parts.append(f"matching filter {args['filter']!r}")
    return " and ".join(parts)


def confirm_first(ctx, question: str) -> None:
    """Ask the user before a destructive change when the service asks for confirmation.

    ``ctx.confirm`` is set only when the service has ``confirm_destructive`` and the client
    can answer (elicitation, or the 2026-07-28 input-required flow); it runs before any
    transaction opens, so a declined or cancelled question changes nothing.
    """
    if ctx.confirm is not None and not ctx.confirm(question):
        raise Declined("the user did not confirm the change; nothing was changed")


# ====================================================================== delete_records
@tool("delete_records", title="Delete records",
      description=(
          "Delete records chosen by ids (primary key values), by filter, or by records carrying their primary "
          "keys (ids and filter together must both match). A call with none of these is refused: this tool "
          "never empties a table ('force' is ignored). At most the service's max_batch rows per call. Returns "
          "the key of each deleted record (or the fields you ask for, read before deleting). All-or-nothing by "
          "default: if one record cannot be deleted (no such key, still referenced by a foreign key) nothing is "
          "deleted and the error names its index; continue=true deletes the others and lists each failure. "
          + _FILTER_HELP),
      verb="delete", read_only=False, destructive=True, idempotent=True)
def delete_records(ctx, args):
    """Delete by ids, filter or keyed records; never without one of them."""
    table = rb.writable(ctx, args, "delete")
    db = ctx.database
    dialect = db.dialect
    pk = table.primary_key
    keep_going = bool(args.get("continue"))
    records = rb.records_arg(args, required=False)
    by_selection = args.get("ids") is not None or (args.get("filter") or "").strip()
    if records and by_selection:
        raise InvalidArguments("pass either records (carrying keys) or ids / filter, not both")
    if not records and not by_selection:
        raise InvalidArguments("delete needs ids, a filter, or records carrying their primary keys; "
                               "deleting every row is not possible with this tool")
    if records:
        rb.check_batch(ctx, len(records))
        if not pk:
            raise InvalidArguments(f"table '{table.name}' has no primary key: delete with a filter")
    confirm_first(ctx, f"Delete records from '{table.name}' {describe_selection(args, records)}?")
    with db.transaction(scope=ctx.scope) as conn:
        if by_selection:
            items = rb.select_items(ctx, conn, table, args, "delete", None)
            if items is None:
                where, params = rb.selection_where(ctx, table, args, "delete")
                sql, sql_params = dialect.delete_sql(table, where, params)
                n = dialect.execute(conn, sql, sql_params)
                ctx.audit["rows"] = n
                return {"resource": [], "meta": {"count": n,
                                                 "note": "the table has no primary key; rows are counted only"}}
        else:
            items = []
            for i, rec in enumerate(records):
                try:
                    values = rb.record_values(ctx, table, rec, i)
                    key = {n: values.get(n) for n in pk}
                    if any(v is None for v in key.values()):
                        raise InvalidArguments(f"record {i} has no primary key ({', '.join(pk)})")
                    items.append((i, key, None, None))
                except ToolError as exc:
                    if not keep_going:
                        raise rb.tag_error(exc, i)
                    items.append((i, None, None, exc))
        # Rows to return are read before they go (fields / related).
        keys = [it[1] if it[3] is None else None for it in items]
        before = {}
        if rb.wants_fields(args, table):
            before = rb.read_back(ctx, conn, table, [tuple(k[n] for n in pk) for k in keys if k is not None],
                                args.get("fields"), args.get("related"))
        rf_sql, rf_params = rr.row_filter(ctx, "delete", table, dialect)

        def apply(conn, item):
            index, key, _values_, error = item
            if error is not None:
                raise error
            where, params = one_key_where(dialect, table, key, rf_sql, rf_params)
            sql, sql_params = dialect.delete_sql(table, where, params)
            if dialect.execute(conn, sql, sql_params) < 1:
                raise NotFound(f"no record with {rb.show_key(key)} in '{table.name}'")
            row = before.get(rb.norm_key(tuple(key[n] for n in pk)))
            return row if row is not None else rb.decode_key(dialect, table, key)

        results, failed = rb.run_batch(ctx, conn, items, apply, keep_going)
        return rb.payload(ctx, results, failed)
