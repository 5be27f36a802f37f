"""Cluster membership (heartbeat, reaping a lost node's calls) and the journal retry, built directly."""

from __future__ import annotations

from pathlib import Path

from calls_fakes import Effects, FakeBus, FakeClock, FakeDesks, FakeLive, FakeStore, a_call

from intake.calls.cluster import ClusterMembership
from intake.calls.records import CallRecords
from intake.calls.session import CallSession, SessionRegistry, media_lease
from intake.domain import CallState
from intake.journal import CallJournal


def cluster_rig(
    store: FakeStore, live: FakeLive, registry: SessionRegistry, clock: FakeClock, effects: Effects
) -> tuple[ClusterMembership, FakeDesks, FakeBus]:
    desks, bus = FakeDesks(effects, live), FakeBus(effects)
    return ClusterMembership(registry, store, live, desks, bus, "node-a", clock), desks, bus


async def test_calls_of_a_node_whose_heartbeat_is_gone_end_for_call_back_and_leave_the_queue() -> None:
    effects, clock = Effects(), FakeClock()
    waiting = a_call("w1", node="node-b")
    talking = a_call("t1", state=CallState.CONNECTED, node="node-b")
    talking.taker_id = "jana"
    store, live = FakeStore(effects, [waiting, talking]), FakeLive(effects)
    cluster, _desks, bus = cluster_rig(store, live, SessionRegistry(), clock, effects)

    lost = await cluster.reap_lost_calls()

    assert sorted(lost) == ["t1", "w1"]
    assert store.calls["w1"].state is CallState.ABANDONED and store.calls["w1"].end_reason == "node_lost"
    assert store.calls["t1"].state is CallState.ENDED
    assert store.calls["w1"].ended_at == clock.now()
    assert "leave w1" in effects.log and "wrap-up jana" in effects.log
    assert sorted(bus.kinds()) == ["call.abandoned", "call.ended"]
    # the queue entry goes before the record says abandoned, and that before the consoles hear it
    assert (
        effects.log.index("leave w1")
        < effects.log.index("save w1 abandoned")
        < effects.log.index("publish call.abandoned")
    )


async def test_a_node_that_is_slow_but_alive_keeps_its_calls() -> None:
    effects, clock = Effects(), FakeClock()
    media = a_call("m1", node="node-b")
    listening = a_call("l1", node="node-c")
    alive = a_call("a1", node="node-d")
    pbx = a_call("p1", node="node-b", source="ami")
    store, live = FakeStore(effects, [media, listening, alive, pbx]), FakeLive(effects)
    live.leases[media_lease("m1")] = "node-b"  # its media still arrives
    live.subscribers["node:node-c"] = 1  # it still listens on its command channel
    live.leases["node:node-d"] = "node-d"  # its heartbeat is there
    cluster, _desks, _bus = cluster_rig(store, live, SessionRegistry(), clock, effects)
    assert await cluster.reap_lost_calls() == []  # and a PBX call is re-offered by the bridge, never reaped


async def test_a_call_this_process_does_not_hold_died_with_its_previous_process() -> None:
    effects, clock = Effects(), FakeClock()
    held, orphan = a_call("h1", node="node-a"), a_call("o1", node="node-a")
    store, live = FakeStore(effects, [held, orphan]), FakeLive(effects)
    registry = SessionRegistry()
    registry.add(CallSession(call=held))
    cluster, _desks, _bus = cluster_rig(store, live, registry, clock, effects)
    assert await cluster.reap_lost_calls() == ["o1"]


async def test_heartbeat_renews_media_leases_only_for_calls_whose_audio_is_fresh() -> None:
    effects, clock = Effects(), FakeClock()
    store, live = FakeStore(effects), FakeLive(effects)
    registry = SessionRegistry()
    fresh, silent = CallSession(call=a_call("f1")), CallSession(call=a_call("s1"))
    registry.add(fresh)
    registry.add(silent)
    silent.last_media_at = clock.monotonic()
    clock.advance(5.0)
    fresh.last_media_at = clock.monotonic()
    cluster, _desks, _bus = cluster_rig(store, live, registry, clock, effects)
    await cluster.heartbeat()
    assert live.leases == {"node:node-a": "node-a", media_lease("f1"): "node-a"}


async def test_a_call_written_while_the_database_is_away_waits_in_the_journal_and_is_retried(
    tmp_path: Path,
) -> None:
    effects = Effects()
    store, live, bus = FakeStore(effects), FakeLive(effects), FakeBus(effects)
    records = CallRecords(store, bus, live, CallJournal(tmp_path / "journal"))
    call = a_call("j1")
    store.down = True
    await records.save(call)  # no exception: the call goes on
    assert records.journaled == {"j1"} and "j1" not in store.calls
    assert "j1" in live.active  # consoles still see the call

    assert await records.drain_journal() == (0, 1)  # still down: kept
    store.down = False
    assert await records.drain_journal() == (1, 0)
    assert store.calls["j1"].id == "j1" and records.journaled == frozenset()

    call.transition(CallState.CONNECTED)
    await records.save(call)
    assert store.calls["j1"].state is CallState.CONNECTED
