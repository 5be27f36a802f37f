"""Webhooks: signed POSTs to a real local HTTP receiver, retried with backoff, dead-lettered at the end,
fed from the Redis incident stream through a consumer group."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from intake.exchange.webhooks import (
    SIGNATURE_HEADER,
    RetryPolicy,
    deliver_due,
    enqueue_event,
    pump_incident_stream,
    sign,
    verify,
)

SECRET = "whsec-0123456789abcdef"
T0 = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)


class Receiver:
    """A real HTTP server on an ephemeral port that fails the first ``fail_first`` requests with 503."""

    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = 503 if len(receiver.requests) <= receiver.fail_first else 204
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky_receiver() -> Iterator[Receiver]:
    with Receiver(fail_first=2) as receiver:
        yield receiver


def incident_event(n: int = 1) -> dict[str, Any]:
    return {
        "id": f"1700000000000-{n}",
        "type": "incident.created",
        "incident": {"id": f"KVK-2026-00000{n}", "incident_type": "FIRE_BUILDING", "priority": 1},
    }


def test_signature_verifies_and_rejects_tampering_and_replays():
    body = b'{"a":1}'
    header = sign(SECRET, body, int(T0.timestamp()))
    assert verify(SECRET, body, header, now=T0)
    assert not verify(SECRET, body + b" ", header, now=T0)
    assert not verify("other-secret-000000", body, header, now=T0)
    assert not verify(SECRET, body, header, now=T0 + timedelta(minutes=10))
    assert not verify(SECRET, body, "garbage", now=T0)


def test_backoff_doubles_up_to_the_cap():
    policy = RetryPolicy(base_delay_s=5, max_delay_s=60)
    assert [policy.delay_after(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


async def test_failed_deliveries_are_retried_with_backoff_until_the_receiver_takes_them(
    repository: Any, flaky_receiver: Receiver
):
    hook = repository.create_webhook(flaky_receiver.url, SECRET, ["incident.created"])
    assert await enqueue_event(repository, incident_event(), now=T0) == 1
    assert await enqueue_event(repository, incident_event(), now=T0) == 0  # a replay queues nothing
    policy = RetryPolicy(base_delay_s=5, max_attempts=5)
    async with httpx.AsyncClient() as http:
        first = await deliver_due(repository, http, now=T0, policy=policy, allow_private_targets=True)
        assert first.retrying and not first.delivered
        # not due yet: backoff holds it back
        assert not (
            await deliver_due(
                repository, http, now=T0 + timedelta(seconds=4), policy=policy, allow_private_targets=True
            )
        ).retrying
        second = await deliver_due(
            repository, http, now=T0 + timedelta(seconds=5), policy=policy, allow_private_targets=True
        )
        assert second.retrying
        assert not (
            await deliver_due(
                repository, http, now=T0 + timedelta(seconds=14), policy=policy, allow_private_targets=True
            )
        ).delivered
        third = await deliver_due(
            repository, http, now=T0 + timedelta(seconds=15), policy=policy, allow_private_targets=True
        )
        assert third.delivered
    assert len(flaky_receiver.requests) == 3
    headers, body = flaky_receiver.requests[-1]
    assert verify(SECRET, body, headers[SIGNATURE_HEADER.lower()], now=T0 + timedelta(seconds=15))
    assert json.loads(body)["data"]["incident"]["id"] == "KVK-2026-000001"
    [delivery] = repository.list_deliveries(webhook_id=hook.id)
    assert (delivery.status, delivery.attempts) == ("delivered", 3)


async def test_delivery_is_dead_lettered_after_the_last_attempt(repository: Any):
    with Receiver(fail_first=100) as receiver:
        repository.create_webhook(receiver.url, SECRET, ["*"])
        await enqueue_event(repository, incident_event(), now=T0)
        policy = RetryPolicy(base_delay_s=1, max_attempts=3)
        now = T0
        async with httpx.AsyncClient() as http:
            for _ in range(3):
                report = await deliver_due(
                    repository, http, now=now, policy=policy, allow_private_targets=True
                )
                now += timedelta(seconds=10)
        assert report.dead
        assert len(receiver.requests) == 3
    [dead] = repository.list_deliveries(status="failed")
    assert dead.attempts == 3 and dead.last_error == "HTTP 503"
    async with httpx.AsyncClient() as http:
        assert not (
            await deliver_due(
                repository, http, now=now + timedelta(days=1), policy=policy, allow_private_targets=True
            )
        ).retrying


async def test_unreachable_receiver_counts_as_a_failed_attempt(repository: Any):
    with Receiver(fail_first=0) as receiver:
        url = receiver.url
    repository.create_webhook(url, SECRET, ["*"])  # nobody listens there any more
    await enqueue_event(repository, incident_event(), now=T0)
    async with httpx.AsyncClient() as http:
        report = await deliver_due(
            repository, http, now=T0, policy=RetryPolicy(timeout_s=2), allow_private_targets=True
        )
    assert report.retrying
    [delivery] = repository.list_deliveries()
    assert "ConnectError" in (delivery.last_error or "")


async def test_incident_stream_feeds_webhooks_once_per_event_through_a_consumer_group(
    repository: Any, live_state: Any
):
    repository.create_webhook("http://127.0.0.1:9/unused", SECRET, ["incident.created", "incident.updated"])
    await live_state.ensure_group("webhooks", "$")
    for n in (1, 2):
        await live_state.publish_incident_event(
            {"type": "incident.created", "incident": {"id": f"KVK-2026-00000{n}"}}
        )
    await live_state.publish_incident_event(
        {"type": "incident.linked", "incident": {"id": "KVK-2026-000001"}}
    )
    assert await pump_incident_stream(live_state, repository, consumer="node-a") == 3
    assert await pump_incident_stream(live_state, repository, consumer="node-b") == 0
    deliveries = repository.list_deliveries()
    assert sorted(d.event_type for d in deliveries) == ["incident.created", "incident.created"]
    assert (await live_state.pending("webhooks"))["pending"] == 0


async def test_a_receiver_that_accepts_and_never_answers_costs_one_attempt_deadline_not_the_round(
    repository: Any,
):
    """Issue 13: deliveries were serial, each waiting out its timeout, so one hung receiver held the round
    (and the leader loop) for minutes. Now attempts run concurrently (bounded pool), each under a total
    deadline, and a healthy receiver's deliveries are not held back by the hung one."""
    import asyncio
    import time

    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    hung = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = hung.sockets[0].getsockname()[1]
    try:
        with Receiver(fail_first=0) as healthy:
            for index in range(12):
                repository.create_webhook(f"http://127.0.0.1:{port}/hook/{index}", SECRET, ["*"])
            repository.create_webhook(healthy.url, SECRET, ["*"])
            await enqueue_event(repository, incident_event(), now=T0)
            policy = RetryPolicy(timeout_s=1.0)
            started = time.monotonic()
            async with httpx.AsyncClient() as http:
                report = await deliver_due(
                    repository, http, now=T0, policy=policy, concurrency=8, allow_private_targets=True
                )
            took = time.monotonic() - started
            assert len(healthy.requests) == 1 and len(report.delivered) == 1
            assert len(report.retrying) == 12
            # 13 attempts, 8 at a time, 1 s each: two rounds of the deadline, never 12 x 1 s.
            assert took < 6.0, took
            assert len(held) >= 8  # attempts really were in flight together
            errors = {d.last_error for d in repository.list_deliveries(status="pending")}
            assert errors == {"no answer within 1 s"} or all("Timeout" in (e or "") for e in errors), errors
    finally:
        for writer in held:
            writer.close()
        hung.close()


