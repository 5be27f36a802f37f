"""Synthetic callers: their voices (Festival / espeak-ng) and real SIP calls from baresip processes."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from intake.errors import ValidationFailed
from izs.demo.callers import (
    CallerError,
    CallerFleet,
    NetstringReader,
    PlannedCall,
    baresip_account,
    encode_netstring,
)
from izs.demo.scenarios import demo_selection, load_scenarios, shipped_scenarios_path
from izs.demo.speech import SpeechError, SpeechSynthesizer, latin2_text
from telephony.events import CallEnded, CallOffered, EndReason
from telephony.sip import SipEndpoint, SipEndpointConfig

HAVE_FESTIVAL = shutil.which("text2wave") is not None and shutil.which("sox") is not None
HAVE_ESPEAK = shutil.which("espeak-ng") is not None and shutil.which("sox") is not None
HAVE_BARESIP = shutil.which("baresip") is not None
REPO = Path(__file__).resolve().parents[2]


def _format(path: Path) -> tuple[int, int, int]:
    with wave.open(str(path), "rb") as wav:
        return wav.getframerate(), wav.getnchannels(), wav.getsampwidth()


@pytest.mark.skipif(not HAVE_FESTIVAL, reason="needs festival + festvox-czech-* and sox")
def test_czech_caller_is_spoken_by_festival_as_8khz_mono_16_bit_with_the_asked_silences(
    tmp_path: Path,
) -> None:
    synthesizer = SpeechSynthesizer(tmp_path)
    spoken = synthesizer.synthesize("Hoří nám dům v Sokolově – pojďte rychle!", "cs", tail_silence_s=2.0)
    assert spoken.engine == "festival" and spoken.voice == "machac"
    assert _format(spoken.path) == (8000, 1, 2)
    assert spoken.speech_start_s == 0.5
    assert spoken.speech_end_s - spoken.speech_start_s > 1.0
    assert abs(spoken.duration_s - (spoken.speech_end_s + 2.0)) < 0.05


@pytest.mark.skipif(not HAVE_FESTIVAL, reason="needs festival + festvox-czech-* and sox")
def test_same_text_and_voice_is_synthesized_once_and_then_served_from_the_cache(tmp_path: Path) -> None:
    synthesizer = SpeechSynthesizer(tmp_path)
    first = synthesizer.synthesize("Dobrý den, manžel nedýchá.", "cs", voice="dita")
    mtime = first.path.stat().st_mtime_ns
    again = synthesizer.synthesize("Dobrý  den, manžel nedýchá.", "cs", voice="dita")
    assert again == first
    assert again.path.stat().st_mtime_ns == mtime
    other = synthesizer.synthesize("Dobrý den, manžel nedýchá.", "cs", voice="machac")
    assert other.path != first.path


@pytest.mark.skipif(not HAVE_ESPEAK, reason="needs espeak-ng and sox")
@pytest.mark.parametrize("language", ["de", "en", "ru", "uk", "sk", "vi"])
def test_foreign_callers_are_spoken_by_espeak_ng(tmp_path: Path, language: str) -> None:
    spoken = SpeechSynthesizer(tmp_path).synthesize("Help, 112, Karlovy Vary.", language)
    assert spoken.engine == "espeak-ng" and spoken.voice == language
    assert _format(spoken.path) == (8000, 1, 2)


def test_a_language_without_a_voice_or_empty_text_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    synthesizer = SpeechSynthesizer(tmp_path)
    with pytest.raises(SpeechError, match="no voice for language 'xx'"):
        synthesizer.synthesize("hello", "xx")
    with pytest.raises(SpeechError, match="empty caller text"):
        synthesizer.synthesize("   ", "cs")
    with pytest.raises(SpeechError, match="unknown Czech voice"):
        SpeechSynthesizer(tmp_path, czech_voice="karel")


def test_czech_text_is_encoded_for_festival_in_latin2_without_failing_on_typography() -> None:
    assert latin2_text("Hoří „dům“ – rychle…") == 'Hoří "dům" - rychle...'.encode("iso-8859-2")
    assert latin2_text("emoji 🚒 pryč") == b"emoji  pry\xe8"


@given(
    st.lists(st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=4), max_size=5), st.data()
)
def test_netstrings_split_anywhere_decode_to_the_same_messages(
    messages: list[dict[str, str]], data: st.DataObject
) -> None:
    wire = b"".join(encode_netstring(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    reader = NetstringReader()
    decoded: list[bytes] = []
    last = 0
    for cut in [*cuts, len(wire)]:
        decoded.extend(reader.feed(wire[last:cut]))
        last = cut
    assert decoded == [encode_netstring(m).split(b":", 1)[1][:-1] for m in messages]


@pytest.mark.parametrize("garbage", [b"abc:xyz,", b"5:hello;", b"9" * 20, b"99999999:"])
def test_a_malformed_control_message_is_a_caller_error_not_a_hang(garbage: bytes) -> None:
    with pytest.raises(CallerError):
        NetstringReader().feed(garbage)


def test_a_caller_account_offers_the_asked_codec_first_and_never_registers() -> None:
    assert baresip_account("+420603123456", "PCMA") == (
        "<sip:+420603123456@127.0.0.1>;regint=0;audio_codecs=PCMA,PCMU\n"
    )
    assert "regint=0" in baresip_account("", "PCMU") and "anonymous@" in baresip_account("", "PCMU")


def test_shipped_scenarios_are_the_dev_set_and_a_demo_selection_mixes_languages_and_arrests() -> None:
    shipped = load_scenarios()
    assert shipped_scenarios_path().read_bytes() == (REPO / "tests/fixtures/calls/dev.jsonl").read_bytes()
    picked = demo_selection(shipped, 6)
    assert len(picked) == 6 and len({s.id for s in picked}) == 6
    assert any(s.language != "cs" for s in picked[:3]) and any(s.expected_tcpr for s in picked[:3])


def test_a_bad_scenario_line_is_named_with_its_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "dialed": "155", "language": "cs", "caller": "x"}\n{"id": "b"}\n', "utf-8")
    with pytest.raises(ValidationFailed, match=r"bad.jsonl:2: .*dialed"):
        load_scenarios(path)


@pytest.mark.slow
@pytest.mark.skipif(not (HAVE_BARESIP and HAVE_ESPEAK), reason="needs baresip, espeak-ng and sox")
async def test_fleet_places_real_sip_calls_and_reports_each_outcome_including_an_early_hangup(
    tmp_path: Path,
) -> None:
    events: list[object] = []

    def sink(event: object) -> None:
        if isinstance(event, CallOffered | CallEnded):
            events.append(event)

    voice = SpeechSynthesizer(tmp_path / "voices").synthesize(
        "Dobrý den, tady Karlovy Vary.", "cs", voice="espeak", tail_silence_s=1.0
    )
    endpoint = SipEndpoint(SipEndpointConfig(host="127.0.0.1", port=0), sink)
    endpoint.start()
    try:
        port = endpoint.address[1]
        plans = [
            PlannedCall("speaks", voice.path, f"sip:155@127.0.0.1:{port}", "+420603000001"),
            PlannedCall(
                "pcma", voice.path, f"sip:150@127.0.0.1:{port}", "+420603000002", at_s=0.3, codec="PCMA"
            ),
            PlannedCall(
                "gives-up",
                voice.path,
                f"sip:112@127.0.0.1:{port}",
                "+491701234567",
                at_s=0.6,
                hangup_after_s=1.0,
            ),
        ]
        async with CallerFleet() as fleet:
            outcomes = await fleet.run(plans, timeout_s=30)
    finally:
        endpoint.stop()

    by_label = {o.label: o for o in outcomes}
    assert all(o.error is None and o.answered and o.sent_at and o.ended_at for o in outcomes), outcomes
    assert by_label["speaks"].reason == "caller finished speaking and hung up"
    assert by_label["gives-up"].reason == "caller hung up" and by_label["gives-up"].hung_up_by_caller
    offered = {e.call_ref: e for e in events if isinstance(e, CallOffered)}
    assert {o.sip_call_id for o in outcomes} == set(offered)
    assert {offered[by_label[label].sip_call_id].dialled for label in by_label} == {"155", "150", "112"}
    assert offered[by_label["gives-up"].sip_call_id].caller == "+491701234567"
    ended = [e for e in events if isinstance(e, CallEnded)]
    assert len(ended) == 3 and all(e.reason is EndReason.CALLER_HANGUP for e in ended)


@pytest.mark.skipif(not HAVE_BARESIP, reason="needs baresip")
async def test_a_caller_that_cannot_reach_anyone_reports_why_and_leaves_no_process(tmp_path: Path) -> None:
    wav = tmp_path / "silence.wav"
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0\0" * 8000)
    async with CallerFleet(work_dir=tmp_path / "callers") as fleet:
        # Nobody listens on this port: baresip gets ICMP errors / no answer; the caller gives up.
        outcome = (await fleet.run([PlannedCall("nobody", wav, "sip:155@127.0.0.1:9", max_duration_s=4.0)]))[
            0
        ]
    assert not outcome.answered and outcome.ended_at is not None and outcome.reason
