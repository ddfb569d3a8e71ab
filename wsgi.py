"""WSGI entry point: ``gunicorn wsgi:app`` (the config comes from ``MCP_FLASK_CONFIG``)."""
from mcp_flask import create_app

app = create_app()
