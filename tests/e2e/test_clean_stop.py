"""``izs serve`` and ``izs demo`` stopped with SIGTERM (what systemd, docker and kill send) stop every child
they started - the embedded redis-server, the demo's baresip callers - as they do on Ctrl-C, and the
shutdown does not report its own Redis going away as "event bus degraded" (issue 13).

Each run is a real ``izs`` process in a session of its own; its descendants are listed from /proc just before
the signal and must all be gone (none left orphaned, re-parented to init) once it has exited.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def descendants(pid: int) -> dict[int, str]:
    """Every live descendant of ``pid``: pid -> command line."""
    tree = _children()
    found: dict[int, str] = {}
    todo = list(tree.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            found[child] = (Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        todo.extend(tree.get(child, []))
    return found


def still_alive(pids: dict[int, str]) -> dict[int, str]:
    alive = {}
    for pid, cmdline in pids.items():
        try:
            status = (Path("/proc") / str(pid) / "status").read_text()
            now = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "State:\tZ" not in status and now == cmdline:  # the same process, not a reused pid
            alive[pid] = cmdline
    return alive


def izs_env(var_dir: Path, http_port: int, sip_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IZS_")}
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
            "IZS_VAR_DIR": str(var_dir),
            "IZS_HTTP_HOST": "127.0.0.1",
            "IZS_HTTP_PORT": str(http_port),
            "IZS_SIP_HOST": "127.0.0.1",
            "IZS_SIP_PORT": str(sip_port),
            "IZS_SECRET_KEY": "clean-stop-test-secret-0123456789abcdef-TESTONLY-KvK",
            "IZS_TRANSCRIPTION_ENABLED": "false",
            "IZS_AMI_ENABLED": "false",
            "IZS_LOG_JSON": "false",
        }
    )
    return env


def wait_for(condition, timeout_s: float, what: str, process: subprocess.Popen[bytes], log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"izs exited with {process.returncode} before {what}:\n{log.read_text()[-3000:]}"
            )
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout_s} s:\n{log.read_text()[-3000:]}")


def stop_with(sig: signal.Signals, process: subprocess.Popen[bytes], log: Path) -> tuple[int, dict[int, str]]:
    """Send ``sig`` to the izs process only (as systemd's KillMode=mixed does); the children it had."""
    children = descendants(process.pid)
    os.kill(process.pid, sig)
    try:
        code = process.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        raise AssertionError(
            f"izs did not stop within 60 s of {sig.name}:\n{log.read_text()[-3000:]}"
        ) from None
    deadline = time.monotonic() + 5
    while still_alive(children) and time.monotonic() < deadline:
        time.sleep(0.1)
    return code, children


def kill_leftovers(process: subprocess.Popen[bytes], children: dict[int, str]) -> None:
    for pid in still_alive(children):
        os.kill(pid, signal.SIGKILL)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_stops_its_embedded_redis(tmp_path: Path, sig: signal.Signals) -> None:
    http_port = _free_port(socket.SOCK_STREAM)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "izs.cli", "serve"],
            cwd=REPO,
            env=izs_env(tmp_path / "var", http_port, _free_port(socket.SOCK_DGRAM)),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    children: dict[int, str] = {}
    try:

        def ready() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{http_port}/api/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, 90, "answer on /api/healthz", process, log)
        assert any("redis-server" in c for c in descendants(process.pid).values()), descendants(process.pid)
        code, children = stop_with(sig, process, log)
        text = log.read_text(errors="replace")
        assert code == 0, text[-3000:]
        assert still_alive(children) == {}, (still_alive(children), text[-3000:])
        assert "event bus degraded" not in text, text[-3000:]
        assert "stopped" in text
    finally:
        kill_leftovers(process, children)


@pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in ("baresip", "espeak-ng", "sox")),
    reason="needs baresip, espeak-ng and sox",
)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_demo_stops_its_callers_and_embedded_redis(tmp_path: Path, sig: signal.Signals) -> None:
    scenarios = tmp_path / "one.jsonl"
    lines = (REPO / "tests/fixtures/calls/dev.jsonl").read_text("utf-8").splitlines()
    scenarios.write_text(next(line for line in lines if '"id": "dev-003"' in line) + "\n", encoding="utf-8")
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "izs.cli",
                "demo",
                "--calls",
                "1",
                "--pace",
                "0",
                "--scenarios",
                str(scenarios),
            ],
            cwd=REPO,
            env=izs_env(tmp_path / "var", 0, 0),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    children: dict[int, str] = {}
    try:

        def caller_running() -> bool:
            running = descendants(process.pid).values()
            return any("baresip" in c for c in running) and any("redis-server" in c for c in running)

        wait_for(caller_running, 150, "baresip caller and embedded Redis running", process, log)
        code, children = stop_with(sig, process, log)
        text = log.read_text(errors="replace")
        assert code == 0, text[-3000:]
        assert still_alive(children) == {}, (still_alive(children), text[-3000:])
        assert "event bus degraded" not in text, text[-3000:]
    finally:
        kill_leftovers(process, children)
