"""PostgreSQL introspection: the ``pg_catalog`` queries and their reading into a ``Catalog``.

What this module owns:

* The introspection SQL (``SCHEMAS_SQL``, ``TABLES_SQL``, ``COLUMNS_SQL``,
  ``CONSTRAINTS_SQL``, ``INDEXES_SQL``, ``ROUTINES_SQL``, ``TYPES_SQL``) and the
  relation kinds and foreign-key action codes they are read with.
* ``CatalogReader``, a mixin of ``PostgresDialect``: ``introspect`` runs the seven
  queries in one REPEATABLE READ READ ONLY snapshot whatever the number of tables,
  and builds ``Table``/``Routine`` objects (``_table``, ``_routines``,
  ``_routine``).  Tables of the default schema are addressed by bare name, tables
  of ``extra_schemas`` as ``schema.table``.  It also refreshes the dialect's
  ``_constraint_columns`` for ``map_error``.

Imports ``errors``, ``metadata`` and ``pg_types`` (type mapping, defaults) from
the project, plus psycopg2.  The mixin uses the dialect's ``query``, ``execute``
and ``service``.
"""
from __future__ import annotations

import psycopg2.extensions as pgext

from ..errors import DatabaseError, McpFlaskError
from ..metadata import (Catalog, Column, ForeignKey, Routine, RoutineParam, Table,
                        derive_relations)
from .pg_types import AUTO_ID_TYPES, _map_type, literal_default


#: ``pg_constraint.confupdtype`` / ``confdeltype`` codes as DreamFactory spells them.
FK_ACTIONS = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}

#: Relation kinds served as tables: ordinary, partitioned, view, materialized view, foreign.
RELKINDS = ("r", "p", "v", "m", "f")
VIEW_RELKINDS = ("v", "m")


# --------------------------------------------------------------------- catalog SQL
# The type facts every mapping needs, for a pg_type row ``t``: the base type after
# unwrapping a domain (``bt``), its element type when it is an array (``et``), and
# the enum labels of whichever of the two is an enum.
_TYPE_FACTS = """
    bt.typname::text, bt.typtype::text, bt.typcategory::text,
    et.typname::text, et.typtype::text, et.typcategory::text, format_type(et.oid, NULL),
    CASE WHEN COALESCE(et.typtype, bt.typtype) = 'e' THEN
        ARRAY(SELECT e.enumlabel::text FROM pg_enum e
              WHERE e.enumtypid = COALESCE(et.oid, bt.oid) ORDER BY e.enumsortorder) END"""
_TYPE_JOINS = """
    JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
    LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'"""

# Partitions are left out (``relispartition``): the partitioned parent serves their rows.
_RELATION_FILTER = f"""
    n.nspname = ANY(%s) AND c.relkind IN ({", ".join(f"'{k}'" for k in RELKINDS)})
    AND NOT c.relispartition"""

SCHEMAS_SQL = """
SELECT current_schema()::text,
       ARRAY(SELECT nspname::text FROM pg_namespace WHERE nspname = ANY(%s))"""

TABLES_SQL = f"""
SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, obj_description(c.oid, 'pg_class')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_RELATION_FILTER}
ORDER BY n.nspname, c.relname"""

COLUMNS_SQL = f"""
SELECT a.attrelid, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.attidentity::text, a.attgenerated::text, pg_get_expr(d.adbin, d.adrelid),
       col_description(a.attrelid, a.attnum),
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
       {_TYPE_FACTS}
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
{_TYPE_JOINS}
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE {_RELATION_FILTER} AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum"""

# Primary, unique and foreign keys with their column names in key order.  Clones of
# a foreign key made for each partition of a partitioned table (conparentid <> 0)
# are left out: the parent constraint describes them all.
CONSTRAINTS_SQL = f"""
SELECT con.conrelid, con.conname::text, con.contype::text,
       ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num
             ORDER BY k.ord),
       rn.nspname::text, rc.relname::text,
       ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num
             ORDER BY k.ord),
       con.confupdtype::text, con.confdeltype::text
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class rc ON rc.oid = con.confrelid
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
WHERE {_RELATION_FILTER} AND con.contype IN ('p', 'u', 'f') AND con.conparentid = 0
ORDER BY con.conrelid, con.conname"""

