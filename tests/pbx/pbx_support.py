"""A real Asterisk for the PBX-mode tests, started from ``IZS_TEST_ASTERISK`` (an install prefix) with the
shipped configuration (``deploy/asterisk``), plus a recording AMI proxy and ``izs serve`` as a process.

Everything runs as the current user with its own run/log/spool/lib directories under the test's tmp dir and
ports chosen free: several engineers' test runs share this machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "asterisk"
ASTERISK_PREFIX = os.environ.get("IZS_TEST_ASTERISK")
SKIP_REASON = (
    "PBX tests need a real Asterisk: set IZS_TEST_ASTERISK=/opt/asterisk-20.20.1 after building Asterisk "
    "20.20.1 as in docs/telephony-ami.md, section 'Building Asterisk 20.20.1 for the PBX tests'"
)
DRIVERS = ("sip", "pjsip")
TECH = {"sip": "SIP", "pjsip": "PJSIP"}


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def free_udp_tcp_port() -> int:
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free UDP+TCP port")


def wait_until(probe: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    """Poll ``probe`` until it returns something truthy; a deadline, never a fixed sleep."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what} (last: {last!r})")


def write_tone_wav(path: Path, seconds: float, frequency: float = 425.0, amplitude: int = 1500) -> Path:
    samples = (np.sin(np.arange(int(8000 * seconds)) * 2 * np.pi * frequency / 8000) * amplitude).astype(
        "<i2"
    )
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(samples.tobytes())
    return path


def concat_wavs(parts: list[Path | float], target: Path) -> Path:
    """Concatenate 8 kHz mono WAVs with silences (floats are seconds of silence)."""
    chunks: list[bytes] = []
    for part in parts:
        if isinstance(part, float | int):
            chunks.append(b"\0\0" * int(8000 * float(part)))
            continue
        with wave.open(str(part), "rb") as wav:
            assert wav.getframerate() == 8000 and wav.getnchannels() == 1
            chunks.append(wav.readframes(wav.getnframes()))
    with wave.open(str(target), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"".join(chunks))
    return target


# ---------------------------------------------------------------------------------------------- Asterisk


@dataclass
class PbxPorts:
    sip: int
    ami: int
    intake_sip: int
    phones: dict[str, int]


def render_config(driver: str, ports: PbxPorts, ami_bind_port: int) -> dict[str, str]:
    """The shipped configuration with its ports replaced by the test's free ones. Fails loudly when a
    shipped file no longer has the line it expects, so the test always runs the configuration we ship."""
    files: dict[str, str] = {}
    for path in sorted((DEPLOY / "common").glob("*.conf")):
        files[path.name] = path.read_text(encoding="utf-8")
    for path in sorted((DEPLOY / f"chan_{driver}").glob("*.conf")):
        files[path.name] = path.read_text(encoding="utf-8")

    def sub(name: str, pattern: str, replacement: str) -> None:
        new, count = re.subn(pattern, replacement, files[name], flags=re.MULTILINE)
        assert count >= 1, f"shipped {name} lacks {pattern!r}"
        files[name] = new

    sub("manager.conf", r"^port = 5038$", f"port = {ami_bind_port}")
    if driver == "sip":
        sub("sip.conf", r"^udpbindaddr = 127\.0\.0\.1:5080$", f"udpbindaddr = 127.0.0.1:{ports.sip}")
        sub("sip.conf", r"(\[intake\][^\[]*?)^port = 5060$", rf"\g<1>port = {ports.intake_sip}")
        for name, default in (("taker1", 5090), ("taker2", 5092)):
            sub(
                "sip.conf",
                rf"(\[{name}\]\(taker\)[^\[]*?)^port = {default}$",
                rf"\g<1>port = {ports.phones[name]}",
            )
    else:
        sub("pjsip.conf", r"^bind = 127\.0\.0\.1:5080$", f"bind = 127.0.0.1:{ports.sip}")
        sub(
            "pjsip.conf",
            r"^contact = sip:intake@127\.0\.0\.1:5060$",
            f"contact = sip:intake@127.0.0.1:{ports.intake_sip}",
        )
        for name, default in (("taker1", 5090), ("taker2", 5092)):
            sub(
                "pjsip.conf",
                rf"^contact = sip:{name}@127\.0\.0\.1:{default}$",
                f"contact = sip:{name}@127.0.0.1:{ports.phones[name]}",
            )
    return files


