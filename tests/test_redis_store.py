"""RedisSessionStore against a real Redis: every method of the SessionStore interface.

Two store objects on the same prefix stand for two workers (each has its own
worker id, cancellation channel and local call table), so everything that must
cross workers is exercised across them.  Each test has its own key prefix and
deletes its keys; the outage tests run a private redis-server they kill.
"""
from __future__ import annotations

import threading
import time

import pytest

from mcp_flask.database import CallScope
from mcp_flask.redis_store import RedisSessionStore, SessionStoreUnavailable
from mcp_flask.sessions import Session, new_session_id
from conftest import poll
from redis_helpers import RedisScope, ThrowawayRedis, command_calls, kill_client


@pytest.fixture
def scope():
    s = RedisScope()
    yield s
    s.cleanup()


@pytest.fixture
def stores(scope):
    """Two 'workers' sharing one Redis prefix."""
    made = [RedisSessionStore(scope.url, ttl=60, prefix=scope.prefix) for _ in range(2)]
    yield made
    for s in made:
        s.close()


def new_session(store, service="demo", **kw) -> Session:
    return store.create(Session(id=new_session_id(), service=service, protocol_version="2025-11-25", **kw))


def subscribed(*stores):
    """Wait until each store's invalidation subscription is up (its cache is in use)."""
    for store in stores:
        store.get("warm-up")                    # starts the subscriber thread
        poll(lambda: store.cache_stats()["subscribed"])
    return stores


def in_thread(fn, *args):
    box = {}

    def run():
        box["value"] = fn(*args)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


# ---------------------------------------------------------------------------- records
def test_record_round_trip_across_workers(stores):
    a, b = stores
    s = new_session(a, role="reader", credential="k1", client_info={"name": "x"})
    got = b.get(s.id)
    assert got is not None and got.service == "demo" and got.role == "reader" and got.credential == "k1"
    assert got.client_info == {"name": "x"} and got.initialized is False
    got.initialized = True
    got.log_level = "info"
    got.subscriptions.add("db://demo/tables")
    b.save(got)
    again = a.get(s.id)
    assert again.initialized is True and again.log_level == "info"
    assert again.subscriptions == {"db://demo/tables"}
    assert a.get("no-such-session") is None


def test_delete_is_seen_everywhere_and_save_does_not_resurrect(stores):
    a, b = stores
    s = new_session(a)
    assert b.delete(s.id) is True
    assert a.get(s.id) is None
    assert b.delete(s.id) is False
    a.save(s)                       # a late save from a worker still holding the record
    assert b.get(s.id) is None


def test_idle_ttl_expires_and_get_restarts_the_clock(scope):
    store = RedisSessionStore(scope.url, ttl=0.6, prefix=scope.prefix)
    try:
        kept = new_session(store)
        idle = new_session(store)
        end = time.monotonic() + 1.5
        while time.monotonic() < end:     # keep one session busy for well past its TTL
            assert store.get(kept.id) is not None
            time.sleep(0.1)
        assert store.get(idle.id) is None
        assert store.get(kept.id) is not None
    finally:
        store.close()


def test_count_and_sessions_of(stores):
    a, b = stores
    s1, s2 = new_session(a, "demo"), new_session(b, "demo")
    s3 = new_session(a, "other")
    assert a.count() == 3 and b.count() == 3
    assert {s.id for s in b.sessions_of("demo")} == {s1.id, s2.id}
    assert [s.id for s in a.sessions_of("other")] == [s3.id]
    a.delete(s1.id)
    assert b.count() == 2


# ---------------------------------------------------------------------------- events and replay
def test_append_event_and_replay_per_stream(stores):
    a, b = stores
    s = new_session(a)
    ids = [a.append_event(s.id, "post-7", {"n": i}) for i in range(3)]
    other = b.append_event(s.id, "post-8", {"n": 99})
    assert len(set(ids + [other])) == 4
    stream, events = b.events_after(s.id, ids[0])
    assert stream == "post-7"
    assert [m for _, m in events] == [{"n": 1}, {"n": 2}]
    assert [e for e, _ in events] == ids[1:]
    stream, events = a.events_after(s.id, ids[-1])
    assert stream == "post-7" and events == []
    assert a.events_after(s.id, "forged-id") == (None, [])
    assert a.events_after(s.id, "post-7_1-x") == (None, [])


