"""Offers and cross-node commands, each collaborator built directly with fakes and an injected clock."""

from __future__ import annotations

import pytest
from calls_fakes import Effects, FakeClock, FakeDesks, FakeLive, FakeStore, a_call

from intake.calls.commands import NodeCommands
from intake.calls.controls import CallControls
from intake.calls.offers import Offers
from intake.calls.records import CallRecords
from intake.calls.session import BackgroundTasks, CallSession, SessionRegistry
from intake.desks import Offer
from intake.domain import CallState, TakerState
from intake.errors import Conflict, IllegalTransition
from routing.vocabulary import DeskCode


def offers_rig(clock: FakeClock) -> tuple[Offers, SessionRegistry, FakeDesks, FakeStore, FakeLive, Effects]:
    effects = Effects()
    store, live = FakeStore(effects), FakeLive(effects)
    desks = FakeDesks(effects, live)
    registry = SessionRegistry()
    records = CallRecords(store, _NoBus(), live)
    offers = Offers(
        registry,
        records,
        CallControls(),
        desks,
        store,
        "node-a",
        clock,
        BackgroundTasks(),
        nodes=live,
        queues=live,
    )
    return offers, registry, desks, store, live, effects


class _NoBus:
    async def publish(self, event: object) -> None:
        return None


async def test_an_offer_nobody_takes_goes_back_to_the_queue_and_pauses_the_taker() -> None:
    clock = FakeClock()
    offers, registry, desks, _store, _live, _effects = offers_rig(clock)
    session = CallSession(call=a_call("c1"))
    registry.add(session)
    await offers.on_offer(Offer(call_id="c1", taker_id="jana", desk=DeskCode.ZZS, priority=2))
    assert session.call.taker_id == "jana"

    clock.advance(19.0)
    assert await offers.expire(20.0) == []  # still within its time
    assert session.call.taker_id == "jana"

    clock.advance(2.0)
    assert await offers.expire(20.0) == ["c1"]
    assert session.call.taker_id is None
    assert desks.taker_state["jana"] is TakerState.PAUSED
    assert desks.queue["c1"][0] is DeskCode.ZZS  # queued again
    assert await offers.expire(20.0) == []  # withdrawn once


async def test_an_offer_for_a_call_held_by_another_node_is_forwarded_there() -> None:
    offers, _registry, _desks, store, live, _effects = offers_rig(FakeClock())
    store.calls["c2"] = a_call("c2", node="node-b")
    await offers.on_offer(Offer(call_id="c2", taker_id="petr", desk=DeskCode.ZZS, priority=1))
    assert live.published == [
        (
            "node:node-b",
            {"command": "offer", "call_id": "c2", "taker_id": "petr", "desk": "ZZS", "priority": 1},
        )
    ]


async def test_queued_calls_missing_from_the_redis_queue_are_queued_again() -> None:
    offers, registry, desks, _store, live, _effects = offers_rig(FakeClock())
    registry.add(CallSession(call=a_call("c3")))
    await offers.requeue_missing()
    assert "c3" in desks.queue and live.queued["c3"] == "ZZS"


def commands_rig(
    node: str, clock: FakeClock, live: FakeLive, store: FakeStore, registry: SessionRegistry
) -> NodeCommands:
    async def connect(session: CallSession, taker_id: str | None, at: object) -> None:
        session.call.transition(CallState.CONNECTED)
        session.call.taker_id = taker_id
        store.save_call(session.call)

    async def nothing(_: object) -> None:
        return None

    return NodeCommands(
        registry, store, node, clock, connect, nothing, nothing, nodes=live, accept_timeout_s=0.1
    )


async def test_accept_of_a_call_held_by_another_node_completes_on_that_nodes_reply() -> None:
    effects, clock = Effects(), FakeClock()
    store, live = FakeStore(effects), FakeLive(effects)
    held_on_a = SessionRegistry()
    held_on_a.add(CallSession(call=a_call("c4", node="node-a")))
    store.calls["c4"] = a_call("c4", node="node-a")
    node_a = commands_rig("node-a", clock, live, store, held_on_a)
    node_b = commands_rig("node-b", clock, live, store, SessionRegistry())

    async def deliver(topic: str, event: dict[str, object]) -> None:
        if topic == "node:node-a":
            await node_a.run(event)

    live.on_publish = deliver
    call = await node_b.accept("c4", "jana")
    assert call.state is CallState.CONNECTED and call.taker_id == "jana"
    [(topic, command)] = live.published
    assert topic == "node:node-a" and str(command["reply_to"]).startswith("accept:")


async def test_the_owning_node_answers_a_refused_accept_and_the_console_hears_why() -> None:
    effects, clock = Effects(), FakeClock()
    store, live = FakeStore(effects), FakeLive(effects)
    store.calls["c5"] = a_call("c5", node="node-a")  # the record still says waiting ...
    held = SessionRegistry()
    held.add(CallSession(call=a_call("c5", state=CallState.ABANDONED)))  # ... the caller just hung up
    node_a = commands_rig("node-a", clock, live, store, held)
    node_b = commands_rig("node-b", clock, live, store, SessionRegistry())

    async def deliver(topic: str, event: dict[str, object]) -> None:
        if topic == "node:node-a":
            await node_a.run(event)

    live.on_publish = deliver
    with pytest.raises(IllegalTransition, match="abandoned -> connected"):
        await node_b.accept("c5", "jana")
    [(_, command)] = live.published
    assert live.replies[str(command["reply_to"])] == []  # answered once, and taken


async def test_accept_forwarded_to_a_silent_node_fails_clearly_at_its_deadline() -> None:
    effects, clock = Effects(), FakeClock()
    store, live = FakeStore(effects), FakeLive(effects)
    store.calls["c7"] = a_call("c7", node="node-a")
    node_b = commands_rig("node-b", clock, live, store, SessionRegistry())
    with pytest.raises(Conflict, match=r"node-a holding call c7 did not answer the accept within 0\.1 s"):
        await node_b.accept("c7", "jana")


async def test_accept_of_a_call_nobody_holds_any_more_is_an_illegal_transition() -> None:
    effects, clock = Effects(), FakeClock()
    store, live = FakeStore(effects), FakeLive(effects)
    store.calls["c8"] = a_call("c8", state=CallState.ENDED, node="node-a")
    node_b = commands_rig("node-b", clock, live, store, SessionRegistry())
    with pytest.raises(IllegalTransition):
        await node_b.accept("c8", "jana")
    assert live.published == []
