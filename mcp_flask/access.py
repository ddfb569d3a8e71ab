"""Who may do what: a role's grants on one service, as the tools consult them.

(Who the caller is, API key -> role, lives in ``credentials``; ``authenticate``
is re-exported here for the app factory.)

``Access`` holds the permissions of one role:

  - ``tool_allowed(spec)``: read-only services and roles lose write tools and
    routine calls entirely; ``disabled_tools`` hides tools;
  - ``verbs(table)`` / ``can`` / ``require(verb, table)``: per-table grants.  An
    exact table name beats globs; among globs the most specific (most literal
    characters) wins, equally specific ones are ORed; ``deny_tables`` always wins;
  - ``visible_table(name)``: a table the role can do nothing with is invisible:
    absent from listings and reported exactly like a missing table;
  - ``table_view(table)``: the table with hidden columns removed (and relations
    or foreign-key hints that would reveal hidden columns or tables), so unknown
    names, filters, order, fields, related and schemas never mention them;
  - ``row_filter(table)``: the role's row filter and its ``{role.x}`` lookups,
    ANDed by the tools into every read, update and delete;
  - ``check_write(table, record, partial=False)``: refuses hidden or
    non-writable columns and records outside the row filter;
  - ``routine_allowed(name)`` / ``require_routine(name)``.

The compiled policy of a role is built once per (service, role) and shared by
every call (``Access`` objects themselves are cheap per-call wrappers).

Imports config, credentials, errors and ``row_check`` (the row filter evaluated in Python).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import re
import threading

from .config import RoleConfig, ServiceConfig
from .credentials import authenticate  # noqa: F401 (re-exported: the transport's hook)
from .errors import InvalidArguments, PermissionDenied
from .row_check import record_satisfies

VERBS = ("read", "create", "update", "delete")
WRITE_VERBS = frozenset({"create", "update", "delete", "routine"})
#: DreamFactory's HTTP verbs and bitmask (GET=1, POST=2, PUT=4, PATCH=8, DELETE=16) as our verbs.
DF_VERB_NAMES = {"get": "read", "post": "create", "put": "update", "patch": "update", "delete": "delete"}
DF_VERB_BITS = ((1, "read"), (2, "create"), (4, "update"), (8, "update"), (16, "delete"))

#: The role of a service that configures none: everything, subject to the service's switches.
FULL_ROLE = RoleConfig()
#: The role of a name no longer in the config (a stale session): nothing at all.
NO_ROLE = RoleConfig(tables={}, routines={})



def expand_verbs(verbs) -> set[str]:
    """A grant's verbs as a set of ours: "*", True, a list, DreamFactory's GET/POST... or a bitmask."""
    if verbs is True or verbs == "*":
        return set(VERBS)
    if verbs is False or verbs is None:
        return set()
    if isinstance(verbs, int):
        return {v for bit, v in DF_VERB_BITS if verbs & bit}
    if isinstance(verbs, str):
        verbs = [verbs]
    out: set[str] = set()
    for v in verbs:
        if isinstance(v, int) and not isinstance(v, bool):
            out |= expand_verbs(v)
            continue
        v = str(v).lower()
        if v == "*":
            return set(VERBS)
        out.add(DF_VERB_NAMES.get(v, v))
    return out


def _specificity(pattern: str) -> int:
    """How specific a glob is: its literal characters (``orders`` > ``ord*`` > ``*``)."""
    return len(re.sub(r"[*?]|\[[^\]]*\]", "", pattern))


def component_pattern(pattern: str) -> str:
    """DreamFactory's component syntax as a plain table glob: ``_table/orders/*`` -> ``orders``,
    ``_table/*`` -> ``*``, ``_proc/name`` / ``_func/name`` -> ``name`` (so imported role
    JSON keeps its meaning); anything else is returned as written."""
    for prefix in ("_table/", "_schema/", "_proc/", "_func/"):
        if pattern.startswith(prefix):
            rest = pattern[len(prefix):]
            if rest.endswith("/*") and len(rest) > 2:
                rest = rest[:-2]
            return rest.split("(", 1)[0] or "*"
    return pattern


def _matches(name: str, pattern: str) -> bool:
    # Names are matched case-insensitively: tables and columns are looked up that way too,
    # so a deny rule written as "Employees" must still hide "employees".
    return fnmatch.fnmatchcase(name.lower(), pattern.lower())


# ---------------------------------------------------------------------------- compiled policy

class _ColumnRules:
    """Column allow/deny lists of one table (every matching ``columns`` entry, combined)."""

    __slots__ = ("allow", "deny", "write_allow", "write_deny")

    def __init__(self, specs: list[dict]):
        # Several matching entries: allow lists intersect, deny lists add up (most restrictive).
        self.allow = [tuple(s["allow"]) for s in specs if s.get("allow") is not None]
        self.deny = tuple(p for s in specs for p in (s.get("deny") or ()))
        self.write_allow = [tuple(s["write_allow"]) for s in specs if s.get("write_allow") is not None]
        self.write_deny = tuple(p for s in specs for p in (s.get("write_deny") or ()))

    def readable(self, column: str) -> bool:
        if any(_matches(column, p) for p in self.deny):
            return False
        return all(any(_matches(column, p) for p in allow) for allow in self.allow)

    def writable(self, column: str) -> bool:
        if not self.readable(column) or any(_matches(column, p) for p in self.write_deny):
            return False
        return all(any(_matches(column, p) for p in allow) for allow in self.write_allow)

    @property
    def empty(self) -> bool:
        return not (self.allow or self.deny or self.write_allow or self.write_deny)


class Policy:
    """One role on one service, compiled once; shared by every ``Access`` for that role."""

    def __init__(self, service: ServiceConfig, role: RoleConfig):
        self.service = service
        self.role = role
        self.read_only = service.read_only or role.read_only
        self.disabled_tools = frozenset(service.disabled_tools) | frozenset(role.disabled_tools)
        self.grants = [(component_pattern(p), _specificity(component_pattern(p)), frozenset(expand_verbs(v)))
                       for p, v in role.tables.items()]
        self.denials = [(component_pattern(p), frozenset(expand_verbs(v))) for p, v in role.deny_tables.items()]
        self.routines = {component_pattern(p): ok for p, ok in role.routines.items()}
        self.lookups = {f"role.{k}": v for k, v in role.values.items()}
        # Case-sensitive LIKE on PostgreSQL, case-insensitive on SQLite and MySQL (check_write).
        self.like_ci = not service.url.startswith("postgres")
        self._lock = threading.Lock()
        self._verbs: dict[str, frozenset] = {}
        self._columns: dict[str, _ColumnRules] = {}
        self._filters: dict[str, tuple | None] = {}
        self._views: dict[str, tuple] = {}       # table name -> (source Table, view Table)
        self._routine_ok: dict[str, bool] = {}

    # -- tables
    def verbs(self, table: str) -> frozenset:
        got = self._verbs.get(table)
        if got is not None:
            return got
        exact = [v for p, _, v in self.grants if p.lower() == table.lower() and not re.search(r"[*?\[]", p)]
        if exact:
            allowed = set().union(*exact)
        else:
            best = -1
            allowed = set()
            for p, spec, v in self.grants:
                if _matches(table, p):
                    if spec > best:
                        best, allowed = spec, set(v)
                    elif spec == best:
                        allowed |= v
        for p, v in self.denials:
            if _matches(table, p):
                allowed -= v
        if self.read_only:
            allowed &= {"read"}
        got = frozenset(allowed)
        with self._lock:
            if len(self._verbs) < 10_000:     # bounded: names come from the catalog, mostly
                self._verbs[table] = got
        return got

    def columns(self, table: str) -> _ColumnRules:
        got = self._columns.get(table)
        if got is None:
            got = _ColumnRules([spec for p, spec in self.role.columns.items() if _matches(table, p)])
            with self._lock:
                if len(self._columns) < 10_000:
                    self._columns[table] = got
        return got

    def row_filter(self, table: str):
        """``(text, lookups)`` of every matching row filter ANDed together, or None."""
        if table in self._filters:
            return self._filters[table]
        texts = [t for p, t in self.role.row_filters.items() if _matches(table, p)]
        got = None
        if texts:
            text = texts[0] if len(texts) == 1 else " and ".join(f"({t})" for t in texts)
            got = (text, dict(self.lookups))
        with self._lock:
            if len(self._filters) < 10_000:
                self._filters[table] = got
        return got

    def routine_allowed(self, name: str) -> bool:
        got = self._routine_ok.get(name)
        if got is None:
            got = self._routine(name)
            with self._lock:
                if len(self._routine_ok) < 10_000:
                    self._routine_ok[name] = got
        return got

    def _routine(self, name: str) -> bool:
        if self.read_only:
            return False
        for p, ok in self.routines.items():
            if p.lower() == name.lower() and not re.search(r"[*?\[]", p):
                return bool(ok)
        matching = [bool(ok) for p, ok in self.routines.items() if _matches(name, p)]
        # Among globs a denial wins: "*": true with "admin_*": false hides admin_ routines.
        return bool(matching) and all(matching)


_POLICIES: dict[tuple, tuple] = {}
_POLICIES_LOCK = threading.Lock()


def policy_for(service: ServiceConfig, role_name: str, role: RoleConfig) -> Policy:
    """The compiled policy of ``role`` on ``service`` (built once per configuration object)."""
    key = (id(service), role_name, id(role))
    got = _POLICIES.get(key)
    if got is not None and got[0] is service and got[1] is role:
        return got[2]
    policy = Policy(service, role)
    with _POLICIES_LOCK:
        if len(_POLICIES) > 1000:          # test suites build many configs; stay bounded
            _POLICIES.clear()
        # The config objects are kept in the value so their ids cannot be reused while cached.
        _POLICIES[key] = (service, role, policy)
    return policy


# ---------------------------------------------------------------------------- Access

class Access:
    """The permissions of one role on one service (a cheap per-call view of a ``Policy``)."""

    def __init__(self, service: ServiceConfig, role_name: str = "", role: RoleConfig | None = None):
        if role is None:
            # No role: full access on services that configure no roles; otherwise a name
            # that is not (or no longer) configured gets nothing.
            role = FULL_ROLE if not role_name and not service.roles else (
                service.roles.get(role_name) or NO_ROLE)
        self.service = service
        self.role_name = role_name
        self.role = role
        self.policy = policy_for(service, role_name, role)
        self.read_only = self.policy.read_only
        self.disabled_tools = self.policy.disabled_tools

    # ------------------------------------------------------------------ tools
    def tool_allowed(self, spec) -> bool:
        """Whether the tool is offered at all to this caller."""
        if spec.name in self.disabled_tools:
            return False
        if self.read_only and (spec.verb in WRITE_VERBS or not spec.read_only):
            return False
        return True

    # ------------------------------------------------------------------ tables
    def verbs(self, table: str) -> frozenset:
        """The verbs this role may use on ``table``."""
        return self.policy.verbs(_name(table))

    def can(self, verb: str, table) -> bool:
        return verb in self.policy.verbs(_name(table))

    # visible_table, require and row_filter run on every tool call: they read the policy's
    # caches themselves (``_name`` and the cache hit of ``Policy.verbs`` / ``row_filter``
    # written out, two frames fewer each) and ask the policy only on a miss.
    def visible_table(self, table) -> bool:
        policy = self.policy
        name = table if isinstance(table, str) else table.name
        got = policy._verbs.get(name)
        return bool(got if got is not None else policy.verbs(name))

    def require(self, verb: str, table) -> None:
        """Raise ``PermissionDenied`` naming the verb and table (call it for visible tables only)."""
        policy = self.policy
        name = table if isinstance(table, str) else table.name
        got = policy._verbs.get(name)
        if verb not in (got if got is not None else policy.verbs(name)):
            raise PermissionDenied(f"permission denied: this role may not {verb} records of '{name}'")

    # ------------------------------------------------------------------ columns
    def column_readable(self, table, column: str) -> bool:
        return self.policy.columns(_name(table)).readable(column)

    def column_writable(self, table, column: str) -> bool:
        return self.policy.columns(_name(table)).writable(column)

    def table_view(self, table):
        """``table`` as this role sees it: hidden columns removed, and with them every relation,
        foreign key and ``ref_table`` hint that would reveal a hidden column or table.

        The full table stays reachable as ``view.base`` (row filters may use hidden columns).
        """
        policy = self.policy
        cached = policy._views.get(table.name)
        if cached is not None and cached[0] is table:
            return cached[1]
        view = self._build_view(table)
        with policy._lock:
            policy._views[table.name] = (table, view)
        return view

    def _build_view(self, table):
        rules = self.policy.columns(table.name)
        readable = self.policy.verbs

        def table_ok(name):
            return name is None or "read" in readable(name)

        def cols_ok(name, cols):
            # A join on a column the role cannot see would reveal its values.
            if name is None or not cols:
                return True
            other = self.policy.columns(name)
            return all(other.readable(c) for c in cols)
        cols = []
        for c in table.columns:
            if not rules.readable(c.name):
                continue
            if c.is_foreign_key and not (table_ok(c.ref_table) and cols_ok(c.ref_table, [c.ref_field] if c.ref_field else [])):
                c = dataclasses.replace(c, is_foreign_key=False, ref_table=None, ref_field=None,
                                        ref_on_update=None, ref_on_delete=None)
            cols.append(c)
        kept = {c.name for c in cols}
        fks = [fk for fk in table.foreign_keys
               if set(fk.columns) <= kept and table_ok(fk.ref_table) and cols_ok(fk.ref_table, fk.ref_columns)]
        rels = [r for r in table.relations
                if set(r.field) <= kept and table_ok(r.ref_table) and table_ok(r.junction_table)
                and cols_ok(r.ref_table, r.ref_field)
                and cols_ok(r.junction_table, tuple(r.junction_field or ()) + tuple(r.junction_ref_field or ()))]
        if len(cols) == len(table.columns) and len(fks) == len(table.foreign_keys) \
                and len(rels) == len(table.relations) and all(a is b for a, b in zip(cols, table.columns)):
            view = table
        else:
            view = dataclasses.replace(table, columns=cols, foreign_keys=fks, relations=rels)
        view.base = getattr(table, "base", table)
        return view

    # ------------------------------------------------------------------ rows
    def row_filter(self, verb_or_table, table=None):
        """``(filter_text, lookups)`` to AND into every read, update and delete of a table, or None.

        Called as ``row_filter(table)`` or ``row_filter(verb, table)`` (the filter is the
        same for every verb).  Compile it against the full table
        (``getattr(table, "base", table)``): a row filter may use a column the role cannot see.
        """
        if table is None:
            table = verb_or_table
        policy = self.policy
        name = table if isinstance(table, str) else table.name
        got = policy._filters.get(name, _UNCACHED)
        return got if got is not _UNCACHED else policy.row_filter(name)

    def check_write(self, table, record: dict, partial: bool = False) -> None:
        """Refuse a record that writes a hidden or read-only column, or lies outside the row filter.

        ``partial`` (an update's patch): columns absent from ``record`` keep their current
        value, which the row filter in the statement's WHERE already checks; only the
        columns being written must satisfy it.  A create (``partial=False``) must satisfy
        the row filter with every column it does not set counted as null.
        """
        if not isinstance(record, dict):
            return
        name = _name(table)
        rules = self.policy.columns(name)
        view = table if not isinstance(table, str) else None
        if not rules.empty:
            for key in record:
                if not isinstance(key, str):
                    continue
                col = view.column(key) if view is not None else None
                cname = col.name if col is not None else key
                if not rules.readable(cname):
                    # Same words as any unknown field: a hidden column does not exist.
                    raise InvalidArguments(f"no field '{key}' in '{name}'")
                if not rules.writable(cname):
                    raise PermissionDenied(f"permission denied: this role may not write field "
                                           f"'{cname}' of '{name}'")
        rf = self.policy.row_filter(name)
        if rf is None or view is None:
            return
        base = getattr(view, "base", view)
        try:
            ok = record_satisfies(rf[0], rf[1], base, record, partial, self.policy.like_ci)
        except InvalidArguments:
            ok = False
        if not ok:
            raise PermissionDenied(f"permission denied: this record is outside the rows this role may "
                                   f"{'update' if partial else 'create'} in '{name}'")

    # ------------------------------------------------------------------ routines
    def routine_allowed(self, name: str) -> bool:
        return self.policy.routine_allowed(name)

    def require_routine(self, name: str) -> None:
        if not self.policy.routine_allowed(name):
            raise PermissionDenied(f"permission denied: this role may not call '{name}'")


#: Marks a table ``Policy._filters`` has no entry for (None is a cached "no row filter").
_UNCACHED = object()


def _name(table) -> str:
    return table if isinstance(table, str) else table.name
