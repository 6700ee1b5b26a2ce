"""Benchmarks and load scenarios. Traffic goes to 127.0.0.1 only; every run is bounded in time."""
