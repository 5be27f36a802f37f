"""Errors of the AMI bridge, under the adapters' common :class:`telephony.errors.AdapterError` (each keeps a
stable ``error_id``)."""

from __future__ import annotations

from telephony.errors import AdapterError


class AmiError(AdapterError):
    error_id = "ami_error"


class AmiConnectionError(AmiError):
    """No usable AMI connection: not connected, connection lost, or the peer is not an Asterisk manager."""

    error_id = "ami_unavailable"


class AmiLoginError(AmiError):
    """Asterisk rejected our credentials (``Response: Error`` / ``Authentication failed``)."""

    error_id = "ami_login_rejected"


class AmiTimeoutError(AmiError):
    error_id = "ami_timeout"


class AmiActionError(AmiError):
    """Asterisk answered an action with ``Response: Error`` (or an Originate failed)."""

    error_id = "ami_action_failed"

    def __init__(self, action: str, message: str, action_id: str | None = None) -> None:
        super().__init__(f"AMI {action} failed: {message}")
        self.action = action
        self.message = message
        self.action_id = action_id
