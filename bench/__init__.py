"""Benchmarks of the bridge against the simulators: `python -m bench` (see bench/RESULTS.md)."""
