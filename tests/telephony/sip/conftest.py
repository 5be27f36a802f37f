"""Fixtures for the SIP endpoint tests: an endpoint on an ephemeral port and a recording event sink."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from sip_events import EventRecorder

from telephony.sip import SipEndpoint, SipEndpointConfig


@pytest.fixture
def recorder() -> EventRecorder:
    return EventRecorder()


@pytest.fixture
def start_endpoint(recorder: EventRecorder) -> Iterator[Callable[..., SipEndpoint]]:
    started: list[SipEndpoint] = []

    def start(**overrides: Any) -> SipEndpoint:
        config = replace(SipEndpointConfig(host="127.0.0.1", port=0), **overrides)
        endpoint = SipEndpoint(config, recorder)
        endpoint.start()
        started.append(endpoint)
        return endpoint

    yield start
    for endpoint in started:
        endpoint.stop()
