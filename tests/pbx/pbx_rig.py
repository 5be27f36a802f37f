"""The PBX test rig: a real Asterisk, intake in PBX mode, baresip phones and callers, and views of each.

A module of its own (not conftest) so that test modules import it by a name no other test directory uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbx_support import AmiProxy, AsteriskPbx, IntakeServer, concat_wavs, wait_until
from sip_peers import Baresip

from izs.demo.speech import SpeechSynthesizer

REPO = Path(__file__).resolve().parents[2]
SESSIONS = REPO / "tests" / "fixtures" / "ami" / "sessions"
OVERFLOW_AFTER_S = 90.0

_MEMBER = re.compile(r"^\s+(\S+) \((\S+)\)(.*)$")
_CALLER = re.compile(r"^\s+\d+\. (\S+) \(wait: [\d:]+, prio: (-?\d+)\)")


@dataclass
class QueueView:
    members: dict[str, dict[str, Any]] = field(default_factory=dict)  # member name -> interface, paused
    callers: dict[str, int] = field(default_factory=dict)  # channel -> prio


@dataclass
class Rig:
    driver: str
    pbx: AsteriskPbx
    proxy: AmiProxy
    intake: IntakeServer
    phones: dict[str, Baresip]
    workdir: Path
    speech: SpeechSynthesizer
    callers: list[Baresip] = field(default_factory=list)

    def tech(self, name: str) -> str:
        return self.pbx.tech(name)

    # --------------------------------------------------------------------------- PBX views

    def queue(self, queue: str) -> QueueView:
        view = QueueView()
        section = ""
        for line in self.pbx.cli(f"queue show {queue}").splitlines():
            if line.strip().startswith("Members:"):
                section = "members"
                continue
            if line.strip().startswith("Callers:") or line.strip().startswith("No Callers"):
                section = "callers"
                continue
            if section == "members" and (m := _MEMBER.match(line)):
                rest = m.group(3)
                paused = re.search(r"\(paused(?::([^)]*?))?(?: was \d+ secs ago)?\)", rest)
                view.members[m.group(1)] = {
                    "interface": m.group(2),
                    "paused": paused is not None,
                    "reason": (paused.group(1) or "") if paused else "",
                    "text": rest,
                }
            elif section == "callers" and (c := _CALLER.match(line)):
                view.callers[c.group(1)] = int(c.group(2))
        return view

    def caller_channel(self, caller_id: str) -> str | None:
        for line in self.pbx.cli("core show channels concise").splitlines():
            fields = line.split("!")
            if len(fields) > 7 and fields[7] == caller_id and fields[1] == "emergency":
                return fields[0]
        return None

    def forks(self) -> list[str]:
        return [c for c in self.pbx.channels() if c.startswith(self.tech("intake") + "-")]

    # --------------------------------------------------------------------------- intake views

    def intake_call(self, caller_id: str) -> dict[str, Any] | None:
        for call in self.intake.calls():
            if call["caller"]["raw"] == caller_id:
                detail: dict[str, Any] = self.intake.get(f"/api/calls/{call['id']}")
                return detail
        return None

    def wait_intake_call(self, caller_id: str, timeout_s: float = 20.0, **expect: Any) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            call = self.intake_call(caller_id)
            if call is None or any(call.get(k) != v for k, v in expect.items()):
                return None
            return call

        found: dict[str, Any] = wait_until(
            probe, timeout_s, f"intake call from {caller_id} with {expect}", 0.3
        )
        return found

    def taker_state(self, taker_id: str) -> str:
        for taker in self.intake.get("/api/takers"):
            if taker["id"] == taker_id:
                return str(taker["state"])
        raise AssertionError(f"no taker {taker_id}")

    def set_state(self, taker_id: str, state: str, reason: str = "") -> None:
        response = self.intake.set_state(taker_id, state, reason)
        assert response.status_code == 200, response.text

    def reset(self) -> None:
        for taker_id in ("taker1", "taker2"):
            state = self.taker_state(taker_id)
            if state in ("busy", "wrap_up"):
                wait_until(
                    lambda t=taker_id: self.taker_state(t) not in ("busy", "wrap_up"), 40, f"{taker_id} free"
                )
            self.set_state(taker_id, "offline")
        for phone in self.phones.values():
            phone.events.clear()
        self._log_start = len(self.intake.log())

    def test_log(self) -> str:
        """Intake's log since this test's reset: a line an earlier test's call left (its caller stopped while
        triage was still moving it) is not this test's finding."""
        return self.intake.log()[getattr(self, "_log_start", 0) :]

    # --------------------------------------------------------------------------- callers

    def voice(self, label: str, *sentences: str | float, tail_s: float = 60.0) -> Path:
        # 1.5 s before the first word: the media fork is set up after the PBX answers (Originate, INVITE to
        # intake, ChanSpy), and words spoken before it runs are not heard by intake.
        parts: list[Path | float] = [1.5]
        for item in sentences:
            if isinstance(item, str):
                audio = self.speech.synthesize(
                    item, "cs", lead_silence_s=0.2, tail_silence_s=0.2, speed_wpm=140
                )
                parts.append(audio.path)
            else:
                parts.append(float(item))
        parts.append(tail_s)
        return concat_wavs(parts, self.workdir / f"{label}.wav")

    def dial(self, label: str, number: str, caller_id: str, wav: Path) -> Baresip:
        caller = Baresip(self.workdir / "callers", caller_id, audio_source=wav)
        caller.start()
        self.callers.append(caller)
        caller.dial(f"sip:{number}@127.0.0.1:{self.pbx.ports.sip}")
        return caller

    def record(self, name: str, mark: tuple[int, int]) -> None:
        """Keep the AMI traffic of a test as a replay fixture (IZS_RECORD_AMI_SESSIONS=1)."""
        import os

        if os.environ.get("IZS_RECORD_AMI_SESSIONS") == "1":
            self.proxy.save_session(
                self.proxy.records_since(mark), SESSIONS / f"pbx-{self.driver}-{name}.jsonl"
            )
