"""Benchmarks and load scenarios. What the project runs itself (benchmarks, make load's own
system, the tests) sends traffic to 127.0.0.1 only, bounded in time; the Locust scenarios go
wherever a load tester points them with --host."""