class _PinnedResolver:
    """The event loop's getaddrinfo answering for one made-up name (no DNS knows it), counting lookups:
    the delivery may resolve the name once, for the check; the connection must use that answer."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str, address: str) -> None:
        import asyncio
        import socket

        self.lookups = 0
        loop = asyncio.get_running_loop()
        real = loop.getaddrinfo

        async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if host == name:
                self.lookups += 1
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))]
            return await real(host, port, *args, **kwargs)

        monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)


async def test_the_delivery_connects_to_the_checked_address_not_a_second_lookup(
    repository: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 16 (DNS rebinding): the name is resolved once, checked, and the request goes to that address
    with the name in its Host header; the client never looks the name up again (here it could not: no DNS
    knows ``hooks.example.test``, so a second lookup would fail the delivery)."""
    resolver = _PinnedResolver(monkeypatch, "hooks.example.test", "127.0.0.1")
    with Receiver(fail_first=0) as receiver:
        port = receiver.server.server_address[1]
        repository.create_webhook(f"http://hooks.example.test:{port}/hook", SECRET, ["incident.created"])
        await enqueue_event(repository, incident_event(), now=T0)
        async with httpx.AsyncClient() as http:
            report = await deliver_due(repository, http, now=T0, allow_private_targets=True)
    assert report.delivered, report
    assert resolver.lookups == 1
    headers, _body = receiver.requests[0]
    assert headers["host"] == f"hooks.example.test:{port}"


async def test_a_pinned_https_delivery_verifies_the_certificate_for_the_name(
    repository: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Over TLS the pinned connection presents the name (SNI) and checks the certificate against it: a
    certificate for the name is accepted, one for another name is refused (the delivery fails, retried)."""
    import ssl

    from support.tls import CertificateAuthority

    ca = CertificateAuthority.create(tmp_path / "ca")
    _PinnedResolver(monkeypatch, "hooks.example.test", "127.0.0.1")
    outcomes = []
    for cert_name in ("hooks.example.test", "someone-else.example.test"):
        cert, key = ca.issue(cert_name.split(".")[0], hosts=(cert_name,))
        with Receiver(fail_first=0) as receiver:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
            port = receiver.server.server_address[1]
            hook = repository.create_webhook(
                f"https://hooks.example.test:{port}/hook", SECRET, ["incident.created"]
            )
            await enqueue_event(repository, incident_event(len(outcomes) + 1), now=T0)
            async with httpx.AsyncClient(verify=ca.client_context()) as http:
                report = await deliver_due(repository, http, now=T0, allow_private_targets=True)
            outcomes.append((report, receiver.requests))
            repository.delete_webhook(hook.id)
    (accepted, accepted_requests), (refused, refused_requests) = outcomes
    assert accepted.delivered and accepted_requests and accepted_requests[0][0]["host"].startswith("hooks.")
    assert refused.retrying and not refused.delivered and not refused_requests
