"""Webhooks for integrations: incident events POSTed as JSON, signed with HMAC-SHA256, retried with
exponential backoff and dead-lettered (status "failed") after ``max_attempts``.

Deliveries are rows in the database (queued by :func:`enqueue_event`, idempotent per webhook and event
id), so a restart or a leader change loses nothing; :func:`deliver_due` is the leader-only duty that sends
what is due.

Signature (Stripe-style, so a receiver can reject replays)::

    X-IZS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from intake.domain import utc_now
from intake.errors import StorageError
from intake.exchange.targets import TargetRefused, pinned_target, resolve_webhook_target

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-IZS-Signature"
EVENT_HEADER = "X-IZS-Event"
DELIVERY_HEADER = "X-IZS-Delivery"
SIGNATURE_TOLERANCE_S = 300


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay_s: float = 5.0
    max_delay_s: float = 3600.0
    timeout_s: float = 10.0

    def delay_after(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt (1-based): base, 2×base, 4×base, …"""
        return min(self.max_delay_s, self.base_delay_s * (2 ** max(0, attempts - 1)))


@dataclass
class DeliveryReport:
    delivered: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    dead: list[int] = field(default_factory=list)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, body: bytes, header: str, now: datetime | None = None) -> bool:
    """True when ``header`` is a valid signature of ``body`` made within the tolerance window."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    current = (now or utc_now()).timestamp()
    if abs(current - timestamp) > SIGNATURE_TOLERANCE_S:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


def event_id_of(event: Mapping[str, Any]) -> str:
    """A stable id for an incident event, the same in every process that sees it."""
    if event.get("id"):
        return str(event["id"])
    incident = event.get("incident") or {}
    basis = json.dumps(
        [event.get("type"), incident.get("id"), incident.get("updated_at"), event.get("at")], sort_keys=True
    )
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


async def enqueue_event(repo: Any, event: Mapping[str, Any], now: datetime | None = None) -> int:
    """Queue ``event`` (``{"type": "incident.updated", "incident": {...}, ...}``) for every webhook that
    wants its type. Returns how many deliveries were new (replays add none)."""
    added: int = await asyncio.to_thread(
        repo.enqueue_deliveries, event_id_of(event), str(event.get("type", "")), dict(event), now
    )
    return added


DELIVERY_CONCURRENCY = 8  # attempts in flight at once: one slow receiver never holds back the others


async def deliver_due(
    repo: Any,
    http_client: httpx.AsyncClient,
    now: datetime | None = None,
    policy: RetryPolicy | None = None,
    limit: int = 4 * DELIVERY_CONCURRENCY,  # a round ends well within the 60 s claim lease
    concurrency: int = DELIVERY_CONCURRENCY,
    allow_private_targets: bool = False,
) -> DeliveryReport:
    """Send every delivery that is due (leader-only duty, run on its own task, never in the leader loop).

    Attempts run concurrently, at most ``concurrency`` at once, each bounded by ``policy.timeout_s`` in
    total (connect, send and the answer together: a receiver that accepts and never answers costs one
    attempt's deadline, not the round). A 2xx answer is delivered; anything else (status, timeout, refused
    connection) is retried after ``policy.delay_after(attempts)`` until ``policy.max_attempts``, then
    dead-lettered. A target that resolves to an internal address (:mod:`intake.exchange.targets`) is not
    contacted and counts as failed.
    """
    policy = policy or RetryPolicy()
    now = now or utc_now()
    report = DeliveryReport()
    due = await asyncio.to_thread(repo.due_deliveries, now, limit)
    pool = asyncio.Semaphore(max(1, concurrency))

    async def attempt(delivery: Any) -> None:
        async with pool:
            await _attempt(repo, http_client, delivery, now, policy, report, allow_private_targets)

    await asyncio.gather(*(attempt(delivery) for delivery in due))
    return report


async def _attempt(
    repo: Any,
    http_client: httpx.AsyncClient,
    delivery: Any,
    now: datetime,
    policy: RetryPolicy,
    report: DeliveryReport,
    allow_private_targets: bool,
) -> None:
    body = json.dumps(
        {"id": delivery.event_id, "type": delivery.event_type, "data": delivery.payload},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(delivery.secret, body, int(now.timestamp())),
        EVENT_HEADER: delivery.event_type,
        DELIVERY_HEADER: str(delivery.id),
    }
    error: str | None = None
    try:
        addresses = await asyncio.wait_for(
            resolve_webhook_target(delivery.url, allow_private_targets), policy.timeout_s
        )
        target = pinned_target(delivery.url, addresses[0])  # the checked address, not a second lookup
        response = await asyncio.wait_for(
            http_client.post(
                target.url,
                content=body,
                headers={**headers, **target.headers},
                extensions=target.extensions,
                timeout=policy.timeout_s,
            ),
            policy.timeout_s,
        )
        if not 200 <= response.status_code < 300:
            error = f"HTTP {response.status_code}"
    except TargetRefused as exc:
        error = f"refused: {exc.message}"
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        error = f"{type(exc).__name__}: {exc}"
    except TimeoutError:
        error = f"no answer within {policy.timeout_s:g} s"
    attempts = delivery.attempts + 1
    try:
        if error is None:
            await asyncio.to_thread(repo.mark_delivery, delivery.id, True, None, None, now)
            report.delivered.append(delivery.id)
        elif attempts >= policy.max_attempts:
            log.error(
                "webhook delivery %s to %s dead after %s attempts: %s",
                delivery.id,
                delivery.url,
                attempts,
                error,
            )
            await asyncio.to_thread(repo.mark_delivery, delivery.id, False, error, None, now)
            report.dead.append(delivery.id)
        else:
            retry_at = now + timedelta(seconds=policy.delay_after(attempts))
            log.warning(
                "webhook delivery %s to %s failed (%s), retry at %s",
                delivery.id,
                delivery.url,
                error,
                retry_at.isoformat(),
            )
            await asyncio.to_thread(repo.mark_delivery, delivery.id, False, error, retry_at, now)
            report.retrying.append(delivery.id)
    except StorageError as exc:
        # The claim lease expires and the delivery comes due again: at-least-once, never lost.
        log.error("webhook delivery %s: result not recorded: %s", delivery.id, exc)


WEBHOOK_GROUP = "webhooks"


async def pump_incident_stream(
    live: Any, repo: Any, consumer: str, group: str = WEBHOOK_GROUP, count: int = 100, stale_ms: int = 30_000
) -> int:
    """Move incident events from the Redis stream into webhook deliveries (leader-only duty).

    Reads the stream through a consumer group, so every event is queued at least once even when the
    leader changes mid-batch: events another consumer took and never acknowledged are claimed after
    ``stale_ms``. The stream id is the event id, so a replayed event never queues a second delivery.
    Returns how many events were handled.
    """
    await live.ensure_group(group, "$")
    messages = await live.claim_stale(group, consumer, stale_ms, count)
    messages += await live.read_own_pending(group, consumer, count)
    messages += await live.read_group(group, consumer, count)
    seen: set[str] = set()
    handled: list[str] = []
    for message in messages:
        if message.id in seen:
            continue
        seen.add(message.id)
        event = {"id": message.id, **message.event}
        await enqueue_event(repo, event)
        handled.append(message.id)
    await live.ack(group, handled)
    return len(handled)
