"""`jaxcycle reader-study make|analyze`: the blinded reader study's kit and the analysis of
the readers' answers (`jaxcycle.paper.reader_study`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxcycle.paper.reader_study import (
    DEFAULT_REAL_GROUP,
    DEFAULT_SYNTHETIC_GROUP,
    DEFAULT_TITLE,
)


def _make(args: argparse.Namespace) -> None:
    from jaxcycle.data.images import image_files
    from jaxcycle.paper.reader_study import REAL, SYNTHETIC, make_kit, read_key

    kit = make_kit(
        image_files(args.real),
        image_files(args.synthetic),
        args.out,
        seed=args.seed,
        title=args.title,
        real_group=args.real_label,
        synthetic_group=args.synthetic_label,
        overwrite=args.overwrite,
    )
    key = read_key(kit / "key.csv")
    n_real = sum(r.truth == REAL for r in key)
    n_pairs = sum(bool(r.pair) for r in key if r.truth == SYNTHETIC)
    print(
        f"wrote {kit}: {len(key)} images ({n_real} real, {len(key) - n_real} synthetic, "
        f"{n_pairs} paired by name)\n"
        f"  send readers {kit / 'readers.zip'} (index.html + images/; they unzip it and open "
        "index.html)\n"
        f"  {kit / 'key.csv'} is the answer key: do not share it"
    )


def _analyze(args: argparse.Namespace) -> None:
    from jaxcycle.paper.reader_study import analyze, format_report

    results = analyze(args.key, args.answers)
    print(format_report(results), end="")
    if args.markdown:
        path = Path(args.markdown)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(format_report(results, markdown=True), encoding="utf-8")
        print(f"wrote {path}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `reader-study` (make, analyze) to the `jaxcycle` command's subparsers."""
    study = subparsers.add_parser(
        "reader-study",
        help="blinded realism study for radiologists: make the kit, analyze the answers",
        description="A perceptual study as in the paper (Tables V and VI): readers score real "
        "and synthetic images, shown in random order under blinded names, for realism (1-4) "
        "and say whether each is real, in a self-contained web page; then mean/std/real% per "
        "group and Pearson r, C_b and Lin's CCC per reader.",
    )
    actions = study.add_subparsers(dest="study_action", required=True, metavar="ACTION")

    p = actions.add_parser(
        "make",
        help="build a kit: index.html, blinded images/, readers.zip, key.csv",
        description="Copy the images (re-encoded as PNG without metadata) under blinded, "
        "shuffled names and write the page readers open, readers.zip (what to send them) and "
        "key.csv (the answer key; keep it). Synthetic and real images with the same file name "
        "(without suffix) are recorded as pairs of the same slice.",
    )
    p.add_argument(
        "--real",
        nargs="+",
        required=True,
        metavar="PATH",
        help="ground-truth images: files or folders",
    )
    p.add_argument(
        "--synthetic",
        nargs="+",
        required=True,
        metavar="PATH",
        help="synthetic images: files or folders",
    )
    p.add_argument("--out", required=True, help="kit folder to create")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    p.add_argument("--title", default=DEFAULT_TITLE, help="title shown to readers")
    p.add_argument(
        "--real-label",
        default=DEFAULT_REAL_GROUP,
        help=f"group name of the real images (default {DEFAULT_REAL_GROUP!r})",
    )
    p.add_argument(
        "--synthetic-label",
        default=DEFAULT_SYNTHETIC_GROUP,
        help="group name of the synthetic images, e.g. the model "
        f"(default {DEFAULT_SYNTHETIC_GROUP!r})",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing kit")
    p.set_defaults(func=_make)

    p = actions.add_parser(
        "analyze",
        help="Tables V and VI from key.csv and the readers' CSVs",
        description="Per group: mean and population std (ddof=0) of the realism scores and "
        "share judged real, pooled over readers and per reader. Per reader and synthetic "
        "group: Pearson r, accuracy C_b and Lin's CCC between the scores of the synthetic "
        "images and of their ground-truth counterparts.",
    )
    p.add_argument("key", help="the kit's key.csv")
    p.add_argument("answers", nargs="+", help="reader_<name>.csv files saved from the page")
    p.add_argument("--markdown", metavar="OUT.md", help="also write the report as Markdown")
    p.set_defaults(func=_analyze, more_positionals="answers")
