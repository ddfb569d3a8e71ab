"""Configuration: a TOML file plus environment variables -> frozen dataclasses.

The file (``MCP_FLASK_CONFIG`` or ``--config``) has a ``[server]`` table and one
``[services.<name>]`` table per database service.  Environment variables
(``MCP_FLASK_*``) override server settings.  Every key is checked: an unknown
key, a wrong type or a bad value raises ``ConfigError`` naming the key
(``services.sales.max_rows``) and why, with a "did you mean" for typos.

With no file at all the server runs one service, ``demo``: the embedded SQLite
sample database, created on first run in the data directory.

Imports only ``errors`` from the project (and the pure ``filters`` parser, lazily, to
check roles' row filters at load time).
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any, get_origin, get_type_hints

from .errors import ConfigError, McpFlaskError

SERVICE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]", "::1")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
API_KEY_HASH_RE = re.compile(r"^sha256:[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class RoleConfig:
    """One role: what a caller holding it may do on a service (see ``access``)."""

    read_only: bool = False
    #: Table grants: glob pattern -> list of verbs (read, create, update, delete; DreamFactory's
    #: GET/POST/PUT/PATCH/DELETE or a verb mask also work) or "*".  An exact name beats globs;
    #: among globs the most specific wins.
    tables: dict = field(default_factory=lambda: {"*": ["*"]})
    #: Table denials: glob pattern -> verbs denied (deny wins over allow).
    deny_tables: dict = field(default_factory=dict)
    #: Column rules per table glob: {"employees": {"deny": ["salary"]}}.  ``allow`` / ``deny``
    #: hide columns from reads and writes alike (globs, case-insensitive); ``write_allow`` /
    #: ``write_deny`` keep visible columns read-only.  Several matching entries combine
    #: (deny lists add up, allow lists intersect).
    columns: dict = field(default_factory=dict)
    #: Row filters per table, in the filter grammar: {"orders": "region = {role.region}"}.
    row_filters: dict = field(default_factory=dict)
    #: Values for ``{role.<name>}`` placeholders in row filters.
    values: dict = field(default_factory=dict)
    #: Routine grants: name or glob -> true/false (an exact name wins; among globs a false wins);
    #: default allows all routines on writable roles.  Read-only roles call none.
    routines: dict = field(default_factory=lambda: {"*": True})
    disabled_tools: tuple = ()


@dataclass(frozen=True)
class ApiKeyConfig:
    """An API key, stored as a hash (``mcp-flask hash-key``), mapped to a role."""

    hash: str
    role: str
    id: str = ""                 # a label for logs and audit; never the key itself
    #: A revoked key stays in the config (for the audit trail) with active = false: it gets 401.
    active: bool = True


@dataclass(frozen=True)
class ServiceConfig:
    """One database service, served at ``/mcp/<name>``."""

    name: str
    url: str
    #: Create the sample database at ``url`` when it does not exist (SQLite only).
    demo: bool = False
    description: str = ""
    #: PostgreSQL: the schema tools see by default, and others addressable as schema.table.
    schema: str = ""
    extra_schemas: tuple = ()
    read_only: bool = False
    disabled_tools: tuple = ()
    #: Hard cap (and default) of rows returned by one call.
    max_rows: int = 1000
    #: Most records one create/update/delete call may carry.
    max_batch: int = 1000
    #: Seconds a statement may run before the database stops it.
    statement_timeout: float = 30.0
    #: Seconds to wait for a new database connection.
    connect_timeout: float = 5.0
    pool_size: int = 10
    #: Seconds to wait for a free pooled connection before answering "database busy".
    pool_timeout: float = 5.0
    #: Seconds a pooled connection may sit idle before it is pinged on checkout.
    pool_idle_check: float = 30.0
    #: PostgreSQL: run repeated reads as server-side prepared statements (PREPARE once per
    #: connection, then EXECUTE).  Turn off behind PgBouncer in transaction pooling mode,
    #: where a prepared statement does not outlive the transaction; other databases ignore it.
    prepared_statements: bool = True
    #: Seconds the introspected schema is cached (tools accept ``refresh`` too).
    schema_ttl: float = 300.0
    #: Most calls one session may run at once.
    max_concurrent_calls: int = 8
    #: Requests per minute per API key (token bucket); 0 = unlimited.
    rate_limit: int = 0
    #: Ask the user (elicitation / input-required) before destructive calls.
    confirm_destructive: bool = False
    #: Authentication: "none" (everyone gets default_role) or "api_key".
    auth: str = "none"
    default_role: str = ""
    roles: dict = field(default_factory=dict)       # name -> RoleConfig
    api_keys: tuple = ()                            # ApiKeyConfig


@dataclass(frozen=True)
class ServerConfig:
    """Process-wide settings (environment variables override the file)."""

    bind: str = "127.0.0.1:8000"
    workers: int = 1
    #: Hosts accepted in the Host header (DNS-rebinding protection); any port.
    allowed_hosts: tuple = LOOPBACK_HOSTS
    #: Origins accepted besides http(s)://<allowed host>[:port]; "*" disables the check.
    allowed_origins: tuple = ()
    #: Seconds an idle session lives.
    session_ttl: float = 600.0
    max_body_bytes: int = 1_048_576
    redis_url: str = ""
    data_dir: str = ""
    log_level: str = "info"
    #: Seconds between SSE keep-alive comments.
    sse_keepalive: float = 15.0
    #: Seconds events stay available for Last-Event-ID replay.
    sse_replay_window: float = 300.0
    #: The SSE ``retry`` hint, in milliseconds.
    sse_retry_ms: int = 1000
    #: Proxies whose X-Forwarded-* headers are trusted (gunicorn forwarded_allow_ips).
    forwarded_allow_ips: str = "127.0.0.1,::1"
    #: Protect /metrics and /readyz with this bearer token ("" = open on loopback).
    ops_token: str = ""
    instructions: str = ""


@dataclass(frozen=True)
class Settings:
    """The whole configuration."""

    server: ServerConfig
    services: dict          # name -> ServiceConfig
    source: str = ""        # the file it came from, for messages


ENV_OVERRIDES = {
    "MCP_FLASK_BIND": "bind",
    "MCP_FLASK_WORKERS": "workers",
    "MCP_FLASK_ALLOWED_HOSTS": "allowed_hosts",
    "MCP_FLASK_ALLOWED_ORIGINS": "allowed_origins",
    "MCP_FLASK_SESSION_TTL": "session_ttl",
    "MCP_FLASK_MAX_BODY_BYTES": "max_body_bytes",
    "MCP_FLASK_REDIS_URL": "redis_url",
    "MCP_FLASK_DATA_DIR": "data_dir",
    "MCP_FLASK_LOG_LEVEL": "log_level",
    "MCP_FLASK_SSE_KEEPALIVE": "sse_keepalive",
    "MCP_FLASK_OPS_TOKEN": "ops_token",
    "MCP_FLASK_FORWARDED_ALLOW_IPS": "forwarded_allow_ips",
}


def default_data_dir() -> str:
    """Where the demo database lives when ``MCP_FLASK_DATA_DIR`` is not set."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "mcp-flask")


