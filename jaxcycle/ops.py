"""Array operations with PyTorch semantics, in NHWC.

Each op here computes exactly what its PyTorch namesake computes (same padding, same tap
order, same normalisation epsilon), so that weights imported from the reference project give
the reference outputs. Kernels are stored as (kh, kw, in, out) for both convolutions and
transposed convolutions, with the taps in PyTorch's order (never flipped).

Where XLA is slow for the direct formulation, a faster but mathematically identical one is
used, and `tests/test_ops.py` proves it equal to the plain `lax` version:

- `conv_transpose2d` splits a strided transposed convolution into one stride-1 convolution
  per output phase and interleaves the results. On XLA:CPU the backward pass of the
  input-dilated convolution that `lax.conv_transpose` lowers to is about 15x slower.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

_DIMS = ("NHWC", "HWIO", "NHWC")
_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "zero": "constant"}


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


def conv_transpose2d_reference(
    x: jax.Array, kernel: jax.Array, stride: int, padding: int, output_padding: int = 0
) -> jax.Array:
    """`nn.ConvTranspose2d` written directly as an input-dilated convolution.

    `kernel` is PyTorch's weight (in, out, kh, kw) transposed to (kh, kw, in, out). The
    transposed convolution correlates the stride-dilated input with the spatially flipped
    kernel, padded by `k - 1 - padding` before and `k - 1 - padding + output_padding` after.
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


def _phase_taps(k: int, stride: int, padding: int, phase: int) -> tuple[list[int], int]:
    """Kernel taps feeding output positions `o = stride * m + phase`, and their input offset.

    Output o of a transposed convolution sums x[i] * w[t] over o = stride * i - padding + t,
    so o = stride * m + phase takes tap t from input i = m + (phase + padding - t) / stride
    whenever that division is exact. Returns the taps ordered by increasing input offset and
    the smallest offset.
    """
    taps = [t for t in range(k) if (phase + padding - t) % stride == 0]
    taps.sort(key=lambda t: (phase + padding - t) // stride)
    first = (phase + padding - taps[0]) // stride if taps else 0
    return taps, first


def conv_transpose2d(
    x: jax.Array, kernel: jax.Array, stride: int, padding: int, output_padding: int = 0
) -> jax.Array:
    """`nn.ConvTranspose2d` as `stride**2` stride-1 convolutions, one per output phase.

    Same result as `conv_transpose2d_reference` (to float rounding), much faster to
    differentiate on XLA:CPU. For the generator's `ConvTranspose2d(k=3, s=2, p=1,
    output_padding=1)`, along each axis an even output takes tap 1 at input offset 0 and an
    odd output takes tap 2 at offset 0 plus tap 0 at offset +1 (zero beyond the edge).
    """
    k = kernel.shape[0]
    n, h, w, _ = x.shape
    out_h = (h - 1) * stride - 2 * padding + k + output_padding
    out_w = (w - 1) * stride - 2 * padding + k + output_padding
    if out_h % stride or out_w % stride:
        return conv_transpose2d_reference(x, kernel, stride, padding, output_padding)
    rows_per_phase, cols_per_phase = out_h // stride, out_w // stride

    def along_axis(phase: int, size_in: int, size_out: int) -> tuple[list[int], tuple[int, int]]:
        taps, first = _phase_taps(k, stride, padding, phase)
        span = len(taps)
        # Output m reads inputs m + first ... m + first + span - 1.
        lo = -first
        hi = size_out - 1 + first + span - 1 - (size_in - 1)
        return taps, (lo, hi)

    phases = []
    for ph in range(stride):
        row_taps, row_pad = along_axis(ph, h, rows_per_phase)
        row = []
        for pw in range(stride):
            col_taps, col_pad = along_axis(pw, w, cols_per_phase)
            sub = kernel[jnp.array(row_taps)][:, jnp.array(col_taps)]
            row.append(_conv_with_padding(x, sub, row_pad, col_pad))
        phases.append(jnp.stack(row, axis=3))  # (n, H', W', stride_w, c)
    y = jnp.stack(phases, axis=2)  # (n, H', stride_h, W', stride_w, c)
    return y.reshape(n, out_h, out_w, kernel.shape[-1])


def _conv_with_padding(
    x: jax.Array, kernel: jax.Array, rows: tuple[int, int], cols: tuple[int, int]
) -> jax.Array:
    """Stride-1 correlation with signed zero padding (negative values crop)."""
    crop = [(max(0, -lo), max(0, -hi)) for lo, hi in (rows, cols)]
    pad = [(max(0, lo), max(0, hi)) for lo, hi in (rows, cols)]
    if any(c for pair in crop for c in pair):
        x = x[:, crop[0][0] : x.shape[1] - crop[0][1], crop[1][0] : x.shape[2] - crop[1][1]]
    return lax.conv_general_dilated(x, kernel, (1, 1), pad, dimension_numbers=_DIMS)


def instance_norm(x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """`nn.InstanceNorm2d(affine=False)`: each sample and channel to zero mean, unit variance.

    The variance is the biased one (mean of squared deviations), epsilon 1e-5 as in PyTorch.
    Statistics are computed in at least float32 whatever the input's dtype (bfloat16 sums
    drift).
    """
    wide = at_least_float32(x)
    mean = jnp.mean(wide, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(wide - mean), axis=(1, 2), keepdims=True)
    return ((wide - mean) * lax.rsqrt(var + eps)).astype(x.dtype)


def at_least_float32(x: jax.Array) -> jax.Array:
    """`x` in float32, or in its own dtype if that is wider (float64)."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))
