"""Redis for tests: the shared local Redis (own key prefix per test) and throwaway servers.

``RedisScope`` gives one test a unique key prefix on the shared Redis
(``MCP_FLASK_TEST_REDIS``, default ``redis://127.0.0.1:6379/0``) and deletes its
keys afterwards.  ``ThrowawayRedis`` runs a private ``redis-server`` on a free
loopback port (no persistence) that a test may kill and restart, to see how
the server behaves while Redis is away.  ``command_calls`` counts the commands a
server ran (INFO commandstats), ``kill_client`` drops one connection server-side.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

REDIS_URL = os.environ.get("MCP_FLASK_TEST_REDIS", "redis://127.0.0.1:6379/0")


def redis_or_skip(url: str = REDIS_URL):
    import redis
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {url} (set MCP_FLASK_TEST_REDIS)")
    return client


class RedisScope:
    """A unique key prefix on the shared Redis; ``cleanup()`` deletes every key under it."""

    def __init__(self, url: str = REDIS_URL):
        self.url = url
        self.client = redis_or_skip(url)
        self.prefix = f"mcp-flask-test:{uuid.uuid4().hex[:12]}:"

    def keys(self) -> list:
        return list(self.client.scan_iter(match=self.prefix + "*", count=1000))

    def cleanup(self) -> None:
        keys = self.keys()
        if keys:
            self.client.delete(*keys)


def command_calls(client, command: str) -> int:
    """How many times the Redis server ran ``command`` since start or CONFIG RESETSTAT
    (INFO commandstats: counted by the server, so only meaningful on a private server)."""
    stats = client.info("commandstats").get("cmdstat_" + command.lower())
    return int(stats["calls"]) if stats else 0


def kill_client(client, client_id: int) -> None:
    """Close one client connection from the server side (CLIENT KILL ID), as a restart would."""
    assert client.client_kill_filter(_id=client_id) == 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayRedis:
    """A private redis-server on a loopback port, stoppable and restartable on the same port."""

    def __init__(self):
        self.binary = shutil.which("redis-server")
        if not self.binary:
            pytest.skip("redis-server is not installed")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="mcp-flask-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None
        self.start()

    def start(self, deadline_s: float = 10.0) -> None:
        import redis
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                redis.Redis(port=self.port, socket_timeout=1).ping()
                return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
