"""TEST-ONLY: the conformance suite's 2026-07-28 fixtures, beside the "everything" ones.

The 0.2 suite with ``--requirements 2026-07-28`` grades input-required
(MRTR, SEP-2322) and stateless-diagnostic fixtures by name
(``test_input_required_result_*``, ``test_missing_capability``,
``test_logging_tool`` ...).  A database service has none of them, so they live
here, on the test-only ``fixture`` service, served with
``gunicorn --pythonpath tests modern_fixture_service:app``.  They ride the
production plumbing of the stateless era: a provider tool raises
``InputRequired`` (the same exception the destructive-operation confirmation
uses), reads the retry's ``Call.input_responses`` / ``Call.request_state``,
and answers a missing client capability with -32021.

Reference behaviour: the scenario descriptions of @modelcontextprotocol/conformance 0.2.0-alpha.12.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

from fixture_service import FIXTURE_SERVICE, EverythingProvider
from mcp_flask.errors import INVALID_PARAMS, MISSING_CLIENT_CAPABILITY, InputRequired, ProtocolError
from mcp_flask.providers import ProvidedTool, Provider

#: One key per process (the fixture server runs one worker).
_KEY = secrets.token_bytes(32)


def sign(value: str) -> str:
    return value + "." + hmac.new(_KEY, value.encode(), hashlib.sha256).hexdigest()[:32]


def verified(state) -> str | None:
    """The value inside a state we signed, or None (missing, forged or tampered)."""
    if not isinstance(state, str) or "." not in state:
        return None
    value = state.rsplit(".", 1)[0]
    return value if hmac.compare_digest(sign(value), state) else None


def text(value: str) -> dict:
    return {"content": [{"type": "text", "text": value}], "isError": False}


def elicit(message: str, props: dict) -> dict:
    return {"method": "elicitation/create",
            "params": {"message": message, "requestedSchema": {"type": "object", "properties": props,
                                                                "required": list(props)}}}


def sample(prompt: str, max_tokens: int) -> dict:
    return {"method": "sampling/createMessage",
            "params": {"messages": [{"role": "user", "content": {"type": "text", "text": prompt}}],
                       "maxTokens": max_tokens}}


ROOTS = {"method": "roots/list", "params": {}}


def answers(call, requests: dict, state: str | None = None) -> dict:
    """The retry's answers to every key of ``requests``; else ask (again) for all of them."""
    got = call.input_responses or {}
    if not all(isinstance(got.get(k), dict) for k in requests):
        raise InputRequired(requests, state)
    return {k: got[k] for k in requests}


def form_value(answer: dict, field: str):
    content = answer.get("content")
    return content.get(field) if answer.get("action") == "accept" and isinstance(content, dict) else None


def elicitation(ctx, args, call):
    request = {"user_name": elicit("What is your name?", {"name": {"type": "string"}})}
    name = form_value(answers(call, request)["user_name"], "name")
    if not isinstance(name, str):
        raise InputRequired(request)          # an unusable answer: ask again
    return text(f"Hello, {name}!")


def sampling(ctx, args, call):
    answer = answers(call, {"capital_question": sample("What is the capital of France?", 100)})
    content = answer["capital_question"].get("content")
    said = content.get("text") if isinstance(content, dict) else None
    return text(f"The model said: {said}")


def list_roots(ctx, args, call):
    roots = answers(call, {"client_roots": ROOTS})["client_roots"].get("roots") or []
    return text("Roots: " + ", ".join(r.get("uri", "?") for r in roots if isinstance(r, dict)))


def request_state(ctx, args, call):
    request = {"confirm": elicit("Please confirm", {"ok": {"type": "boolean"}})}
    answers(call, request, sign("request-state"))
    if verified(call.request_state) != "request-state":
        raise ProtocolError(INVALID_PARAMS, "Invalid params: requestState failed its integrity check")
    return text("state-ok: the request state came back intact")


def multiple_inputs(ctx, args, call):
    got = answers(call, {"user_name": elicit("What is your name?", {"name": {"type": "string"}}),
                         "greeting": sample("Generate a greeting", 50), "client_roots": ROOTS},
                  sign("multiple"))
    return text(f"Got {', '.join(sorted(got))}")


