"""Throughput of jaxcycle against the PyTorch baseline, side by side, in one invocation.

For each image size, batch size and dtype, each side in its own fresh process
(`benchmarks/child.py`), so that its memory high-water mark belongs to that setting alone:

- jaxcycle's train step (`jaxcycle.cyclegan.make_train_step`: jitted, state donated, batch
  sharded over the devices) in image pairs per second, its compile time and its memory: XLA's
  buffer assignment, the process's peak resident memory (RSS) and its RSS after the imports
  (baseline); on GPU also the allocator's peak;
- the reference PyTorch iteration (`benchmarks/torch_baseline.py`) on the same settings,
  eager, float32 or bfloat16 autocast to match, optionally channels-last and torch.compile,
  each variant with its process's peak and baseline RSS (on GPU also the allocator's peak);
- generator inference in images per second, both (in the same processes, after the step);
- the ratio jaxcycle / PyTorch (above 1: jaxcycle is faster);
- the input pipeline alone (`benchmarks/bench_loader.py`: the loader `jaxcycle train` builds
  from two folders of PNGs, at this size and batch) in image pairs per second, beside the
  step's consumption;
- the analytic work per iteration (`benchmarks/flops.py`), achieved TFLOP/s and, where the
  device's peak is known or given, MFU; on the CPU also the fraction of a large matrix
  product's measured rate.

Then scaling from 1 to all local devices at a fixed per-device batch (in this process; on a
one-device CPU in a child process with simulated devices).

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

from benchmarks import child
from benchmarks.flops import train_iteration_macs
from benchmarks.options import TORCH_VARIANTS, build_parser
from jaxcycle import cyclegan, ops, parallel
from jaxcycle.architecture import Architecture
from jaxcycle.hugepages import with_huge_pages

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
# The runner itself holds no device memory while its children measure: JAX's preallocation
# is off in this process (set before its backend starts) and as the user had it in theirs.
PREALLOCATE = "XLA_PYTHON_CLIENT_PREALLOCATE"
_USER_PREALLOCATE = os.environ.get(PREALLOCATE)


def log(message: str) -> None:
    """Progress, on stderr."""
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


def compiled_train_step(
    generator: Architecture,
    discriminator: Architecture,
    size: int,
    batch: int,
    dtype: str,
    devices: list | None = None,
    pool_size: int = 50,
) -> tuple[Any, Callable[[], Any], float]:
    """jaxcycle's train step as `jaxcycle.train` runs it (jitted, state donated, batch sharded
    over `devices`, default all local ones), compiled for random images of global batch
    `batch`: the compiled program, a function that runs one step (the state carried from call
    to call) and returns its metrics, and the compile time in seconds."""
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
    step = ops.jit(
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

    return compiled, one_step, compile_s


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
    """Compile time, step times and memory of jaxcycle's train step (`compiled_train_step`)."""
    compiled, one_step, compile_s = compiled_train_step(
        generator, discriminator, size, batch, dtype, devices, pool_size
    )
    times = _timed(one_step, warmup, repeats)
    return {"compile_s": compile_s, "times_s": times, **_memory(compiled)}


def jax_inference(
    generator: Architecture, size: int, batch: int, dtype: str, repeats: int, warmup: int = 1
) -> dict[str, Any]:
    """Compile time and call times of the generator's forward pass (eval mode)."""
    module = generator.build()
    x = jnp.asarray(_random_batch(batch, size, generator.input_nc, 3), DTYPES[dtype])
    params = jax.jit(lambda: module.init(jax.random.PRNGKey(0), x[:1])["params"])()
    forward = ops.jit(lambda p, x: module.apply({"params": p}, x))
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
        "glibc_tunables": child_env().get("GLIBC_TUNABLES"),  # the children's, both sides
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


