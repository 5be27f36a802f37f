"""Streaming speech recognition: 16-bit PCM frames of one call leg in, transcript events out.

No telephony or storage imports: see :mod:`transcription.events` for the port types.
"""
