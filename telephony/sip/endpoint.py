"""The SIP intake endpoint's I/O shell: a registrar-less SIP UAS (and UAC towards call-taker phones) with
G.711 RTP.

All SIP and media decisions are taken by the pure machines behind :class:`~telephony.sip.core.SipCore`
(:mod:`~telephony.sip.incoming` for the caller's INVITE transaction and dialog,
:mod:`~telephony.sip.taker_legs` for the legs to call takers, :mod:`~telephony.sip.media` for RTP and prompts,
:mod:`~telephony.sip.timers` for retransmission). This class owns the sockets and threads, feeds datagrams,
RTP packets and 20 ms ticks to the core under one lock with the monotonic clock, and executes the actions
it returns.

Threads (all owned by one SipEndpoint, none at import time):
- ``sip``: receives SIP datagrams.
- ``media``: one selector over every call's RTP socket plus the 20 ms tick.
- ``events``: hands events to the EventSink from a queue, so a slow sink never stalls SIP or RTP.

Why not pyVoIP's VoIPPhone: see docs/telephony-sip.md (measured defects; pyVoIP's parser drops baresip's
INVITEs, replies go to the configured server instead of the Via address, CANCEL leads to an answered call, and
the package imports the removed-in-3.13 ``audioop``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import random
import selectors
import socket
import threading
import time

from telephony.events import AdapterStatus, AudioFrame, TelephonyEvent
from telephony.ports import EventSink
from telephony.sip.config import SipEndpointConfig
from telephony.sip.core import SipCore
from telephony.sip.dialog import (
    Action,
    Emit,
    Local,
    MediaLeg,
    Send,
    SendRtp,
    SettleTaker,
    StartMedia,
    StopMedia,
)
from telephony.sip.errors import EndpointNotRunningError, TakerUnavailableError
from telephony.sip.media import resample_to_8k
from telephony.sip.message import parse_uri

log = logging.getLogger(__name__)

ADAPTER_NAME = "sip"
TICK_S = 0.020
_RTP_BURST = 64  # datagrams read from one RTP socket per wake-up, so one flooded socket cannot starve others


class SipEndpoint:
    """Registrar-less SIP intake endpoint. Implements ``telephony.ports.CallControl``.

    ``start()``/``stop()`` are synchronous (start returns once the SIP socket is bound). The CallControl
    commands are ``async`` wrappers around thread-safe synchronous methods (``play_prompt_sync``,
    ``begin_connect_to_taker``, ``hangup_sync``) that never block the event loop.
    """

    def __init__(self, config: SipEndpointConfig, sink: EventSink) -> None:
        self._config = config
        self._sink = sink
        self._lock = threading.RLock()
        self._core = SipCore(Local(config.advertised_host(), config.port, config.user_agent), config, self)
        self._rtp_sockets: dict[int, socket.socket] = {}
        self._events: queue.SimpleQueue[TelephonyEvent | None] = queue.SimpleQueue()
        self._selector = selectors.DefaultSelector()
        self._media_commands: queue.SimpleQueue[Action] = queue.SimpleQueue()
        self._sip_socket: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._running = threading.Event()
        self._dropped_frames = 0
        self._timers_ran_until = 0.0

    # ----------------------------------------------------------------------------------- lifecycle

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the SIP socket is bound to."""
        if self._sip_socket is None:
            raise EndpointNotRunningError("SIP endpoint not started")
        host, port = self._sip_socket.getsockname()[:2]
        return host, port

    @property
    def rejected_datagrams(self) -> int:
        return self._core.rejected_datagrams

    @property
    def dropped_frames(self) -> int:
        """AudioFrames dropped because the sink fell more than ``max_event_backlog`` events behind."""
        return self._dropped_frames

    def active_calls(self) -> list[str]:
        with self._lock:
            return self._core.active_calls()

    @property
    def timers_ran_until(self) -> float:
        """The ``time.monotonic()`` instant of the last timer tick processed (ring time, retransmissions,
        media timeouts, prompts): every timer due before it has fired. 0.0 before the first tick."""
        return self._timers_ran_until

    def prompt_playing(self, call_ref: str) -> bool:
        """Whether a prompt is still being played to the caller (a non-looped one ends by itself)."""
        with self._lock:
            call = self._core.table.calls.get(call_ref)
            return call is not None and call.prompt is not None

    def start(self) -> None:
        if self._running.is_set():
            return
        sip_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sip_socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        try:
            sip_socket.bind((self._config.host, self._config.port))
        except OSError as exc:
            sip_socket.close()
            raise EndpointNotRunningError(
                f"cannot bind SIP socket {self._config.host}:{self._config.port}: {exc}"
            ) from exc
        sip_socket.settimeout(0.2)
        self._sip_socket = sip_socket
        self._core.local.port = self.address[1]
        self._running.set()
        for name, target in (
            ("events", self._dispatch_loop),
            ("sip", self._sip_loop),
            ("media", self._media_loop),
        ):
            thread = threading.Thread(target=target, name=f"sip-endpoint-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        host, port = self.address
        log.info("SIP endpoint listening on %s:%d (UDP)", host, port)
        self._emit(AdapterStatus(ADAPTER_NAME, True, f"listening on udp {host}:{port}"))

    def stop(self) -> None:
        if not self._running.is_set():
            return
        with self._lock:
            self._execute(self._core.stop_all(time.monotonic()))
        self._emit(AdapterStatus(ADAPTER_NAME, False, "stopped"))
        self._running.clear()
        self._events.put(None)
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        if self._sip_socket is not None:
            self._sip_socket.close()
        self._selector.close()
        with self._lock:
            for rtp_socket in self._rtp_sockets.values():
                rtp_socket.close()
            self._rtp_sockets.clear()

    def __enter__(self) -> SipEndpoint:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------ CallControl

    async def play_prompt(self, call_ref: str, pcm: bytes, sample_rate: int, loop: bool = True) -> None:
        self.play_prompt_sync(call_ref, pcm, sample_rate, loop)

    async def connect_to_taker(self, call_ref: str, taker_uri: str, priority: int) -> None:
        """Call the taker's phone; returns when it answered and audio is relayed both ways.

        Raises TakerUnavailableError when the phone rejects, does not answer in time or the caller hangs up.
        """
        begin = asyncio.ensure_future(
            asyncio.to_thread(self.begin_connect_to_taker, call_ref, taker_uri, priority)
        )
        try:
            future = await asyncio.shield(begin)
        except asyncio.CancelledError:
            # Cancelled while the INVITE was being sent: give up as soon as it is out.
            begin.add_done_callback(lambda done: self._give_up_started_taker(call_ref, done))
            raise
        try:
            await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            self._give_up_taker(call_ref, future)  # intake stopped waiting: do not leave the phone ringing
            raise

    def _give_up_started_taker(
        self, call_ref: str, begin: asyncio.Future[concurrent.futures.Future[None]]
    ) -> None:
        if not begin.cancelled() and begin.exception() is None:
            self._give_up_taker(call_ref, begin.result())

    def _give_up_taker(self, call_ref: str, future: concurrent.futures.Future[None]) -> None:
        with self._lock:
            self._execute(self._core.give_up_taker(call_ref, future, time.monotonic()))

    async def hangup(self, call_ref: str) -> None:
        self.hangup_sync(call_ref)

    def play_prompt_sync(self, call_ref: str, pcm: bytes, sample_rate: int, loop: bool = True) -> None:
        """Play 16-bit mono PCM to the caller in the call's codec (answering it first if still ringing).

        Empty ``pcm`` stops the prompt. The prompt is muted while a call taker is connected.
        """
        samples = resample_to_8k(pcm, sample_rate)
        with self._lock:
            self._require_running()
            self._execute(self._core.play_prompt(call_ref, samples, loop, time.monotonic()))

    def hangup_sync(self, call_ref: str) -> None:
        with self._lock:
            self._require_running()
            self._execute(self._core.hangup(call_ref, time.monotonic()))

    def begin_connect_to_taker(
        self, call_ref: str, taker_uri: str, priority: int
    ) -> concurrent.futures.Future[None]:
        """Send the INVITE to the taker's phone; the future completes when it answers (or fails)."""
        uri = parse_uri(taker_uri)
        port = uri.port or 5060
        try:
            address = socket.getaddrinfo(uri.host, port, socket.AF_INET, socket.SOCK_DGRAM)[0][4][:2]
        except OSError as exc:
            raise TakerUnavailableError(taker_uri, None, f"cannot resolve {uri.host}: {exc}") from exc
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        signal_address = (str(address[0]), int(address[1]))
        with self._lock:
            self._require_running()
            now = time.monotonic()
            self._execute(
                self._core.connect_to_taker(call_ref, taker_uri, signal_address, priority, future, now)
            )
        log.info("call %s: calling taker %s (priority %d)", call_ref, taker_uri, priority)
        return future

    def _require_running(self) -> None:
        if not self._running.is_set():
            raise EndpointNotRunningError("SIP endpoint not running")

    # --------------------------------------------------------------------------- RtpPorts (for the core)

    def open(self) -> int:
        """Bind an RTP socket (in the configured range, or any port); its local port."""
        rtp_socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        low, high = self._config.rtp_port_min, self._config.rtp_port_max
        try:
            if low <= 0 or high < low:
                rtp_socket.bind((self._config.host, 0))
            else:
                ports = list(range(low + (low % 2), high + 1, 2))
                random.shuffle(ports)
                for port in ports:
                    try:
                        rtp_socket.bind((self._config.host, port))
                        break
                    except OSError:
                        continue
                else:
                    raise OSError(f"no free RTP port in {low}-{high}")
        except OSError:
            rtp_socket.close()
            raise
        rtp_socket.setblocking(False)
        bound: int = rtp_socket.getsockname()[1]
        self._rtp_sockets[bound] = rtp_socket
        return bound

    # ------------------------------------------------------------------------------ actions

    def _execute(self, actions: list[Action]) -> None:
        """Carry out the core's actions in order (the caller holds the lock)."""
        for action in actions:
            if isinstance(action, Send):
                self._send(action.data, action.address)
            elif isinstance(action, Emit):
                self._emit(action.event)
            elif isinstance(action, SendRtp):
                rtp_socket = self._rtp_sockets.get(action.leg.local_port)
                if rtp_socket is not None:
                    try:
                        rtp_socket.sendto(action.data, action.address)
                    except OSError as exc:
                        log.debug("RTP send on call %s failed: %s", action.leg.call_id, exc)
            elif isinstance(action, SettleTaker):
                if not action.future.done():
                    if action.error is None:
                        action.future.set_result(None)
                    else:
                        action.future.set_exception(action.error)
            else:  # StartMedia / StopMedia: the selector belongs to the media thread
                self._media_commands.put(action)

    def _send(self, data: bytes, address: tuple[str, int]) -> None:
        sip_socket = self._sip_socket
        if sip_socket is None:
            return
        try:
            sip_socket.sendto(data, address)
        except OSError as exc:
            log.warning("SIP send to %s:%d failed: %s", address[0], address[1], exc)

    def _emit(self, event: TelephonyEvent) -> None:
        if isinstance(event, AudioFrame) and self._events.qsize() >= self._config.max_event_backlog:
            self._dropped_frames += 1
            if self._dropped_frames % 1000 == 1:
                log.error(
                    "event sink too slow: %d audio frames dropped so far (backlog %d)",
                    self._dropped_frames,
                    self._events.qsize(),
                )
            return
        self._events.put(event)

    def _dispatch_loop(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                return
            try:
                self._sink(event)
            except Exception:  # the sink is the integrator's code: log it, keep delivering the calls' events
                log.exception("event sink failed on %s", type(event).__name__)

    # ---------------------------------------------------------------------------------- threads

    def _sip_loop(self) -> None:
        assert self._sip_socket is not None
        while self._running.is_set():
            try:
                data, source = self._sip_socket.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError as exc:
                if self._running.is_set():
                    log.error("SIP socket receive failed: %s", exc)
                    self._emit(AdapterStatus(ADAPTER_NAME, False, f"SIP socket error: {exc}"))
                return
            address = (str(source[0]), int(source[1]))
            with self._lock:
                try:
                    actions = self._core.on_datagram(data, address, time.monotonic())
                except (
                    Exception
                ) as exc:  # a bug on one datagram must not stop SIP for other calls: log, go on
                    log.exception("unexpected error handling a SIP datagram from %s:%s", *address)
                    actions = self._core.answer_after_bug(data, address, exc)
                self._execute(actions)

    def _media_loop(self) -> None:
        next_tick = time.monotonic() + TICK_S
        while self._running.is_set():
            self._apply_media_commands()
            timeout = max(0.0, next_tick - time.monotonic())
            ready = self._selector.select(timeout) if self._selector.get_map() else _sleep(timeout)
            try:
                for key, _ in ready:
                    self._drain_rtp(key.data)
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = next_tick + TICK_S if now - next_tick < 0.2 else now + TICK_S
                    with self._lock:
                        self._execute(self._core.tick(now))
                    self._timers_ran_until = now
            except Exception:  # media for every other call must go on: log the bug, keep the thread alive
                log.exception("unexpected error in the RTP/timer loop")
        self._apply_media_commands()
        for key in list(self._selector.get_map().values()):
            self._selector.unregister(key.fileobj)
            self._close_rtp(key.data)

    def _apply_media_commands(self) -> None:
        while True:
            try:
                command = self._media_commands.get_nowait()
            except queue.Empty:
                return
            if isinstance(command, StartMedia):
                rtp_socket = self._rtp_sockets.get(command.leg.local_port)
                if rtp_socket is not None:
                    self._selector.register(rtp_socket, selectors.EVENT_READ, command.leg)
            elif isinstance(command, StopMedia):
                rtp_socket = self._rtp_sockets.get(command.leg.local_port)
                if rtp_socket is not None:
                    with contextlib.suppress(KeyError, ValueError):
                        self._selector.unregister(rtp_socket)
                self._close_rtp(command.leg)

    def _close_rtp(self, leg: MediaLeg) -> None:
        with self._lock:
            rtp_socket = self._rtp_sockets.pop(leg.local_port, None)
        if rtp_socket is not None:
            rtp_socket.close()

    def _drain_rtp(self, leg: MediaLeg) -> None:
        rtp_socket = self._rtp_sockets.get(leg.local_port)
        if rtp_socket is None:
            return
        received: list[tuple[bytes, tuple[str, int]]] = []
        for _ in range(_RTP_BURST):
            try:
                data, source = rtp_socket.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.warning("RTP receive on call %s failed: %s", leg.call_id, exc)
                break
            received.append((data, (str(source[0]), int(source[1]))))
        if not received:
            return
        with self._lock:  # once per burst, not per packet: SIP handling waits less behind the media
            now = time.monotonic()
            for data, source in received:
                self._execute(self._core.on_rtp(leg, data, source, now))


def _sleep(seconds: float) -> list[tuple[selectors.SelectorKey, int]]:
    time.sleep(seconds)
    return []
