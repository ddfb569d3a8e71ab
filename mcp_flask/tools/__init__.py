"""The tools, one module per group; importing them registers them (see ``registry``).

* ``catalog``: get_tables, get_table_schema, get_table_fields, get_table_relationships,
  get_database_resources, list_tools
* ``records``: get_table_data, create_records, update_records, delete_records
* ``routines``: get_stored_procedures, call_stored_procedure, get_stored_functions,
  call_stored_function (offered only where the database has stored routines)
"""
from __future__ import annotations

import importlib

from .registry import TOOLS, attach_schemas

#: Tool modules, in the order their tools appear in tools/list.
MODULES = ("catalog", "records", "routines")


def load_tools(schemas) -> dict:
    """Import every tool module and attach its schema files; the registry."""
    for name in MODULES:
        importlib.import_module(f"{__name__}.{name}")
    attach_schemas(schemas.tool_inputs, schemas.tool_outputs)
    return TOOLS
