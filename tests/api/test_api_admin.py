"""Administration: users (API, CLI function, bootstrap admin) and webhooks fed by real incident changes,
delivered to a real local receiver and visible to admins."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from api.users import add_user_cli, ensure_bootstrap_admin
from intake.exchange.webhooks import SIGNATURE_HEADER, deliver_due, pump_incident_stream, verify

Headers = Callable[[str], dict[str, str]]
SECRET = "whsec-api-test-0123456789"


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A real HTTP receiver on an ephemeral port: 500 for the first request, then 200."""
    got: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(500 if len(got) == 1 else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/izs", got
    finally:
        server.shutdown()
        server.server_close()


async def test_incident_changes_reach_a_webhook_and_deliveries_are_listed_for_admins(
    centre: Any, client: httpx.AsyncClient, as_user: Headers, receiver: tuple[str, list]
):
    url, got = receiver
    admin = as_user("admin")
    # The receiver listens on loopback: an admin must allow internal webhook targets explicitly.
    centre.settings = centre.settings.model_copy(update={"webhook_allow_private_targets": True})
    hook = await client.post(
        "/api/admin/webhooks",
        json={"url": url, "secret": SECRET, "events": ["incident.created"]},
        headers=admin,
    )
    assert hook.status_code == 201, hook.text
    assert "secret" not in hook.json()
    assert await pump_incident_stream(centre.live, centre.repo, consumer="node-a") == 0  # joins the stream
    created = await client.post(
        "/api/incidents",
        json={"incident_type": "TRAFFIC_ACCIDENT", "priority": 1, "agencies": ["HZS", "ZZS", "PCR"]},
        headers=as_user("jana"),
    )
    incident_id = created.json()["id"]
    assert await pump_incident_stream(centre.live, centre.repo, consumer="node-a") >= 1
    async with httpx.AsyncClient() as http:
        first = await deliver_due(centre.repo, http, allow_private_targets=True)
        assert first.retrying
        [pending] = (await client.get("/api/admin/webhooks/deliveries?status=pending", headers=admin)).json()
        assert pending["attempts"] == 1 and pending["last_error"] == "HTTP 500"
        from datetime import datetime

        retry_at = datetime.fromisoformat(pending["next_attempt_at"])
        second = await deliver_due(centre.repo, http, now=retry_at, allow_private_targets=True)
        assert second.delivered
    headers, body = got[-1]
    assert verify(SECRET, body, headers[SIGNATURE_HEADER.lower()], now=retry_at)
    assert incident_id.encode() in body
    [delivered] = (await client.get("/api/admin/webhooks/deliveries?status=delivered", headers=admin)).json()
    assert delivered["event_type"] == "incident.created"
    listed = (await client.get("/api/admin/webhooks", headers=admin)).json()
    assert [h["url"] for h in listed] == [url]
    assert (await client.delete(f"/api/admin/webhooks/{listed[0]['id']}", headers=admin)).status_code == 204
    assert (await client.get("/api/admin/webhooks", headers=admin)).json() == []


async def test_admin_manages_users_and_cannot_lock_themselves_out(
    client: httpx.AsyncClient, as_user: Headers
):
    admin = as_user("admin")
    made = await client.post(
        "/api/admin/users",
        json={"username": "eva", "password": "dlouhé heslo 1", "role": "call_taker"},
        headers=admin,
    )
    assert made.status_code == 201 and made.json()["role"] == "call_taker"
    again = await client.post(
        "/api/admin/users",
        json={"username": "eva", "password": "dlouhé heslo 2", "role": "call_taker"},
        headers=admin,
    )
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    token = await client.post("/api/auth/token", json={"username": "eva", "password": "dlouhé heslo 1"})
    assert token.status_code == 200
    disabled = await client.patch("/api/admin/users/eva", json={"active": False}, headers=admin)
    assert disabled.json()["active"] is False
    refused = await client.get("/api/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    assert refused.status_code == 401
    self_lock = await client.patch("/api/admin/users/admin", json={"active": False}, headers=admin)
    assert self_lock.status_code == 409


async def test_bootstrap_admin_is_created_once_and_never_overwritten(repository: Any):
    assert await ensure_bootstrap_admin(repository, None) is False
    assert await ensure_bootstrap_admin(repository, "první heslo správce") is True
    first_hash = repository.get_user("admin").password_hash
    assert await ensure_bootstrap_admin(repository, "jiné heslo správce") is False
    assert repository.get_user("admin").password_hash == first_hash


def test_cli_user_creation_migrates_and_creates(make_database_url: Callable[..., str]):
    url = make_database_url()
    assert add_user_cli(url, "dispecink-zzs", "tajné heslo 123", "integration") == (
        "user dispecink-zzs created with role integration"
    )
    from intake.errors import Conflict, ValidationFailed

    with pytest.raises(Conflict):
        add_user_cli(url, "dispecink-zzs", "tajné heslo 123", "integration")
    with pytest.raises(ValidationFailed) as bad:
        add_user_cli(url, "x y", "short", "king")
    assert len(bad.value.details["problems"]) == 3
