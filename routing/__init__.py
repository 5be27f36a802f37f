"""Triage, desk routing (ACD) and duplicate detection: pure functions on plain values.

No telephony, Redis or database imports. The vocabulary (agencies, incident types) lives in
:mod:`routing.vocabulary`; the decision types in :mod:`routing.types`.
"""
