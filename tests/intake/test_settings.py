import os
import subprocess
import sys
from pathlib import Path

import pytest

from intake.errors import ConfigError
from intake.settings import check_runtime, load_settings


def test_bad_database_url_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("IZS_DATABASE_URL", "mysql://somewhere/db")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.problems == [
        "IZS_DATABASE_URL: unsupported database 'mysql' (use sqlite or postgresql) (got 'mysql://somewhere/db')"
    ]


def test_every_bad_setting_is_reported_not_just_the_first(monkeypatch):
    monkeypatch.setenv("IZS_HTTP_PORT", "99999")
    monkeypatch.setenv("IZS_REDIS_URL", "http://localhost")
    monkeypatch.setenv("IZS_ACCEPTED_NUMBERS", '["112", "999"]')
    with pytest.raises(ConfigError) as info:
        load_settings()
    joined = "\n".join(info.value.problems)
    assert "IZS_HTTP_PORT" in joined
    assert "IZS_REDIS_URL: not a Redis URL" in joined
    assert "IZS_ACCEPTED_NUMBERS: not an emergency number: 999" in joined


def test_toml_file_is_read_and_environment_wins(tmp_path, monkeypatch):
    config = tmp_path / "izs.toml"
    config.write_text(
        'region = "PHA"\nhttp_port = 9000\n[[takers]]\nid = "t1"\nname = "Jana"\ndesks = ["ZZS"]\n'
    )
    monkeypatch.setenv("IZS_HTTP_PORT", "9100")
    settings = load_settings(config)
    assert settings.region == "PHA"
    assert settings.http_port == 9100
    assert settings.takers[0].desks == ["ZZS"]


def test_port_in_use_is_reported(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        settings = load_settings(var_dir=tmp_path, http_port=port, sip_enabled=False)
        problems = check_runtime(settings)
    assert len(problems) == 1
    assert problems[0].startswith(f"IZS_HTTP_PORT: cannot listen on 127.0.0.1:{port}")


def test_cli_prints_a_bad_setting_as_one_line_without_traceback(tmp_path):
    env = {**os.environ, "IZS_DATABASE_URL": "nonsense://", "IZS_VAR_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "izs.cli", "incidents", "list"],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parents[2],
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("izs: configuration error: IZS_DATABASE_URL:")
    assert "Traceback" not in result.stderr


def _izs_check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("IZS_")}
    return subprocess.run(
        [sys.executable, "-m", "izs.cli", "check"],
        capture_output=True,
        text=True,
        env={**clean, "IZS_VAR_DIR": str(tmp_path), "IZS_SIP_ENABLED": "false", "IZS_HTTP_PORT": "0", **env},
        cwd=Path(__file__).parents[2],
        timeout=60,
    )


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("x", "too weak"),
        ("correct-horse-battery-staple", "too weak"),
        ("a" * 64, "too weak"),
        ("0123456789abcdef" * 3, "too weak"),  # 48 hex digits: 192 bits
        ("CHANGE-ME-the-same-long-random-string-on-every-node", "placeholder"),
        ("change-me-Zq8vX2kP9wLm4Rt7Yb3Nc6Hd1Jf5Gs0A", "placeholder"),
    ],
)
def test_a_weak_or_placeholder_signing_key_is_refused_in_one_line(tmp_path, key, why):
    result = _izs_check(tmp_path, IZS_SECRET_KEY=key)
    assert result.returncode == 2, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("izs: configuration error: IZS_SECRET_KEY: the secret key is")
    assert why in lines[0] and "openssl rand -base64 32" in lines[0]
    assert key not in result.stderr  # a secret is never echoed back


def test_generated_keys_are_accepted(tmp_path):
    generated = subprocess.run(
        ["openssl", "rand", "-base64", "32"], capture_output=True, text=True, check=True
    ).stdout.strip()
    hex_key = subprocess.run(["openssl", "rand", "-hex", "32"], capture_output=True, text=True, check=True)
    for key in (generated, hex_key.stdout.strip()):
        result = _izs_check(tmp_path, IZS_SECRET_KEY=key)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "settings ok"


def test_check_warns_when_a_network_address_serves_plain_http(tmp_path):
    plain = _izs_check(tmp_path, IZS_HTTP_HOST="0.0.0.0")
    assert plain.returncode == 0
    assert "IZS_HTTP_HOST: 0.0.0.0 is not a loopback address and serves plain HTTP" in plain.stderr
    loopback = _izs_check(tmp_path, IZS_HTTP_HOST="127.0.0.1")
    assert loopback.returncode == 0 and "plain HTTP" not in loopback.stderr
    shared = _izs_check(
        tmp_path,
        IZS_HTTP_HOST="127.0.0.1",
        IZS_REDIS_URL="redis://redis-primary:6379/0",
        IZS_DATABASE_URL="postgresql+psycopg://izs:pw@db-primary/izs",
    )
    assert "IZS_REDIS_URL: no password" in shared.stderr
    assert "use rediss://" in shared.stderr
    assert "IZS_DATABASE_URL: PostgreSQL on another machine without ?sslmode=verify-full" in shared.stderr
    secured = _izs_check(
        tmp_path,
        IZS_REDIS_URL="rediss://:pw@redis-primary:6380/0",
        IZS_DATABASE_URL="postgresql+psycopg://izs:pw@db-primary/izs?sslmode=verify-full",
    )
    assert "IZS_REDIS_URL" not in secured.stderr and "IZS_DATABASE_URL" not in secured.stderr


def test_tls_needs_both_files_and_they_must_load(tmp_path):
    half = _izs_check(tmp_path, IZS_TLS_CERTFILE=str(tmp_path / "cert.pem"))
    assert half.returncode == 2 and "tls_certfile and tls_keyfile go together" in half.stderr
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    broken = _izs_check(
        tmp_path, IZS_TLS_CERTFILE=str(tmp_path / "cert.pem"), IZS_TLS_KEYFILE=str(tmp_path / "key.pem")
    )
    assert broken.returncode == 2 and "IZS_TLS_CERTFILE: certificate and key do not load" in broken.stderr
    from support.tls import CertificateAuthority

    cert, key = CertificateAuthority.create(tmp_path / "ca").issue("node")
    good = _izs_check(tmp_path, IZS_HTTP_HOST="0.0.0.0", IZS_TLS_CERTFILE=str(cert), IZS_TLS_KEYFILE=str(key))
    assert good.returncode == 0, good.stderr
    assert "plain HTTP" not in good.stderr
