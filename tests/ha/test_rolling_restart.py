"""Rolling restart (an upgrade): the leader node is stopped (SIGTERM, what systemd sends), the other node takes
the lease and every new call; the node comes back on the same addresses, Kamailio's
probes put it back, and calls are spread over both again. The call the stopped node held is not left
queued.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from ha_support import Console, IntakeNode, KamailioFront, needs_two_loopback_nodes
from support.servers import PostgresServer

from intake.live import LiveState, connect_redis
from intake.redis_server import EmbeddedRedis, free_port
from intake.storage.database import Database
from intake.storage.repository import Repository
from izs.demo.callers import CallerFleet, PlannedCall
from izs.demo.speech import SpeechSynthesizer

pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.timeout(240),
    needs_two_loopback_nodes,
]

TAKERS = [{"id": "hzs1", "name": "HZS 1", "desks": ["HZS"], "languages": ["cs"]}]


async def _answered(fleet: CallerFleet, labels: list[str], timeout_s: float) -> list[bool]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not all(fleet.outcome(x).answered for x in labels):
        await asyncio.sleep(0.1)
    return [fleet.outcome(x).answered for x in labels]


async def test_leader_stopped_for_an_upgrade_hands_over_at_once_and_rejoins_behind_kamailio(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    voice = await asyncio.to_thread(
        lambda: (
            SpeechSynthesizer(tmp_path / "voices")
            .synthesize("Dobrý den, hoří garáž.", "cs", voice="espeak", tail_silence_s=90.0)
            .path
        )
    )
    redis = await asyncio.to_thread(EmbeddedRedis(tmp_path / "redis", port=free_port()).start)
    database_url = await asyncio.to_thread(postgres_server.create_database, "izs_ha_roll")
    a = IntakeNode("node-a", "127.0.0.2", tmp_path / "node-a", database_url, redis.url, TAKERS)
    b = IntakeNode("node-b", "127.0.0.3", tmp_path / "node-b", database_url, redis.url, TAKERS)
    client = connect_redis(redis.url)
    live = LiveState(client)
    database = Database(database_url)
    repo = Repository(database)
    kamailio: KamailioFront | None = None
    console: Console | None = None

    def node_of(ref: str | None) -> str | None:
        call = repo.find_call_by_ref(ref) if ref else None
        return call.node if call is not None else None

    try:
        a.start()
        await asyncio.to_thread(a.wait_ready)
        deadline = time.monotonic() + 20
        while await live.lease_holder("leader") != "node-a" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        b.start()
        await asyncio.to_thread(b.wait_ready)
        kamailio = KamailioFront(
            tmp_path / "kamailio", [a.sip_address, b.sip_address], probe_interval_s=1
        ).start()
        console = Console(b)
        await console.ensure_supervisor()

        async with CallerFleet(work_dir=tmp_path / "callers", keep_dir=True) as fleet:
            first = [f"first-{i}" for i in range(2)]
            fleet.start(
                [
                    PlannedCall(x, voice, kamailio.target("150"), f"+4206034{i:05d}", at_s=i * 0.3)
                    for i, x in enumerate(first)
                ]
            )
            assert all(await _answered(fleet, first, 30))
            first_nodes = {x: await asyncio.to_thread(node_of, fleet.outcome(x).sip_call_id) for x in first}
            on_a = [x for x, n in first_nodes.items() if n == "node-a"]

            stopped_at = time.monotonic()
            # SIGTERM, what systemd sends: a clean stop releases the leader lease at once.
            await asyncio.to_thread(a.stop, signal.SIGTERM)
            stop_took = time.monotonic() - stopped_at
            lease_after = None
            while time.monotonic() - stopped_at < 15 and lease_after is None:
                if await live.lease_holder("leader") == "node-b":
                    lease_after = time.monotonic() - stopped_at
                await asyncio.sleep(0.05)

            during = [f"during-{i}" for i in range(3)]
            fleet.start(
                [
                    PlannedCall(x, voice, kamailio.target("150"), f"+4206035{i:05d}", at_s=i * 0.4)
                    for i, x in enumerate(during)
                ]
            )
            during_answered = await _answered(fleet, during, 30)
            during_nodes = [await asyncio.to_thread(node_of, fleet.outcome(x).sip_call_id) for x in during]

            a.start()  # same addresses and var dir: the upgraded node comes back
            await asyncio.to_thread(a.wait_ready)
            back_at = time.monotonic()
            while time.monotonic() - back_at < 15:
                events = kamailio.probe_events()
                ups = [seen for seen, node, verdict in events if node == a.sip_address and verdict == "UP"]
                downs = [
                    seen for seen, node, verdict in events if node == a.sip_address and verdict == "DOWN"
                ]
                if ups and (not downs or ups[-1] > downs[-1]):
                    break
                await asyncio.sleep(0.1)
            after = [f"after-{i}" for i in range(4)]
            fleet.start(
                [
                    PlannedCall(x, voice, kamailio.target("150"), f"+4206036{i:05d}", at_s=i * 0.3)
                    for i, x in enumerate(after)
                ]
            )
            after_answered = await _answered(fleet, after, 30)
            after_nodes = [await asyncio.to_thread(node_of, fleet.outcome(x).sip_call_id) for x in after]
            queued = set(await console.queued_call_ids())
            stopped_calls = [
                await asyncio.to_thread(repo.find_call_by_ref, fleet.outcome(x).sip_call_id or "")
                for x in on_a
            ]
            for label in first + during + after:
                await fleet.hangup(label)
    finally:
        if console is not None:
            await console.close()
        await client.aclose()
        if kamailio is not None:
            await asyncio.to_thread(kamailio.stop)
        await asyncio.to_thread(b.stop)
        await asyncio.to_thread(a.stop)
        database.dispose()
        await asyncio.to_thread(redis.stop)

    print(
        f"\nrolling restart: clean stop took {stop_took:.1f} s, lease on node-b {lease_after} s after the stop signal"
    )
    assert set(first_nodes.values()) == {"node-a", "node-b"}, first_nodes
    assert lease_after is not None and lease_after < 10.0, lease_after
    assert all(during_answered) and set(during_nodes) == {"node-b"}, (during_answered, during_nodes)
    assert all(after_answered) and set(after_nodes) == {"node-a", "node-b"}, (after_answered, after_nodes)
    for call in stopped_calls:
        assert call is not None, "the stopped node's call has no record"
        assert not call.is_live and call.id not in queued, (call.id, call.state, call.end_reason)


@pytest.mark.postgres
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_node_stopped_cleanly_releases_the_leader_lease_at_once(
    tmp_path: Path, postgres_server: PostgresServer, stop_signal: signal.Signals
) -> None:
    redis = await asyncio.to_thread(EmbeddedRedis(tmp_path / "redis", port=free_port()).start)
    database_url = await asyncio.to_thread(postgres_server.create_database, "izs_ha_term")
    node = IntakeNode("node-t", "127.0.0.1", tmp_path / "node", database_url, redis.url, TAKERS)
    client = connect_redis(redis.url)
    live = LiveState(client)
    try:
        node.start()
        await asyncio.to_thread(node.wait_ready)
        deadline = time.monotonic() + 20
        while await live.lease_holder("leader") != "node-t" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.to_thread(node.stop, stop_signal)
        holder = await live.lease_holder("leader")
    finally:
        await client.aclose()
        await asyncio.to_thread(node.stop)
        await asyncio.to_thread(redis.stop)
    assert holder is None, f"{holder} still holds the lease after a clean stop"
