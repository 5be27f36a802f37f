"""Every endpoint has a role rule, and every role is refused what it may not do."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from starlette.routing import Mount, Route
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from api.auth import Role, TokenSigner
from api.roles import PUBLIC, ROLE_RULES, rule_for
from api.server import RunningServer

# Framework routes that are not endpoints of ours: the OpenAPI document and its viewers, static files.
FRAMEWORK_PATHS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/static"}


def app_routes(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, included routers flattened."""
    out = []
    for context in iter_route_contexts(app.routes):
        route, path = context.original_route, context.path
        if isinstance(route, APIRoute):
            out.extend((method, path) for method in sorted(route.methods))
        elif isinstance(route, APIWebSocketRoute):
            out.append(("WS", path))
        elif isinstance(route, Route | Mount):
            assert path in FRAMEWORK_PATHS, f"unexpected non-API route {path}"
        else:
            raise AssertionError(f"unknown route type {route!r}")
    return out


def concrete(path: str, username: str) -> str:
    values = {"desk": "ZZS", "webhook_id": "1", "taker_id": username, "username": "nobody"}
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "unknown-id"), path)


def test_every_route_has_a_role_rule_and_every_rule_a_route(app: Any):
    routes = app_routes(app)
    missing = [r for r in routes if rule_for(*r) is None]
    assert not missing, f"routes without a role rule in api/roles.py: {missing}"
    stale = set(ROLE_RULES) - set(routes)
    assert not stale, f"role rules for routes that do not exist: {stale}"


async def test_each_role_gets_exactly_what_its_rule_allows(
    client: httpx.AsyncClient, as_user: Callable[[str], dict[str, str]], role_users: dict[str, str]
):
    """Table-driven over api/roles.py: allowed roles are let through (whatever the endpoint then says),
    every other role gets 403 ``forbidden``, no token gets 401 ``unauthenticated``."""
    problems = []
    # Logging out revokes the caller's tokens: it goes last, so the other routes are tried with live tokens.
    rules = sorted(ROLE_RULES.items(), key=lambda item: item[0] == ("POST", "/api/auth/logout"))
    for (method, path), allowed in rules:
        if method == "WS":
            continue
        for role in Role:
            username = role_users[role.value]
            response = await client.request(
                method, concrete(path, username), headers=as_user(username), json={}
            )
            if allowed is PUBLIC or role in allowed:
                if response.status_code in (401, 403):
                    problems.append(f"{role} refused {method} {path}: {response.text}")
            elif response.status_code != 403 or response.json()["error"] != "forbidden":
                problems.append(f"{role} not refused {method} {path}: {response.status_code} {response.text}")
        if allowed is not PUBLIC:
            anonymous = await client.request(method, concrete(path, "x"), json={})
            if anonymous.status_code != 401 or anonymous.json()["error"] != "unauthenticated":
                problems.append(f"anonymous {method} {path}: {anonymous.status_code}")
            elif anonymous.headers.get("www-authenticate") != "Bearer":
                problems.append(f"anonymous {method} {path}: no WWW-Authenticate")
    assert not problems, "\n".join(problems)


async def test_forged_expired_and_disabled_tokens_are_refused(
    client: httpx.AsyncClient, tokens: dict[str, str], centre: Any
):
    forged = TokenSigner(b"some other secret").issue("admin", Role.ADMIN)[0]
    expired = TokenSigner(centre.settings.secret_key.encode()).issue(
        "admin", Role.ADMIN, now=time.time() - 13 * 3600
    )[0]
    for token in (forged, expired, "garbage", tokens["admin"] + "x"):
        response = await client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
        assert response.json()["error"] == "unauthenticated"
    await asyncio.to_thread(centre.repo.update_user, "vedouci", active=False)
    response = await client.get("/api/me", headers={"Authorization": f"Bearer {tokens['vedouci']}"})
    assert response.status_code == 401


async def test_login_issues_a_token_that_works_and_a_wrong_password_does_not(client: httpx.AsyncClient):
    ok = await client.post("/api/auth/token", json={"username": "jana", "password": "correct horse battery"})
    assert ok.status_code == 200 and ok.json()["role"] == "call_taker"
    me = await client.get("/api/me", headers={"Authorization": f"Bearer {ok.json()['access_token']}"})
    assert me.json()["taker_id"] == "jana" and me.json()["desks"] == ["ZZS", "112"]
    for body in ({"username": "admin", "password": "nope"}, {"username": "nobody", "password": "nope"}):
        response = await client.post("/api/auth/token", json=body)
        assert response.status_code == 401
        assert response.json()["message"] == "wrong user name or password"


async def test_a_call_taker_may_change_only_their_own_state(
    client: httpx.AsyncClient, as_user: Callable[[str], dict[str, str]]
):
    own = await client.put("/api/takers/jana/state", json={"state": "available"}, headers=as_user("jana"))
    assert own.status_code == 200
    other = await client.put("/api/takers/petr/state", json={"state": "available"}, headers=as_user("jana"))
    assert other.status_code == 403
    assert other.json()["error"] == "forbidden"


async def test_live_socket_refuses_missing_and_bad_tokens_and_admits_every_role(
    app: Any, tokens: dict[str, str]
):
    assert rule_for("WS", "/api/live") == frozenset(Role)
    async with RunningServer(app) as server:
        base = server.url.replace("http://", "ws://") + "/api/live"
        for first in (None, json.dumps({"type": "auth", "token": "garbage"}), "not json"):
            async with connect(base) as ws:
                if first is not None:
                    await ws.send(first)
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        for username in tokens:
            async with connect(base) as ws:
                await ws.send(json.dumps({"type": "auth", "token": tokens[username]}))
                hello = await ws.recv()
                assert username in hello
