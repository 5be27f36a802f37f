"""``izs demo``: the whole centre on embedded defaults, with synthesized emergency calls placed into it.

Starts the centre (SQLite under var/, its own Redis, the SIP endpoint on 127.0.0.1, transcription, the API
and consoles), creates demo call takers and users, places Czech and foreign-language calls from the
scenario set over real SIP (baresip callers speaking Festival / espeak-ng voices) at a realistic pace, and
prints each call's way through the centre: transcript → triage → desk queue → incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from intake.errors import IzsError
from intake.settings import Settings
from izs.demo.callers import CallerFleet, CallOutcome, PlannedCall
from izs.demo.flow import FlowTracker
from izs.demo.scenarios import Scenario, demo_selection, load_scenarios
from izs.demo.speech import SpeechSynthesizer, SpokenAudio

if TYPE_CHECKING:
    from intake.app import Centre
from izs.demo.system import (
    TakerAutopilot,
    create_demo_users,
    demo_settings,
    make_available,
    sip_target,
    start_centre,
)

__all__ = ["run_demo"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
# Each caller stays on the line this long after speaking (a person waits for an answer).
CALLER_WAITS_S = 12.0
SETTLE_S = 3.0


def _printer() -> Callable[[str], None]:
    def emit(line: str) -> None:
        print(line, file=sys.stdout, flush=True)

    return emit


async def synthesize_calls(
    synthesizer: SpeechSynthesizer, scenarios: list[Scenario], say: Callable[[str], None]
) -> list[SpokenAudio]:
    voices = []
    for scenario in scenarios:
        # Czech: Festival's machac voice. Whisper base takes the dita voice for English too often (measured
        # in the demo: "Pomo, Pomo, ..." detected as en 0.61), which would show the recognizer, not the centre.
        voice = None
        spoken = await asyncio.to_thread(
            synthesizer.synthesize,
            scenario.caller,
            scenario.language,
            voice=voice,
            tail_silence_s=CALLER_WAITS_S,
        )
        voices.append(spoken)
    say(
        f"voices ready: {len(voices)} calls, {sum(v.speech_end_s - v.speech_start_s for v in voices):.0f} s of speech"
    )
    return voices


async def run_demo(
    settings: Settings,
    scenarios: Path | None = None,
    calls: int = 12,
    pace_s: float = 4.0,
    keep_running: bool = True,
    log_file: Path | None = None,
    verbose: bool = False,
) -> int:
    """Run the demo; returns the process exit code (0: every placed call is on record in the database)."""
    say = _printer()
    if calls < 1:
        raise IzsError("--calls must be at least 1")
    if pace_s < 0:
        raise IzsError("--pace cannot be negative")
    settings = demo_settings(settings)
    chosen = demo_selection(load_scenarios(scenarios), calls)
    synthesizer = SpeechSynthesizer(settings.var_dir / "demo" / "voices")
    missing = synthesizer.available()
    if missing:
        raise IzsError(f"the demo needs {', '.join(missing)} to give callers a voice (see docs/e2e.md)")
    say(f"izs demo: {len(chosen)} calls, one every {pace_s:g} s; synthesizing the callers' voices ...")
    if log_file is not None:
        shown = "on this terminal and in" if verbose else "in"
        say(f"logs (JSON lines) {shown} {log_file}" + ("" if verbose else "   (--verbose shows them here)"))
    voices = await synthesize_calls(synthesizer, chosen, say)

    say("starting the centre (database, Redis, SIP endpoint, transcription, API) ...")
    centre = await start_centre(settings)
    tracker: FlowTracker | None = None
    autopilot: TakerAutopilot | None = None
    server_task: asyncio.Task[None] | None = None
    outcomes: list[CallOutcome] = []
    try:
        for component in await centre.health():
            say(f"  {component.name:<14} {'ok' if component.healthy else 'DEGRADED'} {component.detail}")
        taker_ids = [t.id for t in settings.takers]
        server_task, url = await start_api(centre)
        try:
            users = await create_demo_users(centre, taker_ids)
        except (IzsError, ImportError) as exc:
            users = []
            say(f"  demo users not created: {exc}")
        await make_available(centre, taker_ids)
        labels: dict[str, str] = {}
        tracker = FlowTracker(centre.bus, printer=say, label_for=labels.get)
        await tracker.start()

        def on_handover(taker_id: str, manual: bool) -> None:
            if manual:
                say(
                    f"** {taker_id}: a console is open – autopilot off, {taker_id}'s calls are offered to you"
                )
            else:
                say(f"** {taker_id}: console closed – autopilot takes {taker_id}'s calls again")

        autopilot = TakerAutopilot(centre, taker_ids, on_handover=on_handover)
        await autopilot.start()
        say("")
        if url:
            say(
                f"consoles: {url}/console (call takers)   {url}/supervisor (supervisor)   API docs: {url}/docs"
            )
        for user in users:
            secret = user.password if user.password is not None else "(existing user, password unchanged)"
            say(f"  user {user.username:<11} role {user.role:<11} password {secret}")
        say(
            f"demo call takers ({', '.join(taker_ids)}) answer offered calls on autopilot; "
            "log in as one of them to take calls yourself: while your console is open the autopilot "
            "leaves that call taker's calls to you"
        )
        say("")
        plans = [
            PlannedCall(
                label=scenario.id,
                wav=voice.path,
                target=sip_target(centre, scenario.dialled),
                caller_id=scenario.caller_number or "anonymous",
                at_s=index * pace_s,
                max_duration_s=voice.duration_s + 120.0,
            )
            for index, (scenario, voice) in enumerate(zip(chosen, voices, strict=True))
        ]

        def on_caller(outcome: CallOutcome, what: str) -> None:
            if outcome.sip_call_id:
                labels[outcome.sip_call_id] = outcome.label
            if what == "dialled":
                labels.setdefault(outcome.caller_id, outcome.label)  # until the Call-ID is known
                say(f"{outcome.label:<10} dialling  {outcome.target} as {outcome.caller_id}")

        async with CallerFleet(on_event=on_caller, work_dir=None) as fleet:
            outcomes = await fleet.run(plans)
        await tracker.wait_for(lambda: _all_ended(tracker, outcomes), timeout_s=SETTLE_S + 10.0)
        await asyncio.sleep(SETTLE_S)
        say("")
        for line in tracker.summary_lines():
            say(line)
        lost = await _calls_not_on_record(centre, outcomes)
        failed = [o for o in outcomes if o.error]
        for outcome in failed:
            say(f"caller {outcome.label} failed: {outcome.error}")
        if lost:
            say(f"NOT ON RECORD: {', '.join(lost)}")
        else:
            say(f"every one of the {sum(1 for o in outcomes if o.sip_call_id)} placed calls is on record")
        if url:
            say(f"consoles: {url}/console   {url}/supervisor")
        if keep_running:
            say("the centre keeps running; Ctrl-C stops it")
            await asyncio.Event().wait()
        return EXIT_FAILED if lost or failed else EXIT_OK
    finally:
        if autopilot is not None:
            await autopilot.stop()
        if tracker is not None:
            await tracker.stop()
        if server_task is not None:
            server_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server_task
        await centre.stop()


def _all_ended(tracker: FlowTracker, outcomes: list[CallOutcome]) -> bool:
    for outcome in outcomes:
        if not outcome.sip_call_id:
            continue
        flow = tracker.flow_by_ref(outcome.sip_call_id)
        if flow is None or flow.end_kind is None:
            return False
    return True


async def _calls_not_on_record(centre: Centre, outcomes: list[CallOutcome]) -> list[str]:
    repo = centre.repo
    lost = []
    for outcome in outcomes:
        if outcome.sip_call_id is None:
            continue
        call = await asyncio.to_thread(repo.find_call_by_ref, outcome.sip_call_id)
        if call is None:
            lost.append(outcome.label)
    return lost


async def start_api(centre: Centre) -> tuple[asyncio.Task[None] | None, str | None]:
    """The API and consoles on the settings' address (``http_port`` 0: a free port)."""
    try:
        import uvicorn

        from api.app import create_app
        from api.server import uvicorn_config
    except ImportError as exc:
        log.error("API unavailable, running without consoles: %s", exc)
        return None, None
    settings = centre.settings
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.http_host, settings.http_port))
    except OSError as exc:
        sock.close()
        raise IzsError(
            f"IZS_HTTP_PORT: cannot listen on {settings.http_host}:{settings.http_port}: {exc}"
        ) from exc
    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn_config(create_app(centre), host, port, log_level="warning"))

    async def run() -> None:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            await asyncio.shield(serving)
        finally:
            # Stop the way uvicorn wants (drain connections, run the app's shutdown), never by cancelling it.
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await serving
            sock.close()

    task = asyncio.create_task(run(), name="api")
    for _ in range(250):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    return task, f"http://{shown}:{port}"
