"""Measuring recognition: word/character error rate, and synthesized test speech (Festival, espeak-ng).

Used by the tests and ``benchmarks/transcription.py``; needs the Debian packages festival,
festvox-czech-machac / festvox-czech-dita, espeak-ng and sox.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import unicodedata
import wave
from pathlib import Path

import numpy as np
from rapidfuzz.distance import Levenshtein

from transcription.audio import Int16Array

FESTIVAL_CZECH_VOICES = ("czech_machac", "czech_dita")
_PUNCT = re.compile(r"[^\w\s]+", re.UNICODE)


def normalize(text: str) -> list[str]:
    """Lower-case words without punctuation (digits stay as Whisper wrote them)."""
    text = unicodedata.normalize("NFC", text).lower()
    return _PUNCT.sub(" ", text).split()


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return Levenshtein.distance(ref, hyp) / len(ref)


def char_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = " ".join(normalize(reference)), " ".join(normalize(hypothesis))
    if not ref:
        return 0.0 if not hyp else 1.0
    return Levenshtein.distance(ref, hyp) / len(ref)


def corpus_error_rates(pairs: list[tuple[str, str]]) -> tuple[float, float]:
    """(WER, CER) over a corpus: total edits over total reference length."""
    word_edits = word_total = char_edits = char_total = 0
    for reference, hypothesis in pairs:
        ref_words, hyp_words = normalize(reference), normalize(hypothesis)
        word_edits += Levenshtein.distance(ref_words, hyp_words)
        word_total += len(ref_words)
        ref_chars, hyp_chars = " ".join(ref_words), " ".join(hyp_words)
        char_edits += Levenshtein.distance(ref_chars, hyp_chars)
        char_total += len(ref_chars)
    return word_edits / max(1, word_total), char_edits / max(1, char_total)


def read_wav(path: Path) -> tuple[Int16Array, int]:
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise ValueError(f"{path} is not 16-bit mono")
        data = wav.readframes(wav.getnframes())
        return np.frombuffer(data, dtype="<i2").astype(np.int16), wav.getframerate()


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise FileNotFoundError(f"{tool} is not installed (Debian: festival, espeak-ng, sox)")
    return path


def telephone_band(wav_in: Path, wav_out: Path, rate: int = 8000) -> None:
    """Resample to ``rate`` mono 16-bit and band-limit to 300-3400 Hz like a phone line."""
    subprocess.run(
        [
            _require("sox"),
            str(wav_in),
            "-r",
            str(rate),
            "-c",
            "1",
            "-b",
            "16",
            str(wav_out),
            "sinc",
            "300-3400",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )


def synthesize_czech(text: str, wav_out: Path, voice: str = "czech_machac", rate: int = 8000) -> None:
    """Czech speech from Festival (input must be ISO-8859-2 for the Czech voices), telephone band."""
    with tempfile.TemporaryDirectory() as tmp:
        text_file = Path(tmp) / "text.txt"
        text_file.write_bytes(text.encode("iso-8859-2", errors="replace"))
        raw = Path(tmp) / "raw.wav"
        subprocess.run(
            [_require("text2wave"), "-eval", f"(voice_{voice})", str(text_file), "-o", str(raw)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        telephone_band(raw, wav_out, rate)


def synthesize_english(text: str, wav_out: Path, rate: int = 8000) -> None:
    """English speech from Festival's default voice (kal_diphone), telephone band."""
    with tempfile.TemporaryDirectory() as tmp:
        text_file = Path(tmp) / "text.txt"
        text_file.write_text(text, encoding="ascii", errors="replace")
        raw = Path(tmp) / "raw.wav"
        subprocess.run(
            [_require("text2wave"), str(text_file), "-o", str(raw)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        telephone_band(raw, wav_out, rate)


def synthesize_espeak(text: str, wav_out: Path, voice: str, rate: int = 16000, speed_wpm: int = 140) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run(
            [_require("espeak-ng"), "-v", voice, "-s", str(speed_wpm), "-w", str(raw), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        subprocess.run(
            [_require("sox"), str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(wav_out)],
            check=True,
            capture_output=True,
            timeout=60,
        )


def frames(samples: Int16Array, sample_rate: int, frame_ms: int = 20) -> list[bytes]:
    """Split audio into the fixed-size PCM frames a media gateway would deliver."""
    size = sample_rate * frame_ms // 1000
    return [samples[i : i + size].tobytes() for i in range(0, samples.size, size)]
