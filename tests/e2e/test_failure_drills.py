"""Failure drills: a peer of the centre fails mid-call and comes back. Calls go on or are recovered, no call
or incident record is lost, and the failure shows in health / live events and in the logs.

Each drill starts its own centre (SQLite, Redis, SIP endpoint) with real peers: redis-server, baresip
callers, Whisper transcription, the recorded-Asterisk AMI replay peer, and ``izs serve`` as a process.
Where the system does not survive a drill yet, the test says exactly what fails (``xfail(strict=True)``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from e2e_support import (
    REPO,
    drill_settings,
    feed_transcript,
    running_centre,
    set_available,
    takers,
    wait_for_ref,
    wait_offered,
)
from support.servers import PostgresCluster

from intake.domain import Call, CallState, Incident
from intake.errors import LiveStateError
from intake.redis_server import EmbeddedRedis, free_port
from intake.storage.database import Database
from intake.storage.repository import Repository
from izs.demo.callers import CallerFleet, PlannedCall
from izs.demo.flow import FlowTracker
from izs.demo.speech import SpeechSynthesizer
from izs.demo.system import TakerAutopilot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

ARREST = "Dobrý den, manžel upadl v kuchyni, nereaguje a nedýchá. Jsme v Chodově, Husova 5."


@pytest.fixture
def waiting_voice(tmp_path: Path) -> Path:
    """A caller who says one sentence and then waits on the line for up to two minutes."""
    return (
        SpeechSynthesizer(tmp_path / "voices")
        .synthesize("Dobrý den, potřebuji záchranku.", "cs", voice="espeak", tail_silence_s=120.0)
        .path
    )


def _plan(label: str, wav: Path, port: int, at_s: float = 0.0, **kw: object) -> PlannedCall:
    return PlannedCall(
        label, wav, f"sip:155@127.0.0.1:{port}", f"+42060310{abs(hash(label)) % 10000:04d}", at_s, **kw
    )  # type: ignore[arg-type]


async def _health(centre: object) -> dict[str, tuple[bool, str]]:
    return {c.name: (c.healthy, c.detail) for c in await centre.health()}  # type: ignore[attr-defined]


T = TypeVar("T")


async def _settled(read: Callable[[], Awaitable[T]], done: Callable[[T], bool], timeout_s: float) -> T:
    """Read again until ``done`` holds or the deadline passes, and return the last reading (the assertions
    that follow show what it was): the drills wait for conditions, never for a fixed time."""
    deadline = time.monotonic() + timeout_s
    value = await read()
    while not done(value) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        value = await read()
    return value


async def _calls_by_label(centre: Any, refs: dict[str, str]) -> dict[str, Call | None]:
    return {label: await asyncio.to_thread(centre.repo.find_call_by_ref, ref) for label, ref in refs.items()}


def _triaged(tracker: FlowTracker, call_ids: list[str]) -> Callable[[], bool]:
    """Triage has put each call on the desk it needs (its queue moved first) and opened its incident."""

    def check() -> bool:
        flows = [tracker.flows.get(call_id) for call_id in call_ids]
        return all(f is not None and f.triaged_mono is not None and f.incident_id for f in flows)

    return check


async def _redis_answers(centre: Any) -> bool:
    try:
        return bool(await centre.live.ping())
    except LiveStateError:
        return False


def _final(call: Call | None) -> bool:
    return call is not None and call.state in (CallState.ENDED, CallState.ABANDONED)


# ------------------------------------------------------------------------------------------- Redis


@dataclass
class RedisDrill:
    down: dict[str, tuple[bool, str]]
    up: dict[str, tuple[bool, str]]
    calls: dict[str, Call | None]
    errors_logged: list[str]


async def _restart_redis_mid_call(
    tmp_path: Path, voice: Path, caplog: pytest.LogCaptureFixture
) -> RedisDrill:
    """Two callers queue, Redis is shut down (saving), a third call arrives, Redis comes back on the same
    files; then the one call taker takes whatever reaches her, each call for 0.3 s."""
    redis = EmbeddedRedis(tmp_path / "redis", port=free_port()).start()
    try:
        settings = drill_settings(
            tmp_path / "var", redis_url=redis.url, takers=takers(("zzs1", ["ZZS"], ["cs"]))
        )
        async with running_centre(settings) as centre:
            tracker = FlowTracker(centre.bus)
            await tracker.start()
            assert centre.sip is not None
            port = centre.sip.address[1]
            refs: dict[str, str] = {}
            call_ids: dict[str, str] = {}
            async with CallerFleet() as fleet:
                tasks = fleet.start([_plan("before-1", voice, port), _plan("before-2", voice, port, 0.3)])
                for label in ("before-1", "before-2"):
                    refs[label] = await wait_for_ref(fleet.outcome(label))
                    call_ids[label] = await wait_offered(tracker, refs[label])
                    feed_transcript(centre, refs[label], ARREST)
                await tracker.wait_for(_triaged(tracker, list(call_ids.values())), 20)

                await asyncio.to_thread(redis.stop)  # SHUTDOWN SAVE: the queue is on disk
                tasks += fleet.start([_plan("during", voice, port)])
                refs["during"] = await wait_for_ref(fleet.outcome("during"))
                call_ids["during"] = await wait_offered(tracker, refs["during"])
                feed_transcript(centre, refs["during"], ARREST)
                await tracker.wait_for(_triaged(tracker, [call_ids["during"]]), 20)
                down = await _settled(lambda: _health(centre), lambda h: not h["redis"][0], 20)
                await asyncio.to_thread(redis.start)  # same port, same files
                await _settled(lambda: _redis_answers(centre), bool, 20)
                # The call taker comes back; her state change is the first traffic after the restart (the
                # bus reports itself recovered only when a publish or a relayed event gets through).
                autopilot = TakerAutopilot(centre, ["zzs1"], think_s=(0.1, 0.1), talk_s=0.3)
                await autopilot.start()
                await set_available(centre, ["zzs1"])
                up = await _health(centre)
                deadline = time.monotonic() + 20
                while not up["redis"][0] and time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                    up = await _health(centre)
                # Each call the taker accepted is over once her talk time is up (she hangs up).
                await _settled(
                    lambda: _calls_by_label(centre, refs),
                    lambda calls: all(_final(c) for c in calls.values()),
                    40,
                )
                await autopilot.stop()
                for label in refs:
                    await fleet.hangup(label)
                await asyncio.wait(tasks, timeout=15)
            await tracker.stop()
            calls = await _settled(
                lambda: _calls_by_label(centre, refs),
                lambda calls: all(_final(c) for c in calls.values()),
                15,
            )
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        return RedisDrill(down, up, calls, errors)
    finally:
        redis.stop()


async def test_redis_restarted_mid_call_queued_calls_survive_reach_a_taker_and_the_outage_shows(
    tmp_path: Path, waiting_voice: Path, caplog: pytest.LogCaptureFixture
) -> None:
    drill = await _restart_redis_mid_call(tmp_path, waiting_voice, caplog)
    assert not drill.down["redis"][0] and "Redis" in drill.down["redis"][1], drill.down
    assert drill.up["redis"][0], drill.up
    # The outage is in the logs (which lines depends on what the calls were doing when Redis went away).
    assert any("Redis" in m for m in drill.errors_logged), drill.errors_logged
    assert all(call is not None for call in drill.calls.values()), "a call record is missing"
    for label in ("before-1", "before-2"):
        call = drill.calls[label]
        assert call is not None and call.state is CallState.ENDED and call.taker_id == "zzs1", (label, call)
    during = drill.calls["during"]
    assert during is not None and during.incident_id is not None


async def test_redis_restarted_mid_call_a_call_offered_during_the_outage_reaches_a_taker(
    tmp_path: Path, waiting_voice: Path, caplog: pytest.LogCaptureFixture
) -> None:
    drill = await _restart_redis_mid_call(tmp_path, waiting_voice, caplog)
    during = drill.calls["during"]
    assert during is not None and during.state is CallState.ENDED and during.taker_id == "zzs1", during


# ---------------------------------------------------------------------------------------- database


class RestartablePostgres(PostgresCluster):
    """A private PostgreSQL cluster (Debian binaries, unix socket in a temp dir) that can be stopped and
    started again on the same data, to take the database away from a running centre."""

    def halt(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)  # fast shutdown: clients are disconnected at once
        self.process.wait(timeout=30)

    def resume(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [
                    str(self.bin / "postgres"),
                    "-D",
                    str(self.data),
                    "-k",
                    str(self.socket_dir),
                    "-p",
                    str(self.PORT),
                    "-c",
                    "listen_addresses=",
                    "-c",
                    "fsync=off",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=self._become_postgres,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(psycopg.OperationalError),
                psycopg.connect(self.admin_dsn(), connect_timeout=2),
            ):
                return
            time.sleep(0.1)
        raise AssertionError(f"PostgreSQL did not come back: {self.log.read_text(errors='replace')[-2000:]}")


@dataclass
class DatabaseDrill:
    during: dict[str, tuple[bool, str]]
    after: dict[str, tuple[bool, str]]
    calls: dict[str, Call | None]
    incidents: dict[str, Incident | None]
    errors_logged: list[str]


async def _database_away_for_10_s(
    tmp_path: Path, voice: Path, caplog: pytest.LogCaptureFixture
) -> DatabaseDrill:
    """Call A waits in the queue; PostgreSQL goes away for 10 s; meanwhile call B arrives, is triaged and its
    caller gives up; the database returns; the call taker then takes call A."""
    server = RestartablePostgres()
    await asyncio.to_thread(server.start)
    try:
        url = await asyncio.to_thread(server.create_database, "izs_drill")
        settings = drill_settings(
            tmp_path / "var", database_url=url, takers=takers(("zzs1", ["ZZS"], ["cs"]))
        )
        async with running_centre(settings) as centre:
            tracker = FlowTracker(centre.bus)
            await tracker.start()
            assert centre.sip is not None
            port = centre.sip.address[1]
            refs: dict[str, str] = {}
            async with CallerFleet() as fleet:
                tasks = fleet.start([_plan("A", voice, port)])
                refs["A"] = await wait_for_ref(fleet.outcome("A"))
                a_id = await wait_offered(tracker, refs["A"])
                feed_transcript(centre, refs["A"], ARREST)
                await tracker.wait_for(_triaged(tracker, [a_id]), 20)

                await asyncio.to_thread(server.halt)
                away_since = time.monotonic()
                tasks += fleet.start([_plan("B", voice, port, hangup_after_s=5.0)])
                refs["B"] = await wait_for_ref(fleet.outcome("B"))
                b_id = await wait_offered(tracker, refs["B"])
                feed_transcript(
                    centre, refs["B"], "Dobrý den, u nás v Chebu na Svobody 3 upadl soused a nedýchá."
                )
                await tracker.wait_for(_triaged(tracker, [b_id]), 20)
                during = await _settled(lambda: _health(centre), lambda h: not h["database"][0], 20)
                # The drill's scenario, not a synchronisation: the database stays away 10 s in all.
                await asyncio.sleep(max(0.0, 10.0 - (time.monotonic() - away_since)))
                await asyncio.to_thread(server.resume)

                # The leader tick drains the journal: call B's record reaches the database.
                await _settled(lambda: asyncio.to_thread(centre.repo.find_call_by_ref, refs["B"]), _final, 30)
                autopilot = TakerAutopilot(centre, ["zzs1"], think_s=(0.1, 0.1), talk_s=0.3)
                await autopilot.start()
                await set_available(centre, ["zzs1"])
                await _settled(lambda: asyncio.to_thread(centre.repo.find_call_by_ref, refs["A"]), _final, 30)
                await autopilot.stop()
                await fleet.hangup("A")
                await asyncio.wait(tasks, timeout=15)
            calls = await _settled(
                lambda: _calls_by_label(centre, refs),
                lambda calls: all(_final(c) and c is not None and c.incident_id for c in calls.values()),
                20,
            )
            after = await _settled(lambda: _health(centre), lambda h: h["database"][0], 20)
            await tracker.stop()
            incidents: dict[str, Incident | None] = {}
            for label, call in calls.items():
                incidents[label] = (
                    await asyncio.to_thread(centre.repo.get_incident, call.incident_id)
                    if call is not None and call.incident_id
                    else None
                )
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        return DatabaseDrill(during, after, calls, incidents, errors)
    finally:
        await asyncio.to_thread(server.stop)


async def test_database_away_for_10_s_every_call_is_recorded_and_the_outage_shows(
    tmp_path: Path, waiting_voice: Path, caplog: pytest.LogCaptureFixture
) -> None:
    drill = await _database_away_for_10_s(tmp_path, waiting_voice, caplog)
    assert not drill.during["database"][0], drill.during
    assert drill.after["database"][0], drill.after
    assert drill.errors_logged, "the outage left no error in the log"
    a, b = drill.calls["A"], drill.calls["B"]
    assert a is not None and a.state is CallState.ENDED and a.taker_id == "zzs1", a
    assert b is not None, "the call offered while the database was away is not recorded"
    assert b.state is CallState.ABANDONED, b.state
    assert b.transcript, "what the caller said during the outage is not recorded"
    assert drill.incidents["A"] is not None


async def test_database_away_for_10_s_the_incident_triage_opened_meanwhile_is_recorded(
    tmp_path: Path, waiting_voice: Path, caplog: pytest.LogCaptureFixture
) -> None:
    drill = await _database_away_for_10_s(tmp_path, waiting_voice, caplog)
    incident = drill.incidents["B"]
    assert incident is not None, "the call triaged during the outage has no incident"
    assert drill.calls["B"] is not None and drill.calls["B"].id in incident.call_ids


# ------------------------------------------------------------------------------------ transcription


async def _processed_s(transcriber: Any, call_ref: str) -> float:
    return float(transcriber.processed_s(call_ref, "caller"))


def _kill_thread(thread: threading.Thread) -> None:
    """Kill a Python thread the way a crash would: an exception it does not catch, raised inside it."""
    assert thread.ident is not None
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(SystemExit))


@pytest.mark.skipif(sys.platform != "linux", reason="thread injection tested on CPython/Linux")
# The worker's death is the injected failure; pytest would otherwise turn it into an error of its own.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_transcription_worker_killed_mid_call_is_restarted_and_the_call_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    speech = SpeechSynthesizer(tmp_path / "voices").synthesize(
        "Dobrý den, hoří nám kůlna za domem v Ostrově, Hlavní ulice dvanáct. Oheň se šíří na plot. "
        "Nikdo není zraněný, ale kouří se i ze střechy sousedního domu. Prosím pošlete hasiče. "
        "Soused už vytáhl zahradní hadici, ale nestačí to. Máme tam plynovou láhev na grilování. "
        "Děti jsou v domě, hned je vyvedu ven. Počkám u branky a ukážu hasičům cestu.",
        "cs",
        tail_silence_s=3.0,
    )
    settings = drill_settings(tmp_path / "var", transcription_enabled=True, transcription_workers=1)
    async with running_centre(settings) as centre:
        tracker = FlowTracker(centre.bus)
        await tracker.start()
        assert centre.sip is not None
        async with CallerFleet() as fleet:
            [task] = fleet.start([_plan("speaks", speech.path, centre.sip.address[1])])
            ref = await wait_for_ref(fleet.outcome("speaks"))
            call_id = await wait_offered(tracker, ref)
            name = f"asr-{ref}-caller"
            deadline = time.monotonic() + 20
            worker = None
            while worker is None and time.monotonic() < deadline:
                worker = next((t for t in threading.enumerate() if t.name == name), None)
                await asyncio.sleep(0.1)
            assert worker is not None, "no transcription worker for the call"
            # Mid-speech: the worker is consuming the caller's audio (the caller speaks on for ~20 s).
            transcriber = centre.transcriber
            assert transcriber is not None
            await _settled(lambda: _processed_s(transcriber, ref), lambda s: s >= 1.0, 30)
            _kill_thread(worker)
            killed_at = time.monotonic()
            outcome = await task
        await tracker.wait_for(lambda: tracker.flows[call_id].end_kind is not None, 60)

        # The leg is flushed when the call ends: wait until what Whisper heard after the restart is in.
        def heard_since_restart() -> bool:
            return any(
                e.type in ("transcript.partial", "transcript.final") and m > killed_at + 1
                for m, e in tracker.events
            )

        await tracker.wait_for(heard_since_restart, 60)
        call = await _settled(
            lambda: asyncio.to_thread(centre.repo.find_call_by_ref, ref),
            lambda c: _final(c) and c is not None and bool(c.transcript),
            30,
        )
        await tracker.stop()

    assert outcome.answered and outcome.reason == "caller finished speaking and hung up"
    failures = [
        e for _, e in tracker.events if e.type == "call.updated" and e.data.get("transcription_error")
    ]
    assert failures and "restarted" in failures[0].data["transcription_error"]
    assert any("died; restarting" in r.getMessage() for r in caplog.records)
    heard_after = [
        m
        for m, e in tracker.events
        if e.type in ("transcript.partial", "transcript.final") and m > killed_at + 1
    ]
    assert heard_after, "nothing was transcribed after the worker was restarted"
    assert call is not None and call.state is CallState.ABANDONED and call.transcript


# ------------------------------------------------------------------------------------------------ AMI


@pytest.fixture
def ami_replay() -> object:
    sys.path.insert(0, str(REPO / "tests" / "telephony" / "ami"))
    try:
        import ami_replay_peer
        import ami_sessions
    except ImportError as exc:  # pragma: no cover - the AMI helper's replay peer moved
        pytest.skip(f"AMI replay peer not available: {exc}")
    finally:
        sys.path.pop(0)
    return ami_replay_peer, ami_sessions


async def test_ami_peer_drops_and_returns_the_call_that_arrived_meanwhile_is_recovered_and_recorded(
    tmp_path: Path, ami_replay: tuple[object, object], caplog: pytest.LogCaptureFixture
) -> None:
    peer_module, sessions = ami_replay
    session = sessions.load_session("answered-155")  # type: ignore[attr-defined]
    first_call = next(i for i, w in enumerate(session) if "Event: Newchannel" in w.text)
    joined = next(i for i, w in enumerate(session) if "Event: MusicOnHoldStart" in w.text)
    before_drop = session[:first_call]
    while_away = session[first_call : joined + 1]
    after = session[:5] + session[joined + 1 :]
    peer = peer_module.ReplayPeer([before_drop, after], offline=[[], while_away], time_scale=0.05)  # type: ignore[attr-defined]
    async with peer:
        settings = drill_settings(
            tmp_path / "var",
            sip_enabled=False,
            ami_enabled=True,
            ami_host="127.0.0.1",
            ami_port=peer.port,
            ami_username="izs",
            ami_secret="izs-secret",
        )
        async with running_centre(settings) as centre:
            tracker = FlowTracker(centre.bus)
            await tracker.start()
            assert centre.ami is not None

            async def act_as_intake() -> None:
                while True:
                    recorded = await peer.expecting.get()
                    value = recorded.value
                    await centre.ami.wait_connected(10)
                    if value("Action") == "QueueAdd":
                        await centre.ami.queue_add(value("Queue"), value("Interface"), value("MemberName"))
                    elif value("Action") == "QueueRemove":
                        await centre.ami.queue_remove(value("Queue"), value("Interface"))
                    elif value("Action") == "Logoff":
                        await centre.ami.stop()
                        return

            await asyncio.wait_for(act_as_intake(), 30)
            await tracker.wait_for(lambda: any(f.end_kind for f in tracker.flows.values()), 10)
            call = await _settled(
                lambda: asyncio.to_thread(centre.repo.find_call_by_ref, "1795778919.48"), _final, 15
            )
            await tracker.stop()

    health_changes = [
        (e.data["healthy"], e.data.get("detail", ""))
        for _, e in tracker.events
        if e.type == "component.health" and e.data.get("component") == "ami"
    ]
    assert (False, health_changes[1][1]) == health_changes[1] and "connection lost" in health_changes[1][1]
    assert health_changes[0][0] and health_changes[2][0], health_changes
    assert any("connection lost" in r.getMessage() for r in caplog.records)
    assert call is not None, "the call that arrived while the AMI link was down is not recorded"
    assert call.state is CallState.ENDED and call.dialled == "155" and call.answered_at is not None


# ------------------------------------------------------------------------------------ process restart


def _serve(var_dir: Path, config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IZS_")}
    env.update({"IZS_CONFIG": str(config), "PYTHONUNBUFFERED": "1"})
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "izs.cli", "serve"],
            cwd=REPO,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_http(port: int, timeout_s: float, process: subprocess.Popen[bytes], log_path: Path) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"izs serve exited with {process.returncode}:\n{log_path.read_text()[-3000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/api/healthz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"izs serve did not answer within {timeout_s} s:\n{log_path.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@dataclass
class RestartDrill:
    queued: list[str]
    queued_after: list[str]
    calls: list[dict[str, Any]]
    opened: list[str]
    incidents: list[dict[str, Any]]


async def _kill_and_restart_with_queued_calls(tmp_path: Path, waiting_voice: Path) -> RestartDrill:
    """``izs serve`` as a process; three callers queue (nobody is free); a supervisor opens an incident for
    each; the process is killed with SIGKILL and started again on the same var dir."""
    var_dir = tmp_path / "var"
    http_port, sip_port = free_port(), _free_udp_port()
    config = tmp_path / "izs.toml"
    config.write_text(
        f'var_dir = "{var_dir}"\nhttp_port = {http_port}\nsip_host = "127.0.0.1"\nsip_port = {sip_port}\n'
        'transcription_enabled = false\nnode_id = "node-a"\nlog_json = true\n'
        'bootstrap_admin_password = "drill-admin-pw"\n'
        '[[takers]]\nid = "zzs1"\nname = "ZZS 1"\ndesks = ["ZZS"]\n',
        encoding="utf-8",
    )
    log_path = tmp_path / "serve.log"
    first = _serve(var_dir, config, log_path)
    try:
        await asyncio.to_thread(_wait_http, http_port, 60, first, log_path)
        async with CallerFleet() as fleet:
            tasks = fleet.start([_plan(f"q{i}", waiting_voice, sip_port, at_s=i * 0.3) for i in range(3)])
            refs = [await wait_for_ref(fleet.outcome(f"q{i}")) for i in range(3)]
            import httpx

            # Logins hash at a lower CPU priority than calls (issue 16): on a loaded machine a login may
            # take seconds, more than httpx's default 5 s.
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=30.0) as client:
                token = (
                    await client.post(
                        "/api/auth/token", json={"username": "admin", "password": "drill-admin-pw"}
                    )
                ).json()["access_token"]
                headers = {"Authorization": f"Bearer {token}"}
                deadline = time.monotonic() + 15
                queued: list[str] = []
                while time.monotonic() < deadline and len(queued) < 3:
                    queues = (await client.get("/api/queues", headers=headers)).json()
                    queued = [e["call_id"] for entries in _desks(queues).values() for e in entries]
                    await asyncio.sleep(0.3)
                assert len(queued) == 3, queued
                # A supervisor opens an incident for each waiting call (what triage does when it hears them).
                created = await client.post(
                    "/api/admin/users",
                    headers=headers,
                    json={"username": "sup", "password": "drill-sup-pw", "role": "supervisor"},
                )
                assert created.status_code == 201, created.text
                sup = (
                    await client.post("/api/auth/token", json={"username": "sup", "password": "drill-sup-pw"})
                ).json()["access_token"]
                opened = []
                for call_id in queued:
                    response = await client.post(
                        "/api/incidents",
                        headers={"Authorization": f"Bearer {sup}"},
                        json={
                            "incident_type": "MED_CARDIAC_ARREST",
                            "priority": 1,
                            "agencies": ["ZZS"],
                            "call_id": call_id,
                        },
                    )
                    assert response.status_code in (200, 201), response.text
                    opened.append(response.json()["id"])
            os.killpg(first.pid, signal.SIGKILL)  # kill -9: no shutdown code runs
            first.wait(10)
            for task in tasks:
                task.cancel()
        second = _serve(var_dir, config, log_path)
        try:
            await asyncio.to_thread(_wait_http, http_port, 60, second, log_path)
            # Logins hash at a lower CPU priority than calls (issue 16): on a loaded machine a login may
            # take seconds, more than httpx's default 5 s.
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=30.0) as client:
                token = (
                    await client.post(
                        "/api/auth/token", json={"username": "admin", "password": "drill-admin-pw"}
                    )
                ).json()["access_token"]
                headers = {"Authorization": f"Bearer {token}"}
                queues = (await client.get("/api/queues", headers=headers)).json()
                after = [e["call_id"] for entries in queues["desks"].values() for e in entries]
                calls = [
                    (await client.get(f"/api/calls/{call_id}", headers=headers)).json() for call_id in queued
                ]
                incidents = [
                    (await client.get(f"/api/incidents/{incident_id}", headers=headers)).json()
                    for incident_id in opened
                ]
        finally:
            _stop(second)
    finally:
        _stop(first)
    database = Database(f"sqlite:///{var_dir / 'izs.db'}")
    try:
        recorded = {ref: Repository(database).find_call_by_ref(ref) for ref in refs}
    finally:
        database.dispose()
    assert all(call is not None for call in recorded.values()), recorded
    assert {c["id"] for c in calls} == {call.id for call in recorded.values() if call is not None}
    return RestartDrill(queued, after, calls, opened, incidents)


async def test_app_killed_with_queued_calls_restarts_with_every_call_and_incident_intact(
    tmp_path: Path, waiting_voice: Path
) -> None:
    drill = await _kill_and_restart_with_queued_calls(tmp_path, waiting_voice)
    assert [i.get("id") for i in drill.incidents] == drill.opened, drill.incidents
    assert sorted(c for i in drill.incidents for c in i.get("call_ids", [])) == sorted(drill.queued)
    # None is silently gone: each call is still queued or recorded as abandoned for call-back.
    for call in drill.calls:
        assert call["state"] in ("queued", "abandoned"), call
        assert call["state"] == "abandoned" or call["id"] in drill.queued_after


async def test_app_killed_calls_whose_media_died_are_listed_for_call_back_after_restart(
    tmp_path: Path, waiting_voice: Path
) -> None:
    drill = await _kill_and_restart_with_queued_calls(tmp_path, waiting_voice)
    assert [c["state"] for c in drill.calls] == ["abandoned"] * 3, [c["state"] for c in drill.calls]
    assert drill.queued_after == []


def _desks(queues: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    if "desks" not in queues:
        raise AssertionError(f"GET /api/queues answered {queues}")
    desks: dict[str, list[dict[str, Any]]] = queues["desks"]
    return desks


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
