"""`jaxcycle data ...`: ingest, phantom, info and split, as one subcommand with sub-actions.

`register(subparsers)` adds the `data` subcommand to the main parser; each action's handler is
`args.func(args)` and raises ValueError or OSError with a message naming the file on bad input.
"""

from __future__ import annotations

import argparse

from jaxcycle.cli.options import add_ct_window, add_mr_percentiles
from jaxcycle.data.intensity import CT_WINDOW, MR_PERCENTILES
from jaxcycle.data.splits import TRAIN_FRACTION


def _ingest(args: argparse.Namespace) -> None:
    from jaxcycle.data.ingest import IngestOptions, ingest, ingest_layout

    if args.layout is None and not (args.a and args.b):
        raise ValueError("data ingest: give --a and --b inputs, or --layout ROOT")
    if args.layout is not None and (args.a or args.b):
        raise ValueError("data ingest: --layout replaces --a and --b; give one or the other")
    options = IngestOptions(
        modality_a=args.a_modality,
        modality_b=args.b_modality,
        paired=args.paired,
        id_regex=args.id_regex,
        ct_window=tuple(args.ct_window),
        mr_percentiles=tuple(args.mr_percentiles),
        size=args.size,
        train_fraction=args.train_fraction,
        seed=args.seed,
        nifti_frame=args.nifti_frame,
        skip_bad=args.skip_bad,
        overwrite=args.overwrite,
    )
    if args.layout is not None:
        report = ingest_layout(args.out, args.layout, options)
    else:
        report = ingest(args.out, args.a, args.b, options)
    print(report.summary())


def _phantom(args: argparse.Namespace) -> None:
    from jaxcycle.data.phantom import write_phantom

    written = write_phantom(
        args.out,
        subjects=args.subjects,
        size=args.size,
        slices=args.slices,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(f"wrote {len(written)} NIfTI volumes to {args.out}/mr and {args.out}/ct")


def _info(args: argparse.Namespace) -> None:
    from jaxcycle.data.store import Dataset

    print(Dataset.open(args.dataset).summary())


def _split(args: argparse.Namespace) -> None:
    from jaxcycle.data.splits import split_patients
    from jaxcycle.data.store import Dataset

    dataset = Dataset.open(args.dataset)
    split = split_patients(dataset.patients(), args.train_fraction, args.seed)
    split.update(origin="seeded", seed=args.seed, train_fraction=args.train_fraction)
    dataset.resplit(split)
    print(dataset.summary())


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `data` (ingest, phantom, info, split) to the `jaxcycle` command's subparsers."""
    data = subparsers.add_parser(
        "data",
        help="medical and image datasets: ingest, phantom, info, split",
        description="Build and inspect jaxcycle datasets (tensorstore zarr arrays of slices in "
        "[-1, 1] with per-volume intensity maps and per-slice metadata).",
    )
    actions = data.add_subparsers(dest="data_action", required=True, metavar="ACTION")

    p = actions.add_parser(
        "ingest",
        help="image folders, DICOM series or NIfTI volumes -> a dataset",
        description="Ingest domain A (default MR) and domain B (default CT) into a dataset. "
        "Inputs are files or folders (searched recursively) of one kind each: PNG/JPEG/TIFF "
        "images, DICOM files or NIfTI volumes. CT is windowed in HU, MR normalised by "
        "per-volume percentiles; the inverse maps are stored with the dataset.",
    )
    p.add_argument("out", help="dataset location: a folder or a tensorstore kvstore URL")
    p.add_argument("--a", nargs="+", metavar="PATH", help="domain A inputs")
    p.add_argument("--b", nargs="+", metavar="PATH", help="domain B inputs")
    p.add_argument(
        "--layout", metavar="ROOT", help="reference layout: trainA, trainB, testA, testB"
    )
    for d, default in (("a", "mr"), ("b", "ct")):
        p.add_argument(
            f"--{d}-modality",
            choices=("mr", "ct", "other"),
            default=default,
            help=f"domain {d.upper()}'s modality (default {default})",
        )
    p.add_argument("--paired", action="store_true", help="match A and B by patient or name")
    p.add_argument(
        "--id-regex",
        metavar="RE",
        help="regex searched in each file's path relative to its input folder; named groups "
        "patient (required), series, slice",
    )
    add_ct_window(
        p, f"CT window in HU mapped to [-1, 1] (default {CT_WINDOW[0]:g} {CT_WINDOW[1]:g})"
    )
    add_mr_percentiles(
        p,
        f"per-volume MR percentiles mapped to [-1, 1] (default {MR_PERCENTILES[0]:g} "
        f"{MR_PERCENTILES[1]:g})",
    )
    p.add_argument("--size", type=int, help="pad each slice to a square and resize to N x N")
    p.add_argument(
        "--train-fraction",
        type=float,
        default=TRAIN_FRACTION,
        help=f"patients in the training split (default {TRAIN_FRACTION})",
    )
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--nifti-frame", type=int, help="volume to take from 4D NIfTI files")
    p.add_argument("--skip-bad", action="store_true", help="skip bad files with a warning")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.set_defaults(func=_ingest)

    p = actions.add_parser(
        "phantom",
        help="write brain-like MR/CT phantom volumes (NIfTI)",
        description="Write paired, deterministic brain-like phantom volumes as NIfTI: "
        "OUT/mr/subject-NNN.nii.gz and OUT/ct/subject-NNN.nii.gz (CT in HU).",
    )
    p.add_argument("out", help="output folder")
    p.add_argument("--subjects", type=int, default=4, help="number of subjects (default 4)")
    p.add_argument("--size", type=int, default=64, help="slice size in pixels (default 64)")
    p.add_argument("--slices", type=int, default=16, help="axial slices per volume (default 16)")
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.set_defaults(func=_phantom)

    p = actions.add_parser("info", help="print a dataset's summary")
    p.add_argument("dataset", help="dataset location")
    p.set_defaults(func=_info)

    p = actions.add_parser(
        "split",
        help="draw a new patient-level train/test split",
        description="Replace a dataset's train/test split with a seeded patient-level one.",
    )
    p.add_argument("dataset", help="dataset location")
    p.add_argument("--train-fraction", type=float, default=TRAIN_FRACTION)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_split)
