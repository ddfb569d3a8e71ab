"""The architecture's import rules, checked by parsing every module with ``ast``.

* Only the transport, the app factory and the operator endpoints (plus the
  metrics / logging / middleware modules that serve them and the CLI that
  starts gunicorn) import Flask or Werkzeug.  The protocol layer knows no HTTP.
* Only ``dialects/`` import a database driver or hold SQL text ("SELECT ",
  "INSERT INTO" ...).  ``demo.py`` is the one exception: it builds the SQLite
  sample file with the standard library before any service exists.
* ``errors``, ``encoding`` and ``metadata`` are leaves: they import nothing
  from the project.
"""
from __future__ import annotations

import ast
import os
import re

import pytest

from conftest import ROOT

PKG = os.path.join(ROOT, "mcp_flask")
HTTP_MODULES = {"transport.py", "__init__.py", "ops.py", "metrics.py", "logs.py", "middleware.py",
                "cli.py", "gunicorn_conf.py"}
DRIVERS = {"psycopg2", "pymysql", "sqlite3", "psycopg", "MySQLdb"}
SQL_RE = re.compile(r"\b(SELECT\s+\S|INSERT\s+INTO|UPDATE\s+\S+\s+SET|DELETE\s+FROM|CREATE\s+TABLE|"
                    r"DROP\s+TABLE|ALTER\s+TABLE)")
LEAVES = ("errors.py", "encoding.py", "metadata.py")


def modules():
    for dirpath, _, files in os.walk(PKG):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                yield os.path.relpath(path, PKG), path


def imports(path: str) -> set[str]:
    """Top-level names imported by a module ('.' for relative imports of the project)."""
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                out.add(".")
            elif node.module:
                out.add(node.module.split(".")[0])
    return out


def strings(path: str) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), path)
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                docs.add(doc)
    return [n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value not in docs]


ALL = sorted(modules())


def test_the_package_is_found():
    assert len(ALL) > 15
    assert any(rel == "transport.py" for rel, _ in ALL)


@pytest.mark.parametrize("rel,path", ALL, ids=[r for r, _ in ALL])
def test_only_the_http_layer_imports_flask(rel, path):
    if rel in HTTP_MODULES:
        return
    found = imports(path) & {"flask", "werkzeug"}
    assert not found, f"{rel} imports {found}: only the transport/app factory may speak HTTP"


@pytest.mark.parametrize("rel,path", ALL, ids=[r for r, _ in ALL])
def test_only_dialects_import_drivers(rel, path):
    if rel.startswith("dialects" + os.sep) or rel == "demo.py":
        return
    found = imports(path) & DRIVERS
    assert not found, f"{rel} imports {found}: only dialects/ talk to drivers"


@pytest.mark.parametrize("rel,path", ALL, ids=[r for r, _ in ALL])
def test_only_dialects_hold_sql(rel, path):
    if rel.startswith("dialects" + os.sep) or rel == "demo.py":
        return
    sql = [s for s in strings(path) if SQL_RE.search(s)]
    assert not sql, f"{rel} holds SQL text: {sql[0][:80]!r}"


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaves_import_nothing_from_the_project(leaf):
    found = imports(os.path.join(PKG, leaf))
    assert "." not in found and "mcp_flask" not in found, f"{leaf} imports from the project"


def test_protocol_layer_knows_no_http():
    for rel in ("protocol.py", "jsonrpc.py", "sessions.py", "sse.py", "database.py"):
        assert not imports(os.path.join(PKG, rel)) & {"flask", "werkzeug", "gunicorn", "http"}, rel


def test_the_rule_detects_a_violation(tmp_path):
    """The checks above can fail: a module that breaks each rule is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text('import flask\nfrom psycopg2 import connect\nfrom . import x\nQ = "SELECT * FROM t"\n')
    assert {"flask", "psycopg2", "."} <= imports(str(bad))
    assert any(SQL_RE.search(s) for s in strings(str(bad)))
