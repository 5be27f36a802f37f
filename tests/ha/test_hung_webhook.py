"""A webhook receiver that hangs must not make the cluster declare a live call lost (issue 13).

Before: webhook deliveries ran inline in the leader loop, serially, 10 s each, up to 50 a round, while the
node heartbeat and the leader lease live 5 s - with one receiver that accepts TCP and never answers, the
heartbeat or lease key was missing most of the time, and the other node reaped a call whose caller was still
sending RTP. Here: two ``izs serve`` nodes on one PostgreSQL and one Redis, twenty webhooks pointing at a
listener that accepts and never answers, incidents created so there is plenty to deliver, and a live call
(baresip sending RTP to node A). The test samples both heartbeats and the leader lease in Redis four
times a second for 25 s: never missing; the call is never reaped and stays queued until the caller hangs up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ha_support import Console, IntakeNode, needs_two_loopback_nodes
from support.servers import PostgresServer

from intake.domain import Call, CallState
from intake.live import LiveState, connect_redis
from intake.redis_server import EmbeddedRedis, free_port
from intake.storage.database import Database
from intake.storage.repository import Repository
from izs.demo.callers import CallerFleet, PlannedCall
from izs.demo.speech import SpeechSynthesizer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.timeout(300),
    needs_two_loopback_nodes,
]

TAKERS = [{"id": "zzs1", "name": "ZZS 1", "desks": ["ZZS"], "languages": ["cs"]}]
HUNG_WEBHOOKS = 20
INCIDENTS = 5
SAMPLE_FOR_S = 25.0
SAMPLE_EVERY_S = 0.25


@dataclass
class HungWebhookRun:
    samples: int = 0
    missing: list[tuple[float, str]] = field(default_factory=list)
    connections: int = 0
    call_during: list[Call] = field(default_factory=list)
    caller_still_up: bool = False
    final: Call | None = None
    log_b: str = ""


async def _hung_listener(held: list[asyncio.StreamWriter]) -> asyncio.Server:
    """Accepts every TCP connection and never answers it (held open until the test ends)."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    return await asyncio.start_server(hold, "127.0.0.1", 0)


async def _run(work: Path, postgres: PostgresServer) -> HungWebhookRun:
    result = HungWebhookRun()
    voice = await asyncio.to_thread(
        lambda: (
            SpeechSynthesizer(work / "voices")
            .synthesize("Dobrý den, potřebuji záchranku.", "cs", voice="espeak", tail_silence_s=90.0)
            .path
        )
    )
    redis = await asyncio.to_thread(EmbeddedRedis(work / "redis", port=free_port()).start)
    database_url = await asyncio.to_thread(postgres.create_database, "izs_ha_hung")
    connections: list[asyncio.StreamWriter] = []
    listener = await _hung_listener(connections)
    hook_port = listener.sockets[0].getsockname()[1]
    a = IntakeNode("node-a", "127.0.0.2", work / "node-a", database_url, redis.url, TAKERS)
    b = IntakeNode("node-b", "127.0.0.3", work / "node-b", database_url, redis.url, TAKERS)
    for node in (a, b):  # the hung receiver listens on loopback, which webhooks may target only if allowed
        node.extra_env["IZS_WEBHOOK_ALLOW_PRIVATE_TARGETS"] = "true"
    database = Database(database_url)
    repo = Repository(database)
    live = LiveState(connect_redis(redis.url))
    consoles: list[Console] = []
    try:
        a.start()
        await asyncio.to_thread(a.wait_ready)
        b.start()
        await asyncio.to_thread(b.wait_ready)
        for index in range(HUNG_WEBHOOKS):
            await asyncio.to_thread(
                repo.create_webhook, f"http://127.0.0.1:{hook_port}/hook/{index}", f"secret-{index}", ["*"]
            )
        on_b = Console(b)
        consoles.append(on_b)
        await on_b.ensure_supervisor()
        for _ in range(INCIDENTS):
            created = await on_b.post(
                "/api/incidents", {"incident_type": "FIRE_BUILDING", "priority": 2, "agencies": ["HZS"]}
            )
            assert created.status_code in (200, 201), created.text

        async with CallerFleet(work_dir=work / "callers", keep_dir=True) as fleet:
            [task] = fleet.start([PlannedCall("live", voice, f"sip:155@{a.sip_address}", "+420603555222")])
            deadline = time.monotonic() + 30
            while not fleet.outcome("live").answered and time.monotonic() < deadline:
                assert not fleet.outcome("live").error, fleet.outcome("live").error
                await asyncio.sleep(0.1)
            ref = fleet.outcome("live").sip_call_id
            assert ref is not None, fleet.outcome("live")
            call: Call | None = None
            while call is None and time.monotonic() < deadline:
                call = await asyncio.to_thread(repo.find_call_by_ref, ref)
                await asyncio.sleep(0.2)
            assert call is not None, "the call was never recorded"

            started = time.monotonic()
            next_sample = started
            while time.monotonic() - started < SAMPLE_FOR_S:
                at = time.monotonic() - started
                for lease in ("node:node-a", "node:node-b", "leader"):
                    if await live.lease_holder(lease) is None:
                        result.missing.append((round(at, 2), lease))
                result.samples += 1
                if result.samples % 8 == 0:
                    result.call_during.append(await asyncio.to_thread(repo.get_call, call.id))
                next_sample += SAMPLE_EVERY_S
                await asyncio.sleep(max(0.0, next_sample - time.monotonic()))
            result.connections = len(connections)
            result.caller_still_up = not task.done()
            await fleet.hangup("live")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(task, 15)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            result.final = await asyncio.to_thread(repo.get_call, call.id)
            if not result.final.is_live:
                break
            await asyncio.sleep(0.2)
        return result
    finally:
        result.log_b = b.log_tail(6000)
        for console in consoles:
            await console.close()
        await asyncio.to_thread(b.stop)
        await asyncio.to_thread(a.stop)
        listener.close()
        for writer in connections:
            writer.close()
        await live.redis.aclose()
        database.dispose()
        await asyncio.to_thread(redis.stop)


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
) -> Iterator[HungWebhookRun]:
    yield asyncio.run(_run(tmp_path_factory.mktemp("ha-hung-webhook"), postgres_server))


def test_the_hung_receiver_was_really_tried(run: HungWebhookRun) -> None:
    assert run.connections >= 8, run.connections  # deliveries in flight at once, each one left hanging


def test_heartbeats_and_leader_lease_are_never_missing(run: HungWebhookRun) -> None:
    assert run.samples >= SAMPLE_FOR_S / SAMPLE_EVERY_S * 0.8
    assert run.missing == [], (
        f"{len(run.missing)} of {3 * run.samples} lease readings missing: {run.missing[:20]}"
    )


def test_the_live_call_is_never_reaped(run: HungWebhookRun) -> None:
    assert run.caller_still_up
    assert run.call_during and all(
        c.state is CallState.QUEUED and c.end_reason is None for c in run.call_during
    ), [(c.state.value, c.end_reason) for c in run.call_during]
    assert run.final is not None and run.final.end_reason != "node_lost", run.final
    assert "lost with node" not in run.log_b
