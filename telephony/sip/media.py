"""Media of the SIP endpoint, pure: RTP in (filtering, address and SSRC latching, jitter-free framing into
20 ms AudioFrames, DTMF), relay between the caller and the call taker, and prompt playback to the caller.

No sockets and no clock: packets and ``now`` come in, :class:`~telephony.sip.dialog.SendRtp` and
:class:`~telephony.sip.dialog.Emit` actions go out through the outbox.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from telephony.events import AudioFrame, DtmfReceived, Leg
from telephony.sip import g711
from telephony.sip.dialog import Call, CallState, CallTable, MediaLeg, Outbox, SendRtp
from telephony.sip.errors import ParseError
from telephony.sip.rtp import RtpPacket, parse_rtp, parse_telephone_event
from telephony.sip.sdp import PCMA, PCMU

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_BYTES = FRAME_SAMPLES * 2
MAX_GAP_FILL_SAMPLES = SAMPLE_RATE  # fill up to 1 s of lost packets with silence, resync beyond
LATCH_QUIET_S = 1.0  # a latched address / SSRC is held while it sent within this time


class MediaPath:
    """RTP of every call's legs. Not thread-safe: the shell serialises calls (one lock)."""

    def __init__(self, table: CallTable, outbox: Outbox, max_packets_per_second: int) -> None:
        self._table = table
        self._out = outbox
        self._max_pps = max_packets_per_second

    def on_rtp(self, leg: MediaLeg, data: bytes, source: tuple[str, int], now: float) -> None:
        """One datagram that arrived on the leg's RTP socket."""
        if now - leg.window_start >= 1.0:
            if leg.dropped_packets:
                log.warning(
                    "call %s %s leg: dropped %d RTP packets (flood/foreign/malformed)",
                    leg.call_id,
                    leg.kind.value,
                    leg.dropped_packets,
                )
            leg.window_start, leg.window_packets, leg.dropped_packets = now, 0, 0
        if source[0] not in leg.allowed_rtp_hosts or (
            # Once latched, only the latched address may send, unless it went quiet (NAT rebinding).
            leg.rtp_latched and source != leg.remote_rtp and now - leg.last_rx < LATCH_QUIET_S
        ):
            leg.dropped_packets += 1  # foreign packets never use up the caller's budget
            return
        try:
            packet = parse_rtp(data)
        except ParseError:
            leg.dropped_packets += 1
            return
        if (
            leg.rtp_ssrc is not None
            and packet.ssrc != leg.rtp_ssrc
            and now - leg.rtp_ssrc_last_rx < LATCH_QUIET_S
        ):
            # A second stream while the latched one is alive (a flood, a stray sender): never mixed into the
            # caller's audio and never allowed to use up its budget. A new SSRC after a pause is latched.
            leg.dropped_packets += 1
            return
        leg.window_packets += 1
        if leg.window_packets > self._max_pps:
            leg.dropped_packets += 1
            return
        call = self._table.of_leg(leg.call_id)
        if call is None or call.state != CallState.ANSWERED or leg.media is None:
            return
        if source != leg.remote_rtp or not leg.rtp_latched:
            leg.remote_rtp, leg.rtp_latched = source, True  # symmetric RTP (NAT)
        leg.last_rx = now
        leg.rtp_ssrc, leg.rtp_ssrc_last_rx = packet.ssrc, now
        media = leg.media
        if packet.payload_type == media.event_payload_type:
            self._on_rtp_event(call, leg, packet)
            return
        if packet.payload_type not in (PCMU, PCMA):
            leg.dropped_packets += 1
            return
        self._collect_frames(call, leg, packet)
        taker = call.taker
        if taker is not None and taker.established:
            other = taker if leg.kind == Leg.CALLER else call.caller
            if other.media is not None:
                payload = g711.transcode(packet.payload, packet.payload_type, other.media.payload_type)
                self.send_rtp(other, payload, len(packet.payload))

    def _on_rtp_event(self, call: Call, leg: MediaLeg, packet: RtpPacket) -> None:
        try:
            event = parse_telephone_event(packet.payload)
        except ParseError:
            return
        if leg.last_dtmf_ts == packet.timestamp:
            return  # continuation / end retransmissions of the same key press
        leg.last_dtmf_ts = packet.timestamp
        if leg.kind == Leg.CALLER:
            self._out.emit(DtmfReceived(call.call_ref, event.digit))

    def _collect_frames(self, call: Call, leg: MediaLeg, packet: RtpPacket) -> None:
        samples = len(packet.payload)
        if leg.rx_expected_ts is not None:
            gap = (packet.timestamp - leg.rx_expected_ts) & 0xFFFFFFFF
            if gap >= 0x80000000:
                return  # older than what we already have: late or duplicate packet
            if 0 < gap <= MAX_GAP_FILL_SAMPLES:
                leg.rx_buffer.extend(bytes(2 * gap))  # lost packets become silence, keeping time
        leg.rx_expected_ts = (packet.timestamp + samples) & 0xFFFFFFFF
        leg.rx_buffer.extend(g711.decode(packet.payload, packet.payload_type))
        while len(leg.rx_buffer) >= FRAME_BYTES:
            frame = bytes(leg.rx_buffer[:FRAME_BYTES])
            del leg.rx_buffer[:FRAME_BYTES]
            self._out.emit(AudioFrame(call.call_ref, frame, SAMPLE_RATE, leg.kind, leg.frame_seq))
            leg.frame_seq += 1

    def flush(self, call: Call, leg: MediaLeg) -> None:
        """The last, partial frame of a leg that ends (padded with silence), so no audio is lost."""
        if leg.rx_buffer and call.state != CallState.RINGING:
            leg.rx_buffer.extend(bytes(FRAME_BYTES - len(leg.rx_buffer)))
            self._out.emit(
                AudioFrame(call.call_ref, bytes(leg.rx_buffer), SAMPLE_RATE, leg.kind, leg.frame_seq)
            )
            leg.frame_seq += 1
            leg.rx_buffer.clear()

    def send_rtp(self, leg: MediaLeg, payload: bytes, samples: int) -> None:
        if leg.remote_rtp is None or leg.media is None:
            return
        packet = RtpPacket(leg.media.payload_type, leg.out_seq, leg.out_ts, leg.out_ssrc, payload)
        leg.out_seq = (leg.out_seq + 1) & 0xFFFF
        leg.out_ts = (leg.out_ts + samples) & 0xFFFFFFFF
        self._out.add(SendRtp(leg, packet.to_bytes(), leg.remote_rtp))

    def set_prompt(self, call: Call, samples: np.ndarray[Any, np.dtype[np.int16]], loop: bool) -> None:
        call.prompt = samples if len(samples) else None
        call.prompt_pos = 0
        call.prompt_loop = loop

    def play_prompt_frame(self, call: Call) -> None:
        """The next 20 ms of the call's prompt to the caller (every tick while no taker is connected)."""
        prompt = call.prompt
        if prompt is None:
            return
        chunk = prompt[call.prompt_pos : call.prompt_pos + FRAME_SAMPLES]
        call.prompt_pos += FRAME_SAMPLES
        if len(chunk) < FRAME_SAMPLES:
            if call.prompt_loop and len(prompt):
                call.prompt_pos = FRAME_SAMPLES - len(chunk)
                chunk = np.concatenate([chunk, prompt[: call.prompt_pos]])
            else:
                call.prompt = None
                chunk = np.concatenate([chunk, np.zeros(FRAME_SAMPLES - len(chunk), dtype=np.int16)])
        media = call.caller.media
        if media is not None:
            self.send_rtp(
                call.caller, g711.encode(chunk.astype("<i2").tobytes(), media.payload_type), FRAME_SAMPLES
            )


def resample_to_8k(pcm: bytes, sample_rate: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    if sample_rate <= 0:
        raise ValueError(f"bad sample rate {sample_rate}")
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.int16)
    if sample_rate == SAMPLE_RATE or not len(samples):
        return samples
    count = int(len(samples) * SAMPLE_RATE / sample_rate)
    positions = np.linspace(0, len(samples) - 1, count)
    return np.interp(positions, np.arange(len(samples)), samples).astype(np.int16)
