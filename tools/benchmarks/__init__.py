"""Benchmark suites for tools/bench.py: each module has run(quick) -> dict."""
