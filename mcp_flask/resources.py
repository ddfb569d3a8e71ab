"""Tables and views as MCP resources: ``db://<service>/tables/<name>`` -> the table's schema JSON.

The schema is exactly what the ``get_table_schema`` tool returns (the same
builder), limited to what the caller's role may see; a hidden table is "not
found" exactly like a missing one.  A catalog refresh that finds a table
changed sends ``notifications/resources/updated`` to the sessions subscribed to
it, and ``notifications/resources/list_changed`` when tables came or went.

Imports the provider interface and the catalog tool helpers; knows no HTTP.
"""
from __future__ import annotations

from urllib.parse import quote, unquote

from . import encoding
from .errors import RESOURCE_NOT_FOUND, ProtocolError, ToolError
from .providers import Provider
from .tools.catalog import schema_of
from .tools.registry import ToolContext

MIME = "application/json"


def table_uri(service: str, table: str) -> str:
    """The resource URI of a table (names percent-encoded, so any identifier round-trips)."""
    return f"db://{service}/tables/{quote(table, safe='')}"


class TableResources(Provider):
    """The built-in provider: one resource per table or view, plus the template for them."""

    def __init__(self, service_name: str):
        self.service_name = service_name
        self.prefix = f"db://{service_name}/tables/"

    def attach(self, service, notify) -> None:
        def changed(database, names) -> None:
            for name in sorted(names):
                uri = table_uri(self.service_name, name)
                notify("notifications/resources/updated", {"uri": uri}, uri=uri)
            notify("notifications/resources/list_changed", {})
        service.database.on_catalog_change(changed)

    @staticmethod
    def _access(call):
        return call.service.access(call.role_name)

    def resources(self, call) -> list[dict]:
        access = self._access(call)
        try:
            cat = call.service.database.catalog()
        except ToolError as exc:
            raise ProtocolError(-32603, f"Internal error: {exc.text()}") from None
        return [{"uri": table_uri(self.service_name, t.name), "name": t.name,
                 "title": f"{'View' if t.is_view else 'Table'} {t.name}",
                 "description": f"Schema of the {'view' if t.is_view else 'table'} '{t.name}' "
                                f"(fields, keys, relationships) as JSON.",
                 "mimeType": MIME}
                for t in cat.tables.values() if access.visible_table(t.name)]

    def resource_templates(self, call) -> list[dict]:
        return [{"uriTemplate": f"db://{self.service_name}/tables/{{name}}", "name": "table-schema",
                 "title": "Table schema",
                 "description": "The schema of any table or view of this service, by name.",
                 "mimeType": MIME}]

    def read_resource(self, uri: str, call) -> list[dict] | None:
        if not uri.startswith(self.prefix):
            return None
        name = unquote(uri[len(self.prefix):])
        access = self._access(call)
        ctx = ToolContext(database=call.service.database, access=access)
        try:
            table = call.service.database.table(name, visible=access.visible_table)
            view = getattr(access, "table_view", None)
            schema = schema_of(ctx, view(table) if view else table)
        except ToolError as exc:
            raise ProtocolError(RESOURCE_NOT_FOUND, f"Resource not found: {exc.message}",
                                data={"uri": uri}) from None
        return [{"uri": uri, "mimeType": MIME, "text": encoding.dumps(schema).decode()}]

    def complete(self, ref: dict, argument: dict, context: dict, call) -> list[str] | None:
        if ref.get("type") != "ref/resource" or not str(ref.get("uri", "")).startswith(self.prefix):
            return None
        if argument.get("name") != "name":
            return []
        return table_names(call, argument.get("value", ""))


def table_names(call, prefix: str) -> list[str]:
    """Visible table names starting with ``prefix`` (case-insensitive), then containing it."""
    access = call.service.access(call.role_name)
    try:
        names = [n for n in call.service.database.catalog().tables if access.visible_table(n)]
    except ToolError:
        return []
    p = (prefix or "").lower()
    first = [n for n in names if n.lower().startswith(p)]
    return first + [n for n in names if p in n.lower() and n not in first]
