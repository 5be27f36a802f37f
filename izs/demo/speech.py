"""Voices for synthetic callers: a scenario's caller text as an 8 kHz mono 16-bit WAV, ready for a SIP phone.

Czech is spoken by Festival's Czech voices (``voice_czech_machac`` / ``voice_czech_dita``, which read
ISO-8859-2 text); every other language by espeak-ng. sox resamples to telephone rate, normalises the level
and adds the silences around the speech. Files are cached by a hash of everything that shapes them, so a
demo or a drill synthesizes each scenario once per var dir.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

from intake.errors import IzsError

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
CZECH_VOICES = {"machac": "voice_czech_machac", "dita": "voice_czech_dita"}
ESPEAK_VOICES = {
    "cs": "cs",
    "sk": "sk",
    "de": "de",
    "en": "en",
    "ru": "ru",
    "uk": "uk",
    "vi": "vi",
    "pl": "pl",
}
# Bumped when the synthesis pipeline changes, so cached files made the old way are not reused.
PIPELINE_VERSION = "1"
# Festival's Czech voices read ISO-8859-2; typography that encoding lacks is spoken as its plain form.
_LATIN2_FALLBACKS = str.maketrans(
    {
        "„": '"',
        "“": '"',
        "”": '"',
        "‚": "'",
        "‘": "'",
        "’": "'",
        "–": "-",
        "—": "-",
        "…": "...",
        "\u00a0": " ",
    }
)


class SpeechError(IzsError):
    """A synthetic caller's voice could not be made (tool missing, tool failed, unknown language)."""

    error_id = "speech_synthesis_failed"


@dataclass(frozen=True, slots=True)
class SpokenAudio:
    """A synthesized WAV and where the speech sits inside it (seconds from the start of the file)."""

    path: Path
    duration_s: float
    speech_start_s: float
    speech_end_s: float
    engine: str  # "festival" / "espeak-ng"
    voice: str


def latin2_text(text: str) -> bytes:
    """``text`` as Festival's Czech voices read it: ISO-8859-2, unknown characters left out."""
    return text.translate(_LATIN2_FALLBACKS).encode("iso-8859-2", errors="ignore")


def wav_duration_s(path: Path) -> float:
    try:
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes() / float(wav.getframerate())
    except (wave.Error, OSError, EOFError) as exc:
        raise SpeechError(f"cannot read WAV {path}: {exc}", path=str(path)) from exc


