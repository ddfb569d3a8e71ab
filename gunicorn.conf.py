"""gunicorn configuration for ``gunicorn wsgi:app`` from a checkout.

The settings live in ``mcp_flask/gunicorn_conf.py`` so an installed package
(``mcp-flask serve``) uses exactly the same ones; see that module's docstring.
"""
from mcp_flask.gunicorn_conf import *  # noqa: F401,F403
from mcp_flask.gunicorn_conf import (child_exit, on_exit, post_worker_init, pre_request,  # noqa: F401
                                     worker_exit)  # hooks must be module globals
