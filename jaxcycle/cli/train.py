"""`jaxcycle train`: a CycleGAN from a config file, resuming from the workdir."""

from __future__ import annotations

import argparse


def _train(args: argparse.Namespace) -> None:
    from jaxcycle import parallel

    parallel.initialize_distributed()  # a no-op unless a multi-host run is configured
    from jaxcycle.config import load_config
    from jaxcycle.train import train

    config = load_config(args.config, args.overrides)
    train(config, args.workdir, progress=not args.quiet)
    print(f"done: {args.workdir}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `train` to the `jaxcycle` command's subparsers."""
    p = subparsers.add_parser(
        "train",
        help="train a CycleGAN (resumes from the workdir's latest checkpoint)",
        description="Train a CycleGAN from a config file; any config field can be overridden "
        "with --config.FIELD=VALUE (e.g. --config.train.batch_size=4). Rerunning with the same "
        "workdir resumes from its latest checkpoint, bit-identically. Multi-host runs: set "
        "JAXCYCLE_COORDINATOR=host:port, JAXCYCLE_NUM_PROCESSES and JAXCYCLE_PROCESS_ID (TPU "
        "pods and SLURM need none of them).",
    )
    p.add_argument("--config", required=True, help="config file, PATH[:ARG]")
    p.add_argument("--workdir", required=True, help="checkpoints, metrics, samples")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train, takes_overrides=True)
