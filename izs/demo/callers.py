"""Synthetic callers that place real SIP calls: one baresip process per caller, its voice a WAV file.

Why baresip: it is a second, independent SIP/RTP stack (C, libre), so a call it places exercises our endpoint
the way a real phone does (its own Via/Contact/SDP, G.711 PCMU/PCMA, RTP pacing, CANCEL and BYE). Each caller
gets its own config dir in a temp dir: no registrar, ``aufile`` plays the WAV as the microphone (baresip
hangs up by itself when the file ends, so a WAV's trailing silence is how long the caller stays on the
line), ``aubridge`` swallows what the centre plays back. The call is driven and watched over baresip's
``ctrl_tcp`` module (netstring-framed JSON: commands ``dial``/``hangup``/``quit``, events
``CALL_ESTABLISHED``, ``CALL_CLOSED``, ...), which needs the ``menu`` module for its commands.

Everything is bounded: each process is started with a deadline, every wait has a timeout, and every process
is killed at the end whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from intake.errors import IzsError
from telephony.events import utc_now

log = logging.getLogger(__name__)

BARESIP_MODULE_DIRS = (Path("/usr/lib/baresip/modules"), Path("/usr/local/lib/baresip/modules"))
CONTROL_CONNECT_TIMEOUT_S = 8.0
QUIT_TIMEOUT_S = 3.0
MAX_NETSTRING = 1 << 20


class CallerError(IzsError):
    """A synthetic caller could not be started or driven (baresip missing, control channel failed)."""

    error_id = "synthetic_caller_failed"


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """One call to place. ``at_s``: seconds after the fleet starts; ``hangup_after_s``: the caller gives up
    this long after dialling (None: stays until the WAV ends or the centre hangs up)."""

    label: str
    wav: Path
    target: str  # SIP URI to dial, e.g. sip:155@127.0.0.1:5062
    caller_id: str = "+420603123456"
    at_s: float = 0.0
    hangup_after_s: float | None = None
    codec: str = "PCMU"  # first codec offered: "PCMU" or "PCMA"
    max_duration_s: float = 300.0


@dataclass(slots=True)
class CallOutcome:
    """What happened to one placed call, as the caller saw it."""

    label: str
    target: str
    caller_id: str
    sent_at: datetime | None = None
    answered: bool = False
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    reason: str = ""
    sip_call_id: str | None = None  # the INVITE's Call-ID: intake's call_ref for SIP calls
    hung_up_by_caller: bool = False
    events: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.sent_at is not None


CallerEventHandler = Callable[[CallOutcome, str], None]


def find_baresip() -> tuple[str, Path]:
    binary = shutil.which("baresip")
    modules = next((d for d in BARESIP_MODULE_DIRS if (d / "ctrl_tcp.so").exists()), None)
    if binary is None or modules is None:
        raise CallerError(
            "baresip with its ctrl_tcp module is needed for synthetic callers (Debian: baresip)"
        )
    return binary, modules


def _free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def baresip_config(wav: Path, control_port: int, module_dir: Path, rtp_ports: tuple[int, int]) -> str:
    """A caller's baresip ``config``: loopback only, no sound card, no registrar."""
    lines = [
        ("poll_method", "epoll"),
        ("sip_listen", "127.0.0.1:0"),
        ("call_max_calls", "1"),
        ("audio_player", "aubridge,sink"),
        ("audio_alert", "aubridge,sink"),
        ("audio_source", f"aufile,{wav}"),
        ("ausrc_srate", "8000"),
        ("auplay_srate", "8000"),
        ("ausrc_channels", "1"),
        ("auplay_channels", "1"),
        ("rtp_ports", f"{rtp_ports[0]}-{rtp_ports[1]}"),
        ("module_path", str(module_dir)),
        ("module", "g711.so"),
        ("module", "aufile.so"),
        ("module", "aubridge.so"),
        ("module_app", "account.so"),
        ("module_app", "menu.so"),
        ("module_app", "ctrl_tcp.so"),
        ("ctrl_tcp_listen", f"127.0.0.1:{control_port}"),
    ]
    return "".join(f"{key}\t\t{value}\n" for key, value in lines)