def multi_round(ctx, args, call):
    step1 = {"step1": elicit("Step 1: What is your name?", {"name": {"type": "string"}})}
    step2 = {"step2": elicit("Step 2: What is your favorite color?", {"color": {"type": "string"}})}
    state = verified(call.request_state) or ""
    if state.startswith("round-2:"):
        color = form_value(answers(call, step2, call.request_state)["step2"], "color")
        return text(f"{state[8:]} likes {color}")
    name = form_value(answers(call, step1, sign("round-1"))["step1"], "name")
    if state != "round-1":
        raise InputRequired(step1, sign("round-1"))
    raise InputRequired(step2, sign(f"round-2:{name}"))


def tampered_state(ctx, args, call):
    if call.request_state is None:
        raise InputRequired({"confirm": elicit("Please confirm", {"ok": {"type": "boolean"}})},
                            sign("tamper-check"))
    if verified(call.request_state) != "tamper-check":
        raise ProtocolError(INVALID_PARAMS, "Invalid params: requestState failed its integrity check")
    return text("state-ok")


def capabilities(ctx, args, call):
    caps = call.client_capabilities or {}
    requests = {}
    if "sampling" in caps:
        requests["question"] = sample("What is 2 + 2?", 10)
    if "elicitation" in caps:
        requests["name"] = elicit("What is your name?", {"name": {"type": "string"}})
    if not requests:
        return text("no capability to ask with")
    answers(call, requests)
    return text("thanks")


def missing_capability(ctx, args, call):
    if "sampling" not in (call.client_capabilities or {}):
        raise ProtocolError(MISSING_CLIENT_CAPABILITY, "Missing required client capability: sampling",
                            data={"requiredCapabilities": {"sampling": {}}}, http_status=400)
    answers(call, {"question": sample("Say hi", 10)})
    return text("sampled")


def streaming_elicitation(ctx, args, call):
    answers(call, {"user_name": elicit("What is your name?", {"name": {"type": "string"}})})
    return text("done")


def logging_tool(ctx, args, call):
    if ctx.log is not None:
        for level in ("info", "warning", "error"):
            ctx.log(level, {"message": f"a {level} message"})
    return text("logged (if asked to)")


class ModernFixtures(Provider):
    """The 2026-07-28 fixture tools and the input-required prompt."""

    def tools(self):
        table = {"test_input_required_result_elicitation": elicitation,
                 "test_input_required_result_sampling": sampling,
                 "test_input_required_result_list_roots": list_roots,
                 "test_input_required_result_request_state": request_state,
                 "test_input_required_result_multiple_inputs": multiple_inputs,
                 "test_input_required_result_multi_round": multi_round,
                 "test_input_required_result_tampered_state": tampered_state,
                 "test_input_required_result_capabilities": capabilities,
                 "test_missing_capability": missing_capability,
                 "test_streaming_elicitation": streaming_elicitation,
                 "test_logging_tool": logging_tool}
        return [ProvidedTool(name=name, description=f"Conformance fixture {name}.", handler=handler)
                for name, handler in table.items()]

    def prompts(self, call):
        return [{"name": "test_input_required_result_prompt",
                 "description": "A prompt that asks the user for context first."}]

    def get_prompt(self, name, arguments, call):
        if name != "test_input_required_result_prompt":
            return None
        got = answers(call, {"user_context": elicit("What context should the prompt use?",
                                                    {"context": {"type": "string"}})})
        context = form_value(got["user_context"], "context")
        return {"description": "A prompt built from the user's context",
                "messages": [{"role": "user", "content": {"type": "text", "text": f"Context: {context}"}}]}


def build_app(settings=None):
    """The fixture app with the 2026-07-28 fixtures added to the ``fixture`` service."""
    from mcp_flask import create_app
    return create_app(settings, providers={FIXTURE_SERVICE: [EverythingProvider(), ModernFixtures()]})


def __getattr__(name):
    # Built on first access by gunicorn (after the fork hooks), never at import time.
    if name == "app":
        app = build_app()
        globals()["app"] = app
        return app
    raise AttributeError(name)
