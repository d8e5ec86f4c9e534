"""The benchmark runner's command-line options, apart from the runner so that building the
`jaxcycle` command's parser imports nothing heavy."""

from __future__ import annotations

import argparse
from pathlib import Path

DTYPES = ("float32", "bfloat16")
TORCH_VARIANTS = ("eager", "channels-last", "compile")


def count(text: str) -> int:
    """A whole number of at least 1 (timed calls, rounds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The runner's arguments (shared with `jaxcycle bench`)."""
    p = parser or argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Throughput of jaxcycle against the PyTorch baseline, side by side.",
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="image sizes")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4], help="global batch sizes")
    p.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32"],
        choices=DTYPES,
        help="compute dtypes (bfloat16: float32 master weights; PyTorch autocast)",
    )
    p.add_argument("--repeats", type=count, default=3, help="timed calls per measurement")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls after compiling")
    p.add_argument(
        "--rounds",
        type=count,
        default=1,
        help="train-step measurements per side, the sides taking turns (jaxcycle, each PyTorch "
        "variant, jaxcycle, ...) so that a slow spell of the machine falls on both; times "
        "pooled, each round's ratio reported",
    )
    p.add_argument("--ngf", type=int, default=64, help="generator width")
    p.add_argument("--ndf", type=int, default=64, help="discriminator width")
    p.add_argument("--n-blocks", type=int, default=9, help="residual blocks")
    p.add_argument("--pool-size", type=int, default=50, help="image pool size (reference: 50)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch baseline")
    p.add_argument(
        "--torch-variants",
        nargs="+",
        default=["eager"],
        choices=TORCH_VARIANTS,
        help="PyTorch variants: eager (the ratio's baseline), channels-last, compile",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="PyTorch intra-op threads (default: PyTorch's own, the core count)",
    )
    p.add_argument(
        "--no-inference", dest="inference", action="store_false", help="skip generator inference"
    )
    p.add_argument(
        "--no-loader",
        dest="loader",
        action="store_false",
        help="skip the input pipeline's rate (the loader jaxcycle train builds from PNG folders)",
    )
    p.add_argument(
        "--scaling", action="store_true", help="also measure scaling over 1 .. all local devices"
    )
    p.add_argument("--scaling-size", type=int, default=128, help="image size for scaling")
    p.add_argument("--scaling-batch", type=int, default=1, help="per-device batch for scaling")
    p.add_argument(
        "--cpu-devices",
        type=int,
        default=8,
        help="on a one-device CPU, simulate this many devices for scaling",
    )
    p.add_argument("--scaling-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="device peak TFLOP/s for MFU (known GPUs/TPUs are looked up)",
    )
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    p.add_argument("--markdown", type=Path, default=None, help="write the tables here")
    return p
