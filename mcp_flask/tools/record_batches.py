"""Batch-write plumbing for the record tools: validating records, batches, read-back.

``records`` declares the three write tools; this module owns what they share:

* ``record_values``: a record's JSON values checked against the table (unknown
  columns get a "did you mean", typed columns are coerced like filter values);
* ``run_batch``: all-or-nothing (first failure raised, naming its index; the
  transaction rolls back) or ``continue`` (a savepoint per record, failures reported);
* ``select_items`` / ``existing``: which rows an ids/filter selection or a list of
  keys really matches, in the write's own transaction (bounded by ``max_batch``);
* ``read_back`` / ``finish``: the written rows' ``fields`` read back in the same
  transaction, one query per chunk of keys.

Imports errors, metadata, database (suggestions) and ``record_reads``.
"""
from __future__ import annotations

from ..database import suggest
from ..errors import DatabaseUnavailable, InvalidArguments, LimitExceeded, NotFound, QueryCancelled, ToolError
from ..metadata import DATETIME_TYPES, DECIMAL_TYPES, FLOAT_TYPES, INTEGER_TYPES, Table
from . import record_reads as rr
from .catalog import visible_table
from .record_args import parse_names

# Types whose JSON values are checked and normalised like filter values before binding.
_COERCED_TYPES = INTEGER_TYPES | DECIMAL_TYPES | FLOAT_TYPES | DATETIME_TYPES | {"boolean", "date", "time"}
_SAVEPOINT = "mcpf_record"


def records_arg(args, required: bool = True) -> list[dict]:
    """``records`` as a list (DreamFactory's ``{"resource": [...]}`` wrapper unwrapped); never empty."""
    recs = args.get("records")
    if recs is None:
        if required:
            raise InvalidArguments("records is required: a list of objects")
        return []
    if isinstance(recs, dict):
        recs = recs.get("resource", [])
    if not recs:
        raise InvalidArguments("records is empty: pass at least one record")
    return recs


def writable(ctx, args, verb: str) -> Table:
    """The caller's view of the table to write: not a view, ``verb`` allowed, batch flags consistent."""
    table = visible_table(ctx, args["tableName"])
    if table.is_view:
        raise InvalidArguments(f"'{table.name}' is a view; views are read-only (write to its base table)")
    ctx.access.require(verb, table.name)
    if args.get("continue") and args.get("rollback"):
        raise InvalidArguments("continue and rollback cannot be requested together: continue applies the good "
                               "records, rollback (the default) applies all or none")
    return table


def check_batch(ctx, count: int) -> None:
    """``LimitExceeded`` past the service's ``max_batch``."""
    cap = ctx.database.config.max_batch
    if count > cap:
        raise LimitExceeded(f"{count} records in one call; this service accepts at most {cap} (max_batch): "
                            f"split the batch")


def record_values(ctx, table: Table, record, index: int, what: str = "record") -> dict:
    """A record's JSON values, validated by column (name -> Python value, canonical names)."""
    if not isinstance(record, dict):
        raise InvalidArguments(f"{what} {index} must be an object")
    out = {}
    for key, value in record.items():
        col = table.column(key)
        if col is None:
            hint = " (related records cannot be written in the same call)" if table.relation(key) else \
                suggest(key, [c.name for c in table.columns])
            raise InvalidArguments(f"{what} {index}: no column '{key}' in table '{table.name}'{hint}",
                                   details={"index": index, "column": key})
        if col.name in out:
            raise InvalidArguments(f"{what} {index}: column '{col.name}' given twice",
                                   details={"index": index, "column": col.name})
        if value is not None and col.type in _COERCED_TYPES:
            if isinstance(value, (dict, list)):
                raise InvalidArguments(f"{what} {index}: column '{col.name}' ({col.type}) takes a single value",
                                       details={"index": index, "column": col.name})
            value = rr.coerce(col, value, f"{what} {index}")
        out[col.name] = value
    return out


def bind_record(dialect, table: Table, values: dict) -> dict:
    """Validated values -> what the driver binds (``dialect.bind_value`` per column)."""
    return {name: dialect.bind_value(table.column(name), v) for name, v in values.items()}


def check_write(ctx, table: Table, values: dict, partial: bool = False) -> None:
    """The access hook; ``partial`` for an update's patch (unset columns keep their values)."""
    hook = getattr(ctx.access, "check_write", None)
    if hook is not None:
        hook(table, values, partial=partial)


def tag_error(exc: ToolError, index: int) -> ToolError:
    """Name the record in an error (message and details) so the model can fix that record."""
    if not exc.message.startswith((f"record {index}:", f"record {index} ")):
        exc.message = f"record {index}: {exc.message}"
    details = dict(exc.details or {})
    details["index"] = index
    for attr in ("kind", "column", "constraint"):
        val = getattr(exc, attr, None)
        if val is not None:
            details.setdefault(attr, val)
    exc.details = details
    return exc


