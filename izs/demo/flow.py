"""Watching calls flow through the centre from its live bus: transcript → triage → desk queue → incident.

:class:`FlowTracker` folds :class:`~intake.bus.LiveEvent` s into one :class:`CallFlow` per call (the same
events a console sees), prints readable progress lines if asked, and summarises times to desk.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from intake.bus import EventBus, LiveEvent


@dataclass(slots=True)
class CallFlow:
    call_id: str
    call_ref: str = ""
    label: str = ""
    dialled: str = ""
    caller: str = ""
    offered_at: datetime | None = None
    offered_mono: float | None = None
    first_partial_mono: float | None = None
    first_final_mono: float | None = None
    language: str | None = None
    transcript: list[str] = field(default_factory=list)
    incident_type: str | None = None
    priority: int | None = None
    tcpr: bool = False
    tcpr_mono: float | None = None  # when triage first said suspected cardiac arrest
    unsure: bool = True
    desk: str | None = None
    triaged_mono: float | None = None  # first confident triage: the call sits on the desk it needs
    queued_mono: float | None = None
    taker_id: str | None = None
    taker_offered_mono: float | None = None  # the latest offer to a call taker (the one that connects)
    taker_offer_desk: str | None = None  # the desk the call was taken from
    connected_mono: float | None = None
    incident_id: str | None = None
    incident_mono: float | None = None
    linked: bool = False
    ended_mono: float | None = None
    end_kind: str | None = None  # "call.ended" / "call.abandoned"
    end_reason: str | None = None

    def since_offer(self, mono: float | None) -> float | None:
        if mono is None or self.offered_mono is None:
            return None
        return mono - self.offered_mono

    @property
    def time_to_desk_s(self) -> float | None:
        """Offer → triage placed the call on the desk it needs (or a call taker had it, if sooner)."""
        marks = [m for m in (self.triaged_mono, self.connected_mono) if m is not None]
        return self.since_offer(min(marks)) if marks else None

    @property
    def time_to_taker_s(self) -> float | None:
        return self.since_offer(self.connected_mono)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


class FlowTracker:
    """Consumes the centre's live bus. ``label_for(call_ref)`` names calls (e.g. the scenario id)."""

    def __init__(
        self,
        bus: EventBus,
        printer: Callable[[str], None] | None = None,
        label_for: Callable[[str], str | None] | None = None,
    ) -> None:
        self._bus = bus
        self._print = printer
        self._label_for = label_for or (lambda _ref: None)
        self.flows: dict[str, CallFlow] = {}
        self.incidents: dict[str, dict[str, Any]] = {}
        self.health: dict[str, tuple[bool, str]] = {}
        self.events: list[tuple[float, LiveEvent]] = []
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._ready = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._consume(), name="flow-tracker")
        await asyncio.wait_for(self._ready.wait(), timeout=5.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _consume(self) -> None:
        stream = self._bus.subscribe()
        first = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)  # the generator has registered its queue once it is first awaited
        self._ready.set()
        event = await first
        while True:
            self.observe(event, time.monotonic())
            event = await anext(stream)

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until ``predicate()`` holds (re-checked on every event); False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 0.5))
        return True

    def flow_by_ref(self, call_ref: str) -> CallFlow | None:
        return next((f for f in self.flows.values() if f.call_ref == call_ref), None)

    # ------------------------------------------------------------------------------------------ folding

    def observe(self, event: LiveEvent, mono: float) -> None:
        self.events.append((mono, event))
        self._changed.set()
        data = event.data
        if event.type == "component.health":
            name = str(data.get("component"))
            state = (bool(data.get("healthy")), str(data.get("detail") or ""))
            if self.health.get(name) != state:
                self.health[name] = state
                self._say(f"  health  {name}: {'ok' if state[0] else 'DEGRADED'} {state[1]}".rstrip())
            return
        if event.type in ("incident.created", "incident.linked", "incident.updated") and event.incident_id:
            self.incidents[event.incident_id] = dict(data)
            if event.type == "incident.linked":
                call_id = data.get("call_id")
                flow = self.flows.get(str(call_id)) if call_id else None
                if flow is not None:
                    flow.linked = True
        if event.call_id is None:
            return
        flow = self.flows.get(event.call_id)
        if flow is None:
            flow = self.flows[event.call_id] = CallFlow(call_id=event.call_id)
        if not flow.label and flow.call_ref:
            flow.label = self._label_for(flow.call_ref) or ""
        name = flow.label or event.call_id[:8]
        if event.type == "call.offered":
            flow.call_ref = str(data.get("call_ref") or "")
            flow.caller = str((data.get("caller") or {}).get("display") or "")
            # The caller learns its Call-ID a moment after the INVITE went out: until then the number names it.
            flow.label = self._label_for(flow.call_ref) or flow.label or self._label_for(flow.caller) or ""
            flow.dialled = str(data.get("dialled") or "")
            flow.offered_mono = mono
            flow.offered_at = event.at
            name = flow.label or event.call_id[:8]
            self._say(f"{name:<10} offered   {flow.dialled} from {flow.caller}")
        elif event.type == "call.queued":
            if flow.queued_mono is None:
                flow.queued_mono = mono
        elif event.type == "language.detected":
            flow.language = str(data.get("language"))
            self._say(f"{name:<10} language  {flow.language} ({float(data.get('probability') or 0):.2f})")
        elif event.type == "transcript.partial":
            if flow.first_partial_mono is None:
                flow.first_partial_mono = mono
        elif event.type == "transcript.final":
            if data.get("leg", "caller") == "caller":
                if flow.first_final_mono is None:
                    flow.first_final_mono = mono
                text = str(data.get("text") or "")
                flow.transcript.append(text)
                self._say(f"{name:<10} heard     «{text[:90]}»")
        elif event.type == "triage.updated":
            changed = (
                flow.incident_type != _value(data.get("incident_type"))
                or flow.priority != _value(data.get("priority"))
                or flow.tcpr != bool(_value(data.get("tcpr")))
            )
            flow.incident_type = _value(data.get("incident_type"))
            priority = _value(data.get("priority"))
            flow.priority = int(priority) if priority is not None else None
            flow.tcpr = bool(_value(data.get("tcpr")))
            if flow.tcpr and flow.tcpr_mono is None:
                flow.tcpr_mono = mono
            flow.unsure = bool(data.get("unsure", True))
            flow.desk = str(data.get("desk") or event.desk or "") or None
            if not flow.unsure and flow.triaged_mono is None:
                flow.triaged_mono = mono
            if changed:
                flags = " TCPR" if flow.tcpr else ""
                sure = "unsure" if flow.unsure else "sure"
                self._say(
                    f"{name:<10} triage    {flow.incident_type} P{flow.priority}{flags} → desk {flow.desk} ({sure})"
                )
        elif event.type == "call.offered_to_taker":
            if flow.connected_mono is None:
                flow.taker_offered_mono = mono
                flow.taker_offer_desk = event.desk
            self._say(f"{name:<10} offered to call taker {event.taker_id}")
        elif event.type == "call.connected":
            flow.taker_id = str(data.get("taker_id") or event.taker_id or "")
            if flow.connected_mono is None:
                flow.connected_mono = mono
                self._say(f"{name:<10} ANSWERED  by {flow.taker_id} after {_fmt(flow.since_offer(mono))}")
        elif event.type == "call.updated" and data.get("incident_id"):
            if flow.incident_id is None:
                flow.incident_id = str(data["incident_id"])
                flow.incident_mono = mono
                flow.linked = flow.linked or bool(data.get("linked"))
                how = "linked to" if flow.linked else "opened"
                self._say(f"{name:<10} incident  {how} {flow.incident_id}")
        elif event.type in ("call.ended", "call.abandoned"):
            flow.ended_mono = mono
            flow.end_kind = event.type
            flow.end_reason = str(data.get("reason") or "")
            what = "ABANDONED" if event.type == "call.abandoned" else "ended"
            self._say(f"{name:<10} {what:<9} ({flow.end_reason})")
        if event.incident_id and flow.incident_id is None:
            flow.incident_id = event.incident_id

    def _say(self, line: str) -> None:
        if self._print is not None:
            self._print(f"{time.strftime('%H:%M:%S')}  {line}")

    # ------------------------------------------------------------------------------------------ summary

    def relabel(self) -> None:
        """Name calls whose label was not known yet when they were offered."""
        for flow in self.flows.values():
            if not flow.label and flow.call_ref:
                flow.label = self._label_for(flow.call_ref) or ""

    def summary_lines(self) -> list[str]:
        self.relabel()
        flows = [f for f in self.flows.values() if f.offered_mono is not None]
        to_desk = [v for f in flows if (v := f.time_to_desk_s) is not None]
        to_taker = [v for f in flows if (v := f.time_to_taker_s) is not None]
        lines = [
            f"calls offered: {len(flows)}, answered by a call taker: {len(to_taker)}, "
            f"abandoned: {sum(1 for f in flows if f.end_kind == 'call.abandoned')}, "
            f"incidents: {len({f.incident_id for f in flows if f.incident_id})}",
            f"time to desk (offer → triaged onto its desk): p50 {_fmt(percentile(to_desk, 50))}, "
            f"p95 {_fmt(percentile(to_desk, 95))} over {len(to_desk)} calls",
            f"time to call taker: p50 {_fmt(percentile(to_taker, 50))}, p95 {_fmt(percentile(to_taker, 95))}",
            "",
            f"{'call':<12} {'dial':<4} {'lang':<4} {'triage':<22} {'P':<2} {'desk':<4} "
            f"{'to desk':>8} {'to taker':>8} {'incident':<18} end",
        ]
        for f in sorted(flows, key=lambda x: x.offered_mono or 0.0):
            lines.append(
                f"{(f.label or f.call_id[:10]):<12} {f.dialled:<4} {(f.language or '-'):<4} "
                f"{(f.incident_type or '-')[:22]:<22} {f.priority or '-'!s:<2} {(f.desk or '-'):<4} "
                f"{_fmt(f.time_to_desk_s):>8} {_fmt(f.time_to_taker_s):>8} "
                f"{(f.incident_id or '-') + (' (linked)' if f.linked else ''):<18} "
                f"{(f.end_kind or 'live').removeprefix('call.')}"
            )
        return lines


def _value(raw: Any) -> Any:
    """Triage fields come as ``{"value": ..., "confidence": ..., "evidence": ...}``."""
    if isinstance(raw, dict):
        return raw.get("value")
    return raw
