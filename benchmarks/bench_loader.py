"""Throughput of the training input pipeline (`jaxcycle.data.loader.UnpairedLoader`).

Builds a phantom dataset (paired brain-like MR/CT NIfTI volumes, ingested into a tensorstore
zarr dataset) in a temporary folder, then times the loader as training uses it: unpaired A and B
batches with the reference augmentation (resize to 286 bicubic, random crop 256, random flip),
prefetched by worker threads. Also times the same images read from a folder of 16-bit PNGs
(`ImageFolderSource`, the reference layout). Reports batches/s and images/s (A and B images
both counted) as a Markdown table, and optionally as JSON.

    python benchmarks/bench_loader.py --size 256 --batch 8 --workers 1 2 4 --steps 60
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxcycle.data.augment import Augment  # noqa: E402
from jaxcycle.data.ingest import IngestOptions, ingest  # noqa: E402
from jaxcycle.data.loader import UnpairedLoader  # noqa: E402
from jaxcycle.data.phantom import write_phantom  # noqa: E402
from jaxcycle.data.sources import ImageFolderSource  # noqa: E402
from jaxcycle.data.store import Dataset  # noqa: E402
from jaxcycle.data.writers import write_png_slices  # noqa: E402


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


def main() -> None:
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
        t0 = time.perf_counter()
        write_phantom(tmp / "ph", subjects=args.subjects, size=args.size, slices=args.slices)
        t1 = time.perf_counter()
        ingest(tmp / "ds", [tmp / "ph" / "mr"], [tmp / "ph" / "ct"], IngestOptions(paired=True))
        t2 = time.perf_counter()
        ds = Dataset.open(tmp / "ds")
        n = ds.shape("A")[0]
        print(
            f"phantom: {args.subjects} subjects x {args.slices} slices at {args.size}x{args.size} "
            f"({t1 - t0:.1f} s); ingest {2 * n} slices ({t2 - t1:.1f} s, "
            f"{2 * n / (t2 - t1):.0f} slices/s)"
        )
        sources = {"tensorstore": (ds.source("A"), ds.source("B"))}
        if not args.no_folder:
            for d in ("A", "B"):
                stored = ds.array(d).read().result()
                write_png_slices(
                    tmp / "png" / d, stored, [f"{i:05d}" for i in range(len(stored))], bits=16
                )
            sources["png folder"] = (
                ImageFolderSource(tmp / "png" / "A"),
                ImageFolderSource(tmp / "png" / "B"),
            )
        for name, (a, b) in sources.items():
            for workers in args.workers:
                loader = UnpairedLoader(
                    a,
                    b,
                    args.batch,
                    seed=0,
                    augment=augment,
                    workers=workers,
                    prefetch=max(args.prefetch, workers),
                )
                seconds = time_loader(loader, args.steps, args.warmup)
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
