"""The common base of every error a telephony adapter raises on purpose, so that intake can catch adapter
failures (a taker phone that does not answer, an AMI action Asterisk refused) without knowing which
adapter holds the call. Each subclass keeps a stable ``error_id``."""

from __future__ import annotations


class AdapterError(Exception):
    error_id = "telephony_error"
