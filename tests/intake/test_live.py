"""Live state on a real Redis: queues, claims, call-taker states, the incident stream, pub/sub, leases,
and the embedded Redis keeping it all across a restart."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from intake.domain import Call, CallerNumber, CallState
from intake.errors import LiveStateError
from intake.live import (
    DeskQueues,
    IncidentStream,
    Leases,
    LiveRedis,
    LiveState,
    NodeHealth,
    TakerStates,
    connect_redis,
    queue_entries_from_calls,
)
from intake.redis_server import EmbeddedRedis
from intake.storage.repository import Repository
from routing.vocabulary import DeskCode

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# ---------------------------------------------------------------------------------------- queues


async def test_queue_orders_by_priority_then_arrival_with_cardiac_arrest_first(live_state: LiveState) -> None:
    await live_state.enqueue("ZZS", "p3-early", 3, at(0))
    await live_state.enqueue("ZZS", "p2-late", 2, at(30))
    await live_state.enqueue("ZZS", "p1-late", 1, at(20))
    await live_state.enqueue("ZZS", "p2-early", 2, at(10))
    await live_state.enqueue("ZZS", "cardiac-arrest", 1, at(40), front=True, data={"language": "cs"})
    await live_state.enqueue("ZZS", "p1-early", 1, at(5))
    queue = await live_state.queue("ZZS")
    assert [e.call_id for e in queue] == [
        "cardiac-arrest",
        "p1-early",
        "p1-late",
        "p2-early",
        "p2-late",
        "p3-early",
    ]
    head = queue[0]
    assert (head.desk, head.priority, head.front, head.arrival, head.data) == (
        "ZZS",
        1,
        True,
        at(40),
        {"language": "cs"},
    )
    assert sorted(queue, key=lambda e: e.sort_key) == queue


async def test_claim_next_takes_the_head_once(live_state: LiveState) -> None:
    await live_state.enqueue("HZS", "second", 2, at(1))
    await live_state.enqueue("HZS", "first", 1, at(2))
    assert await live_state.claim_next("HZS", "t1") == "first"
    assert await live_state.claim_next("HZS", "t2") == "second"
    assert await live_state.claim_next("HZS", "t3") is None
    assert await live_state.queued_desk("first") is None


async def test_concurrent_claimers_never_get_the_same_call(live_state: LiveState, redis_url: str) -> None:
    calls = [f"call-{i}" for i in range(200)]
    for i, call_id in enumerate(calls):
        await live_state.enqueue("112", call_id, 1 + i % 3, at(i))
    # separate connections, as separate nodes would have
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(8)]
    try:
        nodes = [LiveState(c, namespace=live_state.ns) for c in clients]

        async def claimer(node: LiveState, taker: str) -> list[str]:
            got = []
            while (call_id := await node.claim_next("112", taker)) is not None:
                got.append(call_id)
            return got

        results = await asyncio.gather(*(claimer(n, f"t{i}") for i, n in enumerate(nodes)))
    finally:
        for c in clients:
            await c.aclose()
    claimed = [c for r in results for c in r]
    assert sorted(claimed) == sorted(calls)  # each exactly once
    assert await live_state.queue("112") == []


async def test_dequeue_specific_gives_the_call_to_one_caller_only(live_state: LiveState) -> None:
    await live_state.enqueue("PCR", "c1", 2, at(0), data={"caller": "+420604123456"})
    first, second = await asyncio.gather(
        live_state.dequeue_specific("PCR", "c1"), live_state.dequeue_specific("PCR", "c1")
    )
    assert [e is not None for e in (first, second)].count(True) == 1
    winner = first or second
    assert winner is not None and winner.data == {"caller": "+420604123456"}
    assert await live_state.queue("PCR") == []


async def test_a_call_waits_in_one_queue_only(live_state: LiveState) -> None:
    await live_state.enqueue("ZZS", "c1", 2, at(0))
    await live_state.enqueue("112", "c1", 2, at(0))
    assert await live_state.queue("ZZS") == []
    assert [e.call_id for e in await live_state.queue("112")] == ["c1"]
    assert await live_state.queued_desk("c1") == "112"


async def test_move_keeps_arrival_and_reprioritise_reorders(live_state: LiveState) -> None:
    await live_state.enqueue("HZS", "old", 2, at(0))
    await live_state.enqueue("112", "new", 2, at(60))
    moved = await live_state.move("old", "HZS", "112")
    assert moved is not None and moved.arrival == at(0) and moved.desk == "112"
    assert [e.call_id for e in await live_state.queue("112")] == ["old", "new"]
    assert await live_state.queue("HZS") == []
    assert await live_state.move("old", "HZS", "112") is None  # not there any more
    await live_state.reprioritise("112", "new", 1, front=True)
    assert [(e.call_id, e.priority, e.front) for e in await live_state.queue("112")] == [
        ("new", 1, True),
        ("old", 2, False),
    ]
    assert await live_state.reprioritise("112", "gone", 1) is None
    with pytest.raises(ValueError):
        await live_state.reprioritise("112", "new", 1000)
    assert set(await live_state.all_queues()) == {"HZS", "112"}


async def test_requeue_after_a_failed_offer_keeps_the_place(live_state: LiveState) -> None:
    await live_state.enqueue("ZZS", "a", 2, at(0))
    await live_state.enqueue("ZZS", "b", 2, at(10))
    entry = await live_state.claim_next_entry("ZZS", "t1")
    assert entry is not None and entry.call_id == "a"
    await live_state.requeue("ZZS", entry.call_id, entry.priority, entry.arrival, entry.front, entry.data)
    assert [e.call_id for e in await live_state.queue("ZZS")] == ["a", "b"]


async def test_queues_rebuild_from_database_calls(live_state: LiveState) -> None:
    def call(call_id: str, desk: DeskCode | None, priority: int | None, offered: float, **kw: object) -> Call:
        return Call(
            id=call_id,
            call_ref=call_id,
            source="sip",
            dialled="112",
            caller=CallerNumber(""),
            state=CallState.QUEUED,
            desk=desk,
            priority=priority,
            offered_at=at(offered),
            **kw,  # type: ignore[arg-type]
        )

    calls = [
        call("late", DeskCode.ZZS, 1, 50),
        call("tcpr", DeskCode.ZZS, 1, 60, tcpr=True, language="de"),
        call("unknown-priority", DeskCode.ZZS, None, 0),
        call("no-desk", None, 1, 0),
        Call(
            id="ended",
            call_ref="x",
            source="sip",
            dialled="155",
            caller=CallerNumber(""),
            state=CallState.ENDED,
        ),
    ]
    plan = queue_entries_from_calls(calls)
    assert [p.call_id for p in plan] == ["tcpr", "late", "unknown-priority"]
    assert await live_state.rebuild_queues(plan) == 3
    assert await live_state.rebuild_queues(plan) == 3  # idempotent
    queue = await live_state.queue("ZZS")
    assert [e.call_id for e in queue] == ["tcpr", "late", "unknown-priority"]
    assert queue[0].data["language"] == "de"


async def test_lost_redis_data_is_detected_so_queues_can_be_rebuilt(live_state: LiveState) -> None:
    assert await live_state.ensure_epoch()  # new
    assert not await live_state.ensure_epoch()  # still the same data
    await live_state.clear()  # what a FLUSHALL or a replaced Redis looks like
    assert await live_state.ensure_epoch()


# ---------------------------------------------------------------------------- calls and call takers


async def test_active_calls(live_state: LiveState) -> None:
    await live_state.put_active_call("c1", {"id": "c1", "state": "queued"})
    await live_state.put_active_call("c2", {"id": "c2", "state": "connected"})
    await live_state.put_active_call("c1", {"id": "c1", "state": "connected"})
    await live_state.remove_active_call("c2")
    assert await live_state.active_calls() == [{"id": "c1", "state": "connected"}]
    assert await live_state.active_call("c2") is None


async def test_taker_states_and_longest_idle(live_state: LiveState) -> None:
    await live_state.set_taker_state("anna", "available", at(10))
    await live_state.set_taker_state("bob", "available", at(0))
    await live_state.set_taker_state("cyril", "busy", at(5), {"call_id": "c1"})
    states = await live_state.taker_states()
    assert states["cyril"] == {"state": "busy", "since": at(5).isoformat(), "call_id": "c1"}
    assert states["anna"]["state"] == "available"
    assert await live_state.idle_takers() == [("bob", at(0)), ("anna", at(10))]
    await live_state.set_taker_state("bob", "paused", at(20))
    assert [t for t, _ in await live_state.idle_takers()] == ["anna"]
    await live_state.remove_taker("anna")
    assert set(await live_state.taker_states()) == {"bob", "cyril"}


# ------------------------------------------------------------------------------ incident stream


async def test_stream_consumer_group_delivers_each_event_once_per_group(live_state: LiveState) -> None:
    await live_state.ensure_group("gateway")
    await live_state.ensure_group("gateway")  # idempotent
    ids = [await live_state.publish_incident_event({"type": "incident.created", "n": n}) for n in range(5)]
    first = await live_state.read_group("gateway", "g1", count=3)
    second = await live_state.read_group("gateway", "g2", count=10)
    assert [m.event["n"] for m in first + second] == [0, 1, 2, 3, 4]
    assert [m.id for m in first + second] == ids
    assert await live_state.read_group("gateway", "g1", count=10) == []
    assert await live_state.ack("gateway", [m.id for m in first + second]) == 5
    assert (await live_state.pending("gateway"))["pending"] == 0


async def test_event_of_a_consumer_that_died_before_ack_is_claimed_by_another(live_state: LiveState) -> None:
    await live_state.ensure_group("webhooks")
    await live_state.publish_incident_event({"type": "incident.created", "id": "KVK-2026-000001"})
    await live_state.publish_incident_event({"type": "incident.updated", "id": "KVK-2026-000001"})
    got = await live_state.read_group("webhooks", "dying", count=10)
    assert len(got) == 2
    await live_state.ack("webhooks", [got[0].id])  # dies after handling the first one
    pending = await live_state.pending("webhooks")
    assert pending["pending"] == 1 and pending["consumers"] == {"dying": 1}
    assert await live_state.claim_stale("webhooks", "survivor", min_idle_ms=60_000) == []  # not stale yet
    await asyncio.sleep(0.06)
    claimed = await live_state.claim_stale("webhooks", "survivor", min_idle_ms=50)
    assert [m.event["type"] for m in claimed] == ["incident.updated"]
    assert [m.id for m in await live_state.read_own_pending("webhooks", "survivor")] == [got[1].id]
    await live_state.ack("webhooks", [m.id for m in claimed])
    assert (await live_state.pending("webhooks"))["pending"] == 0


async def test_replay_reads_the_stream_from_any_point(live_state: LiveState) -> None:
    ids = [await live_state.publish_incident_event({"n": n}) for n in range(4)]
    assert [m.event["n"] for m in await live_state.replay()] == [0, 1, 2, 3]
    assert [m.event["n"] for m in await live_state.replay(ids[1])] == [1, 2, 3]
    assert [m.event["n"] for m in await live_state.replay(ids[1], exclusive=True)] == [2, 3]
    assert await live_state.stream_length() == 4


async def test_stream_stays_bounded(redis_client: aioredis.Redis) -> None:
    live = LiveState(redis_client, namespace="izs-test-bounded", stream_maxlen=100)
    try:
        for n in range(1000):
            await live.publish_incident_event({"n": n})
        assert await live.stream_length() < 300
        assert (await live.replay(count=100_000))[-1].event["n"] == 999
    finally:
        await live.clear()


# ---------------------------------------------------------------------------------- pub/sub, leases


async def test_pubsub_delivers_published_events_to_subscribers(live_state: LiveState, redis_url: str) -> None:
    other_client = aioredis.Redis.from_url(redis_url)
    other_node = LiveState(other_client, namespace=live_state.ns)
    ready = asyncio.Event()
    received: list[dict[str, object]] = []

    async def listen() -> None:
        async for event in other_node.subscribe("events", ready=ready):
            received.append(event)
            if len(received) == 2:
                return

    task = asyncio.create_task(listen())
    try:
        await asyncio.wait_for(ready.wait(), 5)
        assert await live_state.subscriber_count("events") == 1
        await live_state.publish("events", {"type": "call.offered", "call_id": "c1"})
        await live_state.publish("other-topic", {"type": "ignored"})
        await live_state.publish("events", {"type": "call.ended", "call_id": "c1"})
        await asyncio.wait_for(task, 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await other_client.aclose()
    assert [e["type"] for e in received] == ["call.offered", "call.ended"]


async def test_lease_has_one_holder_and_expires(live_state: LiveState) -> None:
    assert await live_state.acquire_lease("leader", "node-a", 10_000)
    assert not await live_state.acquire_lease("leader", "node-b", 10_000)
    assert await live_state.acquire_lease("leader", "node-a", 10_000)  # re-acquire = renew
    assert await live_state.renew_lease("leader", "node-a", 10_000)
    assert not await live_state.renew_lease("leader", "node-b", 10_000)
    assert not await live_state.release_lease("leader", "node-b")
    assert await live_state.lease_holder("leader") == "node-a"
    assert await live_state.release_lease("leader", "node-a")
    assert await live_state.acquire_lease("leader", "node-b", 50)
    await asyncio.sleep(0.1)
    assert not await live_state.renew_lease("leader", "node-b", 50)
    assert await live_state.acquire_lease("leader", "node-a", 10_000)


async def test_concurrent_lease_acquisition_has_one_winner(live_state: LiveState) -> None:
    results = await asyncio.gather(
        *(live_state.acquire_lease("sweeper", f"node-{i}", 10_000) for i in range(20))
    )
    assert results.count(True) == 1


async def test_redis_errors_become_live_state_errors() -> None:
    # nothing listens on port 1 of localhost
    client = connect_redis("redis://127.0.0.1:1/0", connect_timeout_s=0.5)
    try:
        live = LiveState(client)
        with pytest.raises(LiveStateError):
            await live.ping()
        with pytest.raises(LiveStateError):
            await live.enqueue("ZZS", "c1", 1, T0)
        with pytest.raises(LiveStateError):
            async for _ in live.subscribe("events"):
                pass
    finally:
        await client.aclose()


async def test_each_store_works_alone_on_the_shared_connection(live_state: LiveState) -> None:
    """The concepts are separate classes over one LiveRedis; they see what LiveState wrote (same keys)."""
    conn = LiveRedis(live_state.redis, live_state.ns)
    await live_state.enqueue("HZS", "c1", 2, at(0))
    assert [e.call_id for e in await DeskQueues(conn).queue("HZS")] == ["c1"]
    await Leases(conn).acquire_lease("leader", "node-a", 10_000)
    assert await live_state.lease_holder("leader") == "node-a"
    stream = IncidentStream(conn, stream_maxlen=50)
    cursor = await stream.publish_incident_event({"type": "incident.created"})
    assert [m.id for m in await live_state.replay()] == [cursor]
    await TakerStates(conn).set_taker_state("t1", "available", at(1))
    assert [t for t, _ in await live_state.idle_takers()] == ["t1"]


async def test_a_node_command_reply_reaches_the_requester_even_if_sent_before_it_waits(
    live_state: LiveState,
) -> None:
    await live_state.send_reply("cmd-1", {"accepted": True}, ttl_ms=5_000)
    assert await live_state.wait_reply("cmd-1", timeout_s=2.0) == {"accepted": True}
    waiting = asyncio.create_task(live_state.wait_reply("cmd-2", timeout_s=5.0))
    await live_state.send_reply("cmd-2", {"accepted": False}, ttl_ms=5_000)
    assert await waiting == {"accepted": False}
    assert await live_state.wait_reply("cmd-3", timeout_s=0.3) is None


async def test_redis_errors_of_every_store_are_live_state_errors_naming_the_step() -> None:
    client = connect_redis("redis://127.0.0.1:1/0", connect_timeout_s=0.5)
    try:
        conn = LiveRedis(client)
        with pytest.raises(LiveStateError) as caught:
            await IncidentStream(conn).ensure_group("g")
        assert caught.value.details["operation"] == "create consumer group g"
        with pytest.raises(LiveStateError):
            await Leases(conn).lease_names()
        with pytest.raises(LiveStateError):
            await NodeHealth(conn).node_health("transcription")
        with pytest.raises(LiveStateError):
            await LiveState(client).clear()
    finally:
        await client.aclose()


# ----------------------------------------------------------------------------------- embedded Redis


async def test_app_restart_keeps_active_calls_queues_and_stream(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"

    async def with_live(server: EmbeddedRedis) -> tuple[aioredis.Redis, LiveState]:
        client = aioredis.Redis.from_url(server.url)
        return client, LiveState(client)

    server = EmbeddedRedis(data_dir).start()
    client, live = await with_live(server)
    try:
        await live.put_active_call("c1", {"id": "c1", "state": "queued"})
        await live.enqueue("ZZS", "c1", 1, at(0), front=True, data={"language": "cs"})
        await live.enqueue("ZZS", "c2", 2, at(1))
        await live.set_taker_state("anna", "available", at(5))
        await live.ensure_group("gateway")
        await live.acquire_lease("leader", "node-a", 60_000)
        assert await live.ensure_epoch()
        await live.publish_incident_event({"type": "incident.created"})
        assert await live.read_group("gateway", "g1") != []  # pending, unacknowledged
        before = await live.snapshot()
    finally:
        await client.aclose()
        server.stop()
    assert not server.running
    assert (data_dir / "appendonlydir").is_dir() and (data_dir / "dump.rdb").exists()

    with EmbeddedRedis(data_dir) as restarted:
        client, live = await with_live(restarted)
        try:
            after = await live.snapshot()
            assert after == before
            assert after["leases"] == {"leader": "node-a"} and len(after["queues"]["ZZS"]) == 2
            assert not await live.ensure_epoch()  # nothing was lost: no queue rebuild needed
            assert (await live.pending("gateway"))["pending"] == 1
            assert await live.claim_next("ZZS", "anna") == "c1"
        finally:
            await client.aclose()


async def _until_in_aof(redis_dir: Path, needle: bytes, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(needle in f.read_bytes() for f in redis_dir.rglob("*.aof*") if f.is_file()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{needle!r} not in the append-only file within {timeout_s} s")


async def test_embedded_redis_survives_a_crash_through_the_aof(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    client = aioredis.Redis.from_url(server.url)
    try:
        await LiveState(client).enqueue("HZS", "c1", 1, at(0))
        # The write is in the append-only file once Redis has written it out (a killed process loses
        # nothing the kernel already holds; appendfsync everysec only guards against a machine crash).
        await _until_in_aof(tmp_path / "redis", b"c1", timeout_s=10.0)
    finally:
        await client.aclose()
    assert server.process is not None
    server.process.kill()  # no save on the way out
    server.process.wait()
    server.process = None
    with EmbeddedRedis(tmp_path / "redis") as restarted:
        client = aioredis.Redis.from_url(restarted.url)
        try:
            assert [e.call_id for e in await LiveState(client).queue("HZS")] == ["c1"]
        finally:
            await client.aclose()


def test_embedded_redis_on_a_unix_socket(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "r", unix_socket=True) as server:
        assert server.url.startswith("unix://")
        import redis

        with redis.Redis.from_url(server.url) as client:
            assert client.ping()


async def test_redis_outage_fails_fast_and_recovers_when_redis_is_back(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    port = server.port
    client = connect_redis(server.url)
    live = LiveState(client)
    try:
        await live.enqueue("ZZS", "c1", 1, at(0))
        server.stop()
        started = asyncio.get_running_loop().time()
        with pytest.raises(LiveStateError):
            await live.queue("ZZS")
        assert asyncio.get_running_loop().time() - started < 5.0  # degrade, do not hang the call path
        with EmbeddedRedis(tmp_path / "redis", port=port):
            assert [e.call_id for e in await live.queue("ZZS")] == ["c1"]  # same client reconnects
    finally:
        await client.aclose()
        server.stop()


@given(
    st.lists(
        st.tuples(st.integers(1, 3), st.booleans(), st.integers(0, 10**9)),
        min_size=1,
        max_size=40,
        unique_by=lambda e: e[2],
    )
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_redis_queue_order_is_routings_acd_rule_for_any_calls(
    entries: list[tuple[int, bool, int]],
) -> None:
    """The Redis score orders a queue exactly as routing.acd.queue_key does: one rule."""
    from intake.live import QueueEntry
    from routing import acd

    queue = [
        QueueEntry(f"c{i}", "ZZS", priority, front, T0 + timedelta(milliseconds=ms))
        for i, (priority, front, ms) in enumerate(entries)
    ]
    by_score = sorted(queue, key=lambda e: e.score)
    by_rule = sorted(
        queue,
        key=lambda e: acd.queue_key(
            acd.QueueEntry(e.call_id, DeskCode.ZZS, e.priority, e.arrival.timestamp(), front=e.front)
        ),
    )
    assert by_score == by_rule


async def test_queues_lost_with_redis_are_rebuilt_from_the_database(
    live_state: LiveState, repository: Repository
) -> None:
    for call_id, desk, priority, offered, tcpr in [
        ("c-late", DeskCode.HZS, 2, 30, False),
        ("c-early", DeskCode.HZS, 2, 10, False),
        ("c-arrest", DeskCode.ZZS, 1, 20, True),
    ]:
        repository.save_call(
            Call(
                id=call_id,
                call_ref=call_id,
                source="sip",
                dialled="112",
                caller=CallerNumber(""),
                state=CallState.QUEUED,
                desk=desk,
                priority=priority,
                tcpr=tcpr,
                offered_at=at(offered),
            )
        )
    assert await live_state.ensure_epoch()  # a Redis without our mark: new, or it lost its data
    queued = await asyncio.to_thread(repository.calls_in_states, [CallState.QUEUED])
    assert await live_state.rebuild_queues(queue_entries_from_calls(queued)) == 3
    assert [e.call_id for e in await live_state.queue("HZS")] == ["c-early", "c-late"]
    [arrest] = await live_state.queue("ZZS")
    assert arrest.front and arrest.arrival == at(20)


async def test_redis_left_running_by_a_crashed_app_is_replaced_without_losing_data(tmp_path: Path) -> None:
    orphan = EmbeddedRedis(tmp_path / "redis").start()
    assert orphan.process is not None
    orphan_process = orphan.process
    client = connect_redis(orphan.url)
    try:
        await LiveState(client).put_active_call("c1", {"id": "c1"})
    finally:
        await client.aclose()
    orphan.process = None  # the app died; its redis-server lives on
    try:
        with EmbeddedRedis(tmp_path / "redis") as restarted:
            assert orphan_process.wait(timeout=30) == 0  # stopped (and saved) before the new one started
            client = connect_redis(restarted.url)
            try:
                assert await LiveState(client).active_calls() == [{"id": "c1"}]
            finally:
                await client.aclose()
    finally:
        if orphan_process.poll() is None:
            orphan_process.kill()
            orphan_process.wait()
