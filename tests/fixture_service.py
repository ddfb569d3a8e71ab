"""TEST-ONLY: the conformance suite's "everything" fixtures, as a provider on an extra service.

The official conformance suite (``@modelcontextprotocol/conformance``) grades
named fixture tools, resources and prompts (``test_simple_text``,
``test://static-text``, ``test_simple_prompt`` ...).  They mean nothing for a
database server, so production never registers them: this module builds the
WSGI app with ``create_app(providers={FIXTURE_SERVICE: [EverythingProvider()]})``
and only the test suite serves it (``gunicorn --pythonpath tests fixture_service:app``
with ``MCP_FLASK_CONFIG`` naming a config that has a service called ``fixture``).

It exercises the production plumbing the fixtures ride on: provider tools with
any content type, progress and log notifications over SSE, and server-to-client
requests (sampling, elicitation) answered by POST on the same session.
The reference behaviour is the conformance repo's ``everything-server``.
"""
from __future__ import annotations

import base64
import json
import time

from mcp_flask.errors import INVALID_PARAMS, ProtocolError
from mcp_flask.providers import ProvidedTool, Provider

FIXTURE_SERVICE = "fixture"

#: A 1x1 red PNG and a tiny WAV file (the reference server's minimal media).
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d49444154789c63f8cfc0f01f0005000201ffa2f5ee0000000049454e44ae426082")).decode()
WAV = base64.b64encode(
    b"RIFF" + (36 + 8).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    + (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    + (8000).to_bytes(4, "little") + (1).to_bytes(2, "little") + (8).to_bytes(2, "little")
    + b"data" + (8).to_bytes(4, "little") + bytes([128] * 8)).decode()
NO_ARGS = {"type": "object", "properties": {}}


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


def _result(*content, is_error: bool = False) -> dict:
    return {"content": list(content), "isError": is_error}


def _ask(call, method: str, params: dict) -> dict:
    """Send the client a request over the call's SSE stream; its result (or an error result)."""
    if call.request is None:
        raise ProtocolError(INVALID_PARAMS, "Invalid params: this call cannot ask the client")
    answer = call.request(method, params, 60.0)
    if not isinstance(answer, dict):
        return {"error": "no answer"}
    return answer.get("result") if "result" in answer else {"error": answer.get("error")}


def simple_text(ctx, args, call):
    return _result(_text("This is a simple text response for testing."))


def image_content(ctx, args, call):
    return _result({"type": "image", "data": PNG, "mimeType": "image/png"})


def audio_content(ctx, args, call):
    return _result({"type": "audio", "data": WAV, "mimeType": "audio/wav"})


EMBEDDED = {"uri": "test://embedded-resource", "mimeType": "text/plain",
            "text": "This is an embedded resource content."}


def embedded_resource(ctx, args, call):
    return _result({"type": "resource", "resource": EMBEDDED})


def multiple_content_types(ctx, args, call):
    return _result(_text("Multiple content types test:"),
                   {"type": "image", "data": PNG, "mimeType": "image/png"},
                   {"type": "resource", "resource": {"uri": "test://mixed-content-resource",
                                                     "mimeType": "application/json",
                                                     "text": json.dumps({"test": "data", "value": 123})}})


def tool_with_logging(ctx, args, call):
    for text in ("Tool execution started", "Tool processing data", "Tool execution completed"):
        if ctx.log is not None:
            ctx.log("info", text, "conformance")
    return _result(_text("Tool with logging executed successfully"))


def error_handling(ctx, args, call):
    return _result(_text("This tool intentionally returns an error for testing"), is_error=True)


def tool_with_progress(ctx, args, call):
    for done in (0, 50, 100):
        if ctx.progress is not None:
            ctx.progress(done, 100, f"Completed step {done // 50 + 1} of 3")
    return _result(_text("Progress test completed"))


def sampling(ctx, args, call):
    got = _ask(call, "sampling/createMessage", {
        "messages": [{"role": "user", "content": _text(args["prompt"])}], "maxTokens": 100})
    text = (got.get("content") or {}).get("text", "") if isinstance(got, dict) else ""
    return _result(_text(f"LLM response: {text}"))


def elicitation(ctx, args, call):
    got = _ask(call, "elicitation/create", {
        "message": args["message"],
        "requestedSchema": {"type": "object", "properties": {
            "username": {"type": "string", "description": "User's response"},
            "email": {"type": "string", "description": "User's email address"}},
            "required": ["username", "email"]}})
    return _result(_text(f"User response: {json.dumps(got)}"))


def elicitation_defaults(ctx, args, call):
    got = _ask(call, "elicitation/create", {
        "message": "Please review and update the form fields with defaults",
        "requestedSchema": {"type": "object", "properties": {
            "name": {"type": "string", "description": "User name", "default": "John Doe"},
            "age": {"type": "integer", "description": "User age", "default": 30},
            "score": {"type": "number", "description": "User score", "default": 95.5},
            "status": {"type": "string", "description": "User status",
                       "enum": ["active", "inactive", "pending"], "default": "active"},
            "verified": {"type": "boolean", "description": "Verification status", "default": True}},
            "required": []}})
    return _result(_text(f"Elicitation completed: {json.dumps(got)}"))


def elicitation_enums(ctx, args, call):
    got = _ask(call, "elicitation/create", {
        "message": "Please select options from the enum fields",
        "requestedSchema": {"type": "object", "properties": {
            "untitledSingle": {"type": "string", "description": "Select one option",
                               "enum": ["option1", "option2", "option3"]},
            "titledSingle": {"type": "string", "description": "Select one option with titles",
                             "oneOf": [{"const": "value1", "title": "First Option"},
                                       {"const": "value2", "title": "Second Option"},
                                       {"const": "value3", "title": "Third Option"}]},
            "legacyEnum": {"type": "string", "description": "Select one option (legacy)",
                           "enum": ["opt1", "opt2", "opt3"],
                           "enumNames": ["Option One", "Option Two", "Option Three"]},
            "untitledMulti": {"type": "array", "description": "Select multiple options",
                              "minItems": 1, "maxItems": 3,
                              "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
            "titledMulti": {"type": "array", "description": "Select multiple options with titles",
                            "minItems": 1, "maxItems": 3,
                            "items": {"anyOf": [{"const": "value1", "title": "First Choice"},
                                                {"const": "value2", "title": "Second Choice"},
                                                {"const": "value3", "title": "Third Choice"}]}}},
            "required": []}})
    return _result(_text(f"Elicitation completed: {json.dumps(got)}"))


def json_schema_tool(ctx, args, call):
    return _result(_text(f"JSON Schema 2020-12 tool called with: {json.dumps(args)}"))


def reconnection(ctx, args, call):
    # The reference closes the SSE connection mid-call; our streams record every event,
    # so a client that reconnects with Last-Event-ID gets the rest either way.
    if ctx.progress is not None:
        ctx.progress(1, 2)
    time.sleep(0.05)
    return _result(_text("Reconnection test completed"))


def _tool(name, handler, description, schema=None, streams=False):
    return ProvidedTool(name=name, description=description, handler=handler,
                        input_schema=schema or NO_ARGS, streams=streams)


TOOLS = [
    _tool("test_simple_text", simple_text, "Returns a simple text response"),
    _tool("test_image_content", image_content, "Returns an image"),
    _tool("test_audio_content", audio_content, "Returns audio"),
    _tool("test_embedded_resource", embedded_resource, "Returns an embedded resource"),
    _tool("test_multiple_content_types", multiple_content_types, "Returns text, image and resource"),
    _tool("test_tool_with_logging", tool_with_logging, "Sends log messages while it runs", streams=True),
    _tool("test_error_handling", error_handling, "Always fails"),
    _tool("test_tool_with_progress", tool_with_progress, "Reports progress", streams=True),
    _tool("test_sampling", sampling, "Asks the client's LLM",
          {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]},
          streams=True),
    _tool("test_elicitation", elicitation, "Asks the user for input",
          {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
          streams=True),
    _tool("test_elicitation_sep1034_defaults", elicitation_defaults, "Elicitation with defaults",
          streams=True),
    _tool("test_elicitation_sep1330_enums", elicitation_enums, "Elicitation with enum schemas",
          streams=True),
    _tool("json_schema_2020_12_tool", json_schema_tool, "Takes a JSON Schema 2020-12 input", {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
        "$defs": {"address": {"type": "object", "properties": {
            "street": {"type": "string"}, "city": {"type": "string"}}}},
        "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
        "additionalProperties": False}),
    _tool("test_reconnection", reconnection, "Survives a dropped SSE connection", streams=True),
]

STATIC_TEXT = "This is the content of the static text resource."
PROMPTS = [
    {"name": "test_simple_prompt", "description": "A simple prompt without arguments"},
    {"name": "test_prompt_with_arguments", "description": "A prompt with required arguments",
     "arguments": [{"name": "arg1", "description": "First test argument", "required": True},
                   {"name": "arg2", "description": "Second test argument", "required": True}]},
    {"name": "test_prompt_with_embedded_resource", "description": "A prompt with an embedded resource",
     "arguments": [{"name": "resourceUri", "description": "URI of the resource to embed", "required": True}]},
    {"name": "test_prompt_with_image", "description": "A prompt with image content"},
]


class EverythingProvider(Provider):
    """The conformance fixtures: tools, resources, a template and prompts."""

    def tools(self):
        return TOOLS

    def resources(self, call):
        return [{"uri": "test://static-text", "name": "Static Text Resource", "mimeType": "text/plain",
                 "description": "A static text resource for testing"},
                {"uri": "test://static-binary", "name": "Static Binary Resource", "mimeType": "image/png",
                 "description": "A static binary resource (image) for testing"},
                {"uri": "test://watched-resource", "name": "Watched Resource", "mimeType": "text/plain",
                 "description": "A resource that can be subscribed to"}]

    def resource_templates(self, call):
        return [{"uriTemplate": "test://template/{id}/data", "name": "Resource Template",
                 "mimeType": "application/json", "description": "A resource template with parameter substitution"}]

    def read_resource(self, uri, call):
        if uri == "test://static-text":
            return [{"uri": uri, "mimeType": "text/plain", "text": STATIC_TEXT}]
        if uri == "test://static-binary":
            return [{"uri": uri, "mimeType": "image/png", "blob": PNG}]
        if uri == "test://watched-resource":
            return [{"uri": uri, "mimeType": "text/plain", "text": "Watched resource content"}]
        if uri.startswith("test://template/") and uri.endswith("/data"):
            rid = uri[len("test://template/"):-len("/data")]
            return [{"uri": uri, "mimeType": "application/json",
                     "text": json.dumps({"id": rid, "templateTest": True, "data": f"Data for ID: {rid}"})}]
        return None

    def prompts(self, call):
        return PROMPTS

    def get_prompt(self, name, arguments, call):
        if name == "test_simple_prompt":
            return {"messages": [{"role": "user", "content": _text("This is a simple prompt for testing.")}]}
        if name == "test_prompt_with_arguments":
            return {"messages": [{"role": "user", "content": _text(
                f"Prompt with arguments: arg1='{arguments.get('arg1')}', arg2='{arguments.get('arg2')}'")}]}
        if name == "test_prompt_with_embedded_resource":
            uri = arguments.get("resourceUri")
            if not uri:
                raise ProtocolError(INVALID_PARAMS, "Invalid params: resourceUri is required")
            return {"messages": [
                {"role": "user", "content": {"type": "resource", "resource": {
                    "uri": uri, "mimeType": "text/plain", "text": "Embedded resource content for testing."}}},
                {"role": "user", "content": _text("Please process the embedded resource above.")}]}
        if name == "test_prompt_with_image":
            return {"messages": [
                {"role": "user", "content": {"type": "image", "data": PNG, "mimeType": "image/png"}},
                {"role": "user", "content": _text("Please analyze the image above.")}]}
        return None

    def complete(self, ref, argument, context, call):
        if ref.get("type") == "ref/prompt" and ref.get("name") == "test_prompt_with_arguments":
            value = str(argument.get("value") or "")
            return [v for v in ("paris", "park", "party") if v.startswith(value)]
        return None


def build_app(settings=None):
    """The app: the configured services, plus the fixtures on the one named ``fixture``."""
    from mcp_flask import create_app
    return create_app(settings, providers={FIXTURE_SERVICE: [EverythingProvider()]})


def __getattr__(name):
    # ``gunicorn fixture_service:app`` builds the app on first access (after the fork
    # hooks ran), never at import time of the test suite.
    if name == "app":
        app = build_app()
        globals()["app"] = app
        return app
    raise AttributeError(name)


# ---------------------------------------------------------------------------- probes for the pytest suite
#: Per dialect, a query that runs until a cancel (or the statement timeout) stops it.
#: The comment tags it, so tests can find it in the server's process list.
ENDLESS_QUERIES = {
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
    "postgresql": "SELECT /* mcp-flask-probe */ pg_sleep(120)",
    "mysql": "SELECT /* mcp-flask-probe */ SLEEP(120)",
}
ENDLESS_QUERY = ENDLESS_QUERIES["sqlite"]


class ProbeProvider(Provider):
    """TEST-ONLY tools that drive the protocol machinery from tests/test_protocol_*.py.

    * ``probe_endless_query``: runs ``ENDLESS_QUERY`` inside the call's scope, so
      ``notifications/cancelled`` must stop it in the database;
    * ``probe_gated_progress``: sends progress 1, then waits until the test opens
      ``GATES[token]`` (a threading.Event), then progress 2 and the result, so a
      test can drop the SSE connection in between;
    * ``probe_confirmed_delete``: deletes one tag only if ``ctx.confirm`` (the
      elicitation round trip) says yes.
    """

    def __init__(self):
        import threading
        self.gates: dict = {}
        self._lock = threading.Lock()

    def gate(self, token: str):
        import threading
        with self._lock:
            return self.gates.setdefault(token, threading.Event())

    def tools(self):
        return [
            ProvidedTool(name="probe_endless_query", description="Runs a query until cancelled",
                         handler=self.endless_query),
            ProvidedTool(name="probe_gated_progress", description="Progress, a pause, progress",
                         handler=self.gated_progress, streams=True,
                         input_schema={"type": "object", "properties": {"gate": {"type": "string"}},
                                       "required": ["gate"]}),
            ProvidedTool(name="probe_confirmed_delete", description="Deletes a tag after confirmation",
                         handler=self.confirmed_delete, read_only=False, verb="delete", streams=True,
                         input_schema={"type": "object", "properties": {"id": {"type": "integer"}},
                                       "required": ["id"]}),
        ]

    def endless_query(self, ctx, args, call):
        db = ctx.database
        with db.transaction(read_only=True, scope=ctx.scope) as conn:
            db.dialect.query(conn, ENDLESS_QUERIES[db.dialect.name])
        return _result(_text("finished"))

    def gated_progress(self, ctx, args, call):
        ctx.progress(1, 2, "first half")
        if not self.gate(args["gate"]).wait(30):
            return _result(_text("gate never opened"), is_error=True)
        ctx.progress(2, 2, "second half")
        return _result(_text("done"))

    def confirmed_delete(self, ctx, args, call):
        if ctx.confirm is None or not ctx.confirm(f"Delete tag {args['id']}?"):
            return _result(_text("not confirmed: nothing changed"), is_error=True)
        db = ctx.database
        with db.transaction(scope=ctx.scope) as conn:
            n = db.dialect.execute(conn, "DELETE FROM tags WHERE id = ?", (args["id"],))
        return _result(_text(f"deleted {n}"))
