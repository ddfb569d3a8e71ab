"""One configured database service: its dialect, pool, limits and cached catalog.

Tools never touch connections directly; they ask a ``Database`` for

* ``catalog()`` / ``table(name)``: the introspected schema, cached for
  ``schema_ttl`` seconds (``refresh=True`` re-reads it), with "did you mean"
  errors for unknown names;
* ``transaction(read_only=...)``: a pooled connection inside an explicit
  transaction that is committed on success and rolled back on any error,
  discarded if the connection broke, and returned to the pool in ``finally``.
  A connection found dead (the server restarted, its session was killed) is
  replaced transparently at ``BEGIN``, and its idle siblings are purged, so a
  restarted database is served again on the next request;
* connects are bounded: the dialect's ``connect_timeout``, plus (under gevent)
  a backstop timer over the whole handshake, so a server that accepts TCP but
  never answers costs a request seconds, not a hung worker.

A ``CallScope`` ties one running tool call to the connection it uses, so a
``notifications/cancelled`` from the client can stop the statement inside the
database (``dialect.cancel``) and the call ends as ``QueryCancelled``.

Imports errors, metadata, pool and dialects; nothing above them.
"""
from __future__ import annotations

import difflib
import logging
import sys
import threading
import time
from contextlib import contextmanager

from .config import ServiceConfig, mask_url
from .dialects import dialect_for
from .errors import DatabaseUnavailable, NotFound, QueryCancelled, ToolError
from .metadata import Catalog, Routine, Table
from .pool import Pool

log = logging.getLogger("mcp_flask.database")


#: Seconds past ``connect_timeout`` after which a connect attempt is abandoned regardless
#: of the driver (pymysql, for one, waits for the server greeting under its read timeout).
CONNECT_GRACE_S = 1.0


def _green_deadline(seconds: float):
    """A started ``gevent.Timeout`` when running under gevent's monkey patching, else None.

    A backstop for the whole connect (TCP, handshake, session set-up): a server that
    accepts connections but never answers must not hold a request for longer.
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("socket"):
        return None
    import gevent
    timer = gevent.Timeout(seconds)
    timer.start()
    return timer


class CallScope:
    """One tool call in flight: lets another greenlet cancel its statement.

    Lock-free: the running statement is one attribute, ``(dialect, conn)``, replaced
    whole.  ``attach`` publishes it and then looks at ``cancelled``; ``cancel`` sets
    ``cancelled`` and then looks at the statement.  Whichever runs second sees the
    other's write, so a cancellation is never missed (at worst the statement is
    cancelled twice, which is harmless).  A lock per call would cost more than the
    statement bookkeeping it guards (one is made for every tool call)."""

    __slots__ = ("running", "cancelled")

    def __init__(self):
        #: ``(dialect, conn)`` of the statement running now, or None.
        self.running = None
        self.cancelled = False

    def attach(self, dialect, conn) -> None:
        self.running = (dialect, conn)
        if self.cancelled:
            dialect.cancel(conn)

    def detach(self) -> None:
        self.running = None

    def cancel(self) -> None:
        """Mark the call cancelled and stop its running statement, if any."""
        self.cancelled = True
        running = self.running
        if running is not None:
            dialect, conn = running
            try:
                dialect.cancel(conn)
            except Exception:  # noqa: BLE001 - the statement may have just finished
                log.debug("cancel request failed", exc_info=True)


def suggest(name: str, candidates) -> str:
    """``; did you mean 'x'?`` for the closest of ``candidates``, or ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
        close = [lowered[c] for c in close]
    return f"; did you mean '{close[0]}'?" if close else ""


