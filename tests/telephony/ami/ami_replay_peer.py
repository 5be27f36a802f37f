"""A stand-in for Asterisk's manager port that replays recorded AMI sessions over real TCP.

Asterisk is not packaged for Debian 12, so the bridge is tested against its own recordings: for each
accepted connection the peer plays one script of recorded lines in order. ``recv`` lines are written to the
client (recorded ActionIDs replaced by the client's own), ``send`` lines make the peer wait until the client
sends an action of that name, which is kept for the test to compare with the recording. Actions the
recording does not contain but a client legitimately sends (keepalive ``Ping``, the resync's
``CoreShowChannels`` / ``QueueStatus``, ``Setvar``, ``QueueChangePriorityCaller``) are answered the way
Asterisk 20 answers them, from the channel and queue state the replayed events have built so far. A script
that ends without the recorded close drops the connection, as a network failure would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from ami_sessions import WireLine

from telephony.ami.framing import AmiMessage, parse_frames

SYNTHESISED = frozenset({"ping", "coreshowchannels", "queuestatus", "setvar", "queuechangeprioritycaller"})
_CHANNEL_KEYS = (
    "Channel",
    "ChannelState",
    "ChannelStateDesc",
    "CallerIDNum",
    "CallerIDName",
    "ConnectedLineNum",
    "ConnectedLineName",
    "Language",
    "AccountCode",
    "Context",
    "Exten",
    "Priority",
    "Uniqueid",
    "Linkedid",
)


@dataclass
class ReceivedAction:
    recorded: AmiMessage | None  # None for actions answered by the peer itself
    actual: AmiMessage

    @property
    def name(self) -> str:
        return self.actual.value("Action")

    def missing(self) -> list[tuple[str, str]]:
        """Recorded fields (except ActionID) the client did not send with the same value."""
        if self.recorded is None:
            return []
        actual = [kv for kv in self.actual.fields if kv[0] != "ActionID"]
        out = []
        for kv in self.recorded.fields:
            if kv[0] == "ActionID":
                continue
            if kv in actual:
                actual.remove(kv)
            else:
                out.append(kv)
        return out

    def extra(self) -> list[tuple[str, str]]:
        if self.recorded is None:
            return []
        recorded = [kv for kv in self.recorded.fields if kv[0] != "ActionID"]
        out = []
        for kv in self.actual.fields:
            if kv[0] == "ActionID":
                continue
            if kv in recorded:
                recorded.remove(kv)
            else:
                out.append(kv)
        return out


@dataclass
class World:
    """Channels and queue callers as the replayed events describe them (for resync answers)."""

    channels: dict[str, dict[str, str]] = field(default_factory=dict)
    queue_callers: dict[str, dict[str, str]] = field(default_factory=dict)

    def apply(self, msg: AmiMessage) -> None:
        event = msg.event or ""
        uid = msg.value("Uniqueid")
        if not uid or event in ("OriginateResponse",):
            return
        if event == "Hangup":
            self.channels.pop(uid, None)
            self.queue_callers.pop(uid, None)
            return
        chan = self.channels.setdefault(uid, {"BridgeId": "", "Application": "", "ApplicationData": ""})
        for key in _CHANNEL_KEYS:
            if msg.get(key) is not None:
                chan[key] = msg.value(key)
        if event == "Newexten":
            chan["Application"], chan["ApplicationData"] = msg.value("Application"), msg.value("AppData")
        elif event == "BridgeEnter":
            chan["BridgeId"] = msg.value("BridgeUniqueid")
        elif event == "BridgeLeave":
            chan["BridgeId"] = ""
        elif event == "QueueCallerJoin":
            self.queue_callers[uid] = {
                "Queue": msg.value("Queue"),
                "Position": msg.value("Position"),
                "Channel": msg.value("Channel"),
                "Uniqueid": uid,
                "CallerIDNum": msg.value("CallerIDNum"),
                "CallerIDName": msg.value("CallerIDName"),
            }
        elif event == "QueueCallerLeave":
            self.queue_callers.pop(uid, None)


def _wire(pairs: Sequence[tuple[str, str]]) -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in pairs) + b"\r\n"


class ReplayPeer:
    def __init__(
        self,
        scripts: Sequence[Sequence[WireLine]],
        *,
        offline: Sequence[Sequence[WireLine]] = (),
        time_scale: float = 0.0,
        repeat_last: bool = False,
        answer_pings: bool = True,
    ) -> None:
        self.scripts = [list(s) for s in scripts]
        self.offline = [list(s) for s in offline]
        self.time_scale = time_scale
        self.repeat_last = repeat_last
        self.world = World()
        self.received: list[ReceivedAction] = []
        self.connections = 0
        self.connect_times: list[float] = []
        self.expecting: asyncio.Queue[AmiMessage] = asyncio.Queue()  # recorded actions awaited, in order
        self.answer_pings = answer_pings
        self._awaiting: str | None = None
        self.script_done: list[asyncio.Event] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def __aenter__(self) -> ReplayPeer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()

    def recorded_vs_actual(self) -> list[ReceivedAction]:
        return [r for r in self.received if r.recorded is not None]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        index = self.connections
        self.connections += 1
        self.connect_times.append(asyncio.get_running_loop().time())
        if index >= len(self.scripts) and not self.repeat_last:
            writer.close()
            return
        script = self.scripts[min(index, len(self.scripts) - 1)]
        for line in self.offline[index] if index < len(self.offline) else []:
            if line.direction == "recv" and line.text and not line.text.startswith("Asterisk"):
                self.world.apply(line.message)
        done = asyncio.Event()
        self.script_done.append(done)
        scripted: asyncio.Queue[AmiMessage] = asyncio.Queue()
        ids: dict[str, str] = {}
        lock = asyncio.Lock()
        pump = asyncio.create_task(self._read_actions(reader, writer, scripted, lock))
        try:
            prev_t = script[0].t if script else 0.0
            for line in script:
                if self.time_scale:
                    await asyncio.sleep(max(0.0, line.t - prev_t) * self.time_scale)
                prev_t = line.t
                if line.direction == "send":
                    recorded = line.message
                    name = recorded.value("Action")
                    self._awaiting = name.lower()
                    self.expecting.put_nowait(recorded)
                    actual = await scripted.get()
                    self._awaiting = None
                    assert actual.value("Action").lower() == name.lower(), (name, actual.as_dict())
                    self.received.append(ReceivedAction(recorded, actual))
                    ids[recorded.value("ActionID")] = actual.value("ActionID")
                    continue
                if not line.text:  # the recorded close by Asterisk
                    break
                text = line.text
                if not text.startswith("Asterisk Call Manager/"):
                    msg = line.message
                    self.world.apply(msg)
                    if (aid := msg.action_id) is not None and aid in ids:
                        text = text.replace(f"ActionID: {aid}\r\n", f"ActionID: {ids[aid]}\r\n", 1)
                async with lock:
                    writer.write(text.encode())
                    await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            done.set()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
                await pump
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def _read_actions(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        scripted: asyncio.Queue[AmiMessage],
        lock: asyncio.Lock,
    ) -> None:
        buffer = b""
        while chunk := await reader.read(65536):
            messages, buffer = parse_frames(buffer + chunk)
            for msg in messages:
                name = msg.value("Action").lower()
                if name == "ping" and not self.answer_pings and self._awaiting != "ping":
                    self.received.append(ReceivedAction(None, msg))
                    continue  # a peer gone silent: the TCP connection stays up but nothing answers
                if name in SYNTHESISED and name != self._awaiting:
                    self.received.append(ReceivedAction(None, msg))
                    async with lock:
                        writer.write(self._answer(name, msg))
                        await writer.drain()
                else:
                    scripted.put_nowait(msg)

    def _answer(self, name: str, msg: AmiMessage) -> bytes:
        aid = msg.value("ActionID")
        if name == "ping":
            return _wire([("Response", "Success"), ("ActionID", aid), ("Ping", "Pong"), ("Timestamp", "1.0")])
        if name == "setvar":
            return _wire([("Response", "Success"), ("ActionID", aid), ("Message", "Variable Set")])
        if name == "queuechangeprioritycaller":
            return _wire(
                [
                    ("Response", "Success"),
                    ("ActionID", aid),
                    ("Message", "Priority change for caller on queue"),
                ]
            )
        if name == "coreshowchannels":
            out = _wire(
                [
                    ("Response", "Success"),
                    ("ActionID", aid),
                    ("EventList", "start"),
                    ("Message", "Channels will follow"),
                ]
            )
            for chan in self.world.channels.values():
                fields = [("Event", "CoreShowChannel"), ("ActionID", aid)]
                fields += [(k, chan.get(k, "")) for k in _CHANNEL_KEYS]
                fields += [(k, chan.get(k, "")) for k in ("BridgeId", "Application", "ApplicationData")]
                fields.append(("Duration", "00:00:05"))
                out += _wire(fields)
            return out + _wire(
                [
                    ("Event", "CoreShowChannelsComplete"),
                    ("ActionID", aid),
                    ("EventList", "Complete"),
                    ("ListItems", str(len(self.world.channels))),
                ]
            )
        # QueueStatus
        out = _wire(
            [
                ("Response", "Success"),
                ("ActionID", aid),
                ("EventList", "start"),
                ("Message", "Queue status will follow"),
            ]
        )
        for entry in self.world.queue_callers.values():
            out += _wire(
                [("Event", "QueueEntry"), *entry.items(), ("Wait", "3"), ("Priority", "0"), ("ActionID", aid)]
            )
        return out + _wire(
            [
                ("Event", "QueueStatusComplete"),
                ("ActionID", aid),
                ("EventList", "Complete"),
                ("ListItems", str(len(self.world.queue_callers))),
            ]
        )