def baresip_account(caller_id: str, codec: str) -> str:
    codecs = "PCMA,PCMU" if codec.upper() == "PCMA" else "PCMU,PCMA"
    user = caller_id or "anonymous"
    return f"<sip:{user}@127.0.0.1>;regint=0;audio_codecs={codecs}\n"


def encode_netstring(obj: dict[str, Any]) -> bytes:
    body = json.dumps(obj).encode()
    return str(len(body)).encode() + b":" + body + b","


class NetstringReader:
    """Incremental netstring decoder (``<len>:<payload>,``) for baresip's control channel."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer.extend(data)
        out: list[bytes] = []
        while True:
            colon = self._buffer.find(b":")
            if colon < 0:
                if len(self._buffer) > 12:
                    raise CallerError(f"malformed netstring header {bytes(self._buffer[:20])!r}")
                return out
            header = bytes(self._buffer[:colon])
            if not header.isdigit():
                raise CallerError(f"malformed netstring header {header[:20]!r}")
            length = int(header)
            if length > MAX_NETSTRING:
                raise CallerError(f"netstring of {length} bytes refused")
            end = colon + 1 + length
            if len(self._buffer) < end + 1:
                return out
            if self._buffer[end : end + 1] != b",":
                raise CallerError("netstring not terminated by ','")
            out.append(bytes(self._buffer[colon + 1 : end]))
            del self._buffer[: end + 1]


class BaresipCaller:
    """One synthetic caller: a baresip process placing one call and reporting what happened."""

    def __init__(
        self,
        plan: PlannedCall,
        work_dir: Path,
        on_event: CallerEventHandler | None = None,
        rtp_ports: tuple[int, int] = (30000, 39999),
    ) -> None:
        self.plan = plan
        self.outcome = CallOutcome(label=plan.label, target=plan.target, caller_id=plan.caller_id)
        self._dir = work_dir
        self._on_event = on_event
        self._rtp_ports = rtp_ports
        self._process: asyncio.subprocess.Process | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._stream_reader: asyncio.StreamReader | None = None
        self._hangup_requested = False

    async def run(self) -> CallOutcome:
        """Place the call and return when it is over (or failed); the process is gone afterwards."""
        plan = self.plan
        deadline = time.monotonic() + plan.max_duration_s
        try:
            reader = await self._start()
            await self._command("dial", plan.target)
            self.outcome.sent_at = utc_now()
            self._notify("dialled")
            hangup_at = time.monotonic() + plan.hangup_after_s if plan.hangup_after_s is not None else None
            await self._follow(reader, deadline, hangup_at)
        except CallerError as exc:
            self.outcome.error = exc.message
            self.outcome.reason = self.outcome.reason or f"failed: {exc.message}"
            log.warning("caller %s: %s", plan.label, exc.message)
        finally:
            await self._stop()
        if self.outcome.ended_at is None:
            self.outcome.ended_at = utc_now()
        return self.outcome

    async def hangup(self) -> None:
        """Hang up now (abandon while ringing/queued, or end an answered call)."""
        self._hangup_requested = True
        if self._writer is not None:
            with contextlib.suppress(OSError, CallerError):
                await self._command("hangup", "")

    # ------------------------------------------------------------------------------------------ internals

    async def _start(self) -> NetstringReader:
        binary, modules = find_baresip()
        plan = self.plan
        self._dir.mkdir(parents=True, exist_ok=True)
        (self._dir / "accounts").write_text(baresip_account(plan.caller_id, plan.codec), encoding="utf-8")
        last_error = ""
        # The control port is picked free then handed to baresip, so another process may grab it first:
        # a few tries, each with a fresh port.
        for _attempt in range(4):
            port = _free_tcp_port()
            (self._dir / "config").write_text(
                baresip_config(plan.wav, port, modules, self._rtp_ports), encoding="utf-8"
            )
            log_path = self._dir / "baresip.log"
            with log_path.open("ab") as log_file:
                self._process = await asyncio.create_subprocess_exec(
                    binary,
                    "-f",
                    str(self._dir),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=asyncio.subprocess.STDOUT,
                )
            connect_deadline = time.monotonic() + CONTROL_CONNECT_TIMEOUT_S
            while time.monotonic() < connect_deadline:
                if self._process.returncode is not None:
                    last_error = f"baresip exited with {self._process.returncode} (log: {log_path})"
                    break
                try:
                    stream_reader, writer = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", port), timeout=1.0
                    )
                except (OSError, TimeoutError) as exc:
                    last_error = f"control channel 127.0.0.1:{port} not reachable: {exc}"
                    await asyncio.sleep(0.05)
                    continue
                self._writer = writer
                self._stream_reader = stream_reader
                return NetstringReader()
            await self._stop()
        raise CallerError(f"baresip did not start: {last_error}")

    async def _command(self, command: str, params: str) -> None:
        if self._writer is None:
            raise CallerError("baresip control channel not open")
        try:
            self._writer.write(encode_netstring({"command": command, "params": params, "token": command}))
            await asyncio.wait_for(self._writer.drain(), timeout=2.0)
        except (OSError, TimeoutError) as exc:
            raise CallerError(f"cannot send {command!r} to baresip: {exc}") from exc

    async def _follow(self, reader: NetstringReader, deadline: float, hangup_at: float | None) -> None:
        outcome = self.outcome
        while True:
            now = time.monotonic()
            if now >= deadline:
                outcome.reason = outcome.reason or "caller gave up: call longer than its time limit"
                await self.hangup()
                return
            if hangup_at is not None and now >= hangup_at and not self._hangup_requested:
                outcome.hung_up_by_caller = True
                self._notify("hanging up")
                await self.hangup()
                # Wait for CALL_CLOSED, but not for ever.
                deadline = min(deadline, now + 5.0)
            wake = min(
                deadline, hangup_at if hangup_at is not None and not self._hangup_requested else deadline
            )
            if self._stream_reader is None:
                raise CallerError("baresip control channel not open")
            try:
                data = await asyncio.wait_for(self._stream_reader.read(65536), timeout=max(0.05, wake - now))
            except TimeoutError:
                continue
            except OSError as exc:
                raise CallerError(f"baresip control channel failed: {exc}") from exc
            if not data:
                outcome.reason = outcome.reason or "baresip closed its control channel"
                return
            for payload in reader.feed(data):
                try:
                    message = json.loads(payload)
                except json.JSONDecodeError:
                    log.warning("caller %s: unreadable control message %r", self.plan.label, payload[:80])
                    continue
                if self._handle(message):
                    return

    def _handle(self, message: dict[str, Any]) -> bool:
        """Apply one control message; True when the call is over."""
        outcome = self.outcome
        if message.get("response"):
            if not message.get("ok", False):
                raise CallerError(f"baresip refused {message.get('token')!r}: {message.get('data')!r}")
            return False
        if not message.get("event"):
            return False
        kind = str(message.get("type", ""))
        outcome.events.append(kind)
        if message.get("id") and outcome.sip_call_id is None:
            outcome.sip_call_id = str(message["id"])
        if kind == "CALL_ESTABLISHED":
            outcome.answered = True
            outcome.answered_at = utc_now()
            self._notify("answered")
        elif kind in ("CALL_RINGING", "CALL_PROGRESS"):
            self._notify("ringing")
        elif kind == "CALL_CLOSED":
            outcome.ended_at = utc_now()
            param = str(message.get("param", ""))
            outcome.reason = outcome.reason or (
                "caller hung up" if self._hangup_requested else param or "closed"
            )
            if param == "end of file":
                outcome.reason = "caller finished speaking and hung up"
                outcome.hung_up_by_caller = True
            self._notify("ended")
            return True
        return False

    def _notify(self, what: str) -> None:
        if self._on_event is not None:
            self._on_event(self.outcome, what)

    async def _stop(self) -> None:
        writer, self._writer = self._writer, None
        process, self._process = self._process, None
        if writer is not None:
            with contextlib.suppress(OSError, TimeoutError):
                writer.write(encode_netstring({"command": "quit", "params": "", "token": "quit"}))
                await asyncio.wait_for(writer.drain(), timeout=1.0)
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), timeout=1.0)
        if process is None:
            return
        try:
            await asyncio.wait_for(process.wait(), timeout=QUIT_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        except asyncio.CancelledError:
            # The fleet is being torn down: never leave a caller process running behind it.
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise


class CallerFleet:
    """Places many calls with given timing, each from its own baresip process, and reports every outcome.

    ``async with CallerFleet() as fleet: outcomes = await fleet.run(plans)``. ``hangup(label)`` makes a
    caller give up early. Work dirs live in a temp dir removed at the end (``keep_dir`` keeps it for
    post-mortems).
    """

    def __init__(
        self,
        on_event: CallerEventHandler | None = None,
        work_dir: Path | None = None,
        keep_dir: bool = False,
        rtp_ports: tuple[int, int] = (30000, 39999),
    ) -> None:
        find_baresip()
        self._on_event = on_event
        self._own_dir = work_dir is None
        self._dir = work_dir or Path(tempfile.mkdtemp(prefix="izs-callers-"))
        self._keep = keep_dir
        self._rtp_ports = rtp_ports
        self._callers: dict[str, BaresipCaller] = {}
        self._tasks: list[asyncio.Task[CallOutcome]] = []

    @property
    def work_dir(self) -> Path:
        return self._dir

    async def __aenter__(self) -> CallerFleet:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self, plans: Sequence[PlannedCall]) -> list[asyncio.Task[CallOutcome]]:
        """Schedule ``plans`` (each at its ``at_s`` from now); returns one task per call."""
        labels = [p.label for p in plans]
        if len(set(labels)) != len(labels) or set(labels) & set(self._callers):
            raise CallerError("every planned call needs a unique label")
        started = time.monotonic()
        tasks = []
        for index, plan in enumerate(plans):
            caller = BaresipCaller(
                plan, self._dir / f"{index:03d}-{_safe(plan.label)}", self._on_event, self._rtp_ports
            )
            self._callers[plan.label] = caller
            task = asyncio.create_task(self._place(caller, started + plan.at_s), name=f"caller-{plan.label}")
            tasks.append(task)
        self._tasks.extend(tasks)
        return tasks

    async def run(self, plans: Sequence[PlannedCall], timeout_s: float | None = None) -> list[CallOutcome]:
        """Place ``plans`` and wait for every call to end; outcomes in the order of ``plans``."""
        tasks = self.start(plans)
        limit = timeout_s or max((p.at_s + p.max_duration_s for p in plans), default=0.0) + 30.0
        done, pending = await asyncio.wait(tasks, timeout=limit)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        outcomes = []
        for plan, task in zip(plans, tasks, strict=True):
            if task in done and not task.cancelled() and task.exception() is None:
                outcomes.append(task.result())
            else:
                outcome = self._callers[plan.label].outcome
                outcome.error = outcome.error or "caller did not finish in time"
                outcomes.append(outcome)
        return outcomes

    async def hangup(self, label: str) -> None:
        caller = self._callers.get(label)
        if caller is None:
            raise CallerError(f"no caller {label!r}")
        await caller.hangup()

    def outcome(self, label: str) -> CallOutcome:
        return self._callers[label].outcome

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._own_dir and not self._keep:
            shutil.rmtree(self._dir, ignore_errors=True)

    @staticmethod
    async def _place(caller: BaresipCaller, at: float) -> CallOutcome:
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        return await caller.run()


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:40]
