"""SIP intake endpoint: takes emergency calls straight over SIP/RTP (no PBX), see docs/telephony-sip.md."""

from telephony.sip.config import SipEndpointConfig
from telephony.sip.endpoint import SipEndpoint
from telephony.sip.errors import (
    CallNotFoundError,
    EndpointNotRunningError,
    ParseError,
    SipError,
    TakerUnavailableError,
)
from telephony.sip.message import SipMessage, parse_message
from telephony.sip.prompt import DEFAULT_PROMPT_TEXT, generate_prompt_wav, read_wav_pcm
from telephony.sip.sdp import SessionDescription, build_sdp, parse_sdp

__all__ = [
    "DEFAULT_PROMPT_TEXT",
    "CallNotFoundError",
    "EndpointNotRunningError",
    "ParseError",
    "SessionDescription",
    "SipEndpoint",
    "SipEndpointConfig",
    "SipError",
    "SipMessage",
    "TakerUnavailableError",
    "build_sdp",
    "generate_prompt_wav",
    "parse_message",
    "parse_sdp",
    "read_wav_pcm",
]
