"""The catalog tools against the demo database, with exact expected data.

get_tables, get_table_schema, get_table_fields, get_table_relationships,
get_database_resources and list_tools: results, argument spellings, "did you
mean" errors, and structuredContent versus each protocol version (validated
against the tool's published outputSchema).  The demo schema is in
``mcp_flask/demo.py``; ``tests/test_demo.py`` pins its content.
"""
from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from conftest import McpTestClient

TABLES = ["categories", "customers", "employees", "events", "order_items", "orders",
          "product_tags", "products", "tags"]
VIEWS = ["customer_order_totals"]
ALL = sorted(TABLES + VIEWS)
FULL_ACCESS = ["GET", "POST", "PATCH", "DELETE"]
CATALOG_TOOLS = ["get_tables", "get_table_schema", "get_table_fields", "get_table_relationships",
                 "get_database_resources", "list_tools"]
FIELD_KEYS = {"name", "type", "db_type", "length", "precision", "scale", "default", "allow_null",
              "auto_increment", "is_primary_key", "is_unique", "is_foreign_key", "ref_table", "ref_field"}


def rel_tuples(related):
    return {(r["name"], r["type"], r["field"], r["ref_table"], r["ref_field"], r["junction_table"])
            for r in related}


# ---------------------------------------------------------------------------- get_tables
def test_get_tables(client):
    out = client.data("get_tables")["resource"]
    assert [t["name"] for t in out] == ALL
    by = {t["name"]: t for t in out}
    assert by["customer_order_totals"]["is_view"] is True
    assert all(by[n]["is_view"] is False for n in TABLES)
    assert by["order_items"]["label"] == "Order Items"
    assert by["customers"]["access"] == FULL_ACCESS


def test_get_tables_without_views(client):
    out = client.data("get_tables", {"includeViews": False})["resource"]
    assert [t["name"] for t in out] == TABLES


def test_get_tables_snake_case_and_refresh(client):
    out = client.data("get_tables", {"include_views": False, "refresh": True})["resource"]
    assert [t["name"] for t in out] == TABLES


def test_unknown_argument_did_you_mean(client):
    text = client.error_text("get_tables", {"incldeViews": True})
    assert "incldeViews" in text and "did you mean 'includeViews'" in text


def test_argument_given_twice(client):
    text = client.error_text("get_table_schema", {"tableName": "tags", "table_name": "tags"})
    assert "twice" in text


def test_wrong_argument_type(client):
    text = client.error_text("get_tables", {"includeViews": "yes"})
    assert text.startswith("Validation Error")
    assert "includeViews" in text


# ---------------------------------------------------------------------------- get_table_schema
def test_get_table_schema_tags(client):
    s = client.data("get_table_schema", {"tableName": "tags"})
    assert s["name"] == "tags" and s["native"] == "tags" and s["is_view"] is False
    assert s["primary_key"] == ["id"]
    assert s["name_field"] == "name"
    assert [f["name"] for f in s["field"]] == ["id", "name"]
    idf, name = s["field"]
    assert idf["type"] == "id" and idf["auto_increment"] is True and idf["is_primary_key"] is True
    assert name["db_type"] == "varchar(50)" and name["length"] == 50
    assert name["allow_null"] is False and name["is_unique"] is True and name["required"] is True
    assert rel_tuples(s["related"]) == {
        ("product_tags_by_tag_id", "has_many", "id", "product_tags", "tag_id", None),
        ("products_by_product_tags", "many_many", "id", "products", "id", "product_tags"),
    }


def test_get_table_schema_composite_key(client):
    s = client.data("get_table_schema", {"table_name": "order_items"})
    assert s["primary_key"] == ["order_id", "product_id"]
    assert [f["name"] for f in s["field"]] == ["order_id", "product_id", "quantity", "unit_price"]


def test_get_table_schema_of_a_view(client):
    s = client.data("get_table_schema", {"tableName": "customer_order_totals"})
    assert s["is_view"] is True
    assert [f["name"] for f in s["field"]] == ["customer_id", "first_name", "last_name", "email",
                                               "order_count", "total_spent", "last_ordered_at"]
    assert s["related"] == []


@pytest.mark.parametrize("asked,suggested", [("custmers", "customers"), ("Product", "products"),
                                             ("order_item", "order_items")])
def test_unknown_table_did_you_mean(client, asked, suggested):
    text = client.error_text("get_table_schema", {"tableName": asked})
    assert f"did you mean '{suggested}'" in text


