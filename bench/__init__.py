"""Benchmarks: `python -m bench` (or `make bench`) prints measured figures beside baselines."""
