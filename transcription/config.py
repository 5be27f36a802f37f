"""Settings of the transcription service (plain values; the integrator fills them from its settings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Languages a caller of a Karlovarský kraj operations centre realistically speaks; language identification
# only chooses among these.
DEFAULT_CANDIDATE_LANGUAGES: tuple[str, ...] = ("cs", "sk", "en", "de", "ru", "uk", "pl", "vi")

ENGINE_VOSK = "vosk"
ENGINE_WHISPER = "whisper"
KNOWN_ENGINES = (ENGINE_VOSK, ENGINE_WHISPER)


@dataclass(frozen=True, slots=True)
class VadConfig:
    """Energy voice-activity detection with an adaptive noise floor and hangover."""

    frame_ms: int = 20
    # A frame is speech when its RMS exceeds both the absolute floor and noise_floor * snr_factor.
    min_speech_rms: float = 120.0
    snr_factor: float = 3.0
    # Frames of speech needed to open an utterance (debounces clicks) and silence needed to close it.
    onset_frames: int = 3
    hangover_ms: int = 600
    # Audio kept before the onset so the first phoneme is not clipped.
    preroll_ms: int = 200
    # Frames whose samples sit at full scale over this fraction count as clipped (reported once per leg).
    clipped_fraction: float = 0.05


@dataclass(frozen=True, slots=True)
class WhisperConfig:
    compute_type: str = "int8"
    cpu_threads: int = 2
    # Model replicas able to decode in parallel (CTranslate2 inter_threads).
    num_workers: int = 1
    beam_size: int = 1
    # Re-decode the growing utterance window after this much new audio (LocalAgreement step).
    step_s: float = 0.5
    # ...stretched to this many times the last decode's duration when decoding is slow (a busy machine gets
    # fewer partials instead of falling behind); 1.0 = decode again as soon as the last decode is done. Was
    # 1.5; 1.0 measured word -> console p50 x 0.69, p95 x 0.82 for 1.38 x the CPU of one call alone
    # (benchmarks/transcription.py, load 7-21). Legs that wait for a slot commit only and never use it.
    step_per_decode: float = 1.0
    # Commit the agreed prefix as a final and trim the window once it grows past this.
    max_window_s: float = 12.0
    # Reduced audio context: the encoder sees the window plus this much padding instead of Whisper's fixed
    # 30 s (CTranslate2 >= 3.19 accepts shorter features). None = the full 30 s window (the engine before
    # issue 15). Measured on Festival Czech: 0 s padding makes the decoder loop, 1-3 s match the full
    # window's WER at a quarter of the cost (benchmarks/transcription.py).
    context_pad_s: float | None = 2.0
    # Emit agreed words as a final at once and trim the window after them, so the next decode covers only
    # what is new; False = finals only at a sentence end, a full window or the utterance end (before 15).
    final_on_commit: bool = True
    # After such a final, this much committed audio stays in the window as context (0 = cut right after
    # the committed words).
    keep_context_s: float = 2.0
    # Segments Whisper itself marks as probably silence are dropped (hallucination guard).
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0


@dataclass(frozen=True, slots=True)
class TranscriptionConfig:
    """Everything the service needs; no global state.

    ``engines`` maps a language to ``"vosk"`` or ``"whisper"``; languages not listed use ``default_engine``
    unless an installed Vosk model serves them and ``prefer_vosk_when_installed`` is set.
    """

    models_dir: Path = Path("var/models")
    cache_dir: Path = Path("var/cache/transcription")
    engines: dict[str, str] = field(default_factory=dict)
    default_engine: str = ENGINE_WHISPER
    prefer_vosk_when_installed: bool = True
    # Extra Vosk model directories per language, e.g. {"cs": Path("/opt/vosk-model-small-cs-0.4-rhasspy")}.
    vosk_models: dict[str, Path] = field(default_factory=dict)
    candidate_languages: tuple[str, ...] = DEFAULT_CANDIDATE_LANGUAGES
    # Language used when identification is impossible (no Whisper model, no speech).
    fallback_language: str = "cs"
    # Voiced audio collected before the caller's language is identified.
    language_detect_s: float = 3.0
    # Exponent of the caller-country prior against Whisper's acoustic probabilities (0 = ignore, 1 = full).
    # Full weight let a Czech SIM outvote clearly German speech (29:1 prior); 0.5 still settles cs/sk.
    country_prior_weight: float = 0.5
    frame_ms: int = 20
    accepted_sample_rates: tuple[int, ...] = (8000, 16000)
    # Audio waiting for a busy worker beyond this is dropped (and reported), so memory stays bounded. Long
    # enough that a waiting caller's first words are still there when the scheduler gets to the leg
    # (16 kB a second at 8 kHz: 60 s is ~1 MB per leg).
    max_backlog_s: float = 60.0
    # Legs decoded at the same time (transcription/scheduler.py grants them: waiting callers first).
    decode_slots: int = 2
    # While another leg waits for a slot, a leg's turn ends after one utterance or this much speech (its
    # words so far are committed, the rest stays queued): slots go round the waiting callers.
    turn_speech_s: float = 4.0
    # A leg alone on its slot with more audio queued than this when its turn comes is catching up (it waited
    # for a slot): it only commits until it has. Below it, one decode covers everything new and shows it as
    # a partial. It was 1 s: a decode slower than 1 s (a busy machine) then stopped partials altogether and
    # words waited for the utterance end or a full 12 s window (word -> console p95 14 s).
    caught_up_s: float = 12.0
    # Engine crashes per leg after which the leg stops being transcribed (the call goes on).
    max_restarts_per_leg: int = 3
    vad: VadConfig = field(default_factory=VadConfig)
    whisper: WhisperConfig = field(default_factory=WhisperConfig)
