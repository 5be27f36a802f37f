"""Supervisor statistics and follow-ups: service level, waits, abandoned calls to call back, open
incidents per agency, and the telephone-CPR milestones a call taker records.

Service level is the share of calls answered within the threshold (10 s by default) among calls that
were answered, abandoned after the threshold, or are still waiting past it; callers who hung up within
the threshold are left out (the usual ACD convention: nobody could have answered them).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from intake.bus import LiveEvent
from intake.domain import Call, CallState, Incident, IncidentStatus
from intake.ports import Clock, JsonObject, Publisher, ReportRecords, SystemClock
from intake.views import call_json, incident_json
from routing.vocabulary import Agency, DeskCode

PAGE = 500

TCPR_MILESTONES = ("recognised", "instructions_started", "first_compression", "ems_arrived", "stopped")


@dataclass
class ServiceLevel:
    since: datetime
    until: datetime
    threshold_s: float
    offered: int = 0
    answered: int = 0
    answered_within_threshold: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    waiting_over_threshold: int = 0
    waits: list[float] = field(default_factory=list)

    def add(self, call: Call, now: datetime) -> None:
        self.offered += 1
        if call.answered_at is not None:
            wait = max(0.0, (call.answered_at - call.offered_at).total_seconds())
            self.answered += 1
            self.waits.append(wait)
            if wait <= self.threshold_s:
                self.answered_within_threshold += 1
        elif call.state is CallState.ABANDONED:
            self.abandoned += 1
            if call.wait_seconds(now) <= self.threshold_s:
                self.short_abandoned += 1
        elif call.is_live and call.wait_seconds(now) > self.threshold_s:
            self.waiting_over_threshold += 1

    @property
    def percent(self) -> float | None:
        counted = self.answered + (self.abandoned - self.short_abandoned) + self.waiting_over_threshold
        if counted == 0:
            return None
        return round(100.0 * self.answered_within_threshold / counted, 1)

    @property
    def average_wait_s(self) -> float | None:
        return round(sum(self.waits) / len(self.waits), 1) if self.waits else None

    @property
    def longest_wait_s(self) -> float | None:
        return round(max(self.waits), 1) if self.waits else None

    def to_json(self) -> JsonObject:
        return {
            "since": self.since,
            "until": self.until,
            "threshold_s": self.threshold_s,
            "offered": self.offered,
            "answered": self.answered,
            "answered_within_threshold": self.answered_within_threshold,
            "abandoned": self.abandoned,
            "service_level_percent": self.percent,
            "average_wait_s": self.average_wait_s,
            "longest_wait_s": self.longest_wait_s,
        }


class ReportService:
    """Statistics and follow-ups over the centre's storage; changes are announced on the bus."""

    def __init__(self, records: ReportRecords, bus: Publisher, clock: Clock | None = None) -> None:
        self._records = records
        self._bus = bus
        self._clock = clock or SystemClock()

    async def _calls_between(self, since: datetime, until: datetime) -> list[Call]:
        calls: list[Call] = []
        offset = 0
        while True:
            page, total = await asyncio.to_thread(
                self._records.list_calls, since=since, until=until, limit=PAGE, offset=offset
            )
            calls.extend(page)
            offset += len(page)
            if not page or offset >= total:
                return calls

    async def service_levels(
        self, since: datetime, until: datetime | None = None, threshold_s: float = 10.0
    ) -> tuple[ServiceLevel, dict[str, ServiceLevel]]:
        """The centre's service level over calls offered in [since, until), and the same per desk."""
        now = self._clock.now()
        until = until or now
        overall = ServiceLevel(since, until, threshold_s)
        per_desk = {d.value: ServiceLevel(since, until, threshold_s) for d in DeskCode}
        for call in await self._calls_between(since, until):
            overall.add(call, now)
            if call.desk is not None:
                per_desk[call.desk.value].add(call, now)
        return overall, per_desk

    async def abandoned_to_call_back(self, limit: int = 100, offset: int = 0) -> tuple[list[Call], int]:
        """Abandoned calls nobody has called back yet, newest first."""
        return await asyncio.to_thread(
            self._records.list_calls, abandoned_uncalled=True, limit=limit, offset=offset
        )

    async def mark_called_back(self, call_id: str, by: str) -> Call:
        call = await asyncio.to_thread(self._records.mark_called_back, call_id, by)
        await self._bus.publish(
            LiveEvent(
                "call.updated",
                {"callback_done_at": call_json(call)["callback_done_at"], "callback_by": by},
                call_id=call.id,
                desk=call.desk.value if call.desk else None,
                incident_id=call.incident_id,
            )
        )
        return call

    async def open_incidents_by_agency(self) -> dict[str, int]:
        open_statuses = [IncidentStatus.NEW.value, IncidentStatus.ACTIVE.value]
        out: dict[str, int] = {}
        for agency in Agency:
            _, total = await asyncio.to_thread(
                self._records.list_incidents, status=open_statuses, agency=agency, limit=0
            )
            out[agency.value] = total
        return out

    async def record_tcpr_milestone(
        self,
        incident_id: str,
        actor: str,
        milestone: str,
        at: datetime | None = None,
        call_id: str | None = None,
    ) -> Incident:
        """Write a telephone-CPR milestone (e.g. the first compression) on the incident's timeline with the
        seconds since the call was answered, and announce the change.

        Targets (recognition ≤ 60 s, first compression ≤ 90 s from answer) are measured from these entries.
        """
        if milestone not in TCPR_MILESTONES:
            raise ValueError(f"unknown T-CPR milestone {milestone!r}")
        at = at or self._clock.now()
        data: JsonObject = {"milestone": milestone, "at": at.isoformat()}
        if call_id:
            call = await asyncio.to_thread(self._records.get_call, call_id)
            data["call_id"] = call_id
            if call.answered_at is not None:
                data["seconds_since_answer"] = round((at - call.answered_at).total_seconds(), 1)
        await asyncio.to_thread(self._records.append_timeline, incident_id, actor, f"tcpr_{milestone}", data)
        incident = await asyncio.to_thread(self._records.get_incident, incident_id)
        await self._bus.publish(
            LiveEvent(
                "incident.updated",
                {**incident_json(incident), "by": actor, "tcpr_milestone": data},
                incident_id=incident.id,
                call_id=call_id,
            )
        )
        return incident