class SpeechSynthesizer:
    """Makes and caches caller voices under ``cache_dir``. Blocking (subprocesses): run it in a thread."""

    def __init__(self, cache_dir: Path, timeout_s: float = 120.0, czech_voice: str = "machac") -> None:
        if czech_voice not in CZECH_VOICES:
            raise SpeechError(f"unknown Czech voice {czech_voice!r} (known: {', '.join(CZECH_VOICES)})")
        self.cache_dir = Path(cache_dir)
        self._timeout_s = timeout_s
        self._czech_voice = czech_voice

    @staticmethod
    def available() -> list[str]:
        """The tools this machine lacks (empty when every voice can be made)."""
        return [tool for tool in ("text2wave", "espeak-ng", "sox") if shutil.which(tool) is None]

    def synthesize(
        self,
        text: str,
        language: str,
        *,
        voice: str | None = None,
        lead_silence_s: float = 0.5,
        tail_silence_s: float = 1.0,
        speed_wpm: int = 160,
    ) -> SpokenAudio:
        """Speak ``text`` in ``language``; silence before (the phone settling) and after (the caller waits).

        ``voice``: for Czech ``machac``/``dita`` (Festival) or ``espeak`` to use espeak-ng's Czech.
        """
        text = " ".join(text.split())
        if not text:
            raise SpeechError("nothing to say: empty caller text")
        if lead_silence_s < 0 or tail_silence_s < 0:
            raise SpeechError("silence before and after the speech cannot be negative")
        if language == "cs" and voice != "espeak":
            engine, chosen = "festival", voice or self._czech_voice
            if chosen not in CZECH_VOICES:
                raise SpeechError(f"unknown Czech voice {chosen!r} (known: {', '.join(CZECH_VOICES)})")
        else:
            engine = "espeak-ng"
            chosen = ESPEAK_VOICES.get(language, "")
            if not chosen:
                raise SpeechError(
                    f"no voice for language {language!r} (known: {', '.join(sorted(ESPEAK_VOICES))})",
                    language=language,
                )
        key = hashlib.sha256(
            "|".join(
                (
                    PIPELINE_VERSION,
                    engine,
                    chosen,
                    str(speed_wpm),
                    f"{lead_silence_s:.3f}",
                    f"{tail_silence_s:.3f}",
                    text,
                )
            ).encode()
        ).hexdigest()[:24]
        target = self.cache_dir / f"{language}-{key}.wav"
        speech_path = self.cache_dir / f"{language}-{key}.speech"
        if target.exists() and speech_path.exists():
            speech_s = float(speech_path.read_text(encoding="ascii"))
        else:
            speech_s = round(
                self._make(text, engine, chosen, speed_wpm, lead_silence_s, tail_silence_s, target), 4
            )
            speech_path.write_text(f"{speech_s:.4f}", encoding="ascii")
        return SpokenAudio(
            path=target,
            duration_s=wav_duration_s(target),
            speech_start_s=lead_silence_s,
            speech_end_s=lead_silence_s + speech_s,
            engine=engine,
            voice=chosen,
        )

    def _make(
        self,
        text: str,
        engine: str,
        voice: str,
        speed_wpm: int,
        lead_s: float,
        tail_s: float,
        target: Path,
    ) -> float:
        missing = self.available()
        if missing:
            raise SpeechError(
                f"missing speech tools: {', '.join(missing)} "
                "(Debian: festival festvox-czech-machac festvox-czech-dita espeak-ng sox)"
            )
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{target.stem}.{os.getpid()}"
        raw = target.with_name(f"{stem}.raw.wav")
        plain = target.with_name(f"{stem}.plain.wav")
        partial = target.with_name(f"{stem}.part.wav")
        source_text = target.with_name(f"{stem}.txt")
        try:
            if engine == "festival":
                source_text.write_bytes(latin2_text(text))
                self._run(
                    ["text2wave", "-eval", f"({CZECH_VOICES[voice]})", "-o", str(raw), str(source_text)]
                )
            else:
                source_text.write_text(text, encoding="utf-8")
                self._run(
                    ["espeak-ng", "-v", voice, "-s", str(speed_wpm), "-w", str(raw), "-f", str(source_text)]
                )
            # Telephone format, level normalised (Festival clips otherwise), leading/trailing silence trimmed
            # so the offsets below are where speech really is.
            self._run(
                [
                    "sox",
                    str(raw),
                    "-r",
                    str(SAMPLE_RATE),
                    "-c",
                    "1",
                    "-b",
                    "16",
                    "-e",
                    "signed-integer",
                    str(plain),
                    "gain",
                    "-n",
                    "-3",
                    "silence",
                    "1",
                    "0.02",
                    "0.5%",
                    "reverse",
                    "silence",
                    "1",
                    "0.02",
                    "0.5%",
                    "reverse",
                ]
            )
            speech_s = wav_duration_s(plain)
            if speech_s <= 0.1:
                raise SpeechError(f"{engine} produced no speech for {text[:60]!r}")
            self._run(["sox", str(plain), str(partial), "pad", f"{lead_s:.3f}", f"{tail_s:.3f}"])
            partial.replace(target)  # atomic: a concurrent synthesizer never sees half a file
        finally:
            for path in (raw, plain, partial, source_text):
                path.unlink(missing_ok=True)
        log.info("synthesized %.1f s of %s speech (%s) into %s", speech_s, engine, voice, target.name)
        return speech_s

    def _run(self, command: list[str]) -> None:
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=self._timeout_s)
        except subprocess.CalledProcessError as exc:
            stderr = exc.stderr.decode(errors="replace").strip()[-300:]
            raise SpeechError(f"{command[0]} failed ({exc.returncode}): {stderr}") from exc
        except subprocess.TimeoutExpired as exc:
            raise SpeechError(f"{command[0]} took longer than {self._timeout_s:.0f} s") from exc
        except OSError as exc:
            raise SpeechError(f"cannot run {command[0]}: {exc}") from exc
