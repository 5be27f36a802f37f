"""Pieces of a two-node centre for the HA drills: ``izs serve`` processes on their own loopback addresses
(127.0.0.2, 127.0.0.3, ...), Kamailio in front of them (``deploy/kamailio/izs-kamailio.sh``), and a small
API client. Every port is picked free at run time; every process is killed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
START_SCRIPT = REPO / "deploy" / "kamailio" / "izs-kamailio.sh"
SECRET_KEY = "ha-drill-shared-secret-key-0123456789-TESTONLY-KvK"
ADMIN_PASSWORD = "ha-admin-pw"
SUPERVISOR = ("sup", "ha-sup-pw")


def free_port(host: str, kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def loopback_usable(host: str) -> bool:
    """127.0.0.2 and up are loopback on Linux without configuration; elsewhere they may not be."""
    try:
        free_port(host, socket.SOCK_DGRAM)
    except OSError:
        return False
    return True


# Two intake nodes on one machine, each bound to its own loopback address.
needs_two_loopback_nodes = pytest.mark.skipif(
    not (loopback_usable("127.0.0.2") and loopback_usable("127.0.0.3")),
    reason="needs 127.0.0.2 and 127.0.0.3 on the loopback interface (Linux has them by default)",
)


@dataclass
class IntakeNode:
    """One ``izs serve`` process bound to its own loopback address."""

    node_id: str
    host: str
    work_dir: Path
    database_url: str
    redis_url: str
    takers: list[dict[str, Any]]
    transcription: bool = False
    rtp_base: int = 0
    sip_port: int = 0
    http_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        return self.work_dir / "serve.log"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def sip_address(self) -> str:
        return f"{self.host}:{self.sip_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("IZS_")}
        rtp_min = self.rtp_base or 20000 + (os.getpid() * 7 + self.sip_port) % 30000
        env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "IZS_NODE_ID": self.node_id,
                "IZS_VAR_DIR": str(self.work_dir / "var"),
                "IZS_HTTP_HOST": self.host,
                "IZS_HTTP_PORT": str(self.http_port),
                "IZS_SIP_HOST": self.host,
                "IZS_SIP_PORT": str(self.sip_port),
                "IZS_RTP_PORT_MIN": str(rtp_min),
                "IZS_RTP_PORT_MAX": str(rtp_min + 400),
                "IZS_SECRET_KEY": SECRET_KEY,
                "IZS_DATABASE_URL": self.database_url,
                "IZS_REDIS_URL": self.redis_url,
                "IZS_TRANSCRIPTION_ENABLED": "true" if self.transcription else "false",
                "IZS_AMI_ENABLED": "false",
                "IZS_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
                "IZS_LOG_JSON": "false",
                "IZS_OVERFLOW_AFTER_S": "600",
                "IZS_WRAP_UP_S": "0.5",
                "IZS_TAKERS": json.dumps(self.takers),
            }
        )
        env.update(self.extra_env)
        return env

    def start(self) -> IntakeNode:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if not self.sip_port:
            self.sip_port = free_port(self.host, socket.SOCK_DGRAM)
        if not self.http_port:
            self.http_port = free_port(self.host, socket.SOCK_STREAM)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "izs.cli", "serve"],
                cwd=REPO,
                env=self.env(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.node_id} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/api/healthz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise AssertionError(f"{self.node_id} did not answer within {timeout_s} s:\n{self.log_tail()}")

    def kill9(self) -> None:
        """kill -9 of the whole process group: no shutdown code runs, the lease is not released."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop the node with ``sig`` (to the process only, as systemd's KillMode=mixed does), then the
        group with SIGKILL if it has not gone within 20 s."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, sig)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


_PROBE_LINE = re.compile(r"IZS: intake node sip:(\S+) is (DOWN|UP)")


@dataclass
class KamailioFront:
    """Kamailio started by the shipped start script, in the foreground, logging to a file."""

    work_dir: Path
    nodes: list[str]
    listen_host: str = "127.0.0.1"
    probe_interval_s: int = 1
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    _lines: list[tuple[float, str]] = field(default_factory=list)
    _read: int = 0

    @property
    def log_path(self) -> Path:
        return self.work_dir / "kamailio.log"

    def target(self, dialled: str) -> str:
        return f"sip:{dialled}@{self.listen_host}:{self.port}"

    def start(self) -> KamailioFront:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port(self.listen_host, socket.SOCK_DGRAM)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [
                    "sh",
                    str(START_SCRIPT),
                    "-f",
                    "-r",
                    str(self.work_dir / "run"),
                    "-i",
                    str(self.probe_interval_s),
                    f"{self.listen_host}:{self.port}",
                    *self.nodes,
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"kamailio exited with {self.process.returncode}:\n{self.log_tail()}")
            if "Listening on" in self.log_tail(100_000):
                return self
            time.sleep(0.1)
        raise AssertionError(f"kamailio did not start:\n{self.log_tail()}")

    def probe_events(self) -> list[tuple[float, str, str]]:
        """(monotonic time first seen, node host:port, DOWN/UP) for every probe verdict logged so far.
        Times are when this method first read the line, so poll it often to time a verdict."""
        text = self.log_tail(10_000_000)
        new = text[self._read :]
        self._read = len(text)
        now = time.monotonic()
        for line in new.splitlines():
            if _PROBE_LINE.search(line):
                self._lines.append((now, line))
        out = []
        for seen, line in self._lines:
            match = _PROBE_LINE.search(line)
            assert match is not None
            out.append((seen, match.group(1), match.group(2)))
        return out

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


class Console:
    """What a supervisor's console does over one node's REST API."""

    def __init__(self, node: IntakeNode) -> None:
        self.node = node
        self.client = httpx.AsyncClient(base_url=node.base_url, timeout=10.0)
        self.token = ""

    async def login(self, username: str, password: str) -> str:
        response = await self.client.post(
            "/api/auth/token", json={"username": username, "password": password}
        )
        response.raise_for_status()
        self.token = str(response.json()["access_token"])
        self.client.headers["Authorization"] = f"Bearer {self.token}"
        return self.token

    async def ensure_supervisor(self) -> None:
        """Log in as the bootstrap admin, create the supervisor if needed, continue as the supervisor."""
        await self.login("admin", ADMIN_PASSWORD)
        created = await self.client.post(
            "/api/admin/users",
            json={"username": SUPERVISOR[0], "password": SUPERVISOR[1], "role": "supervisor"},
        )
        if created.status_code not in (201, 409):
            raise AssertionError(f"cannot create the supervisor: {created.status_code} {created.text}")
        await self.login(*SUPERVISOR)

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.client.get(path, params=params)
        response.raise_for_status()
        return response.json()

    async def post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.client.post(path, json=body or {})

    async def queued_call_ids(self) -> list[str]:
        queues = await self.get("/api/queues")
        desks = queues.get("desks", queues)
        return [str(e["call_id"]) for entries in desks.values() for e in entries]

    async def set_taker_state(self, taker_id: str, state: str) -> None:
        response = await self.client.put(
            f"/api/takers/{taker_id}/state", json={"state": state, "reason": "drill"}
        )
        response.raise_for_status()

    async def close(self) -> None:
        await self.client.aclose()


def utc_now() -> datetime:
    return datetime.now(UTC)
