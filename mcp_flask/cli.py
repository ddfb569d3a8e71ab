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
    settings = _settings_or_exit(args.config)
    from .database import Database
    failures = 0
    print(f"config: ok ({settings.source or 'built-in demo configuration'})")
    for name, svc in settings.services.items():
        if svc.demo:
            from .demo import create_demo_database
            create_demo_database(svc.url.split("sqlite:///", 1)[1])
        db = Database(svc)
        status = db.check()
        if status["ok"]:
            cat = db.catalog()
            print(f"service {name}: ok ({db.dialect.name}, {mask_url(svc.url)}, {len(cat.tables)} tables)")
        else:
            failures += 1
            print(f"service {name}: FAILED ({mask_url(svc.url)}): {status['error']}")
        db.close()
    if settings.server.redis_url:
        try:
            import redis
            redis.Redis.from_url(settings.server.redis_url, socket_timeout=3).ping()
            print(f"redis: ok ({mask_url(settings.server.redis_url)})")
        except Exception as exc:  # noqa: BLE001 - report any failure in plain words
            failures += 1
            print(f"redis: FAILED ({mask_url(settings.server.redis_url)}): {type(exc).__name__}")
    return 1 if failures else 0


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
