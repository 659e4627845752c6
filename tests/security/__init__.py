"""Attacks and hostile clients against a real daemon (issue 12)."""
