"""The centre's health as a supervisor and a monitoring system see it: one row per component (database,
Redis, telephony adapters, transcription on every node, voice logging), and the Prometheus metrics read at
scrape time from the shared state, so every node reports the whole centre."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from intake.bus import EventBus, LiveEvent
from intake.errors import LiveStateError, StorageError
from intake.metrics import Metrics
from intake.ports import ComponentStatus, HealthState, Pingable, TranscriberHealth
from routing.vocabulary import DeskCode
from telephony.events import AdapterStatus, utc_now
from transcription.health import RecognitionHealth, RecognitionStatus

log = logging.getLogger(__name__)


@dataclass
class ComponentHealth:
    name: str
    healthy: bool
    detail: str = ""
    data: dict[str, object] = field(default_factory=dict)


@dataclass
class CentreHealth:
    node: str
    transcription_enabled: bool
    repo: Pingable
    live: HealthState | None
    bus: EventBus
    adapters: Mapping[str, AdapterStatus]
    metrics: Metrics
    transcriber: TranscriberHealth | None = None
    recorder: ComponentStatus | None = None

    async def components(self) -> list[ComponentHealth]:
        out: list[ComponentHealth] = []
        try:
            ok = await asyncio.to_thread(self.repo.ping)
            out.append(ComponentHealth("database", bool(ok)))
        except StorageError as exc:
            out.append(ComponentHealth("database", False, str(exc)))
        if self.live is not None:
            try:
                await self.live.ping()
                out.append(
                    ComponentHealth("redis", self.bus.degraded_reason is None, self.bus.degraded_reason or "")
                )
            except LiveStateError as exc:
                out.append(ComponentHealth("redis", False, str(exc)))
        for name, status in self.adapters.items():
            out.append(ComponentHealth(name, status.healthy, status.detail))
        out.extend(await self.transcription())
        if self.recorder is not None:
            healthy, detail = self.recorder.health()
            out.append(ComponentHealth("recording", healthy, detail))
        return out

    async def transcription(self) -> list[ComponentHealth]:
        """One row per node that transcribes: this node's from the service itself, the others' from the
        reports they keep in Redis (gone when the node is gone)."""
        reports: dict[str, RecognitionStatus] = {}
        if self.live is not None:
            try:
                shared = await self.live.node_health("transcription")
                reports = {name: RecognitionStatus.from_json(data) for name, data in shared.items()}
            except LiveStateError as exc:
                log.debug("other nodes' transcription health unavailable: %s", exc)
        if self.transcriber is not None:
            reports[self.node] = self.transcriber.recognition_status()
        elif self.transcription_enabled:
            reports[self.node] = RecognitionStatus.down("transcription did not start")
        out = []
        for name in sorted(reports, key=lambda n: (n != self.node, n)):
            report = reports[name]
            label = "transcription" if name == self.node else f"transcription@{name}"
            out.append(
                ComponentHealth(label, report.healthy, report.line(), {"node": name, **report.to_json()})
            )
        return out

    async def share_transcription(self, ttl_ms: int) -> None:
        """This node's transcription state, in Redis for every node's supervisor panel."""
        if self.transcriber is None or self.live is None:
            return
        try:
            await self.live.put_node_health(
                "transcription", self.node, self.transcriber.recognition_status().to_json(), ttl_ms
            )
        except LiveStateError as exc:
            log.debug("transcription health not shared: %s", exc)

    async def render_metrics(self) -> bytes:
        """Queue gauges are read from the shared state at scrape time, so every node reports the centre."""
        now = utc_now()
        try:
            if self.live is not None:
                for desk in DeskCode:
                    entries = await self.live.queue(desk.value)
                    self.metrics.queue_length.labels(desk=desk.value).set(len(entries))
                    oldest = max(
                        ((now - e.arrival).total_seconds() for e in entries if e.arrival), default=0.0
                    )
                    self.metrics.queue_oldest_wait.labels(desk=desk.value).set(oldest)
        except LiveStateError as exc:
            log.error("queue metrics unavailable: %s", exc)
        for component in await self.components():
            self.metrics.component_up.labels(component=component.name).set(1 if component.healthy else 0)
        if self.transcriber is not None:
            self._recognition_metrics(self.transcriber.recognition_status())
        return self.metrics.render()

    def _recognition_metrics(self, status: RecognitionStatus) -> None:
        self.metrics.recognition_behind.set(status.behind_s)
        for state in RecognitionHealth:
            self.metrics.recognition_health.labels(state=state.value).set(1 if status.health is state else 0)
        self.metrics.recognition_slots_busy.set(status.busy_slots)
        self.metrics.recognition_legs_waiting.set(status.legs_waiting_for_slot)
        self.metrics.recognition_not_transcribed.set(status.not_transcribed_s)

    async def announce(self) -> None:
        for component in await self.components():
            await self.bus.publish(
                LiveEvent(
                    "component.health",
                    {"component": component.name, "healthy": component.healthy, "detail": component.detail},
                )
            )
