"""Finishing what an outage interrupted, every second on every node: journaled call records written,
unanswered offers taken back, incidents that could not be opened opened, lost queue entries restored."""

from __future__ import annotations

from intake.calls.offers import Offers
from intake.calls.records import CallRecords
from intake.calls.triage import CallTriageFlow
from intake.ports import Desks


class Recovery:
    def __init__(self, records: CallRecords, offers: Offers, triage: CallTriageFlow, desks: Desks) -> None:
        self._records = records
        self._offers = offers
        self._triage = triage
        self._desks = desks

    async def upkeep(self) -> None:
        """- call records journaled while the database was away are written;
        - offers nobody took in time go back to the queue;
        - incidents that could not be opened are opened (also for calls that have ended meanwhile);
        - queued calls missing from the Redis queue (Redis was down or lost its data) are queued again.
        """
        await self._records.drain_journal()
        await self._offers.expire(self._desks.offer_timeout_seconds)
        await self._triage.retry_incidents()
        await self._offers.requeue_missing()
