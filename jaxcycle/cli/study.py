"""`jaxcycle study`: the paper's study (`jaxcycle.paper.study`); `report_study` prints its
outcome, here and for `jaxcycle demo`."""

from __future__ import annotations

import argparse
from pathlib import Path


def _study(args: argparse.Namespace) -> None:
    from jaxcycle.config import load_config
    from jaxcycle.paper.study import run_study

    config = load_config(args.config, args.overrides)
    outcomes = run_study(config, args.workdir, progress=not args.quiet)
    report_study(Path(args.workdir), outcomes)


def report_study(workdir: Path, outcomes: dict) -> None:
    """Prints which rows of a study are done or skipped, its key numbers and where its tables
    and figures are."""
    from jaxcycle.paper.study import key_numbers

    skipped = [n for n, o in outcomes.items() if "skipped" in o]
    done = [n for n in outcomes if n not in skipped]
    print(f"rows done: {', '.join(done) or 'none'}")
    if skipped:
        print(f"rows skipped (weights unavailable): {', '.join(skipped)}")
    if done:
        print(key_numbers(outcomes))
        print(
            f"tables:  {workdir / 'tables'}  (table_iii_mr_to_ct.md, table_iv_ct_to_mr.md, "
            "latent_separability.csv)"
        )
        print(
            f"figures: {workdir / 'figures'}  (fig5_mr_to_ct_WINDOW.png, "
            "fig6_ct_to_mr_WINDOW.png for each CT display window, fig7_latent.png)"
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `study` to the `jaxcycle` command's subparsers."""
    p = subparsers.add_parser(
        "study",
        help="the paper's study: fine-tune each pretrained model, tables and figures",
        description="For each model in study.models (default: all 18 published generators) "
        "in each variant of study.variants (the paper's adapter; a residual adapter that "
        "starts as the pretrained generator; full fine-tuning), and for the controls (the "
        "same variants from random weights): fine-tune as in configs/transfer.py on the "
        "dataset's train split, evaluate both directions on its test split at the training "
        "crop size, and write Tables III/IV with each row's settings (the paper's numbers "
        "below, under a caveat), figures 5-6 in CT display windows, figure 7 and latent "
        "separability scores; print each direction's rows by SSIM. Resumes row by row; "
        "models whose weights cannot be had are reported and skipped.",
    )
    p.add_argument("--config", required=True, help="config file, e.g. configs/study.py")
    p.add_argument("--workdir", required=True)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_study, takes_overrides=True)
