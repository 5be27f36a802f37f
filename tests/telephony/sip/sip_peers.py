"""Real SIP peers for the endpoint tests: headless baresip user agents driven over ctrl_tcp."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

BARESIP = shutil.which("baresip")
ESPEAK = shutil.which("espeak-ng")
SOX = shutil.which("sox")
MODULE_PATH = Path("/usr/lib/baresip/modules")


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def free_sip_port() -> int:
    """A port free for both UDP (SIP) and TCP (baresip also listens on TCP for SIP)."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port pair")


def synthesize_czech(text: str, target: Path) -> Path:
    """espeak-ng Czech speech → 8 kHz mono 16-bit WAV."""
    assert ESPEAK and SOX, "espeak-ng and sox are required"
    raw = target.with_suffix(".raw.wav")
    subprocess.run([ESPEAK, "-v", "cs", "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(
        [SOX, str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(target)],
        check=True,
        capture_output=True,
    )
    raw.unlink()
    return target


def read_wav(path: Path) -> np.ndarray[Any, np.dtype[np.int16]]:
    with wave.open(str(path), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").copy()


def write_tone_wav(path: Path, seconds: float, frequency: float = 425.0, amplitude: int = 2000) -> Path:
    samples = (np.sin(np.arange(int(8000 * seconds)) * 2 * np.pi * frequency / 8000) * amplitude).astype(
        "<i2"
    )
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(samples.tobytes())
    return path


def peak_normalised_correlation(reference: np.ndarray[Any, Any], received: np.ndarray[Any, Any]) -> float:
    """Max over lags of the normalised cross-correlation of ``reference`` inside ``received``."""
    ref = reference.astype(np.float64)
    sig = received.astype(np.float64)
    if len(sig) < len(ref):
        sig = np.concatenate([sig, np.zeros(len(ref) - len(sig))])
    size = 1 << int(np.ceil(np.log2(len(sig) + len(ref))))
    corr = np.fft.irfft(np.fft.rfft(sig, size) * np.conj(np.fft.rfft(ref, size)), size)[
        : len(sig) - len(ref) + 1
    ]
    energy = np.concatenate([[0.0], np.cumsum(sig**2)])
    window = energy[len(ref) :] - energy[: len(sig) - len(ref) + 1]
    norm = np.sqrt(np.maximum(window, 1e-9) * float(np.sum(ref**2)))
    return float(np.max(corr / norm))


class Baresip:
    """One baresip process with its own config dir, SIP port and ctrl_tcp control port."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        audio_source: Path | None = None,
        auto_answer: bool = False,
        codec: str | None = None,
        record: bool = False,
    ) -> None:
        assert BARESIP, "baresip is required"
        self.name = name
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sip_port = 0
        self.ctrl_port = 0
        self.record_dir = self.dir / "recordings"
        self.events: list[dict[str, Any]] = []
        self._responses: list[dict[str, Any]] = []
        self._record = record
        self._audio_source = audio_source
        self._auto_answer = auto_answer
        self._codec = codec
        self._process: subprocess.Popen[bytes] | None = None
        self._ctrl: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._token = 0
        self._cond = threading.Condition()

    @property
    def uri(self) -> str:
        return f"sip:{self.name}@127.0.0.1:{self.sip_port}"

    def _write_config(self) -> None:
        if self._audio_source is None:
            # ausine only runs at 48 kHz; a long quiet tone file keeps the call up until hung up.
            self._audio_source = write_tone_wav(self.dir / "tone.wav", seconds=120.0)
        source = f"aufile,{self._audio_source}"
        modules = ["g711.so", "aufile.so", "aubridge.so", "account.so", "menu.so", "ctrl_tcp.so"]
        if self._record:
            modules.insert(0, "sndfile.so")
            self.record_dir.mkdir(exist_ok=True)
        lines = [
            f"module_path {MODULE_PATH}",
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{self.sip_port}",
            "net_interface 127.0.0.1",
            "audio_player aubridge,nul",
            f"audio_source {source}",
            "audio_alert aubridge,nul",
            "call_max_calls 4",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
            f"snd_path {self.record_dir}",
            "rtp_ports 10000-32000"  # below the ephemeral range the SIP/ctrl ports come from,
            "jitter_buffer_delay 1-3",
            *[f"module {m}" for m in modules],
        ]
        (self.dir / "config").write_text("\n".join(lines) + "\n")
        answer = ";answermode=auto" if self._auto_answer else ""
        if self._codec:
            answer += f";audio_codecs={self._codec}/8000/1"  # offer only this codec
        (self.dir / "accounts").write_text(f"<sip:{self.name}@127.0.0.1>;regint=0{answer}\n")
        (self.dir / "contacts").write_text("")

    def start(self, timeout: float = 10.0) -> Baresip:
        # Ports are picked just before launch and re-picked when another process grabbed one meanwhile
        # (other helpers' tests run on this machine at the same time).
        for _ in range(5):
            self.sip_port = free_sip_port()
            self.ctrl_port = free_port(socket.SOCK_STREAM)
            if self._launch(timeout):
                return self
        raise RuntimeError(f"baresip {self.name} could not bind its ports: {self.log()[-2000:]}")

    def _launch(self, timeout: float) -> bool:
        assert BARESIP is not None
        self._write_config()
        log = (self.dir / "baresip.log").open("wb")
        self._process = subprocess.Popen(
            [BARESIP, "-f", str(self.dir)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while "baresip is ready." not in self.log():
            if self._process.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        text = self.log()
        if "baresip is ready." not in text or "Address already in use" in text:
            self._process.kill()
            self._process.wait()
            if "Address already in use" in text:
                return False
            raise RuntimeError(f"baresip {self.name} did not start: {text[-2000:]}")
        self._ctrl = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=5)
        self._ctrl.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        return True

    def log(self) -> str:
        return (self.dir / "baresip.log").read_text(errors="replace")

    def _read_loop(self) -> None:
        assert self._ctrl is not None
        buffer = b""
        while True:
            try:
                chunk = self._ctrl.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b":" in buffer:
                length_text, _, rest = buffer.partition(b":")
                if not length_text.isdigit():
                    return
                length = int(length_text)
                if len(rest) < length + 1:
                    break
                message = json.loads(rest[:length])
                buffer = rest[length + 1 :]
                with self._cond:
                    (self.events if message.get("event") else self._responses).append(message)
                    self._cond.notify_all()

    def command(self, command: str, params: str = "") -> dict[str, Any]:
        assert self._ctrl is not None
        self._token += 1
        token = str(self._token)
        payload = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._ctrl.sendall(str(len(payload)).encode() + b":" + payload + b",")
        return self._wait(lambda: next((r for r in self._responses if r.get("token") == token), None), 10.0)

    def _wait(self, probe: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = probe()
                if found:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"baresip {self.name}: timed out; events={self.event_types()}")
                self._cond.wait(remaining)

    def event_types(self) -> list[str]:
        with self._cond:
            return [str(e.get("type")) for e in self.events]

    def wait_event(self, event_type: str, timeout: float = 10.0) -> dict[str, Any]:
        found: dict[str, Any] = self._wait(
            lambda: next((e for e in self.events if e.get("type") == event_type), None), timeout
        )
        return found

    def dial(self, uri: str) -> None:
        self.command("dial", uri)

    def hangup(self) -> None:
        self.command("hangup")

    def received_audio(self) -> np.ndarray[Any, np.dtype[np.int16]]:
        """What baresip decoded from the RTP it received (sndfile module's dump)."""
        dumps = sorted(self.record_dir.glob("dump-*-dec.wav"))
        assert dumps, f"no decoded-audio dump in {self.record_dir}: {list(self.record_dir.iterdir())}"
        return read_wav(dumps[-1])

    def stop(self) -> None:
        if self._ctrl is not None:
            with contextlib.suppress(OSError):
                self._ctrl.close()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


@contextlib.contextmanager
def running_baresips(peers: list[Baresip]) -> Iterator[list[Baresip]]:
    try:
        for peer in peers:
            peer.start()
        yield peers
    finally:
        for peer in peers:
            peer.stop()
