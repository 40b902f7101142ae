"""ASGI guards of the detection service: the bearer token first, then the body limit.

:class:`AuthMiddleware` is outermost: a request without the token gets 401 before any byte of
its body is read. :class:`BodyLimitMiddleware` then reads the whole body within a size (413, by
Content-Length or while a chunked body streams in) and a time (408) limit, so the app only ever
parses a complete body of bounded size.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

OPEN_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})
"""Paths served without the token."""
OPEN_PREFIX = "/docs-assets/"
"""The offline Swagger UI's static files (public, like ``/docs``), also served without the token."""
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _respond(
    send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]]
) -> None:
    """A JSON error response that closes the connection (nothing more is read from it)."""
    body = json.dumps({"detail": detail}).encode()
    head = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def token_matches(headers: list[tuple[bytes, bytes]], token: str) -> bool:
    """Does the ``Authorization: Bearer`` header carry ``token`` (constant-time compare)?"""
    auth = next((v for k, v in headers if k == b"authorization"), b"")
    scheme, _, given = auth.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token.encode())


class AuthMiddleware:
    """Check the bearer token before anything else: a request without it gets 401 and its body
    is never read or parsed (only :data:`OPEN_PATHS` are served without a token)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.token
            or scope.get("path") in OPEN_PATHS
            or str(scope.get("path", "")).startswith(OPEN_PREFIX)
            or token_matches(scope.get("headers", []), self.token)
        ):
            await self.app(scope, receive, send)
            return
        await _respond(
            send, 401, "missing or invalid bearer token", [(b"www-authenticate", b"Bearer")]
        )


class BodyLimitMiddleware:
    """Read the whole body before the app sees it: over ``max_bytes`` (by Content-Length, or
    while a chunked body streams in) is 413, slower than ``seconds`` is 408; the app then gets
    the buffered body, so no limit error can surface as a parse error."""

    def __init__(self, app: ASGIApp, max_bytes: int, seconds: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.seconds = seconds

    async def _read(self, receive: Receive) -> bytes | int | None:
        """The body, or 413, or None when the client went away."""
        chunks: list[bytes] = []
        seen = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return None
            body = msg.get("body", b"")
            seen += len(body)
            if seen > self.max_bytes:
                return 413
            chunks.append(body)
            if not msg.get("more_body"):
                return b"".join(chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = f"request body over the limit of {self.max_bytes} bytes"
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    over = int(value) > self.max_bytes
                except ValueError:
                    over = False
                if over:
                    await _respond(send, 413, too_big, [])
                    return
        try:
            body = await asyncio.wait_for(self._read(receive), self.seconds)
        except TimeoutError:
            await _respond(send, 408, f"request body not received within {self.seconds:g} s", [])
            return
        if body is None:
            return
        if isinstance(body, int):
            await _respond(send, 413, too_big, [])
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