def _rate(items: int, times: Sequence[float]) -> float:
    return items / _median(times)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement the arguments ask for, as one JSON-able dict."""
    generator, discriminator = networks(args)
    torch_ok = not args.no_torch and _torch_importable()
    results: dict[str, Any] = {
        "machine": machine(),
        "networks": {"generator": generator.describe(), "discriminator": discriminator.describe()},
        "settings": {
            "repeats": args.repeats,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "pool_size": args.pool_size,
        },
        "work": {},
        "loader": [],
        "train": [],
        "inference": [],
        "scaling": [],
    }
    if torch_ok and args.torch_threads:
        results["machine"]["torch_threads"] = args.torch_threads  # set in the children
    on_cpu = jax.default_backend() == "cpu"
    gemm = {d: gemm_tflops(d) for d in args.dtypes} if on_cpu else {}
    results["gemm_tflops"] = gemm
    for size in args.sizes:
        work = train_iteration_macs(generator, discriminator, size, size)
        results["work"][str(size)] = work
        loader = {}
        if args.loader:
            from benchmarks.bench_loader import pipeline_rates

            log(f"loader {size}px, batch {' '.join(map(str, args.batches))}")
            channels = (generator.input_nc, generator.output_nc)
            rows = pipeline_rates(size, args.batches, channels=channels)
            results["loader"] += rows
            loader = {r["batch"]: r["pairs_per_s"] for r in rows}
        for dtype in args.dtypes:
            for batch in args.batches:
                row, inference_row = _setting(args, size, batch, dtype, torch_ok)
                achieved = row["jaxcycle"]["pairs_per_s"] * 2 * work["train"]
                peak = device_peak_flops(dtype, args.peak_tflops)
                row["jaxcycle"].update(
                    tflops=achieved / 1e12,
                    mfu=achieved / peak if peak else None,
                    fraction_of_gemm=achieved / 1e12 / gemm[dtype] if gemm else None,
                )
                row["loader_pairs_per_s"] = loader.get(batch)
                results["train"].append(row)
                if inference_row is not None:
                    results["inference"].append(inference_row)
    if args.scaling:
        results["scaling"] = scaling(args)
    return results


def child_env() -> dict[str, str]:
    """The environment the children measure in: this one, with JAX's preallocation as the
    user had it (this process turns it off for itself, see `run`), and glibc's huge pages as
    the `jaxcycle` command runs with them (`jaxcycle.hugepages`), for both frameworks alike."""
    env = with_huge_pages(os.environ)
    env.pop(PREALLOCATE, None)
    if _USER_PREALLOCATE is not None:
        env[PREALLOCATE] = _USER_PREALLOCATE
    return env


def _pooled(first: dict[str, Any], later: dict[str, Any]) -> dict[str, Any]:
    """One side's train-step measurement over two rounds: the call times of both, the larger
    peak memory; compile time and everything else from the first."""
    pooled = {**first, "times_s": [*first["times_s"], *later["times_s"]]}
    for key in ("peak_rss_bytes", "peak_bytes", "device_peak_bytes"):
        if first.get(key) is not None and later.get(key) is not None:
            pooled[key] = max(first[key], later[key])
    return pooled


def _setting(
    args: argparse.Namespace, size: int, batch: int, dtype: str, torch_ok: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One setting, each side in a fresh process: the training row (jaxcycle, the PyTorch
    variants, the ratio) and, with `--inference`, the generator inference row.

    With `--rounds N` the sides take turns N times (jaxcycle, then each PyTorch variant, then
    jaxcycle again, ...), so that a slow spell of the machine falls on both; each side's call
    times are pooled, and the ratio of each round is kept (`round_ratios`). Inference and
    compile times are measured in the first round."""
    spec = {
        "size": size,
        "batch": batch,
        "dtype": dtype,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "pool_size": args.pool_size,
        "ngf": args.ngf,
        "ndf": args.ndf,
        "n_blocks": args.n_blocks,
    }
    env = child_env()
    where = f"{size}px batch {batch} {dtype}"
    variants = list(args.torch_variants) if torch_ok else []
    if torch_ok and args.inference and "eager" not in variants:
        variants.append("eager")  # inference's baseline, measured without a train step
    rounds: list[tuple[dict[str, Any], dict[str, dict[str, Any]]]] = []
    inference = None
    for number in range(args.rounds):
        first = number == 0
        turn = f" (round {number + 1} of {args.rounds})" if args.rounds > 1 else ""
        with_inference = args.inference and first
        log(f"train{' + inference' * with_inference} {where}: jaxcycle{turn}")
        ours = child.measure({**spec, "side": "jaxcycle", "inference": with_inference}, env)
        if with_inference:
            ours["inference"]["images_per_s"] = _rate(batch, ours["inference"]["times_s"])
            inference = {"size": size, "batch": batch, "dtype": dtype}
            inference["jaxcycle"] = ours["inference"]
        theirs_by_variant = {}
        for name in variants:
            train_too = name in args.torch_variants
            eager_inference = with_inference and name == "eager"
            if not (train_too or eager_inference):
                continue
            what = " + ".join(["train"] * train_too + ["inference"] * eager_inference)
            log(f"{what} {where}: PyTorch {name}{turn}")
            theirs = child.measure(
                {
                    **spec,
                    "side": "torch",
                    "variant": name,
                    "torch_threads": args.torch_threads,
                    "train": train_too,
                    "inference": eager_inference,
                },
                env,
            )
            if train_too:
                theirs_by_variant[name] = theirs["train"]
            if eager_inference:
                theirs["inference"]["images_per_s"] = _rate(batch, theirs["inference"]["times_s"])
                inference["torch"] = {"eager": theirs["inference"]}
                inference["ratio"] = (
                    inference["jaxcycle"]["images_per_s"] / theirs["inference"]["images_per_s"]
                )
        rounds.append((ours["train"], theirs_by_variant))
    train, torch_train = rounds[0]
    for ours_later, theirs_later in rounds[1:]:
        train = _pooled(train, ours_later)
        torch_train = {k: _pooled(v, theirs_later[k]) for k, v in torch_train.items()}
    train["pairs_per_s"] = _rate(batch, train["times_s"])
    row = {"size": size, "batch": batch, "dtype": dtype, "jaxcycle": train}
    if not torch_ok:
        return row, inference
    for side in torch_train.values():
        side["pairs_per_s"] = _rate(batch, side["times_s"])
    row["torch"] = torch_train
    base = torch_train.get("eager")
    row["ratio"] = train["pairs_per_s"] / base["pairs_per_s"] if base else None
    if base:
        row["round_ratios"] = [
            _rate(batch, ours["times_s"]) / _rate(batch, theirs["eager"]["times_s"])
            for ours, theirs in rounds
        ]
    return row, inference


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
            **child_env(),
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


