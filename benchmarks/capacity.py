"""Capacity of one intake node: SIP calls answered and recorded per minute, and what a call costs in CPU.

One ``izs serve`` process (the node under test, its own process so its CPU time can be read from /proc)
against PostgreSQL (a private cluster started here, or ``--database-url``) and Redis (append-only file on),
transcription off unless ``--transcription``. Real baresip callers dial it at a fixed rate for a fixed time;
each speaks a short sentence and stays on the line ``--hold`` seconds, then hangs up (the call is answered,
queued with the waiting prompt looping, and ends abandoned: the full intake path without a call taker).

Phases, each at an offered rate (calls/min) for ``--seconds``: answered = 200 OK seen by the caller,
recorded = the call's record in PostgreSQL, ended, with its offer and end time. Node CPU is the node process's
CPU time during the phase. A node's cost is modelled as ``CPU = a * calls + b * call-seconds`` (setup and
record keeping per call, RTP and prompt per second of call); two phases with different hold times give
``a`` and ``b``, and with them the calls per minute one core carries at a given average call length.

The load generator (one baresip per caller) runs on the same machine and costs more CPU than the node; on
a 2-core machine the offered rate is bounded by it, not by the node, so read the per-call costs, not the
raw rate. Run: ``python benchmarks/capacity.py [--rates 20,40] [--seconds 45] [--hold 4,12]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import izs_node  # noqa: E402  (benchmarks/izs_node.py)

from intake.redis_server import EmbeddedRedis, free_port  # noqa: E402
from intake.storage.database import Database  # noqa: E402
from intake.storage.repository import Repository  # noqa: E402
from izs.demo.callers import CallerFleet, PlannedCall  # noqa: E402
from izs.demo.speech import SpeechSynthesizer  # noqa: E402


@dataclass
class Phase:
    rate_per_min: float
    hold_s: float
    seconds: float
    placed: int = 0
    answered: int = 0
    recorded: int = 0
    setup_ms: list[float] | None = None
    node_cpu_s: float = 0.0
    wall_s: float = 0.0
    call_seconds: float = 0.0

    @property
    def recorded_per_min(self) -> float:
        return self.recorded / self.seconds * 60.0


def start_node(
    work: Path, database_url: str, redis_url: str, transcription: bool
) -> tuple[subprocess.Popen[bytes], int, int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sip_port = int(sock.getsockname()[1])
    http_port = free_port()
    process = izs_node.start(
        work,
        http_port,
        {
            "IZS_NODE_ID": "capacity",
            "IZS_SIP_HOST": "127.0.0.1",
            "IZS_SIP_PORT": str(sip_port),
            "IZS_RTP_PORT_MIN": "41000",
            "IZS_RTP_PORT_MAX": "42999",
            "IZS_SECRET_KEY": "capacity-benchmark-secret-key-0123456789-BENCHONLY-KvK",
            "IZS_DATABASE_URL": database_url,
            "IZS_REDIS_URL": redis_url,
            "IZS_TRANSCRIPTION_ENABLED": "true" if transcription else "false",
            "IZS_LOG_LEVEL": "WARNING",
            "IZS_OVERFLOW_AFTER_S": "600",
            "IZS_TAKERS": json.dumps([{"id": "zzs1", "name": "ZZS 1", "desks": ["ZZS"]}]),
        },
    )
    return process, sip_port, http_port


async def run_phase(
    phase: Phase, sip_port: int, node_pid: int, voice: Path, repo: Repository, label: str
) -> Phase:
    count = max(1, round(phase.rate_per_min * phase.seconds / 60.0))
    spacing = phase.seconds / count
    plans = [
        PlannedCall(
            f"{label}-{i}",
            voice,
            f"sip:155@127.0.0.1:{sip_port}",
            f"+4206039{i:05d}",
            at_s=i * spacing,
            hangup_after_s=phase.hold_s,
            max_duration_s=phase.hold_s + 30,
        )
        for i in range(count)
    ]
    cpu_before = izs_node.cpu_seconds(node_pid)
    started = time.monotonic()
    async with CallerFleet() as fleet:
        outcomes = await fleet.run(plans, timeout_s=phase.seconds + phase.hold_s + 60)
    # Records are written as the calls end; give the last one a moment.
    await asyncio.sleep(2.0)
    phase.wall_s = time.monotonic() - started
    phase.node_cpu_s = izs_node.cpu_seconds(node_pid) - cpu_before
    phase.placed = count
    phase.answered = sum(1 for o in outcomes if o.answered)
    phase.setup_ms = sorted(
        (o.answered_at - o.sent_at).total_seconds() * 1000
        for o in outcomes
        if o.answered_at is not None and o.sent_at is not None
    )
    recorded = 0
    call_seconds = 0.0
    for outcome in outcomes:
        if outcome.sip_call_id is None:
            continue
        call = await asyncio.to_thread(repo.find_call_by_ref, outcome.sip_call_id)
        # Answered by the endpoint, queued (no call taker here), then ended by the caller: recorded with
        # its offer and end time (answered_at is when a call taker answers, so it stays empty).
        if call is not None and call.ended_at is not None:
            recorded += 1
            call_seconds += (call.ended_at - call.offered_at) / timedelta(seconds=1)
    phase.recorded = recorded
    phase.call_seconds = call_seconds
    return phase


def fit_costs(phases: list[Phase]) -> tuple[float, float] | None:
    """Least squares for CPU = a * calls + b * call-seconds over the phases (needs two hold times)."""
    rows = [(p.recorded, p.call_seconds, p.node_cpu_s) for p in phases if p.recorded]
    if len({round(c / max(n, 1), 1) for n, c, _ in rows}) < 2:
        return None
    s_nn = sum(n * n for n, _, _ in rows)
    s_nc = sum(n * c for n, c, _ in rows)
    s_cc = sum(c * c for _, c, _ in rows)
    s_ny = sum(n * y for n, _, y in rows)
    s_cy = sum(c * y for _, c, y in rows)
    det = s_nn * s_cc - s_nc * s_nc
    if abs(det) < 1e-9:
        return None
    a = (s_ny * s_cc - s_cy * s_nc) / det
    b = (s_nn * s_cy - s_nc * s_ny) / det
    return a, b


async def main_async(args: argparse.Namespace) -> int:
    rates = [float(x) for x in args.rates.split(",")]
    holds = [float(x) for x in args.hold.split(",")]
    with tempfile.TemporaryDirectory(prefix="izs-capacity-") as tmp:
        work = Path(tmp)
        voice = (
            SpeechSynthesizer(Path(args.voice_cache))
            .synthesize(
                "Dobrý den, potřebuji záchranku, manžel upadl.", "cs", voice="espeak", tail_silence_s=60.0
            )
            .path
        )
        cluster = None
        database_url = args.database_url
        if database_url is None:
            from support.servers import PostgresCluster

            cluster = PostgresCluster().start()
            database_url = cluster.create_database("izs_capacity")
        redis = EmbeddedRedis(work / "redis", port=free_port()).start()
        database = Database(database_url)
        node = None
        try:
            node, sip_port, _http = start_node(work, database_url, redis.url, args.transcription)
            time.sleep(2.0)
            idle_before = izs_node.cpu_seconds(node.pid)
            time.sleep(5.0)
            idle = (izs_node.cpu_seconds(node.pid) - idle_before) / 5.0
            print(f"node idle: {idle * 100:.1f} % of one core (lease loop, Redis, health)")
            repo = Repository(database)
            phases: list[Phase] = []
            for hold in holds:
                for rate in rates:
                    phase = await run_phase(
                        Phase(rate, hold, args.seconds),
                        sip_port,
                        node.pid,
                        voice,
                        repo,
                        f"r{rate:g}h{hold:g}",
                    )
                    phases.append(phase)
                    setup = phase.setup_ms or [0.0]
                    net_cpu = phase.node_cpu_s - idle * phase.wall_s
                    print(
                        f"offered {rate:5.1f}/min hold {hold:4.1f} s: placed {phase.placed:3d}, answered "
                        f"{phase.answered:3d}, recorded {phase.recorded:3d} ({phase.recorded_per_min:5.1f}/min); "
                        f"INVITE->200 median {setup[len(setup) // 2]:.0f} ms max {setup[-1]:.0f} ms; "
                        f"node CPU {phase.node_cpu_s:.1f} s in {phase.wall_s:.0f} s "
                        f"({phase.node_cpu_s / phase.wall_s * 100:.0f} % of a core), "
                        f"{net_cpu / max(phase.recorded, 1) * 1000:.0f} ms CPU per call net of idle"
                    )
            for phase in phases:
                phase.node_cpu_s -= idle * phase.wall_s
            costs = fit_costs(phases)
            if costs is not None:
                a, b = costs
                print(f"\nmodel: CPU = {a * 1000:.0f} ms per call + {b * 1000:.1f} ms per second of call")
                for mean_call_s in (60.0, 120.0, 180.0):
                    per_call = a + b * mean_call_s
                    if per_call > 0:
                        print(
                            f"  mean call {mean_call_s:.0f} s: one core carries {60.0 / per_call:.0f} calls/min "
                            f"({1.0 / b if b > 0 else float('inf'):.0f} calls at once by the media term)"
                        )
        finally:
            if node is not None and node.poll() is None:
                os.killpg(node.pid, signal.SIGTERM)
                try:
                    node.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(node.pid, signal.SIGKILL)
            database.dispose()
            redis.stop()
            if cluster is not None:
                cluster.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="20,40", help="offered calls per minute, comma separated")
    parser.add_argument("--seconds", type=float, default=45.0, help="length of each phase")
    parser.add_argument("--hold", default="4,12", help="seconds each caller stays on, comma separated")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL (default: a private cluster)")
    parser.add_argument("--transcription", action="store_true", help="transcription on (Whisper, CPU heavy)")
    parser.add_argument(
        "--voice-cache",
        default=str(Path(tempfile.gettempdir()) / "izs-voices"),
        help="where synthesized caller voices are cached",
    )
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
