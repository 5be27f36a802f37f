"""An `izs serve` node for the benchmarks that drive the product from outside (over HTTP and SIP).

Started as its own process with only the ``IZS_*`` settings the benchmark gives (the caller's environment's
``IZS_*`` are dropped, so a developer's shell cannot change what is measured), logs to ``work/node.log``;
``start`` returns once ``/api/healthz`` answers, and stops the benchmark with the log's tail if it cannot.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT_S = 120.0


def start(work: Path, http_port: int, settings: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IZS_")}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "IZS_VAR_DIR": str(work / "var"),
            "IZS_HTTP_HOST": "127.0.0.1",
            "IZS_HTTP_PORT": str(http_port),
            "IZS_LOG_JSON": "false",
            **settings,
        }
    )
    log = (work / "node.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "izs.cli", "serve"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"node exited: {(work / 'node.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{http_port}/api/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(
        f"node did not start in {START_TIMEOUT_S:.0f} s: {(work / 'node.log').read_text()[-2000:]}"
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and its reaped children (the node's own threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / CLOCK_TICKS
