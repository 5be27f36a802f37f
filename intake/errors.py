"""The exception hierarchy of izs-intake.

Every error our code raises on purpose is an :class:`IzsError`. Third-party errors are mapped at the edge
(``raise StorageError(...) from exc``). Each class has a stable ``error_id`` that the API returns in its
``error`` field, so integrations can branch on it.

    IzsError
    ├── ConfigError            settings invalid; one line per problem, no traceback
    ├── NotFound               a call, incident, desk or call taker does not exist
    ├── Conflict               the change contradicts current state (e.g. an illegal call transition)
    │   └── IllegalTransition  a call or incident state machine refused a transition
    ├── ValidationFailed       input from outside is malformed
    ├── PermissionDenied       the acting user's role may not do this
    ├── StorageError           the database failed (retried from the journal where possible)
    ├── LiveStateError         Redis failed: the system runs degraded and says so
    ├── TelephonyError         the PBX refused a command a person gave (e.g. desk membership at log-in)
    └── TooManyAttempts        refused for now (login throttling), with ``retry_after_s``

The adapters cannot import this module: ``telephony.errors.AdapterError`` and
``transcription.errors.TranscriptionError`` are their own bases, each with a stable ``error_id``; intake
catches them where it drives an adapter, logs them with the call id and keeps the call going.
"""

from __future__ import annotations

from typing import Any


class IzsError(Exception):
    error_id = "internal"
    http_status = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConfigError(IzsError):
    error_id = "config_invalid"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems), problems=problems)
        self.problems = problems


class NotFound(IzsError):
    error_id = "not_found"
    http_status = 404


class Conflict(IzsError):
    error_id = "conflict"
    http_status = 409


class IllegalTransition(Conflict):
    error_id = "illegal_transition"


class NotForCallback(Conflict):
    """Only a caller nobody talked to (abandoned, or ended without a call taker) can be marked called back;
    marking a live or answered call would hide it from the call-back list when it is abandoned later."""

    error_id = "call_not_abandoned"


class ValidationFailed(IzsError):
    error_id = "validation_failed"
    http_status = 422


class PermissionDenied(IzsError):
    error_id = "forbidden"
    http_status = 403


class StorageError(IzsError):
    error_id = "storage_unavailable"
    http_status = 503


class LiveStateError(IzsError):
    error_id = "live_state_unavailable"
    http_status = 503


class TelephonyError(IzsError):
    """The PBX did not carry out what a person asked (mapped from ``telephony.errors.AdapterError``)."""

    error_id = "telephony_error"
    http_status = 502


class TooManyAttempts(IzsError):
    """Refused for now (login throttling); ``retry_after_s`` says when to try again."""

    error_id = "too_many_requests"
    http_status = 429

    def __init__(self, message: str, retry_after_s: float, **details: Any) -> None:
        super().__init__(message, retry_after_s=max(1, round(retry_after_s)), **details)
        self.retry_after_s = max(1, round(retry_after_s))
