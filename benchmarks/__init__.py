"""Benchmarks and the PyTorch reference implementation they (and the parity tests) compare to."""
