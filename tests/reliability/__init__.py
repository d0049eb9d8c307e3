"""Reliability tests of the policy server (real processes) and helpers shared with server tests."""