def test_publish_reaches_a_listener_on_another_worker(stores):
    a, b = stores
    s = new_session(a)
    t, box = in_thread(b.listen, s.id, 10)
    time.sleep(0.05)  # not a wait for a result: lets the listener block first (either order must work)
    event_id = a.publish(s.id, {"jsonrpc": "2.0", "method": "notifications/message", "params": {"n": 1}})
    t.join(5)
    assert not t.is_alive()
    assert box["value"] == [(event_id, {"jsonrpc": "2.0", "method": "notifications/message",
                                        "params": {"n": 1}})]
    # Replay of the GET stream works from any worker.
    later = b.publish(s.id, {"n": 2})
    assert a.events_after(s.id, event_id) == ("get", [(later, {"n": 2})])


def test_listen_delivers_queued_messages_once_across_workers(stores):
    a, b = stores
    s = new_session(a)
    a.publish(s.id, {"n": 1})
    a.append_event(s.id, "post-1", {"not": "for the GET stream"})
    a.publish(s.id, {"n": 2})
    assert [m for _, m in b.listen(s.id, 1)] == [{"n": 1}, {"n": 2}]
    a.publish(s.id, {"n": 3})
    assert [m for _, m in a.listen(s.id, 1)] == [{"n": 3}]     # the cursor is shared
    assert b.listen(s.id, 0.2) == []


def test_listen_ends_when_the_session_is_deleted_elsewhere(stores):
    a, b = stores
    s = new_session(a)
    t, box = in_thread(b.listen, s.id, 30)
    time.sleep(0.05)
    started = time.monotonic()
    a.delete(s.id)
    t.join(5)
    assert box["value"] is None and time.monotonic() - started < 5
    assert b.publish(s.id, {"n": 1}) is None
    assert b.listen("unknown-session", 0.1) is None


def test_shutdown_wakes_blocked_listeners(stores):
    a, b = stores
    s = new_session(a)
    t, box = in_thread(b.listen, s.id, 30)
    time.sleep(0.05)
    b.shutdown()
    t.join(10)
    assert not t.is_alive() and box["value"] is None
    assert a.listen(s.id, 0.1) == []           # other workers are unaffected


def test_priming_events_keep_their_id_but_are_not_replayed(stores):
    a, b = stores
    s = new_session(a)
    priming = a.append_event(s.id, "p_1", None)             # stream ids may contain "_"
    first = a.append_event(s.id, "p_1", {"n": 1})
    assert b.events_after(s.id, priming) == ("p_1", [(first, {"n": 1})])
    assert b.events_after(s.id, first) == ("p_1", [])


def test_broadcast_reaches_sessions_and_service_listeners_on_every_worker(stores):
    a, b = stores
    watcher = new_session(a)
    watcher.subscriptions.add("db://demo/customers")
    a.save(watcher)
    bystander = new_session(a)
    elsewhere = new_session(a, "other")
    cursor = b.service_cursor("demo")
    t, box = in_thread(b.listen_service, "demo", cursor, 10)
    time.sleep(0.05)
    changed = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
    a.broadcast("demo", changed)
    t.join(5)
    cursor2, got = box["value"]
    assert got == [changed] and cursor2 != cursor
    updated = {"jsonrpc": "2.0", "method": "notifications/resources/updated",
               "params": {"uri": "db://demo/customers"}}
    b.broadcast("demo", updated)
    assert [m for _, m in b.listen(watcher.id, 1)] == [changed, updated]
    assert [m for _, m in a.listen(bystander.id, 1)] == [changed]       # not subscribed to the URI
    assert b.listen(elsewhere.id, 0.1) == []
    assert a.listen_service("demo", cursor2, 1) == (b.service_cursor("demo"), [updated])
    assert a.listen_service("demo", b.service_cursor("demo"), 0.1)[1] == []


