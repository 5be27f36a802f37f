"""The one composition root: builds every service from :class:`~intake.settings.Settings` and wires them.

``Centre`` owns the lifetime of everything it starts (embedded Redis, database engine, SIP endpoint, AMI
bridge, transcription workers, leader duties). Nothing else constructs services; tests build a Centre with
their own settings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from intake.bus import EventBus, LiveEvent
from intake.calls import CallService
from intake.desks import DeskService
from intake.domain import CallTaker, TakerState, utc_now
from intake.errors import LiveStateError, StorageError, TelephonyError
from intake.incidents import DuplicateFinder, IncidentService
from intake.journal import CallJournal
from intake.metrics import Metrics
from intake.pbx import PbxCallControl
from intake.settings import Settings
from routing.vocabulary import DeskCode
from telephony.errors import AdapterError
from transcription.health import RecognitionHealth, RecognitionStatus

log = logging.getLogger(__name__)

LEADER_LEASE = "leader"
LEADER_TTL_MS = 5000
LIVENESS_INTERVAL_S = 1.0  # heartbeat and lease are written every second and live LEADER_TTL_MS
LIVENESS_DEADLINE_S = 2.0  # one Redis round trip; longer and the next beat is due
# Each leader duty's deadline: an overrun is logged and the duty cancelled (retried next round).
DUTY_DEADLINES_S = {
    "upkeep": 10.0,
    "reap lost calls": 10.0,
    "queue overflow": 5.0,
    "dispatch": 5.0,
    "webhooks": 60.0,  # a round of concurrent attempts, each bounded by RetryPolicy.timeout_s
    "node health": 2.0,
    "recording purge": 120.0,
}
DEFAULT_DUTY_DEADLINE_S = 10.0
NODE_HEALTH_TTL_MS = 10_000  # a node's own component report outlives a few missed seconds, not the node


async def rebuild_live_state_if_lost(live: Any, repo: Any) -> int:
    """A Redis that is new or lost its data gets the desk queues back from the durable call records."""
    from intake.domain import CallState
    from intake.live import queue_entries_from_calls

    if not await live.ensure_epoch():
        return 0
    queued = await asyncio.to_thread(repo.calls_in_states, [CallState.QUEUED])
    without_desk = [c.id for c in queued if c.desk is None]
    if without_desk:
        log.error("queued calls without a desk cannot be requeued: %s", ", ".join(without_desk))
    rebuilt: int = await live.rebuild_queues(queue_entries_from_calls(queued))
    if rebuilt:
        log.warning("live state was empty: %d queued calls restored from the database", rebuilt)
    return rebuilt


def _mirror_on_pbx(pbx: PbxCallControl) -> Callable[[CallTaker, TakerState, str], Awaitable[None]]:
    async def mirror(taker: CallTaker, state: TakerState, reason: str) -> None:
        try:
            await pbx.taker_state_changed(taker, state, reason)
        except AdapterError as exc:
            log.error("%s", exc)
            raise TelephonyError(
                f"{exc}; intake shows {taker.id} as {state.value}, the PBX queues are put right at the next AMI "
                "reconnect or state change",
                taker_id=taker.id,
            ) from exc

    return mirror


@dataclass
class ComponentHealth:
    name: str
    healthy: bool
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Centre:
    settings: Settings
    repo: Any
    live: Any
    bus: EventBus
    desks: DeskService
    incidents: IncidentService
    calls: CallService
    triage: Any
    transcriber: Any | None = None
    sip: Any | None = None
    ami: Any | None = None
    embedded_redis: Any | None = None
    database: Any | None = None
    metrics: Metrics = field(default_factory=Metrics)
    places: Any | None = None  # PlaceGazetteer: coordinates of the region's places (map, nearest place)
    logins: Any | None = None  # LoginThrottle: failed logins per user name and address, in Redis
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    is_leader: bool = False
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _http: Any | None = None
    _last_purge: datetime | None = None
    recordings: Any | None = None  # RecordingRepository: voice logging on the shared database
    recorder: Any | None = None  # CallRecorder of this node
    _last_recording_purge: date | None = None

    # ------------------------------------------------------------------------------ lifecycle

    @classmethod
    async def start(cls, settings: Settings, *, with_telephony: bool = True) -> Centre:
        """Build and start everything ``settings`` asks for. Raises IzsError subclasses with clear messages."""
        from intake.live import LiveState, connect_redis
        from intake.location import PlaceGazetteer
        from intake.logins import LoginThrottle, ThrottlePolicy
        from intake.storage.database import Database
        from intake.storage.repository import Repository
        from routing.triage import Triage

        stack = AsyncExitStack()
        settings.var_dir.mkdir(parents=True, exist_ok=True)
        try:
            database = Database(settings.effective_database_url)
            stack.callback(database.dispose)
            await asyncio.to_thread(database.upgrade)
            repo = Repository(database)

            embedded = None
            redis_url = settings.redis_url
            if redis_url is None:
                from intake.redis_server import EmbeddedRedis

                embedded = EmbeddedRedis(settings.var_dir / "redis")
                await asyncio.to_thread(embedded.start)
                stack.callback(embedded.stop)
                redis_url = embedded.url
            client = connect_redis(redis_url)
            stack.push_async_callback(client.aclose)
            live = LiveState(client)
            await rebuild_live_state_if_lost(live, repo)

            bus = EventBus(live, node=settings.node_id)
            await bus.start()
            stack.push_async_callback(bus.stop)

            triage = Triage.from_data_dir(settings.triage_data_dir)
            places = PlaceGazetteer.from_csv()
            desks = DeskService(
                repo,
                live,
                bus,
                overflow_after=timedelta(seconds=settings.overflow_after_s),
                wrap_up=timedelta(seconds=settings.wrap_up_s),
            )
            incidents = IncidentService(
                repo,
                live,
                bus,
                region=settings.region,
                duplicate_window=timedelta(minutes=settings.duplicate_window_min),
                duplicate_finder=DuplicateFinder(timedelta(minutes=settings.duplicate_window_min)),
                places=places,
            )
            takers = [
                CallTaker(
                    id=t.id,
                    name=t.name,
                    desks=tuple(DeskCode(d) for d in t.desks),
                    languages=tuple(t.languages),
                    sip_uri=t.sip_uri,
                    interface=t.interface,
                )
                for t in settings.takers
            ]
            uris = {t.id: t.sip_uri for t in takers}
            metrics = Metrics()
            journal = CallJournal(settings.var_dir / "journal")
            written, pending = await asyncio.to_thread(journal.drain, repo)
            if written or pending:
                log.warning("journal at start: %d call records written, %d still pending", written, pending)
            calls = CallService(
                repo,
                live,
                bus,
                desks,
                incidents,
                triage,
                node=settings.node_id,
                taker_uri=lambda taker_id: uris.get(taker_id),
                metrics=metrics,
                places=places,
                journal=journal,
                # A PBX names the taker by interface, the SIP endpoint by the desk phone's URI: both map to the id.
                takers_by_interface={t.interface: t.id for t in takers if t.interface}
                | {t.sip_uri: t.id for t in takers if t.sip_uri},
            )
            calls.bind_loop(asyncio.get_running_loop())
            stack.push_async_callback(calls.close)
            recordings = recorder = None
            if settings.recording_enabled:
                from intake.recording import CallRecorder
                from intake.storage.recordings import RecordingRepository

                recordings = RecordingRepository(database)
                recorder = CallRecorder(recordings, settings.node_id, codec=settings.recording_codec)
                recorder.start()
                # Runs before calls.close (LIFO): open recordings are stored and closed first.
                stack.callback(recorder.stop)
                calls.use_recorder(recorder)
            await desks.register_takers(takers)

            centre = cls(
                settings=settings,
                repo=repo,
                live=live,
                bus=bus,
                desks=desks,
                incidents=incidents,
                calls=calls,
                triage=triage,
                embedded_redis=embedded,
                database=database,
                metrics=metrics,
                places=places,
                recordings=recordings,
                recorder=recorder,
                logins=LoginThrottle(
                    client,
                    ThrottlePolicy(
                        failures_per_user=settings.login_failures_per_user,
                        failures_per_address=settings.login_failures_per_address,
                        backoff_s=settings.login_backoff_s,
                        backoff_max_s=settings.login_backoff_max_s,
                    ),
                ),
                _stack=stack,
            )
            # Heartbeat before any call exists, so no other node takes this node's calls for lost; then the
            # calls our previous process held (killed, media gone) go to the call-back list.
            await calls.heartbeat()
            lost = await calls.reap_lost_calls()
            if lost:
                log.error(
                    "%d calls held by this node's previous process were lost; listed for call-back", len(lost)
                )
            if with_telephony:
                await centre._start_media(stack)
            centre._tasks.append(asyncio.create_task(centre._liveness_loop(), name="liveness"))
            centre._tasks.append(asyncio.create_task(centre._leader_loop(), name="leader-duties"))
            centre._tasks.append(asyncio.create_task(centre._webhook_loop(), name="webhooks"))
            centre._tasks.append(
                asyncio.create_task(calls.serve_commands(centre._stopping), name="node-commands")
            )
            return centre
        except BaseException:
            await stack.aclose()
            raise

    async def _start_media(self, stack: AsyncExitStack) -> None:
        """Transcription and telephony adapters: each optional, each failure logged and shown as degraded."""
        settings = self.settings
        # --- issue 15 item 4 (asr): recognition in worker processes, chosen by IZS_RECOGNITION=redis
        if settings.transcription_enabled and settings.recognition == "redis":
            from transcription.streams import RemoteRecognizer

            # The centre's Redis: the configured one, or the one this node started (then workers must run on
            # this machine; a region with worker machines configures IZS_REDIS_URL).
            redis_url = settings.redis_url
            if redis_url is None:
                assert self.embedded_redis is not None  # started by Centre.start when no URL is configured
                redis_url = self.embedded_redis.url
            remote = await asyncio.to_thread(
                RemoteRecognizer, redis_url, self.calls.submit, node=settings.node_id
            )
            self.transcriber = remote
            stack.callback(remote.close)
            self.calls.use_transcriber(remote)
        # --- end issue 15 item 4
        elif settings.transcription_enabled:
            from transcription.config import TranscriptionConfig
            from transcription.service import TranscriptionService

            engines = {k: v for k, v in settings.engine_by_language.items() if k != "default"}
            self.transcriber = TranscriptionService(
                TranscriptionConfig(
                    models_dir=settings.effective_model_dir,
                    cache_dir=settings.effective_model_dir / "cache",
                    engines=engines,
                    default_engine=settings.engine_by_language.get("default", "whisper"),
                    decode_slots=settings.transcription_workers,
                ),
                on_event=self.calls.submit,
            )
            stack.callback(self.transcriber.close)
            self.calls.use_transcriber(self.transcriber)
        if settings.sip_enabled:
            from telephony.sip import SipEndpoint, SipEndpointConfig
            from telephony.sip.prompt import generate_prompt_wav, read_wav_pcm

            self.sip = SipEndpoint(
                SipEndpointConfig(
                    host=settings.sip_host,
                    port=settings.sip_port,
                    public_host=settings.sip_public_host,
                    accepted_numbers=frozenset(settings.accepted_numbers),
                    rtp_port_min=settings.rtp_port_min,
                    rtp_port_max=settings.rtp_port_max,
                    taker_uris=tuple(t.sip_uri for t in settings.takers if t.sip_uri),
                ),
                sink=self.calls.submit,
            )
            try:
                prompt = await asyncio.to_thread(generate_prompt_wav, settings.var_dir)
                self.calls.use_prompt(await asyncio.to_thread(read_wav_pcm, prompt))
            except (OSError, AdapterError) as exc:
                log.error("waiting prompt unavailable (queued callers will hear silence): %s", exc)
            await asyncio.to_thread(self.sip.start)
            stack.callback(self.sip.stop)
            self.calls.attach("sip", self.sip)
        if settings.ami_enabled:
            from telephony.ami import AmiBridge, AmiConfig

            self.ami = AmiBridge(
                AmiConfig(
                    host=settings.ami_host,
                    port=settings.ami_port,
                    username=settings.ami_username,
                    secret=settings.ami_secret,
                    channel_driver=settings.ami_channel_driver,
                    fork_endpoint=settings.ami_fork_endpoint or "",
                ),
                sink=self.calls.submit,
            )
            pbx = PbxCallControl(
                self.ami,
                takers=await asyncio.to_thread(self.repo.list_takers),
                taker_states=self.live.taker_states,
            )
            self.desks.on_taker_state = _mirror_on_pbx(pbx)
            await self.ami.start()
            stack.push_async_callback(self.ami.stop)
            self.calls.attach("ami", pbx)

    async def stop(self) -> None:
        if self._stopping.is_set():
            return  # stopped already (a test or a drill stopped it before its owner did)
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            # redis-py can swallow a cancellation that lands inside a command; the loops also watch
            # _stopping, and a task that still does not end is left behind rather than hanging shutdown.
            _, pending = await asyncio.wait(self._tasks, timeout=5.0)
            for task in pending:
                log.error("background task %s did not stop in time", task.get_name())
        if self.is_leader and self.live is not None:
            with suppress(LiveStateError):
                await self.live.release_lease(LEADER_LEASE, self.settings.node_id)
        await self._stack.aclose()

    async def __aenter__(self) -> Centre:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------------------- leader duties

    async def _liveness_loop(self) -> None:
        """Node heartbeat and leader lease, on a task of their own: never behind a database query, a
        webhook or any other duty, so a slow duty can never make this node look dead or lose the lease."""
        node = self.settings.node_id
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self.calls.heartbeat(), LIVENESS_DEADLINE_S)
            except (LiveStateError, TimeoutError) as exc:
                log.error(
                    "node heartbeat failed: %s", str(exc) or f"no answer within {LIVENESS_DEADLINE_S:g} s"
                )
            except Exception:  # liveness must outlive any bug: logged, the next beat is in a second
                log.exception("node heartbeat failed")
            try:
                if self.is_leader:
                    self.is_leader = await asyncio.wait_for(
                        self.live.renew_lease(LEADER_LEASE, node, LEADER_TTL_MS), LIVENESS_DEADLINE_S
                    )
                    if not self.is_leader:
                        log.warning("node %s lost the leader lease", node)
                else:
                    self.is_leader = await asyncio.wait_for(
                        self.live.acquire_lease(LEADER_LEASE, node, LEADER_TTL_MS), LIVENESS_DEADLINE_S
                    )
                    if self.is_leader:
                        log.warning("node %s holds the leader lease", node)
            except (LiveStateError, TimeoutError) as exc:
                log.error(
                    "leader lease not renewed: %s", str(exc) or f"no answer within {LIVENESS_DEADLINE_S:g} s"
                )
            except Exception:  # liveness must outlive any bug: logged, retried in a second
                log.exception("leader lease not renewed")
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=LIVENESS_INTERVAL_S)

    async def _leader_loop(self) -> None:
        """Exactly one node runs the queue timers (overflow, unanswered offers); another takes over within
        a lease period when it dies. Every node finishes what an outage interrupted (upkeep)."""
        while not self._stopping.is_set():
            await self._duty("upkeep", self.calls.upkeep)
            await self._duty("node health", self._report_node_health)
            if self.is_leader:
                await self.leader_tick()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=1.0)

    async def leader_tick(self) -> None:
        await self._duty("reap lost calls", self.calls.reap_lost_calls)
        await self._duty("queue overflow", self.desks.overflow_due)
        await self._duty("dispatch", self.desks.dispatch)
        await self._duty("recording purge", self.purge_recordings_nightly)

    async def _duty(self, name: str, run: Callable[[], Awaitable[object]]) -> None:
        """One duty under its own deadline: an overrun is logged and the duty cancelled (it is retried next
        round, every duty is idempotent), so one stuck duty never stalls the others."""
        deadline = DUTY_DEADLINES_S.get(name, DEFAULT_DUTY_DEADLINE_S)
        started = asyncio.get_running_loop().time()
        try:
            await asyncio.wait_for(run(), deadline)
        except TimeoutError:
            log.error(
                "leader duty %r overran its deadline of %g s; cancelled, retried next round", name, deadline
            )
        except (StorageError, LiveStateError) as exc:
            log.error("leader duty %r skipped: %s", name, exc)
        except Exception:  # a bug in one duty must not end the loop that runs all of them: logged, retried
            log.exception("leader duty %r failed; retried next round", name)
        else:
            took = asyncio.get_running_loop().time() - started
            if took > deadline / 2:
                log.warning("leader duty %r took %.1f s of its %g s deadline", name, took, deadline)

    async def _webhook_loop(self) -> None:
        """Webhook deliveries on a task of their own (leader only): receivers are outside the centre and
        may hang; deliveries run concurrently, each attempt under its own deadline (deliver_due)."""
        while not self._stopping.is_set():
            if self.is_leader:
                await self._duty("webhooks", self._deliver_webhooks)
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=1.0)

    async def purge_recordings_nightly(self, now: datetime | None = None) -> int:
        """Leader duty, once a day after ``recording_purge_hour`` (UTC): delete the audio of recordings
        older than ``recording_retention_days``. A new leader may run it again the same day: harmless."""
        if self.recordings is None:
            return 0
        now = now or utc_now()
        if now.hour < self.settings.recording_purge_hour or self._last_recording_purge == now.date():
            return 0
        self._last_recording_purge = now.date()
        cutoff = now - timedelta(days=self.settings.recording_retention_days)
        total = 0
        while True:
            purged: int = await asyncio.to_thread(self.recordings.purge_recordings, cutoff)
            total += purged
            if purged < 500:
                break
        if total:
            log.warning("voice logging: %d recordings older than %s purged", total, cutoff.date())
        return total

    async def _report_node_health(self) -> None:
        """This node's transcription state, in Redis for every node's supervisor panel."""
        if self.transcriber is None:
            return
        try:
            await self.live.put_node_health(
                "transcription",
                self.settings.node_id,
                self.transcriber.recognition_status().to_json(),
                NODE_HEALTH_TTL_MS,
            )
        except LiveStateError as exc:
            log.debug("transcription health not shared: %s", exc)

    async def _deliver_webhooks(self) -> None:
        """Incident events from the stream become signed webhook deliveries, retried with backoff."""
        from intake.exchange.webhooks import deliver_due, pump_incident_stream

        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
            self._stack.push_async_callback(self._http.aclose)
        await pump_incident_stream(self.live, self.repo, consumer=self.settings.node_id)
        await deliver_due(
            self.repo, self._http, allow_private_targets=self.settings.webhook_allow_private_targets
        )
        now = utc_now()
        if self._last_purge is None or now - self._last_purge > timedelta(hours=1):
            self._last_purge = now
            await asyncio.to_thread(self.repo.purge_idempotent, now - timedelta(days=1))

    # ------------------------------------------------------------------------------------ health

    async def health(self) -> list[ComponentHealth]:
        out: list[ComponentHealth] = []
        try:
            ok = await asyncio.to_thread(self.repo.ping) if hasattr(self.repo, "ping") else True
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
        for name, status in self.calls.adapter_health.items():
            out.append(ComponentHealth(name, status.healthy, status.detail))
        out.extend(await self._transcription_health())
        if self.recorder is not None:
            healthy, detail = self.recorder.health()
            out.append(ComponentHealth("recording", healthy, detail))
        return out

    async def _transcription_health(self) -> list[ComponentHealth]:
        """One row per node that transcribes: this node's from the service itself, the others' from the
        reports they keep in Redis (gone when the node is gone)."""
        node = self.settings.node_id
        reports: dict[str, RecognitionStatus] = {}
        if self.live is not None:
            try:
                shared = await self.live.node_health("transcription")
                reports = {name: RecognitionStatus.from_json(data) for name, data in shared.items()}
            except LiveStateError as exc:
                log.debug("other nodes' transcription health unavailable: %s", exc)
        if self.transcriber is not None:
            reports[node] = self.transcriber.recognition_status()
        elif self.settings.transcription_enabled:
            reports[node] = RecognitionStatus.down("transcription did not start")
        out = []
        for name in sorted(reports, key=lambda n: (n != node, n)):
            report = reports[name]
            label = "transcription" if name == node else f"transcription@{name}"
            out.append(
                ComponentHealth(label, report.healthy, report.line(), {"node": name, **report.to_json()})
            )
        return out

    async def render_metrics(self) -> bytes:
        """Queue gauges are read from the shared state at scrape time, so every node reports the centre."""
        now = utc_now()
        try:
            for desk in DeskCode:
                entries = await self.live.queue(desk.value)
                self.metrics.queue_length.labels(desk=desk.value).set(len(entries))
                oldest = max(((now - e.arrival).total_seconds() for e in entries if e.arrival), default=0.0)
                self.metrics.queue_oldest_wait.labels(desk=desk.value).set(oldest)
        except LiveStateError as exc:
            log.error("queue metrics unavailable: %s", exc)
        for component in await self.health():
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

    async def announce_health(self) -> None:
        for component in await self.health():
            await self.bus.publish(
                LiveEvent(
                    "component.health",
                    {"component": component.name, "healthy": component.healthy, "detail": component.detail},
                )
            )

    async def set_taker_state(self, taker_id: str, state: TakerState, actor: str, reason: str = "") -> None:
        await self.desks.set_taker_state(taker_id, state, actor, reason)
