"""The PBX rig: a real Asterisk (``IZS_TEST_ASTERISK``) with the shipped configuration, two auto-answering
baresip call-taker phones, a recording AMI proxy, and ``izs serve`` in PBX mode; one rig per channel
driver (chan_sip, chan_pjsip), shared by the tests of a module."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "telephony" / "sip"))

from pbx_rig import OVERFLOW_AFTER_S, SESSIONS, Rig  # noqa: F401  (re-exported for fixtures)
from pbx_support import (
    ASTERISK_PREFIX,
    SKIP_REASON,
    AmiProxy,
    AsteriskPbx,
    IntakeServer,
    PbxPorts,
    free_udp_tcp_port,
    wait_until,
)
from sip_peers import Baresip

from izs.demo.speech import SpeechSynthesizer


def _warm_up(rig: Rig) -> None:
    """One call before the tests: the recogniser loads its model at the first call (seconds on a busy
    machine), which would otherwise eat the first test's words. Best effort: a slow machine only makes the
    first test wait longer."""
    caller = rig.dial("warm-up", "112", "+420601000100", rig.voice("warm-up", "Dobrý den.", tail_s=20.0))
    try:
        rig.wait_intake_call("+420601000100", 20)
        with contextlib.suppress(AssertionError):
            wait_until(
                lambda: (rig.intake_call("+420601000100") or {}).get("transcript"),
                120,
                "the warm-up transcript",
                1,
            )
    finally:
        caller.hangup()
        caller.stop()
        wait_until(
            lambda: (rig.intake_call("+420601000100") or {}).get("state") == "abandoned",
            30,
            "warm-up call over",
        )


def _phone(workdir: Path, name: str) -> Baresip:
    return Baresip(workdir / "phones", name, auto_answer=True).start()


@pytest.fixture(scope="module", params=["sip", "pjsip"], ids=["chan_sip", "chan_pjsip"])
def rig(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    if not ASTERISK_PREFIX:
        pytest.skip(SKIP_REASON)
    driver: str = request.param
    workdir = tmp_path_factory.mktemp(f"pbx-{driver}")
    phones = {name: _phone(workdir, name) for name in ("taker1", "taker2")}
    intake_sip = free_udp_tcp_port()
    from pbx_support import free_port

    ports = PbxPorts(
        sip=free_udp_tcp_port(),
        ami=free_port(),
        intake_sip=intake_sip,
        phones={name: phone.sip_port for name, phone in phones.items()},
    )
    pbx = AsteriskPbx(ASTERISK_PREFIX, workdir, driver, ports)
    proxy: AmiProxy | None = None
    intake: IntakeServer | None = None
    rig_: Rig | None = None
    try:
        pbx.start()
        proxy = AmiProxy(ports.ami)
        tech = pbx.tech
        intake = IntakeServer(
            workdir,
            {
                "sip_host": "127.0.0.1",
                "sip_port": intake_sip,
                "rtp_port_min": 41000,
                "rtp_port_max": 43999,
                "ami_enabled": True,
                "ami_host": "127.0.0.1",
                "ami_port": proxy.port,
                "ami_username": "izs",
                "ami_secret": "izs-secret",
                "ami_channel_driver": driver,
                "transcription_enabled": True,
                "overflow_after_s": OVERFLOW_AFTER_S,
                "wrap_up_s": 1.0,
            },
            [
                {"id": "taker1", "name": "Taker One", "desks": ["HZS"], "interface": tech("taker1")},
                {"id": "taker2", "name": "Taker Two", "desks": ["ZZS"], "interface": tech("taker2")},
            ],
        )
        intake.start()
        wait_until(
            lambda: any(
                h["component"] == "ami" and h["healthy"]
                for h in intake.get("/api/health")  # type: ignore[union-attr]
            ),
            30,
            "intake's AMI bridge connected",
        )
        rig_ = Rig(
            driver,
            pbx,
            proxy,
            intake,
            phones,
            workdir,
            SpeechSynthesizer(tmp_path_factory.getbasetemp() / "voices"),
        )
        _warm_up(rig_)
        yield rig_
    finally:
        if rig_ is not None:
            for caller in rig_.callers:
                caller.stop()
        if intake is not None:
            intake.stop()
        if proxy is not None:
            proxy.close()
        pbx.stop()
        for phone in phones.values():
            phone.stop()
        time.sleep(0)  # nothing to wait for: every process above was waited on


@pytest.fixture
def fresh(rig: Rig) -> Iterator[Rig]:
    """Every test starts with all call takers logged out and no callers of an earlier test."""
    rig.reset()
    yield rig
    for caller in rig.callers:
        caller.stop()
    rig.callers.clear()
