"""Start-up time of `jaxcycle train` with the persistent compilation cache: a cold start (empty
cache) and a second start of the same configuration (the cache warm), each a fresh run in
its own workdir, timed from launching the command to its exit after one training step (so
the figures include Python's imports, data, initialisation, compilation or cache load, the
step and the final checkpoint: an upper bound on the time to the first step).

    python benchmarks/bench_startup.py --size 256 --out benchmarks/results/startup_cpu.md
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _folders(root: Path, size: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    folders = []
    for name in ("a", "b"):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
        folders.append(folder)
    return folders[0], folders[1]


def _start(root: Path, run: str, a: Path, b: Path, size: int, batch: int, env: dict) -> float:
    command = [
        sys.executable, "-m", "jaxcycle.cli", "train", "--quiet",
        "--config", str(ROOT / "configs" / "cyclegan.py"), "--workdir", str(root / run),
        f"--config.data.train_a={a}", f"--config.data.train_b={b}",
        f"--config.data.load_size={size}", f"--config.data.crop_size={size}",
        f"--config.train.batch_size={batch}", "--config.train.max_steps=1",
    ]  # fmt: skip
    t0 = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--out", help="also write the Markdown table here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        a, b = _folders(root / "data", args.size)
        env = {**os.environ, "JAXCYCLE_CACHE": str(root / "cache")}
        cold = _start(root, "cold", a, b, args.size, args.batch, env)
        warm = _start(root, "warm", a, b, args.size, args.batch, env)
        off = _start(root, "off", a, b, args.size, args.batch,
                     {**env, "JAXCYCLE_COMPILATION_CACHE": "0"})  # fmt: skip
    table = "\n".join(
        [
            f"# `jaxcycle train` start-up, {args.size}x{args.size}, batch {args.batch}, fp32",
            "",
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
            "wall time from launch to exit after one step (seconds)",
            "",
            "| start | seconds |",
            "|---|---:|",
            f"| first (empty compilation cache) | {cold:.1f} |",
            f"| second, same configuration (cache warm) | {warm:.1f} |",
            f"| cache off (JAXCYCLE_COMPILATION_CACHE=0) | {off:.1f} |",
            "",
        ]
    )
    print(table)
    if args.out:
        Path(args.out).write_text(table)


if __name__ == "__main__":
    main()
