"""The database's shape as the tools see it: tables, columns, relations, routines.

Dialects fill these plain dataclasses from their catalogs (``pg_catalog``,
``information_schema``, SQLite pragmas); tools turn them into DreamFactory's
field/relation/table dictionaries.  Relations are *derived* here from foreign
keys, once, the same way for every dialect, so naming (``{ref_table}_by_{field}``)
and junction detection cannot drift between databases.

Imports nothing from the project.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: DreamFactory's simple types that hold whole numbers (used for value coercion).
INTEGER_TYPES = frozenset({"id", "bigid", "smallid", "mediumid", "integer", "bigint",
                           "smallint", "mediumint", "tinyint"})
DECIMAL_TYPES = frozenset({"decimal", "money"})
FLOAT_TYPES = frozenset({"float", "double"})
TEXT_TYPES = frozenset({"string", "text", "longtext", "mediumtext"})
DATETIME_TYPES = frozenset({"datetime", "datetimetz", "timestamp", "timestamptz",
                            "timestamp_on_create", "timestamp_on_update"})


@dataclass
class Column:
    """One column, with DreamFactory's field keys (``ColumnSchema::toArray``)."""

    name: str
    type: str                      # DreamFactory simple type: integer, string, decimal, ...
    db_type: str                   # native type as the database spells it, e.g. varchar(255)
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    default: Any = None
    allow_null: bool = True
    auto_increment: bool = False
    is_primary_key: bool = False
    is_unique: bool = False
    is_index: bool = False
    is_foreign_key: bool = False
    ref_table: str | None = None
    ref_field: str | None = None
    ref_on_update: str | None = None
    ref_on_delete: str | None = None
    comment: str | None = None
    #: Extra per-dialect facts a tool may need (enum values, array element type ...).
    extra: dict = field(default_factory=dict)

    @property
    def required(self) -> bool:
        """DreamFactory's rule: not nullable, no default, not generated."""
        return (not self.allow_null and self.default is None and not self.auto_increment
                and not self.extra.get("generated"))

    def to_field(self) -> dict:
        """The DreamFactory field object for get_table_fields / get_table_schema."""
        return {
            "name": self.name,
            "label": self.name.replace("_", " ").title(),
            "description": self.comment,
            "type": self.type,
            "db_type": self.db_type,
            "length": self.length,
            "precision": self.precision,
            "scale": self.scale,
            "default": self.default,
            "required": self.required,
            "allow_null": self.allow_null,
            "auto_increment": self.auto_increment,
            "is_primary_key": self.is_primary_key,
            "is_unique": self.is_unique,
            "is_index": self.is_index,
            "is_foreign_key": self.is_foreign_key,
            "ref_table": self.ref_table,
            "ref_field": self.ref_field,
            "ref_on_update": self.ref_on_update,
            "ref_on_delete": self.ref_on_delete,
            "picklist": self.extra.get("picklist"),
            "comments": self.comment,
        }


@dataclass
class ForeignKey:
    """A foreign key from ``columns`` of the owning table to ``ref_columns`` of ``ref_table``."""

    name: str | None
    columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]
    on_update: str | None = None
    on_delete: str | None = None


@dataclass
class Relation:
    """A DreamFactory relationship (``RelationSchema::toArray``)."""

    name: str
    type: str                      # belongs_to | has_many | many_many
    field: tuple[str, ...]         # local column(s)
    ref_table: str
    ref_field: tuple[str, ...]     # column(s) in ref_table
    junction_table: str | None = None
    junction_field: tuple[str, ...] | None = None      # junction column(s) pointing at us
    junction_ref_field: tuple[str, ...] | None = None  # junction column(s) pointing at ref_table
    ref_on_update: str | None = None
    ref_on_delete: str | None = None

    def to_dict(self) -> dict:
        """DreamFactory's relation object; composite fields are comma-joined."""
        def j(cols):
            return None if cols is None else ",".join(cols)
        return {
            "name": self.name,
            "label": self.name.replace("_", " ").title(),
            "description": None,
            "type": self.type,
            "field": j(self.field),
            "is_virtual": False,
            "ref_service_id": None,
            "ref_table": self.ref_table,
            "ref_field": j(self.ref_field),
            "ref_on_update": self.ref_on_update,
            "ref_on_delete": self.ref_on_delete,
            "junction_service_id": None,
            "junction_table": self.junction_table,
            "junction_field": j(self.junction_field),
            "junction_ref_field": j(self.junction_ref_field),
            "always_fetch": False,
            "flatten": False,
            "flatten_drop_prefix": False,
        }


@dataclass
class Table:
    """A table or view.  ``name`` is how tools address it (``schema.table`` outside the default schema)."""

    name: str
    columns: list[Column]
    is_view: bool = False
    schema: str | None = None      # the database schema it lives in (PostgreSQL), else None
    native_name: str | None = None  # the bare name inside ``schema`` (defaults to ``name``)
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    comment: str | None = None

    def __post_init__(self):
        self.by_name = {c.name: c for c in self.columns}
        # Case-insensitive lookup, as DreamFactory validates fields case-insensitively.
        self.by_lower = {c.name.lower(): c for c in self.columns}
        if self.native_name is None:
            self.native_name = self.name

    @property
    def primary_key(self) -> list[str]:
        return [c.name for c in self.columns if c.is_primary_key]

    def column(self, name: str) -> Column | None:
        """The column called ``name`` (exact, then case-insensitive), or None."""
        return self.by_name.get(name) or self.by_lower.get(name.lower())

    @property
    def name_field(self) -> str | None:
        """DreamFactory's ``name_field``: the first text column named like a label."""
        for cand in ("name", "title", "label", "full_name", "username", "email"):
            col = self.by_lower.get(cand)
            if col is not None:
                return col.name
        return None

    def relation(self, name: str) -> Relation | None:
        for r in self.relations:
            if r.name == name:
                return r
        return None