def _rss(side: dict[str, Any] | None) -> str:
    """Peak RSS in MiB and, in brackets, how far above the baseline it went."""
    if not side or side.get("peak_rss_bytes") is None:
        return "-"
    growth = side["peak_rss_bytes"] - side["baseline_rss_bytes"]
    return f"{_mib(side['peak_rss_bytes'])} (+{_mib(growth)})"


def _ratio(row: dict[str, Any]) -> str:
    """The ratio, and with several rounds the range of the rounds' own ratios."""
    each = row.get("round_ratios") or []
    spread = f" ({min(each):.2f}-{max(each):.2f})" if len(each) > 1 else ""
    return _fmt(row.get("ratio")) + spread


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _train_table(results: dict[str, Any]) -> list[str]:
    """The training iteration's table, the loader's settings, the PyTorch variants' table."""
    rows = results["train"]
    on_device = any(
        r["jaxcycle"].get("device_peak_bytes") is not None
        or any(t.get("peak_bytes") is not None for t in r.get("torch", {}).values())
        for r in rows
    )
    heads = ["size", "batch", "dtype", "jaxcycle", "PyTorch", "ratio", "loader", "compile s"]
    heads += ["XLA MiB"] + ["jaxcycle device MiB", "PyTorch device MiB"] * on_device
    heads += ["jaxcycle RSS MiB", "PyTorch RSS MiB", "TFLOP/s", "MFU"]
    lines = [
        "Training iteration (image pairs/s; ratio > 1: jaxcycle faster; loader: the input "
        "pipeline alone). Memory in MiB: XLA's buffer assignment; RSS: the peak resident memory "
        "of each side's own process (+ above its baseline after the imports)"
        + ("; device: the allocator's peak" if on_device else "")
        + ":",
        "",
        _row(heads),
        "|" + "---|" * len(heads),
    ]
    for r in rows:
        j = r["jaxcycle"]
        eager = r.get("torch", {}).get("eager")
        mfu = j["mfu"]
        cells = [str(r["size"]), str(r["batch"]), r["dtype"], f"{j['pairs_per_s']:.3f}"]
        cells += [_fmt(eager and eager["pairs_per_s"], ".3f"), _ratio(r)]
        cells += [_fmt(r.get("loader_pairs_per_s"), ".1f"), f"{j['compile_s']:.1f}"]
        cells += [_mib(j["xla_bytes"])]
        if on_device:
            cells += [_mib(j.get("device_peak_bytes")), _mib((eager or {}).get("peak_bytes"))]
        cells += [_rss(j), _rss(eager), f"{j['tflops']:.3f}"]
        cells += [_fmt(mfu and 100 * mfu, ".1f") + ("%" if mfu else "")]
        lines.append(_row(cells))
    if results.get("loader"):
        first = results["loader"][0]
        lines += [
            "",
            f"Loader: `UnpairedLoader` as `jaxcycle train` builds it from two folders of 16-bit "
            f"PNGs stored at the size (resize to size x 286/256, random crop, flip; "
            f"{first['workers']} workers, prefetch {first['prefetch']}); its rate over "
            f"{first['steps']} batches, timed alone (no step running beside it).",
        ]
    measured = {v for r in rows for v in r.get("torch", {})}
    variants = [v for v in TORCH_VARIANTS if v in measured]
    if variants and variants != ["eager"]:
        heads = ["size", "batch", "dtype", "variant", "pairs/s", "RSS MiB"]
        heads += ["device MiB"] * on_device
        lines += [
            "",
            "PyTorch variants (image pairs/s; RSS MiB as above):",
            "",
            _row(heads),
            "|" + "---|" * len(heads),
        ]
        for r in rows:
            for v in variants:
                t = r.get("torch", {}).get(v)
                if t is None:
                    continue
                cells = [str(r["size"]), str(r["batch"]), r["dtype"], v]
                cells += [f"{t['pairs_per_s']:.3f}", _rss(t)]
                cells += [_mib(t.get("peak_bytes"))] * on_device
                lines.append(_row(cells))
    if results.get("gemm_tflops"):
        g = ", ".join(f"{d} {t:.3f}" for d, t in results["gemm_tflops"].items())
        lines += ["", f"Measured 2048^3 matrix product on this CPU (TFLOP/s): {g}."]
    lines.append("")
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    m = results["machine"]
    lines = [
        f"Device: {m['device_kind']} ({m['backend']}, {m['local_devices']} device(s)); "
        f"CPU {m['processor']}, {m['cpu_count']} cores; jax {m['jax']}, torch {m.get('torch')}"
        + (f" ({m['torch_threads']} threads)" if m.get("torch_threads") else "")
        + (
            f"; both sides with GLIBC_TUNABLES={m['glibc_tunables']}"
            if m.get("glibc_tunables")
            else ""
        )
        + f"; {m['date']}.",
        f"Networks: {results['networks']['generator']}; {results['networks']['discriminator']}. "
        f"Median of {results['settings']['repeats']} calls"
        + (
            f" in each of {results['settings']['rounds']} rounds, the sides taking turns "
            "(ratio: of the pooled medians; in brackets each round's)."
            if results["settings"].get("rounds", 1) > 1
            else "."
        ),
        "",
    ]
    if results["train"]:
        lines += _train_table(results)
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
        # Read when this process's backend starts (no effect if it has): it must not reserve
        # the device memory its children measure in.
        os.environ[PREALLOCATE] = "false"
        try:
            results = measure(args)
        finally:
            os.environ.pop(PREALLOCATE)
            if _USER_PREALLOCATE is not None:
                os.environ[PREALLOCATE] = _USER_PREALLOCATE
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
