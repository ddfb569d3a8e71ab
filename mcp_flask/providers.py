"""The provider interface: what a service offers beyond the registry's tools.

A service's resources, resource templates, prompts and completions, and any
extra tools, come from an ordered list of ``Provider`` objects.  Every service
gets the database's own (``resources.TableResources``, ``prompts.DatabasePrompts``);
``create_app(providers={"svc": [...]})`` adds more.  The protocol layer asks each
provider in turn and never knows what a particular one serves, so adding a
feature never means touching protocol code (the conformance fixture service in
``tests/fixture_service.py`` is built this way).

Knows no HTTP and no JSON-RPC envelope: providers return MCP result fragments
(resource descriptors, content blocks, prompt messages) and raise
``ProtocolError`` for a bad request.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class ProvidedTool:
    """A tool a provider serves itself; its handler returns a whole ``CallToolResult``.

    ``handler(ctx, args) -> dict`` gets the registry's ``ToolContext`` (progress,
    log, ``ask`` for server-to-client requests) and arguments already checked
    against ``input_schema``.
    """

    name: str
    description: str
    handler: Callable
    input_schema: dict = field(default_factory=lambda: {"type": "object", "properties": {}})
    title: str | None = None
    read_only: bool = True
    #: True when the handler may send the client a request (elicitation, sampling) or
    #: notifications, so the call must be answered over SSE.
    streams: bool = False
    verb: str = "meta"
    needs_routines: bool = False
    output_schema: dict | None = None

    @property
    def annotations(self) -> dict:
        return {"readOnlyHint": self.read_only}

    def describe(self, with_output: bool = True, with_title: bool = True) -> dict:
        out = {"name": self.name, "description": self.description, "inputSchema": self.input_schema}
        if with_title and self.title:
            out["title"] = self.title
        if with_output and self.output_schema is not None:
            out["outputSchema"] = self.output_schema
        return out


class Provider:
    """Base class: a provider that offers nothing.  Override what you serve.

    ``call`` arguments are ``protocol.Call`` objects (service, session, version).
    Methods returning ``None`` mean "not mine": the protocol asks the next provider.
    """

    def attach(self, service, notify: Callable) -> None:
        """Called once per service at start-up.

        ``notify(method, params, uri=None)`` sends a notification to every session of
        the service (to those subscribed to ``uri`` when given)."""

    def tools(self) -> list[ProvidedTool]:
        return []

    def resources(self, call) -> list[dict]:
        return []

    def resource_templates(self, call) -> list[dict]:
        return []

    def read_resource(self, uri: str, call) -> list[dict] | None:
        """The ``contents`` of ``uri``, or None when this provider does not serve it."""
        return None

    def prompts(self, call) -> list[dict]:
        return []

    def get_prompt(self, name: str, arguments: dict, call) -> dict | None:
        """A ``GetPromptResult`` for prompt ``name``, or None when it is not this provider's."""
        return None

    def complete(self, ref: dict, argument: dict, context: dict, call) -> list[str] | None:
        """Completion values for ``argument`` of ``ref``, or None when ``ref`` is not ours."""
        return None
