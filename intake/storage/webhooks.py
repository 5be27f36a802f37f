"""Storage of webhooks and their delivery queue (claimed with a lease so nodes never double-send)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from intake.domain import utc_now
from intake.errors import NotFound
from intake.storage.core import MAX_PAGE, StoreCore, page
from intake.storage.mapping import (
    DeliveryStatus,
    Webhook,
    WebhookDelivery,
    as_utc,
    delivery_from_row,
    json_value,
    webhook_from_row,
)
from intake.storage.tables import WebhookDeliveryRow, WebhookRow


class WebhookStore(StoreCore):
    """Webhooks and their deliveries."""

    def create_webhook(self, url: str, secret: str, events: Iterable[str], active: bool = True) -> Webhook:
        def work(session: Session) -> Webhook:
            row = WebhookRow(url=url, secret=secret, events=list(events), active=active, created_at=utc_now())
            session.add(row)
            session.flush()
            return webhook_from_row(row)

        return self._write("create webhook", work)

    def get_webhook(self, webhook_id: int) -> Webhook:
        def work(session: Session) -> Webhook:
            row = session.get(WebhookRow, webhook_id)
            if row is None:
                raise NotFound(f"webhook {webhook_id} does not exist", webhook_id=webhook_id)
            return webhook_from_row(row)

        return self._read(f"get webhook {webhook_id}", work)

    def list_webhooks(self, active_only: bool = False) -> list[Webhook]:
        def work(session: Session) -> list[Webhook]:
            query = select(WebhookRow).order_by(WebhookRow.id)
            if active_only:
                query = query.where(WebhookRow.active.is_(True))
            return [webhook_from_row(r) for r in session.scalars(query)]

        return self._read("list webhooks", work)

    def update_webhook(
        self,
        webhook_id: int,
        *,
        url: str | None = None,
        secret: str | None = None,
        events: Iterable[str] | None = None,
        active: bool | None = None,
    ) -> Webhook:
        def work(session: Session) -> Webhook:
            row = session.get(WebhookRow, webhook_id, with_for_update=True)
            if row is None:
                raise NotFound(f"webhook {webhook_id} does not exist", webhook_id=webhook_id)
            if url is not None:
                row.url = url
            if secret is not None:
                row.secret = secret
            if events is not None:
                row.events = list(events)
            if active is not None:
                row.active = active
            session.flush()
            return webhook_from_row(row)

        return self._write(f"update webhook {webhook_id}", work)

    def delete_webhook(self, webhook_id: int) -> None:
        """Delete a webhook and its deliveries."""

        def work(session: Session) -> None:
            session.execute(delete(WebhookDeliveryRow).where(WebhookDeliveryRow.webhook_id == webhook_id))
            if session.execute(delete(WebhookRow).where(WebhookRow.id == webhook_id)).rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"webhook {webhook_id} does not exist", webhook_id=webhook_id)

        self._write(f"delete webhook {webhook_id}", work)

    def enqueue_deliveries(
        self, event_id: str, event_type: str, payload: Mapping[str, Any], now: datetime | None = None
    ) -> int:
        """Queue one delivery of an event per active webhook that wants its type; idempotent per
        (webhook, event_id), so replaying the incident stream never double-queues. Returns how many were new."""
        when = as_utc(now) if now is not None else utc_now()
        body = json_value(dict(payload))

        def work(session: Session) -> int:
            hooks = [
                webhook_from_row(r)
                for r in session.scalars(select(WebhookRow).where(WebhookRow.active.is_(True)))
            ]
            added = 0
            for hook in hooks:
                if not hook.wants(event_type):
                    continue
                stmt = self._insert(WebhookDeliveryRow).values(
                    webhook_id=hook.id,
                    event_id=event_id,
                    event_type=event_type,
                    payload=body,
                    attempts=0,
                    next_attempt_at=when,
                    status=DeliveryStatus.PENDING,
                    last_error=None,
                    created_at=when,
                    delivered_at=None,
                )
                inserted = session.execute(
                    stmt.on_conflict_do_nothing(index_elements=["webhook_id", "event_id"]).returning(
                        WebhookDeliveryRow.id
                    )
                ).first()
                added += inserted is not None
            return added

        return self._write("queue webhook deliveries", work)

    def due_deliveries(
        self, now: datetime | None = None, limit: int = 50, lease_s: float = 60.0
    ) -> list[WebhookDelivery]:
        """Claim up to ``limit`` pending deliveries due at ``now``, oldest first.

        Claiming pushes their ``next_attempt_at`` ``lease_s`` into the future, so another node polling
        meanwhile does not send them too; if the claimer dies, they come due again after the lease.
        """
        when = as_utc(now) if now is not None else utc_now()

        def work(session: Session) -> list[WebhookDelivery]:
            query = (
                select(WebhookDeliveryRow, WebhookRow)
                .join(WebhookRow, WebhookRow.id == WebhookDeliveryRow.webhook_id)
                .where(
                    WebhookDeliveryRow.status == DeliveryStatus.PENDING,
                    WebhookDeliveryRow.next_attempt_at <= when,
                    WebhookRow.active.is_(True),
                )
                .order_by(WebhookDeliveryRow.next_attempt_at, WebhookDeliveryRow.id)
                .limit(max(1, min(limit, MAX_PAGE)))
                .with_for_update(skip_locked=True, of=WebhookDeliveryRow)
            )
            claimed = []
            for delivery, hook in session.execute(query):
                claimed.append(delivery_from_row(delivery, hook))
                delivery.next_attempt_at = when + timedelta(seconds=lease_s)
            return claimed

        return self._write("claim webhook deliveries", work)

    def mark_delivery(
        self,
        delivery_id: int,
        delivered: bool,
        error: str | None = None,
        retry_at: datetime | None = None,
        now: datetime | None = None,
    ) -> WebhookDelivery:
        """Record one attempt: delivered, or failed with ``error`` and retried at ``retry_at``
        (``retry_at=None`` on failure gives up: status "failed")."""
        when = as_utc(now) if now is not None else utc_now()

        def work(session: Session) -> WebhookDelivery:
            row = session.get(WebhookDeliveryRow, delivery_id, with_for_update=True)
            if row is None:
                raise NotFound(f"webhook delivery {delivery_id} does not exist", delivery_id=delivery_id)
            row.attempts += 1
            if delivered:
                row.status = DeliveryStatus.DELIVERED
                row.delivered_at = when
                row.last_error = None
            else:
                row.last_error = (error or "failed")[:4000]
                if retry_at is None:
                    row.status = DeliveryStatus.FAILED
                else:
                    row.status = DeliveryStatus.PENDING
                    row.next_attempt_at = as_utc(retry_at)
            hook = session.get(WebhookRow, row.webhook_id)
            assert hook is not None
            session.flush()
            return delivery_from_row(row, hook)

        return self._write(f"mark webhook delivery {delivery_id}", work)

    def list_deliveries(
        self, webhook_id: int | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[WebhookDelivery]:
        limit, offset = page(limit, offset)

        def work(session: Session) -> list[WebhookDelivery]:
            query = select(WebhookDeliveryRow, WebhookRow).join(
                WebhookRow, WebhookRow.id == WebhookDeliveryRow.webhook_id
            )
            if webhook_id is not None:
                query = query.where(WebhookDeliveryRow.webhook_id == webhook_id)
            if status is not None:
                query = query.where(WebhookDeliveryRow.status == status)
            query = query.order_by(WebhookDeliveryRow.id.desc()).limit(limit).offset(offset)
            return [delivery_from_row(d, h) for d, h in session.execute(query)]

        return self._read("list webhook deliveries", work)
