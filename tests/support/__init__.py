"""Test support: real servers (PostgreSQL, Redis) started for the test run."""
