"""Media forks: the caller's audio, copied by Asterisk (ChanSpy) to intake's SIP endpoint for transcription.

A fork is originated when intake asks for it and then kept up while the caller is there: a fork that ends
(its leg hung up, the endpoint restarted, the AMI link was down) is originated again every
``fork_retry_s``. A fork's life is never the call's: only the caller's own Hangup ends the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from telephony.ami.actions import AmiActions
from telephony.ami.client import ActionResult
from telephony.ami.config import AmiConfig, MediaForkResult
from telephony.ami.errors import AmiActionError, AmiConnectionError, AmiError, AmiTimeoutError
from telephony.ami.link import AmiLink
from telephony.ami.tracker import FORK_VARIABLE, AmiCallTracker

log = logging.getLogger(__name__)


class MediaForks:
    def __init__(
        self, config: AmiConfig, tracker: AmiCallTracker, actions: AmiActions, link: AmiLink
    ) -> None:
        self.config = config
        self.tracker = tracker
        self._actions = actions
        self._link = link
        self._wanted: set[str] = set()  # call_refs whose caller audio intake wants forked
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def stop(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def call_ended(self, call_ref: str) -> None:
        self._wanted.discard(call_ref)

    def resume(self) -> None:
        """After a (re)login: fork again every wanted call whose fork ended while the link was down."""
        for call_ref in sorted(self._wanted):
            call = self.tracker.calls.get(call_ref)
            if call is None:
                self._wanted.discard(call_ref)
            elif self._running_fork(call.channel) is None:
                log.warning(
                    "media fork of call %s ended while the AMI link was down: forking again", call_ref
                )
                self._schedule_refork(call_ref)

    async def originate(self, channel: str) -> MediaForkResult:
        """Have Asterisk call the intake SIP endpoint with ChanSpy on ``channel``: the forked audio arrives as
        an INVITE carrying ``X-IZS-Fork-Of: <channel>``. Waits for ``OriginateResponse``.

        From then on the bridge keeps the fork up while the caller is there: a fork that ends (its leg hung
        up, the endpoint restarted) is originated again; it never ends the call. A fork that already runs
        for ``channel`` (seen live, or in the snapshot after a reconnect) is not doubled.
        """
        call = self.tracker.call_for_channel(channel)
        if call is not None:
            self._wanted.add(call.call_ref)
        running = self._running_fork(channel)
        if running is not None:
            log.info("media fork of %s already runs on %s; not originated again", channel, running)
            return MediaForkResult(
                channel, running, "", ActionResult("Originate", True, "already running", "")
            )
        return await self._originate_fork(channel)

    def _running_fork(self, channel: str) -> str | None:
        for fork_channel, spied in self.tracker.forks.items():
            if spied == channel:
                return fork_channel
        return None

    async def _originate_fork(self, channel: str) -> MediaForkResult:
        spy_data = f"{channel},{self.config.spy_options}"
        fields = [
            ("Channel", self.config.fork_endpoint),
            ("Application", "ChanSpy"),
            ("Data", spy_data),
            ("CallerID", self.config.fork_caller_id),
            ("Async", "true"),
            ("Variable", self.config.fork_header_variable(channel)),
            ("Variable", f"{FORK_VARIABLE}={channel}"),
        ]
        conn = self._actions.require_connection("Originate")
        # The ActionID is only known once sent; the OriginateResponse also carries the Data we gave it.
        answered = self._actions.expect_event("OriginateResponse", ("Data", spy_data))
        try:
            queued = await self._actions.send(conn, "Originate", fields)
            watched: set[asyncio.Future[Any]] = {answered, conn.closed}
            await asyncio.wait(
                watched,
                timeout=self.config.originate_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not answered.done():
                if conn.closed.done():
                    raise AmiConnectionError(
                        f"AMI connection lost before the media fork of {channel} was answered"
                    )
                raise AmiTimeoutError(f"no OriginateResponse for the media fork of {channel}")
            response = answered.result()
        finally:
            self._actions.forget_waiter(answered)
        if response.value("Response").lower() != "success":
            raise AmiActionError(
                "Originate",
                f"media fork of {channel} failed (Reason {response.value('Reason')})",
                queued.action_id,
            )
        fork_channel = response.value("Channel")
        self.tracker.note_fork(fork_channel, channel)
        return MediaForkResult(channel, fork_channel, response.value("Uniqueid"), queued)

    def fork_hung_up(self, fork_channel: str, spied: str, cause: str) -> None:
        """A media fork's channel hung up. If its caller is still there, fork again (the fork's life is not
        the call's); the caller's own Hangup, decided from the caller's channel only, ends the call."""
        call = self.tracker.call_for_channel(spied) if spied else None
        if call is None or call.call_ref not in self._wanted:
            return
        log.warning(
            "media fork %s of call %s (%s) ended (cause %s) while the caller is still there: forking again",
            fork_channel,
            call.call_ref,
            spied,
            cause or "?",
        )
        self._schedule_refork(call.call_ref)

    def _schedule_refork(self, call_ref: str) -> None:
        task = self._tasks.get(call_ref)
        if task is not None and not task.done():
            return
        self._tasks[call_ref] = asyncio.get_running_loop().create_task(
            self._keep_fork(call_ref), name=f"ami-refork-{call_ref}"
        )

    async def _keep_fork(self, call_ref: str) -> None:
        """Re-originate the fork of ``call_ref`` every ``fork_retry_s`` until one runs or the caller left."""
        try:
            while not self._link.stopping:
                await asyncio.sleep(self.config.fork_retry_s)
                call = self.tracker.calls.get(call_ref)
                if call is None or call_ref not in self._wanted:
                    return
                if self._running_fork(call.channel) is not None:
                    return
                if not self._link.connected:
                    return  # the resync after the reconnect hands every resumed call a fresh fork
                try:
                    result = await self._originate_fork(call.channel)
                except AmiError as exc:
                    log.warning("media fork of call %s not re-established yet: %s", call_ref, exc)
                    continue
                log.info("media fork of call %s re-established on %s", call_ref, result.fork_channel)
                return
        finally:
            if self._tasks.get(call_ref) is asyncio.current_task():
                del self._tasks[call_ref]
