"""Evidence for docs/telephony-sip.md: what pyVoIP 1.6.8 (the card package) does with real wire input.

These pin the measured defects that made the endpoint use its own SIP transaction layer; each has a
counterpart test proving our endpoint handles the same input (named in the docstring).
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from pathlib import Path
from types import ModuleType

import pytest

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sip"


def _pyvoip() -> tuple[ModuleType, ModuleType]:
    with warnings.catch_warnings():
        # pyVoIP imports audioop (DeprecationWarning in 3.11, ModuleNotFoundError from 3.13).
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            importlib.import_module("pyVoIP.VoIP")  # pyVoIP.SIP alone fails on a circular import
        except ImportError as exc:
            pytest.skip(f"pyVoIP not importable here: {exc}")
        return importlib.import_module("pyVoIP.SIP"), importlib.import_module("pyVoIP.RTP")


def test_pyvoip_import_needs_the_deprecated_audioop_module() -> None:
    source = Path(importlib.util.find_spec("pyVoIP").origin).parent / "RTP.py"  # type: ignore[union-attr,arg-type]
    assert "import audioop" in source.read_text()


def test_pyvoip_parser_fails_on_baresip_empty_supported_header() -> None:
    """Ours: test_baresip_invite_with_empty_supported_header_is_parsed."""
    sip, _ = _pyvoip()
    with pytest.raises(IndexError):
        sip.SIPMessage((FIXTURES / "baresip-invite.sip").read_bytes())


def test_pyvoip_parser_ignores_compact_and_spaceless_headers() -> None:
    """Ours: test_compact_and_spaceless_headers_are_expanded_to_long_names."""
    sip, _ = _pyvoip()
    wire = (FIXTURES / "baresip-invite.sip").read_bytes().replace(b"Supported:\r\n", b"")
    compact = sip.SIPMessage(wire.replace(b"Call-ID: ", b"i: "))
    assert "Call-ID" not in compact.headers  # stored under "i", so the call has no Call-ID for pyVoIP
    with pytest.raises(IndexError):
        sip.SIPMessage(wire.replace(b"Call-ID: ", b"Call-ID:"))


def test_pyvoip_rejects_options_probes() -> None:
    """Ours: test_options_probe_gets_200_ok."""
    sip, _ = _pyvoip()
    wire = (FIXTURES / "baresip-invite.sip").read_bytes().replace(b"Supported:\r\n", b"")
    with pytest.raises(sip.SIPParseError):
        sip.SIPMessage(
            wire.replace(b"INVITE sip:", b"OPTIONS sip:").replace(b"31958 INVITE", b"31958 OPTIONS")
        )


def test_pyvoip_decodes_received_audio_to_8_bit_and_sends_pcma_as_mu_law() -> None:
    """Ours: test_decoding_gives_full_16_bit_samples_matching_the_itu_reference,
    test_pcma_is_really_sent_as_a_law_not_mu_law."""
    _, rtp = _pyvoip()
    assert "ulaw2lin(packet.payload, 1)" in inspect.getsource(rtp.RTPClient.parse_pcmu)
    encode = inspect.getsource(rtp.RTPClient.encode_packet)
    assert "PayloadType.PCMA:\n            return self.encode_pcmu(payload)" in encode


def test_pyvoip_cancel_handler_never_sends_487() -> None:
    """Ours: test_cancel_before_answer_ends_abandoned_and_is_never_answered."""
    sip, _ = _pyvoip()
    handler = inspect.getsource(sip.SIPClient.parse_message)
    cancel_branch = handler[handler.index('"CANCEL"') :]
    assert "487" not in cancel_branch and "REQUEST_TERMINATED" not in cancel_branch


def test_pyvoip_replies_to_the_configured_server_not_the_via_address() -> None:
    """Ours: test_replies_go_to_each_callers_via_address."""
    sip, _ = _pyvoip()
    handler = inspect.getsource(sip.SIPClient.parse_message)
    assert "self.out.sendto(" in handler and "(self.server, self.port)" in handler


def test_pyvoip_delays_every_incoming_call_by_one_second() -> None:
    """Ours answers in the receive path (benchmarks/telephony.py: INVITE->200 in milliseconds)."""
    _pyvoip()
    voip = importlib.import_module("pyVoIP.VoIP.VoIP")
    assert "Timer(1, self.callCallback" in inspect.getsource(voip.VoIPPhone._callback_MSG_Invite)


def test_pyvoip_start_registers_synchronously_and_gives_up_without_a_registrar() -> None:
    """Ours never registers; start() returns once bound (every endpoint test starts one on port 0)."""
    sip, _ = _pyvoip()
    assert "self.register()" in inspect.getsource(sip.SIPClient.start)
    assert "REGISTER_FAILURE_THRESHOLD" in inspect.getsource(sip.SIPClient.register)
