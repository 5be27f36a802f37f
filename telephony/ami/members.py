"""The queue membership mirror: which call takers are members of which desk queue on the PBX, paused or
not, reachable or not — as Asterisk last reported it (``QueueMember*`` events, ``QueueStatus`` items).

Pure, like the call tracker that feeds it; intake reads it to know whether the PBX would ring a taker.
"""

from __future__ import annotations

from dataclasses import dataclass

from telephony.ami.framing import AmiMessage

# app_queue member device states (Status): a member whose device is invalid or unavailable is never rung.
_MEMBER_UNREACHABLE = frozenset({"4", "5"})


@dataclass(slots=True)
class QueueMemberState:
    """One queue member as the PBX reports it (``QueueMember*`` events, ``QueueStatus``)."""

    queue: str
    interface: str
    name: str
    paused: bool = False
    reason: str = ""
    status: str = ""  # AST_DEVICE_*: 1 not in use, 2 in use, 4 invalid, 5 unavailable, 6 ringing ...

    @property
    def ready(self) -> bool:
        """The PBX would ring this member: present, not paused, device reachable."""
        return not self.paused and self.status not in _MEMBER_UNREACHABLE


class QueueMemberMirror:
    def __init__(self) -> None:
        self._names: dict[str, str] = {}  # queue member interface -> MemberName
        self._members: dict[tuple[str, str], QueueMemberState] = {}  # (queue, interface) -> member

    def members(self, queue: str | None = None) -> list[QueueMemberState]:
        return [m for (q, _), m in self._members.items() if queue is None or q == queue]

    def member(self, queue: str, interface: str) -> QueueMemberState | None:
        return self._members.get((queue, interface))

    def name_of(self, interface: str) -> str:
        """The MemberName last reported for ``interface`` (the interface itself if none was)."""
        return self._names.get(interface, interface)

    def clear(self) -> None:
        """Forget the members (a fresh ``QueueStatus`` follows); names stay known."""
        self._members.clear()

    def apply(self, msg: AmiMessage) -> None:
        """``QueueMember`` (QueueStatus item), ``QueueMemberAdded`` / ``Status`` / ``Pause``: the member's
        current state. Asterisk 20 names the interface ``Location`` in list items, ``Interface`` in events."""
        location = msg.get("Location") or msg.get("Interface")
        name = msg.get("MemberName") or msg.get("Name")
        if location and name:
            self._names[location] = name
        queue = msg.get("Queue")
        if not (queue and location):
            return
        member = self._members.get((queue, location))
        if member is None:
            member = self._members[(queue, location)] = QueueMemberState(queue, location, name or location)
        if name:
            member.name = name
        if (paused := msg.get("Paused")) is not None:
            member.paused = paused.strip().lower() in ("1", "true", "yes")
        if (reason := msg.get("PausedReason") or msg.get("Reason")) is not None:
            member.reason = reason
        if (status := msg.get("Status")) is not None:
            member.status = status

    def remove(self, msg: AmiMessage) -> None:
        location = msg.get("Location") or msg.get("Interface")
        self._members.pop((msg.value("Queue"), location or ""), None)
