"""Errors raised by the transcription package.

The package may not import ``intake``; the integrator catches :class:`TranscriptionError` where it drives
recognition (every class here carries a stable ``error_id``). Third-party errors (Vosk, CTranslate2, urllib, zipfile)
are mapped at the edge with ``raise ... from exc``.
"""

from __future__ import annotations


class TranscriptionError(RuntimeError):
    """A recognition engine, its model or its input failed (a RuntimeError, so callers that guard
    ``open_leg`` with ``except RuntimeError`` keep the call alive)."""

    error_id = "transcription_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class EngineError(TranscriptionError):
    """The engine failed while loading or decoding; the leg's stream is restarted."""

    error_id = "transcription_engine_failed"


class ModelNotFound(TranscriptionError):
    """No installed model can serve the requested language or engine."""

    error_id = "transcription_model_not_found"


class ModelIntegrityError(TranscriptionError):
    """A model file is missing, truncated or its checksum does not match."""

    error_id = "transcription_model_corrupt"


class ModelInstallError(TranscriptionError):
    """Downloading or unpacking a model failed; the message says how to install it offline."""

    error_id = "transcription_model_install_failed"


class AudioFormatError(TranscriptionError):
    """PCM input does not match what the leg was opened with."""

    error_id = "transcription_audio_invalid"


class UnknownLeg(TranscriptionError):
    """``feed``/``close_leg`` for a leg that was never opened (or already closed)."""

    error_id = "transcription_unknown_leg"
