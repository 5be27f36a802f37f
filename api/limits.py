"""Request-body limits and security headers, as ASGI middleware around the whole app.

:class:`BodyLimitMiddleware` runs before any parsing (and before the idempotency middleware): a request
whose ``Content-Length`` exceeds its limit is answered 413 without reading a byte of the body; a body
without a length (chunked) is counted as it arrives and refused at the first byte over the limit. The limit
is small for requests without a valid token signature (login, anything anonymous) and larger for
authenticated ones; checking the signature is an HMAC, no database.

:class:`SecurityHeadersMiddleware` adds ``X-Content-Type-Options: nosniff``, ``Referrer-Policy`` and, on
HTML pages, a Content-Security-Policy that allows only the app's own scripts, styles and connections, and
no framing.
"""

from __future__ import annotations

import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import TokenSigner
from api.errors import Unauthenticated, error_body

log = logging.getLogger(__name__)

# Scripts only from the app's own files (no inline script, no eval). Inline *style attributes* are allowed:
# the pages use a few, and a style cannot run code. Media from blob: URLs: the console fetches a call's
# recording with its token (an <audio src> cannot send one) and plays it from a blob.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


DOC_PAGES = ("/docs", "/redoc")


class BodyTooLarge(Exception):
    """Raised inside ``receive`` when a streamed body passes its limit."""


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, signer: TokenSigner, max_body: int, max_anonymous_body: int) -> None:
        self.app = app
        self.signer = signer
        self.max_body = max_body
        self.max_anonymous_body = max_anonymous_body

    def limit_for(self, scope: Scope) -> int:
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and token:
                    try:
                        self.signer.verify(token.strip())
                    except Unauthenticated:
                        break
                    return self.max_body
                break
        return self.max_anonymous_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared: int | None = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _refuse(send, 400, "bad_request", "Content-Length is not a number")
                    return
        if declared is not None and declared > limit:
            await _refuse(send, 413, "too_large", f"request body larger than {limit} bytes")
            return
        received = 0
        exceeded = False
        started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to a body it could not read (FastAPI says 400): ours is 413
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
        if exceeded and not started:
            await _refuse(send, 413, "too_large", f"request body larger than {limit} bytes")


async def _refuse(send: Send, status: int, error_id: str, message: str) -> None:
    body = json.dumps(error_body(error_id, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                content_type = next((v for n, v in headers if n.lower() == b"content-type"), b"")
                # FastAPI's /docs and /redoc pages load Swagger UI / ReDoc from a CDN: no CSP there.
                if content_type.startswith(b"text/html") and not scope["path"].startswith(DOC_PAGES):
                    extra += [
                        (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                        (b"x-frame-options", b"DENY"),
                    ]
                if self.hsts:
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                headers += [(n, v) for n, v in extra if n not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