def _suggest(key: str, known) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(known))}"


def _coerce(path: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against the dataclass field type ``hint``; convert lists to tuples."""
    origin = get_origin(hint)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected a whole number, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(path, f"expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(path, f"expected a string, got {value!r}")
    if hint is tuple or origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)):
            return tuple(value)
        raise ConfigError(path, f"expected a list, got {value!r}")
    if hint is dict or origin is dict:
        if isinstance(value, dict):
            return value
        raise ConfigError(path, f"expected a table, got {value!r}")
    return value


def _build(cls, path: str, raw: dict, **fixed):
    """Build dataclass ``cls`` from ``raw``, naming ``path.key`` in every error."""
    if not isinstance(raw, dict):
        raise ConfigError(path, f"expected a table, got {raw!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)} - set(fixed)
    kwargs = dict(fixed)
    for key, value in raw.items():
        if key not in names:
            raise ConfigError(f"{path}.{key}", "unknown key" + _suggest(key, names))
        kwargs[key] = _coerce(f"{path}.{key}", value, hints[key])
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required key is missing
        missing = [f.name for f in dataclasses.fields(cls)
                   if f.name not in kwargs and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        raise ConfigError(f"{path}.{missing[0] if missing else '?'}", "required key is missing") from exc


def _positive(path: str, value, allow_zero=False):
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(path, f"must be {'zero or more' if allow_zero else 'greater than zero'}, got {value!r}")


def _check_service(svc: ServiceConfig) -> None:
    p = f"services.{svc.name}"
    if not SERVICE_NAME_RE.match(svc.name):
        raise ConfigError(p, "service names are 1-64 letters, digits, '_', '-' or '.'")
    if not re.match(r"^(sqlite|postgres|postgresql|mysql|mariadb)(\+\w+)?:", svc.url):
        raise ConfigError(f"{p}.url", "expected sqlite:///path, postgresql://... or mysql://...")
    if svc.demo and not svc.url.startswith("sqlite:"):
        raise ConfigError(f"{p}.demo", "the demo database is SQLite; use a sqlite:/// url")
    for key in ("max_rows", "max_batch", "pool_size", "max_concurrent_calls"):
        _positive(f"{p}.{key}", getattr(svc, key))
    for key in ("statement_timeout", "connect_timeout", "pool_timeout", "schema_ttl"):
        _positive(f"{p}.{key}", getattr(svc, key), allow_zero=key == "schema_ttl")
    _positive(f"{p}.rate_limit", svc.rate_limit, allow_zero=True)
    if svc.auth not in ("none", "api_key"):
        raise ConfigError(f"{p}.auth", "expected 'none' or 'api_key'")
    if svc.default_role and svc.default_role not in svc.roles:
        raise ConfigError(f"{p}.default_role", f"no role named '{svc.default_role}' in services.{svc.name}.roles")
    for i, key in enumerate(svc.api_keys):
        if key.role not in svc.roles:
            raise ConfigError(f"{p}.api_keys[{i}].role", f"no role named '{key.role}'")
    if svc.auth == "api_key" and not svc.api_keys and not svc.default_role:
        raise ConfigError(f"{p}.api_keys", "auth = 'api_key' needs at least one key or a default_role")
    if svc.auth == "none" and svc.roles and not svc.default_role:
        raise ConfigError(f"{p}.default_role", "with auth = 'none' every caller gets the default role: "
                                               "name one of the roles (or set auth = 'api_key')")
    if svc.auth == "none" and svc.api_keys:
        raise ConfigError(f"{p}.auth", "api_keys are configured but auth = 'none' would ignore them; "
                                       "set auth = 'api_key'")
    seen_hashes: dict = {}
    for i, key in enumerate(svc.api_keys):
        if not API_KEY_HASH_RE.match(key.hash):
            raise ConfigError(f"{p}.api_keys[{i}].hash", "expected 'sha256:<64 hex digits>' "
                                                         "(print one with: mcp-flask hash-key)")
        if key.hash.lower() in seen_hashes:
            raise ConfigError(f"{p}.api_keys[{i}].hash", f"the same key as api_keys[{seen_hashes[key.hash.lower()]}]")
        seen_hashes[key.hash.lower()] = i
    for rname, role in svc.roles.items():
        _check_role(f"{p}.roles.{rname}", role)


VERB_WORDS = frozenset({"read", "create", "update", "delete", "get", "post", "put", "patch", "*"})
COLUMN_RULE_KEYS = ("allow", "deny", "write_allow", "write_deny")


def _check_verbs(path: str, verbs) -> None:
    if isinstance(verbs, bool) or verbs == "*":
        return
    if isinstance(verbs, int):
        if not 0 <= verbs <= 127:
            raise ConfigError(path, f"a DreamFactory verb mask is 0-127, got {verbs}")
        return
    items = [verbs] if isinstance(verbs, str) else verbs
    if not isinstance(items, (list, tuple)):
        raise ConfigError(path, "expected a list of verbs (read, create, update, delete), \"*\" or a verb mask")
    for v in items:
        if isinstance(v, int) and not isinstance(v, bool):
            continue
        if not isinstance(v, str) or v.lower() not in VERB_WORDS:
            raise ConfigError(path, f"unknown verb {v!r}; expected read, create, update, delete or \"*\"")


def _check_role(path: str, role: RoleConfig) -> None:
    """Every grant, column rule and row filter of a role, checked at start-up (not at the first call)."""
    for key in ("tables", "deny_tables"):
        for pattern, verbs in getattr(role, key).items():
            _check_verbs(f"{path}.{key}.{pattern}", verbs)
    for pattern, rules in role.columns.items():
        if not isinstance(rules, dict):
            raise ConfigError(f"{path}.columns.{pattern}", "expected a table like {deny = [\"ssn\"]}")
        for k, names in rules.items():
            if k not in COLUMN_RULE_KEYS:
                raise ConfigError(f"{path}.columns.{pattern}.{k}", "unknown key" + _suggest(k, COLUMN_RULE_KEYS))
            if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n for n in names):
                raise ConfigError(f"{path}.columns.{pattern}.{k}", "expected a list of column names")
    for name, value in role.values.items():
        if value is not None and not isinstance(value, (str, int, float)):
            raise ConfigError(f"{path}.values.{name}", "expected a string, number or boolean")
    if role.row_filters:
        # The filter grammar is pure (no SQL, no database): parse every filter now.
        from .filters import Lookup, Param, parse_filter
        for pattern, text in role.row_filters.items():
            fpath = f"{path}.row_filters.{pattern}"
            if not isinstance(text, str):
                raise ConfigError(fpath, "expected a filter string")
            try:
                node = parse_filter(text)
            except McpFlaskError as exc:
                raise ConfigError(fpath, f"not a valid filter: {exc}") from None
            for value in _filter_values(node):
                if isinstance(value, Param):
                    raise ConfigError(fpath, f"row filters take {{role.<name>}} lookups, not :{value.name}")
                if isinstance(value, Lookup):
                    scope, _, key = value.name.partition(".")
                    if scope != "role" or key not in role.values:
                        raise ConfigError(fpath, f"{{{value.name}}} has no value in {path}.values")
    for pattern, ok in role.routines.items():
        if not isinstance(ok, bool):
            raise ConfigError(f"{path}.routines.{pattern}", "expected true or false")


def _filter_values(node):
    """Every value node (literal, :param, {lookup}) of a parsed filter."""
    from .filters import Between, Compare, InList, Like, iter_predicates
    for p in iter_predicates(node):
        if isinstance(p, (Compare, Like)):
            yield p.value
        elif isinstance(p, InList):
            yield from p.values
        elif isinstance(p, Between):
            yield p.lo
            yield p.hi


def _service(name: str, raw: dict) -> ServiceConfig:
    path = f"services.{name}"
    if not isinstance(raw, dict):
        raise ConfigError(path, "expected a table")
    raw = dict(raw)
    roles = {}
    for rname, rraw in (raw.pop("roles", None) or {}).items():
        roles[rname] = _build(RoleConfig, f"{path}.roles.{rname}", rraw)
    keys = []
    for i, kraw in enumerate(raw.pop("api_keys", None) or []):
        keys.append(_build(ApiKeyConfig, f"{path}.api_keys[{i}]", kraw))
    svc = _build(ServiceConfig, path, raw, name=name, roles=roles, api_keys=tuple(keys))
    _check_service(svc)
    return svc


def _server(raw: dict, env) -> ServerConfig:
    raw = dict(raw)
    hints = get_type_hints(ServerConfig)
    for var, key in ENV_OVERRIDES.items():
        if var in env and env[var] != "":
            value: Any = env[var]
            hint = hints[key]
            try:
                if hint is int:
                    value = int(value)
                elif hint is float:
                    value = float(value)
            except ValueError:
                raise ConfigError(var, f"expected a number, got {value!r}") from None
            raw[key] = value
    server = _build(ServerConfig, "server", raw)
    if server.log_level.lower() not in LOG_LEVELS:
        raise ConfigError("server.log_level", f"expected one of {', '.join(LOG_LEVELS)}")
    _positive("server.workers", server.workers)
    _positive("server.session_ttl", server.session_ttl)
    _positive("server.max_body_bytes", server.max_body_bytes)
    if not re.match(r"^(\[[0-9a-fA-F:]+\]|[\w.-]+):\d+$|^unix:", server.bind):
        raise ConfigError("server.bind", f"expected host:port or unix:/path, got {server.bind!r}")
    if not server.data_dir:
        server = dataclasses.replace(server, data_dir=default_data_dir())
    return server


def demo_service(data_dir: str) -> ServiceConfig:
    """The built-in ``demo`` service: the SQLite sample in the data directory."""
    return ServiceConfig(name="demo", url="sqlite:///" + os.path.join(data_dir, "demo.db"), demo=True,
                         description="Sample store database (customers, orders, products, events)")


def load_settings(path: str | None = None, env=None, data: dict | None = None) -> Settings:
    """Read the configuration: ``data`` (a parsed dict, for tests), else the TOML file at
    ``path`` or ``$MCP_FLASK_CONFIG``, else the built-in demo configuration."""
    env = os.environ if env is None else env
    path = path or env.get("MCP_FLASK_CONFIG") or None
    base_dir = None
    if data is None and path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(path, "config file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(path, f"not valid TOML: {exc}") from None
        base_dir = os.path.dirname(os.path.abspath(path))
    data = dict(data or {})
    top = {"server", "services"}
    for key in data:
        if key not in top:
            raise ConfigError(key, "unknown top-level table" + _suggest(key, top))
    server = _server(data.get("server") or {}, env)
    raw_services = data.get("services")
    services: dict[str, ServiceConfig] = {}
    if raw_services is None:
        services["demo"] = demo_service(server.data_dir)
    else:
        if not isinstance(raw_services, dict) or not raw_services:
            raise ConfigError("services", "expected at least one [services.<name>] table")
        for name, raw in raw_services.items():
            svc = _service(name, raw)
            services[name] = dataclasses.replace(svc, url=resolve_sqlite_url(svc.url, base_dir or server.data_dir))
    return Settings(server=server, services=services, source=path or "")


def resolve_sqlite_url(url: str, base_dir: str) -> str:
    """Make ``sqlite:///relative.db`` absolute against ``base_dir``; other URLs are unchanged.

    ``sqlite:////abs/path.db`` is absolute already (four slashes), as in SQLAlchemy.
    """
    if not url.startswith("sqlite:///") or url.startswith("sqlite:////"):
        return url
    rel = url[len("sqlite:///"):]
    if rel.startswith(":memory:"):
        return url
    return "sqlite:///" + os.path.normpath(os.path.join(base_dir, rel))


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs and messages."""
    url = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
    # libpq and pymysql also take the password as a query parameter.
    return re.sub(r"([?&](?:password|passwd)=)[^&]*", r"\1***", url, flags=re.IGNORECASE)
