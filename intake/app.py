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
from typing import TYPE_CHECKING

from intake.admin import AdminService
from intake.bus import EventBus
from intake.calls import CallService
from intake.console import ConsoleService
from intake.desks import DeskService
from intake.domain import CallTaker
from intake.errors import LiveStateError, StorageError
from intake.health import CentreHealth, ComponentHealth
from intake.incidents import DuplicateFinder, IncidentService
from intake.journal import CallJournal
from intake.metrics import Metrics
from intake.reports import ReportService
from intake.settings import Settings
from intake.taking import CallTakingService
from routing.acd import TakerState
from routing.vocabulary import DeskCode
from telephony.events import utc_now

if TYPE_CHECKING:
    import httpx

    from intake.live import LiveState
    from intake.location import PlaceGazetteer
    from intake.logins import LoginThrottle
    from intake.recording import CallRecorder
    from intake.redis_server import EmbeddedRedis
    from intake.storage.database import Database
    from intake.storage.recordings import RecordingRepository
    from intake.storage.repository import Repository
    from routing.triage import Triage
    from telephony.ami import AmiBridge
    from telephony.sip import SipEndpoint
    from transcription.service import TranscriptionService
    from transcription.streams import RemoteRecognizer

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


async def rebuild_live_state_if_lost(live: LiveState, repo: Repository) -> int:
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


@dataclass
class Centre:
    settings: Settings
    repo: Repository
    live: LiveState
    bus: EventBus
    desks: DeskService
    incidents: IncidentService
    calls: CallService
    triage: Triage
    # The services the REST API calls, built from the collaborators above (__post_init__); api/ only hands
    # them out and never builds one.
    taking: CallTakingService = field(init=False)
    reports: ReportService = field(init=False)
    admin: AdminService = field(init=False)
    console: ConsoleService = field(init=False)
    transcriber: TranscriptionService | RemoteRecognizer | None = None
    sip: SipEndpoint | None = None
    ami: AmiBridge | None = None
    embedded_redis: EmbeddedRedis | None = None
    database: Database | None = None
    metrics: Metrics = field(default_factory=Metrics)
    places: PlaceGazetteer | None = None  # coordinates of the region's places (map, nearest place)
    logins: LoginThrottle | None = None  # failed logins per user name and address, in Redis
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    is_leader: bool = False
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _http: httpx.AsyncClient | None = None
    _last_purge: datetime | None = None
    recordings: RecordingRepository | None = None  # voice logging on the shared database
    recorder: CallRecorder | None = None  # this node's voice logging
    _last_recording_purge: date | None = None

    def __post_init__(self) -> None:
        self.taking = CallTakingService(self.repo, self.calls)
        self.reports = ReportService(self.repo, self.bus)
        # Asked at each registration: the centre's settings may be replaced while it runs.
        self.admin = AdminService(self.repo, self.bus, self._allow_private_webhook_targets)
        self.console = ConsoleService(
            self.live, self.repo, self.calls, self.incidents, self.recordings, self.recorder
        )

    def _allow_private_webhook_targets(self) -> bool:
        return bool(self.settings.webhook_allow_private_targets)

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
        """Transcription and telephony adapters (:func:`intake.media.start_media`)."""
        from intake.media import start_media

        await start_media(self, stack)

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
        await self._health().share_transcription(NODE_HEALTH_TTL_MS)

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
        return await self._health().components()

    async def render_metrics(self) -> bytes:
        return await self._health().render_metrics()

    async def announce_health(self) -> None:
        await self._health().announce()

    def _health(self) -> CentreHealth:
        return CentreHealth(
            node=self.settings.node_id,
            transcription_enabled=self.settings.transcription_enabled,
            repo=self.repo,
            live=self.live,
            bus=self.bus,
            adapters=self.calls.adapter_health,
            metrics=self.metrics,
            transcriber=self.transcriber,
            recorder=self.recorder,
        )

    async def set_taker_state(self, taker_id: str, state: TakerState, actor: str, reason: str = "") -> None:
        await self.desks.set_taker_state(taker_id, state, actor, reason)