@dataclass
class RoutineParam:
    """One parameter of a stored procedure or function."""

    name: str
    position: int
    param_type: str                # IN | OUT | INOUT
    type: str                      # DreamFactory simple type
    db_type: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    default: Any = None
    has_default: bool = False
    #: Per-dialect facts (PostgreSQL: variadic, array element type ...).
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"name": self.name, "position": self.position, "param_type": self.param_type,
                "type": self.type, "db_type": self.db_type, "length": self.length,
                "precision": self.precision, "scale": self.scale, "default": self.default,
                "has_default": self.has_default}


@dataclass
class Routine:
    """A stored procedure or function."""

    name: str
    kind: str                      # procedure | function
    params: list[RoutineParam]
    return_type: str | None = None  # simple type, "table"/"row" for set-returning, None for procedures
    return_db_type: str | None = None
    returns_set: bool = False
    schema: str | None = None
    native_name: str | None = None
    #: For functions returning rows: the result column names (PostgreSQL TABLE/OUT columns).
    result_columns: list[str] | None = None
    description: str | None = None
    #: Overloads share a name; dialects may keep the extra signatures here.
    overloads: list["Routine"] = field(default_factory=list)

    def __post_init__(self):
        if self.native_name is None:
            self.native_name = self.name

    def to_dict(self) -> dict:
        return {"name": self.name, "label": self.name.replace("_", " ").title(),
                "description": self.description, "native": self.native_name,
                "return_type": self.return_type, "return_db_type": self.return_db_type,
                "returns_set": self.returns_set,
                "params": [p.to_dict() for p in self.params]}


@dataclass
class Catalog:
    """Everything a service exposes, as read in one introspection pass."""

    tables: dict[str, Table]
    procedures: dict[str, Routine] = field(default_factory=dict)
    functions: dict[str, Routine] = field(default_factory=dict)

    def __post_init__(self):
        self.by_lower = {k.lower(): v for k, v in self.tables.items()}

    def table(self, name: str) -> Table | None:
        return self.tables.get(name) or self.by_lower.get(name.lower())


def derive_relations(tables: dict[str, Table]) -> None:
    """Fill ``Table.relations`` from foreign keys, with DreamFactory's names.

    belongs_to ``{ref_table}_by_{field}``; has_many ``{ref_table}_by_{ref_field}``
    (from the referenced side); many_many ``{ref_table}_by_{junction_table}`` when a
    table has exactly two foreign keys whose columns make up its primary key (or all
    of its non-generated columns): the classic junction table.
    """
    for t in tables.values():
        t.relations = []
    for t in tables.values():
        for fk in t.foreign_keys:
            if fk.ref_table not in tables:
                continue
            t.relations.append(Relation(
                name=f"{fk.ref_table}_by_{'_'.join(fk.columns)}", type="belongs_to",
                field=fk.columns, ref_table=fk.ref_table, ref_field=fk.ref_columns,
                ref_on_update=fk.on_update, ref_on_delete=fk.on_delete))
            tables[fk.ref_table].relations.append(Relation(
                name=f"{t.name}_by_{'_'.join(fk.columns)}", type="has_many",
                field=fk.ref_columns, ref_table=t.name, ref_field=fk.columns,
                ref_on_update=fk.on_update, ref_on_delete=fk.on_delete))
    for j in tables.values():
        if j.is_view or len(j.foreign_keys) != 2:
            continue
        fk_cols = {c for fk in j.foreign_keys for c in fk.columns}
        pk = set(j.primary_key)
        own = {c.name for c in j.columns if not c.auto_increment}
        # The FK columns are the whole key (order_items(order_id, product_id)), or the table
        # has nothing but the two FKs besides a generated surrogate id.
        if not ((pk and pk == fk_cols) or own <= fk_cols):
            continue
        a, b = j.foreign_keys
        for left, right in ((a, b), (b, a)):
            if left.ref_table not in tables or right.ref_table not in tables:
                continue
            tables[left.ref_table].relations.append(Relation(
                name=f"{right.ref_table}_by_{j.name}", type="many_many",
                field=left.ref_columns, ref_table=right.ref_table, ref_field=right.ref_columns,
                junction_table=j.name, junction_field=left.columns,
                junction_ref_field=right.columns))
    for t in tables.values():
        # Two FKs to the same table on different columns give distinct names already;
        # identical names (self-joins through one column) get a numeric suffix.
        seen: dict[str, int] = {}
        for r in t.relations:
            n = seen.get(r.name, 0)
            seen[r.name] = n + 1
            if n:
                r.name = f"{r.name}_{n + 1}"
