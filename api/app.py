"""The web application of a centre: REST API, live events, consoles. Built by :func:`create_app`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import TYPE_CHECKING

from fastapi import Depends, FastAPI, WebSocket
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.auth import PasswordVerifier, Role, TokenSigner, authenticate, load_secret
from api.deps import ApiContext, authorize
from api.errors import Unauthenticated, install_error_handlers
from api.idempotency import IdempotencyMiddleware
from api.limits import BodyLimitMiddleware, SecurityHeadersMiddleware
from api.live import WS_POLICY_VIOLATION, audience_for, receive_token, serve_live
from api.roles import rule_for
from api.routes import public_router, router
from api.users import ensure_bootstrap_admin
from intake.console import console_presence
from intake.errors import IzsError

if TYPE_CHECKING:
    from intake.app import Centre

log = logging.getLogger(__name__)

STATIC = resources.files("api") / "static"


def _page(name: str) -> HTMLResponse:
    return HTMLResponse(
        (STATIC / name).read_text(encoding="utf-8"),
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"},
    )


def create_app(centre: Centre, signer: TokenSigner | None = None) -> FastAPI:
    """The ASGI app for ``centre`` (a started :class:`intake.app.Centre`). Several apps (workers, nodes)
    may serve one centre's database and Redis; give them the same ``settings.secret_key``."""
    settings = centre.settings
    signer = signer or TokenSigner(load_secret(settings.secret_key, settings.var_dir))
    verifier = PasswordVerifier(settings.password_hash_workers)
    ctx = ApiContext(centre, signer, verifier)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if await ensure_bootstrap_admin(centre.repo, settings.bootstrap_admin_password):
            log.warning("created user 'admin' from the bootstrap password: change it")
        try:
            yield
        finally:
            verifier.close()

    app = FastAPI(
        title="izs-intake API",
        version="1.0",
        description="Call intake of a joint IZS operations centre: calls, incidents, desks, live events.",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    app.include_router(public_router)
    app.include_router(router)

    @app.get("/", include_in_schema=False, dependencies=[Depends(authorize)])
    async def index() -> RedirectResponse:
        return RedirectResponse("/console")

    @app.get("/console", include_in_schema=False, dependencies=[Depends(authorize)])
    async def console_page() -> HTMLResponse:
        return _page("console.html")

    @app.get("/supervisor", include_in_schema=False, dependencies=[Depends(authorize)])
    async def supervisor_page() -> HTMLResponse:
        return _page("supervisor.html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.websocket("/api/live")
    async def live(websocket: WebSocket) -> None:
        """Live events. Authenticate with the first message ``{"type": "auth", "token": "..."}``."""
        rule = rule_for("WS", "/api/live")
        # Accept, then close with a code: a refused handshake reaches browser code only as 1006.
        await websocket.accept()
        try:
            if "token" in websocket.query_params:
                raise Unauthenticated("send the token in the first message, never in the URL")
            token = await receive_token(websocket)
            principal = await authenticate(centre.repo, signer, token)
            if rule is None or principal.role not in rule:
                raise Unauthenticated("role may not receive live events")
        except IzsError as exc:
            await websocket.close(code=WS_POLICY_VIOLATION, reason=exc.error_id)
            return
        audience = await audience_for(ctx.taking, principal)

        async def revalidate() -> None:
            await authenticate(centre.repo, signer, token)

        if principal.role is Role.CALL_TAKER:
            # A person at this call taker's console: visible to every node (the demo autopilot yields).
            async with console_presence(centre.live, audience.taker_id or principal.username):
                await serve_live(websocket, principal, audience, centre.bus.subscribe, revalidate)
            return
        await serve_live(websocket, principal, audience, centre.bus.subscribe, revalidate)

    app.add_middleware(IdempotencyMiddleware, repo=centre.repo, signer=signer)
    # Added last = outermost: bodies are limited before the idempotency middleware or a route reads them.
    app.add_middleware(
        BodyLimitMiddleware,
        signer=signer,
        max_body=settings.max_body_bytes,
        max_anonymous_body=settings.max_anonymous_body_bytes,
    )
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.serves_tls)
    return app
