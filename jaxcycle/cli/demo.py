"""`jaxcycle demo`: the study at small scale on phantom data (`jaxcycle.paper.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxcycle.cli.study import report_study


def _demo(args: argparse.Namespace) -> None:
    from jaxcycle.paper.demo import DemoScale, run_demo

    outcomes = run_demo(
        args.workdir, DemoScale(epochs=args.epochs), offline=args.offline, progress=not args.quiet
    )
    report_study(Path(args.workdir) / "study", outcomes)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `demo` to the `jaxcycle` command's subparsers."""
    p = subparsers.add_parser(
        "demo",
        help="the study at small scale on embedded phantom data (minutes on a CPU)",
        description="Run the whole study at small scale on brain-like phantom MR/CT data: "
        "generic pretrained generators (the published one when online, else a small CycleGAN "
        "trained here on scikit-image's photographs, exported to .pth and imported back), "
        "fine-tuned with the paper's adapter, with one that starts as the pretrained "
        "generator, and in full, beside the same variants from random weights (a random "
        "frozen trunk; from scratch); tables, figures, and the key numbers printed at the end.",
    )
    p.add_argument("--workdir", required=True, help="where everything is written (resumable)")
    p.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs per model")
    p.add_argument("--offline", action="store_true", help="do not try to download weights")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_demo)
