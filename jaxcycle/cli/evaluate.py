"""`jaxcycle evaluate`: a training run or converted generators scored on a test split."""

from __future__ import annotations

import argparse
from pathlib import Path


def _evaluate(args: argparse.Namespace) -> None:
    from jaxcycle.evaluate import evaluate_params, evaluate_run, format_summary

    generators = args.gen_ab or args.gen_ba
    if bool(args.workdir) == bool(generators):
        raise ValueError("give either --workdir (a training run) or --gen-ab/--gen-ba")
    options = dict(
        split=args.split,
        batch_size=args.batch_size,
        images=not args.no_images,
        volumes=args.volumes,
        overwrite=args.overwrite,
    )
    if args.workdir:
        output = args.output or Path(args.workdir) / "eval"
        results = evaluate_run(args.workdir, args.dataset, output=output, **options)
    else:
        if not (args.dataset and args.output):
            raise ValueError("--gen-ab/--gen-ba need --dataset and --output")
        output = args.output
        results = evaluate_params(args.dataset, output, args.gen_ab, args.gen_ba, **options)
    print(format_summary({d: s.summary() for d, s in results.items()}), end="")
    images = "" if args.no_images else "translated images, "
    volumes = f"translated volumes ({args.volumes}), " if args.volumes else ""
    print(f"{images}{volumes}per-image CSVs and summary in {output}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `evaluate` to the `jaxcycle` command's subparsers."""
    p = subparsers.add_parser(
        "evaluate",
        help="score a trained run or converted generators on a paired dataset's test split",
        description="Translate the test split of a paired dataset with a run's latest "
        "generators (--workdir, both directions) or with generator weights: params "
        "directories, reference .pth files or published model names (--gen-ab for A->B, "
        "--gen-ba for B->A; grey data "
        "are replicated into 3-channel generators and the outputs averaged back; a run's "
        "generators work at its crop size, and the references are resized to it) and score the "
        "results (PSNR, SSIM, UQI, VIF; MAE/RMSE in HU for CT). Writes the translated images "
        "(translated_gen_ab/PATIENT_SSSS.png; 16-bit for grey scanner data), per-image CSVs "
        "and a summary table (Markdown and CSV); never over existing files without --overwrite.",
    )
    p.add_argument("--workdir", help="the training run")
    p.add_argument("--gen-ab", metavar="WEIGHTS", help="generator translating A into B")
    p.add_argument("--gen-ba", metavar="WEIGHTS", help="generator translating B into A")
    p.add_argument(
        "--dataset", help="paired dataset (default with --workdir: the run's data.dataset)"
    )
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument(
        "--output", help="output folder (default WORKDIR/eval; required with --gen-ab/--gen-ba)"
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--no-images", action="store_true", help="do not write translated images")
    p.add_argument(
        "--volumes",
        choices=("nifti", "dicom"),
        help="also write each source volume translated, on its source's grid and geometry and "
        "in physical units (HU for CT): volumes_GEN/PATIENT_VVV.nii.gz (NIfTI sources) or a "
        "folder holding a new DICOM series marked synthetic, to view beside the source",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=_evaluate)
