"""Benchmarks behind the ``bench_*`` commands; each prints a table and one JSON line."""
