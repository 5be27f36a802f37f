"""The interface every recognition engine implements.

An :class:`Engine` owns one loaded model that all calls share. Each call leg gets its own
:class:`EngineStream`. The service feeds a stream only voiced audio, one VAD utterance at a time, from a
worker thread; streams are never used from two threads at once. Times a stream reports are seconds from
the start of the leg (the service tells the stream where each utterance starts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from transcription.audio import Int16Array
from transcription.events import Word


@dataclass(frozen=True, slots=True)
class Segment:
    """A committed piece of transcript: it will not change any more."""

    text: str
    start_s: float
    end_s: float
    words: tuple[Word, ...] = ()
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """The unstable text of the utterance after the last committed segment."""

    text: str
    audio_s: float


@dataclass(frozen=True, slots=True)
class StepResult:
    finals: list[Segment] = field(default_factory=list)
    partial: Hypothesis | None = None


class EngineStream(Protocol):
    def start_utterance(self, at_s: float) -> None:
        """The next samples begin an utterance at ``at_s`` seconds into the leg."""

    def accept(self, samples: Int16Array) -> None:
        """Buffer or decode voiced samples of the current utterance (cheap engines decode here)."""

    def step(self, want_partial: bool) -> StepResult:
        """Commit what is stable; with ``want_partial``, also produce a fresh hypothesis.

        The service passes ``want_partial=False`` when the worker is behind, so stale partials are skipped
        rather than queued.
        """

    def end_utterance(self) -> list[Segment]:
        """The utterance ended (VAD silence, leg closed): commit everything still pending."""

    def settle(self) -> list[Segment]:
        """The leg yields its decoding turn mid-utterance (another leg waits for the slot): commit now what
        lies safely before the end of the audio accepted so far; the rest waits for the leg's next turn."""

    def close(self) -> None: ...


class Engine(Protocol):
    """A loaded model shared by every leg that uses it; ``open_stream`` must be thread-safe."""

    @property
    def name(self) -> str: ...

    def languages(self) -> frozenset[str] | None:
        """Languages the model serves; ``None`` for a multilingual model."""

    def open_stream(self, sample_rate: int, language: str) -> EngineStream: ...


@dataclass(frozen=True, slots=True)
class LanguageGuess:
    language: str
    probability: float
    candidates: tuple[tuple[str, float], ...]


class LanguageIdentifier(Protocol):
    def language_probabilities(self, samples: Int16Array, sample_rate: int) -> dict[str, float]:
        """Acoustic probability of every language the model knows, for the given voiced audio."""
