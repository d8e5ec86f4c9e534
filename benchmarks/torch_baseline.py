"""The PyTorch baseline: the reference CycleGAN training iteration and generator inference,
timed on the same settings as jaxcycle.

The iteration is `torch_reference.CycleGAN.step`: the reference project's networks, losses,
image pools, Adam and update order (`CycleGANModel.optimize_parameters`), eager and float32
by default. Variants: channels-last memory format, bfloat16 autocast, `torch.compile` of the
four networks.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from benchmarks import torch_reference
from jaxcycle.architecture import Architecture


@dataclass(frozen=True)
class TorchVariant:
    """How the baseline runs: eager float32 unless told otherwise."""

    channels_last: bool = False
    autocast_bf16: bool = False
    compile: bool = False

    @property
    def name(self) -> str:
        parts = ["compile" if self.compile else "eager"]
        parts += ["channels-last"] if self.channels_last else []
        parts += ["bf16-autocast"] if self.autocast_bf16 else []
        return " ".join(parts)


def variant(name: str, dtype: str) -> TorchVariant:
    """The variant `benchmarks.run` names (eager, channels-last, compile) at a dtype (bfloat16:
    autocast)."""
    bf16 = dtype == "bfloat16"
    table = {
        "eager": TorchVariant(autocast_bf16=bf16),
        "channels-last": TorchVariant(channels_last=True, autocast_bf16=bf16),
        "compile": TorchVariant(compile=True, autocast_bf16=bf16),
    }
    if name not in table:
        raise ValueError(f"unknown PyTorch variant {name!r} (expected one of {', '.join(table)})")
    return table[name]


def device() -> torch.device:
    """CUDA where available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _prepare(model: torch.nn.Module, variant: TorchVariant) -> torch.nn.Module:
    model = model.to(device())
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if variant.compile else model


def _images(batch: int, size: int, channels: int, variant: TorchVariant, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand((batch, channels, size, size), generator=g) * 2 - 1).to(device())
    return x.contiguous(memory_format=torch.channels_last) if variant.channels_last else x


def _autocast(variant: TorchVariant):
    if not variant.autocast_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device().type, dtype=torch.bfloat16)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn: Callable[[], object], warmup: int, repeats: int) -> tuple[float, list[float]]:
    """(seconds of the first call, seconds of each of `repeats` calls after `warmup` more)."""
    t0 = time.perf_counter()
    fn()
    _sync()
    first = time.perf_counter() - t0
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return first, times


def _peak_memory() -> int | None:
    return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None


def train_step_times(
    generator: Architecture,
    discriminator: Architecture,
    size: int,
    batch: int,
    repeats: int,
    variant: TorchVariant = TorchVariant(),
    pool_size: int = 50,
    warmup: int = 1,
) -> dict:
    """Times the reference iteration on random images: first call (includes compilation
    with `torch.compile`) and `repeats` steady-state calls, in seconds; on GPU also the
    allocator's peak."""
    torch.manual_seed(0)
    nets = [
        _prepare(torch_reference.build(arch), variant)
        for arch in (generator, generator, discriminator, discriminator)
    ]
    model = torch_reference.CycleGAN(*nets, pool_size=pool_size)
    a = _images(batch, size, generator.input_nc, variant, 1)
    b = _images(batch, size, generator.output_nc, variant, 2)

    def step() -> None:
        with _autocast(variant):
            model.step(a, b)

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    first, times = _timed(step, warmup, repeats)
    return {"first_call_s": first, "times_s": times, "peak_bytes": _peak_memory()}


def inference_times(
    generator: Architecture,
    size: int,
    batch: int,
    repeats: int,
    variant: TorchVariant = TorchVariant(),
    warmup: int = 1,
) -> dict:
    """Times the generator's forward pass (eval mode, no gradients) on random images."""
    torch.manual_seed(0)
    net = _prepare(torch_reference.build(generator), variant).eval()
    x = _images(batch, size, generator.input_nc, variant, 3)

    def forward() -> None:
        with torch.no_grad(), _autocast(variant):
            net(x)

    first, times = _timed(forward, warmup, repeats)
    return {"first_call_s": first, "times_s": times}
