"""The AMI bridge's settings and the results of its commands (plain values, no I/O)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from telephony.ami.client import ActionResult
from telephony.ami.framing import DEFAULT_MAX_MESSAGE_BYTES
from telephony.ami.tracker import FORK_HEADER


@dataclass(frozen=True, slots=True)
class AmiConfig:
    host: str
    port: int
    username: str
    secret: str
    emergency_context: str = "emergency"
    queue_prefix: str = "desk-"
    # "sip" (chan_sip) or "pjsip" (chan_pjsip): decides the fork endpoint's technology and how the
    # X-IZS-Fork-Of header is added to the fork's INVITE.
    channel_driver: str = "sip"
    fork_endpoint: str = ""  # default: SIP/intake (chan_sip) or PJSIP/intake (chan_pjsip)
    fork_caller_id: str = "IZS fork <fork>"
    # ChanSpy options of the media fork: q quiet, E end with the spied channel, o only the caller's own
    # audio (not the hold music or announcements the caller hears): what transcription needs.
    spy_options: str = "qEo"
    # A fork that ends while its caller is still there is originated again after this many seconds (and
    # again every time it fails, as long as the caller is there).
    fork_retry_s: float = 1.0
    # Dialplan priority a Redirect enters the desk's extension at. The recorded dialplan resets QUEUE_PRIO
    # to 0 at priority 3, so a priority > 0 is applied after the join with QueueChangePriorityCaller.
    redirect_priority: int = 1
    apply_priority_after_join: bool = True
    redirect_join_timeout_s: float = 5.0
    originate_timeout_s: float = 30.0
    connect_timeout_s: float = 5.0
    action_timeout_s: float = 5.0
    ping_interval_s: float = 5.0
    ping_timeout_s: float = 3.0
    reconnect_initial_s: float = 0.5
    # While the PBX is expected up intake must not stay blind long: at most this long between attempts.
    reconnect_max_s: float = 2.0
    reconnect_jitter: float = 0.1  # +- fraction of each delay so many nodes do not reconnect in lockstep
    # After "Authentication failed" retrying quickly only fills Asterisk's security log: wait this long.
    login_failure_backoff_s: float = 60.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    adapter_name: str = "ami"

    def __post_init__(self) -> None:
        problems = []
        if self.channel_driver not in ("sip", "pjsip"):
            problems.append(f"channel_driver must be 'sip' or 'pjsip', got {self.channel_driver!r}")
        if not self.fork_endpoint:
            default = "PJSIP/intake" if self.channel_driver == "pjsip" else "SIP/intake"
            object.__setattr__(self, "fork_endpoint", default)
        if not self.host:
            problems.append("host is empty")
        if not 0 < self.port < 65536:
            problems.append(f"port {self.port} out of range")
        if not self.username:
            problems.append("username is empty")
        for name in (
            "connect_timeout_s",
            "action_timeout_s",
            "ping_interval_s",
            "ping_timeout_s",
            "reconnect_initial_s",
            "reconnect_max_s",
            "login_failure_backoff_s",
            "fork_retry_s",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0")
        if not 0 <= self.reconnect_jitter < 1:
            problems.append("reconnect_jitter must be in [0, 1)")
        if problems:
            raise ValueError("invalid AMI config: " + "; ".join(problems))

    def queue_for_desk(self, desk_number: str) -> str:
        return f"{self.queue_prefix}{desk_number}"

    def fork_header_variable(self, spied_channel: str) -> str:
        """The Originate ``Variable`` that puts ``X-IZS-Fork-Of: <channel>`` into the fork's INVITE."""
        if self.channel_driver == "pjsip":
            return f"PJSIP_HEADER(add,{FORK_HEADER})={spied_channel}"
        return f"SIPADDHEADER01={FORK_HEADER}: {spied_channel}"

    def backoff(self, failures: int) -> float:
        base = min(self.reconnect_max_s, self.reconnect_initial_s * 2.0 ** min(max(0, failures - 1), 30))
        # The cap holds after the jitter too ("at most every reconnect_max_s"): at the cap nodes still spread
        # out, downwards only.
        jittered = base * (1 + random.uniform(-self.reconnect_jitter, self.reconnect_jitter))
        return min(self.reconnect_max_s, max(0.0, jittered))


@dataclass(frozen=True, slots=True)
class RedirectResult:
    redirect: ActionResult
    queue: str
    priority: int
    priority_applied: bool  # the caller runs in the target queue with the requested priority
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PriorityResult:
    queue: str
    priority: int
    applied: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MediaForkResult:
    spied_channel: str
    fork_channel: str  # e.g. "SIP/intake-00000037"
    fork_uniqueid: str
    originate: ActionResult