def test_unknown_table_without_a_close_name(client):
    text = client.error_text("get_table_schema", {"tableName": "zzzzqqq"})
    assert "zzzzqqq" in text and "did you mean" not in text


def test_missing_required_argument(client):
    text = client.error_text("get_table_schema", {})
    assert "tableName" in text


# ---------------------------------------------------------------------------- get_table_fields
def test_get_table_fields_products(client):
    fields = client.data("get_table_fields", {"tableName": "products"})["resource"]
    assert [f["name"] for f in fields] == [
        "id", "category_id", "sku", "name", "description", "price", "weight_kg", "in_stock",
        "stock_quantity", "attributes", "thumbnail", "released_on", "created_at"]
    for f in fields:
        assert FIELD_KEYS <= set(f)
    by = {f["name"]: f for f in fields}
    assert (by["price"]["type"], by["price"]["db_type"], by["price"]["precision"], by["price"]["scale"]) == \
        ("decimal", "decimal(10,2)", 10, 2)
    assert by["category_id"]["is_foreign_key"] is True
    assert (by["category_id"]["ref_table"], by["category_id"]["ref_field"]) == ("categories", "id")
    assert by["category_id"]["ref_on_delete"] == "SET NULL"
    assert by["category_id"]["allow_null"] is True
    assert by["sku"]["is_unique"] is True and by["sku"]["length"] == 32
    assert by["in_stock"]["allow_null"] is False


def test_get_table_fields_selected(client):
    fields = client.data("get_table_fields", {"tableName": "products", "fields": "price,category_id"})
    assert [f["name"] for f in fields["resource"]] == ["price", "category_id"]
    fields = client.data("get_table_fields", {"table_name": "products", "fields": ["sku"]})
    assert [f["name"] for f in fields["resource"]] == ["sku"]


def test_get_table_fields_unknown_field(client):
    text = client.error_text("get_table_fields", {"tableName": "products", "fields": "prise"})
    assert "did you mean 'price'" in text


# ---------------------------------------------------------------------------- get_table_relationships
def test_relationships_products(client):
    rel = client.data("get_table_relationships", {"tableName": "products"})["resource"]
    assert rel_tuples(rel) == {
        ("order_items_by_product_id", "has_many", "id", "order_items", "product_id", None),
        ("product_tags_by_product_id", "has_many", "id", "product_tags", "product_id", None),
        ("categories_by_category_id", "belongs_to", "category_id", "categories", "id", None),
        ("orders_by_order_items", "many_many", "id", "orders", "id", "order_items"),
        ("tags_by_product_tags", "many_many", "id", "tags", "id", "product_tags"),
    }
    many = next(r for r in rel if r["name"] == "tags_by_product_tags")
    assert (many["junction_field"], many["junction_ref_field"]) == ("product_id", "tag_id")


def test_relationships_customers_and_orders(client):
    rel = client.data("get_table_relationships", {"tableName": "customers"})["resource"]
    assert rel_tuples(rel) == {
        ("events_by_customer_id", "has_many", "id", "events", "customer_id", None),
        ("orders_by_customer_id", "has_many", "id", "orders", "customer_id", None),
    }
    rel = client.data("get_table_relationships", {"tableName": "orders"})["resource"]
    assert rel_tuples(rel) == {
        ("order_items_by_order_id", "has_many", "id", "order_items", "order_id", None),
        ("employees_by_employee_id", "belongs_to", "employee_id", "employees", "id", None),
        ("customers_by_customer_id", "belongs_to", "customer_id", "customers", "id", None),
        ("products_by_order_items", "many_many", "id", "products", "id", "order_items"),
    }


def test_relationships_self_reference(client):
    rel = client.data("get_table_relationships", {"tableName": "employees"})["resource"]
    kinds = {(r["type"], r["field"], r["ref_table"], r["ref_field"]) for r in rel}
    assert ("belongs_to", "manager_id", "employees", "id") in kinds
    assert ("has_many", "id", "employees", "manager_id") in kinds
    assert len({r["name"] for r in rel}) == len(rel)     # names stay unique


def test_relationships_unknown_table(client):
    assert "did you mean 'categories'" in client.error_text("get_table_relationships",
                                                            {"tableName": "categores"})


# ---------------------------------------------------------------------------- get_database_resources
def test_database_resources(client):
    out = client.data("get_database_resources")
    res = out["resource"]
    assert [r["name"] for r in res] == ALL
    by = {r["name"]: r for r in res}
    assert by["customer_order_totals"]["type"] == "view"
    assert by["orders"] == {"name": "orders", "type": "table", "component": "_table/orders"}
    assert "sqlite" in out["meta"]["routines"]


