"""Array operations with PyTorch semantics, in NHWC.

Each op here computes exactly what its PyTorch namesake computes (same padding, same tap
order, same normalisation epsilon), so that weights imported from the reference project give
the reference outputs. Kernels are stored as (kh, kw, in, out) for both convolutions and
transposed convolutions, with the taps in PyTorch's order (never flipped).

Fast formulations. Where XLA:CPU is slow for the direct formulation, a faster but
mathematically identical one is used; `tests/test_ops.py` proves each equal to the plain
`lax` version, values and gradients:

- `conv_transpose2d_phases` splits a strided transposed convolution into one stride-1
  convolution per output phase and interleaves the results. On XLA:CPU the backward pass of
  the input-dilated convolution that `lax.conv_transpose` lowers to is about 15x slower.
- `conv2d_reflect_fast` computes a 'VALID' convolution of a reflect-padded input as a
  padded ('SAME'-style) convolution of which it keeps the interior: on XLA:CPU (jax 0.10,
  YNNPACK convolutions) the 'VALID' convolution runs 2x (3x3, 256 channels) to 20x (7x7,
  64 -> 3) slower. Its custom VJP computes dX as the 'VALID' convolution's transpose and dW
  as one explicit convolution of the padded input with dY (batch and feature axes swapped),
  since autodiff through the padded-and-cropped form is slow again.
- `conv3x3_winograd` computes a stride-1 3x3 'VALID' convolution (the residual blocks') by
  Winograd's minimal filtering F(2x2, 3x3): 16 matrix products on transformed 4x4 input
  tiles and kernels instead of 36 multiply-adds per output tile, 2.25x fewer. Forward (2x)
  and backward (its hand-written VJP, the transforms transposed: 1.5x; autodiff's spends
  its time scattering the tiles back) run faster than `conv2d_reflect_fast` on XLA:CPU; the
  results differ by float rounding only (relative 1e-6: the transforms' coefficients are 0,
  +-1 and +-1/2).
- `image_by_image` runs a convolution on one image at a time: XLA:CPU convolves a batch of
  several images up to 7x slower per image than one image (strided convolutions, and the
  gradients of every kind), so the networks' strided, transposed and (other than the
  Winograd ones) reflect-padded convolutions take their batch image by image on the fast
  path, in a run on one device.

Which formulations the networks use is chosen per backend, at trace time, by
`use_fast_formulations()`: the fast ones on the CPU, where they were measured, and the plain
`lax` ones elsewhere (on GPU/TPU the plain convolutions map to the vendor libraries, and the
CPU formulations were never measured there). `JAXCYCLE_FAST_OPS=1` (or `0`) in the
environment, or the `fast_formulations(True/False)` context manager, overrides the choice;
functions already jit-compiled keep the formulation they were traced with.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
from jax import lax

_DIMS = ("NHWC", "HWIO", "NHWC")
_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "zero": "constant"}

_fast_override: bool | None = None


def use_fast_formulations() -> bool:
    """Whether the networks use the fast formulations: True on the CPU backend, unless
    overridden by `fast_formulations(...)` or the JAXCYCLE_FAST_OPS environment variable."""
    if _fast_override is not None:
        return _fast_override
    env = os.environ.get("JAXCYCLE_FAST_OPS", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    return jax.default_backend() == "cpu"


@contextlib.contextmanager
def fast_formulations(enabled: bool | None) -> Iterator[None]:
    """Within the block, trace the networks with the fast formulations (True), the plain
    `lax` ones (False) or the per-backend default (None)."""
    global _fast_override
    previous, _fast_override = _fast_override, enabled
    try:
        yield
    finally:
        _fast_override = previous


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
    """`nn.Conv2d` preceded by its padding (`pad2d(x, padding, pad_mode)`).

    Zero padding is the convolution's own (no padded copy of the input). Reflect and
    replicate padding pad first; the stride-1 convolution that follows is
    `conv2d_reflect_fast` when `use_fast_formulations()` (`conv3x3_winograd` for a 3x3 kernel
    on an even-sized input), else the plain 'VALID' one. On the fast path, strided and (but
    for Winograd's) reflect-padded convolutions take their batch `image_by_image`.
    """
    fast = use_fast_formulations()
    if pad_mode == "zero":
        conv = functools.partial(_conv_zero_padded, stride=stride, padding=padding)
        return image_by_image(conv, x, kernel) if fast and stride > 1 else conv(x, kernel)
    padded = pad2d(x, padding, pad_mode)
    if stride == 1 and fast:
        if kernel.shape[:2] == (3, 3) and x.shape[1] % 2 == x.shape[2] % 2 == 0:
            return conv3x3_winograd(padded, kernel)  # as fast on a batch, and quicker to compile
        return image_by_image(conv2d_reflect_fast, padded, kernel)
    return conv2d(padded, kernel, stride)


def _conv_zero_padded(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    pads = ((padding, padding), (padding, padding))
    return lax.conv_general_dilated(x, kernel, (stride, stride), pads, dimension_numbers=_DIMS)


# Winograd F(2x2, 3x3): output tile Y = A^T [(G g G^T) * (B^T d B)] A for a 4x4 input tile d
# and a 3x3 kernel g (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
# Each sandwich M X M^T of a grid of arrays is written out as sums that skip the zeros: XLA:CPU
# runs these 2x faster than one product with the Kronecker square of M (measured).
_WINOGRAD_B_T = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
_WINOGRAD_G = ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))
_WINOGRAD_A_T = ((1, 1, 1, 0), (0, 1, -1, -1))


@jax.custom_vjp
def conv3x3_winograd(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 3x3 'VALID' correlation (`conv2d(x, kernel)`) by Winograd's F(2x2, 3x3).

    `x` is (N, H + 2, W + 2, Cin) with H and W even (a padded input), `kernel` (3, 3, Cin,
    Cout). The output's 2x2 tiles read overlapping 4x4 input tiles, 2 apart; each of the 16
    positions of the transformed tiles is one (tiles, Cin) x (Cin, Cout) matrix product.
    Gradients: see `_winograd_bwd`.
    """
    v, u = _winograd_operands(x, kernel)
    m = [[v[a][b] @ u[a][b] for b in range(4)] for a in range(4)]
    y = _sandwich(_WINOGRAD_A_T, m)  # A^T m A: y[r][c] is output (2 * row + r, 2 * col + c)
    n, hp, wp, _ = x.shape
    return _interleave(y, (n, (hp - 2) // 2, (wp - 2) // 2))


def _winograd_operands(x: jax.Array, kernel: jax.Array):
    """The transformed input tiles B^T d B and kernel G g G^T: 4x4 grids of (tiles, Cin) and
    (Cin, Cout) matrices."""
    n, hp, wp, cin = x.shape
    rows, cols = (hp - 2) // 2, (wp - 2) // 2
    tiles = [
        [x[:, i : i + 2 * rows : 2, j : j + 2 * cols : 2].reshape(-1, cin) for j in range(4)]
        for i in range(4)
    ]
    v = _sandwich(_WINOGRAD_B_T, tiles)
    u = _sandwich(_WINOGRAD_G, [[kernel[i, j] for j in range(3)] for i in range(3)])
    # Keeps XLA from fusing the transforms into the products (which then run 2x slower).
    return lax.optimization_barrier((v, u))


def _winograd_fwd(x: jax.Array, kernel: jax.Array):
    return conv3x3_winograd(x, kernel), (x, kernel)


def _winograd_bwd(residuals, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The forward's linear maps transposed, in reverse order: dm = A dY A^T; per position
    dv = dm u^T and du = v^T dm; then dd = B dv B^T, summed back onto the overlapping input
    tiles, and dg = G^T du G. The operands v and u are recomputed (cheap), not stored."""
    x, kernel = residuals
    v, u = _winograd_operands(x, kernel)
    n, h, w, cout = dy.shape
    dm = _sandwich(_transposed(_WINOGRAD_A_T), _deinterleave(dy))
    dv = [[dm[a][b] @ u[a][b].T for b in range(4)] for a in range(4)]
    du = [[v[a][b].T @ dm[a][b] for b in range(4)] for a in range(4)]
    dd = _sandwich(_transposed(_WINOGRAD_B_T), dv)
    # Tile position i = parity + 2 * shift reads input row 2 * (tile row + shift) + parity:
    # each parity plane of dx sums the four positions of its parity, shifted by their tile.
    rows, cols = h // 2, w // 2
    planes = [
        [
            sum(
                jnp.pad(
                    dd[p + 2 * q][r + 2 * s].reshape(n, rows, cols, -1),
                    ((0, 0), (q, 1 - q), (s, 1 - s), (0, 0)),
                )
                for q in range(2)
                for s in range(2)
            )
            for r in range(2)
        ]
        for p in range(2)
    ]
    dx = _interleave(
        [[plane.reshape(-1, x.shape[-1]) for plane in row] for row in planes],
        (n, rows + 1, cols + 1),
    )
    dg = _sandwich(_transposed(_WINOGRAD_G), du)
    return dx.astype(x.dtype), jnp.stack([jnp.stack(row) for row in dg]).astype(kernel.dtype)


conv3x3_winograd.defvjp(_winograd_fwd, _winograd_bwd)


def _transposed(matrix: tuple[tuple[float, ...], ...]) -> tuple[tuple[float, ...], ...]:
    return tuple(zip(*matrix, strict=True))


def _interleave(planes: list[list[jax.Array]], shape: tuple[int, int, int]) -> jax.Array:
    """The image whose pixel (2 * row + r, 2 * col + c) is row * cols + col of planes[r][c]
    (each (N * rows * cols, C)); `shape` is (N, rows, cols)."""
    n, rows, cols = shape
    stacked = jnp.stack(
        [jnp.stack([plane.reshape(n, rows, cols, -1) for plane in row], axis=3) for row in planes],
        axis=2,
    )  # (N, rows, 2, cols, 2, C)
    return stacked.reshape(n, 2 * rows, 2 * cols, -1)


def _deinterleave(image: jax.Array) -> list[list[jax.Array]]:
    """The inverse of `_interleave`: planes[r][c] = image[:, r::2, c::2] as (N*rows*cols, C)."""
    c = image.shape[-1]
    return [[image[:, r::2, s::2].reshape(-1, c) for s in range(2)] for r in range(2)]


def _sandwich(matrix: tuple[tuple[float, ...], ...], grid: list[list[jax.Array]]):
    """`matrix @ grid @ matrix^T` for a grid of arrays (each entry an array, the products
    taken entry-wise), written out as sums that skip the zero coefficients."""

    def combine(arrays: list[jax.Array]) -> list[jax.Array]:
        out = []
        for coefficients in matrix:
            terms = [
                c * a if c not in (1, -1) else (a if c == 1 else -a)
                for c, a in zip(coefficients, arrays, strict=True)
                if c != 0
            ]
            out.append(functools.reduce(jnp.add, terms))
        return out

    columns = [combine([row[j] for row in grid]) for j in range(len(grid[0]))]  # [j][a]
    return [combine([column[a] for column in columns]) for a in range(len(matrix))]


def image_by_image(fn: Callable[..., jax.Array], x: jax.Array, *args: object) -> jax.Array:
    """`fn(x, *args)` for a function that treats the images of the batch `x` independently,
    computed one image at a time and concatenated (unrolled: XLA:CPU runs a convolution
    inside a loop far slower still). The gradients of shared arguments sum over the images.

    Where the run has more than one device, batches are sharded over them and `x` stays
    whole: a slice of one image of a sharded batch is computed on every device (with 8
    simulated CPU devices the train step ran 4.5x slower and compiled 4x longer).
    """
    if x.shape[0] == 1 or jax.device_count() > 1:
        return fn(x, *args)
    return jnp.concatenate([fn(x[i : i + 1], *args) for i in range(x.shape[0])], axis=0)


@jax.custom_vjp
def conv2d_reflect_fast(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 'VALID' correlation (`conv2d(x, kernel)`), fast on XLA:CPU.

    Meant for an input that was just padded (reflect or replicate): convolves with zero
    padding k // 2 on each side and keeps the interior, the outputs whose window lies
    inside `x`, which are exactly the 'VALID' ones. Gradients: see `_reflect_fast_bwd`.
    """
    return _same_interior(x, kernel)


def _same_interior(x: jax.Array, kernel: jax.Array) -> jax.Array:
    kh, kw = kernel.shape[:2]
    ph, pw = kh // 2, kw // 2
    y = lax.conv_general_dilated(x, kernel, (1, 1), ((ph, ph), (pw, pw)), dimension_numbers=_DIMS)
    out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    return y[:, ph : ph + out_h, pw : pw + out_w]


def _reflect_fast_fwd(x: jax.Array, kernel: jax.Array):
    return _same_interior(x, kernel), (x, kernel)


def _reflect_fast_bwd(residuals, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
    """dX: the 'VALID' convolution's transpose, a full correlation of dY with the flipped,
    in/out-swapped kernel (`_full_correlation`). dW: `_kernel_gradient`."""
    x, kernel = residuals
    flipped = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    dx = _full_correlation(dy, flipped)
    return dx.astype(x.dtype), _kernel_gradient(x, dy, kernel)


conv2d_reflect_fast.defvjp(_reflect_fast_fwd, _reflect_fast_bwd)


def _full_correlation(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 correlation with zero padding k - 1 on every side, fast on XLA:CPU.

    Pads by k - 1 - k // 2 explicitly and lets the convolution pad k // 2 ('SAME'-style,
    XLA:CPU's fast case: 4x faster for 64 -> 3 channels, 7x7). The optimization barrier keeps
    XLA from folding the explicit padding back into the convolution's.
    """
    kh, kw = kernel.shape[:2]
    extra = ((0, 0), (kh - 1 - kh // 2,) * 2, (kw - 1 - kw // 2,) * 2, (0, 0))
    padded = lax.optimization_barrier(jnp.pad(x, extra))
    same = ((kh // 2, kh // 2), (kw // 2, kw // 2))
    return lax.conv_general_dilated(padded, kernel, (1, 1), same, dimension_numbers=_DIMS)


def _kernel_gradient(x: jax.Array, dy: jax.Array, kernel: jax.Array) -> jax.Array:
    """dW of the stride-1 'VALID' correlation of `x` with `kernel`, in the form XLA:CPU runs
    fastest for one image (measured; XLA:CPU's convolutions are slow with few output features,
    and with a batch of several images as the contracted features: see `image_by_image`):

    - for fewer Cout than Cin (the last 64 -> 3 layer: 5x faster): dY, zero-padded by k - 1,
      correlated with X as the kernel, batch and feature axes swapped, giving
      (Cout, kh, kw, Cin) with the taps in reverse order;
    - otherwise X correlated with dY as the kernel, batch and feature axes swapped (X's
      channels as the batch, the image as the contracted feature), giving (Cin, kh, kw, Cout).
    """
    kh, kw = kernel.shape[:2]
    swapped = ("CHWN", "IHWO", "NHWC")
    if kernel.shape[3] < kernel.shape[2]:
        padded = jnp.pad(dy, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
        dw = lax.conv_general_dilated(padded, x, (1, 1), "VALID", dimension_numbers=swapped)
        return jnp.flip(dw, (1, 2)).transpose(1, 2, 3, 0).astype(kernel.dtype)
    dw = lax.conv_general_dilated(x, dy, (1, 1), "VALID", dimension_numbers=swapped)
    return dw.transpose(1, 2, 0, 3).astype(kernel.dtype)


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
    """`nn.ConvTranspose2d`: `conv_transpose2d_phases` when `use_fast_formulations()`, else
    `conv_transpose2d_reference`. `kernel` is PyTorch's weight transposed to (kh, kw, in,
    out)."""
    if use_fast_formulations():
        return image_by_image(conv_transpose2d_phases, x, kernel, stride, padding, output_padding)
    return conv_transpose2d_reference(x, kernel, stride, padding, output_padding)


def conv_transpose2d_phases(
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
    drift). The gradient is the closed form (see `_instance_norm_bwd`), twice as fast on
    XLA:CPU as autodiff's.
    """
    return _instance_norm(x, eps)


def _normalise(x: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
    """(x - mean) / std over H and W, and 1 / std, in at least float32."""
    wide = at_least_float32(x)
    centred = wide - jnp.mean(wide, axis=(1, 2), keepdims=True)
    inv_std = lax.rsqrt(jnp.mean(jnp.square(centred), axis=(1, 2), keepdims=True) + eps)
    return centred * inv_std, inv_std


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _instance_norm(x: jax.Array, eps: float) -> jax.Array:
    return _normalise(x, eps)[0].astype(x.dtype)


def _instance_norm_fwd(x: jax.Array, eps: float):
    normalised, inv_std = _normalise(x, eps)
    return normalised.astype(x.dtype), (normalised, inv_std)


def _instance_norm_bwd(eps: float, residuals, dy: jax.Array) -> tuple[jax.Array]:
    """With x^ the normalised input and means over H and W:
    dx = (dy - mean(dy) - x^ mean(dy x^)) / std."""
    normalised, inv_std = residuals
    g = at_least_float32(dy)  # dy has x's dtype, as the output has
    mean = functools.partial(jnp.mean, axis=(1, 2), keepdims=True)
    dx = inv_std * (g - mean(g) - normalised * mean(g * normalised))
    return (dx.astype(dy.dtype),)


_instance_norm.defvjp(_instance_norm_fwd, _instance_norm_bwd)


def at_least_float32(x: jax.Array) -> jax.Array:
    """`x` in float32, or in its own dtype if that is wider (float64)."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))
