"""SIP endpoint capacity on this machine: concurrent calls held and CPU per active call.

Run: /work/venv/bin/python benchmarks/telephony.py [--levels 10,50,100,200] [--seconds 5]

The endpoint runs in this process; a separate process (this file with --load) plays N callers: INVITE/ACK,
then 20 ms G.711 RTP for each call, then BYE. CPU is this process's CPU time (all endpoint threads) per wall
second while the calls stream; "per call" is the increase over the idle baseline measured in the same run,
divided by N. Frames delivered vs. expected shows whether the calls were really held (no loss).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telephony.events import AudioFrame, CallAnswered, CallEnded, TelephonyEvent
from telephony.sip import SipEndpoint, SipEndpointConfig
from telephony.sip.g711 import encode
from telephony.sip.message import SipMessage, parse_message
from telephony.sip.rtp import RtpPacket
from telephony.sip.sdp import PCMU, parse_sdp


class CountingSink:
    def __init__(self) -> None:
        self.frames = 0
        self.answered = 0
        self.ended = 0
        self.answered_refs: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, event: TelephonyEvent) -> None:
        with self._lock:
            if isinstance(event, AudioFrame):
                self.frames += 1
            elif isinstance(event, CallAnswered):
                self.answered += 1
                self.answered_refs.append(event.call_ref)
            elif isinstance(event, CallEnded):
                self.ended += 1


def _wait(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def run_level(
    endpoint: SipEndpoint, sink: CountingSink, calls: int, seconds: float, prompt: bool
) -> dict[str, float]:
    base_answered, base_ended, base_frames = sink.answered, sink.ended, sink.frames
    loader = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--load",
            str(calls),
            "--seconds",
            str(seconds),
            "--port",
            str(endpoint.address[1]),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    if not _wait(lambda: sink.answered - base_answered >= calls, 60):
        loader.kill()
        raise RuntimeError(f"only {sink.answered - base_answered}/{calls} calls answered")
    if prompt:
        tone = (np.sin(np.arange(8000) * 2 * np.pi * 425 / 8000) * 6000).astype("<i2").tobytes()
        for call_ref in sink.answered_refs[-calls:]:
            endpoint.play_prompt_sync(call_ref, tone, 8000, loop=True)
    cpu0, wall0 = time.process_time(), time.monotonic()
    frames0 = sink.frames
    _wait(lambda: sink.ended - base_ended >= calls, seconds + 60)
    cpu1, wall1 = time.process_time(), time.monotonic()
    loader.wait(timeout=30)
    output = (loader.stdout.read() if loader.stdout else "").split()
    streamed, answer_median_ms, answer_max_ms = (
        (float(x) for x in output) if len(output) == 3 else (0.0, 0.0, 0.0)
    )
    frames = sink.frames - base_frames
    expected = calls * streamed * 50
    return {
        "calls": calls,
        "cpu_percent": 100 * (cpu1 - cpu0) / (wall1 - wall0),
        "frames_ratio": frames / expected if expected else 0.0,
        "frames_per_s": (sink.frames - frames0) / (wall1 - wall0),
        "answer_median_ms": answer_median_ms,
        "answer_max_ms": answer_max_ms,
    }


def idle_cpu_percent(seconds: float) -> float:
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    return 100 * (time.process_time() - cpu0) / (time.monotonic() - wall0)


def load_main(calls: int, seconds: float, port: int) -> None:
    """The caller side: N calls from one SIP socket and one RTP socket, 20 ms G.711 each."""
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind(("127.0.0.1", 0))
    sip.settimeout(10)
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    rtp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    local = sip.getsockname()[1]
    target = ("127.0.0.1", port)
    sdp = (
        f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {rtp.getsockname()[1]} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    ).encode()

    def request(method: str, call_id: str, to_tag: str = "", body: bytes = b"", cseq: int = 1) -> bytes:
        headers = (
            ("Via", f"SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport"),
            ("From", f"<sip:bench@127.0.0.1>;tag={call_id[:8]}"),
            ("To", "<sip:112@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")),
            ("Call-ID", call_id),
            ("CSeq", f"{cseq} {method}"),
            ("Contact", f"<sip:bench@127.0.0.1:{local}>"),
            ("Content-Type", "application/sdp"),
        )
        return SipMessage(method=method, uri="sip:112@127.0.0.1", headers=headers, body=body).to_bytes()

    legs: dict[str, tuple[str, int]] = {}
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    for _ in range(calls):
        call_id = uuid.uuid4().hex
        sent_at[call_id] = time.monotonic()
        sip.sendto(request("INVITE", call_id, body=sdp), target)
    while len(legs) < calls:
        message = parse_message(sip.recvfrom(65535)[0])
        if message.status == 200 and message.call_id not in legs:
            latencies.append(time.monotonic() - sent_at[message.call_id])
            tag = (message.header("To") or "").split("tag=")[1]
            address = parse_sdp(message.body).audio_address()
            assert address is not None
            legs[message.call_id] = (tag, address[1])
            sip.sendto(request("ACK", message.call_id, tag), target)
    speech = (np.sin(np.arange(160) * 2 * np.pi * 300 / 8000) * 8000).astype("<i2").tobytes()
    payload = encode(speech, PCMU)
    started = time.monotonic()
    packets = 0
    next_at = started
    while time.monotonic() - started < seconds:
        for index, (_, rtp_port) in enumerate(legs.values()):
            rtp.sendto(
                RtpPacket(PCMU, packets, packets * 160, index + 1, payload).to_bytes(),
                ("127.0.0.1", rtp_port),
            )
        packets += 1
        next_at += 0.02
        time.sleep(max(0.0, next_at - time.monotonic()))
    streamed = packets * 0.02
    for call_id, (tag, _) in legs.items():
        sip.sendto(request("BYE", call_id, tag, cseq=2), target)
    print(f"{streamed:.3f} {1000 * float(np.median(latencies)):.2f} {1000 * max(latencies):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default="10,50,100,200")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--load", type=int)
    parser.add_argument("--port", type=int)
    args = parser.parse_args()
    if args.load is not None:
        load_main(args.load, args.seconds, args.port)
        return
    sink = CountingSink()
    endpoint = SipEndpoint(SipEndpointConfig(host="127.0.0.1", port=0, media_timeout_s=30), sink)
    started = time.monotonic()
    endpoint.start()
    start_ms = 1000 * (time.monotonic() - started)
    try:
        idle = idle_cpu_percent(2.0)
        print(f"machine: {os.cpu_count()} CPUs; start() returned in {start_ms:.1f} ms (no registrar)")
        print(f"endpoint idle CPU {idle:.1f}% of one core (baseline for CPU/call)")
        print(
            f"{'calls':>6} {'mode':>10} {'CPU %core':>10} {'CPU/call %':>11} {'frames/s':>9} {'delivered':>10}"
            f" {'INVITE->200 median/max ms':>26}"
        )
        for calls in [int(level) for level in args.levels.split(",")]:
            for prompt in (False, True):
                result = run_level(endpoint, sink, calls, args.seconds, prompt)
                per_call = (result["cpu_percent"] - idle) / calls
                mode = "rx+prompt" if prompt else "rx"
                print(
                    f"{calls:>6} {mode:>10} {result['cpu_percent']:>10.1f} {per_call:>11.3f} "
                    f"{result['frames_per_s']:>9.0f} {100 * result['frames_ratio']:>9.1f}%"
                    f" {result['answer_median_ms']:>14.1f} / {result['answer_max_ms']:.1f}"
                )
    finally:
        endpoint.stop()


if __name__ == "__main__":
    main()
