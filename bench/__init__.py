"""Benchmarks (run as modules: `uv run python -m bench.bench_client`)."""
