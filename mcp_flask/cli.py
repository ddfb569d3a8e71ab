"""The ``mcp-flask`` command: serve, check, hash-key.

* ``mcp-flask serve [--config F] [--bind H:P] [--workers N]`` runs gunicorn with
  gevent workers and the project's gunicorn settings.
* ``mcp-flask check [--config F]`` validates the config and connects to every
  database (and Redis), saying in plain words what is wrong.
* ``mcp-flask hash-key [KEY | --generate]`` prints the hash to put in a service's
  ``api_keys`` (keys are never stored in the config in clear).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import sys

from .config import load_settings, mask_url
from .errors import ConfigError


def hash_api_key(key: str) -> str:
    """The stored form of an API key: ``sha256:<hex>`` (keys are long random strings,
    so a fast hash is enough; comparison is constant-time in ``access``)."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def _settings_or_exit(config: str | None):
    try:
        return load_settings(config)
    except ConfigError as exc:
        print(f"mcp-flask: {exc}", file=sys.stderr)
        sys.exit(2)


def cmd_serve(args) -> int:
    if args.config:
        os.environ["MCP_FLASK_CONFIG"] = os.path.abspath(args.config)
    if args.bind:
        os.environ["MCP_FLASK_BIND"] = args.bind
    if args.workers:
        os.environ["MCP_FLASK_WORKERS"] = str(args.workers)
    settings = _settings_or_exit(None)
    names = ", ".join(f"/mcp/{n}" for n in settings.services)
    print(f"mcp-flask: serving {names} on http://{settings.server.bind} "
          f"({settings.server.workers} gevent worker{'s' if settings.server.workers != 1 else ''})",
          file=sys.stderr)
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:mcp_flask.gunicorn_conf", "mcp_flask:create_app()"]
    sys.stderr.flush()
    os.execv(sys.executable, argv)
    return 0  # not reached


def cmd_check(args) -> int:
    """Validate the config and reach every dependency; one plain line per finding.

    Exit status: 0 all good, 1 something is unreachable or inconsistent, 2 the
    config itself is wrong (``_settings_or_exit``)."""
    settings = _settings_or_exit(args.config)
    from .database import Database
    failures = 0
    server = settings.server
    print(f"config: ok ({settings.source or 'built-in demo configuration'})")
    print(f"server: bind {server.bind}, {server.workers} worker{'s' if server.workers != 1 else ''}, "
          f"sessions {'in Redis' if server.redis_url else 'in memory'}, idle TTL {server.session_ttl:g}s")
    if server.workers > 1 and not server.redis_url:
        failures += 1
        print(f"server: FAILED: {server.workers} workers need Redis for sessions (a session created by one "
              f"worker would be unknown to the others). Set server.redis_url or MCP_FLASK_REDIS_URL, "
              f"or use one worker.")
    if any(h not in ("localhost", "127.0.0.1", "[::1]", "::1") for h in server.allowed_hosts) \
            and not server.ops_token and not os.environ.get("MCP_FLASK_OPS_BIND"):
        print("ops: warning: /readyz and /metrics are open on the public address; set server.ops_token "
              "or MCP_FLASK_OPS_BIND to protect them")
    for name, svc in settings.services.items():
        if svc.demo:
            from .demo import create_demo_database
            create_demo_database(svc.url.split("sqlite:///", 1)[1])
        db = Database(svc)
        try:
            status = db.check()
            if status["ok"]:
                cat = db.catalog()
                print(f"service {name}: ok ({db.dialect.name} at {mask_url(svc.url)}, {len(cat.tables)} tables"
                      f"{', read-only' if svc.read_only else ''})")
                if not cat.tables:
                    print(f"service {name}: warning: no tables are visible"
                          f"{' in schema ' + svc.schema if svc.schema else ''}; check the database and "
                          f"the account's privileges")
            else:
                failures += 1
                print(f"service {name}: FAILED: {status['error']} ({mask_url(svc.url)}); check the url, that "
                      f"the server is running and reachable from here, and the credentials")
        except Exception as exc:  # noqa: BLE001 - say it in plain words, never a traceback
            failures += 1
            print(f"service {name}: FAILED: {_plain(exc)} ({mask_url(svc.url)})")
        finally:
            db.close()
    if server.redis_url:
        failures += _check_redis(server.redis_url)
    print("check: all good" if not failures else
          f"check: {failures} problem{'s' if failures != 1 else ''} found")
    return 1 if failures else 0


def _plain(exc: BaseException) -> str:
    """An exception as one short line (project errors carry their own message)."""
    message = getattr(exc, "message", None) or str(exc).split("\n", 1)[0]
    return f"{type(exc).__name__}: {message[:200]}" if message else type(exc).__name__


def _check_redis(url: str) -> int:
    """Reach Redis and try what the session store needs (streams, scripts); 0 when fine."""
    try:
        import redis
    except ImportError:
        print("redis: FAILED: the 'redis' package is not installed (pip install redis)")
        return 1
    where = mask_url(url)
    try:
        client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        info = client.info("server")
        version = str(info.get("redis_version", "?"))
    except redis.AuthenticationError:
        print(f"redis: FAILED: Redis at {where} refused the credentials in the URL")
        return 1
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        print(f"redis: FAILED: cannot connect to Redis at {where}; is redis-server running and "
              f"reachable from here? (server.redis_url / MCP_FLASK_REDIS_URL)")
        return 1
    except (redis.RedisError, ValueError) as exc:
        print(f"redis: FAILED: {where}: {_plain(exc)}")
        return 1
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major and major < 7:
        print(f"redis: FAILED: Redis {version} at {where} is too old; the session store needs 7.0 or newer "
              f"(stream trimming by MINID, GETEX)")
        return 1
    try:
        key = "mcp-flask:check:" + secrets.token_hex(4)
        client.xadd(key, {"m": "1"})
        client.eval("return redis.call('EXISTS', KEYS[1])", 1, key)
        client.delete(key)
    except redis.RedisError as exc:
        print(f"redis: FAILED: Redis at {where} answers but refused a command the store needs "
              f"({_plain(exc)}); check ACLs, maxmemory and read-only replicas")
        return 1
    print(f"redis: ok (Redis {version} at {where})")
    return 0


def cmd_hash_key(args) -> int:
    key = args.key
    if args.generate:
        key = secrets.token_urlsafe(32)
        print(f"key:  {key}")
    elif key is None:
        key = sys.stdin.readline().strip()
    if not key:
        print("mcp-flask: give a key, pipe one on stdin, or use --generate", file=sys.stderr)
        return 2
    print(f"hash: {hash_api_key(key)}" if args.generate else hash_api_key(key))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mcp-flask", description="MCP server for SQL databases")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the server under gunicorn with gevent workers")
    p.add_argument("--config", help="TOML config file (default: $MCP_FLASK_CONFIG, else the demo)")
    p.add_argument("--bind", help="host:port (default 127.0.0.1:8000)")
    p.add_argument("--workers", type=int, help="gunicorn workers (more than 1 needs Redis)")
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("check", help="validate the config and connect to every database")
    p.add_argument("--config")
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("hash-key", help="print the hash of an API key for the config")
    p.add_argument("key", nargs="?")
    p.add_argument("--generate", action="store_true", help="make a new random key and print both")
    p.set_defaults(func=cmd_hash_key)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
