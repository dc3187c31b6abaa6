"""Benchmarks: scripts that print JSON (run them as `python -m benchmarks.<name>`)."""
