"""`jaxcycle bench`: throughput against the PyTorch baseline (`benchmarks.run`)."""

from __future__ import annotations

import argparse

from benchmarks.options import build_parser as build_bench_parser


def _bench(args: argparse.Namespace) -> None:
    from benchmarks.run import run

    run(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `bench` to the `jaxcycle` command's subparsers."""
    p = subparsers.add_parser(
        "bench",
        help="throughput against the PyTorch baseline (benchmarks/run.py)",
        description="Train-step and inference throughput of jaxcycle and of the reference "
        "PyTorch iteration (eager, channels-last, torch.compile), side by side in one run, "
        "each side of each setting in its own process: compile time, peak memory (XLA's "
        "buffers; each process's peak RSS on CPU, the allocators' peaks on GPU), achieved "
        "TFLOP/s, MFU, the input pipeline's rate beside the step's, and scaling over "
        "devices. Same flags as 'python -m benchmarks.run'.",
    )
    build_bench_parser(p)
    p.set_defaults(func=_bench)
