"""Forward+backward time of each layer of the generator and the discriminator, jaxcycle
against PyTorch, side by side: where the train step's time goes.

    python -m benchmarks.layers --size 256 --batch 4 [--layers R256 d128] [--repeats 5]

Each layer is timed as the train step uses it: the gradient with respect to its weights and
its input, of the sum of its output times a fixed random tensor. The best of `--repeats`
calls is reported (the least disturbed by other work on the machine), in milliseconds, both
frameworks in the same run, layer after layer.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxcycle import nets


@dataclass(frozen=True)
class Layer:
    """One layer unit: its name, input channels, input side for an image side."""

    name: str
    cin: int
    side: Callable[[int], int]
    jax_module: Callable[[], Any]
    torch_module: Callable[[], Any]


def _torch_unit(conv: Any, norm: bool, act: str | None, pad: int = 0) -> Any:
    import torch

    parts = [torch.nn.ReflectionPad2d(pad)] if pad else []
    parts.append(conv)
    if norm:
        parts.append(torch.nn.InstanceNorm2d(conv.out_channels))
    if act == "relu":
        parts.append(torch.nn.ReLU(True))
    elif act == "lrelu":
        parts.append(torch.nn.LeakyReLU(0.2, True))
    elif act == "tanh":
        parts.append(torch.nn.Tanh())
    return torch.nn.Sequential(*parts)


def _torch_resnet_block(dim: int) -> Any:
    """The reference residual block: x + [pad, conv, norm, ReLU, pad, conv, norm](x)."""
    import torch

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(
                _torch_unit(torch.nn.Conv2d(dim, dim, 3), True, "relu", pad=1),
                _torch_unit(torch.nn.Conv2d(dim, dim, 3), True, None, pad=1),
            )

        def forward(self, x: Any) -> Any:
            return x + self.body(x)

    return Block()


class _Then(nets.nn.Module):
    """`inner` followed by the activation `act`."""

    inner: nets.nn.Module
    act: Callable[[jax.Array], jax.Array]

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.act(self.inner(x))


def _full(size: int) -> int:
    return size


def _half(size: int) -> int:
    return size // 2


def _quarter(size: int) -> int:
    return size // 4


def _eighth(size: int) -> int:
    return size // 8


def layers() -> list[Layer]:
    """The ResNet-9 generator's and the 70x70 PatchGAN's layer units, ngf = ndf = 64."""
    import_torch = _lazy_torch
    unit = nets.ConvNormAct
    lrelu = nets._leaky_relu
    return [
        Layer(
            "c7s1-64",
            3,
            _full,
            lambda: unit(64, 7, 1, 3, "reflect"),
            lambda: _torch_unit(import_torch().nn.Conv2d(3, 64, 7), True, "relu", pad=3),
        ),
        Layer(
            "d128",
            64,
            _full,
            lambda: unit(128, 3, 2, 1),
            lambda: _torch_unit(import_torch().nn.Conv2d(64, 128, 3, 2, 1), True, "relu"),
        ),
        Layer(
            "d256",
            128,
            _half,
            lambda: unit(256, 3, 2, 1),
            lambda: _torch_unit(import_torch().nn.Conv2d(128, 256, 3, 2, 1), True, "relu"),
        ),
        Layer("R256", 256, _quarter, lambda: nets.ResnetBlock(), lambda: _torch_resnet_block(256)),
        Layer(
            "u128",
            256,
            _quarter,
            lambda: unit(128, 3, 2, 1, transposed=True, output_padding=1),
            lambda: _torch_unit(
                import_torch().nn.ConvTranspose2d(256, 128, 3, 2, 1, 1), True, "relu"
            ),
        ),
        Layer(
            "u64",
            128,
            _half,
            lambda: unit(64, 3, 2, 1, transposed=True, output_padding=1),
            lambda: _torch_unit(
                import_torch().nn.ConvTranspose2d(128, 64, 3, 2, 1, 1), True, "relu"
            ),
        ),
        Layer(
            "c7s1-3",
            64,
            _full,
            lambda: _Then(nets.Conv(3, 7, 1, 3, "reflect"), jnp.tanh),
            lambda: _torch_unit(import_torch().nn.Conv2d(64, 3, 7), False, "tanh", pad=3),
        ),
        Layer(
            "D:C64",
            3,
            _full,
            lambda: _Then(nets.Conv(64, 4, 2, 1), lrelu),
            lambda: _torch_unit(import_torch().nn.Conv2d(3, 64, 4, 2, 1), False, "lrelu"),
        ),
        Layer(
            "D:C128",
            64,
            _half,
            lambda: unit(128, 4, 2, 1, act=lrelu),
            lambda: _torch_unit(import_torch().nn.Conv2d(64, 128, 4, 2, 1), True, "lrelu"),
        ),
        Layer(
            "D:C256",
            128,
            _quarter,
            lambda: unit(256, 4, 2, 1, act=lrelu),
            lambda: _torch_unit(import_torch().nn.Conv2d(128, 256, 4, 2, 1), True, "lrelu"),
        ),
        Layer(
            "D:C512",
            256,
            _eighth,
            lambda: unit(512, 4, 1, 1, act=lrelu),
            lambda: _torch_unit(import_torch().nn.Conv2d(256, 512, 4, 1, 1), True, "lrelu"),
        ),
        Layer(
            "D:out",
            512,
            lambda size: size // 8 - 1,  # C512's output: one pixel less than its input
            lambda: nets.Conv(1, 4, 1, 1),
            lambda: _torch_unit(import_torch().nn.Conv2d(512, 1, 4, 1, 1), False, None),
        ),
    ]


def _lazy_torch() -> Any:
    import torch

    return torch


def _best_ms(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3


def jax_ms(layer: Layer, size: int, batch: int, repeats: int) -> float:
    """Best forward+backward time of the jaxcycle layer, in ms."""
    side = layer.side(size)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, side, side, layer.cin)), jnp.float32)
    module = layer.jax_module()
    params = module.init(jax.random.key(0), x)
    weights = jnp.asarray(rng.standard_normal(module.apply(params, x).shape), jnp.float32)

    def loss(params: Any, x: jax.Array) -> jax.Array:
        return jnp.sum(module.apply(params, x) * weights)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
    return _best_ms(lambda: jax.block_until_ready(grad(params, x)), repeats)


def torch_ms(layer: Layer, size: int, batch: int, repeats: int) -> float:
    """Best forward+backward time of the PyTorch layer, in ms."""
    torch = _lazy_torch()
    side = layer.side(size)
    module = layer.torch_module()
    x = torch.randn(batch, layer.cin, side, side, requires_grad=True)
    weights = torch.randn_like(module(x))

    def step() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        (module(x) * weights).sum().backward()

    return _best_ms(step, repeats)


def output_shapes(layer: Layer, size: int, batch: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The layer's output shape in each framework, both as (N, H, W, C): the two sides of the
    benchmark compute the same layer."""
    side = layer.side(size)
    x = jnp.zeros((batch, side, side, layer.cin), jnp.float32)
    module = layer.jax_module()
    ours = jax.eval_shape(lambda x: module.apply(module.init(jax.random.key(0), x), x), x).shape
    torch = _lazy_torch()
    with torch.no_grad():
        n, c, h, w = layer.torch_module()(torch.zeros(batch, layer.cin, side, side)).shape
    return tuple(ours), (n, h, w, c)


def main(argv: Sequence[str] | None = None) -> int:
    """Prints one line per layer: jaxcycle ms, PyTorch ms, their ratio."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.layers", description=__doc__)
    p.add_argument("--size", type=int, default=256, help="image size")
    p.add_argument("--batch", type=int, default=1, help="images per call")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per layer (best is kept)")
    p.add_argument("--layers", nargs="+", default=None, help="only these layers (names)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch side")
    args = p.parse_args(argv)
    chosen = [layer for layer in layers() if not args.layers or layer.name in args.layers]
    if not chosen:
        p.error(f"no such layers; choose from {[layer.name for layer in layers()]}")
    print(f"{'layer':8s} {'jaxcycle ms':>12s} {'PyTorch ms':>11s} {'ratio':>6s}")
    for layer in chosen:
        ours = jax_ms(layer, args.size, args.batch, args.repeats)
        theirs = None if args.no_torch else torch_ms(layer, args.size, args.batch, args.repeats)
        ratio = f"{theirs / ours:6.2f}" if theirs else ""
        theirs_s = f"{theirs:11.1f}" if theirs else ""
        print(f"{layer.name:8s} {ours:12.1f} {theirs_s:>11s} {ratio}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
