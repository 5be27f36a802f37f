"""Authenticated API latency during a wrong-password flood (issue 16).

One ``izs serve`` process (its own process, SQLite + its embedded Redis, SIP and transcription off) on
loopback. A supervisor client reads ``GET /api/calls`` back to back while 30 clients post wrong passwords
to ``POST /api/auth/token`` as fast as they are answered. Phases, each on a fresh node:

Reads are issued on a fixed schedule (every 50 ms), not one after another, so a stall of the node delays
every read scheduled during it and shows in the percentiles.

* ``quiet``      no flood: the baseline of this run;
* ``flood``      30-client flood with the shipped throttling (held back after 5 failures per user name /
                 20 per address, answered 429 without hashing);
* ``unthrottled`` the same flood with throttling thresholds set out of reach, so every attempt is an
                 argon2 verification: shows what the password executor of its own (``IZS_PASSWORD_HASH_
                 WORKERS``, bounded queue, 429 when full) does on its own.

Prints p50/p95/max of the authenticated reads, the flood's answers per status and the node's CPU time per
flood request; ratios against the quiet baseline. The flood runs in a process of its own, so the reader's
timings are not its own event loop's congestion. On a shared machine the absolute figures follow the load
average (printed): read the ratios. Bounded: ``--seconds`` per phase (default 15), loopback only.
Run: ``python benchmarks/login_flood.py [--seconds 15] [--clients 30]``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import izs_node  # noqa: E402  (benchmarks/izs_node.py)

from intake.redis_server import free_port  # noqa: E402

ADMIN_PASSWORD = "login-flood-admin-password"
READ_INTERVAL_S = 0.05
SECRET = "login-flood-benchmark-secret-0123456789-BENCHONLY-KvK"


def start_node(work: Path, extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = izs_node.start(
        work,
        port,
        {
            "IZS_NODE_ID": "login-flood",
            "IZS_SIP_ENABLED": "false",
            "IZS_TRANSCRIPTION_ENABLED": "false",
            "IZS_SECRET_KEY": SECRET,
            "IZS_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "IZS_LOG_LEVEL": "ERROR",
            **extra,
        },
    )
    return process, f"http://127.0.0.1:{port}"


async def reader(base: str, token: str, until: float, latencies: list[float]) -> None:
    """A read every READ_INTERVAL_S on a fixed schedule, whether or not the previous one has answered, so a
    stall shows in every read it delays (no coordinated omission); a read still open at the end counts with
    the time it has waited so far."""
    async with httpx.AsyncClient(
        base_url=base,
        headers={"Authorization": f"Bearer {token}"},
        timeout=120,
        limits=httpx.Limits(max_connections=400, max_keepalive_connections=50),
    ) as client:

        async def one() -> None:
            started = time.perf_counter()
            try:
                response = await client.get("/api/calls")
                response.raise_for_status()
            finally:
                latencies.append((time.perf_counter() - started) * 1000)

        tasks: list[asyncio.Task[None]] = []
        next_at = time.monotonic()
        while next_at < until:
            tasks.append(asyncio.create_task(one()))
            next_at += READ_INTERVAL_S
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        done, pending = await asyncio.wait(tasks, timeout=30)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in done:
            task.result()


async def flooder(base: str, n: int, until: float, answers: collections.Counter[int]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        i = 0
        while time.monotonic() < until:
            i += 1
            username = "admin" if i % 2 else f"guess-{n}-{i}"
            try:
                response = await client.post(
                    "/api/auth/token", json={"username": username, "password": f"wrong-{i}"}
                )
                answers[response.status_code] += 1
            except httpx.HTTPError:
                answers[0] += 1


async def flood_process(base: str, seconds: float, clients: int) -> collections.Counter[int]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--flood-only",
        base,
        "--seconds",
        str(seconds),
        "--clients",
        str(clients),
        stdout=subprocess.PIPE,
    )
    out, _ = await child.communicate()
    return collections.Counter({int(k): v for k, v in json.loads(out).items()})


async def flood_only(base: str, seconds: float, clients: int) -> None:
    answers: collections.Counter[int] = collections.Counter()
    until = time.monotonic() + seconds
    await asyncio.gather(*(flooder(base, n, until, answers) for n in range(clients)))
    print(json.dumps(answers))


async def phase(name: str, seconds: float, clients: int, extra: dict[str, str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"izs-flood-{name}-") as tmp:
        process, base = start_node(Path(tmp), extra)
        try:
            async with httpx.AsyncClient(base_url=base) as client:
                login = await client.post(
                    "/api/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}
                )
                login.raise_for_status()
                token = login.json()["access_token"]
                for _ in range(20):  # warm up
                    await client.get("/api/calls", headers={"Authorization": f"Bearer {token}"})
            latencies: list[float] = []
            answers: collections.Counter[int] = collections.Counter()
            cpu_before = izs_node.cpu_seconds(process.pid)
            if clients:
                flooding = asyncio.create_task(flood_process(base, seconds, clients))
                await asyncio.sleep(0.5)  # the flood process is up and sending
            until = time.monotonic() + seconds - 0.5
            await reader(base, token, until, latencies)
            if clients:
                answers = await flooding
            node_cpu = izs_node.cpu_seconds(process.pid) - cpu_before
        finally:
            process.terminate()  # the node stops its embedded Redis itself
            try:
                process.wait(90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
    ordered = sorted(latencies)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    stats = {
        "reads": float(len(ordered)),
        "p50": statistics.median(ordered),
        "p95": p95,
        "max": ordered[-1],
    }
    flood = ", ".join(f"{status or 'error'}: {count}" for status, count in sorted(answers.items()))
    per_request = node_cpu * 1000 / max(1, sum(answers.values()) + len(ordered))
    print(
        f"{name:<12} GET /api/calls n={len(ordered):5d}  p50 {stats['p50']:6.1f} ms  p95 {p95:6.1f} ms  "
        f"max {stats['max']:7.1f} ms   flood answers: {flood or '-'}   node CPU {node_cpu:.1f} s "
        f"({per_request:.1f} ms/request)   load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return stats


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--flood-only", metavar="BASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.flood_only:
        await flood_only(args.flood_only, args.seconds, args.clients)
        return
    quiet = await phase("quiet", args.seconds, 0, {})
    flood = await phase("flood", args.seconds, args.clients, {})
    unthrottled = await phase(
        "unthrottled",
        args.seconds,
        args.clients,
        {"IZS_LOGIN_FAILURES_PER_USER": "1000000", "IZS_LOGIN_FAILURES_PER_ADDRESS": "1000000"},
    )
    for name, stats in (("flood", flood), ("unthrottled", unthrottled)):
        print(
            f"{name}: p95 {stats['p95'] / quiet['p95']:.1f}x the quiet p95, p50 {stats['p50'] / quiet['p50']:.1f}x"
        )


if __name__ == "__main__":
    asyncio.run(main())
