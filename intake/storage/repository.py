"""The repository: every durable read and write of izs-intake, one database transaction per method.

It is the union of the aggregate stores, each in its own module and each usable alone on a
:class:`~intake.storage.database.Database`:

* :class:`~intake.storage.calls.CallStore` — calls and their transcripts;
* :class:`~intake.storage.incidents.IncidentStore` — incidents, their readable ids and changes;
* :class:`~intake.storage.timeline.TimelineStore` — incident timelines and call links;
* :class:`~intake.storage.takers.TakerStore`, :class:`~intake.storage.users.UserStore`,
  :class:`~intake.storage.idempotency.IdempotencyStore`, :class:`~intake.storage.webhooks.WebhookStore`.

All of them share one :class:`~intake.storage.core.StoreCore` (one writer and one reader session factory,
the one place of transactions, error mapping and retry), so a ``Repository`` opens no more connections
than one store would. Row↔domain mapping lives in :mod:`intake.storage.mapping`, and only there.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from intake.storage.calls import CallStore
from intake.storage.idempotency import IdempotencyStore
from intake.storage.incidents import INCIDENT_CHANGE_KEYS, IncidentStore, incident_version
from intake.storage.mapping import DeliveryStatus, IdempotencyRecord, User, Webhook, WebhookDelivery
from intake.storage.tables import (
    CallRow,
    CallTakerRow,
    IncidentRow,
    IncidentTimelineRow,
    UserRow,
    WebhookDeliveryRow,
)
from intake.storage.takers import TakerStore
from intake.storage.timeline import TimelineStore
from intake.storage.users import UserStore
from intake.storage.webhooks import WebhookStore


class Repository(
    CallStore, IncidentStore, TimelineStore, TakerStore, UserStore, IdempotencyStore, WebhookStore
):
    """Durable storage of calls, incidents, call takers, users, idempotency keys and webhooks."""

    def ping(self) -> bool:
        """True when the database answers (never raises)."""
        return self.db.ping()

    def counts(self) -> dict[str, int]:
        """Row counts of the main tables (for health pages and tests)."""

        def work(session: Session) -> dict[str, int]:
            return {
                name: session.scalar(select(func.count()).select_from(table)) or 0
                for name, table in (
                    ("calls", CallRow),
                    ("incidents", IncidentRow),
                    ("incident_timeline", IncidentTimelineRow),
                    ("call_takers", CallTakerRow),
                    ("users", UserRow),
                    ("webhook_deliveries", WebhookDeliveryRow),
                )
            }

        return self._read("count rows", work)


__all__ = [
    "INCIDENT_CHANGE_KEYS",
    "DeliveryStatus",
    "IdempotencyRecord",
    "Repository",
    "User",
    "Webhook",
    "WebhookDelivery",
    "incident_version",
]
