"""Security of the API (issue 16), against real centres, real Redis and a real uvicorn: token revocation
(password change, disabling, logout) on REST and on open live sockets, expiry on sockets, the token never
in the socket URL, login throttling shared by every node, body limits before parsing, security headers,
who may read which call, and where webhooks may go."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from api.app import create_app
from api.auth import Role, TokenSigner
from api.server import RunningServer
from intake.exchange.webhooks import enqueue_event
from telephony.events import CallEnded, CallOffered, CallSource, EndReason

Headers = Callable[[str], dict[str, str]]
PASSWORD = "correct horse battery"  # every user's password in tests/api/conftest.py


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/api/auth/token", json={"username": username, "password": password})


async def live_socket(server: RunningServer, token: str) -> ClientConnection:
    ws = await connect(server.url.replace("http://", "ws://") + "/api/live")
    await ws.send(json.dumps({"type": "auth", "token": token}))
    hello = json.loads(await ws.recv())
    assert hello["type"] == "hello", hello
    return ws


async def closed_within(ws: ClientConnection, seconds: float) -> tuple[int, str, float]:
    """Read until the server closes the socket; returns (code, reason, seconds it took)."""
    started = time.monotonic()
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(seconds):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code, closed.value.rcvd.reason, time.monotonic() - started


@pytest.fixture
async def served(app: Any) -> AsyncIterator[RunningServer]:
    async with RunningServer(app) as server:
        yield server


# ------------------------------------------------------------------------------------- revocation


async def test_password_change_disable_and_logout_revoke_existing_tokens(
    client: httpx.AsyncClient, as_user: Headers
):
    jana = (await login(client, "jana", PASSWORD)).json()["access_token"]
    petr = (await login(client, "petr", PASSWORD)).json()["access_token"]
    vedouci = (await login(client, "vedouci", PASSWORD)).json()["access_token"]
    for token in (jana, petr, vedouci):
        assert (await client.get("/api/me", headers=bearer(token))).status_code == 200

    changed = await client.patch(
        "/api/admin/users/jana", json={"password": "a new password 1"}, headers=as_user("admin")
    )
    assert changed.status_code == 200
    refused = await client.get("/api/me", headers=bearer(jana))
    assert refused.status_code == 401 and "revoked" in refused.json()["message"]
    fresh = (await login(client, "jana", "a new password 1")).json()["access_token"]
    assert (await client.get("/api/me", headers=bearer(fresh))).status_code == 200

    assert (await client.post("/api/auth/logout", headers=bearer(petr))).status_code == 204
    assert (await client.get("/api/me", headers=bearer(petr))).status_code == 401
    assert (await client.post("/api/auth/logout", headers=bearer(petr))).status_code == 401

    # Re-enabling a disabled user does not bring their old tokens back.
    await client.patch("/api/admin/users/vedouci", json={"active": False}, headers=as_user("admin"))
    await client.patch("/api/admin/users/vedouci", json={"active": True}, headers=as_user("admin"))
    assert (await client.get("/api/me", headers=bearer(vedouci))).status_code == 401


async def test_disabling_a_user_closes_their_open_socket_on_another_node_within_a_second(
    centre: Any, start_centre: Callable[[str], Awaitable[Any]], client: httpx.AsyncClient, as_user: Headers
):
    other_node = await start_centre("node-b")
    async with RunningServer(create_app(other_node)) as server:
        token = (await login(client, "jana", PASSWORD)).json()["access_token"]
        ws = await live_socket(server, token)
        try:
            disabled = await client.patch(
                "/api/admin/users/jana", json={"active": False}, headers=as_user("admin")
            )
            assert disabled.status_code == 200
            code, reason, took = await closed_within(ws, 3.0)
        finally:
            await ws.close()
    assert code == 1008 and reason == "unauthenticated"
    assert took < 1.0, f"socket closed {took:.2f} s after the user was disabled"


async def test_logout_closes_the_users_open_sockets(served: RunningServer, client: httpx.AsyncClient):
    token = (await login(client, "vedouci", PASSWORD)).json()["access_token"]
    ws = await live_socket(served, token)
    try:
        assert (await client.post("/api/auth/logout", headers=bearer(token))).status_code == 204
        code, _, took = await closed_within(ws, 3.0)
    finally:
        await ws.close()
    assert code == 1008 and took < 1.0


async def test_an_open_socket_is_closed_when_its_token_expires(centre: Any, served: RunningServer):
    short, expires_at = TokenSigner(centre.settings.secret_key.encode(), ttl_s=6).issue(
        "vedouci", Role.SUPERVISOR
    )
    ws = await live_socket(served, short)
    try:
        code, reason, _ = await closed_within(ws, 12.0)
    finally:
        await ws.close()
    assert code == 1008 and reason == "token_expired"
    assert time.time() - expires_at < 1.5, "the socket outlived its token by more than a second"


async def test_the_socket_refuses_a_token_in_the_url(served: RunningServer, tokens: dict[str, str]):
    url = served.url.replace("http://", "ws://") + "/api/live?token=" + tokens["vedouci"]
    async with connect(url) as ws:
        code, reason, _ = await closed_within(ws, 5.0)
    assert code == 1008 and reason == "unauthenticated"


# ----------------------------------------------------------------------------------- throttling


async def test_wrong_passwords_for_one_user_are_throttled_with_retry_after_on_every_node(
    centre: Any, start_centre: Callable[[str], Awaitable[Any]], client: httpx.AsyncClient
):
    limit = centre.settings.login_failures_per_user
    for _ in range(limit):
        assert (await login(client, "jana", "wrong password")).status_code == 401
    held = await login(client, "jana", PASSWORD)  # even the right password waits
    assert held.status_code == 429 and held.json()["error"] == "too_many_requests"
    retry_after = int(held.headers["retry-after"])
    assert 1 <= retry_after <= centre.settings.login_backoff_s
    # Another node sees the same counters (they live in Redis).
    other = await start_centre("node-b")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(other)), base_url="http://b"
    ) as on_b:
        assert (await login(on_b, "jana", PASSWORD)).status_code == 429
        # Other users are not held back by jana's failures.
        assert (await login(on_b, "petr", PASSWORD)).status_code == 200


async def test_wrong_passwords_from_one_address_are_throttled_across_user_names(
    centre: Any, client: httpx.AsyncClient
):
    for i in range(centre.settings.login_failures_per_address):
        assert (await login(client, f"guess-{i}", "wrong password")).status_code == 401
    held = await login(client, "petr", PASSWORD)
    assert held.status_code == 429 and int(held.headers["retry-after"]) >= 1


def test_backoff_doubles_per_further_failure_up_to_the_cap():
    from intake.logins import ThrottlePolicy

    policy = ThrottlePolicy(failures_per_user=3, backoff_s=10, backoff_max_s=60)
    assert policy.held_until(2, 100.0, 3) == 0.0
    assert [policy.held_until(f, 100.0, 3) - 100.0 for f in (3, 4, 5, 6, 9)] == [10, 20, 40, 60, 60]


# ----------------------------------------------------------------------------------- body limits


async def test_bodies_over_the_limit_are_refused_before_parsing(
    centre: Any, client: httpx.AsyncClient, as_user: Headers
):
    anonymous_limit = centre.settings.max_anonymous_body_bytes
    padded = {"username": "jana", "password": PASSWORD, "pad": "x" * (anonymous_limit + 1)}
    too_big = await client.post("/api/auth/token", json=padded)
    assert too_big.status_code == 413 and too_big.json()["error"] == "too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(64):
            yield b"x" * 1024

    chunked = await client.post("/api/auth/token", content=chunks())
    assert chunked.status_code == 413
    # A bad token is anonymous; a valid one gets the larger limit, and bodies above it are refused too.
    body = {"incident_type": "FIRE_OTHER", "priority": 3, "agencies": ["HZS"], "notes": ["y" * 100_000]}
    assert (await client.post("/api/incidents", json=body, headers=bearer("forged.token"))).status_code == 413
    allowed = await client.post("/api/incidents", json=body, headers=as_user("jana"))
    assert allowed.status_code not in (413, 401), allowed.text
    huge = {**body, "notes": ["z" * (centre.settings.max_body_bytes + 1)]}
    assert (await client.post("/api/incidents", json=huge, headers=as_user("jana"))).status_code == 413


# ------------------------------------------------------------------------------- response headers


async def test_consoles_send_csp_nosniff_and_no_framing(client: httpx.AsyncClient):
    for page in ("/console", "/supervisor"):
        response = await client.get(page)
        assert response.status_code == 200
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    for path in ("/api/healthz", "/static/common.js"):
        assert (await client.get(path)).headers["x-content-type-options"] == "nosniff"


# ------------------------------------------------------------------------------ who reads which call


async def test_a_call_taker_reads_the_calls_of_their_desks_and_calls_awaiting_call_back(
    centre: Any, client: httpx.AsyncClient, as_user: Headers
):
    """jana: ZZS and 112; petr: PCR and HZS. The same rule filters the live socket (Audience)."""
    centre.calls.submit(
        CallOffered(call_ref="sip-police-1", dialled="158", caller="+420603000001", source=CallSource.SIP)
    )
    centre.calls.submit(
        CallOffered(call_ref="sip-medical-1", dialled="155", caller="+420603000002", source=CallSource.SIP)
    )

    async def both_queued() -> dict[str, Any] | None:
        items = (await client.get("/api/calls", headers=as_user("vedouci"))).json()["items"]
        by_caller = {c["caller"]["e164"]: c for c in items if c.get("desk")}
        return by_caller if {"+420603000001", "+420603000002"} <= set(by_caller) else None

    deadline = time.monotonic() + 10
    calls = None
    while calls is None and time.monotonic() < deadline:
        calls = await both_queued()
        await asyncio.sleep(0.05)
    assert calls is not None
    police, medical = calls["+420603000001"], calls["+420603000002"]
    assert police["desk"] == "PCR" and medical["desk"] == "ZZS"

    jana_list = {c["id"] for c in (await client.get("/api/calls", headers=as_user("jana"))).json()["items"]}
    petr_list = {c["id"] for c in (await client.get("/api/calls", headers=as_user("petr"))).json()["items"]}
    assert medical["id"] in jana_list and police["id"] not in jana_list
    assert police["id"] in petr_list and medical["id"] not in petr_list
    refused = await client.get(f"/api/calls/{police['id']}", headers=as_user("jana"))
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert (await client.get(f"/api/calls/{police['id']}", headers=as_user("petr"))).status_code == 200
    assert (await client.get(f"/api/calls/{police['id']}", headers=as_user("vedouci"))).status_code == 200

    # The police caller hangs up before anybody answered: now on the call-back list, everybody's duty.
    centre.calls.submit(CallEnded(call_ref="sip-police-1", reason=EndReason.ABANDONED))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = await client.get(f"/api/calls/{police['id']}", headers=as_user("jana"))
        if got.status_code == 200:
            break
        await asyncio.sleep(0.05)
    assert got.status_code == 200 and got.json()["state"] == "abandoned"


# -------------------------------------------------------------------------------------- webhooks


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:6379/",
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://172.16.5.5/hook",
        "http://100.64.0.1/hook",
        "http://0.0.0.0/hook",
    ],
)
async def test_webhooks_to_internal_addresses_are_refused_at_registration(
    client: httpx.AsyncClient, as_user: Headers, url: str
):
    response = await client.post(
        "/api/admin/webhooks",
        json={"url": url, "secret": "whsec-0123456789abcdef", "events": ["incident.created"]},
        headers=as_user("admin"),
    )
    assert response.status_code == 403 and response.json()["error"] == "webhook_target_refused", response.text
    assert (await client.get("/api/admin/webhooks", headers=as_user("admin"))).json() == []


async def test_internal_webhook_targets_need_the_admin_setting(
    centre: Any, client: httpx.AsyncClient, as_user: Headers
):
    centre.settings = centre.settings.model_copy(update={"webhook_allow_private_targets": True})
    response = await client.post(
        "/api/admin/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "secret": "whsec-0123456789abcdef", "events": ["*"]},
        headers=as_user("admin"),
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]:8080/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[fd00::5]/",
    ],
)
async def test_internal_ipv6_targets_are_refused(url: str):
    from intake.exchange.targets import TargetRefused, check_webhook_url

    with pytest.raises(TargetRefused, match="internal address"):
        await check_webhook_url(url, allow_private=False)
    await check_webhook_url(url, allow_private=True)
    for bad in ("ftp://example.org/hook", "http://user:pw@example.org/", "http:///nohost"):
        with pytest.raises(TargetRefused):
            await check_webhook_url(bad, allow_private=True)


async def test_a_host_name_is_checked_after_resolution():
    from intake.exchange.targets import TargetRefused, check_webhook_url

    # This machine's own name resolves through /etc/hosts or DNS to one of its own (internal) addresses.
    name = socket.gethostname()
    with pytest.raises(TargetRefused, match="internal address"):
        await check_webhook_url(f"http://{name}:8080/hook", allow_private=False)
    with pytest.raises(TargetRefused, match="does not resolve"):
        await check_webhook_url("http://no-such-host.invalid/hook", allow_private=False)


async def test_delivery_refuses_a_target_that_became_internal(centre: Any):
    """Registered while allowed (or while its name pointed elsewhere): at delivery time (the leader's
    duty) the address is checked again and nothing is sent."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    port = listener.getsockname()[1]
    try:
        hook = await asyncio.to_thread(
            centre.repo.create_webhook, f"http://127.0.0.1:{port}/hook", "whsec-0123456789abcdef", ["*"]
        )
        await enqueue_event(centre.repo, {"id": "1-0", "type": "incident.created", "data": {}})
        deadline = time.monotonic() + 15
        delivery = None
        while time.monotonic() < deadline:
            [delivery] = await asyncio.to_thread(centre.repo.list_deliveries, webhook_id=hook.id)
            if delivery.last_error:
                break
            await asyncio.sleep(0.1)
        assert delivery is not None and delivery.last_error, "the leader never tried the delivery"
        assert delivery.last_error.startswith("refused: webhook target 127.0.0.1 is an internal address")
        assert str(delivery.status) != "delivered"
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected
    finally:
        listener.close()
