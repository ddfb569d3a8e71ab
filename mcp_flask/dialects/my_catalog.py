"""MySQL/MariaDB introspection from ``information_schema``, as a mixin of ``MysqlDialect``.

This module owns ``MysqlCatalog``: ``introspect`` (tables, columns, indexes and
foreign keys in a handful of queries, read into ``Catalog``/``Table``/``Column``),
``_json_check_columns`` (MariaDB's JSON columns, longtext with a json_valid CHECK)
and ``_routines`` (procedures and functions with their parameters).  It relies on
the dialect's ``query`` and ``database``, and fills ``_unique_keys`` and
``_json_checks``, which the error mapping (``my_errors``) reads.

Imports ``errors``, ``metadata`` and ``dialects.my_types`` from the project.
"""
from __future__ import annotations

import re

from ..errors import DatabaseError
from ..metadata import Catalog, Column, ForeignKey, Routine, RoutineParam, Table, derive_relations
from .my_types import _text, normalise_default, simple_type


class MysqlCatalog:
    """``introspect`` and its helpers for ``MysqlDialect`` (needs ``query`` and ``database``)."""

    # ---------------------------------------------------------------- introspection
    def introspect(self, conn) -> Catalog:
        """The whole database in seven queries (no per-table round trips)."""
        mariadb = bool(getattr(conn, "is_mariadb", False))
        quoted_defaults = mariadb and getattr(conn, "server_version", ()) >= (10, 2, 7)
        db = (self.database,)
        _, table_rows = self.query(conn, "SELECT TABLE_NAME, TABLE_TYPE, TABLE_COMMENT FROM information_schema.TABLES "
                                         "WHERE TABLE_SCHEMA = %s ORDER BY BINARY TABLE_NAME", db)
        # BINARY: the same byte order as PostgreSQL's "C" sort and SQLite, not the collation's.
        _, column_rows = self.query(
            conn, "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_DEFAULT, IS_NULLABLE, DATA_TYPE, "
                  "CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, COLUMN_TYPE, EXTRA, "
                  "COLUMN_COMMENT FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                  "ORDER BY TABLE_NAME, ORDINAL_POSITION", db)
        _, index_rows = self.query(
            conn, "SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME FROM information_schema.STATISTICS "
                  "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX", db)
        _, fk_rows = self.query(
            conn, "SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA, "
                  "k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE "
                  "FROM information_schema.KEY_COLUMN_USAGE k "
                  "JOIN information_schema.REFERENTIAL_CONSTRAINTS r "
                  "ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME "
                  "AND r.TABLE_NAME = k.TABLE_NAME "
                  "WHERE k.TABLE_SCHEMA = %s AND k.REFERENCED_TABLE_NAME IS NOT NULL "
                  "ORDER BY k.TABLE_NAME, k.CONSTRAINT_NAME, k.ORDINAL_POSITION", db)
        json_checks, json_constraints = self._json_check_columns(conn) if mariadb else ({}, {})

        # Indexes: which columns are primary, unique on their own, or indexed at all.
        indexes: dict[tuple, dict] = {}
        for tname, iname, non_unique, cname in index_rows:
            tname, iname, cname = _text(tname), _text(iname), _text(cname)
            entry = indexes.setdefault((tname, iname), {"unique": not int(non_unique), "cols": []})
            if cname is not None:          # MySQL 8 functional index parts have no column
                entry["cols"].append(cname)
        primary: dict[str, list] = {}
        unique_single: set[tuple] = set()
        indexed: set[tuple] = set()
        unique_keys: dict[str, dict[str, tuple]] = {}
        for (tname, iname), entry in indexes.items():
            if iname == "PRIMARY":
                primary[tname] = entry["cols"]
            if entry["unique"]:
                unique_keys.setdefault(iname, {})[tname] = tuple(entry["cols"])
                if len(entry["cols"]) == 1:
                    unique_single.add((tname, entry["cols"][0]))
            for c in entry["cols"]:
                indexed.add((tname, c))

        # Foreign keys, composite ones kept together in column order.
        grouped: dict[tuple, list] = {}
        for row in fk_rows:
            row = tuple(_text(v) for v in row)
            grouped.setdefault((row[0], row[1]), []).append(row)
        fks_by_table: dict[str, list[ForeignKey]] = {}
        fk_single: dict[tuple, ForeignKey] = {}
        fk_member: set[tuple] = set()
        for (tname, cname), parts in grouped.items():
            ref_schema, ref_table = parts[0][3], parts[0][4]
            if ref_schema != self.database:
                ref_table = f"{ref_schema}.{ref_table}"   # another database: shown, not related
            fk = ForeignKey(name=cname, columns=tuple(p[2] for p in parts), ref_table=ref_table,
                            ref_columns=tuple(p[5] for p in parts), on_update=parts[0][6],
                            on_delete=parts[0][7])
            if ref_schema == self.database:
                fks_by_table.setdefault(tname, []).append(fk)
            for c in fk.columns:
                fk_member.add((tname, c))
            if len(fk.columns) == 1:
                fk_single[(tname, fk.columns[0])] = fk

        columns_by_table: dict[str, list[Column]] = {}
        for (tname, cname, raw_default, nullable, data_type, char_len, num_prec, num_scale,
             column_type, extra_text, comment) in column_rows:
            tname, cname = _text(tname), _text(cname)
            data_type, column_type = _text(data_type), _text(column_type)
            extra_text = _text(extra_text) or ""
            stype, length, precision, scale, extra = simple_type(data_type, column_type, char_len,
                                                                 num_prec, num_scale)
            if json_checks.get(tname, set()) and cname in json_checks[tname] and data_type.lower() == "longtext":
                stype, length = "json", None      # MariaDB's JSON alias: longtext + CHECK (json_valid(col))
                extra["json_check"] = True
            auto_increment = "auto_increment" in extra_text.lower()
            is_pk = cname in primary.get(tname, ())
            if auto_increment and is_pk and stype in ("integer", "bigint", "smallint", "mediumint", "tinyint"):
                stype = "bigid" if stype == "bigint" else "id"
            if re.search(r"(?i)\b(virtual|stored|persistent) generated\b|^(virtual|persistent|stored)$",
                         extra_text):
                extra["generated"] = True
            if "on update" in extra_text.lower():
                extra["on_update"] = "CURRENT_TIMESTAMP"
            if "invisible" in extra_text.lower():
                extra["invisible"] = True
            default = normalise_default(raw_default, stype, extra_text, quoted_defaults, extra)
            fk = fk_single.get((tname, cname))
            columns_by_table.setdefault(tname, []).append(Column(
                name=cname, type=stype, db_type=column_type, length=length, precision=precision, scale=scale,
                default=default, allow_null=_text(nullable) == "YES", auto_increment=auto_increment,
                is_primary_key=is_pk,
                is_unique=(tname, cname) in unique_single or (is_pk and len(primary[tname]) == 1),
                is_index=(tname, cname) in indexed, is_foreign_key=(tname, cname) in fk_member,
                ref_table=fk.ref_table if fk else None, ref_field=fk.ref_columns[0] if fk else None,
                ref_on_update=fk.on_update if fk else None, ref_on_delete=fk.on_delete if fk else None,
                comment=_text(comment) or None, extra=extra))

        tables: dict[str, Table] = {}
        for tname, ttype, tcomment in table_rows:
            tname, ttype, tcomment = _text(tname), _text(ttype) or "", _text(tcomment)
            is_view = "VIEW" in ttype.upper()
            if is_view and tcomment == "VIEW":
                tcomment = None                   # MySQL writes 'VIEW' as every view's comment
            tables[tname] = Table(name=tname, columns=columns_by_table.get(tname, []), is_view=is_view,
                                  foreign_keys=fks_by_table.get(tname, []), comment=tcomment or None)
        derive_relations(tables)
        procedures, functions = self._routines(conn)
        self._unique_keys = unique_keys
        self._json_checks = json_constraints
        return Catalog(tables=tables, procedures=procedures, functions=functions)

    def _json_check_columns(self, conn) -> tuple[dict[str, set], dict[str, str]]:
        """MariaDB's JSON columns, which are longtext with a ``CHECK (json_valid(`col`))``.

        Returns ``(table -> columns, constraint name -> column)``; error 4025 names a
        column-level constraint ``table.column``, a table-level one by its own name,
        so both spellings are kept.
        """
        try:
            _, rows = self.query(conn, "SELECT TABLE_NAME, CONSTRAINT_NAME, CHECK_CLAUSE "
                                       "FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %s",
                                 (self.database,))
        except DatabaseError:
            return {}, {}              # MariaDB before 10.3.10 has no CHECK_CONSTRAINTS table
        columns: dict[str, set] = {}
        constraints: dict[str, str] = {}
        for tname, cname, clause in rows:
            m = re.fullmatch(r"(?is)\s*json_valid\(\s*`((?:[^`]|``)+)`\s*\)\s*", _text(clause) or "")
            if m:
                tname, cname, column = _text(tname), _text(cname), m.group(1).replace("``", "`")
                columns.setdefault(tname, set()).add(column)
                constraints[f"{tname}.{cname}"] = column
                constraints.setdefault(cname, column)
        return columns, constraints

    def _routines(self, conn) -> tuple[dict, dict]:
        """Procedures and functions with their parameters, in two queries."""
        _, rows = self.query(
            conn, "SELECT ROUTINE_NAME, ROUTINE_TYPE, DATA_TYPE, DTD_IDENTIFIER, CHARACTER_MAXIMUM_LENGTH, "
                  "NUMERIC_PRECISION, NUMERIC_SCALE, ROUTINE_COMMENT FROM information_schema.ROUTINES "
                  "WHERE ROUTINE_SCHEMA = %s ORDER BY ROUTINE_NAME", (self.database,))
        _, prows = self.query(
            conn, "SELECT SPECIFIC_NAME, ROUTINE_TYPE, ORDINAL_POSITION, PARAMETER_MODE, PARAMETER_NAME, "
                  "DATA_TYPE, DTD_IDENTIFIER, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE "
                  "FROM information_schema.PARAMETERS WHERE SPECIFIC_SCHEMA = %s AND ORDINAL_POSITION > 0 "
                  "ORDER BY SPECIFIC_NAME, ROUTINE_TYPE, ORDINAL_POSITION", (self.database,))
        params: dict[tuple, list[RoutineParam]] = {}
        for (rname, rtype, pos, mode, pname, data_type, dtd, clen, nprec, nscale) in prows:
            stype, length, precision, scale, _ = simple_type(_text(data_type), _text(dtd), clen, nprec, nscale)
            params.setdefault((_text(rname), _text(rtype).lower()), []).append(RoutineParam(
                name=_text(pname), position=int(pos), param_type=(_text(mode) or "IN").upper(), type=stype,
                db_type=_text(dtd) or _text(data_type), length=length, precision=precision, scale=scale))
        procedures: dict[str, Routine] = {}
        functions: dict[str, Routine] = {}
        for rname, rtype, data_type, dtd, clen, nprec, nscale, comment in rows:
            rname, kind = _text(rname), (_text(rtype) or "").lower()
            if kind not in ("procedure", "function"):
                continue                       # MariaDB packages (sql_mode=ORACLE)
            routine = Routine(name=rname, kind=kind, params=params.get((rname, kind), []),
                              description=_text(comment) or None)
            if kind == "function":
                routine.return_type = simple_type(_text(data_type), _text(dtd), clen, nprec, nscale)[0]
                routine.return_db_type = _text(dtd) or _text(data_type)
                functions[rname] = routine
            else:
                procedures[rname] = routine
        return procedures, functions
