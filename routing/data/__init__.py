"""Triage protocol data files (TOML), shipped with the package; see docs/triage.md."""
