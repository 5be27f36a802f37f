"""Protocol adapters: SIP/RTP, Asterisk AMI and location messages in, domain events out.

Nothing here imports ``intake`` or ``api``; adapters speak only the plain event types of
:mod:`telephony.events` and take commands through :mod:`telephony.ports`.
"""
