"""mcp-flask: an MCP server (Streamable HTTP) that exposes SQL databases to AI assistants."""
import os

from setuptools import setup


def schema_files():
    """Every JSON schema under schemas/, relative to it (shipped as mcp_flask._schemas)."""
    out = []
    for dirpath, _, files in os.walk("schemas"):
        for f in files:
            if f.endswith(".json"):
                out.append(os.path.relpath(os.path.join(dirpath, f), "schemas"))
    return out


setup(
    name="mcp-flask",
    version="0.1.0",
    description="An MCP server that exposes PostgreSQL, MySQL/MariaDB and SQLite databases to AI assistants",
    long_description=open("README.md", encoding="utf-8").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=["mcp_flask", "mcp_flask.dialects", "mcp_flask.tools", "mcp_flask._schemas"],
    package_dir={"mcp_flask._schemas": "schemas"},
    package_data={"mcp_flask._schemas": schema_files()},
    install_requires=[
        "flask>=3.0",
        "gunicorn>=23.0",
        "gevent>=24.2",
        "packaging>=23.0",          # gunicorn's gevent worker imports it
        "gunicorn_h1c>=0.6",        # gunicorn's C HTTP parser (picohttpparser), used when installed
        "psycopg2-binary>=2.9.9",
        "psycogreen>=1.0.2",
        "pymysql>=1.1",
        "jsonschema>=4.21",
        "orjson>=3.10",
        "redis>=5.0",
        "prometheus-client>=0.20",
    ],
    extras_require={
        "test": [
            "pytest>=8.0",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            "httpx>=0.27",
            "mcp>=2.3",             # the official MCP Python SDK client (current major)
        ],
    },
    entry_points={"console_scripts": ["mcp-flask=mcp_flask.cli:main"]},
)
