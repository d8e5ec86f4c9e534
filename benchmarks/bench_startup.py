"""Start-up time of `jaxcycle train` with the persistent compilation cache: a cold start (empty
cache) and a second start of the same configuration (the cache warm), each a fresh run in
its own workdir, timed from launching the command to its first training step (the moment it
prints "train step ready": Python's imports, data, initialisation, and compiling the step or
loading it from the cache) and to its exit after that one step (the step and the final
checkpoint too).

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


def _start(
    root: Path, run: str, a: Path, b: Path, size: int, batch: int, env: dict
) -> tuple[float, float]:
    """(seconds to the first step, seconds to exit) of one `jaxcycle train` run."""
    command = [
        sys.executable, "-m", "jaxcycle.cli", "train", "--quiet",
        "--config", str(ROOT / "configs" / "cyclegan.py"), "--workdir", str(root / run),
        f"--config.data.train_a={a}", f"--config.data.train_b={b}",
        f"--config.data.load_size={size}", f"--config.data.crop_size={size}",
        f"--config.train.batch_size={batch}", "--config.train.max_steps=1",
    ]  # fmt: skip
    t0 = time.perf_counter()
    first_step = None
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as child:
        for line in child.stdout:
            if first_step is None and line.startswith("train step ready"):
                first_step = time.perf_counter() - t0
    if child.returncode != 0 or first_step is None:
        raise RuntimeError(f"{' '.join(command)} failed (exit status {child.returncode})")
    return first_step, time.perf_counter() - t0


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
            "wall time in seconds from launch to the first step, and to exit after it",
            "",
            "| start | to first step | to exit |",
            "|---|---:|---:|",
            f"| first (empty compilation cache) | {cold[0]:.1f} | {cold[1]:.1f} |",
            f"| second, same configuration (cache warm) | {warm[0]:.1f} | {warm[1]:.1f} |",
            f"| cache off (JAXCYCLE_COMPILATION_CACHE=0) | {off[0]:.1f} | {off[1]:.1f} |",
            "",
        ]
    )
    print(table)
    if args.out:
        Path(args.out).write_text(table)


if __name__ == "__main__":
    main()
