"""Starting a whole centre for the demo and the drills: settings with demo defaults, demo call takers and
users, the API, and call takers on autopilot that take offered calls like people at a console would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from intake.app import Centre
from intake.bus import LiveEvent
from intake.domain import TakerState
from intake.errors import IzsError
from intake.settings import Settings, TakerConfig

log = logging.getLogger(__name__)

DEMO_TAKERS = (
    TakerConfig(id="hzs1", name="Hasiči – Jana", desks=["HZS"], languages=["cs", "sk"]),
    TakerConfig(id="zzs1", name="Záchranka – Petr", desks=["ZZS"], languages=["cs", "sk", "en"]),
    TakerConfig(id="zzs2", name="Záchranka – Eva", desks=["ZZS"], languages=["cs", "de"]),
    TakerConfig(id="pcr1", name="Policie – Tomáš", desks=["PCR"], languages=["cs", "ru", "uk"]),
    TakerConfig(id="l112a", name="Linka 112 – Lucie", desks=["112"], languages=["cs", "en", "de"]),
    TakerConfig(id="l112b", name="Linka 112 – Olena", desks=["112"], languages=["cs", "uk", "ru", "vi"]),
)


@dataclass(frozen=True, slots=True)
class DemoUser:
    username: str
    password: str | None  # None: the user existed before, password unchanged
    role: str


def port_is_free(host: str, port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def demo_settings(settings: Settings) -> Settings:
    """The user's settings with demo defaults for whatever they did not set explicitly: everything on
    127.0.0.1, the SIP endpoint on a free port, the web port 8080 if free, short wrap-up, demo call takers."""
    chosen = settings.model_fields_set
    update: dict[str, Any] = {}
    if "sip_host" not in chosen:
        update["sip_host"] = "127.0.0.1"
    if "sip_port" not in chosen:
        update["sip_port"] = 0
    if "http_port" not in chosen and not port_is_free(settings.http_host, settings.http_port):
        update["http_port"] = 0
    if "wrap_up_s" not in chosen:
        update["wrap_up_s"] = 5.0
    if "node_id" not in chosen:
        update["node_id"] = "demo"
    if not settings.takers:
        update["takers"] = [t.model_copy() for t in DEMO_TAKERS]
    return settings.model_copy(update=update) if update else settings


# ------------------------------------------------------------------------------------------ the centre


async def start_centre(settings: Settings, with_telephony: bool = True) -> Centre:
    """The demo's centre: ``Centre.start`` exactly as ``izs serve`` runs it. Raises IzsError subclasses."""
    return await Centre.start(settings, with_telephony=with_telephony)


def sip_target(centre: Centre, dialled: str) -> str:
    """The SIP URI a caller dials to reach ``centre``'s endpoint with ``dialled``."""
    if centre.sip is None:
        raise IzsError("the SIP endpoint is not running (IZS_SIP_ENABLED=false?)")
    host, port = centre.sip.address
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    return f"sip:{dialled}@{host}:{port}"


# ------------------------------------------------------------------------------------ people and API


async def create_demo_users(centre: Centre, taker_ids: Iterable[str]) -> list[DemoUser]:
    """A console user per call taker (user name = taker id), a supervisor and an admin, with fresh
    passwords. Users that exist already keep their passwords."""
    from api.users import create_user

    wanted = [(t, "call_taker") for t in taker_ids] + [("supervisor", "supervisor"), ("admin", "admin")]
    out: list[DemoUser] = []
    for username, role in wanted:
        existing = await asyncio.to_thread(centre.repo.get_user, username)
        if existing is not None:
            out.append(DemoUser(username, None, str(getattr(existing, "role", role))))
            continue
        password = secrets.token_urlsafe(9)
        await create_user(centre.repo, username, password, role)
        out.append(DemoUser(username, password, role))
    return out


async def make_available(centre: Centre, taker_ids: Iterable[str], actor: str = "demo") -> None:
    for taker_id in taker_ids:
        await centre.set_taker_state(taker_id, TakerState.AVAILABLE, actor, "demo shift starts")


