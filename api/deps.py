"""Request-scoped dependencies: the centre, the caller (checked against the role rule table)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import PasswordVerifier, Principal, TokenSigner, authenticate
from api.roles import PUBLIC, rule_for
from intake.errors import PermissionDenied

if TYPE_CHECKING:
    from intake.admin import AdminService
    from intake.app import Centre
    from intake.console import ConsoleService
    from intake.reports import ReportService
    from intake.storage.repository import Repository
    from intake.taking import CallTakingService

bearer = HTTPBearer(auto_error=False, description="token from POST /api/auth/token")


class ApiContext:
    """What every endpoint needs, held on ``app.state.ctx``."""

    def __init__(self, centre: Centre, signer: TokenSigner, verifier: PasswordVerifier) -> None:
        self.centre = centre
        self.signer = signer
        self.verifier = verifier

    # The intake services the endpoints call, as the composition root (:class:`intake.app.Centre`) built
    # them: the endpoints never reach into storage for a business rule, and never build a service.

    @property
    def taking(self) -> CallTakingService:
        return self.centre.taking

    @property
    def reports(self) -> ReportService:
        return self.centre.reports

    @property
    def admin(self) -> AdminService:
        return self.centre.admin

    @property
    def console(self) -> ConsoleService:
        return self.centre.console

    @property
    def repo(self) -> Repository:
        """Storage, for the API's own infrastructure only (authentication, Idempotency-Key records)."""
        return self.centre.repo


def ctx_of(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


def route_path(request: Request) -> str:
    route = request.scope.get("route")
    return str(getattr(route, "path", request.url.path))


async def authorize(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Principal | None:
    """Apply the route's role rule: 401 without a valid token, 403 when the role is not allowed, 403 for
    a route nobody wrote a rule for (fail closed)."""
    method = "GET" if request.method == "HEAD" else request.method
    rule = rule_for(method, route_path(request))
    if rule is None:
        raise PermissionDenied("this endpoint has no role rule", route=route_path(request))
    if rule is PUBLIC:
        return None
    ctx = ctx_of(request)
    principal = await authenticate(ctx.repo, ctx.signer, credentials.credentials if credentials else None)
    if principal.role not in rule:
        raise PermissionDenied(
            f"role {principal.role.value} may not {method} {route_path(request)}",
            role=principal.role.value,
            allowed=sorted(r.value for r in rule),
        )
    return principal


async def authorize_public(request: Request) -> None:
    """For routes whose rule is PUBLIC (declared without a security scheme in the OpenAPI document)."""
    rule = rule_for("GET" if request.method == "HEAD" else request.method, route_path(request))
    if rule is not PUBLIC:
        raise PermissionDenied("this endpoint is not public", route=route_path(request))


async def require_user(principal: Annotated[Principal | None, Depends(authorize)]) -> Principal:
    if principal is None:  # only on a public route that asked for a user: a programming error
        raise PermissionDenied("this endpoint needs a user")
    return principal