# ---------------------------------------------------------------------------- calls in flight
def test_cancel_reaches_the_worker_running_the_call(stores):
    a, b = stores
    s = new_session(a)
    seven, other = CallScope(), CallScope()
    a.track_call(s.id, 7, seven)
    a.track_call(s.id, "x", other)
    assert a.calls_in_flight(s.id) == 2
    assert b.cancel_call(s.id, "7") is True       # sent to the workers; "7" and 7 differ
    assert b.cancel_call(s.id, "x") is True
    poll(lambda: other.cancelled)                 # one channel, in order: "7" was seen first
    assert seven.cancelled is False
    assert b.cancel_call(s.id, 7) is True
    poll(lambda: seven.cancelled)
    a.untrack_call(s.id, 7)
    a.untrack_call(s.id, "x")
    assert a.calls_in_flight(s.id) == 0


def test_cancel_on_the_same_worker(stores):
    a, _ = stores
    s = new_session(a)
    call = CallScope()
    a.track_call(s.id, "r1", call)
    assert a.cancel_call(s.id, "r1") is True and call.cancelled


# ---------------------------------------------------------------------------- server-to-client requests
def test_response_delivered_on_another_worker_reaches_the_waiter(stores):
    a, b = stores
    s = new_session(a)
    assert b.deliver_response(s.id, 5, {"result": {}}) is False    # nobody waits yet
    a.expect_response(s.id, 5)
    t, box = in_thread(a.wait_response, s.id, 5, 10)
    answer = {"jsonrpc": "2.0", "id": 5, "result": {"action": "accept"}}
    assert b.deliver_response(s.id, 5, answer) is True
    t.join(5)
    assert box["value"] == answer
    assert b.deliver_response(s.id, 5, answer) is False            # interest ended


def test_wait_response_times_out(stores):
    a, _ = stores
    s = new_session(a)
    a.expect_response(s.id, "q")
    started = time.monotonic()
    assert a.wait_response(s.id, "q", 0.3) is None
    assert 0.2 < time.monotonic() - started < 3


# ---------------------------------------------------------------------------- rate limits
def test_token_bucket_is_shared_and_refills(stores):
    a, b = stores
    assert [a.take_token("key1", 3), b.take_token("key1", 3), a.take_token("key1", 3)] == [True] * 3
    assert b.take_token("key1", 3) is False
    assert a.take_token("key2", 3) is True                    # buckets are per key
    assert a.take_token("key3", 0) is True                    # 0 = unlimited
    for _ in range(1200):
        if not a.take_token("fast", 600):
            break
    else:
        pytest.fail("a 600/minute bucket never ran out")
    poll(lambda: b.take_token("fast", 600), deadline_s=2)     # 10 tokens/s come back


def test_keys_carry_the_prefix_and_expire(stores, scope):
    a, _ = stores
    s = new_session(a)
    a.publish(s.id, {"n": 1})
    a.take_token("k", 10)
    keys = scope.keys()
    assert keys and all(k.decode().startswith(scope.prefix) for k in keys)
    for k in keys:
        if not k.decode().endswith("idx"):
            assert scope.client.pttl(k) > 0, k


# ---------------------------------------------------------------------------- the local record cache
def redis_client(url):
    import redis
    return redis.Redis.from_url(url)


def test_cache_hits_do_not_touch_redis():
    """Served from memory: the server runs no GETEX (nor anything else) for cached gets."""
    server = ThrowawayRedis()
    a, b = (RedisSessionStore(server.url, ttl=60, prefix="cache:", touch_interval=30) for _ in range(2))
    try:
        subscribed(a, b)
        s = new_session(a)
        assert b.get(s.id) is not None and a.get(s.id) is not None     # b reads it once
        client = redis_client(server.url)
        client.config_resetstat()
        hits = a.cache_stats()["hits"] + b.cache_stats()["hits"]
        for _ in range(200):
            assert a.get(s.id).id == s.id and b.get(s.id).id == s.id
        assert a.cache_stats()["hits"] + b.cache_stats()["hits"] == hits + 400
        assert command_calls(client, "getex") == 0 and command_calls(client, "zadd") == 0
        # Only the stats call itself reached the server.
        assert {k.split("|")[0] for k in client.info("commandstats")} <= {"cmdstat_info", "cmdstat_config"}
        # An unknown id is not cached: it is asked for every time.
        assert a.get("no-such-session") is None and a.get("no-such-session") is None
        assert command_calls(client, "getex") == 2
    finally:
        a.close()
        b.close()
        server.close()