def error_entry(exc: ToolError, index: int) -> dict:
    """A failed record's entry in a ``continue`` batch result."""
    entry = {"index": index, "error": {"category": exc.category, "message": exc.message}}
    for attr in ("kind", "column", "constraint"):
        val = getattr(exc, attr, None)
        if val is not None:
            entry["error"][attr] = val
    return entry


def run_batch(ctx, conn, items: list, apply, keep_going: bool) -> tuple[list, list]:
    """Apply ``apply(conn, item)`` to each ``(index, ...)`` item.

    All-or-nothing (default): the first failure is raised (naming its index) and
    the caller's transaction rolls everything back.  ``keep_going``: each record
    runs inside a savepoint; a failure rolls back just that record and is reported.
    Returns ``(results by position, failed indexes)``.
    """
    dialect = ctx.database.dialect
    results: list = []
    failed: list = []
    for item in items:
        index = item[0]
        if not keep_going:
            try:
                results.append(apply(conn, item))
            except ToolError as exc:
                tag_error(exc, index)
                exc.message += ("; nothing was written (the batch is all-or-nothing: pass continue=true "
                                "to apply the other records)")
                exc.details["rolled_back"] = True
                raise
            continue
        dialect.savepoint(conn, _SAVEPOINT)
        try:
            result = apply(conn, item)
        except (QueryCancelled, DatabaseUnavailable):
            raise
        except ToolError as exc:
            dialect.rollback_to(conn, _SAVEPOINT)
            dialect.release(conn, _SAVEPOINT)
            results.append(error_entry(exc, index))
            failed.append(index)
            continue
        dialect.release(conn, _SAVEPOINT)
        results.append(result)
    return results, failed


def key_of(table: Table, values: dict) -> tuple | None:
    """The primary-key tuple in ``values``, or None when the table has none or it is incomplete."""
    pk = table.primary_key
    if not pk or any(values.get(k) is None for k in pk):
        return None
    return tuple(values[k] for k in pk)


def norm_key(key: tuple) -> tuple:
    """A key tuple in a form that compares equal whatever Python types the driver used."""
    # Keys from RETURNING, from lastrowid, from a record and from a SELECT may differ in
    # Python type (5 vs '5'); compare their text forms.
    return tuple(str(v) for v in key)


def read_back(ctx, conn, table: Table, keys: list[tuple], fields, related) -> dict:
    """``{normalised key: row dict}`` for ``keys``, in the current transaction (one query per chunk)."""
    dialect = ctx.database.dialect
    pk = table.primary_key
    sel = rr.plain_select(table, dialect, rr.resolve_fields(table, fields))
    width = len(sel.keys)
    for name in pk:
        if sel.position(name) is None:
            sel.add_column(dialect, table.column(name))
    relations = rr.resolve_related(ctx, table, related)
    for name in rr.related_key_columns(relations):
        if sel.position(name) is None:
            sel.add_column(dialect, table.column(name))
    found: dict = {}
    unique = list(dict.fromkeys(keys))
    positions = [sel.position(n) for n in pk]
    chunk = 500
    for start in range(0, len(unique), chunk):
        part = unique[start:start + chunk]
        where = dialect.keys_match_sql([dialect.quote(n) for n in pk], len(part))
        params = [dialect.bind_value(table.column(n), v) for key in part for n, v in zip(pk, key)]
        sql, sql_params = dialect.select_sql(table, sel.exprs, where, params)
        rows = dialect.query(conn, sql, sql_params)[1]
        dicts = rr.to_dicts(rows, sel.keys[:width], [d for d in sel.decoders if d[0] < width])
        if relations and rows:
            rr.attach_related(ctx, dialect, conn, table, sel, rows, dicts, relations)
        for row, d in zip(rows, dicts):
            found[norm_key(tuple(row[p] for p in positions))] = d
    return found


def decode_key(dialect, table: Table, key: dict) -> dict:
    """Key values as the read path would return them (dialect decoders)."""
    out = {}
    for name, value in key.items():
        col = table.column(name)
        dec = dialect.decoder(col) if col is not None else None
        out[name] = dec(value) if dec is not None and value is not None else value
    return out


def wants_fields(args, table: Table) -> bool:
    """True when the caller asked for more than the key back."""
    if args.get("related"):
        return True
    fields = args.get("fields")
    if fields is None:
        return False
    names = parse_names(fields, "fields")
    return names != tuple(table.primary_key)


def finish(ctx, conn, table: Table, args, results: list, failed: list, keys: list) -> dict:
    """Replace key results with read-back rows when fields/related were asked; build the payload."""
    if wants_fields(args, table) and table.primary_key:
        ok_keys = [tuple(k[n] for n in table.primary_key) for k in keys if k is not None]
        rows = read_back(ctx, conn, table, ok_keys, args.get("fields"), args.get("related"))
        for i, k in enumerate(keys):
            if k is not None:
                row = rows.get(norm_key(tuple(k[n] for n in table.primary_key)))
                if row is not None:
                    results[i] = row
    return payload(ctx, results, failed)


