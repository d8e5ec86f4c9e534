"""`jaxcycle translate`: a generator over image files, NIfTI volumes and DICOM series."""

from __future__ import annotations

import argparse

from jaxcycle.cli.options import add_ct_window, add_mr_percentiles, add_mr_range


def _translate(args: argparse.Namespace) -> None:
    from jaxcycle.data.nifti import is_nifti_file
    from jaxcycle.translate import VolumeOptions, translate_files

    volumes = VolumeOptions(
        output_modality=args.output_modality,
        ct_window=tuple(args.ct_window),
        mr_percentiles=tuple(args.mr_percentiles),
        mr_range=tuple(args.mr_range),
        nifti_frame=args.nifti_frame,
    )
    written = translate_files(
        args.checkpoint,
        args.inputs,
        args.output,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        progress=not args.quiet,
        volumes=volumes,
        direction=args.direction,
        size=args.size,
    )
    n_volumes = sum(1 for p in written if p.is_dir() or is_nifti_file(p))
    counts = [f"{len(written) - n_volumes} image(s)"] if len(written) > n_volumes else []
    counts += [f"{n_volumes} volume(s)"] if n_volumes else []
    print(f"wrote {' and '.join(counts) or '0 image(s)'} to {args.output}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `translate` to the `jaxcycle` command's subparsers."""
    p = subparsers.add_parser(
        "translate",
        help="run a generator over image files, NIfTI volumes or DICOM series",
        description="Translate PNG/JPEG/TIFF images (grey or RGB, 8- or 16-bit), NIfTI volumes "
        "(.nii, .nii.gz) and DICOM files or series folders with a generator (a params "
        "directory, a reference .pth file or a published model's name) or a training run. "
        "Outputs keep the input names and sizes; grey inputs give "
        "grey outputs of the same bit depth. Volumes are translated slice by slice from the "
        "other modality into --output-modality and written in their own format: NIfTI with "
        "the source's affine and header, DICOM as a new series marked synthetic.",
    )
    p.add_argument("inputs", nargs="+", help="image, NIfTI or DICOM files, or folders holding them")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="a generator's params directory, reference .pth file or published model name, "
        "or a training run's workdir (its latest checkpoint; see --direction)",
    )
    p.add_argument(
        "--direction",
        choices=("ab", "ba"),
        default="ab",
        help="with a training run: its A->B generator (ab, default) or its B->A one (ba)",
    )
    p.add_argument(
        "--size",
        type=int,
        help="working size: inputs are resized to SIZE x SIZE for the generator and the "
        "outputs back to the input's size (default: a run's crop size; any other generator "
        "works at each input's own size; 0: each input's own size)",
    )
    p.add_argument("--output", required=True, help="directory for the translated outputs")
    p.add_argument(
        "--batch-size", type=int, default=8, help="images or volume slices per step (default 8)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--output-modality",
        choices=("ct", "mr"),
        help="what the generator translates volumes into (required for NIfTI/DICOM inputs; "
        "they are read as the other modality)",
    )
    add_ct_window(p, "HU mapped to [-1, 1], CT in and out (default %(default)s, as data ingest)")
    add_mr_percentiles(p, "an MR volume's percentiles mapped to -1 and 1 (default %(default)s)")
    add_mr_range(p, "MR output values that -1 and 1 stand for (default %(default)s)")
    p.add_argument("--nifti-frame", type=int, help="the volume to take from 4D NIfTI files")
    p.set_defaults(func=_translate, more_positionals="inputs")