def test_get_hands_out_private_copies(stores):
    a, _ = subscribed(*stores)
    s = new_session(a)
    first = a.get(s.id)
    first.log_level = "debug"
    first.subscriptions.add("db://demo/tables")
    first.initialized = True
    second = a.get(s.id)
    assert a.cache_stats()["hits"] >= 1
    assert second is not first
    assert second.log_level is None and second.subscriptions == set() and second.initialized is False


def test_delete_on_one_worker_is_seen_by_the_other_at_once(stores):
    a, b = subscribed(*stores)
    for _ in range(200):
        s = new_session(a)
        assert b.get(s.id) is not None                  # read from Redis, cached
        hits = b.cache_stats()["hits"]
        assert b.get(s.id) is not None                  # served from b's cache
        assert b.cache_stats()["hits"] == hits + 1
        assert a.delete(s.id) is True
        assert b.get(s.id) is None                      # no sleep: the invalidation is there
        assert a.get(s.id) is None
    assert b.cache_stats()["subscribed"] and b.cache_stats()["losses"] == 0


def test_a_burst_of_deletes_elsewhere_is_seen_for_every_cached_session(stores):
    """Many invalidations arriving together (one read may buffer several): every cached
    record they name is gone on the other worker at once, none is served stale."""
    a, b = subscribed(*stores)
    sessions = [new_session(a) for _ in range(50)]
    for s in sessions:
        assert b.get(s.id) is not None and b.get(s.id) is not None     # cached on b
    p = a.r.pipeline(transaction=False)
    for s in sessions:
        p.delete(a._k("s", s.id))
        p.publish(a._inv_channel, s.id)
    p.execute()
    assert [b.get(s.id) for s in sessions] == [None] * len(sessions)
    assert b.cache_stats()["subscribed"] and b.cache_stats()["losses"] == 0


def test_a_cached_hit_with_nothing_pending_does_not_ask_redis_py(stores, monkeypatch):
    """The hit path polls the subscriber socket itself; redis-py reads only when bytes are
    there (and then every message is applied)."""
    a, b = subscribed(*stores)
    s = new_session(a)
    assert b.get(s.id) is not None
    conn = b._inv_conn
    reads = []
    real = conn.can_read
    monkeypatch.setattr(conn, "can_read", lambda timeout=0: reads.append(1) or real(timeout))
    hits = b.cache_stats()["hits"]
    for _ in range(20):
        assert b.get(s.id) is not None
    assert b.cache_stats()["hits"] == hits + 20
    assert reads == []
    assert a.delete(s.id) is True
    assert b.get(s.id) is None
    assert reads


def test_a_hit_during_a_drain_waits_for_it(stores):
    """While another thread drains (it may hold messages read but not yet applied), a
    cached hit does not trust the idle socket: it waits for the lock."""
    a, b = subscribed(*stores)
    s = new_session(a)
    assert b.get(s.id) is not None
    assert b._nothing_pending()
    b._inv_drains += 1                      # as _drain does on entry
    try:
        assert not b._nothing_pending()
        held = threading.Event()

        def hold():
            with b._inv_lock:
                held.set()
                time.sleep(0.3)
        t = threading.Thread(target=hold)
        t.start()
        held.wait()
        started = time.monotonic()
        assert b.get(s.id) is not None
        assert time.monotonic() - started >= 0.25
        t.join()
    finally:
        b._inv_drains += 1


