"""Throughput of the training input pipeline (`jaxcycle.data.loader.UnpairedLoader`).

Builds a phantom dataset (paired brain-like MR/CT NIfTI volumes, ingested into a tensorstore
zarr dataset) in a temporary folder, then times the loader as training uses it: unpaired A and B
batches with the reference augmentation (resize to 286 bicubic, random crop 256, random flip),
prefetched by worker threads. Also times the same images read from a folder of 16-bit PNGs
(`ImageFolderSource`, the reference layout, through the loader `jaxcycle train` builds). Reports
batches/s and images/s (A and B images both counted) as a Markdown table, and optionally as
JSON.

    python benchmarks/bench_loader.py --size 256 --batch 8 --workers 1 2 4 --steps 60

`pipeline_rates` is the measurement `jaxcycle bench` shows beside the train step's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxcycle.data.augment import Augment  # noqa: E402
from jaxcycle.data.ingest import IngestOptions, ingest  # noqa: E402
from jaxcycle.data.loader import UnpairedLoader  # noqa: E402
from jaxcycle.data.phantom import write_phantom  # noqa: E402
from jaxcycle.data.store import Dataset  # noqa: E402
from jaxcycle.data.writers import write_png_slices  # noqa: E402

# The config `jaxcycle train` starts from: its loader's workers, prefetch and seed.
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cyclegan.py"


def train_load_size(crop_size: int) -> int:
    """The resize before the crop, in the reference's proportion (286 for a 256 crop)."""
    return round(crop_size * 286 / 256)


def time_loader(loader: UnpairedLoader, steps: int, warmup: int) -> float:
    """Seconds per batch over `steps` batches, after `warmup` batches (fills the prefetch)."""
    it = loader.batches(0)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(it)
    elapsed = time.perf_counter() - start
    it.close()
    assert batch["A"].shape[0] == loader.local_batch_size
    return elapsed / steps


def phantom_dataset(
    folder: Path, *, subjects: int, slices: int, size: int
) -> tuple[Dataset, dict[str, float]]:
    """A phantom MR (A) / CT (B) dataset of `subjects` x `slices` slices of size x size, written
    and ingested under `folder`; and the seconds each took."""
    t0 = time.perf_counter()
    write_phantom(folder / "phantom", subjects=subjects, size=size, slices=slices)
    t1 = time.perf_counter()
    ingest(
        folder / "dataset",
        [folder / "phantom" / "mr"],
        [folder / "phantom" / "ct"],
        IngestOptions(paired=True),
    )
    seconds = {"phantom": t1 - t0, "ingest": time.perf_counter() - t1}
    return Dataset.open(folder / "dataset"), seconds


def write_png_folders(dataset: Dataset, folder: Path) -> tuple[Path, Path]:
    """The dataset's A and B slices as 16-bit PNGs in folder/A and folder/B."""
    for d in ("A", "B"):
        stored = dataset.array(d).read().result()
        write_png_slices(folder / d, stored, [f"{i:05d}" for i in range(len(stored))], bits=16)
    return folder / "A", folder / "B"


def folder_loader(
    folder_a: Path,
    folder_b: Path,
    batch: int,
    *,
    load_size: int,
    crop_size: int,
    channels: tuple[int, int] = (3, 3),
    workers: int | None = None,
    prefetch: int | None = None,
) -> UnpairedLoader:
    """The loader `jaxcycle train` builds (`jaxcycle.train.make_loader`) from two image folders,
    `configs/cyclegan.py` with these settings (workers, prefetch: the config's if None)."""
    from jaxcycle.config import load_config
    from jaxcycle.train import make_loader

    config = load_config(CONFIG)
    d = config.data
    d.train_a, d.train_b = str(folder_a), str(folder_b)
    d.load_size, d.crop_size = load_size, crop_size
    d.channels_a, d.channels_b = channels
    if workers is not None:
        d.workers = workers
    if prefetch is not None:
        d.prefetch = prefetch
    return make_loader(config, batch)