def payload(ctx, results: list, failed: list) -> dict:
    """The write result: ``{"resource": [per record], "meta": {"count", "failed"?}}``."""
    ctx.audit["rows"] = len(results) - len(failed)
    meta = {"count": len(results) - len(failed)}
    if failed:
        meta["failed"] = failed
    return {"resource": results, "meta": meta}


def show_key(key: dict) -> str:
    """``id=5`` for messages."""
    return ", ".join(f"{k}={v!r}" for k, v in key.items())


def selection_where(ctx, table: Table, args, verb: str) -> tuple[str, list]:
    """WHERE of an ids/filter selection, ANDed with the role's row filter for ``verb``."""
    dialect = ctx.database.dialect
    parts = []
    text = args.get("filter")
    if text is not None and text.strip():
        parts.append(rr.filter_sql(table, dialect, text, args.get("params")))
    if args.get("ids") is not None:
        sql, params, _k, _v = rr.ids_where(table, dialect, args["ids"], args.get("idField"))
        parts.append((sql, params))
    parts.append(rr.row_filter(ctx, verb, table, dialect))
    return rr.combine(parts)


def select_items(ctx, conn, table: Table, args, verb: str, values) -> list | None:
    """The rows an ids/filter selection matches, as batch items ``(index, key, values, None)``.

    Selecting the keys first (in the write's transaction) bounds the statement by
    ``max_batch`` and lets the result list exactly the rows that were changed.
    With ``ids``, an id that matches nothing is an error item, like a missing record.
    None for tables without a primary key (the caller runs one statement instead).
    """
    dialect = ctx.database.dialect
    pk = table.primary_key
    if not pk:
        if args.get("ids") is not None and args.get("idField") is None:
            raise InvalidArguments(f"table '{table.name}' has no primary key: use a filter (or idField)")
        return None
    where, params = selection_where(ctx, table, args, verb)
    cap = ctx.database.config.max_batch
    sel = rr.plain_select(table, dialect, [table.column(n) for n in pk])
    sql, sql_params = dialect.select_sql(table, sel.exprs, where, params,
                                         [(n, "ASC", None) for n in pk], cap + 1)
    rows = dialect.query(conn, sql, sql_params)[1]
    if len(rows) > cap:
        raise LimitExceeded(f"the selection matches more than {cap} rows (max_batch); narrow the filter or "
                            f"split the change")
    keys = [dict(zip(pk, row)) for row in rows]
    items = [(i, key, values, None) for i, key in enumerate(keys)]
    if args.get("ids") is not None and args.get("idField") is None and len(pk) == 1:
        col = table.column(pk[0])
        got = {norm_key((k[pk[0]],)) for k in keys}
        missing = []
        for raw in rr.parse_ids(args["ids"]):
            value = rr.coerce(col, raw, "ids")
            if norm_key((value,)) not in got:
                missing.append(value)
        for value in missing:
            items.append((len(items), {pk[0]: value}, values,
                          NotFound(f"no record with {pk[0]}={value!r} in '{table.name}'")))
    return items


def existing(ctx, conn, table: Table, keys: list[dict], verb: str) -> set:
    """Normalised keys (of ``keys``) that exist and pass the role's row filter for ``verb``."""
    if not keys:
        return set()
    dialect = ctx.database.dialect
    pk = table.primary_key
    rf_sql, rf_params = rr.row_filter(ctx, verb, table, dialect)
    found = set()
    chunk = 500
    for start in range(0, len(keys), chunk):
        part = keys[start:start + chunk]
        where = dialect.keys_match_sql([dialect.quote(n) for n in pk], len(part))
        params = [dialect.bind_value(table.column(n), k[n]) for k in part for n in pk]
        if rf_sql:
            where, params = f"({where}) AND {rf_sql}", params + rf_params
        sql, sql_params = dialect.select_sql(table, [dialect.quote(n) for n in pk], where, params)
        for row in dialect.query(conn, sql, sql_params)[1]:
            found.add(norm_key(tuple(row)))
    return found


def update_unkeyed(ctx, conn, table: Table, args, patch: dict) -> dict:
    """One UPDATE over a filter, for tables without a primary key (rows are only counted)."""
    dialect = ctx.database.dialect
    where, params = selection_where(ctx, table, args, "update")
    sql, sql_params = dialect.update_sql(table, bind_record(dialect, table, patch), where, params)
    n = dialect.execute(conn, sql, sql_params)
    ctx.audit["rows"] = n
    return {"resource": [], "meta": {"count": n, "note": "the table has no primary key; rows are counted only"}}
