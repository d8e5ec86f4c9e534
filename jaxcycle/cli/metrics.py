"""`jaxcycle metrics`: predictions scored against references (PSNR, SSIM, UQI, VIF, HU)."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxcycle.cli.options import add_ct_window, add_range


def _metrics(args: argparse.Namespace) -> None:
    from jaxcycle.evaluate import format_summary, score_files

    if args.csv and Path(args.csv).exists() and not args.overwrite:
        raise FileExistsError(f"{args.csv} exists; refusing to replace it (use --overwrite)")
    scores = score_files(
        args.ref,
        args.pred,
        window=tuple(args.hu_window),
        data_range=args.data_range,
        vif_scale=args.vif_scale,
        modality=args.modality,
        mr_window=tuple(args.mr_window) if args.mr_window else None,
    )
    print(f"{len(scores.names)} image(s)")
    print(format_summary({args.pred: scores.summary()}), end="")
    if args.csv:
        print(f"per-image scores: {scores.write_csv(args.csv)}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `metrics` to the `jaxcycle` command's subparsers."""
    p = subparsers.add_parser(
        "metrics",
        help="score predictions against references: PSNR, SSIM, UQI, VIF (+ MAE/RMSE in HU)",
        description="Score image files (8/16-bit), DICOM files or NIfTI volumes (slice by slice) "
        "in PRED against the files of the same names in REF. Each pair is mapped to [0, 1] by "
        "the reference's kind: image files by their bit depth, CT by --hu-window (clipped), MR "
        "by --mr-window (default the reference file's min and max; the prediction is clipped "
        "to it). By default PSNR and SSIM use data range 1 on that scale (the full bit depth "
        "or window) and UQI and VIF are computed on [0, 255]. MAE/RMSE in HU for CT only. "
        "Prints mean and std; --csv writes one row per image.",
    )
    p.add_argument("ref", help="reference file or folder")
    p.add_argument("pred", help="prediction file or folder (same file names)")
    p.add_argument("--csv", help="write per-image scores here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --csv file")
    p.add_argument(
        "--data-range",
        type=float,
        metavar="R",
        help="PSNR/SSIM data range in the reference's own units: levels of its bit depth for "
        "image files, HU for CT, scanner units for MR (default: the full range mapped to "
        "[0, 1], i.e. 255 or 65535 levels, the --hu-window or --mr-window width)",
    )
    p.add_argument(
        "--vif-scale",
        type=float,
        default=255.0,
        metavar="S",
        help="UQI and VIF are computed on the [0, 1] images times S (default 255: VIF's noise "
        "variance 2 is in 8-bit grey levels squared; UQI does not depend on S)",
    )
    p.add_argument(
        "--modality",
        choices=("auto", "ct", "mr"),
        default="auto",
        help="DICOM/NIfTI references: ct (HU window, MAE/RMSE in HU) or mr (scanner units, no "
        "HU metrics). Default auto: a DICOM reference's Modality tag (CT is ct, any other is "
        "mr); files without the tag, such as NIfTI, are taken as ct",
    )
    add_ct_window(
        p,
        "HU range mapped to [0, 1] for CT (default %(default)s, as data ingest)",
        flag="--hu-window",
    )
    add_range(
        p,
        "--mr-window",
        help="range mapped to [0, 1] for MR (default: each reference file's min and max)",
    )
    p.set_defaults(func=_metrics)