class AsteriskPbx:
    """One Asterisk process with the shipped configuration, its own dirs and ports."""

    def __init__(self, prefix: str, workdir: Path, driver: str, ports: PbxPorts) -> None:
        self.prefix = Path(prefix)
        self.driver = driver
        self.ports = ports
        self.dir = workdir / f"asterisk-{driver}"
        self.etc = self.dir / "etc"
        self.process: subprocess.Popen[bytes] | None = None
        self.binary = self.prefix / "sbin" / "asterisk"
        assert self.binary.exists(), (
            f"{self.binary} missing: is IZS_TEST_ASTERISK an Asterisk install prefix?"
        )

    def tech(self, name: str) -> str:
        return f"{TECH[self.driver]}/{name}"

    def write_config(self) -> None:
        for sub in ("etc", "run", "log", "spool", "lib", "db", "moh"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        lib = self.prefix / "lib" / "asterisk"
        data = self.prefix / "var" / "lib" / "asterisk"
        (self.etc / "asterisk.conf").write_text(
            "[directories]\n"
            f"astetcdir => {self.etc}\n"
            f"astmoddir => {lib / 'modules'}\n"
            f"astvarlibdir => {self.dir / 'lib'}\n"
            f"astdbdir => {self.dir / 'db'}\n"
            f"astkeydir => {self.dir / 'lib'}\n"
            f"astdatadir => {data}\n"
            f"astagidir => {self.dir / 'lib'}\n"
            f"astspooldir => {self.dir / 'spool'}\n"
            f"astrundir => {self.dir / 'run'}\n"
            f"astlogdir => {self.dir / 'log'}\n"
            f"astsbindir => {self.prefix / 'sbin'}\n"
            "[options]\nverbose = 3\ndebug = 0\nhideconnect = yes\n",
            encoding="utf-8",
        )
        for name, text in render_config(self.driver, self.ports, self.ports.ami).items():
            if name == "musiconhold.conf":
                text = text.replace("directory = moh", f"directory = {self.dir / 'moh'}")
            (self.etc / name).write_text(text, encoding="utf-8")
        write_tone_wav(self.dir / "moh" / "hold.wav", seconds=4.0, frequency=523.0, amplitude=800)

    def start(self, timeout_s: float = 60.0) -> None:
        self.write_config()
        log = (self.dir / "console.log").open("ab")
        self.process = subprocess.Popen(
            [str(self.binary), "-C", str(self.etc / "asterisk.conf"), "-f", "-n", "-g", "-vvv"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"asterisk exited {self.process.returncode}: {self.console()[-3000:]}")
            return "Asterisk Ready" in self.console() and self._ami_open()

        wait_until(ready, timeout_s, "Asterisk fully booted", 0.2)

    def _ami_open(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.ports.ami), 0.5):
            return True
        return False

    def console(self) -> str:
        path = self.dir / "console.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cli(self, command: str, timeout_s: float = 10.0) -> str:
        result = subprocess.run(
            [str(self.binary), "-C", str(self.etc / "asterisk.conf"), "-rx", command],
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
        return result.stdout.decode(errors="replace")

    def channels(self) -> list[str]:
        out = self.cli("core show channels concise")
        return [line.split("!")[0] for line in out.splitlines() if "!" in line]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.cli("core stop now")
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.console_mark = len(self.console())
        self.start()


# ------------------------------------------------------------------------------------ AMI recording proxy


@dataclass
class ProxyConnection:
    opened_at: float
    client: socket.socket
    upstream: socket.socket | None
    records: list[dict[str, Any]] = field(default_factory=list)


class AmiProxy:
    """A TCP proxy between intake and Asterisk's AMI that records every message (the same JSONL format as
    tests/fixtures/ami/sessions) and can cut the link: an AMI outage while Asterisk keeps taking calls."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port: int = self._listener.getsockname()[1]
        self.attempts: list[float] = []  # monotonic time of every connection attempt
        self.connections: list[ProxyConnection] = []
        self._cut = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="ami-proxy")
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.attempts.append(time.monotonic())
            if self._cut.is_set():
                client.close()  # the link is down: the client sees a connection that closes at once
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=2)
                upstream.settimeout(None)  # a quiet AMI line is not a dead one
            except OSError:
                client.close()
                continue
            conn = ProxyConnection(time.monotonic(), client, upstream)
            with self._lock:
                self.connections.append(conn)
            for source, target, direction in ((upstream, client, "recv"), (client, upstream, "send")):
                threading.Thread(
                    target=self._pump, args=(conn, source, target, direction), daemon=True
                ).start()

    def _pump(
        self, conn: ProxyConnection, source: socket.socket, target: socket.socket, direction: str
    ) -> None:
        buffer = b""
        first = direction == "recv"
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                target.sendall(chunk)
                buffer += chunk
                while True:
                    if first and b"\r\n" in buffer:
                        line, _, buffer = buffer.partition(b"\r\n")
                        self._record(conn, direction, line + b"\r\n")
                        first = False
                        continue
                    if b"\r\n\r\n" not in buffer:
                        break
                    message, _, buffer = buffer.partition(b"\r\n\r\n")
                    self._record(conn, direction, message + b"\r\n\r\n")
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _record(self, conn: ProxyConnection, direction: str, raw: bytes) -> None:
        with self._lock:
            conn.records.append(
                {
                    "t": round(time.monotonic() - conn.opened_at, 4),
                    "dir": direction,
                    "text": raw.decode("utf-8", "replace"),
                }
            )

    def cut(self) -> None:
        """Drop every connection and refuse new ones until :meth:`restore`."""
        self._cut.set()
        with self._lock:
            for conn in self.connections:
                for sock in (conn.client, conn.upstream):
                    if sock is not None:
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                        sock.close()

    def restore(self) -> None:
        self._cut.clear()

    def mark(self) -> tuple[int, int]:
        with self._lock:
            last = len(self.connections) - 1
            return last, len(self.connections[last].records) if last >= 0 else 0

    def records_since(self, mark: tuple[int, int]) -> list[dict[str, Any]]:
        """Messages of the current connection since ``mark`` (a fresh connection: all of it)."""
        with self._lock:
            index, count = mark
            last = len(self.connections) - 1
            if last != index:
                return list(self.connections[last].records)
            return list(self.connections[last].records[count:])

    def save_session(self, records: list[dict[str, Any]], path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            for record in records:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._listener.close()


# ---------------------------------------------------------------------------------------------- izs serve


class IntakeServer:
    """``izs serve`` in PBX mode as a process, driven over its REST API as a console would."""

    def __init__(self, workdir: Path, settings: dict[str, Any], takers: list[dict[str, Any]]) -> None:
        self.dir = workdir / "intake"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.settings = {
            "var_dir": str(self.dir / "var"),
            "http_host": "127.0.0.1",
            "http_port": self.http_port,
            "node_id": "pbx-test",
            "log_json": False,
            "bootstrap_admin_password": "pbx-admin-pw",
            **settings,
        }
        self.takers = takers
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "serve.log"
        self._token: str | None = None

    def _toml(self) -> str:
        def value(v: Any) -> str:
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, int | float):
                return str(v)
            if isinstance(v, list):
                return "[" + ", ".join(value(x) for x in v) + "]"
            return json.dumps(str(v))

        lines = [f"{k} = {value(v)}" for k, v in self.settings.items()]
        for taker in self.takers:
            lines.append("[[takers]]")
            lines += [f"{k} = {value(v)}" for k, v in taker.items()]
        return "\n".join(lines) + "\n"

    def start(self, timeout_s: float = 120.0) -> None:
        config = self.dir / "izs.toml"
        config.write_text(self._toml(), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("IZS_")}
        env.update({"IZS_CONFIG": str(config), "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)})
        # Live transcription is real-time work: on a shared machine the test run may be niced while the
        # service under test is not (IZS_TEST_SERVE_NICE=0), otherwise the recogniser drops the caller's words.
        nice = os.environ.get("IZS_TEST_SERVE_NICE")

        def set_nice() -> None:
            if nice is not None:
                os.nice(int(nice) - os.nice(0))

        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "izs.cli", "serve"],
                cwd=REPO,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=set_nice if nice is not None else None,
            )

        def up() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"izs serve exited {self.process.returncode}: {self.log()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.url}/api/healthz", timeout=1.0).status_code == 200
            return False

        wait_until(up, timeout_s, "izs serve answering", 0.3)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _headers(self) -> dict[str, str]:
        if self._token is None:
            response = httpx.post(
                f"{self.url}/api/auth/token",
                json={"username": "admin", "password": "pbx-admin-pw"},
                timeout=10,
            )
            response.raise_for_status()
            self._token = response.json()["access_token"]
        return {"Authorization": f"Bearer {self._token}"}

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.url}{path}", headers=self._headers(), timeout=10)
        response.raise_for_status()
        return response.json()

    def set_state(self, taker_id: str, state: str, reason: str = "") -> httpx.Response:
        return httpx.put(
            f"{self.url}/api/takers/{taker_id}/state",
            json={"state": state, "reason": reason},
            headers=self._headers(),
            timeout=15,
        )

    def calls(self) -> list[dict[str, Any]]:
        data = self.get("/api/calls?limit=200")
        items: list[dict[str, Any]] = data["items"] if isinstance(data, dict) else data
        return items

    def call_by_ref(self, call_ref: str) -> dict[str, Any] | None:
        for call in self.calls():
            if call.get("call_ref") == call_ref:
                detail: dict[str, Any] = self.get(f"/api/calls/{call['id']}")
                return detail
        return None

    def queues(self) -> dict[str, list[dict[str, Any]]]:
        queues: dict[str, list[dict[str, Any]]] = self.get("/api/queues")["desks"]
        return queues

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@contextlib.contextmanager
def stopping(*things: Any) -> Iterator[None]:
    try:
        yield
    finally:
        for thing in reversed(things):
            with contextlib.suppress(Exception):
                thing.stop() if hasattr(thing, "stop") else thing.close()


def which(tool: str) -> str | None:
    return shutil.which(tool)
