"""The shipped systemd units are sandboxed (issue 16) and valid for systemd-analyze."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "RestrictNamespaces": "yes",
    "SystemCallFilter": "@system-service",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
}


def directives(unit: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


@pytest.mark.parametrize("name", ["izs-intake.service", "izs-kamailio.service"])
def test_units_are_sandboxed_without_capabilities(name: str) -> None:
    found = directives(UNITS / name)
    missing = {k: v for k, v in HARDENING.items() if found.get(k) != v}
    assert not missing, f"{name}: {missing}"
    assert found.get("User") not in (None, "root")
    assert "ReadWritePaths" in found


def test_the_node_may_write_its_var_dir_only() -> None:
    found = directives(UNITS / "izs-intake.service")
    env_example = (UNITS.parent / "intake-node.env.example").read_text()
    assert "IZS_VAR_DIR=/var/lib/izs" in env_example
    assert found["ReadWritePaths"] == "/var/lib/izs"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify_finds_nothing_but_the_missing_install(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(p) for p in sorted(UNITS.glob("*.service")))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and "/opt/izs/venv/bin/izs is not executable" not in line
    ]
    assert not problems, problems