INDEXES_SQL = f"""
SELECT i.indrelid, ic.relname::text, i.indisunique, i.indpred IS NOT NULL OR i.indexprs IS NOT NULL,
       i.indnkeyatts,
       ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(num, ord)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num
             WHERE k.ord <= i.indnkeyatts ORDER BY k.ord)
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE {_RELATION_FILTER}"""

# Callable routines of the service's schemas.  Left out: aggregates and window
# functions (prokind), C/internal-language functions, trigger and handler functions,
# functions taking ``internal``, functions owned by an extension, and functions
# returning a bare ``record`` without OUT/TABLE columns (a caller would have to
# write a column definition list).
ROUTINES_SQL = """
SELECT p.oid, n.nspname::text, p.proname::text, p.prokind::text, p.proretset,
       p.prorettype::int8, format_type(p.prorettype, NULL), rt.typtype::text, rt.typname::text,
       COALESCE(p.proallargtypes, p.proargtypes::oid[])::int8[],
       p.proargmodes::text[], p.proargnames, p.pronargdefaults,
       ARRAY(SELECT pg_get_function_arg_default(p.oid, g)
             FROM generate_series(1, COALESCE(array_length(p.proallargtypes, 1), p.pronargs)) g
             ORDER BY g),
       CASE WHEN rt.typtype = 'c' THEN
           ARRAY(SELECT a.attname::text FROM pg_attribute a
                 WHERE a.attrelid = rt.typrelid AND a.attnum > 0 AND NOT a.attisdropped
                 ORDER BY a.attnum) END,
       obj_description(p.oid, 'pg_proc')
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang
JOIN pg_type rt ON rt.oid = p.prorettype
WHERE n.nspname = ANY(%s) AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND p.prokind IN ('f', 'p')
  AND l.lanname NOT IN ('internal', 'c')
  AND rt.typname NOT IN ('trigger', 'event_trigger', 'internal', 'language_handler',
                         'fdw_handler', 'index_am_handler', 'tsm_handler', 'table_am_handler')
  AND NOT ('internal'::regtype::oid = ANY(p.proargtypes::oid[]))
  AND NOT (rt.typname = 'record' AND p.proallargtypes IS NULL)
  AND NOT EXISTS (SELECT 1 FROM pg_depend dep
                  WHERE dep.classid = 'pg_proc'::regclass AND dep.objid = p.oid AND dep.deptype = 'e')
ORDER BY n.nspname, p.proname, p.oid"""

TYPES_SQL = f"""
SELECT t.oid::int8, format_type(t.oid, NULL), {_TYPE_FACTS}
FROM pg_type t
{_TYPE_JOINS}
WHERE t.oid = ANY(%s::oid[])"""


