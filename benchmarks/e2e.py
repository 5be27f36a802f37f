"""End to end: from a word spoken into a real SIP call to that word on a console.

A whole centre (SQLite, embedded Redis, SIP endpoint, Whisper/Vosk transcription, triage, API) on this
machine; baresip callers speak synthesized scenario text (Festival Czech, espeak-ng foreign). Measured:

- word → console: for every caller-leg ``transcript.final``, the wall time between the moment its last word
  was spoken (call established + the final's ``end_s`` in the leg's audio) and the moment the event arrived
  (a) on the centre's live bus and (b) at a supervisor console's WebSocket (``/api/live``);
- first words: from the start of speech to the first partial on the WebSocket;
- sustained load: calls placed at ``--pace`` seconds apart with transcription on; audio the recognizer had
  to drop (it fell behind) is counted — that is where this machine's capacity ends;
- resources: CPU seconds (centre and baresip callers), peak RSS of the centre process.

Phase 1 is one call alone (the baseline), phase 2 the load. Run: ``python benchmarks/e2e.py [--calls N]
[--pace S]``. Prints figures; docs/e2e.md keeps a run's numbers. No assertion here.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from intake.settings import Settings  # noqa: E402
from izs.demo.callers import CallerFleet, CallOutcome, PlannedCall  # noqa: E402
from izs.demo.flow import FlowTracker, percentile  # noqa: E402
from izs.demo.scenarios import Scenario, load_scenarios  # noqa: E402
from izs.demo.speech import SpeechSynthesizer, SpokenAudio  # noqa: E402
from izs.demo.system import start_centre  # noqa: E402


@dataclass
class PhaseResult:
    name: str
    calls: int
    wall_s: float
    bus_latency: list[float] = field(default_factory=list)
    ws_latency: list[float] = field(default_factory=list)
    first_partial: list[float] = field(default_factory=list)
    finals: int = 0
    dropped_reports: int = 0
    answered: int = 0
    cpu_s: float = 0.0
    child_cpu_s: float = 0.0


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class ConsoleClient:
    """A supervisor console: logs in over REST, then reads ``/api/live`` and stamps each event's arrival."""

    def __init__(self, base_url: str, username: str, password: str) -> None:
        self._base = base_url
        self._auth = (username, password)
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        import httpx

        async with httpx.AsyncClient(base_url=self._base) as client:
            response = await client.post(
                "/api/auth/token", json={"username": self._auth[0], "password": self._auth[1]}
            )
            response.raise_for_status()
            token = response.json()["access_token"]
        ready = asyncio.Event()
        self._task = asyncio.create_task(self._read(token, ready))
        await asyncio.wait_for(ready.wait(), 10)

    async def _read(self, token: str, ready: asyncio.Event) -> None:
        import websockets

        url = self._base.replace("http://", "ws://") + "/api/live"
        async with websockets.connect(url, max_size=2**22) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token}))
            ready.set()
            async for raw in ws:
                self.arrivals.append((time.monotonic(), json.loads(raw)))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def run_phase(
    name: str,
    centre: Any,
    console: ConsoleClient | None,
    scenarios: list[Scenario],
    voices: list[SpokenAudio],
    pace_s: float,
) -> PhaseResult:
    assert centre.sip is not None
    port = centre.sip.address[1]
    labels: dict[str, str] = {}
    tracker = FlowTracker(centre.bus, label_for=labels.get)
    await tracker.start()
    ws_start = len(console.arrivals) if console else 0
    plans = [
        PlannedCall(
            label=f"{name}-{s.id}",
            wav=v.path,
            target=f"sip:{s.dialled}@127.0.0.1:{port}",
            caller_id=s.caller_number or "anonymous",
            at_s=i * pace_s,
            max_duration_s=v.duration_s + 60,
        )
        for i, (s, v) in enumerate(zip(scenarios, voices, strict=True))
    ]
    voice_by_label = {p.label: v for p, v in zip(plans, voices, strict=True)}
    established: dict[str, float] = {}

    def on_caller(outcome: CallOutcome, what: str) -> None:
        if outcome.sip_call_id:
            labels[outcome.sip_call_id] = outcome.label
        if what == "answered" and outcome.sip_call_id:
            established[outcome.sip_call_id] = time.monotonic()

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    async with CallerFleet(on_event=on_caller) as fleet:
        outcomes = await fleet.run(plans)
    # The recognizer flushes the last utterance after the hang-up.
    await tracker.wait_for(lambda: all(f.end_kind for f in tracker.flows.values()), 20)
    await asyncio.sleep(6.0)
    wall = time.monotonic() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    await tracker.stop()
    tracker.relabel()

    result = PhaseResult(name, len(plans), wall, answered=sum(o.answered for o in outcomes))
    result.cpu_s = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    result.child_cpu_s = (child1.ru_utime + child1.ru_stime) - (child0.ru_utime + child0.ru_stime)
    ref_by_call = {f.call_id: f.call_ref for f in tracker.flows.values()}
    for mono, event in tracker.events:
        ref = ref_by_call.get(event.call_id or "")
        if ref is None or ref not in established:
            continue
        if event.type == "transcript.final" and event.data.get("leg", "caller") == "caller":
            result.finals += 1
            result.bus_latency.append(mono - (established[ref] + float(event.data["end_s"])))
        if event.type == "call.updated" and "fell behind" in str(event.data.get("transcription_error", "")):
            result.dropped_reports += 1
    if console is not None:
        first_partial_seen: set[str] = set()
        for mono, raw in console.arrivals[ws_start:]:
            ref = ref_by_call.get(raw.get("call_id") or "")
            if ref is None or ref not in established:
                continue
            data = raw.get("data") or {}
            if raw.get("type") == "transcript.final" and data.get("leg", "caller") == "caller":
                result.ws_latency.append(mono - (established[ref] + float(data["end_s"])))
            if raw.get("type") == "transcript.partial" and ref not in first_partial_seen:
                first_partial_seen.add(ref)
                voice = voice_by_label[labels[ref]]
                result.first_partial.append(mono - (established[ref] + voice.speech_start_s))
    return result