def test_database_resources_as_list(client):
    assert client.data("get_database_resources", {"asList": True}) == {"resource": ALL}
    assert client.data("get_database_resources", {"as_list": True}) == {"resource": ALL}


def test_database_resources_as_access_list(client):
    out = client.data("get_database_resources", {"asAccessList": True})["resource"]
    expected = ["", "*", "_schema/", "_schema/*", "_table/", "_table/*"]
    for name in ALL:
        expected += [f"_schema/{name}", f"_table/{name}"]
    assert out == expected


def test_database_resources_include_access_and_fields(client):
    out = client.data("get_database_resources", {"includeAccess": True})["resource"]
    # Views are read-only whatever the role grants; tables carry the full grant.
    assert all(r["access"] == (["GET"] if r["type"] == "view" else FULL_ACCESS) for r in out)
    assert any(r["type"] == "view" for r in out)
    out = client.data("get_database_resources", {"include_access": True, "fields": "name,access"})
    assert out["resource"][0] == {"name": "categories", "access": FULL_ACCESS}


def test_read_only_service_shows_read_access(app_factory, demo_db):
    app = app_factory({"demo": {"url": "sqlite:///" + demo_db, "read_only": True}})
    c = McpTestClient(app)
    c.initialize()
    out = c.data("get_database_resources", {"includeAccess": True})["resource"]
    assert all(r["access"] == ["GET"] for r in out)
    assert all(t["access"] == ["GET"] for t in c.data("get_tables")["resource"])


# ---------------------------------------------------------------------------- list_tools
def test_list_tools(client):
    offered = [t["name"] for t in client.rpc("tools/list")["result"]["tools"]]
    out = client.data("list_tools")
    assert out["total"] == len(offered) and out["offset"] == 0 and out["count"] == len(offered)
    assert [t["name"] for t in out["tools"]] == offered
    assert all(t["description"] and isinstance(t["read_only"], bool) for t in out["tools"])
    assert "next_offset" not in out


def test_list_tools_paged_names_only(client):
    offered = [t["name"] for t in client.rpc("tools/list")["result"]["tools"]]
    out = client.data("list_tools", {"offset": 2, "limit": 2, "names_only": True})
    assert out["tools"] == offered[2:4]
    assert out["count"] == 2 and out["offset"] == 2 and out["total"] == len(offered)
    assert out["next_offset"] == 4
    last = client.data("list_tools", {"offset": len(offered) - 1, "limit": 5, "namesOnly": True})
    assert last["tools"] == offered[-1:] and "next_offset" not in last


def test_list_tools_bad_limit(client):
    assert client.error_text("list_tools", {"limit": 0}).startswith("Validation Error")
    assert client.error_text("list_tools", {"offset": -1}).startswith("Validation Error")


# ---------------------------------------------------------------------------- structured content per version
CALLS = [("get_tables", {}), ("get_table_schema", {"tableName": "products"}),
         ("get_table_fields", {"tableName": "orders"}), ("get_table_relationships", {"tableName": "tags"}),
         ("get_database_resources", {}), ("get_database_resources", {"asList": True}),
         ("get_database_resources", {"asAccessList": True}),
         ("get_database_resources", {"includeAccess": True}), ("list_tools", {}),
         ("list_tools", {"names_only": True})]


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
def test_structured_content_matches_output_schema(demo_app, version):
    c = McpTestClient(demo_app, version=version)
    c.initialize()
    schemas = {t["name"]: t["outputSchema"] for t in c.rpc("tools/list")["result"]["tools"]}
    assert set(CATALOG_TOOLS) <= set(schemas)
    for tool, args in CALLS:
        result = c.call(tool, args)
        assert result["isError"] is False
        sc = result["structuredContent"]
        assert json.loads(result["content"][0]["text"]) == sc
        errors = list(Draft202012Validator(schemas[tool]).iter_errors(sc))
        assert not errors, (tool, args, errors[0].message)


def test_no_structured_content_in_2025_03_26(demo_app):
    c = McpTestClient(demo_app, version="2025-03-26")
    c.initialize()
    for tool, args in CALLS:
        result = c.call(tool, args)
        assert result["isError"] is False
        assert "structuredContent" not in result
        json.loads(result["content"][0]["text"])


def test_error_results_carry_no_structured_content(client):
    result = client.call("get_table_schema", {"tableName": "nope"})
    assert result["isError"] is True and "structuredContent" not in result
