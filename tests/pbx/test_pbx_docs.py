"""9. The README's "Run with an Asterisk PBX" section and the shipped configuration agree: its IZS_TAKERS
example is valid settings naming phones the shipped config defines, the intake peer the config ships
points at the example's IZS_SIP_HOST:IZS_SIP_PORT, and the member-name rule is stated. (No Asterisk needed;
that the member name really is the taker id on a live Asterisk is test_item2 in test_pbx_real_asterisk.)"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from intake.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "asterisk"


def _section() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Run with an Asterisk PBX")
    return readme[start : readme.index("\n## ", start + 5)]


def _example_env() -> dict[str, str]:
    block = re.search(r"```sh\n(.*?)```", _section(), re.S)
    assert block, "the PBX section has no shell example"
    env: dict[str, str] = {}
    for token in shlex.split(block.group(1).replace("export ", "\n"), comments=True):
        if "=" in token and token.startswith("IZS_"):
            key, value = token.split("=", 1)
            env[key] = value
    return env


def test_readme_pbx_section_example_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = _example_env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.ami_enabled and settings.ami_channel_driver == "pjsip"
    assert [t.interface for t in settings.takers] == ["PJSIP/taker1", "PJSIP/taker2"]
    pjsip = (DEPLOY / "chan_pjsip" / "pjsip.conf").read_text(encoding="utf-8")
    for taker in settings.takers:
        assert taker.interface is not None
        assert f"[{taker.interface.split('/', 1)[1]}](taker-endpoint)" in pjsip
    contact = re.search(r"^contact = sip:intake@([\d.]+):(\d+)$", pjsip, re.M)
    assert contact and (contact.group(1), int(contact.group(2))) == (settings.sip_host, settings.sip_port)
    sip = (DEPLOY / "chan_sip" / "sip.conf").read_text(encoding="utf-8")
    intake_peer = sip[sip.index("[intake]") :]
    assert f"host = {settings.sip_host}" in intake_peer and f"port = {settings.sip_port}" in intake_peer
    manager = (DEPLOY / "common" / "manager.conf").read_text(encoding="utf-8")
    assert f"[{settings.ami_username}]" in manager and f"secret = {settings.ami_secret}" in manager


def test_readme_pbx_section_states_the_rules_the_issue_found_missing() -> None:
    section = _section()
    assert "MemberName = the taker's `id`" in section  # member names
    assert "IZS_SIP_HOST" in section and "IZS_SIP_PORT" in section  # the intake peer
    assert "Answer" in section  # the dialplan must answer before Queue()
    extensions = (DEPLOY / "common" / "extensions.conf").read_text(encoding="utf-8")
    desk = extensions[extensions.index("exten => _1XX,1") :]
    assert desk.index("Answer()") < desk.index("Queue(desk-${EXTEN}")
