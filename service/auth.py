"""Optional API keys: ``Authorization: Bearer <key>`` on every endpoint but the public ones.

Keys come from API_KEYS and ADMIN_API_KEYS (an admin key is accepted everywhere and may also
reload models). Keys are compared with :func:`hmac.compare_digest`, each of them every time, so
the answer's timing says nothing about how much of a key was right. With no keys configured,
nothing is checked, and nobody may reload models (that needs an admin key).

The public endpoints answer without a key, but say less to a client without one: see
:func:`trusted`.
"""

from __future__ import annotations

import hmac

from flask import Flask, g, request

from service.errors import Forbidden, Unauthorized
from service.settings import Settings

# Probes, scraping and the API docs stay reachable without a key (/metrics unless
# METRICS_PUBLIC=false).
PUBLIC_PATHS = ("/v2/health/live", "/v2/health/ready", "/metrics", "/openapi.json")
PUBLIC_PREFIXES = ("/docs",)
METRICS_PATH = "/metrics"


class KeyRing:
    """The configured keys, and which of them are admin keys."""

    def __init__(self, api_keys: tuple[str, ...], admin_keys: tuple[str, ...]):
        self._admin = [k.encode() for k in admin_keys]
        self._all = [k.encode() for k in api_keys] + self._admin

    @property
    def enabled(self) -> bool:
        return bool(self._all)

    def is_valid(self, key: str) -> bool:
        return _matches_any(key, self._all)

    def is_admin(self, key: str) -> bool:
        return _matches_any(key, self._admin)


def _matches_any(key: str, keys: list[bytes]) -> bool:
    candidate = key.encode()
    # A list, not a generator: every key is compared, whichever matches.
    return any([hmac.compare_digest(candidate, known) for known in keys])


def install_api_keys(app: Flask, settings: Settings) -> None:
    """Refuse requests without a valid key when keys are configured (401, ``WWW-Authenticate``)."""
    ring = KeyRing(settings.api_keys, settings.admin_api_keys)
    if not ring.enabled:
        return
    public = tuple(p for p in PUBLIC_PATHS if settings.metrics_public or p != METRICS_PATH)

    @app.before_request
    def require_key() -> None:
        key = bearer_key()
        g.trusted = key is not None and ring.is_valid(key)
        if request.path in public or request.path.startswith(PUBLIC_PREFIXES):
            return
        if not g.trusted:
            reason = "missing" if key is None else "invalid"
            raise Unauthorized(
                f"{reason} API key; send the header 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": 'Bearer realm="rnn-inference-service"'},
            )
        g.admin = ring.is_admin(key)


def trusted() -> bool:
    """True unless API keys are configured and this request carries no valid one. Public
    endpoints answer an untrusted client too, but keep what only the operator needs to know
    (why a model failed to load: file paths, checksums) for trusted ones and the log."""
    return g.get("trusted", True)


def bearer_key() -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, if there is one."""
    return parse_bearer(request.headers.get("Authorization"))


def parse_bearer(authorization: str | None) -> str | None:
    """The key of a ``Bearer <key>`` credential (an HTTP header's or gRPC metadata's value)."""
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return key.strip() or None


def require_admin(settings: Settings) -> None:
    """403 unless this request's key is an admin key: without ADMIN_API_KEYS, nobody may (a
    reload replaces a model in every worker, which is not for anyone who can reach the port)."""
    if not settings.admin_api_keys:
        raise Forbidden(
            "this needs an admin key, and the server has none: set ADMIN_API_KEYS (to reload "
            "every worker without one, send SIGHUP to the gunicorn master)"
        )
    if not g.get("admin", False):
        raise Forbidden("this needs an admin key (ADMIN_API_KEYS)")
