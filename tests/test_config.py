"""Configuration (config.py): TOML + environment -> settings, with errors naming the bad key.

Also the start-up behaviour around it: a TOML file on disk with relative and
absolute SQLite URLs, and a service whose database cannot be reached answers
with a clear ``isError`` result (instead of failing to start) and recovers
once the database is there.
"""
from __future__ import annotations

import os

import pytest

from conftest import McpTestClient, make_settings
from mcp_flask.config import load_settings
from mcp_flask.errors import ConfigError


def error_of(data=None, env=None, path=None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(path=path, data=data, env=env or {})
    return info.value


@pytest.mark.parametrize("data,key,hint", [
    ({"server": {"sesion_ttl": 3}}, "server.sesion_ttl", "session_ttl"),
    ({"services": {"a": {"url": "sqlite:///x.db", "pool_sise": 3}}}, "services.a.pool_sise", "pool_size"),
    ({"servers": {}}, "servers", "server"),
    ({"services": {"a": {"url": "sqlite:///x.db", "max_rowz": 3}}}, "services.a.max_rowz", "max_rows"),
])
def test_unknown_keys_are_named_with_a_suggestion(data, key, hint):
    err = error_of(data)
    assert err.key == key
    assert f"did you mean '{hint}'" in str(err)


@pytest.mark.parametrize("data,key", [
    ({"services": {"a": {"url": "sqlite:///x.db", "pool_size": "3"}}}, "services.a.pool_size"),
    ({"services": {"a": {"url": "sqlite:///x.db", "read_only": "yes"}}}, "services.a.read_only"),
    ({"services": {"a": {"url": 5}}}, "services.a.url"),
    ({"server": {"allowed_hosts": 5}}, "server.allowed_hosts"),
    ({"server": {"session_ttl": 0}}, "server.session_ttl"),
    ({"server": {"max_body_bytes": -1}}, "server.max_body_bytes"),
    ({"server": {"log_level": "chatty"}}, "server.log_level"),
    ({"server": {"bind": "nowhere"}}, "server.bind"),
    ({"services": {"a": {"url": "oracle://db/x"}}}, "services.a.url"),
    ({"services": {"a": {}}}, "services.a.url"),
    ({"services": {"a b": {"url": "sqlite:///x.db"}}}, "services.a b"),
    ({"services": {}}, "services"),
])
def test_wrong_types_and_values_are_named(data, key):
    err = error_of(data)
    assert err.key == key
    assert err.why


def test_env_overrides_server_settings(tmp_path):
    env = {"MCP_FLASK_ALLOWED_HOSTS": "a.example,b.example", "MCP_FLASK_SESSION_TTL": "5",
           "MCP_FLASK_MAX_BODY_BYTES": "4096", "MCP_FLASK_DATA_DIR": str(tmp_path),
           "MCP_FLASK_BIND": "127.0.0.1:9999"}
    s = load_settings(data={"server": {"session_ttl": 100}}, env=env)
    assert s.server.allowed_hosts == ("a.example", "b.example")
    assert s.server.session_ttl == 5.0          # the environment wins over the file
    assert s.server.max_body_bytes == 4096
    assert s.server.bind == "127.0.0.1:9999"
    assert s.services["demo"].url == "sqlite:///" + os.path.join(str(tmp_path), "demo.db")


def test_env_with_a_bad_number_is_named():
    assert error_of({}, env={"MCP_FLASK_WORKERS": "many"}).key == "MCP_FLASK_WORKERS"


def test_no_services_means_the_demo(tmp_path):
    s = load_settings(data={}, env={"MCP_FLASK_DATA_DIR": str(tmp_path)})
    assert list(s.services) == ["demo"] and s.services["demo"].demo is True


def test_toml_file_with_relative_and_absolute_sqlite_urls(tmp_path):
    cfg = tmp_path / "conf" / "mcp.toml"
    cfg.parent.mkdir()
    cfg.write_text('[server]\nsession_ttl = 60\n\n'
                   '[services.rel]\nurl = "sqlite:///data/rel.db"\n\n'
                   f'[services.abs]\nurl = "sqlite:///{tmp_path}/abs.db"\nmax_rows = 50\n\n'
                   '[services.pg]\nurl = "postgresql://postgres@127.0.0.1:5432/test"\n')
    s = load_settings(path=str(cfg), env={})
    assert s.source == str(cfg)
    assert s.services["rel"].url == "sqlite:///" + str(tmp_path / "conf" / "data" / "rel.db")
    assert s.services["abs"].url == f"sqlite:///{tmp_path}/abs.db"
    assert s.services["abs"].max_rows == 50
    assert s.services["pg"].url == "postgresql://postgres@127.0.0.1:5432/test"
    assert s.server.session_ttl == 60


def test_missing_and_broken_files(tmp_path):
    assert "not found" in str(error_of(path=str(tmp_path / "nope.toml")))
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nbind = 1")
    assert "TOML" in str(error_of(path=str(bad)))


def test_unreachable_database_answers_a_clear_error_and_recovers(app_factory, tmp_path):
    """The service starts; calls say the database cannot be reached; it recovers by itself."""
    missing_dir = tmp_path / "not-yet"
    db = missing_dir / "late.db"
    from mcp_flask import create_app
    app = create_app(make_settings({"late": {"url": f"sqlite:///{db}"}}, data_dir=str(tmp_path)),
                     check_databases=True)
    c = McpTestClient(app, service="late")
    c.initialize()
    text = c.error_text("get_tables")
    assert text.startswith("Connection Error")
    assert str(tmp_path) not in text or "late.db" not in text.split(":", 1)[0]
    # The database appears: the next call works without a restart.
    missing_dir.mkdir()
    from mcp_flask.demo import create_demo_database
    create_demo_database(str(db))
    assert [t["name"] for t in c.data("get_tables")["resource"]][:2] == ["categories", "customer_order_totals"]


def test_unreachable_server_database_says_cannot_be_reached(app_factory):
    app = app_factory({"pg": {"url": "postgresql://postgres:s3cret-pw@127.0.0.1:1/test",
                              "connect_timeout": 2}})
    c = McpTestClient(app, service="pg")
    c.initialize()
    text = c.error_text("get_tables")
    assert text.startswith("Connection Error: ")
    assert "cannot" in text
    assert "s3cret-pw" not in text          # never the password
    # ... and the service keeps serving other methods.
    assert c.rpc("ping")["result"] == {}


def test_a_missing_sqlite_file_is_an_error_not_a_new_empty_database(app_factory, tmp_path):
    """A typo in a sqlite path must not silently serve (and create) an empty database."""
    from conftest import McpTestClient
    missing = tmp_path / "no-such-dir-typo.db"
    app = app_factory({"shop": {"url": f"sqlite:///{missing}"}})
    c = McpTestClient(app, service="shop")
    c.initialize()
    text = c.error_text("get_tables")
    assert text.startswith("Connection Error:")
    assert str(missing) not in text          # no paths or DSNs in messages
    assert not missing.exists()
