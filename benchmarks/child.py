"""One setting of `benchmarks.run` measured in a fresh Python process: timings and memory.

The runner starts `python -m benchmarks.child SPEC` once per side and setting (jaxcycle's
train step, then its generator inference; each PyTorch variant's iteration, and after eager's
its inference), so that the process's resident-memory high-water mark belongs to that setting
alone, measured the same way for both frameworks. Besides the timings, the train step's
result holds:

- baseline_rss_bytes: the high-water mark after the imports and the framework's start-up
  (JAX's client; PyTorch's device context), before any network is built;
- peak_rss_bytes: the high-water mark once the step has run: networks, optimiser state,
  compilation (XLA's; torch.compile's in this process) and every call.

The marks are VmHWM of /proc/self/status where it exists, else getrusage's ru_maxrss. Not
ru_maxrss on Linux: exec records the parent's high-water mark into the child's (the kernel
keeps the largest address space the process has had), so a child would report the runner's
memory whenever that is the larger. Memory of other processes (torch.compile's compile
workers) is not counted.

    python -m benchmarks.child '{"side": "ballast", "bytes": 268435456}'
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIDES = ("jaxcycle", "torch", "ballast")
_STATUS = Path("/proc/self/status")


def peak_rss_bytes() -> int:
    """This process's resident-memory high-water mark, in bytes."""
    try:
        match = re.search(r"^VmHWM:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        match = None
    if match:
        return int(match.group(1)) * 1024
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss if sys.platform == "darwin" else maxrss * 1024)  # bytes on macOS, else KiB


def _networks(spec: dict[str, Any]) -> tuple[Any, Any]:
    from benchmarks.run import networks

    return networks(SimpleNamespace(ngf=spec["ngf"], ndf=spec["ndf"], n_blocks=spec["n_blocks"]))


def _jaxcycle(spec: dict[str, Any]) -> dict[str, Any]:
    import jax

    from benchmarks import run

    jax.devices()  # the client (on GPU its memory too) is start-up, not the step
    baseline = peak_rss_bytes()
    generator, discriminator = _networks(spec)
    size, batch, dtype = spec["size"], spec["batch"], spec["dtype"]
    train = run.jax_train_step(
        generator,
        discriminator,
        size,
        batch,
        dtype,
        spec["repeats"],
        spec["warmup"],
        pool_size=spec["pool_size"],
    )
    train.update(baseline_rss_bytes=baseline, peak_rss_bytes=peak_rss_bytes())
    out: dict[str, Any] = {"train": train, "inference": None}
    if spec.get("inference"):
        out["inference"] = run.jax_inference(
            generator, size, batch, dtype, spec["repeats"], spec["warmup"]
        )
    return out


def _torch(spec: dict[str, Any]) -> dict[str, Any]:
    import torch

    from benchmarks import torch_baseline

    if spec.get("torch_threads"):
        torch.set_num_threads(spec["torch_threads"])
    torch.zeros(1, device=torch_baseline.device())  # the device context is start-up
    baseline = peak_rss_bytes()
    generator, discriminator = _networks(spec)
    size, batch = spec["size"], spec["batch"]
    variant = torch_baseline.variant(spec["variant"], spec["dtype"])
    out: dict[str, Any] = {"train": None, "inference": None}
    if spec.get("train", True):
        out["train"] = torch_baseline.train_step_times(
            generator,
            discriminator,
            size,
            batch,
            spec["repeats"],
            variant,
            spec["pool_size"],
            spec["warmup"],
        )
        out["train"].update(baseline_rss_bytes=baseline, peak_rss_bytes=peak_rss_bytes())
    if spec.get("inference"):
        out["inference"] = torch_baseline.inference_times(
            generator, size, batch, spec["repeats"], variant, spec["warmup"]
        )
    return out


def _ballast(spec: dict[str, Any]) -> dict[str, Any]:
    """A known allocation in place of a step, to check the measurement: `bytes` of ones."""
    import numpy as np

    baseline = peak_rss_bytes()
    ballast = np.ones(spec["bytes"] // 8)
    train = {"baseline_rss_bytes": baseline, "peak_rss_bytes": peak_rss_bytes()}
    del ballast
    return {"train": train, "inference": None}


def run_setting(spec: dict[str, Any]) -> dict[str, Any]:
    """Measures `spec` in this process (meant to be a fresh one: see the module docstring):
    {"train": ..., "inference": ... or None}."""
    side = spec["side"]
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r} (expected one of {', '.join(SIDES)})")
    return {"jaxcycle": _jaxcycle, "torch": _torch, "ballast": _ballast}[side](spec)


def measure(spec: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Measures `spec` in a fresh Python process (environment `env`, default this one's);
    its result, as `run_setting` returns it."""
    with tempfile.TemporaryDirectory(prefix="jaxcycle-bench-") as tmp:
        out = Path(tmp) / "result.json"
        command = [sys.executable, "-m", "benchmarks.child", json.dumps(spec), "--out", str(out)]
        done = subprocess.run(command, cwd=ROOT, env=env)
        if done.returncode != 0:
            what = " ".join(str(spec.get(k, "")) for k in ("side", "variant", "size", "batch"))
            raise RuntimeError(
                f"measuring {' '.join(what.split())}: the child process exited with status "
                f"{done.returncode}"
            )
        return json.loads(out.read_text())


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one setting given as JSON; writes its result as JSON (to --out, else stdout)."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.child", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("spec", help="the setting, as JSON")
    parser.add_argument("--out", type=Path, default=None, help="write the result here")
    args = parser.parse_args(argv)
    text = json.dumps(run_setting(json.loads(args.spec)))
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
