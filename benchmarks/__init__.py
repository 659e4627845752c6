"""Benchmarks: run with ``make bench`` (never by the tests); figures go to RESULTS.md."""
