"""Transcript events produced by every recognition engine (Vosk, faster-whisper)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start_s: float
    end_s: float
    confidence: float


@dataclass(frozen=True, slots=True)
class TranscriptPartial:
    """An unstable hypothesis for the words being spoken now; replaced by the next partial or final."""

    call_ref: str
    leg: str  # "caller" / "taker"
    text: str
    audio_s: float  # position in the leg's audio the hypothesis covers, seconds from the leg's start


GAP_ENGINE = "gap"


@dataclass(frozen=True, slots=True)
class TranscriptFinal:
    """A committed transcript segment. ``engine == GAP_ENGINE`` marks audio that was not transcribed (the
    text says how much and why), so the transcript shows the hole instead of silently closing it."""

    call_ref: str
    leg: str
    text: str
    start_s: float
    end_s: float
    words: tuple[Word, ...] = ()
    language: str | None = None
    confidence: float | None = None
    engine: str = ""

    @classmethod
    def gap(
        cls, call_ref: str, leg: str, start_s: float, seconds: float, why: str, language: str | None = None
    ) -> TranscriptFinal:
        """The mark for ``seconds`` of the leg's audio from ``start_s`` that no decoder heard, and why:
        ``[N s not transcribed: why]`` (the one wording the console, the tests and readers look for)."""
        return cls(
            call_ref=call_ref,
            leg=leg,
            text=f"[{seconds:.1f} s not transcribed: {why}]",
            start_s=start_s,
            end_s=start_s + seconds,
            language=language,
            engine=GAP_ENGINE,
        )


@dataclass(frozen=True, slots=True)
class LanguageDetected:
    call_ref: str
    language: str
    probability: float
    candidates: tuple[tuple[str, float], ...] = field(default_factory=tuple)
    leg: str = ""  # which leg was identified ("caller" / "taker"); "" when not known


@dataclass(frozen=True, slots=True)
class TranscriptionFailed:
    """Recognition for a leg failed or fell behind; the call goes on and routes by dialled number."""

    call_ref: str
    leg: str
    reason: str
    recovered: bool = False


TranscriptEvent = TranscriptPartial | TranscriptFinal | LanguageDetected | TranscriptionFailed
