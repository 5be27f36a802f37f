from __future__ import annotations

import logging

import pytest
from ami_sessions import SESSION_NAMES, load_session, recv_wire
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telephony.ami.framing import ActionEncodingError, AmiMessage, encode_action, parse_frames


def parse_in_chunks(data: bytes, cuts: list[int], max_message_bytes: int = 256 * 1024) -> list[AmiMessage]:
    out: list[AmiMessage] = []
    buffer = b""
    prev = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        buffer += data[prev:cut]
        prev = cut
        messages, buffer = parse_frames(buffer, max_message_bytes=max_message_bytes)
        out.extend(messages)
    return out


@pytest.mark.parametrize("name", SESSION_NAMES)
def test_every_recorded_wire_text_parses_to_one_message_with_its_exact_fields(name: str) -> None:
    for line in load_session(name):
        if not line.text:
            continue  # the recorded end of the connection
        messages, rest = parse_frames(line.text.encode())
        assert rest == b""
        assert len(messages) == 1
        if messages[0].is_banner:
            assert messages[0].fields == (("Banner", "Asterisk Call Manager/9.0.0"),)
            continue
        expected = [
            tuple(x.split(": ", 1)) if ": " in x else (x[:-1], "") for x in line.text.split("\r\n") if x
        ]
        assert list(messages[0].fields) == expected
        assert messages[0].rejected == ()
        assert messages[0].to_wire() == line.text.encode()


def test_recorded_answered_session_yields_the_banner_then_every_message_in_order() -> None:
    messages, rest = parse_frames(recv_wire("answered-155"))
    assert rest == b""
    assert messages[0].is_banner
    assert messages[1].response == "Success" and messages[1].action_id == "login-1"
    events = [m.event for m in messages[2:] if m.event]
    assert events[:2] == ["FullyBooted", "SuccessfulAuth"]
    assert events.count("Hangup") == 2
    assert "AgentConnect" in events and "QueueCallerJoin" in events


def test_values_keep_trailing_spaces_empty_values_and_colons() -> None:
    wire = b"Event: VarSet\r\nAccountCode: \r\nValue: a: b:c \r\nVariable: SIPADDHEADER01\r\n\r\n"
    [msg], rest = parse_frames(wire)
    assert msg.get("AccountCode") == "" and msg.get("Value") == "a: b:c "
    assert msg.get("value") == "a: b:c "  # keys are case-insensitive
    assert rest == b""


def test_repeated_keys_are_all_kept_in_order() -> None:
    wire = b"Event: X\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"
    [msg], _ = parse_frames(wire)
    assert msg.get_all("Variable") == ["A=1", "B=2"]


def test_originate_response_event_is_an_event_not_an_action_response() -> None:
    media = next(w for w in load_session("media-fork-112") if "OriginateResponse" in w.text)
    msg = media.message
    assert msg.event == "OriginateResponse" and msg.response is None and msg.get("Response") == "Success"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(SESSION_NAMES))
def test_arbitrary_chunking_of_recorded_wire_gives_identical_messages(data: st.DataObject, name: str) -> None:
    wire = recv_wire(name)
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(wire)), max_size=60))
    whole, _ = parse_frames(wire)
    assert parse_in_chunks(wire, cuts) == whole


def test_feeding_a_recorded_session_one_byte_at_a_time_gives_identical_messages() -> None:
    wire = recv_wire("abandoned-158")
    whole, rest_whole = parse_frames(wire)
    out: list[AmiMessage] = []
    buffer = b""
    for i in range(len(wire)):
        messages, buffer = parse_frames(buffer + wire[i : i + 1])
        out.extend(messages)
    assert out == whole and buffer == rest_whole == b""


@settings(max_examples=300, deadline=None)
@given(garbage=st.binary(max_size=3000), cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=20))
def test_garbage_never_raises_and_the_buffer_stays_bounded(garbage: bytes, cuts: list[int]) -> None:
    limit = 512
    buffer = b""
    prev = 0
    for cut in [*sorted(set(c for c in cuts if c <= len(garbage))), len(garbage)]:
        messages, buffer = parse_frames(buffer + garbage[prev:cut], max_message_bytes=limit)
        prev = cut
        assert len(buffer) <= limit + 32  # plus the parser's own marker
        for msg in messages:
            assert msg.is_banner or msg.fields[0][0].lower() in ("event", "response", "action")


