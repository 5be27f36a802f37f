"""RFC 3261 retransmission over UDP (Timers A/E/G with their deadlines B/F/H): pure, the clock passed in."""

from __future__ import annotations

from dataclasses import dataclass

T1_S = 0.5
T2_S = 4.0
TRANSACTION_LIFETIME_S = 64 * T1_S  # Timer B/F/H: 32 s


@dataclass(slots=True)
class Retransmission:
    """A message sent again at T1, 2T1, ... (capped at T2) until stopped or its deadline passes."""

    data: bytes
    address: tuple[str, int]
    next_at: float
    interval: float
    deadline: float
    expires_call: bool  # the deadline ends the call (a 2xx never ACKed, Timer H)


@dataclass(frozen=True, slots=True)
class Due:
    """What a tick found: messages to send again now, keys whose deadline passed and that end their call."""

    resend: list[tuple[bytes, tuple[str, int]]]
    expired: list[str]


class Retransmissions:
    """Retransmitted messages by key (``"<call-id>/<what>"``, e.g. ``"abc@host/2xx"``)."""

    def __init__(self) -> None:
        self._pending: dict[str, Retransmission] = {}

    def start(
        self,
        key: str,
        data: bytes,
        address: tuple[str, int],
        now: float,
        lifetime: float = TRANSACTION_LIFETIME_S,
        expires_call: bool = False,
    ) -> None:
        self._pending[key] = Retransmission(data, address, now + T1_S, T1_S, now + lifetime, expires_call)

    def stop(self, key: str) -> None:
        self._pending.pop(key, None)

    def pending(self, key: str) -> bool:
        return key in self._pending

    def due(self, now: float) -> Due:
        resend: list[tuple[bytes, tuple[str, int]]] = []
        expired: list[str] = []
        for key, message in list(self._pending.items()):
            if now >= message.deadline:
                del self._pending[key]
                if message.expires_call:
                    expired.append(key)
            elif now >= message.next_at:
                resend.append((message.data, message.address))
                message.interval = min(message.interval * 2, T2_S)
                message.next_at = now + message.interval
        return Due(resend, expired)
