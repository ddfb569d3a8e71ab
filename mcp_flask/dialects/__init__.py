"""Dialects: everything that speaks one database's SQL.  ``dialect_for`` picks one by URL.

Driver modules are imported lazily, so a machine without psycopg2 can still
serve SQLite, and nothing connects at import time (gunicorn forks first).
"""
from __future__ import annotations

from .base import Dialect


def dialect_for(service) -> Dialect:
    """The dialect instance for a ``config.ServiceConfig`` (by its URL scheme)."""
    scheme = service.url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        from .sqlite import SqliteDialect
        return SqliteDialect(service)
    if scheme in ("postgres", "postgresql"):
        from .postgresql import PostgresDialect
        return PostgresDialect(service)
    if scheme in ("mysql", "mariadb"):
        from .mysql import MysqlDialect
        return MysqlDialect(service)
    raise ValueError(f"no dialect for URL scheme {scheme!r}")
