"""The `jaxcycle` command: one thin subcommand per user task."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from jaxcycle import __version__


def _convert(args: argparse.Namespace) -> None:
    from converters.convert import convert_pth, export_pth

    if args.to_torch:
        path, arch = export_pth(args.src, args.dst, overwrite=args.overwrite)
        print(f"wrote {path}: {arch.describe()} (PyTorch state_dict)")
    else:
        path, arch = convert_pth(args.src, args.dst, padding=args.padding, overwrite=args.overwrite)
        print(f"wrote {path}: {arch.describe()}")


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


def _pretrained(args: argparse.Namespace) -> None:
    from jaxcycle import pretrained

    if args.action == "list":
        print(f"{'name':<26}{'category':<28}{'lambda':>7}  {'reverse':<24}cached")
        for m in pretrained.REGISTRY.values():
            cached = "yes" if pretrained.params_dir(m.name).exists() else "no"
            print(
                f"{m.name:<26}{m.category:<28}{m.lambda_cycle:>7g}  {m.reverse or '-':<24}{cached}"
            )
        print(f"cache: {pretrained.cache_dir()}")
        return
    for name in args.names:
        path = pretrained.download(
            name,
            base_url=args.base_url,
            timeout=args.timeout,
            progress=not args.quiet,
            force=args.force,
        )
        print(f"{name}: {path}")


def _train(args: argparse.Namespace) -> None:
    from jaxcycle import parallel

    parallel.initialize_distributed()  # a no-op unless a multi-host run is configured
    from jaxcycle.config import load_config
    from jaxcycle.train import train

    config = load_config(args.config, args.overrides)
    train(config, args.workdir, progress=not args.quiet)
    print(f"done: {args.workdir}")


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


def _evaluate(args: argparse.Namespace) -> None:
    from jaxcycle.evaluate import evaluate_params, evaluate_run, format_summary

    generators = args.gen_ab or args.gen_ba
    if bool(args.workdir) == bool(generators):
        raise ValueError("give either --workdir (a training run) or --gen-ab/--gen-ba")
    options = dict(
        split=args.split,
        batch_size=args.batch_size,
        images=not args.no_images,
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
    print(f"{images}per-image CSVs and summary in {output}")


def _study(args: argparse.Namespace) -> None:
    from jaxcycle.config import load_config
    from jaxcycle.paper.study import run_study

    config = load_config(args.config, args.overrides)
    outcomes = run_study(config, args.workdir, progress=not args.quiet)
    _report_study(Path(args.workdir), outcomes)


def _report_study(workdir: Path, outcomes: dict) -> None:
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


def _demo(args: argparse.Namespace) -> None:
    from jaxcycle.paper.demo import DemoScale, run_demo

    outcomes = run_demo(
        args.workdir, DemoScale(epochs=args.epochs), offline=args.offline, progress=not args.quiet
    )
    _report_study(Path(args.workdir) / "study", outcomes)


def _add_range(parser: argparse.ArgumentParser, flag: str, **kwargs: object) -> None:
    """Declares an option taking a value range as two numbers, LO HI."""
    parser.add_argument(flag, type=float, nargs=2, metavar=("LO", "HI"), **kwargs)


# The commands that compile networks, and so use the persistent compilation cache.
COMPILING_COMMANDS = ("translate", "train", "evaluate", "study", "demo", "bench")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `jaxcycle` command."""
    parser = argparse.ArgumentParser(
        prog="jaxcycle",
        description="CycleGAN in JAX: import the reference PyTorch weights, translate, train.",
    )
    parser.add_argument("--version", action="version", version=f"jaxcycle {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "convert",
        help="convert a reference .pth into jaxcycle params, or back with --to-torch",
        description="Convert a reference-project .pth state_dict (generator or discriminator) "
        "into a jaxcycle params directory (Orbax checkpoint + jaxcycle.json). The architecture "
        "is read from the file. No PyTorch needed; no code in the file is ever run. With "
        "--to-torch, write a params directory back as a .pth the reference model loads.",
    )
    p.add_argument("src", help="SRC.pth (or, with --to-torch, a params directory)")
    p.add_argument("dst", help="params directory to create (or, with --to-torch, OUT.pth)")
    p.add_argument("--to-torch", action="store_true", help="params directory -> .pth")
    p.add_argument(
        "--padding",
        choices=("reflect", "replicate", "zero"),
        help="residual-block padding, if not the inferred one (reflect and replicate hold "
        "the same tensors; reflect, the reference default, is assumed)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_convert)

    p = sub.add_parser(
        "translate",
        help="run a generator over image files, NIfTI volumes or DICOM series",
        description="Translate PNG/JPEG/TIFF images (grey or RGB, 8- or 16-bit), NIfTI volumes "
        "(.nii, .nii.gz) and DICOM files or series folders with a generator's params "
        "directory or a training run. Outputs keep the input names and sizes; grey inputs give "
        "grey outputs of the same bit depth. Volumes are translated slice by slice from the "
        "other modality into --output-modality and written in their own format: NIfTI with "
        "the source's affine and header, DICOM as a new series marked synthetic.",
    )
    p.add_argument("inputs", nargs="+", help="image, NIfTI or DICOM files, or folders holding them")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="params directory of a generator, or a training run's workdir (its latest "
        "checkpoint; see --direction)",
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
        "outputs back to the input's size (default: a run's crop size; a params directory "
        "works at each input's own size; 0: each input's own size)",
    )
    p.add_argument("--output", required=True, help="directory for the translated outputs")
    p.add_argument(
        "--batch-size", type=int, default=8, help="images or volume slices per step (default 8)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from jaxcycle.data.intensity import CT_WINDOW, MR_PERCENTILES, MR_RANGE

    p.add_argument(
        "--output-modality",
        choices=("ct", "mr"),
        help="what the generator translates volumes into (required for NIfTI/DICOM inputs; "
        "they are read as the other modality)",
    )
    _add_range(
        p,
        "--ct-window",
        default=list(CT_WINDOW),
        help="HU mapped to [-1, 1], CT in and out (default %(default)s, as data ingest)",
    )
    _add_range(
        p,
        "--mr-percentiles",
        default=list(MR_PERCENTILES),
        help="an MR volume's percentiles mapped to -1 and 1 (default %(default)s)",
    )
    _add_range(
        p,
        "--mr-range",
        default=list(MR_RANGE),
        help="MR output values that -1 and 1 stand for (default %(default)s)",
    )
    p.add_argument("--nifti-frame", type=int, help="the volume to take from 4D NIfTI files")
    p.set_defaults(func=_translate)

    p = sub.add_parser(
        "pretrained",
        help="list or download the 18 published generators",
        description="The generic pretrained generators of the reference project. 'download' "
        "fetches, verifies and converts them into the cache ($JAXCYCLE_CACHE, default "
        "~/.cache/jaxcycle); without network, place NAME.pth in the cache's pretrained/ "
        "folder by hand and run 'download' again.",
    )
    p.add_argument("action", choices=("list", "download"))
    p.add_argument("names", nargs="*", help="model names, for 'download'")
    p.add_argument(
        "--base-url",
        help="download location (default: the published one, or "
        "$JAXCYCLE_PRETRAINED_URL); '{name}' is replaced by the model name",
    )
    p.add_argument("--timeout", type=float, default=20.0, help="network timeout, seconds")
    p.add_argument("--force", action="store_true", help="download and convert again")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_pretrained)

    p = sub.add_parser(
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

    p = sub.add_parser(
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
    _add_range(
        p,
        "--hu-window",
        default=list(CT_WINDOW),
        help="HU range mapped to [0, 1] for CT (default %(default)s, as data ingest)",
    )
    _add_range(
        p,
        "--mr-window",
        help="range mapped to [0, 1] for MR (default: each reference file's min and max)",
    )
    p.set_defaults(func=_metrics)

    p = sub.add_parser(
        "evaluate",
        help="score a trained run or converted generators on a paired dataset's test split",
        description="Translate the test split of a paired dataset with a run's latest "
        "generators (--workdir, both directions) or with params directories from 'jaxcycle "
        "convert' or 'jaxcycle pretrained' (--gen-ab for A->B, --gen-ba for B->A; grey data "
        "are replicated into 3-channel generators and the outputs averaged back; a run's "
        "generators work at its crop size, and the references are resized to it) and score the "
        "results (PSNR, SSIM, UQI, VIF; MAE/RMSE in HU for CT). Writes the translated images "
        "(translated_gen_ab/PATIENT_SSSS.png; 16-bit for grey scanner data), per-image CSVs "
        "and a summary table (Markdown and CSV); never over existing files without --overwrite.",
    )
    p.add_argument("--workdir", help="the training run")
    p.add_argument("--gen-ab", metavar="PARAMS", help="params directory translating A into B")
    p.add_argument("--gen-ba", metavar="PARAMS", help="params directory translating B into A")
    p.add_argument(
        "--dataset", help="paired dataset (default with --workdir: the run's data.dataset)"
    )
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument(
        "--output", help="output folder (default WORKDIR/eval; required with --gen-ab/--gen-ba)"
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--no-images", action="store_true", help="do not write translated images")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
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

    p = sub.add_parser(
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

    p = sub.add_parser(
        "bench",
        help="throughput against the PyTorch baseline (benchmarks/run.py)",
        description="Train-step and inference throughput of jaxcycle and of the reference "
        "PyTorch iteration, side by side in one run, with compile time, peak memory, "
        "achieved TFLOP/s, MFU and scaling over devices. Same flags as "
        "'python -m benchmarks.run'.",
    )
    from benchmarks.options import build_parser as build_bench_parser

    build_bench_parser(p)
    p.set_defaults(func=_bench)

    from jaxcycle.data.cli import register as register_data

    register_data(sub)

    from jaxcycle.paper.reader_study import register as register_reader_study

    register_reader_study(sub)
    return parser


def _bench(args: argparse.Namespace) -> None:
    from benchmarks.run import run

    run(args)


def _split_overrides(parser: argparse.ArgumentParser, extra: list[str]) -> list[str]:
    """`--config.a.b=value` arguments -> ['a.b=value', ...]; anything else is an error."""
    overrides = []
    for item in extra:
        if not item.startswith("--config.") or "=" not in item:
            parser.error(f"unrecognized argument: {item} (overrides are --config.FIELD=VALUE)")
        overrides.append(item[len("--config.") :])
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `jaxcycle` command; returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = _split_overrides(parser, extra)
    if args.command in COMPILING_COMMANDS:
        from jaxcycle.cache import enable_compilation_cache

        enable_compilation_cache()
    if args.command == "pretrained" and args.action == "download" and not args.names:
        parser.error("pretrained download: name at least one model (see 'pretrained list')")
    try:
        args.func(args)
    except (ValueError, OSError, RuntimeError) as e:
        if os.environ.get("JAXCYCLE_TRACEBACK"):
            raise
        print(f"jaxcycle {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