def test_a_forked_store_subscribes_afresh_and_still_sees_deletes(stores, monkeypatch):
    """After a fork (simulated: a new fork epoch and another pid) the child never uses the
    parent's cache or socket: it starts its own subscriber, then caches and invalidates."""
    from mcp_flask import redis_store
    a, b = subscribed(*stores)
    s = new_session(a)
    assert b.get(s.id) is not None and b.get(s.id) is not None
    subscriptions = b.cache_stats()["subscriptions"]
    monkeypatch.setattr(redis_store, "_fork_epoch", redis_store._fork_epoch + 1)
    b._inv_pid = -1                         # "the parent's"
    assert b.get(s.id) is not None          # read from Redis: the cache was dropped
    assert b.cache_stats()["entries"] <= 1
    poll(lambda: b.cache_stats()["subscriptions"] > subscriptions and b.cache_stats()["subscribed"])
    # The "parent's" thread (still alive here, unlike after a real fork) wakes once more
    # and finds the new subscription: let it settle before counting hits.
    time.sleep(redis_store.INV_POLL_S + 0.2)
    assert b.get(s.id) is not None and b.get(s.id) is not None
    hits = b.cache_stats()["hits"]
    assert b.get(s.id) is not None and b.cache_stats()["hits"] == hits + 1
    assert a.delete(s.id) is True
    assert b.get(s.id) is None


def test_save_on_one_worker_is_seen_by_the_other_at_once(stores):
    a, b = subscribed(*stores)
    s = new_session(a)
    levels = ["debug", "info", "notice", "warning", "error"]
    for i in range(100):
        assert b.get(s.id) is not None and b.get(s.id) is not None     # cached on b
        mine = a.get(s.id)
        mine.log_level = levels[i % len(levels)]
        mine.subscriptions.add(f"db://demo/t{i}")
        a.save(mine)
        seen = b.get(s.id)
        assert seen.log_level == levels[i % len(levels)]
        assert f"db://demo/t{i}" in seen.subscriptions and len(seen.subscriptions) == i + 1
    assert b.cache_stats()["hits"] >= 100


def test_cached_sessions_still_expire_when_idle(scope):
    a, b = (RedisSessionStore(scope.url, ttl=0.6, prefix=scope.prefix) for _ in range(2))
    try:
        subscribed(a, b)
        s = new_session(a)
        assert a.get(s.id) is not None and b.get(s.id) is not None
        time.sleep(1.0)                     # idle everywhere for more than ttl + touch_interval
        assert a.get(s.id) is None and b.get(s.id) is None
        assert a.count() == 0
    finally:
        a.close()
        b.close()


def test_a_session_used_through_one_cache_stays_alive_in_redis(scope):
    """Touches are lazy (one GETEX per touch_interval) yet keep the Redis TTL alive."""
    a, b = (RedisSessionStore(scope.url, ttl=1.0, prefix=scope.prefix) for _ in range(2))
    try:
        subscribed(a, b)
        assert a.touch_interval == pytest.approx(0.1)
        s = new_session(a)
        misses = a.cache_stats()["misses"]
        started = time.monotonic()
        gets = 0
        while time.monotonic() - started < 3.0:         # three TTLs, only through a's cache
            assert a.get(s.id) is not None
            assert scope.client.pttl(scope.prefix + "s:" + s.id) > 0
            gets += 1
            time.sleep(0.02)
        elapsed = time.monotonic() - started
        reads = a.cache_stats()["misses"] - misses
        assert reads <= elapsed / a.touch_interval + 2 and reads < gets / 2
        assert b.get(s.id) is not None and a.count() == 1
        assert [x.id for x in b.sessions_of("demo")] == [s.id]
        time.sleep(1.0 + a.touch_interval + 0.3)          # then idle everywhere
        assert a.get(s.id) is None and b.get(s.id) is None
    finally:
        a.close()
        b.close()


