"""The "all call takers busy" prompt: Czech speech from espeak-ng, cached as an 8 kHz 16-bit WAV."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import wave
from pathlib import Path

from telephony.sip.errors import SipError

DEFAULT_PROMPT_TEXT = "Tísňová linka. Popište, co se stalo a kde."
PROMPT_SAMPLE_RATE = 8000


class PromptError(SipError):
    """The prompt WAV could not be generated or read."""


def generate_prompt_wav(
    var_dir: Path, text: str = DEFAULT_PROMPT_TEXT, voice: str = "cs", speed_wpm: int = 150
) -> Path:
    """Synthesize ``text`` with espeak-ng into ``var_dir/prompts/<hash>.wav`` (8 kHz mono 16-bit), once.

    Call at setup, not per call: it runs two subprocesses. A cached file is reused as long as text, voice and
    speed are unchanged.
    """
    espeak = shutil.which("espeak-ng")
    sox = shutil.which("sox")
    if espeak is None or sox is None:
        raise PromptError("espeak-ng and sox are needed to generate the prompt (Debian: espeak-ng sox)")
    key = hashlib.sha256(f"{voice}|{speed_wpm}|{text}".encode()).hexdigest()[:16]
    target = var_dir / "prompts" / f"prompt-{key}.wav"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    raw = target.with_suffix(f".{os.getpid()}.raw.wav")
    partial = target.with_suffix(f".{os.getpid()}.part.wav")
    try:
        subprocess.run(
            [espeak, "-v", voice, "-s", str(speed_wpm), "-w", str(raw), text],
            check=True,
            capture_output=True,
            timeout=60,
        )
        subprocess.run(
            [
                sox,
                str(raw),
                "-r",
                str(PROMPT_SAMPLE_RATE),
                "-c",
                "1",
                "-b",
                "16",
                "-e",
                "signed-integer",
                str(partial),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        partial.replace(target)  # atomic: concurrent generators never see a half-written prompt
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        raise PromptError(f"prompt synthesis failed: {exc}") from exc
    finally:
        raw.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return target


def read_wav_pcm(path: Path) -> tuple[bytes, int]:
    """(16-bit mono little-endian PCM, sample rate) of a WAV file, for SipEndpoint.play_prompt."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
                raise PromptError(f"{path}: need 16-bit mono WAV")
            return wav.readframes(wav.getnframes()), wav.getframerate()
    except (wave.Error, OSError, EOFError) as exc:
        raise PromptError(f"cannot read prompt WAV {path}: {exc}") from exc