class CatalogReader:
    """Mixin of ``PostgresDialect``: the service's schemas read into a ``Catalog``."""


    def introspect(self, conn) -> Catalog:
        """Tables, views, columns, keys, relations and routines of the service's schemas.

        Seven queries in one REPEATABLE READ snapshot (when the connection is idle),
        whatever the number of tables.  Raises ``DatabaseError`` (kind ``schema``)
        when a configured schema does not exist.
        """
        own = conn.get_transaction_status() == pgext.TRANSACTION_STATUS_IDLE
        if own:
            self.execute(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            catalog = self._introspect(conn)
        except BaseException:
            if own:
                try:
                    self.execute(conn, "ROLLBACK")
                except McpFlaskError:
                    pass
            raise
        if own:
            self.execute(conn, "COMMIT")
        return catalog

    def _introspect(self, conn) -> Catalog:
        wanted = [s for s in ([self.service.schema] if self.service.schema else [])
                  + list(self.service.extra_schemas) if s]
        _, rows = self.query(conn, SCHEMAS_SQL, (wanted,))
        current, existing = rows[0]
        missing = [s for s in wanted if s not in existing]
        if missing:
            raise DatabaseError(f"schema '{missing[0]}' does not exist in the database", kind="schema")
        default = self.service.schema or current or "public"
        schemas = [default] + [s for s in self.service.extra_schemas if s and s != default]

        def public_name(nsp: str, rel: str) -> str:
            return rel if nsp == default else f"{nsp}.{rel}"

        _, rels = self.query(conn, TABLES_SQL, (schemas,))
        _, cols = self.query(conn, COLUMNS_SQL, (schemas,))
        _, cons = self.query(conn, CONSTRAINTS_SQL, (schemas,))
        _, idxs = self.query(conn, INDEXES_SQL, (schemas,))

        by_oid = {}
        for oid, nsp, rel, kind, comment in rels:
            by_oid[oid] = {"schema": nsp, "name": rel, "kind": kind, "comment": comment,
                           "cols": [], "pk": [], "fks": [], "unique1": set(), "indexed": set()}
        for row in cols:
            if row[0] in by_oid:
                by_oid[row[0]]["cols"].append(row)

        constraint_columns: dict = {}
        for relid, conname, contype, ccols, rnsp, rrel, rcols, upd, dele in cons:
            t = by_oid.get(relid)
            if t is None:
                continue
            constraint_columns[(t["schema"], conname)] = (public_name(t["schema"], t["name"]), tuple(ccols))
            if contype == "p":
                t["pk"] = list(ccols)
                t["indexed"].update(ccols)
                if len(ccols) == 1:
                    t["unique1"].add(ccols[0])
            elif contype == "u":
                if len(ccols) == 1:
                    t["unique1"].add(ccols[0])
            else:
                t["fks"].append(ForeignKey(
                    name=conname, columns=tuple(ccols), ref_table=public_name(rnsp, rrel),
                    ref_columns=tuple(rcols), on_update=FK_ACTIONS.get(upd), on_delete=FK_ACTIONS.get(dele)))
        for relid, iname, unique, partial_or_expr, nkey, icols in idxs:
            t = by_oid.get(relid)
            if t is None:
                continue
            t["indexed"].update(icols)
            if unique and not partial_or_expr:
                constraint_columns.setdefault((t["schema"], iname),
                                              (public_name(t["schema"], t["name"]), tuple(icols)))
                if nkey == 1 and len(icols) == 1:
                    t["unique1"].add(icols[0])

        tables: dict[str, Table] = {}
        for nsp in schemas:                     # default schema first, then extras in order
            for t in by_oid.values():
                if t["schema"] == nsp:
                    table = self._table(t, public_name(t["schema"], t["name"]))
                    tables[table.name] = table
        derive_relations(tables)
        procedures, functions = self._routines(conn, schemas, default)
        self._constraint_columns = constraint_columns
        return Catalog(tables=tables, procedures=procedures, functions=functions)

    def _table(self, t: dict, name: str) -> Table:
        """One Table from the grouped catalog rows."""
        pk = t["pk"]
        single_fk = {fk.columns[0]: fk for fk in t["fks"] if len(fk.columns) == 1}
        fk_cols = {c for fk in t["fks"] for c in fk.columns}
        columns = []
        for (_, cname, db_type, notnull, identity, generated, default_expr, comment, typmod,
             *facts) in t["cols"]:
            stype, length, precision, scale, extra = _map_type(facts, typmod)
            is_pk = cname in pk
            auto = bool(identity) or (default_expr or "").startswith("nextval(")
            if identity:
                extra["identity"] = "always" if identity == "a" else "by default"
            default = None
            if generated:
                # adbin holds the generation expression of a generated column, not a default.
                extra["generated"] = True
                extra["generation_expression"] = default_expr
            elif not (default_expr or "").startswith("nextval("):
                default = literal_default(default_expr, stype)
            elif default_expr:
                default = default_expr          # serial: the expression, kept as text
            if auto and is_pk and len(pk) == 1 and facts[0] in AUTO_ID_TYPES:
                stype = AUTO_ID_TYPES[facts[0]]
            fk = single_fk.get(cname)
            columns.append(Column(
                name=cname, type=stype, db_type=db_type, length=length, precision=precision,
                scale=scale, default=default, allow_null=not notnull, auto_increment=auto,
                is_primary_key=is_pk, is_unique=cname in t["unique1"], is_index=cname in t["indexed"],
                is_foreign_key=cname in fk_cols,
                ref_table=fk.ref_table if fk else None, ref_field=fk.ref_columns[0] if fk else None,
                ref_on_update=fk.on_update if fk else None, ref_on_delete=fk.on_delete if fk else None,
                comment=comment, extra=extra))
        return Table(name=name, columns=columns, is_view=t["kind"] in VIEW_RELKINDS,
                     schema=t["schema"], native_name=t["name"], foreign_keys=t["fks"],
                     comment=t["comment"])

    def _routines(self, conn, schemas: list[str], default_schema: str):
        """Procedures and functions (overloads under the first of their name), in two queries."""
        _, rows = self.query(conn, ROUTINES_SQL, (schemas,))
        oids = sorted({o for r in rows for o in (r[9] or [])} | {r[5] for r in rows})
        types: dict[int, tuple] = {}
        if oids:
            _, trows = self.query(conn, TYPES_SQL, (oids,))
            # oid -> (the catalog's spelling of the type, its facts)
            types = {r[0]: (r[1], tuple(r[2:])) for r in trows}
        procedures: dict[str, Routine] = {}
        functions: dict[str, Routine] = {}
        # Default schema first, then the extra schemas in their configured order;
        # within a name, creation order (oid) decides which overload is the main entry.
        rows = sorted(rows, key=lambda r: (schemas.index(r[1]), r[2], r[0]))
        for row in rows:
            routine = self._routine(row, types, default_schema)
            target = procedures if routine.kind == "procedure" else functions
            if routine.name in target:
                target[routine.name].overloads.append(routine)
            else:
                target[routine.name] = routine
        return procedures, functions

    def _routine(self, row, types: dict, default_schema: str) -> Routine:
        (oid, nsp, proname, prokind, retset, rettype, ret_db, ret_typtype, ret_typname,
         argtypes, modes, names, ndefaults, defaults, comp_cols, comment) = row
        argtypes = argtypes or []
        modes = modes or ["i"] * len(argtypes)
        names = names or [""] * len(argtypes)
        n_inputs = sum(1 for m in modes if m in ("i", "b", "v"))
        first_default = n_inputs - (ndefaults or 0)
        params: list[RoutineParam] = []
        out_cols: list[str] = []
        input_no = 0
        for i, (toid, mode) in enumerate(zip(argtypes, modes)):
            pname = names[i] if i < len(names) and names[i] else f"${i + 1}"
            if mode == "t":                        # RETURNS TABLE column: a result, not a parameter
                out_cols.append(pname)
                continue
            db_type, facts = types.get(toid, (None, None))
            mapped = _map_type(facts) if facts else ("string", None, None, None, {})
            stype = mapped[0]
            param_type = {"o": "OUT", "b": "INOUT"}.get(mode, "IN")
            has_default = False
            default = None
            if mode in ("i", "b", "v"):
                has_default = input_no >= first_default
                if has_default:
                    default = literal_default(defaults[i] if i < len(defaults) else None, stype)
                input_no += 1
            if mode in ("o", "b"):
                out_cols.append(pname)
            p = RoutineParam(name=pname, position=len(params) + 1, param_type=param_type, type=stype,
                             db_type=db_type or "", default=default, has_default=has_default)
            # RoutineParam has no field for these; call_routine needs them.
            p.pg_variadic = mode == "v"
            p.pg_element_type = mapped[4].get("element_type")
            params.append(p)
        kind = "procedure" if prokind == "p" else "function"
        return_type = return_db_type = None
        result_columns = None
        if kind == "function":
            return_db_type = ret_db
            if retset:
                return_type = "table"
            elif ret_typtype == "c" or ret_typname == "record":
                return_type = "row"
            elif ret_typname != "void":
                facts = types.get(rettype, (None, None))[1]
                return_type = _map_type(facts)[0] if facts else "string"
            if out_cols:
                result_columns = out_cols
            elif comp_cols is not None:
                result_columns = list(comp_cols)
            elif retset:
                result_columns = [proname]
        return Routine(name=proname if nsp == default_schema else f"{nsp}.{proname}", kind=kind,
                       params=params, return_type=return_type, return_db_type=return_db_type,
                       returns_set=bool(retset), schema=nsp, native_name=proname,
                       result_columns=result_columns, description=comment)
