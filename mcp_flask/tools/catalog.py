"""Catalog tools: what is in the database (tables, fields, relationships, resources, tools).

Every listing shows only what the caller's role may see; a hidden table is
reported exactly like a missing one (with suggestions drawn only from visible
names), so the catalog never confirms that something hidden exists.
"""
from __future__ import annotations

from ..errors import InvalidArguments
from .registry import tool

#: Our verbs as DreamFactory's access lists spell them.
DF_VERBS = {"read": "GET", "create": "POST", "update": "PATCH", "delete": "DELETE"}


def access_list(ctx, table) -> list[str]:
    """The DreamFactory verbs the caller may use on ``table``; views are read-only whatever the role."""
    verbs = ctx.access.verbs(table.name)
    wanted = ("read",) if table.is_view else ("read", "create", "update", "delete")
    return [DF_VERBS[v] for v in wanted if v in verbs]


def visible_table(ctx, name: str, refresh: bool = False):
    """The table ``name`` as the caller may see it (hidden columns removed), or NotFound."""
    table = ctx.database.table(name, visible=ctx.access.visible_table, refresh=refresh)
    ctx.audit["table"] = table.name
    view = getattr(ctx.access, "table_view", None)
    return view(table) if view else table


def split_names(value, what: str) -> list[str]:
    """A list argument given as a list or a comma-separated string."""
    if value is None:
        return []
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    else:
        items = [v.strip() if isinstance(v, str) else v for v in value]
    if any(not isinstance(v, str) or not v for v in items):
        raise InvalidArguments(f"argument '{what}': names must be non-empty strings")
    return items


def table_summary(ctx, table) -> dict:
    return {"name": table.name, "label": table.name.replace("_", " ").title(),
            "plural": table.name.replace("_", " ").title(), "description": table.comment,
            "is_view": table.is_view, "access": access_list(ctx, table)}


@tool("get_tables", title="List tables",
      description="List the tables and views you can use in this database, with the access you have "
                  "(GET read, POST create, PATCH update, DELETE delete). Start here.",
      verb="read", read_only=True)
def get_tables(ctx, args):
    cat = ctx.database.catalog(args.get("refresh", False))
    include_views = args.get("includeViews", True)
    out = [table_summary(ctx, t) for t in cat.tables.values()
           if ctx.access.visible_table(t.name) and (include_views or not t.is_view)]
    ctx.audit["rows"] = len(out)
    return {"resource": out}


def schema_of(ctx, table) -> dict:
    """DreamFactory's table schema object (``TableSchema::toArray``)."""
    out = table_summary(ctx, table)
    out.update({
        "native": table.native_name,
        "primary_key": table.primary_key,
        "name_field": table.name_field,
        "field": [c.to_field() for c in table.columns],
        "related": [r.to_dict() for r in table.relations if ctx.access.visible_table(r.ref_table)
                    and (r.junction_table is None or ctx.access.visible_table(r.junction_table))],
    })
    return out


@tool("get_table_schema", title="Describe a table",
      description="The complete schema of one table or view: fields with types and keys, primary key, "
                  "and the relationships you can pass to get_table_data's 'related'.",
      verb="read", read_only=True)
def get_table_schema(ctx, args):
    table = visible_table(ctx, args["tableName"], args.get("refresh", False))
    return schema_of(ctx, table)


@tool("get_table_fields", title="List a table's fields",
      description="The field definitions of one table: name, type, db_type, length, precision, scale, "
                  "default, allow_null, auto_increment, is_primary_key, is_unique, is_foreign_key, "
                  "ref_table, ref_field.",
      verb="read", read_only=True)
def get_table_fields(ctx, args):
    table = visible_table(ctx, args["tableName"], args.get("refresh", False))
    wanted = split_names(args.get("fields"), "fields")
    if wanted and wanted != ["*"]:
        from ..database import suggest
        cols = []
        for name in wanted:
            col = table.column(name)
            if col is None:
                raise InvalidArguments(f"no field '{name}' in '{table.name}'"
                                       f"{suggest(name, [c.name for c in table.columns])}")
            cols.append(col)
    else:
        cols = table.columns
    return {"resource": [c.to_field() for c in cols]}


@tool("get_table_relationships", title="List a table's relationships",
      description="How a table connects to others: belongs_to, has_many and many_many (through a junction "
                  "table) relationships, named as get_table_data's 'related' expects "
                  "(e.g. customers_by_customer_id).",
      verb="read", read_only=True)
def get_table_relationships(ctx, args):
    table = visible_table(ctx, args["tableName"], args.get("refresh", False))
    return {"resource": schema_of(ctx, table)["related"]}


@tool("get_database_resources", title="List database resources",
      description="Everything this service offers you: tables, views, stored procedures and functions, "
                  "optionally with your access to each.",
      verb="read", read_only=True)
def get_database_resources(ctx, args):
    db = ctx.database
    cat = db.catalog(args.get("refresh", False))
    resources = []
    for t in cat.tables.values():
        if ctx.access.visible_table(t.name):
            resources.append({"name": t.name, "type": "view" if t.is_view else "table",
                              "component": f"_table/{t.name}", "access": access_list(ctx, t)})
    routines_note = None
    if db.supports_routines:
        for kind, group in (("procedure", cat.procedures), ("function", cat.functions)):
            for r in group.values():
                if ctx.access.routine_allowed(r.name):
                    comp = "_proc" if kind == "procedure" else "_func"
                    resources.append({"name": r.name, "type": kind, "component": f"{comp}/{r.name}",
                                      "access": ["POST"]})
    else:
        routines_note = f"{db.dialect.name} has no stored procedures or functions"
    if args.get("asAccessList"):
        comps = ["", "*", "_schema/", "_schema/*", "_table/", "_table/*"]
        for r in resources:
            if r["type"] in ("table", "view"):
                comps += [f"_schema/{r['name']}", f"_table/{r['name']}"]
            else:
                comps.append(r["component"])
        return {"resource": comps}
    if args.get("asList"):
        return {"resource": [r["name"] for r in resources]}
    wanted = split_names(args.get("fields"), "fields")
    if not args.get("includeAccess"):
        for r in resources:
            del r["access"]
    if wanted and wanted != ["*"]:
        resources = [{k: v for k, v in r.items() if k in wanted} for r in resources]
    out = {"resource": resources}
    if routines_note:
        out["meta"] = {"routines": routines_note}
    return out


@tool("list_tools", title="List tools",
      description="The tools available to you on this service, paged (offset, limit), optionally names only.",
      verb="meta", read_only=True)
def list_tools(ctx, args):
    specs = ctx.tools() if ctx.tools else []
    offset = args.get("offset", 0)
    limit = args.get("limit", 100)
    page = specs[offset:offset + limit]
    if args.get("names_only"):
        items = [s.name for s in page]
    else:
        items = [{"name": s.name, "description": s.description, "read_only": s.read_only} for s in page]
    out = {"total": len(specs), "offset": offset, "count": len(page), "tools": items}
    if offset + limit < len(specs):
        out["next_offset"] = offset + limit
    return out