def _fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"p50 {percentile(values, 50):.2f} s, p95 {percentile(values, 95):.2f} s (n={len(values)})"


def report(result: PhaseResult, pace_s: float) -> None:
    rate = 60.0 / pace_s if pace_s > 0 else float("inf")
    print(f"\n== {result.name}: {result.calls} calls, one every {pace_s:g} s ({rate:.1f} calls/min offered)")
    print(f"  answered by the endpoint: {result.answered}/{result.calls}; caller finals: {result.finals}")
    print(f"  word spoken → live bus:        {_fmt(result.bus_latency)}")
    print(f"  word spoken → console (WS):    {_fmt(result.ws_latency)}")
    print(f"  speech start → first partial:  {_fmt(result.first_partial)}")
    print(f"  recognizer fell behind (audio dropped) reports: {result.dropped_reports}")
    print(
        f"  CPU: centre {result.cpu_s:.1f} s, baresip callers {result.child_cpu_s:.1f} s over {result.wall_s:.0f} s "
        f"wall ({(result.cpu_s + result.child_cpu_s) / result.wall_s * 100:.0f}% of one core; 2 cores here)"
    )


async def main_async(args: argparse.Namespace) -> int:
    scenarios = load_scenarios(REPO / "tests" / "fixtures" / "calls" / "dev.jsonl")
    czech = [s for s in scenarios if s.language == "cs"]
    load_set = (czech[: args.calls - 1] + [s for s in scenarios if s.language == "de"][:1])[: args.calls]
    with tempfile.TemporaryDirectory(prefix="izs-bench-e2e-") as tmp:
        var = Path(tmp) / "var"
        synthesizer = SpeechSynthesizer(Path(args.voice_cache))
        print(f"synthesizing {len(load_set) + 1} caller voices (cached in {args.voice_cache}) ...")
        baseline_voice = [synthesizer.synthesize(czech[0].caller, "cs", tail_silence_s=args.tail)]
        load_voices = [
            synthesizer.synthesize(s.caller, s.language, tail_silence_s=args.tail) for s in load_set
        ]
        settings = Settings(
            var_dir=var,
            http_port=0,
            sip_host="127.0.0.1",
            sip_port=0,
            node_id="bench",
            log_json=False,
            log_level="WARNING",
            bootstrap_admin_password="bench-admin-pw",
            transcription_workers=args.workers,
        )
        import logging

        logging.basicConfig(level=logging.WARNING)
        started = time.monotonic()
        centre = await start_centre(settings)
        print(f"centre started in {time.monotonic() - started:.1f} s; RSS {_rss_mb():.0f} MB")
        from izs.demo import start_api

        server_task, url = await start_api(centre)
        console: ConsoleClient | None = None
        try:
            if url:
                from api.users import ensure_bootstrap_admin

                await ensure_bootstrap_admin(centre.repo, "bench-admin-pw")
                console = ConsoleClient(url, "admin", "bench-admin-pw")
                await console.start()
            baseline = await run_phase("baseline", centre, console, czech[:1], baseline_voice, 0.0)
            report(baseline, 0.0)
            print(f"  RSS after baseline: {_rss_mb():.0f} MB")
            load = await run_phase("load", centre, console, load_set, load_voices, args.pace)
            report(load, args.pace)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"\npeak RSS of the centre process: {peak:.0f} MB; now {_rss_mb():.0f} MB")
            speech = sum(v.speech_end_s - v.speech_start_s for v in load_voices)
            print(
                f"load phase carried {speech:.0f} s of speech in {load.wall_s:.0f} s; "
                f"sustained with transcription on: {60.0 / args.pace:.1f} calls/min offered, "
                f"{'audio dropped: over capacity' if load.dropped_reports else 'no audio dropped'}"
            )
        finally:
            if console is not None:
                await console.stop()
            if server_task is not None:
                server_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await server_task
            await centre.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=4, help="calls in the load phase (default 4)")
    parser.add_argument("--pace", type=float, default=8.0, help="seconds between load calls (default 8)")
    parser.add_argument(
        "--tail",
        type=float,
        default=12.0,
        help="seconds each caller stays on the line after speaking (finals after hang-up are dropped)",
    )
    parser.add_argument("--workers", type=int, default=2, help="transcription workers (default 2)")
    parser.add_argument(
        "--voice-cache",
        default=os.path.join(tempfile.gettempdir(), "izs-bench-voices"),
        help="where synthesized caller voices are cached between runs",
    )
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
