"""Replies to node commands on the real Redis (intake.live.LiveState.send_reply / wait_reply)."""

from __future__ import annotations

import asyncio

from intake.live import LiveState


async def test_a_reply_sent_before_or_while_waiting_is_received_once(live_state: LiveState) -> None:
    await live_state.send_reply("accept:early", {"ok": True}, ttl_ms=5000)
    assert await live_state.wait_reply("accept:early", timeout_s=1.0) == {"ok": True}

    async def answer_later() -> None:
        await asyncio.sleep(0.2)  # the owning node works on the command meanwhile
        await live_state.send_reply("accept:late", {"ok": False, "error": "illegal_transition"}, ttl_ms=5000)

    answering = asyncio.create_task(answer_later())
    reply = await live_state.wait_reply("accept:late", timeout_s=3.0)
    await answering
    assert reply == {"ok": False, "error": "illegal_transition"}
    assert await live_state.wait_reply("accept:late", timeout_s=0.2) is None  # taken once


async def test_no_reply_within_the_deadline_is_none_even_past_the_socket_timeout(
    live_state: LiveState,
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await live_state.wait_reply("accept:silent", timeout_s=1.5) is None
    assert loop.time() - started >= 1.4


async def test_an_unclaimed_reply_expires(live_state: LiveState) -> None:
    await live_state.send_reply("accept:gone", {"ok": True}, ttl_ms=100)
    deadline = asyncio.get_running_loop().time() + 5.0
    while await live_state.redis.exists(live_state._reply_key("accept:gone")):
        assert asyncio.get_running_loop().time() < deadline, "reply list never expired"
        await asyncio.sleep(0.05)
