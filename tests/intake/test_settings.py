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
        [sys.executable, "-m", "intake.cli", "incidents", "list"],
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
