"""Who the caller is: API keys from request headers -> ``(role_name, credential_id)``.

``authenticate(service, environ)`` reads the key from ``Authorization: Bearer``,
``X-API-Key`` or DreamFactory's ``X-DreamFactory-API-Key``.  Keys are stored as
``sha256:<hex>`` hashes (``mcp-flask hash-key``); the presented key is hashed and
compared with every stored digest using ``hmac.compare_digest`` (whole digests,
constant time: a key that merely ends or starts like a real one can never match,
unlike benborla's ``endsWith`` check).  A wrong key is always 401 with
``WWW-Authenticate``, never a silent fall-back to the default role; without a key
the caller gets the service's ``default_role``, or 401 when it names none.

The transport calls this for ``initialize`` and every later request, and refuses
a session used with credentials other than the ones that created it.

Imports errors only (and reads ``config`` objects it is handed).
"""
from __future__ import annotations

import hashlib
import hmac

from .errors import HttpError

AUTH_HEADERS = ("HTTP_AUTHORIZATION", "HTTP_X_API_KEY", "HTTP_X_DREAMFACTORY_API_KEY")
WWW_AUTHENTICATE = 'Bearer realm="mcp-flask"'
UNAUTHORIZED = -32001          # DreamFactory's JSON-RPC code for a missing/invalid Bearer token
MAX_KEY_LENGTH = 1024


class _KeyRing:
    """A service's API keys as raw digests, for constant-time comparison."""

    def __init__(self, service):
        self.keys = []
        for i, k in enumerate(service.api_keys):
            if not k.active:
                continue
            algo, _, hexdigest = k.hash.partition(":")
            self.keys.append((bytes.fromhex(hexdigest), k.role, k.id or f"key-{i + 1}"))

    def match(self, key: str):
        """``(role, key_id)`` of the stored key equal to ``key``, or None.  Every digest is
        compared, whatever matches first, so timing says nothing about which one did."""
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        found = None
        for stored, role, kid in self.keys:
            if hmac.compare_digest(stored, digest) and found is None:
                found = (role, kid)
        return found


_RINGS: dict[int, tuple] = {}


def _ring(cfg) -> _KeyRing:
    got = _RINGS.get(id(cfg))
    if got is None or got[0] is not cfg:
        got = (cfg, _KeyRing(cfg))
        if len(_RINGS) > 1000:
            _RINGS.clear()
        _RINGS[id(cfg)] = got
    return got[1]


def presented_key(environ) -> str | None:
    """The API key the request carries, or None; 401 for a malformed or ambiguous one."""
    found = []
    auth = environ.get("HTTP_AUTHORIZATION")
    if auth is not None:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise _unauthorized("Unauthorized: the Authorization header must be 'Bearer <key>'", True)
        found.append(value.strip())
    for var in AUTH_HEADERS[1:]:
        value = environ.get(var)
        if value is not None:
            found.append(value.strip())
    if not found:
        return None
    if any(k != found[0] for k in found[1:]):
        raise _unauthorized("Unauthorized: different API keys in different headers", True)
    key = found[0]
    if not key or len(key) > MAX_KEY_LENGTH:
        raise _unauthorized("Unauthorized: invalid API key", True)
    return key


def _unauthorized(message: str, invalid: bool) -> HttpError:
    header = WWW_AUTHENTICATE + (', error="invalid_token"' if invalid else "")
    return HttpError(401, message, code=UNAUTHORIZED, headers={"WWW-Authenticate": header})


def authenticate(service, environ) -> tuple[str, str]:
    """The caller's ``(role_name, credential_id)`` for a request to ``service``.

    ``auth = "none"``: everyone gets the service's default role (headers ignored).
    ``auth = "api_key"``: a presented key must match a stored hash (else 401); without
    one the caller gets ``default_role`` when the service names one, else 401.
    """
    cfg = service.config
    if cfg.auth != "api_key":
        return cfg.default_role, ""
    key = presented_key(environ)
    if key is None:
        if cfg.default_role:
            return cfg.default_role, ""
        raise _unauthorized("Unauthorized: this service requires an API key "
                            "(Authorization: Bearer <key>, or X-API-Key)", False)
    found = _ring(cfg).match(key)
    if found is None:
        raise _unauthorized("Unauthorized: invalid API key", True)
    return found
