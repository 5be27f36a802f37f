"""``Idempotency-Key`` for writes: the same key with the same request replays the stored response; the
same key with a different request is refused (409 ``idempotency_conflict``).

Implemented as ASGI middleware around the whole app, so every write endpoint gets it the same way. Keys
are scoped to the caller (the token's user), stored in the database (shared by every worker and node);
responses with status 5xx are not stored, so a retry after a failure runs again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import TokenSigner
from api.errors import Unauthenticated, error_body
from intake.errors import StorageError

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HEADER = b"idempotency-key"
MAX_KEY_LENGTH = 200
MAX_BODY = 1_000_000


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, repo: Any, signer: TokenSigner) -> None:
        self.app = app
        self.repo = repo
        self.signer = signer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw_key = headers.get(HEADER)
        if raw_key is None:
            await self.app(scope, receive, send)
            return
        key = raw_key.decode("latin-1").strip()
        subject = self._subject(headers.get(b"authorization", b"").decode("latin-1"))
        if subject is None:
            await self.app(scope, receive, send)  # the app answers 401 / runs the public endpoint
            return
        if not key or len(key) > MAX_KEY_LENGTH:
            await _send_json(
                send,
                422,
                error_body("validation_failed", f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} characters"),
            )
            return
        body = await _read_body(receive)
        if body is None:
            await _send_json(send, 413, error_body("too_large", "request body too large"))
            return
        path = scope["path"] + (
            "?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else ""
        )
        request_hash = hashlib.sha256(b"\n".join([scope["method"].encode(), path.encode(), body])).hexdigest()
        stored_key = f"{subject}:{key}"
        try:
            record = await asyncio.to_thread(self.repo.get_idempotent, stored_key)
        except StorageError as exc:
            await _send_json(send, 503, error_body(exc.error_id, exc.message))
            return
        if record is not None:
            await self._replay_or_refuse(send, record, request_hash)
            return

        captured: dict[str, Any] = {"status": 500, "headers": [], "body": bytearray()}

        async def replay_receive() -> Message:
            nonlocal body
            if body is not None:
                chunk, body = body, None
                return {"type": "http.request", "body": chunk, "more_body": False}
            return await receive()

        async def capture_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = message.get("headers", [])
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")
            await send(message)

        await self.app(scope, replay_receive, capture_send)
        if captured["status"] >= 500:
            return
        try:
            await asyncio.to_thread(
                self.repo.save_idempotent,
                stored_key,
                scope["method"],
                path[:1024],
                request_hash,
                captured["status"],
                bytes(captured["body"]).decode("utf-8", errors="replace"),
            )
        except StorageError as exc:
            log.error("idempotency key %s not stored (a retry would run again): %s", key, exc)

    def _subject(self, authorization: str) -> str | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            return self.signer.verify(token.strip()).username
        except Unauthenticated:
            return None

    @staticmethod
    async def _replay_or_refuse(send: Send, record: Any, request_hash: str) -> None:
        if record.request_hash != request_hash:
            await _send_json(
                send,
                409,
                error_body(
                    "idempotency_conflict",
                    "this Idempotency-Key was used for a different request",
                    {"method": record.method, "path": record.path},
                ),
            )
            return
        await send(
            {
                "type": "http.response.start",
                "status": record.response_status,
                "headers": [(b"content-type", b"application/json"), (b"idempotent-replayed", b"true")],
            }
        )
        await send({"type": "http.response.body", "body": record.response_body.encode("utf-8")})


async def _read_body(receive: Receive) -> bytes | None:
    chunks = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks += message.get("body", b"")
        if len(chunks) > MAX_BODY:
            return None
        if not message.get("more_body", False):
            break
    return bytes(chunks)


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})
