"""Array operations with PyTorch semantics, in NHWC.

Each op computes exactly what its PyTorch namesake computes (same padding, same tap order,
same normalisation epsilon), so that weights imported from the reference project give the
reference outputs. Kernels are stored as (kh, kw, in, out) for both convolutions and
transposed convolutions, with the taps in PyTorch's order (never flipped).

Each op is written here as its plain `lax` definition. One switch, `use_fast_formulations()`,
decides at trace time whether the convolutions run instead through
`jaxcycle.cpu_formulations`: the same results, to float rounding, in forms that XLA:CPU runs
much faster (`tests/test_ops.py` checks each against the plain op, values and gradients). It
is on for the CPU backend, where those forms were measured, and off elsewhere (on GPU/TPU the
plain convolutions map to the vendor libraries). `JAXCYCLE_FAST_OPS=1` (or `0`) in the
environment, or the `fast_formulations(True/False)` context manager, overrides the choice;
functions already jit-compiled keep the formulation they were traced with.
`compiler_options()` gives the XLA options that the programs running these ops are compiled
with; `ops.jit` is `jax.jit` with them.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxcycle import cpu_formulations

_DIMS = ("NHWC", "HWIO", "NHWC")
_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "zero": "constant"}

# Per thread (and per asyncio task): a trace on one thread is not switched by a block on another.
_fast_override: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "jaxcycle_fast_formulations", default=None
)


def use_fast_formulations() -> bool:
    """Whether the ops use `jaxcycle.cpu_formulations`: True on the CPU backend, unless
    overridden by `fast_formulations(...)` or the JAXCYCLE_FAST_OPS environment variable."""
    override = _fast_override.get()
    if override is not None:
        return override
    env = os.environ.get("JAXCYCLE_FAST_OPS", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    return jax.default_backend() == "cpu"


# XLA:CPU hands convolutions, reductions and matrix products to its YNNPACK library by
# default. The Winograd products of the residual blocks run faster through XLA's own matrix
# product (the 128x128 train step 10% faster, 256x256 no slower), and a program with fewer
# library calls loads from the compilation cache twice as fast (each one's loading scans the
# whole program): `benchmarks/results/cpu_formulations.md`.
_CPU_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": (
        "LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION,LIBRARY_FUSION_TYPE_REDUCE"
    )
}


def compiler_options() -> dict[str, str]:
    """The XLA options to compile programs of these ops with: on the CPU backend with the
    fast formulations, matrix products left to XLA itself (see `_CPU_OPTIONS`); none
    elsewhere, or where this jaxlib does not know the option."""
    if not use_fast_formulations() or jax.default_backend() != "cpu":
        return {}
    return dict(_CPU_OPTIONS) if _options_accepted() else {}


def jit(fun: Callable, **kwargs: Any) -> Any:
    """`jax.jit(fun, **kwargs)` compiled with `compiler_options()`: how every program that runs
    these ops is jitted, so that none misses the CPU options."""
    return jax.jit(fun, compiler_options=compiler_options(), **kwargs)


@functools.cache
def _options_accepted() -> bool:
    try:
        jax.jit(lambda x: x + 1, compiler_options=_CPU_OPTIONS).lower(1.0).compile()
    except Exception:  # an unknown option name or value on another jaxlib
        return False
    return True


@contextlib.contextmanager
def fast_formulations(enabled: bool | None) -> Iterator[None]:
    """Within the block, trace the ops with the CPU formulations (True), the plain `lax` ones
    (False) or the per-backend default (None); on this thread only."""
    token = _fast_override.set(enabled)
    try:
        yield
    finally:
        _fast_override.reset(token)


def pad2d(x: jax.Array, pad: int, mode: str = "zero") -> jax.Array:
    """Pads H and W of an NHWC array by `pad` on every side.

    `mode` is 'reflect' (`nn.ReflectionPad2d`), 'replicate' (`nn.ReplicationPad2d`) or
    'zero' (a convolution's own `padding=`).
    """
    if pad == 0:
        return x
    if mode not in _PAD_MODES:
        raise ValueError(f"unknown padding mode {mode!r}; expected one of {sorted(_PAD_MODES)}")
    return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode=_PAD_MODES[mode])


def conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1) -> jax.Array:
    """`nn.Conv2d` with `padding=0` (pad first with `pad2d`): NHWC input, (kh, kw, in, out)."""
    return lax.conv_general_dilated(x, kernel, (stride, stride), "VALID", dimension_numbers=_DIMS)


def conv2d_padded(
    x: jax.Array, kernel: jax.Array, stride: int = 1, padding: int = 0, pad_mode: str = "zero"
) -> jax.Array:
    """`nn.Conv2d` preceded by its padding: `conv2d(pad2d(x, padding, pad_mode), kernel,
    stride)`. Zero padding is the convolution's own (no padded copy of the input)."""
    fast = use_fast_formulations()
    if pad_mode == "zero":
        if fast:
            return cpu_formulations.conv2d_zero_padded(x, kernel, stride, padding)
        pads = ((padding, padding), (padding, padding))
        return lax.conv_general_dilated(x, kernel, (stride, stride), pads, dimension_numbers=_DIMS)
    padded = pad2d(x, padding, pad_mode)
    if fast:
        return cpu_formulations.conv2d_valid(padded, kernel, stride)
    return conv2d(padded, kernel, stride)


def conv_transpose2d(
    x: jax.Array, kernel: jax.Array, stride: int, padding: int, output_padding: int = 0
) -> jax.Array:
    """`nn.ConvTranspose2d`: `conv_transpose2d_reference`. `kernel` is PyTorch's weight
    transposed to (kh, kw, in, out)."""
    if use_fast_formulations():
        return cpu_formulations.conv_transpose2d(x, kernel, stride, padding, output_padding)
    return conv_transpose2d_reference(x, kernel, stride, padding, output_padding)


def conv_transpose2d_reference(
    x: jax.Array, kernel: jax.Array, stride: int, padding: int, output_padding: int = 0
) -> jax.Array:
    """`nn.ConvTranspose2d` written directly as an input-dilated convolution.

    Output o sums x[i] * w[t] over o = stride * i - padding + t (per axis). That is the
    correlation of the stride-dilated input with the spatially flipped kernel, padded by
    `k - 1 - padding` before and `k - 1 - padding + output_padding` after.
    """
    k = kernel.shape[0]
    lo, hi = k - 1 - padding, k - 1 - padding + output_padding
    return lax.conv_general_dilated(
        x,
        kernel[::-1, ::-1],
        (1, 1),
        ((lo, hi), (lo, hi)),
        lhs_dilation=(stride, stride),
        dimension_numbers=_DIMS,
    )


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """`nn.InstanceNorm2d(affine=False)`: `instance_norm_reference`, differentiated by its
    closed-form gradient (`cpu_formulations.instance_norm`).

    The closed form is used on every backend, whatever the switch, so that the gradients are
    the same bits with the switch on or off (autodiff's gradient of the reference differs
    from it by float rounding). It is tested against autodiff's and PyTorch's autograd.
    """
    return cpu_formulations.instance_norm(x, eps)


def instance_norm_reference(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """`nn.InstanceNorm2d(affine=False)`: each sample and channel to zero mean, unit variance.

    (x - mean) / sqrt(var + eps) over H and W, with the biased variance (mean of squared
    deviations) and epsilon 1e-5 as in PyTorch. The statistics are computed in at least
    float32 whatever the input's dtype (bfloat16 sums drift).
    """
    wide = at_least_float32(x)
    centred = wide - jnp.mean(wide, axis=(1, 2), keepdims=True)
    inv_std = lax.rsqrt(jnp.mean(jnp.square(centred), axis=(1, 2), keepdims=True) + eps)
    return (centred * inv_std).astype(x.dtype)


def at_least_float32(x: jax.Array) -> jax.Array:
    """`x` in float32, or in its own dtype if that is wider (float64)."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))
