"""Caller location from the network and the device: AML SMS, eCall MSD and PIDF-LO decoders.

Pure functions from bytes/text to values (:class:`telephony.events.GeoFix`); see ``docs/location.md``.
"""
