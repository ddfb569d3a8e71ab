"""Access control (access.py, row_check.py, config role checks): keys, roles, grants, columns, rows.

Everything runs against a real copy of the demo SQLite database through the
real app (Flask test client) or, for the policy rules, real ``Access`` objects
over the demo catalog.  Records-tool cases live at the end: they need
get_table_data / create_records / update_records / delete_records.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from conftest import McpTestClient, make_settings
from mcp_flask.access import Access, expand_verbs
from mcp_flask.credentials import presented_key
from mcp_flask.cli import hash_api_key, main as cli_main
from mcp_flask.config import RoleConfig
from mcp_flask.errors import ConfigError, HttpError, InvalidArguments, PermissionDenied

KEYS = {"admin": "adm-0123456789abcdef0123456789abcdef", "ro": "ro-0123456789abcdef0123456789abcdef",
        "sales": "sal-0123456789abcdef0123456789abcdef"}
WRITE_TOOLS = {"create_records", "update_records", "delete_records", "call_stored_procedure",
               "call_stored_function"}


def roles_service(db: str, **extra) -> dict:
    """The service config the access tests share: three keyed roles and an anonymous one."""
    svc = {
        "url": "sqlite:///" + db, "auth": "api_key", "default_role": "anon",
        "api_keys": [{"hash": hash_api_key(KEYS["admin"]), "role": "admin", "id": "admin-key"},
                     {"hash": hash_api_key(KEYS["ro"]), "role": "ro", "id": "ro-key"},
                     {"hash": hash_api_key(KEYS["sales"]), "role": "sales", "id": "sales-key"}],
        "roles": {
            "admin": {},
            "anon": {"tables": {"products": ["read"], "categories": "GET"},
                     "columns": {"products": {"deny": ["thumbnail", "price"]}}},
            "ro": {"read_only": True, "deny_tables": {"employees": "*", "customer_order_totals": "*"},
                   "columns": {"customers": {"deny": ["email", "phone"]}}},
            "sales": {"tables": {"*": ["read"], "orders": ["read", "create", "update", "delete"],
                                 "order_items": "*"},
                      "deny_tables": {"employees": "*"},
                      "columns": {"orders": {"write_deny": ["total"]}, "customers": {"allow": ["id", "first_name", "city"]}},
                      "row_filters": {"orders": "status = {role.status}"},
                      "values": {"status": "paid"},
                      "routines": {"*": False}},
        },
    }
    svc.update(extra)
    return svc


@pytest.fixture
def app(app_factory, demo_db):
    return app_factory({"demo": roles_service(demo_db)})


def client_for(app, key: str | None = None, header: str = "Authorization") -> McpTestClient:
    headers = {}
    if key is not None:
        headers[header] = f"Bearer {key}" if header == "Authorization" else key
    c = McpTestClient(app, headers=headers)
    c.initialize()
    return c


def init_status(app, **headers):
    c = McpTestClient(app, headers=headers)
    r = c.post({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                           "clientInfo": {"name": "t", "version": "1"}}})
    return r


# ---------------------------------------------------------------------------- keys
def test_hash_key_cli_prints_the_stored_form(capsys):
    assert cli_main(["hash-key", "abc"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == "sha256:" + hashlib.sha256(b"abc").hexdigest()
    assert hash_api_key("abc") == out


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key", "X-DreamFactory-API-Key"])
def test_each_key_header_authenticates(app, header):
    c = client_for(app, KEYS["sales"], header)
    names = [t["name"] for t in c.data("get_tables")["resource"]]
    assert "orders" in names and "employees" not in names


def test_bearer_scheme_is_case_insensitive(app):
    r = init_status(app, Authorization=f"bearer {KEYS['ro']}")
    assert r.status_code == 200


@pytest.mark.parametrize("bad", [
    "WRONG" + KEYS["admin"],            # benborla's endsWith bug: a suffix match must not pass
    KEYS["admin"] + "x",
    KEYS["admin"][:-1],
    KEYS["admin"].upper(),
    " ",
    "x" * 5000,
    hash_api_key(KEYS["admin"]),        # the stored hash is not a key
])
def test_invalid_keys_get_401_with_www_authenticate(app, bad):
    r = init_status(app, **{"X-API-Key": bad})
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="mcp-flask"')
    body = r.get_json()
    assert body["error"]["code"] == -32001
    assert KEYS["admin"] not in r.get_data(as_text=True)


def test_non_bearer_authorization_and_conflicting_headers_are_401(app):
    assert init_status(app, Authorization="Basic YWRtaW46YWRtaW4=").status_code == 401
    assert init_status(app, Authorization="Bearer").status_code == 401
    r = init_status(app, Authorization=f"Bearer {KEYS['ro']}", **{"X-API-Key": KEYS["admin"]})
    assert r.status_code == 401
    # The same key twice is fine.
    assert init_status(app, Authorization=f"Bearer {KEYS['ro']}", **{"X-API-Key": KEYS["ro"]}).status_code == 200


def test_keyless_callers_get_the_default_role(app):
    c = client_for(app)
    names = [t["name"] for t in c.data("get_tables")["resource"]]
    assert names == ["categories", "products"]


def test_keyless_callers_are_refused_without_a_default_role(app_factory, demo_db):
    svc = roles_service(demo_db)
    svc["default_role"] = ""
    app = app_factory({"demo": svc})
    r = init_status(app)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="mcp-flask"'
    assert init_status(app, **{"X-API-Key": KEYS["ro"]}).status_code == 200


def test_session_is_bound_to_its_credentials(app):
    c = client_for(app, KEYS["sales"])
    sid = c.session_id
    # Same session id, another key, no key, a wrong key: all refused; the right key works.
    for headers, status in (({"Authorization": f"Bearer {KEYS['admin']}"}, 403),
                            ({"Authorization": None}, 403),
                            ({"Authorization": "Bearer nope"}, 401)):
        r = c.request("tools/call", {"name": "get_tables", "arguments": {}}, **headers)
        assert r.status_code == status, (headers, r.data)
    assert c.session_id == sid
    assert c.rpc("ping")["result"] == {}
    # A keyless session cannot be taken over by a keyed caller either.
    anon = client_for(app)
    r = anon.request("ping", **{"X-API-Key": KEYS["admin"]})
    assert r.status_code == 403
    # DELETE with foreign credentials is refused too, and the session survives it.
    r = c.http.delete(c.path, headers=c.headers(Authorization=f"Bearer {KEYS['ro']}"))
    assert r.status_code == 403
    assert c.rpc("ping")["result"] == {}


def test_session_records_role_and_key_id(app):
    c = client_for(app, KEYS["ro"])
    store = app.extensions["mcp_flask"]["store"]
    s = store.get(c.session_id)
    assert (s.role, s.credential) == ("ro", "ro-key")
    assert KEYS["ro"] not in json.dumps(s.to_dict())


def test_auth_none_ignores_headers(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db}})
    c = client_for(app, "anything-at-all")
    assert c.data("get_tables")["resource"]


def test_presented_key_reads_all_three_headers():
    assert presented_key({"HTTP_AUTHORIZATION": "Bearer k1"}) == "k1"
    assert presented_key({"HTTP_X_API_KEY": "k2"}) == "k2"
    assert presented_key({"HTTP_X_DREAMFACTORY_API_KEY": "k3"}) == "k3"
    assert presented_key({}) is None
    with pytest.raises(HttpError) as exc:
        presented_key({"HTTP_X_API_KEY": "a", "HTTP_X_DREAMFACTORY_API_KEY": "b"})
    assert exc.value.http_status == 401


# ---------------------------------------------------------------------------- config checks
@pytest.mark.parametrize("change, key", [
    ({"auth": "none"}, "services.demo.auth"),
    ({"auth": "none", "api_keys": [], "default_role": ""}, "services.demo.default_role"),
    ({"api_keys": [{"hash": "md5:abc", "role": "admin"}]}, "services.demo.api_keys[0].hash"),
    ({"api_keys": [{"hash": hash_api_key("a"), "role": "admin"},
                   {"hash": hash_api_key("a"), "role": "ro"}]}, "services.demo.api_keys[1].hash"),
    ({"api_keys": [{"hash": hash_api_key("a"), "role": "nobody"}]}, "services.demo.api_keys[0].role"),
    ({"roles": {"anon": {"tables": {"*": ["fly"]}}}}, "services.demo.roles.anon.tables.*"),
    ({"roles": {"anon": {"columns": {"t": {"hide": ["x"]}}}}}, "services.demo.roles.anon.columns.t.hide"),
    ({"roles": {"anon": {"columns": {"t": {"deny": "x"}}}}}, "services.demo.roles.anon.columns.t.deny"),
    ({"roles": {"anon": {"row_filters": {"orders": "status = 'x'; drop table orders"}}}},
     "services.demo.roles.anon.row_filters.orders"),
    ({"roles": {"anon": {"row_filters": {"orders": "region = {role.region}"}}}},
     "services.demo.roles.anon.row_filters.orders"),
    ({"roles": {"anon": {"row_filters": {"orders": "region = :r"}}}},
     "services.demo.roles.anon.row_filters.orders"),
    ({"roles": {"anon": {"routines": {"*": "yes"}}}}, "services.demo.roles.anon.routines.*"),
    ({"roles": {"anon": {"bogus": 1}}}, "services.demo.roles.anon.bogus"),
])
def test_bad_access_config_names_the_key(demo_db, change, key):
    svc = roles_service(demo_db)
    if "roles" in change:
        change = {"roles": {**svc["roles"], **change["roles"]}}
    svc.update(change)
    with pytest.raises(ConfigError) as exc:
        make_settings({"demo": svc})
    assert exc.value.key == key


def test_valid_role_config_loads(demo_db):
    settings = make_settings({"demo": roles_service(demo_db)})
    role = settings.services["demo"].roles["sales"]
    assert isinstance(role, RoleConfig) and role.values == {"status": "paid"}


# ---------------------------------------------------------------------------- table grants
def access(role: dict, **service) -> Access:
    svc = make_settings({"s": {"url": "sqlite:///x.db", "roles": {"r": role}, "default_role": "r",
                               **service}}).services["s"]
    return Access(svc, "r", svc.roles["r"])


def test_verbs_accept_our_names_dreamfactorys_and_masks():
    assert expand_verbs("*") == {"read", "create", "update", "delete"}
    assert expand_verbs(["GET", "PATCH"]) == {"read", "update"}
    assert expand_verbs(3) == {"read", "create"}
    assert expand_verbs(31) == {"read", "create", "update", "delete"}
    assert expand_verbs([]) == set()


def test_exact_name_beats_globs_and_deny_wins():
    a = access({"tables": {"*": "*", "employees": ["read"], "order*": ["read", "update"], "orders": ["create"]},
                "deny_tables": {"*_secret": "*", "orders": ["create"]}})
    assert a.verbs("customers") == {"read", "create", "update", "delete"}
    assert a.verbs("employees") == {"read"}
    assert a.verbs("order_items") == {"read", "update"}        # order* is more specific than *
    assert a.verbs("orders") == frozenset()                     # exact grant, then its verb denied
    assert not a.visible_table("orders")
    assert a.verbs("payroll_secret") == frozenset()
    assert a.verbs("EMPLOYEES") == {"read"}                     # names match case-insensitively
    with pytest.raises(PermissionDenied) as exc:
        a.require("delete", "employees")
    assert exc.value.text().startswith("Permission Error: permission denied")
    assert "delete" in exc.value.message and "employees" in exc.value.message


def test_read_only_role_or_service_keeps_only_read():
    assert access({"read_only": True}).verbs("orders") == {"read"}
    assert access({}, read_only=True).verbs("orders") == {"read"}
    assert not access({}, read_only=True).routine_allowed("anything")


def test_routine_grants():
    a = access({"routines": {"*": True, "admin_*": False, "admin_report": True}})
    assert a.routine_allowed("get_stats")
    assert not a.routine_allowed("admin_wipe")
    assert a.routine_allowed("admin_report")
    assert not access({"routines": {}}).routine_allowed("x")
    with pytest.raises(PermissionDenied):
        a.require_routine("admin_wipe")


def test_unknown_role_gets_nothing_and_no_roles_means_everything(demo_db):
    svc = make_settings({"s": roles_service(demo_db)}).services["s"]
    assert not Access(svc, "ghost").visible_table("products")
    plain = make_settings({"s": {"url": "sqlite:///x.db"}}).services["s"]
    assert Access(plain, "").verbs("anything") == {"read", "create", "update", "delete"}


# ---------------------------------------------------------------------------- listings
def tool_names(c) -> set:
    return {t["name"] for t in c.rpc("tools/list")["result"]["tools"]}


def test_read_only_role_never_sees_write_tools(app):
    ro = client_for(app, KEYS["ro"])
    names = tool_names(ro)
    assert names and not names & WRITE_TOOLS
    listed = ro.data("list_tools", {"names_only": True})["tools"]
    assert set(listed) == names
    # Calling one by name is "unknown tool", as if it did not exist.
    body = ro.rpc("tools/call", {"name": "create_records", "arguments": {"tableName": "orders", "records": [{}]}})
    assert body["error"]["code"] == -32602


def test_disabled_tools_are_hidden(app_factory, demo_db):
    app = app_factory({"demo": roles_service(demo_db, disabled_tools=["get_table_fields"])})
    c = client_for(app, KEYS["admin"])
    assert "get_table_fields" not in tool_names(c)
    assert c.rpc("tools/call", {"name": "get_table_fields", "arguments": {"tableName": "orders"}})["error"]["code"] == -32602


def test_listings_show_only_what_the_role_may_use(app):
    sales = client_for(app, KEYS["sales"])
    tables = {t["name"]: t["access"] for t in sales.data("get_tables")["resource"]}
    assert "employees" not in tables
    assert tables["orders"] == ["GET", "POST", "PATCH", "DELETE"]
    assert tables["customers"] == ["GET"]
    res = sales.data("get_database_resources", {"asList": True})["resource"]
    assert "employees" not in res and "orders" in res
    text = json.dumps(sales.data("get_database_resources", {"asAccessList": True}))
    assert "employees" not in text


def test_hidden_table_is_exactly_like_a_missing_one(app):
    ro = client_for(app, KEYS["ro"])
    hidden = ro.error_text("get_table_schema", {"tableName": "employees"})
    missing = ro.error_text("get_table_schema", {"tableName": "employeex"})
    assert hidden == missing.replace("employeex", "employees")
    assert "permission" not in hidden.lower()
    # No suggestion may point at the hidden table.
    near = ro.error_text("get_table_fields", {"tableName": "employee"})
    assert "did you mean 'employees'" not in near
    # Relationships of visible tables never lead to hidden ones.
    rels = ro.data("get_table_relationships", {"tableName": "orders"})["resource"]
    assert rels and all(r["ref_table"] != "employees" for r in rels)


def test_hidden_columns_are_absent_from_schemas(app):
    anon = client_for(app)
    fields = [f["name"] for f in anon.data("get_table_schema", {"tableName": "products"})["field"]]
    assert "price" not in fields and "thumbnail" not in fields and "sku" in fields
    err = anon.error_text("get_table_fields", {"tableName": "products", "fields": ["price"]})
    err2 = anon.error_text("get_table_fields", {"tableName": "products", "fields": ["prize"]})
    assert "price" not in err2                     # no suggestion of the hidden column
    assert err.replace("price", "X") == err2.replace("prize", "X")
    # A foreign key to a table the role cannot read loses its reference.
    cat = {f["name"]: f for f in anon.data("get_table_fields", {"tableName": "products"})["resource"]}
    assert cat["category_id"]["ref_table"] == "categories"
    sales = client_for(app, KEYS["sales"])
    orders = {f["name"]: f for f in sales.data("get_table_fields", {"tableName": "orders"})["resource"]}
    assert orders["employee_id"]["ref_table"] is None and orders["employee_id"]["is_foreign_key"] is False
    cust = [f["name"] for f in sales.data("get_table_fields", {"tableName": "customers"})["resource"]]
    assert cust == ["id", "first_name", "city"]


# ---------------------------------------------------------------------------- views, row filters, writes
@pytest.fixture
def sales_access(app):
    svc = app.extensions["mcp_flask"]["services"]["demo"]
    return svc.access("sales"), svc.database


def test_table_view_drops_hidden_columns_and_relations(sales_access):
    acc, db = sales_access
    customers = acc.table_view(db.table("customers"))
    assert [c.name for c in customers.columns] == ["id", "first_name", "city"]
    assert customers.column("email") is None and customers.column("EMAIL") is None
    assert customers.base.column("email") is not None
    assert acc.table_view(db.table("customers")) is customers          # built once
    orders = acc.table_view(db.table("orders"))
    assert all(r.ref_table != "employees" for r in orders.relations)


def test_row_filter_is_returned_with_its_lookups(sales_access):
    acc, db = sales_access
    text, lookups = acc.row_filter(db.table("orders"))
    assert text == "status = {role.status}" and lookups == {"role.status": "paid"}
    assert acc.row_filter("read", "orders") == (text, lookups)
    assert acc.row_filter("customers") is None


def test_row_filter_compiles_with_bound_values(sales_access):
    from mcp_flask.dialects.where import compile_filter_text
    acc, db = sales_access
    table = db.table("orders")
    text, lookups = acc.row_filter(table)
    sql, values = compile_filter_text(text, table, db.dialect, lookups=lookups)
    assert "paid" not in sql and values == ["paid"]


def test_check_write_refuses_hidden_and_read_only_columns(sales_access):
    acc, db = sales_access
    orders = acc.table_view(db.table("orders"))
    acc.check_write(orders, {"status": "paid", "customer_id": 1, "ordered_at": "2024-01-01 10:00:00"})
    with pytest.raises(PermissionDenied) as exc:
        acc.check_write(orders, {"status": "paid", "total": 5})
    assert "total" in exc.value.message
    customers = acc.table_view(db.table("customers"))
    with pytest.raises(InvalidArguments) as exc:
        acc.check_write(customers, {"email": "x@y"})
    assert "permission" not in exc.value.message


def test_check_write_checks_the_row_filter(sales_access):
    acc, db = sales_access
    orders = acc.table_view(db.table("orders"))
    with pytest.raises(PermissionDenied):
        acc.check_write(orders, {"status": "pending", "customer_id": 1})
    with pytest.raises(PermissionDenied):
        acc.check_write(orders, {"customer_id": 1})              # create: unset = null, outside
    acc.check_write(orders, {"customer_id": 1}, partial=True)    # update: untouched status stays
    with pytest.raises(PermissionDenied):
        acc.check_write(orders, {"status": "shipped"}, partial=True)


@pytest.mark.parametrize("flt, record, partial, ok", [
    ("total > 100", {"total": "150.5"}, False, True),
    ("total > 100", {"total": 99}, False, False),
    ("total > 100", {"total": "abc"}, False, False),
    ("status in ('paid','shipped') and total between 1 and 10", {"status": "paid", "total": 5}, False, True),
    ("status not in ('paid')", {"status": "paid"}, False, False),
    ("notes like 'vip%'", {"notes": "VIP customer"}, False, True),
    ("notes starts with 'a_'", {"notes": "ab"}, False, False),
    ("notes is null or status = 'paid'", {"notes": "x"}, True, True),
    ("not (status = 'paid')", {"status": "paid"}, False, False),
    ("ordered_at >= '2024-01-01'", {"ordered_at": "2024-02-01T10:00:00"}, False, True),
    ("customer_id = 3", {"customer_id": True}, False, False),
    ("customer_id = 3", {"customer_id": [3]}, False, False),
])
def test_row_filter_evaluation(sales_access, flt, record, partial, ok):
    from mcp_flask.row_check import record_satisfies
    _, db = sales_access
    assert record_satisfies(flt, {}, db.table("orders"), record, partial) is ok


# ---------------------------------------------------------------------------- read-only transactions
def test_read_only_transactions_refuse_writes(app, demo_db):
    db = app.extensions["mcp_flask"]["services"]["demo"].database
    before = sqlite3.connect(demo_db).execute("select count(*) from tags").fetchone()[0]
    with pytest.raises(Exception):
        with db.transaction(read_only=True) as conn:
            db.dialect.execute(conn, "INSERT INTO tags (name) VALUES ('x')")
    with db.transaction() as conn:               # the pooled connection is writable again after
        db.dialect.execute(conn, "SELECT 1")
    assert sqlite3.connect(demo_db).execute("select count(*) from tags").fetchone()[0] == before


# ---------------------------------------------------------------------------- records tools (issue 5 contract)
def payload(result) -> dict:
    assert result["isError"] is False, result
    return json.loads(result["content"][0]["text"])


def test_reads_apply_the_row_filter_and_hide_columns(app):
    sales = client_for(app, KEYS["sales"])
    rows = sales.data("get_table_data", {"tableName": "orders", "limit": 1000})["resource"]
    assert rows and {r["status"] for r in rows} == {"paid"}
    # The caller's own filter cannot widen it.
    rows = sales.data("get_table_data", {"tableName": "orders", "filter": "status = 'pending' or id > 0"})["resource"]
    assert {r["status"] for r in rows} <= {"paid"}
    cust = sales.data("get_table_data", {"tableName": "customers", "limit": 3})["resource"]
    assert cust and all(set(r) == {"id", "first_name", "city"} for r in cust)


@pytest.mark.parametrize("args", [
    {"tableName": "customers", "fields": "email"},
    {"tableName": "customers", "filter": "email like '%@%'"},
    {"tableName": "customers", "order": "email desc"},
    {"tableName": "customers", "group": "email", "fields": "email"},
    {"tableName": "orders", "related": "employees_by_employee_id"},
])
def test_hidden_columns_and_tables_are_unreachable_through_arguments(app, args):
    sales = client_for(app, KEYS["sales"])
    r = sales.call("get_table_data", args)
    assert r["isError"] is True
    text = r["content"][0]["text"]
    assert "permission" not in text.lower()      # unknown, not forbidden: nothing is confirmed
    assert "did you mean 'email'" not in text


def test_writes_respect_verbs_row_filters_and_columns(app, demo_db):
    con = sqlite3.connect(demo_db)
    before = con.execute("select count(*) from orders").fetchone()[0]
    sales = client_for(app, KEYS["sales"])
    # create outside the row filter: refused
    r = sales.call("create_records", {"tableName": "orders", "records": [
        {"customer_id": 1, "status": "pending", "ordered_at": "2024-01-01 00:00:00"}]})
    assert r["isError"] and "permission denied" in r["content"][0]["text"]
    # writing a read-only column: refused
    r = sales.call("create_records", {"tableName": "orders", "records": [
        {"customer_id": 1, "status": "paid", "ordered_at": "2024-01-01 00:00:00", "total": 1}]})
    assert r["isError"] and "total" in r["content"][0]["text"]
    # create on a read-only table: refused by verb
    r = sales.call("create_records", {"tableName": "customers", "records": [{"first_name": "x"}]})
    assert r["isError"] and "permission denied" in r["content"][0]["text"]
    assert con.execute("select count(*) from orders").fetchone()[0] == before
    # update / delete by a filter reach only rows inside the role's filter
    pending = con.execute("select count(*) from orders where status = 'pending'").fetchone()[0]
    sales.call("update_records", {"tableName": "orders", "filter": "status = 'pending'",
                                  "records": [{"notes": "touched"}]})
    sales.call("delete_records", {"tableName": "orders", "filter": "status = 'pending'"})
    assert con.execute("select count(*) from orders where status = 'pending'").fetchone()[0] == pending
    assert con.execute("select count(*) from orders where notes = 'touched'").fetchone()[0] == 0
    # and a good create works
    ok = sales.call("create_records", {"tableName": "orders", "records": [
        {"customer_id": 1, "status": "paid", "ordered_at": "2024-01-01 00:00:00"}]})
    payload(ok)
    assert con.execute("select count(*) from orders").fetchone()[0] == before + 1


def test_updates_inside_the_row_filter_work_and_outside_do_nothing(app, demo_db):
    con = sqlite3.connect(demo_db)
    paid = con.execute("select id from orders where status = 'paid' order by id limit 1").fetchone()[0]
    other = con.execute("select id from orders where status != 'paid' order by id limit 1").fetchone()[0]
    sales = client_for(app, KEYS["sales"])
    payload(sales.call("update_records", {"tableName": "orders", "ids": [paid], "records": [{"notes": "ok"}]}))
    assert con.execute("select notes from orders where id = ?", (paid,)).fetchone()[0] == "ok"
    r = sales.call("update_records", {"tableName": "orders", "ids": [other], "records": [{"notes": "bad"}]})
    assert r["isError"] is True
    r = sales.call("update_records", {"tableName": "orders", "records": [{"id": other, "notes": "bad"}]})
    assert r["isError"] is True
    assert con.execute("select count(*) from orders where notes = 'bad'").fetchone()[0] == 0


def test_row_filter_on_a_hidden_column_works_without_naming_it(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db, "default_role": "r", "roles": {"r": {
        "columns": {"orders": {"deny": ["status"]}},
        "row_filters": {"orders": "status = {role.s}", "tags": "no_such_column = 1"},
        "values": {"s": "shipped"}}}}})
    c = client_for(app)
    rows = c.data("get_table_data", {"tableName": "orders", "limit": 1000})["resource"]
    shipped = sqlite3.connect(demo_db).execute("select count(*) from orders where status = 'shipped'").fetchone()[0]
    assert len(rows) == shipped and all("status" not in r for r in rows)
    text = c.error_text("get_table_data", {"tableName": "tags"})
    assert text.startswith("Permission Error: permission denied") and "no_such_column" not in text


# ---------------------------------------------------------------------------- resources, prompts, completion
def test_resources_and_prompts_show_only_what_the_role_may_see(app):
    ro = client_for(app, KEYS["ro"])
    listed = json.dumps(ro.rpc("resources/list")["result"])
    assert "employees" not in listed and "customers" in listed
    hidden = ro.rpc("resources/read", {"uri": "db://demo/tables/employees"})
    missing = ro.rpc("resources/read", {"uri": "db://demo/tables/employeez"})
    assert hidden["error"]["code"] == missing["error"]["code"] == -32002
    text = ro.rpc("resources/read", {"uri": "db://demo/tables/customers"})["result"]["contents"][0]["text"]
    assert '"first_name"' in text and '"email"' not in text and '"phone"' not in text
    comp = ro.rpc("completion/complete", {"ref": {"type": "ref/prompt", "name": "draft_safe_filter"},
                                          "argument": {"name": "column", "value": ""},
                                          "context": {"arguments": {"table": "customers"}}})
    values = comp["result"]["completion"]["values"]
    assert "first_name" in values and "email" not in values and "phone" not in values
    tables = ro.rpc("completion/complete", {"ref": {"type": "ref/prompt", "name": "explain_table"},
                                            "argument": {"name": "table", "value": "emp"}})
    assert tables["result"]["completion"]["values"] == []
    prompt = ro.rpc("prompts/get", {"name": "draft_safe_filter",
                                    "arguments": {"table": "customers", "question": "who?"}})
    assert "email" not in json.dumps(prompt["result"])


def test_revoked_keys_are_refused(app_factory, demo_db):
    svc = roles_service(demo_db)
    svc["api_keys"][1]["active"] = False
    app = app_factory({"demo": svc})
    assert init_status(app, **{"X-API-Key": KEYS["ro"]}).status_code == 401
    assert init_status(app, **{"X-API-Key": KEYS["admin"]}).status_code == 200


def test_relations_joining_on_hidden_columns_are_dropped(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db, "default_role": "r", "roles": {"r": {
        "columns": {"orders": {"deny": ["customer_id"]}}}}}})
    c = client_for(app)
    rels = [r["name"] for r in c.data("get_table_relationships", {"tableName": "customers"})["resource"]]
    assert "orders_by_customer_id" not in rels and rels        # joins on the hidden orders.customer_id
    text = c.error_text("get_table_data", {"tableName": "customers", "related": "orders_by_customer_id"})
    assert text.startswith(("Validation Error", "Resource Error"))


def test_dreamfactory_component_syntax_means_the_same():
    a = access({"tables": {"_table/*": ["GET"], "_table/orders/*": 31}, "deny_tables": {"_table/employees": "*"},
                "routines": {"_proc/*": True, "_func/secret(1,2)": False}})
    assert a.verbs("customers") == {"read"}
    assert a.verbs("orders") == {"read", "create", "update", "delete"}
    assert not a.visible_table("employees")
    assert a.routine_allowed("report") and not a.routine_allowed("secret")


# ---------------------------------------------------------------------------- ServiceRuntime.access cache
def test_service_access_is_built_once_per_role(app):
    from mcp_flask.access import Access
    svc = app.extensions["mcp_flask"]["services"]["demo"]
    sales = svc.access("sales")
    assert svc.access("sales") is sales and svc.access("anon") is not sales
    # The cached one means what a fresh one means.
    fresh = Access(svc.config, "sales", svc.config.roles["sales"])
    assert fresh.policy is sales.policy and fresh.role is sales.role
    assert svc.access("ghost").verbs("products") == frozenset()       # unknown role: nothing
    assert svc.access("ghost") is svc.access("ghost")


def test_service_access_follows_a_replaced_config_or_role(app):
    import dataclasses
    svc = app.extensions["mcp_flask"]["services"]["demo"]
    old_config = svc.config
    before = svc.access("sales")
    assert before.can("read", "products")
    try:
        # A reload: new config objects, the sales role now denies products.
        role = dataclasses.replace(old_config.roles["sales"], deny_tables={"employees": "*", "products": "*"})
        svc.config = dataclasses.replace(old_config, roles={**old_config.roles, "sales": role})
        after = svc.access("sales")
        assert after is not before and not after.can("read", "products")
        assert svc.access("sales") is after
        # Only the role object replaced, same config object: built afresh too.
        svc.config.roles["sales"] = dataclasses.replace(role, deny_tables={})
        assert svc.access("sales").can("read", "employees")
        # A service whose roles all went: the empty role name now means full access.
        anon_before = svc.access("")
        assert not anon_before.can("read", "employees")
        svc.config = dataclasses.replace(old_config, roles={}, default_role="", auth="none")
        assert svc.access("").can("read", "employees")
    finally:
        svc.config = old_config
    assert svc.access("sales").can("read", "products")


def test_service_access_cache_is_bounded(app, monkeypatch):
    from mcp_flask import protocol
    monkeypatch.setattr(protocol, "ACCESS_CACHE_SIZE", 8)
    svc = app.extensions["mcp_flask"]["services"]["demo"]
    for i in range(50):
        svc.access(f"stale-{i}")
        assert len(svc._access_cache) <= 8
    sales = svc.access("sales")
    assert svc.access("sales") is sales


def test_cached_answers_are_the_first_answers():
    """visible_table, require and row_filter read the policy's caches themselves on a hit:
    the second answer (cached, including a cached "no row filter") is the first one,
    for names and Table-like objects alike."""
    from types import SimpleNamespace
    a = access({"tables": {"*": ["read"], "orders": "*"}, "deny_tables": {"secret": "*"},
                "row_filters": {"orders": "status = 'paid'"}})
    for _ in range(2):
        for t in ("orders", SimpleNamespace(name="orders"), "customers", SimpleNamespace(name="customers")):
            assert a.visible_table(t)
            a.require("read", t)
            name = t if isinstance(t, str) else t.name
            assert a.row_filter(t) == a.row_filter("read", t) == (
                ("status = 'paid'", {}) if name == "orders" else None)
        a.require("delete", "orders")
        with pytest.raises(PermissionDenied):
            a.require("delete", SimpleNamespace(name="customers"))
        assert not a.visible_table("secret") and not a.visible_table(SimpleNamespace(name="secret"))
