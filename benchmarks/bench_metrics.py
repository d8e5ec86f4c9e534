"""Throughput of `jaxcycle.metrics` on the JAX backend at hand.

Each metric (and the four of `all_metrics` in one compiled call) is jit-compiled ahead of time,
which is timed separately; then one warm-up call and ``--repeats`` timed calls on the same batch.
Reports images per second from the median call time, as a Markdown table, and optionally as
JSON. The images are smooth synthetic [0, 1] images and a noisy copy (data_range = 1; UQI and
VIF are timed on the x255 scale they are meant for, as `all_metrics` does).

    python benchmarks/bench_metrics.py --size 256 --batch 32 --repeats 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jaxcycle import metrics as M  # noqa: E402


def make_batch(batch: int, size: int, channels: int, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    """Smooth random images in [0, 1] and a blurred-and-noisy copy, float32 (B, H, W[, C])."""
    rng = np.random.default_rng(seed)
    shape = (batch, size, size) + ((channels,) if channels > 1 else ())
    noise = rng.standard_normal(shape).astype(np.float32)
    # cheap smoothing: a few box-blur passes along H and W
    ref = noise
    for axis in (1, 2):
        for _ in range(3):
            ref = (np.roll(ref, 1, axis) + ref + np.roll(ref, -1, axis)) / 3.0
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    pred = np.clip(ref + 0.05 * rng.standard_normal(shape).astype(np.float32), 0.0, 1.0)
    return jnp.asarray(ref, jnp.float32), jnp.asarray(pred, jnp.float32)


def metric_fns(data_range: float) -> dict[str, Callable[[jax.Array, jax.Array], object]]:
    s = 255.0 / data_range
    return {
        "psnr": lambda r, p: M.psnr(r, p, data_range),
        "ssim": lambda r, p: M.ssim(r, p, data_range),
        "uqi": lambda r, p: M.uqi(r * s, p * s),
        "vif": lambda r, p: M.vif(r * s, p * s),
        "all_metrics": lambda r, p: M.all_metrics(r, p, data_range),
    }


def bench_one(
    fn: Callable[[jax.Array, jax.Array], object], ref: jax.Array, pred: jax.Array, repeats: int
) -> dict[str, float]:
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(ref, pred).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(ref, pred))  # warm-up (allocation, first-run effects)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(ref, pred))
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {
        "compile_s": compile_s,
        "median_s": med,
        "min_s": min(times),
        "images_per_s": ref.shape[0] / med,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="image height and width")
    ap.add_argument("--batch", type=int, default=32, help="images per call")
    ap.add_argument("--channels", type=int, default=1, help="1 for (B,H,W) grey, else (B,H,W,C)")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per metric")
    ap.add_argument("--metrics", default="psnr,ssim,uqi,vif,all_metrics", help="comma list")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    ref, pred = make_batch(args.batch, args.size, args.channels)
    fns = metric_fns(1.0)
    wanted = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = sorted(set(wanted) - set(fns))
    if unknown:
        ap.error(f"unknown metrics {unknown}; choose from {sorted(fns)}")

    dev = jax.devices()[0]
    info = {
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "device_count": jax.device_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "size": args.size,
        "batch": args.batch,
        "channels": args.channels,
        "repeats": args.repeats,
        "dtype": "float32",
    }
    results = {name: bench_one(fns[name], ref, pred, args.repeats) for name in wanted}

    print(
        f"backend={info['backend']} device={info['device']} jax={info['jax']} "
        f"images={args.batch}x{args.size}x{args.size}x{args.channels} float32, "
        f"median of {args.repeats} calls"
    )
    print()
    print("| metric | images/s | ms / batch (median) | ms / batch (min) | compile s |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | {r['images_per_s']:.1f} | {1e3 * r['median_s']:.1f} | "
            f"{1e3 * r['min_s']:.1f} | {r['compile_s']:.2f} |"
        )
    out = {"info": info, "results": results}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return out


if __name__ == "__main__":
    main()