def pipeline_rates(
    size: int,
    batches: Sequence[int],
    *,
    channels: tuple[int, int] = (3, 3),
    steps: int = 16,
    warmup: int = 4,
) -> list[dict[str, Any]]:
    """For each batch size, the rate of the loader `jaxcycle train` builds from two folders of
    16-bit phantom PNGs stored at size x size, trained at crop `size` (resize to
    `train_load_size(size)`, random crop, flip; the config's workers and prefetch), alone."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="jaxcycle-loader-") as tmp:
        tmp = Path(tmp)
        slices = max(16, -(-max(batches) // 2))  # two subjects: an epoch holds every batch
        dataset, _ = phantom_dataset(tmp, subjects=2, slices=slices, size=size)
        folder_a, folder_b = write_png_folders(dataset, tmp / "png")
        for batch in batches:
            loader = folder_loader(
                folder_a,
                folder_b,
                batch,
                load_size=train_load_size(size),
                crop_size=size,
                channels=channels,
            )
            seconds = time_loader(loader, steps, warmup)
            rows.append(
                {
                    "size": size,
                    "batch": batch,
                    "load_size": train_load_size(size),
                    "workers": loader.workers,
                    "prefetch": loader.prefetch,
                    "steps": steps,
                    "pairs_per_s": batch / seconds,
                    "ms_per_batch": 1000 * seconds,
                }
            )
    return rows


def main() -> None:
    """The command line: the Markdown table of every source and worker count."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--size", type=int, default=256, help="stored slice size")
    parser.add_argument("--load-size", type=int, default=286)
    parser.add_argument("--crop-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--prefetch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--no-folder", action="store_true", help="skip the PNG folder source")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    augment = Augment(args.load_size, args.crop_size, flip=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ds, seconds = phantom_dataset(
            tmp, subjects=args.subjects, slices=args.slices, size=args.size
        )
        n = ds.shape("A")[0]
        print(
            f"phantom: {args.subjects} subjects x {args.slices} slices at {args.size}x{args.size} "
            f"({seconds['phantom']:.1f} s); ingest {2 * n} slices ({seconds['ingest']:.1f} s, "
            f"{2 * n / seconds['ingest']:.0f} slices/s)"
        )
        loaders = {
            "tensorstore": lambda workers: UnpairedLoader(
                ds.source("A"),
                ds.source("B"),
                args.batch,
                seed=0,
                augment=augment,
                workers=workers,
                prefetch=max(args.prefetch, workers),
            )
        }
        if not args.no_folder:
            folder_a, folder_b = write_png_folders(ds, tmp / "png")
            loaders["png folder"] = lambda workers: folder_loader(
                folder_a,
                folder_b,
                args.batch,
                load_size=args.load_size,
                crop_size=args.crop_size,
                channels=(1, 1),
                workers=workers,
                prefetch=max(args.prefetch, workers),
            )
        for name, make in loaders.items():
            for workers in args.workers:
                seconds = time_loader(make(workers), args.steps, args.warmup)
                rows.append(
                    {
                        "source": name,
                        "workers": workers,
                        "batch": args.batch,
                        "batches_per_s": 1 / seconds,
                        "images_per_s": 2 * args.batch / seconds,
                        "ms_per_batch": 1000 * seconds,
                    }
                )

    print(
        f"\nloader throughput, {args.size}x{args.size} -> resize {args.load_size}, crop "
        f"{args.crop_size}, flip; batch {args.batch} (A and B); {platform.processor() or ''} "
        f"{os.cpu_count()} CPUs\n"
    )
    print("| source | workers | batches/s | images/s | ms/batch |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['source']} | {r['workers']} | {r['batches_per_s']:.1f} | "
            f"{r['images_per_s']:.0f} | {r['ms_per_batch']:.1f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": rows}, indent=1))


if __name__ == "__main__":
    main()