class TakerAutopilot:
    """Call takers who accept every call offered to them after a short think time, as a person at a
    console would (``POST /api/calls/{id}/accept``). Only the listed takers are driven. With ``talk_s``
    they also end each call that long after answering (the endpoint hangs up on the caller).

    Hand-over: while a console session of a call taker is connected (on any node: the presence is in
    Redis), the autopilot leaves that taker's calls to the person; ``on_handover(taker_id, manual)`` is
    told when a person takes over or leaves."""

    def __init__(
        self,
        centre: Centre,
        taker_ids: Iterable[str],
        think_s: tuple[float, float] = (1.0, 3.0),
        seed: int = 155,
        talk_s: float | None = None,
        on_handover: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._on_handover = on_handover
        self.manual: set[str] = set()  # takers a person is working right now
        self._centre = centre
        self._takers = set(taker_ids)
        self._think = think_s
        self._talk_s = talk_s
        self._random = random.Random(seed)
        self._task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._seen: set[tuple[str, str]] = set()
        self.accepted: list[tuple[str, str]] = []  # (call id, taker id) in order
        self.left_to_person: list[tuple[str, str]] = []  # offers seen while a person was at the console
        self.failed: list[tuple[str, str, str]] = []

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="taker-autopilot")
        await asyncio.sleep(0)

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._pending) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        resync = asyncio.create_task(self._resync(), name="taker-autopilot-resync")
        try:
            async for event in self._centre.bus.subscribe():
                if event.type == "call.offered_to_taker" and event.call_id is not None:
                    self._take(event.call_id, event.taker_id)
        finally:
            resync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await resync

    async def _resync(self) -> None:
        """Like a console after a reconnect: look at the shared taker states for offers the live events
        did not bring (events published while the bus was re-subscribing never arrive)."""
        while True:
            await asyncio.sleep(1.0)
            await self._watch_consoles()
            try:
                states = await self._centre.live.live_takers()
            except IzsError as exc:
                log.info("autopilot resync skipped: %s", exc.message)
                continue
            for taker_id in self._takers:
                live = states.get(taker_id)
                if live is not None and live.state is TakerState.BUSY and live.offered and live.call_id:
                    self._take(live.call_id, taker_id)

    async def _watch_consoles(self) -> None:
        for taker_id in sorted(self._takers):
            try:
                manual = await self._centre.live.consoles_open(taker_id) > 0
            except IzsError as exc:
                log.info("autopilot cannot see consoles: %s", exc.message)
                return
            if manual != (taker_id in self.manual):
                (self.manual.add if manual else self.manual.discard)(taker_id)
                if self._on_handover is not None:
                    self._on_handover(taker_id, manual)

    async def _person_at_console(self, taker_id: str) -> bool:
        try:
            return bool(await self._centre.live.consoles_open(taker_id))
        except IzsError:
            return taker_id in self.manual

    def _take(self, call_id: str, taker_id: str | None) -> None:
        if taker_id not in self._takers or (call_id, taker_id) in self._seen:
            return
        if taker_id in self.manual:
            if (call_id, taker_id) not in self.left_to_person:
                self.left_to_person.append((call_id, taker_id))
            return
        self._seen.add((call_id, taker_id))
        task = asyncio.create_task(
            self._accept(LiveEvent("call.offered_to_taker", {}, call_id=call_id, taker_id=taker_id))
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _accept(self, event: LiveEvent) -> None:
        assert event.call_id is not None and event.taker_id is not None
        await asyncio.sleep(self._random.uniform(*self._think))
        if await self._person_at_console(event.taker_id):
            # A person opened this taker's console meanwhile: the offer is theirs to take.
            self._seen.discard((event.call_id, event.taker_id))
            self.left_to_person.append((event.call_id, event.taker_id))
            return
        try:
            await self._centre.calls.accept(event.call_id, event.taker_id)
            self.accepted.append((event.call_id, event.taker_id))
        except IzsError as exc:
            # The caller hung up meanwhile: the call is abandoned and listed for call-back.
            self.failed.append((event.call_id, event.taker_id, exc.message))
            log.info("autopilot %s could not take call %s: %s", event.taker_id, event.call_id, exc.message)
            return
        if self._talk_s is not None:
            await asyncio.sleep(self._talk_s)
            await self._hang_up(event.call_id)

    async def _hang_up(self, call_id: str) -> None:
        call = await self._centre.calls.get(call_id)
        control = self._centre.sip if call.source == "sip" else self._centre.ami
        if control is None or not call.is_live:
            return
        try:
            await control.hangup(call.call_ref)
        except (IzsError, LookupError, RuntimeError, OSError) as exc:
            log.info("autopilot could not hang up call %s: %s", call_id, exc)
