"""Forward+backward time of each layer of the generator and the discriminator, jaxcycle
against PyTorch, side by side: where the train step's time goes.

    python -m benchmarks.layers --size 256 --batch 4 [--layers R256 d128] [--repeats 5]

Each layer is timed as the train step uses it: the gradient with respect to its weights and
its input, of the sum of its output times a fixed random tensor, compiled with the train
step's compiler options. The best of `--repeats`
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

from jaxcycle import nets, ops
from jaxcycle.hugepages import restart_with_huge_pages


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


_JAX_ACTS: dict[str | None, Callable[[jax.Array], jax.Array] | None] = {
    "relu": nets._relu,
    "lrelu": nets._leaky_relu,
    "tanh": jnp.tanh,
    None: None,
}


def _conv_layer(
    name: str,
    cin: int,
    cout: int,
    k: int,
    stride: int,
    pad: int,
    side: Callable[[int], int],
    *,
    pad_mode: str = "zero",
    norm: bool = True,
    act: str | None = "relu",
    transposed: bool = False,
) -> Layer:
    """A convolution unit (conv, instance norm, activation) described once for both
    frameworks. Reflect padding precedes the convolution; transposed ones have
    output_padding 1, as the generator's."""
    fn = _JAX_ACTS[act]
    output_padding = 1 if transposed else 0

    def ours() -> nets.nn.Module:
        if norm:
            return nets.ConvNormAct(
                cout,
                k,
                stride,
                pad,
                pad_mode,
                act=fn,
                transposed=transposed,
                output_padding=output_padding,
            )
        conv = nets.Conv(cout, k, stride, pad, pad_mode)
        return _Then(conv, fn) if fn else conv

    def theirs() -> Any:
        nn = _lazy_torch().nn
        reflect = pad_mode == "reflect"
        if transposed:
            conv = nn.ConvTranspose2d(cin, cout, k, stride, pad, output_padding)
        else:
            conv = nn.Conv2d(cin, cout, k, stride, 0 if reflect else pad)
        return _torch_unit(conv, norm, act, pad=pad if reflect else 0)

    return Layer(name, cin, side, ours, theirs)


def layers() -> list[Layer]:
    """The ResNet-9 generator's and the 70x70 PatchGAN's layer units, ngf = ndf = 64."""
    return [
        _conv_layer("c7s1-64", 3, 64, 7, 1, 3, _full, pad_mode="reflect"),
        _conv_layer("d128", 64, 128, 3, 2, 1, _full),
        _conv_layer("d256", 128, 256, 3, 2, 1, _half),
        Layer("R256", 256, _quarter, lambda: nets.ResnetBlock(), lambda: _torch_resnet_block(256)),
        _conv_layer("u128", 256, 128, 3, 2, 1, _quarter, transposed=True),
        _conv_layer("u64", 128, 64, 3, 2, 1, _half, transposed=True),
        _conv_layer("c7s1-3", 64, 3, 7, 1, 3, _full, pad_mode="reflect", norm=False, act="tanh"),
        _conv_layer("D:C64", 3, 64, 4, 2, 1, _full, norm=False, act="lrelu"),
        _conv_layer("D:C128", 64, 128, 4, 2, 1, _half, act="lrelu"),
        _conv_layer("D:C256", 128, 256, 4, 2, 1, _quarter, act="lrelu"),
        _conv_layer("D:C512", 256, 512, 4, 1, 1, _eighth, act="lrelu"),
        # C512's output, one pixel smaller than its input, feeds the last layer.
        _conv_layer("D:out", 512, 1, 4, 1, 1, lambda size: size // 8 - 1, norm=False, act=None),
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

    def loss(params: Any, x: jax.Array, weights: jax.Array) -> jax.Array:
        return jnp.sum(module.apply(params, x) * weights)

    # `weights` is an argument: as a constant of the program, XLA would fold the backward's
    # first operations on it (pads, slices, transposes) at compile time.
    grad = ops.jit(jax.grad(loss, argnums=(0, 1)))
    return _best_ms(lambda: jax.block_until_ready(grad(params, x, weights)), repeats)


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
    restart_with_huge_pages()  # as the `jaxcycle` command runs
    raise SystemExit(main())