class Database:
    """A configured service's database."""

    def __init__(self, service: ServiceConfig):
        self.config = service
        self.name = service.name
        self.dialect = dialect_for(service)
        #: The dialect's no-round-trip "is this connection unusable?" (PostgreSQL ``is_broken``,
        #: MySQL ``is_closed``), asked on checkout and before a connection goes back to the pool.
        self._is_broken = getattr(self.dialect, "is_broken", None) or getattr(self.dialect, "is_closed", None)
        self.pool = Pool(self._connect, size=service.pool_size, timeout=service.pool_timeout,
                         idle_check=service.pool_idle_check, ping=self.dialect.ping,
                         close=self.dialect.close, is_broken=self._is_broken, name=service.name)
        self._catalog: Catalog | None = None
        self._catalog_at = 0.0
        self._catalog_lock = threading.Lock()
        #: Bumped whenever a refresh finds a different catalog (resources/updated).
        self.catalog_version = 0
        self._catalog_listeners: list = []

    @property
    def supports_routines(self) -> bool:
        return self.dialect.supports_routines

    def _connect(self):
        deadline = _green_deadline(self.config.connect_timeout + CONNECT_GRACE_S)
        try:
            return self.dialect.connect()
        except ToolError:
            raise
        except Exception:  # noqa: BLE001 - never let a driver error (with its DSN) escape
            log.warning("cannot connect to service %s at %s", self.name, mask_url(self.config.url))
            raise DatabaseUnavailable(f"the database of service '{self.name}' cannot be reached") from None
        except BaseException as exc:
            if deadline is None or exc is not deadline:
                raise
            log.warning("service %s at %s did not answer a connect within %g s", self.name,
                        mask_url(self.config.url), self.config.connect_timeout)
            raise DatabaseUnavailable(f"the database of service '{self.name}' did not answer within "
                                      f"{self.config.connect_timeout:g} s") from None
        finally:
            if deadline is not None:
                deadline.close()

    # ------------------------------------------------------------------ connections
    @contextmanager
    def transaction(self, read_only: bool = False, scope: CallScope | None = None):
        """A connection inside one transaction: commit on success, rollback on error.

        The connection always goes back to the pool in ``finally`` (also when the
        caller is a generator closed early, or the greenlet is killed), and is
        discarded instead when it broke: a lost connection, a failed rollback, or
        a dialect saying it is closed.  A disconnect also empties the pool's idle
        connections, which died with the same server (a restart): the next
        request then opens fresh ones instead of finding the corpses one by one.
        """
        dialect = self.dialect
        conn = self._begin(read_only, scope)
        broken = False
        try:
            yield conn
            dialect.commit(conn)
        except BaseException as exc:
            gone = self._is_disconnect(exc)
            broken = gone or not self._succeeds(self.dialect.rollback, conn)
            if gone:
                self.pool.purge_idle()
            if scope is not None and scope.cancelled and isinstance(exc, ToolError):
                raise QueryCancelled() from None
            raise
        finally:
            if scope is not None:
                scope.detach()
            if not broken and not read_only:
                # Writes and routine calls run user code (triggers, routines) that may have
                # changed the session's read-only default: put it back before reuse.
                broken = not self._succeeds(self.dialect.restore_session, conn)
            if not broken:
                broken = self._unfit(conn)
            self.pool.release(conn, broken=broken)

    def read(self, work, *, single: bool = True, scope: CallScope | None = None):
        """``work(conn)`` as a read; returns what it returns.

        ``single``: ``work`` runs exactly one statement (or one server-side cursor).
        When the dialect opens connections read-only by default (PostgreSQL
        ``default_transaction_read_only``, MySQL ``tx_read_only``) and the connection
        provably still is, the statement runs in autocommit: it is its own read-only
        transaction at the engine, and the call costs one round trip instead of three
        (BEGIN READ ONLY, the SELECT, COMMIT).  Otherwise, and for several statements
        that must see one snapshot, an explicit read-only ``transaction``.

        A pooled connection that died while idle is replaced once, transparently, as
        ``transaction`` does at BEGIN: nothing was read yet, so the retry is safe.  A
        read-only transaction that failed on a stale prepared plan (the dialect marks
        the error ``stale_plan``) is run once more, with the statement planned afresh.
        """
        dialect = self.dialect
        if single and dialect.autocommit_reads:
            pool = self.pool
            for attempt in (1, 2):
                conn = pool.acquire()
                if dialect.session_read_only(conn) is not True:
                    pool.release(conn, broken=self._unfit(conn))
                    break
                if scope is not None:
                    scope.attach(dialect, conn)
                broken = False
                try:
                    dialect.start_read(conn)
                    return work(conn)
                except BaseException as exc:
                    gone = broken = self._is_disconnect(exc)     # else checked in finally
                    if gone:
                        pool.purge_idle()
                    if scope is not None and scope.cancelled and isinstance(exc, ToolError):
                        raise QueryCancelled() from None
                    if not (gone and attempt == 1 and isinstance(exc, ToolError)):
                        raise
                finally:
                    if scope is not None:
                        scope.detach()
                    if not broken:
                        broken = self._unfit_after_read(conn)
                    pool.release(conn, broken=broken)
        try:
            with self.transaction(read_only=True, scope=scope) as conn:
                return work(conn)
        except ToolError as exc:
            if not getattr(exc, "stale_plan", False) or (scope is not None and scope.cancelled):
                raise
        # A prepared statement's plan went stale inside the transaction (a column changed
        # type): the dialect forgot the statement, and a read-only transaction is safe to
        # repeat, so the caller never sees the schema change as an error.
        with self.transaction(read_only=True, scope=scope) as conn:
            return work(conn)

    def _unfit(self, conn) -> bool:
        """True when ``conn`` must not go back to the pool: closed, or its read-only
        session default provably changed (user code flipped it)."""
        if self._is_broken is not None and self._safe_is_broken(conn):
            return True
        try:
            return self.dialect.autocommit_reads and self.dialect.session_read_only(conn) is False
        except Exception:  # noqa: BLE001
            return True

    def _unfit_after_read(self, conn) -> bool:
        """After an autocommit read (``autocommit_reads`` is known to be true there): True
        when ``conn`` must not go back to the pool: closed, lost its read-only default
        (``_unfit``), or left a transaction open that could not be rolled back (one that
        could is rolled back here).  One frame, as it runs on every ``read`` call."""
        dialect = self.dialect
        is_broken = self._is_broken
        try:
            if is_broken is not None and is_broken(conn):
                return True
        except Exception:  # noqa: BLE001 - a check that fails means an unusable connection
            return True
        try:
            if dialect.session_read_only(conn) is False:
                return True
        except Exception:  # noqa: BLE001
            return True
        in_tx = getattr(dialect, "in_transaction", None)
        try:
            if in_tx is not None and in_tx(conn):
                dialect.rollback(conn)
            return False
        except Exception:  # noqa: BLE001
            return True

    def _begin(self, read_only: bool, scope: CallScope | None):
        """A pooled connection with a transaction open on it.

        A pooled connection that died while idle (the server restarted, an
        operator killed it) is replaced transparently: the idle pool is purged
        and one fresh connection is tried.  A fresh connection that cannot begin
        is the caller's error.
        """
        dialect = self.dialect
        for attempt in (1, 2):
            conn = self.pool.acquire()
            try:
                if scope is not None:
                    scope.attach(dialect, conn)
                dialect.begin(conn, read_only)
                return conn
            except BaseException as exc:
                dead = isinstance(exc, ToolError) and (
                    self._is_disconnect(exc) or not self._succeeds(self.dialect.ping, conn))
                if scope is not None:
                    scope.detach()
                self.pool.release(conn, broken=dead or not isinstance(exc, ToolError))
                if not dead or attempt == 2:
                    raise
            # The idle connections died with the same server: drop them all, try a fresh one.
            self.pool.purge_idle()
        raise AssertionError("unreachable")

    def _is_disconnect(self, exc: BaseException) -> bool:
        if isinstance(exc, DatabaseUnavailable):
            return True
        try:
            return bool(self.dialect.is_disconnect(exc))
        except Exception:  # noqa: BLE001 - classification must never mask the real error
            return False

    def _safe_is_broken(self, conn) -> bool:
        try:
            return bool(self._is_broken(conn))
        except Exception:  # noqa: BLE001
            return True

    @staticmethod
    def _succeeds(op, conn) -> bool:
        """Run ``op(conn)`` (a rollback, a session reset, a ping); False when it failed:
        the connection is unusable and must be discarded."""
        try:
            op(conn)
            return True
        except Exception:  # noqa: BLE001 - any failure here means a broken connection
            return False

    # ------------------------------------------------------------------ catalog
    def catalog(self, refresh: bool = False) -> Catalog:
        """The introspected catalog, re-read after ``schema_ttl`` or when asked."""
        now = time.monotonic()
        cat = self._catalog
        if cat is not None and not refresh and (now - self._catalog_at) < self.config.schema_ttl:
            return cat
        with self._catalog_lock:
            if self._catalog is not None and not refresh and self._catalog_at > now - self.config.schema_ttl:
                return self._catalog
            with self.transaction(read_only=True) as conn:
                fresh = self.dialect.introspect(conn)
            old = self._catalog
            self._catalog, self._catalog_at = fresh, time.monotonic()
        if old is not None:
            changed = _changed_tables(old, fresh)
            if changed:
                self.catalog_version += 1
                for listener in list(self._catalog_listeners):
                    try:
                        listener(self, changed)
                    except Exception:  # noqa: BLE001 - a listener must not break the tool call
                        log.exception("catalog listener failed")
        return fresh

    def on_catalog_change(self, listener) -> None:
        """Call ``listener(database, changed_table_names)`` when a refresh finds changes."""
        self._catalog_listeners.append(listener)

    def table(self, name: str, visible=None, refresh: bool = False) -> Table:
        """The table or view called ``name``; ``NotFound`` with a suggestion otherwise.

        ``visible`` (a predicate on names) hides what the caller's role may not see:
        a hidden table is reported exactly like a missing one, and never suggested.
        """
        # The cached catalog without the ``catalog()`` call while it is fresh (every tool call
        # looks its table up here); the condition is ``catalog()``'s own.
        cat = self._catalog
        if cat is None or refresh or (time.monotonic() - self._catalog_at) >= self.config.schema_ttl:
            cat = self.catalog(refresh)
        table = cat.table(name) if isinstance(name, str) else None
        if table is not None and (visible is None or visible(table.name)):
            return table
        names = [n for n in cat.tables if visible is None or visible(n)]
        raise NotFound(f"no table or view named '{name}'{suggest(str(name), names)}")

    def routine(self, kind: str, name: str, visible=None, refresh: bool = False) -> Routine:
        """The procedure or function called ``name`` (kind: procedure | function)."""
        cat = self.catalog(refresh)
        pool = cat.procedures if kind == "procedure" else cat.functions
        routine = pool.get(name) if isinstance(name, str) else None
        if routine is not None and (visible is None or visible(routine.name)):
            return routine
        names = [n for n in pool if visible is None or visible(n)]
        raise NotFound(f"no stored {kind} named '{name}'{suggest(str(name), names)}")

    # ------------------------------------------------------------------ health
    def check(self) -> dict:
        """Reachability for /readyz and ``mcp-flask check``: {"ok", "error"?, "pool"}."""
        try:
            conn = self.pool.acquire(timeout=min(self.config.pool_timeout, 2.0))
        except ToolError as exc:
            return {"ok": False, "error": exc.message, "pool": self.pool.stats()}
        try:
            self.dialect.ping(conn)
        except Exception:  # noqa: BLE001
            self.pool.release(conn, broken=True)
            return {"ok": False, "error": "the database did not answer a ping", "pool": self.pool.stats()}
        self.pool.release(conn)
        return {"ok": True, "pool": self.pool.stats()}

    def close(self) -> None:
        self.pool.close_all()


def _changed_tables(old: Catalog, new: Catalog) -> set[str]:
    """Names of tables added, removed, or whose columns changed between two catalogs."""
    changed = set(old.tables) ^ set(new.tables)
    for name in set(old.tables) & set(new.tables):
        a, b = old.tables[name], new.tables[name]
        if [(c.name, c.db_type, c.allow_null) for c in a.columns] != \
                [(c.name, c.db_type, c.allow_null) for c in b.columns]:
            changed.add(name)
    return changed