@settings(max_examples=100, deadline=None)
@given(
    junk=st.text(
        alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=80,
    )
)
def test_a_valid_message_after_a_garbage_block_is_still_delivered(junk: str) -> None:
    wire = f"{junk}\r\n\r\n".encode() + b"Event: Hangup\r\nUniqueid: 1.1\r\n\r\n"
    messages, rest = parse_frames(wire)
    assert rest == b""
    assert messages[-1].event == "Hangup" and messages[-1].get("Uniqueid") == "1.1"


def test_malformed_lines_are_logged_and_kept_aside_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    wire = b"Event: Newchannel\r\nthis is not a field\r\nUniqueid: 1.2\r\n\r\n"
    with caplog.at_level(logging.WARNING, logger="telephony.ami.framing"):
        [msg], _rest = parse_frames(wire)
    assert msg.get("Uniqueid") == "1.2" and msg.rejected == ("this is not a field",)
    assert "malformed" in caplog.text


def test_a_block_without_event_or_response_is_dropped_with_a_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="telephony.ami.framing"):
        messages, _rest = parse_frames(b"Uniqueid: 1.2\r\nFoo: bar\r\n\r\nEvent: Ping\r\n\r\n")
    assert [m.event for m in messages] == ["Ping"]
    assert "without Event/Response/Action" in caplog.text


def test_a_huge_message_is_discarded_and_parsing_resumes_after_it(caplog: pytest.LogCaptureFixture) -> None:
    limit = 4096
    huge = b"Event: Flood\r\n" + b"Value: " + b"x" * 200 + b"\r\n"
    stream = [huge] * 100 + [b"\r\n", b"Event: Hangup\r\nUniqueid: 9.9\r\n\r\n"]
    buffer = b""
    delivered: list[AmiMessage] = []
    with caplog.at_level(logging.WARNING, logger="telephony.ami.framing"):
        for chunk in stream:
            messages, buffer = parse_frames(buffer + chunk, max_message_bytes=limit)
            assert len(buffer) <= limit + 32
            delivered.extend(messages)
    assert [m.event for m in delivered] == ["Hangup"]
    assert "exceeds 4096 bytes" in caplog.text


def test_a_line_without_any_newline_is_bounded_too() -> None:
    buffer = b""
    for _ in range(100):
        messages, buffer = parse_frames(buffer + b"A" * 10_000, max_message_bytes=1000)
        assert messages == [] and len(buffer) <= 1032
    messages, buffer = parse_frames(buffer + b"\r\n\r\nEvent: Hangup\r\n\r\n", max_message_bytes=1000)
    assert [m.event for m in messages] == ["Hangup"] and buffer == b""


def test_utf8_caller_name_split_across_reads_is_preserved() -> None:
    wire = "Event: Newchannel\r\nCallerIDName: Jiří Novák\r\n\r\n".encode()
    split = wire.index("ř".encode()) + 1  # inside the two-byte character
    first, rest = parse_frames(wire[:split])
    second, rest = parse_frames(rest + wire[split:])
    assert first == [] and second[0].get("CallerIDName") == "Jiří Novák"


def test_response_follows_keeps_raw_output_with_blank_lines_until_end_command() -> None:
    # Asterisk <= 13 answered "Command" like this; the output may itself contain blank lines.
    wire = (
        b"Response: Follows\r\nPrivilege: Command\r\nActionID: c-1\r\n"
        b"Channel              Location\r\n\r\nSIP/a-1  emergency\r\n--END COMMAND--\r\n\r\n"
        b"Event: Hangup\r\nUniqueid: 2.2\r\n\r\n"
    )
    messages, rest = parse_frames(wire)
    assert rest == b""
    follows, hangup = messages
    assert follows.response == "Follows" and follows.action_id == "c-1"
    assert follows.get_all("Output") == ["Channel              Location", "", "SIP/a-1  emergency"]
    assert hangup.event == "Hangup"


def test_encode_action_writes_crlf_framing_and_refuses_injection() -> None:
    assert encode_action([("Action", "Hangup"), ("Channel", "SIP/a-1"), ("ActionID", "x")]) == (
        b"Action: Hangup\r\nChannel: SIP/a-1\r\nActionID: x\r\n\r\n"
    )
    with pytest.raises(ActionEncodingError):
        encode_action([("Action", "QueuePause"), ("Reason", "break\r\n\r\nAction: Hangup")])
    with pytest.raises(ActionEncodingError):
        encode_action([("Channel", "SIP/a-1")])
