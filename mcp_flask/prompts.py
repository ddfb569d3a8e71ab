"""Prompts that help an assistant use a database service well, and their completions.

* ``explore_database``: a plan for getting to know the service (optional ``focus``);
* ``explain_table``: explain one table, with its schema embedded as a resource;
* ``draft_safe_filter``: turn a question into a filter in the service's filter
  grammar, with the table's columns listed (``table``, ``question``).

``completion/complete`` suggests table names for ``table`` and column names for
``column`` (using ``context.arguments.table``).  Unknown prompt names are "not
mine" (the next provider may serve them); missing required arguments and unknown
tables are -32602.

Knows no HTTP.
"""
from __future__ import annotations

from .errors import INVALID_PARAMS, ProtocolError, ToolError
from .providers import Provider
from .resources import TableResources, table_names, table_uri

PROMPTS = {
    "explore_database": {
        "name": "explore_database", "title": "Explore this database",
        "description": "Get to know the database: what tables exist, how they relate, and what is in them.",
        "arguments": [{"name": "focus", "description": "Optional topic or table to start from",
                       "required": False}],
    },
    "explain_table": {
        "name": "explain_table", "title": "Explain a table",
        "description": "Explain what one table holds, its keys and relationships, with its schema attached.",
        "arguments": [{"name": "table", "description": "Table or view name", "required": True}],
    },
    "draft_safe_filter": {
        "name": "draft_safe_filter", "title": "Draft a safe filter",
        "description": "Turn a question into a get_table_data filter in the service's filter grammar, "
                       "using only real columns and quoted values.",
        "arguments": [{"name": "table", "description": "Table or view to query", "required": True},
                      {"name": "question", "description": "What you want to find", "required": True},
                      {"name": "column", "description": "Optional column the filter is mainly about",
                       "required": False}],
    },
}

FILTER_GRAMMAR = ("field = value, field != value, field > 10, field >= 1, field like 'J%', "
                  "field in (1, 2, 3), field between 1 and 10, field starts with 'Ab', "
                  "field contains 'x', field is null, field is not null; combine with and / or / not "
                  "and parentheses; quote text values with single quotes ('O''Brien').")


def _text(role: str, text: str) -> dict:
    return {"role": role, "content": {"type": "text", "text": text}}


class DatabasePrompts(Provider):
    """The built-in prompts of every database service."""

    def __init__(self, service_name: str):
        self.service_name = service_name

    def prompts(self, call) -> list[dict]:
        return list(PROMPTS.values())

    def _table(self, call, name: str):
        access = call.service.access(call.role_name)
        try:
            table = call.service.database.table(name, visible=access.visible_table)
            # The role's view: completions and prompt text must never name hidden columns.
            view = getattr(access, "table_view", None)
            return view(table) if view else table
        except ToolError as exc:
            raise ProtocolError(INVALID_PARAMS, f"Invalid params: {exc.message}") from None

    def get_prompt(self, name: str, arguments: dict, call) -> dict | None:
        spec = PROMPTS.get(name)
        if spec is None:
            return None
        for arg in spec["arguments"]:
            if arg["required"] and not str(arguments.get(arg["name"]) or "").strip():
                raise ProtocolError(INVALID_PARAMS, f"Invalid params: prompt '{name}' needs argument "
                                                    f"'{arg['name']}'")
        if name == "explore_database":
            focus = str(arguments.get("focus") or "").strip()
            text = (f'Explore the "{self.service_name}" database service. Call get_tables to see the '
                    "tables and views, then get_table_schema and get_table_relationships for the ones "
                    "that matter, and get_table_data with a small limit to look at a few rows. "
                    "Summarise what the database is about, its main entities and how they connect.")
            if focus:
                text += f" Focus on: {focus}."
            return {"description": spec["description"], "messages": [_text("user", text)]}
        table = self._table(call, arguments["table"])
        if name == "explain_table":
            uri = table_uri(self.service_name, table.name)
            contents = TableResources(self.service_name).read_resource(uri, call)
            return {"description": spec["description"], "messages": [
                _text("user", f"Explain the {'view' if table.is_view else 'table'} '{table.name}': what "
                              "one row represents, the meaning of each field, its keys, and how it "
                              "relates to other tables. Its schema is attached."),
                {"role": "user", "content": {"type": "resource", "resource": contents[0]}},
            ]}
        columns = ", ".join(f"{c.name} ({c.db_type})" for c in table.columns)
        text = (f"Write a filter for get_table_data on '{table.name}' that answers: "
                f"{arguments['question']}\nColumns: {columns}.\nGrammar: {FILTER_GRAMMAR}\n"
                "Use only these columns, never concatenate user text into field names, and prefer "
                "a small limit first to check the result.")
        if arguments.get("column"):
            text += f"\nThe filter is mainly about the column '{arguments['column']}'."
        return {"description": spec["description"], "messages": [_text("user", text)]}

    def complete(self, ref: dict, argument: dict, context: dict, call) -> list[str] | None:
        if ref.get("type") != "ref/prompt" or ref.get("name") not in PROMPTS:
            return None
        arg = argument.get("name")
        value = str(argument.get("value") or "")
        if arg == "table":
            return table_names(call, value)
        if arg in ("column", "field"):
            table_name = (context.get("arguments") or {}).get("table")
            if not table_name:
                return []
            try:
                table = self._table(call, table_name)
            except ProtocolError:
                return []
            p = value.lower()
            return [c.name for c in table.columns if c.name.lower().startswith(p)]
        return []
