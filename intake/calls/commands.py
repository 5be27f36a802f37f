"""A call taker accepts a call from the console, and commands between nodes: the node that holds a call's
media does what a console on another node asked for, and answers on the request's own reply list."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

from intake.calls.session import CallSession, SessionRegistry
from intake.desks import Offer
from intake.domain import Call
from intake.errors import Conflict, IllegalTransition, IzsError, LiveStateError, NotFound
from intake.ports import CallReader, Clock, NodeChannel
from routing.vocabulary import DeskCode

log = logging.getLogger(__name__)

ACCEPT_REPLY_TIMEOUT_S = 5.0
REPLY_TTL_MS = 30_000  # a reply nobody waits for any more expires

Connect = Callable[[CallSession, str | None, datetime], Awaitable[None]]
OnOffer = Callable[[Offer], Awaitable[None]]
FollowIncident = Callable[[CallSession], Awaitable[None]]


class NodeCommands:
    def __init__(
        self,
        registry: SessionRegistry,
        store: CallReader,
        node: str,
        clock: Clock,
        connect: Connect,
        on_offer: OnOffer,
        follow_incident: FollowIncident,
        nodes: NodeChannel | None = None,
        accept_timeout_s: float = ACCEPT_REPLY_TIMEOUT_S,
    ) -> None:
        self._registry = registry
        self._store = store
        self._node = node
        self._clock = clock
        self._connect = connect
        self._on_offer = on_offer
        self._follow_incident = follow_incident
        self._nodes = nodes
        self._accept_timeout_s = accept_timeout_s

    async def get(self, call_id: str) -> Call:
        session = self._registry.by_id(call_id)
        if session is not None:
            return session.call
        return await asyncio.to_thread(self._store.get_call, call_id)

    async def accept(self, call_id: str, taker_id: str) -> Call:
        """A call taker takes the call from the console (console-only desks, or a PBX desk phone).

        The node holding the call's media does it; a console connected to another node has its command
        forwarded there over Redis and completes on that node's reply.
        """
        session = self._registry.by_id(call_id)
        if session is None:
            call = await self.get(call_id)
            if call.is_live and call.node and call.node != self._node and self._nodes is not None:
                return await self._forward_accept(call, taker_id)
            raise IllegalTransition(f"call {call_id} is {call.state.value}, not waiting", call_id=call_id)
        # The state machine decides: a hang-up that won the race turns this into IllegalTransition.
        await self._connect(session, taker_id, self._clock.now())
        return session.call

    async def _forward_accept(self, call: Call, taker_id: str) -> Call:
        assert self._nodes is not None
        reply_to = f"accept:{uuid.uuid4().hex}"
        await self._nodes.publish(
            f"node:{call.node}",
            {"command": "accept", "call_id": call.id, "taker_id": taker_id, "reply_to": reply_to},
        )
        reply = await self._nodes.wait_reply(reply_to, self._accept_timeout_s)
        if reply is None:
            raise Conflict(
                f"node {call.node} holding call {call.id} did not answer the accept within "
                f"{self._accept_timeout_s:g} s",
                call_id=call.id,
                node=call.node,
            )
        if reply.get("ok") is True:
            return await asyncio.to_thread(self._store.get_call, call.id)
        message = str(reply.get("message") or "refused")
        if reply.get("error") == "illegal_transition":
            raise IllegalTransition(message, call_id=call.id)
        if reply.get("error") == "not_found":
            raise NotFound(message, call_id=call.id)
        raise Conflict(f"node {call.node}: {message}", call_id=call.id, node=call.node)

    async def serve(self, stopping: asyncio.Event) -> None:
        """Commands other nodes forward for calls this node holds (a console on node B accepts a call
        whose media node A holds)."""
        assert self._nodes is not None
        backoff = 0.5
        while not stopping.is_set():
            try:
                async for command in self._nodes.subscribe(f"node:{self._node}"):
                    backoff = 0.5
                    await self.run(command)
                    if stopping.is_set():
                        return
            except LiveStateError as exc:
                log.error("node command channel unavailable: %s", exc)
            await asyncio.sleep(backoff)
            backoff = min(5.0, backoff * 2)

    async def run(self, command: dict[str, object]) -> None:
        """One forwarded command; an accept is answered on its reply list whatever the outcome."""
        reply: dict[str, object] = {"ok": True}
        try:
            match command.get("command"):
                case "accept":
                    await self.accept(str(command["call_id"]), str(command["taker_id"]))
                case "offer":
                    await self._on_offer(
                        Offer(
                            call_id=str(command["call_id"]),
                            taker_id=str(command["taker_id"]),
                            desk=DeskCode(str(command["desk"])),
                            priority=int(str(command["priority"])),
                        )
                    )
                case "follow_incident":
                    session = self._registry.by_id(str(command["call_id"]))
                    if session is not None:
                        await self._follow_incident(session)
                case _:
                    log.warning("unknown node command ignored: %r", command)
        except IllegalTransition as exc:
            log.warning("forwarded command %r refused: %s", command.get("command"), exc)
            reply = {"ok": False, "error": "illegal_transition", "message": exc.message}
        except NotFound as exc:
            log.warning("forwarded command %r refused: %s", command.get("command"), exc)
            reply = {"ok": False, "error": "not_found", "message": exc.message}
        except (KeyError, ValueError) as exc:
            log.warning("forwarded command %r refused: %s", command.get("command"), exc)
            reply = {"ok": False, "error": "bad_command", "message": str(exc)}
        except IzsError as exc:  # storage or Redis failed under the command: the requester hears why
            log.error("forwarded command %r failed: %s", command.get("command"), exc)
            reply = {"ok": False, "error": "failed", "message": str(exc)}
        reply_to = command.get("reply_to")
        if isinstance(reply_to, str) and reply_to and self._nodes is not None:
            try:
                await self._nodes.send_reply(reply_to, reply, REPLY_TTL_MS)
            except LiveStateError as exc:
                log.error("reply to forwarded %r not sent: %s", command.get("command"), exc)
