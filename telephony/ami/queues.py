"""Desk queues on Asterisk: moving a caller into a desk's queue with a priority, changing that priority, and
the call takers' queue membership (added, paused, removed; the tracker mirrors what Asterisk reports)."""

from __future__ import annotations

import asyncio
import logging

from telephony.ami.actions import AmiActions
from telephony.ami.client import ActionResult
from telephony.ami.config import AmiConfig, PriorityResult, RedirectResult
from telephony.ami.errors import AmiActionError, AmiError
from telephony.ami.members import QueueMemberState
from telephony.ami.tracker import AmiCallTracker

log = logging.getLogger(__name__)


class QueueCommands:
    def __init__(self, config: AmiConfig, tracker: AmiCallTracker, actions: AmiActions) -> None:
        self.config = config
        self.tracker = tracker
        self._actions = actions

    async def redirect_to_queue(self, channel: str, desk_number: str, priority: int = 0) -> RedirectResult:
        """Move a caller to desk ``desk_number``'s queue (``<context>,<desk>,<redirect_priority>``) with a
        queue priority (higher is served first)."""
        if not desk_number.isdigit():
            raise AmiActionError("Redirect", f"desk number must be digits, got {desk_number!r}")
        queue = self.config.queue_for_desk(desk_number)
        await self._actions.run(
            "Setvar", [("Channel", channel), ("Variable", "QUEUE_PRIO"), ("Value", str(priority))]
        )
        joined = self._actions.expect_event("QueueCallerJoin", ("Channel", channel), ("Queue", queue))
        self.tracker.note_redirect(channel)
        try:
            redirect = await self._actions.run(
                "Redirect",
                [
                    ("Channel", channel),
                    ("Context", self.config.emergency_context),
                    ("Exten", desk_number),
                    ("Priority", str(self.config.redirect_priority)),
                ],
            )
        except AmiError:
            self.tracker.note_redirect_failed(channel)
            self._actions.forget_waiter(joined)
            raise
        if priority == 0 or not self.config.apply_priority_after_join:
            self._actions.forget_waiter(joined)
            return RedirectResult(redirect, queue, priority, priority_applied=priority == 0)
        try:
            await asyncio.wait_for(asyncio.shield(joined), self.config.redirect_join_timeout_s)
        except TimeoutError:
            self._actions.forget_waiter(joined)
            log.warning(
                "AMI redirect of %s: no QueueCallerJoin %s; priority %d not applied", channel, queue, priority
            )
            return RedirectResult(
                redirect, queue, priority, False, f"caller did not join {queue} within the timeout"
            )
        change = await self._change_priority(channel, queue, priority)
        return RedirectResult(redirect, queue, priority, change.applied, change.detail)

    async def change_priority(self, channel: str, desk_number: str, priority: int) -> PriorityResult:
        """Give a caller waiting in desk ``desk_number``'s queue a new queue priority (higher is served
        first; ``QueueChangePriorityCaller`` with ``Immediate``: the caller moves to its new place now)."""
        return await self._change_priority(channel, self.config.queue_for_desk(desk_number), priority)

    async def _change_priority(self, channel: str, queue: str, priority: int) -> PriorityResult:
        try:
            change = await self._actions.run(
                "QueueChangePriorityCaller",
                [("Queue", queue), ("Caller", channel), ("Priority", str(priority)), ("Immediate", "yes")],
            )
        except AmiActionError as exc:
            # "No such caller": the caller is no longer waiting in that queue. If a taker answered meanwhile
            # (often within milliseconds of joining a desk with a free taker) or the caller left, there is
            # no priority to change and nothing went wrong; only a caller still waiting there is a failure.
            call = self.tracker.call_for_channel(channel)
            if call is None:
                return PriorityResult(queue, priority, False, f"caller {channel} gone before the change")
            if call.taker is not None:
                return PriorityResult(
                    queue, priority, False, f"caller already answered by {call.taker}; no change needed"
                )
            if call.queue != queue:
                return PriorityResult(
                    queue, priority, False, f"caller now waits in {call.queue}, not {queue}"
                )
            raise AmiActionError(exc.action, f"{exc.message} (caller {channel} in {queue})") from exc
        call = self.tracker.call_for_channel(channel)
        if call is not None:
            call.queue_priority = str(priority)
        return PriorityResult(queue, priority, True, change.message)

    async def queue_add(
        self, queue: str, interface: str, member_name: str, penalty: int = 0, paused: bool = False
    ) -> ActionResult:
        fields = [
            ("Queue", queue),
            ("Interface", interface),
            ("MemberName", member_name),
            ("Penalty", str(penalty)),
        ]
        if paused:
            fields.append(("Paused", "true"))
        return await self._actions.run("QueueAdd", fields)

    async def queue_pause(self, queue: str, interface: str, paused: bool, reason: str = "") -> ActionResult:
        fields = [("Queue", queue), ("Interface", interface), ("Paused", "true" if paused else "false")]
        if reason:
            fields.append(("Reason", reason))
        return await self._actions.run("QueuePause", fields)

    async def queue_remove(self, queue: str, interface: str) -> ActionResult:
        return await self._actions.run("QueueRemove", [("Queue", queue), ("Interface", interface)])

    def members(self, queue: str | None = None) -> list[QueueMemberState]:
        return self.tracker.members(queue)

    def is_ready_member(self, queue: str, interface: str) -> bool:
        """Would the PBX ring ``interface`` for a caller in ``queue`` (member, not paused, reachable)?"""
        member = self.tracker.member(queue, interface)
        return member is not None and member.ready