def test_lost_subscription_bypasses_then_clears_the_cache(scope):
    # A touch interval far beyond the test: only invalidations can refresh b's copy.
    a, b = (RedisSessionStore(scope.url, ttl=600, prefix=scope.prefix, touch_interval=600)
            for _ in range(2))
    try:
        subscribed(a, b)
        # 1. The subscriber connection is killed, then the session deleted: b notices the
        #    dead socket on its next get and reads Redis instead of its cache.
        s = new_session(a)
        assert b.get(s.id) is not None and b.get(s.id) is not None
        kill_client(scope.client, b.cache_stats()["client_id"])
        assert a.delete(s.id) is True
        assert b.get(s.id) is None
        assert b.cache_stats()["losses"] == 1
        # 2. Killed, then saved while b is not subscribed (the message is lost): once b has
        #    subscribed again its cache starts empty, so it never serves the old record.
        poll(lambda: b.cache_stats()["subscribed"])
        s2 = new_session(a)
        assert b.get(s2.id).log_level is None and b.get(s2.id).log_level is None
        subscriptions = b.cache_stats()["subscriptions"]
        kill_client(scope.client, b.cache_stats()["client_id"])
        mine = a.get(s2.id)
        mine.log_level = "debug"
        a.save(mine)
        poll(lambda: b.cache_stats()["subscriptions"] > subscriptions)     # b's thread resubscribed
        assert b.get(s2.id).log_level == "debug"
        hits = b.cache_stats()["hits"]
        assert b.get(s2.id).log_level == "debug" and b.cache_stats()["hits"] == hits + 1
    finally:
        a.close()
        b.close()


# ---------------------------------------------------------------------------- Redis outages
def test_outage_raises_a_clear_503_and_recovers():
    server = ThrowawayRedis()
    store = RedisSessionStore(server.url, ttl=60, prefix="outage:", socket_timeout=1)
    try:
        s = new_session(store)
        assert store.ping()["ok"] is True
        subscribed(store)
        hits = store.cache_stats()["hits"]
        assert store.get(s.id) is not None and store.get(s.id) is not None
        assert store.cache_stats()["hits"] > hits          # served from the cache until...
        server.stop()
        with pytest.raises(SessionStoreUnavailable) as info:
            store.get(s.id)
        assert info.value.http_status == 503 and info.value.code == -32000
        assert store.ping()["ok"] is False
        with pytest.raises(SessionStoreUnavailable):
            new_session(store)
        server.start()

        def recovered():
            try:
                return new_session(store)
            except SessionStoreUnavailable:
                return None
        fresh = poll(recovered, deadline_s=10, every=0.1)
        assert store.get(fresh.id) is not None
        assert store.get(s.id) is None              # a Redis without persistence lost it
        poll(lambda: store.cache_stats()["subscribed"], deadline_s=10)     # resubscribed
        assert store.get(fresh.id) is not None and store.get(s.id) is None
    finally:
        store.close()
        server.close()


def test_app_answers_503_with_a_jsonrpc_error_while_redis_is_away(app_factory, demo_db):
    from conftest import McpTestClient
    server = ThrowawayRedis()
    try:
        app = app_factory({"demo": {"url": "sqlite:///" + demo_db}}, redis_url=server.url)
        client = McpTestClient(app)
        client.initialize()
        assert client.rpc("ping")["result"] == {}
        server.stop()
        r = client.request("ping", Accept="application/json")
        assert r.status_code == 503
        body = r.get_json()
        assert body["jsonrpc"] == "2.0" and body["error"]["code"] == -32000
        assert "Redis" in body["error"]["message"] and r.headers.get("Retry-After")
        fresh = McpTestClient(app)
        r = fresh.post({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                                   "clientInfo": {"name": "t", "version": "1"}}})
        assert r.status_code == 503 and r.get_json()["error"]["code"] == -32000
        server.start()

        def back():
            c = McpTestClient(app)
            try:
                c.initialize()
            except AssertionError:
                return None
            return c
        c = poll(back, deadline_s=10, every=0.1)
        assert c.rpc("ping")["result"] == {}
        # The old session lived only in the restarted Redis: the client is told to start over.
        assert client.request("ping", Accept="application/json").status_code == 404
        app.extensions["mcp_flask"]["store"].close()
    finally:
        server.close()
