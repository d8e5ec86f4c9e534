"""Throughput of jaxcycle against the PyTorch baseline, side by side, in one invocation.

For each image size, batch size and dtype:

- jaxcycle's train step (`jaxcycle.cyclegan.make_train_step`: jitted, state donated, batch
  sharded over the devices) in image pairs per second, its compile time and its peak memory
  (XLA's buffer assignment; on GPU also the allocator's peak), reported apart;
- the reference PyTorch iteration (`benchmarks/torch_baseline.py`) on the same settings,
  eager, float32 or bfloat16 autocast to match, optionally channels-last and torch.compile;
- generator inference in images per second, both;
- the ratio jaxcycle / PyTorch (above 1: jaxcycle is faster);
- the analytic work per iteration (`benchmarks/flops.py`), achieved TFLOP/s and, where the
  device's peak is known or given, MFU; on the CPU also the fraction of a large matrix
  product's measured rate.

Then scaling from 1 to all local devices at a fixed per-device batch (on the CPU in a
child process with simulated devices).

    python -m benchmarks.run --sizes 128 256 --batches 1 4 --json results.json
    jaxcycle bench ...                     # the same

Times are medians of `--repeats` calls after `--warmup` calls. Results go to JSON and a
Markdown table; nothing is asserted: compare within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.flops import train_iteration_macs
from benchmarks.options import build_parser
from jaxcycle import cyclegan, parallel
from jaxcycle.architecture import Architecture

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# Dense peak FLOP/s per device, by device-kind substring and compute dtype (float32 on
# GPUs runs on the tensor cores as TF32, XLA's default precision).
KNOWN_PEAKS = {
    "H100": {"bfloat16": 989e12, "float32": 495e12},
    "H200": {"bfloat16": 989e12, "float32": 495e12},
    "A100": {"bfloat16": 312e12, "float32": 156e12},
    "TPU v4": {"bfloat16": 275e12, "float32": 275e12},
    "TPU v5e": {"bfloat16": 197e12, "float32": 197e12},
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def networks(args: argparse.Namespace) -> tuple[Architecture, Architecture]:
    """The generator and discriminator benchmarked (default: the reference's CycleGAN)."""
    generator = Architecture.preset("resnet_9blocks", n_blocks=args.n_blocks, width=args.ngf)
    return generator, Architecture.preset("basic", width=args.ndf)


def _median(times: Sequence[float]) -> float:
    return float(statistics.median(times))


def _timed(fn: Callable[[], Any], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return times


def _memory(compiled: Any) -> dict[str, int | None]:
    """Peak bytes: XLA's estimate for the compiled program, and the allocator's if known."""
    analysis = compiled.memory_analysis()
    xla = None
    if analysis is not None:
        xla = int(
            analysis.temp_size_in_bytes
            + analysis.argument_size_in_bytes
            + analysis.output_size_in_bytes
            - analysis.alias_size_in_bytes
        )
    stats = jax.local_devices()[0].memory_stats() or {}
    return {"xla_bytes": xla, "device_peak_bytes": stats.get("peak_bytes_in_use")}


def _random_batch(batch: int, size: int, channels: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (batch, size, size, channels)).astype(np.float32)


def jax_train_step(
    generator: Architecture,
    discriminator: Architecture,
    size: int,
    batch: int,
    dtype: str,
    repeats: int,
    warmup: int = 1,
    devices: list | None = None,
    pool_size: int = 50,
) -> dict[str, Any]:
    """Compile time, step times and memory of jaxcycle's train step on `devices` (default all
    local ones), global batch `batch`, as `jaxcycle.train` runs it."""
    nets = cyclegan.Networks.create(
        generator,
        discriminator,
        channels_a=generator.input_nc,
        channels_b=generator.output_nc,
    )
    tx = cyclegan.adam(cyclegan.learning_rate_schedule(2e-4, 100, 100, 1000))
    mesh = parallel.make_mesh(devices or jax.local_devices())
    parallel.check_batch_size(batch, mesh)
    shape_a = (size, size, generator.input_nc)
    shape_b = (size, size, generator.output_nc)
    state_sharding = parallel.replicated(mesh)
    state = jax.jit(
        lambda: cyclegan.init_state(nets, tx, tx, shape_a, shape_b, pool_size, seed=0),
        out_shardings=state_sharding,
    )()
    images = {
        "A": _random_batch(batch, size, generator.input_nc, 1),
        "B": _random_batch(batch, size, generator.output_nc, 2),
    }
    placed = parallel.place_batch(images, mesh)
    step = jax.jit(
        cyclegan.make_train_step(nets, cyclegan.Objective(), tx, tx, DTYPES[dtype]),
        in_shardings=(state_sharding, parallel.batch_sharded(mesh)),
        out_shardings=(state_sharding, state_sharding),
        donate_argnums=0,
    )
    t0 = time.perf_counter()
    compiled = step.lower(state, placed).compile()
    compile_s = time.perf_counter() - t0
    holder = [state]

    def one_step() -> Any:
        holder[0], metrics = compiled(holder[0], placed)
        return metrics

    times = _timed(one_step, warmup, repeats)
    return {"compile_s": compile_s, "times_s": times, **_memory(compiled)}


def jax_inference(
    generator: Architecture, size: int, batch: int, dtype: str, repeats: int, warmup: int = 1
) -> dict[str, Any]:
    """Compile time and call times of the generator's forward pass (eval mode)."""
    module = generator.build()
    x = jnp.asarray(_random_batch(batch, size, generator.input_nc, 3), DTYPES[dtype])
    params = jax.jit(lambda: module.init(jax.random.PRNGKey(0), x[:1])["params"])()
    forward = jax.jit(lambda p, x: module.apply({"params": p}, x))
    t0 = time.perf_counter()
    compiled = forward.lower(params, x).compile()
    compile_s = time.perf_counter() - t0
    times = _timed(lambda: compiled(params, x), warmup, repeats)
    return {"compile_s": compile_s, "times_s": times}


def gemm_tflops(dtype: str, n: int = 2048, repeats: int = 5) -> float:
    """Measured rate of a large square matrix product: a practical ceiling on the CPU."""
    a = jnp.ones((n, n), DTYPES[dtype])
    matmul = jax.jit(lambda a: a @ a).lower(a).compile()
    return 2 * n**3 / _median(_timed(lambda: matmul(a), 1, repeats)) / 1e12


def device_peak_flops(dtype: str, given_tflops: float | None) -> float | None:
    """The device's nominal peak (given, or known by device kind), in FLOP/s."""
    if given_tflops:
        return given_tflops * 1e12
    kind = jax.local_devices()[0].device_kind
    for name, peaks in KNOWN_PEAKS.items():
        if name.lower() in kind.lower():
            return peaks[dtype]
    return None


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info = {
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "backend": jax.default_backend(),
        "device_kind": jax.local_devices()[0].device_kind,
        "local_devices": jax.local_device_count(),
        "jax": jax.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["torch_device"] = torch.cuda.get_device_name()
    except ImportError:
        info["torch"] = None
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _torch_variants(dtype: str, names: Sequence[str]):
    from benchmarks.torch_baseline import TorchVariant

    bf16 = dtype == "bfloat16"
    table = {
        "eager": TorchVariant(autocast_bf16=bf16),
        "channels-last": TorchVariant(channels_last=True, autocast_bf16=bf16),
        "compile": TorchVariant(compile=True, autocast_bf16=bf16),
    }
    return {name: table[name] for name in names}


def _rate(items: int, times: Sequence[float]) -> float:
    return items / _median(times)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement the arguments ask for, as one JSON-able dict."""
    generator, discriminator = networks(args)
    torch_ok = not args.no_torch and _torch_importable()
    results: dict[str, Any] = {
        "machine": machine(),
        "networks": {"generator": generator.describe(), "discriminator": discriminator.describe()},
        "settings": {"repeats": args.repeats, "warmup": args.warmup, "pool_size": args.pool_size},
        "work": {},
        "train": [],
        "inference": [],
        "scaling": [],
    }
    if torch_ok and args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
        results["machine"]["torch_threads"] = args.torch_threads
    on_cpu = jax.default_backend() == "cpu"
    gemm = {d: gemm_tflops(d) for d in args.dtypes} if on_cpu else {}
    results["gemm_tflops"] = gemm
    for size in args.sizes:
        work = train_iteration_macs(generator, discriminator, size, size)
        results["work"][str(size)] = work
        for dtype in args.dtypes:
            for batch in args.batches:
                row = _train_row(args, (generator, discriminator), size, batch, dtype, torch_ok)
                achieved = row["jaxcycle"]["pairs_per_s"] * 2 * work["train"]
                peak = device_peak_flops(dtype, args.peak_tflops)
                row["jaxcycle"].update(
                    tflops=achieved / 1e12,
                    mfu=achieved / peak if peak else None,
                    fraction_of_gemm=achieved / 1e12 / gemm[dtype] if gemm else None,
                )
                results["train"].append(row)
            if args.inference:
                for batch in args.batches:
                    row = _inference_row(args, generator, size, batch, dtype, torch_ok)
                    results["inference"].append(row)
    if args.scaling:
        results["scaling"] = scaling(args)
    return results


def _train_row(
    args: argparse.Namespace,
    nets: tuple[Architecture, Architecture],
    size: int,
    batch: int,
    dtype: str,
    torch_ok: bool,
) -> dict[str, Any]:
    """One setting of the training iteration: jaxcycle, the PyTorch variants, the ratio."""
    log(f"train {size}px batch {batch} {dtype}: jaxcycle")
    ours = jax_train_step(
        *nets, size, batch, dtype, args.repeats, args.warmup, pool_size=args.pool_size
    )
    ours["pairs_per_s"] = _rate(batch, ours["times_s"])
    row = {"size": size, "batch": batch, "dtype": dtype, "jaxcycle": ours}
    if torch_ok:
        from benchmarks.torch_baseline import train_step_times

        row["torch"] = {}
        for name, variant in _torch_variants(dtype, args.torch_variants).items():
            log(f"train {size}px batch {batch} {dtype}: PyTorch {variant.name}")
            theirs = train_step_times(
                *nets, size, batch, args.repeats, variant, args.pool_size, args.warmup
            )
            theirs["pairs_per_s"] = _rate(batch, theirs["times_s"])
            row["torch"][name] = theirs
        base = row["torch"].get("eager")
        row["ratio"] = ours["pairs_per_s"] / base["pairs_per_s"] if base else None
    return row


def _inference_row(
    args: argparse.Namespace,
    generator: Architecture,
    size: int,
    batch: int,
    dtype: str,
    torch_ok: bool,
) -> dict[str, Any]:
    """One setting of generator inference: jaxcycle, PyTorch eager, the ratio."""
    log(f"inference {size}px batch {batch} {dtype}: jaxcycle")
    ours = jax_inference(generator, size, batch, dtype, args.repeats, args.warmup)
    ours["images_per_s"] = _rate(batch, ours["times_s"])
    row = {"size": size, "batch": batch, "dtype": dtype, "jaxcycle": ours}
    if torch_ok:
        from benchmarks.torch_baseline import inference_times

        variant = _torch_variants(dtype, ["eager"])["eager"]
        log(f"inference {size}px batch {batch} {dtype}: PyTorch {variant.name}")
        theirs = inference_times(generator, size, batch, args.repeats, variant, args.warmup)
        theirs["images_per_s"] = _rate(batch, theirs["times_s"])
        row["torch"] = {"eager": theirs}
        row["ratio"] = ours["images_per_s"] / theirs["images_per_s"]
    return row


def _torch_importable() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        log("PyTorch is not installed: no baseline (pip install torch==2.13.0)")
        return False
    return True


def scaling_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Train-step throughput on 1, 2, 4, ... local devices at a fixed per-device batch."""
    generator, discriminator = networks(args)
    local = jax.local_devices()
    counts = sorted({n for n in (1, 2, 4, 8, 16, 32, 64) if n <= len(local)} | {len(local)})
    rows = []
    for n in counts:
        batch = n * args.scaling_batch
        log(f"scaling: {n} device(s), global batch {batch}")
        r = jax_train_step(
            generator,
            discriminator,
            args.scaling_size,
            batch,
            args.dtypes[0],
            args.repeats,
            args.warmup,
            devices=local[:n],
            pool_size=args.pool_size,
        )
        rows.append(
            {"devices": n, "global_batch": batch, "pairs_per_s": _rate(batch, r["times_s"])}
        )
    for row in rows:
        row["efficiency"] = row["pairs_per_s"] / (row["devices"] * rows[0]["pairs_per_s"])
    return rows


def scaling(args: argparse.Namespace) -> list[dict[str, Any]]:
    """`scaling_rows` here, or, on a CPU with one device and `--cpu-devices N`, in a child
    process that sees N simulated CPU devices (the flag must be set before JAX starts)."""
    if jax.default_backend() != "cpu" or jax.local_device_count() > 1 or args.cpu_devices <= 1:
        return scaling_rows(args)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "scaling.json"
        env = {
            **os.environ,
            "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
            f"--xla_force_host_platform_device_count={args.cpu_devices}".strip(),
        }
        command = [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--scaling-only",
            "--json",
            str(out),
            *_shared_flags(args),
        ]
        subprocess.run(command, env=env, check=True, cwd=Path(__file__).resolve().parents[1])
        return json.loads(out.read_text())["scaling"]


def _shared_flags(args: argparse.Namespace) -> list[str]:
    return [
        f"--ngf={args.ngf}",
        f"--ndf={args.ndf}",
        f"--n-blocks={args.n_blocks}",
        f"--repeats={args.repeats}",
        f"--warmup={args.warmup}",
        f"--pool-size={args.pool_size}",
        f"--scaling-size={args.scaling_size}",
        f"--scaling-batch={args.scaling_batch}",
        f"--dtypes={args.dtypes[0]}",
    ]


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def _mib(x: int | None) -> str:
    return "-" if x is None else f"{x / 2**20:.0f}"


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    m = results["machine"]
    lines = [
        f"Device: {m['device_kind']} ({m['backend']}, {m['local_devices']} device(s)); "
        f"CPU {m['processor']}, {m['cpu_count']} cores; jax {m['jax']}, torch {m.get('torch')}"
        + (f" ({m['torch_threads']} threads)" if m.get("torch_threads") else "")
        + f"; {m['date']}.",
        f"Networks: {results['networks']['generator']}; {results['networks']['discriminator']}. "
        f"Median of {results['settings']['repeats']} calls.",
        "",
    ]
    if results["train"]:
        lines += [
            "Training iteration (image pairs/s; ratio > 1: jaxcycle faster):",
            "",
            "| size | batch | dtype | jaxcycle | PyTorch | ratio | compile s | peak MiB "
            "| TFLOP/s | MFU |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in results["train"]:
            j = r["jaxcycle"]
            torch_rate = r.get("torch", {}).get("eager", {}).get("pairs_per_s")
            peak = j["device_peak_bytes"] or j["xla_bytes"]
            mfu = j["mfu"]
            lines.append(
                f"| {r['size']} | {r['batch']} | {r['dtype']} | {j['pairs_per_s']:.3f} "
                f"| {_fmt(torch_rate, '.3f')} | {_fmt(r.get('ratio'))} | {j['compile_s']:.1f} "
                f"| {_mib(peak)} | {j['tflops']:.3f} | {_fmt(mfu and 100 * mfu, '.1f')}"
                f"{'%' if mfu else ''} |"
            )
        variants = sorted({v for r in results["train"] for v in r.get("torch", {})} - {"eager"})
        for v in variants:
            lines.append("")
            lines.append(
                f"PyTorch {v}: "
                + ", ".join(
                    f"{r['size']}px b{r['batch']} {r['dtype']} {r['torch'][v]['pairs_per_s']:.3f}"
                    for r in results["train"]
                    if v in r.get("torch", {})
                )
                + " pairs/s."
            )
        if results.get("gemm_tflops"):
            g = ", ".join(f"{d} {t:.3f}" for d, t in results["gemm_tflops"].items())
            lines += ["", f"Measured 2048^3 matrix product on this CPU (TFLOP/s): {g}."]
        lines.append("")
    if results["inference"]:
        lines += [
            "Generator inference (images/s):",
            "",
            "| size | batch | dtype | jaxcycle | PyTorch | ratio |",
            "|---|---|---|---|---|---|",
        ]
        for r in results["inference"]:
            torch_rate = r.get("torch", {}).get("eager", {}).get("images_per_s")
            lines.append(
                f"| {r['size']} | {r['batch']} | {r['dtype']} "
                f"| {r['jaxcycle']['images_per_s']:.3f} | {_fmt(torch_rate, '.3f')} "
                f"| {_fmt(r.get('ratio'))} |"
            )
        lines.append("")
    if results["scaling"]:
        lines += [
            "Scaling at a fixed per-device batch (train step):",
            "",
            "| devices | global batch | pairs/s | efficiency |",
            "|---|---|---|---|",
        ]
        for r in results["scaling"]:
            lines.append(
                f"| {r['devices']} | {r['global_batch']} | {r['pairs_per_s']:.3f} "
                f"| {100 * r['efficiency']:.0f}% |"
            )
        lines.append("")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measures, prints the tables and writes the requested files; returns the results."""
    for path in (args.json, args.markdown):
        if path is not None and path.parent and not path.parent.exists():
            raise ValueError(f"{path}: its folder {path.parent} does not exist")
    if args.scaling_only:
        results = {"scaling": scaling_rows(args)}
    else:
        results = measure(args)
        table = markdown(results)
        print(table)
        if args.markdown is not None:
            args.markdown.write_text(table + "\n")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    run(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
