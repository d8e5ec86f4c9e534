"""XLA:CPU formulations of the ops in `jaxcycle.ops`: the same results, computed faster.

XLA:CPU is slow on a few forms of convolution that the networks need: a 'VALID' convolution
(on a reflect-padded input), the backward pass of an input-dilated convolution (a transposed
convolution), and any convolution of a batch of several images rather than one. Each function
here computes what a plain `lax` op of `jaxcycle.ops` computes, in a form that avoids those
cases, and its docstring says why the two are equal: exactly, or (where the sums are taken in
another order) to float rounding. `tests/test_ops.py` checks each against the plain op, values
and gradients. What each one gained, as measured, is in `benchmarks/results/cpu_formulations.md`.

`jaxcycle.ops` calls the entry points `conv2d_zero_padded`, `conv2d_valid` and
`conv_transpose2d` where `ops.use_fast_formulations()` (on the CPU backend by default), and
`instance_norm` on every backend. Kernels are (kh, kw, in, out), taps in PyTorch's order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

_DIMS = ("NHWC", "HWIO", "NHWC")

Padding = str | tuple[tuple[int, int], tuple[int, int]]


def _conv(x: jax.Array, kernel: jax.Array, stride: int, padding: Padding) -> jax.Array:
    """The plain correlation (`lax.conv_general_dilated`), NHWC input, (kh, kw, in, out)."""
    return lax.conv_general_dilated(x, kernel, (stride, stride), padding, dimension_numbers=_DIMS)


# ----------------------------------------------------------------------------------------------
# Entry points: one per plain op of `jaxcycle.ops`.


def conv2d_zero_padded(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """The correlation with zero padding `padding` on every side (`ops.conv2d_padded` with
    `pad_mode='zero'`): strided ones `strided_conv` `image_by_image`, stride-1 ones plain."""
    if stride > 1:
        return image_by_image(strided_conv, x, kernel, stride, padding)
    if kernel.shape[3] == 1:
        return single_output_conv(x, kernel, padding)
    return _conv_zero_padded(x, kernel, stride, padding)


def _conv_zero_padded(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    return _conv(x, kernel, stride, ((padding, padding), (padding, padding)))


def conv2d_valid(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    """The 'VALID' correlation of an input just padded by `ops.pad2d` (`ops.conv2d`).

    Stride 1: `conv3x3_winograd` for a 3x3 kernel whose output has even height and width (a
    padded input of even sides; Winograd takes the batch whole), else `conv2d_reflect_fast`
    `image_by_image`. Strided: the plain convolution.
    """
    if stride > 1:
        return _conv(x, kernel, stride, "VALID")
    if kernel.shape[:2] == (3, 3) and x.shape[1] % 2 == x.shape[2] % 2 == 0:
        return conv3x3_winograd(x, kernel)
    return image_by_image(conv2d_reflect_fast, x, kernel)


def conv_transpose2d(
    x: jax.Array, kernel: jax.Array, stride: int, padding: int, output_padding: int = 0
) -> jax.Array:
    """`ops.conv_transpose2d_reference`, as `conv_transpose2d_gemm` on the whole batch (its
    matrix product takes every image's pixels as rows), differentiated by autodiff."""
    return conv_transpose2d_gemm(x, kernel, stride, padding, output_padding)


# ----------------------------------------------------------------------------------------------
# A batch one image at a time.


def image_by_image(fn: Callable[..., jax.Array], x: jax.Array, *args: object) -> jax.Array:
    """`fn(x, *args)` for a function that treats the images of the batch `x` independently,
    computed one image at a time (unrolled, not in a loop) and concatenated.

    Equal to `fn(x, *args)` because image i of the result depends on image i of `x` alone.
    The gradients of the shared `args` are the sums over the images, as autodiff's of the
    batched call (summed in another order: equal to float rounding).

    Where the run has more than one device, batches are sharded over them and `x` is left
    whole: a per-image slice of a sharded batch would be computed on every device.
    """
    if not _one_image_at_a_time(x):
        return fn(x, *args)
    return jnp.concatenate([fn(x[i : i + 1], *args) for i in range(x.shape[0])], axis=0)


def _one_image_at_a_time(x: jax.Array) -> bool:
    """Whether to split the batch `x` into its images: more than one image, one device."""
    return x.shape[0] > 1 and jax.device_count() == 1


# ----------------------------------------------------------------------------------------------
# 'VALID' convolution as the interior of a zero-padded one, with its gradients.


@jax.custom_vjp
def conv2d_reflect_fast(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 'VALID' correlation (`ops.conv2d(x, kernel)`) as the interior of a correlation
    with zero padding k // 2 on each side (XLA:CPU's fast case, 'SAME'-style padding).

    Why equal: with zero padding p = k // 2, output o of the padded correlation reads inputs
    o - p ... o - p + k - 1. For p <= o <= p + H - k these all lie inside `x`, no zero is read,
    and output o is the 'VALID' output o - p; these H - k + 1 outputs are the ones kept, so
    the result is exactly the 'VALID' one. Meant for an input that was just padded (reflect
    or replicate). Gradients: see `_reflect_fast_bwd`.
    """
    return _same_interior(x, kernel)


def _same_interior(x: jax.Array, kernel: jax.Array) -> jax.Array:
    kh, kw = kernel.shape[:2]
    ph, pw = kh // 2, kw // 2
    y = _conv(x, kernel, 1, ((ph, ph), (pw, pw)))
    out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    return y[:, ph : ph + out_h, pw : pw + out_w]


def _reflect_fast_fwd(x: jax.Array, kernel: jax.Array):
    return _same_interior(x, kernel), (x, kernel)


def _reflect_fast_bwd(residuals, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The gradients of y[o] = sum_t x[o + t] w[t] (per axis; a matrix product over channels).

    dX: dx[i] = sum_t dy[i - t] w[t]^T over the t with 0 <= i - t <= H - k, the full
    correlation of dY (zero beyond its edges) with the flipped kernel, in and out swapped
    (`_full_correlation`). dW: dw[t] = sum over images and o of x[o + t]^T dy[o]
    (`_kernel_gradient`). The same sums as autodiff's, taken in another order.
    """
    x, kernel = residuals
    dx = _full_correlation(dy, _swap_io(jnp.flip(kernel, (0, 1))))
    return dx.astype(x.dtype), _kernel_gradient(x, dy, kernel)


conv2d_reflect_fast.defvjp(_reflect_fast_fwd, _reflect_fast_bwd)


def _full_correlation(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 correlation with zero padding k - 1 on every side.

    Pads by k - 1 - k // 2 explicitly and lets the convolution pad the other k // 2
    ('SAME'-style, XLA:CPU's fast case): the same zeros in all, so the same result. The
    optimization barrier keeps XLA from folding the explicit padding back into the
    convolution's.
    """
    kh, kw = kernel.shape[:2]
    extra = ((0, 0), (kh - 1 - kh // 2,) * 2, (kw - 1 - kw // 2,) * 2, (0, 0))
    padded = lax.optimization_barrier(jnp.pad(x, extra))
    return _conv(padded, kernel, 1, ((kh // 2, kh // 2), (kw // 2, kw // 2)))


def _kernel_gradient(x: jax.Array, dy: jax.Array, kernel: jax.Array) -> jax.Array:
    """dW[t] = sum over images n and outputs o of x[n, o + t]^T dy[n, o] (per axis), for the
    stride-1 'VALID' correlation of `x` with `kernel`, as one convolution with the batch and
    feature axes swapped (the images become the contracted features):

    - Cout >= Cin: X, read as CHWN (its channels the batch, its images the features),
      correlated with dY, read as IHWO (a kernel as large as dY), gives out[ci, t, co] =
      sum_{n, o} x[n, t + o, ci] dy[n, o, co]: dW as (Cin, kh, kw, Cout).
    - Cout < Cin (the last 64 -> 3 layer: XLA:CPU is slow with few output features): dY,
      zero-padded by k - 1 and read as CHWN, correlated with X read as IHWO, gives out[co, s,
      ci] = sum_{n, u} dy[n, s + u - (k - 1), co] x[n, u, ci], which is dW at tap
      t = k - 1 - s (put o = s + u - (k - 1)): dW as (Cout, kh, kw, Cin), taps reversed.
    """
    kh, kw = kernel.shape[:2]
    swapped = ("CHWN", "IHWO", "NHWC")
    if kernel.shape[3] < kernel.shape[2]:
        padded = jnp.pad(dy, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
        dw = lax.conv_general_dilated(padded, x, (1, 1), "VALID", dimension_numbers=swapped)
        return jnp.flip(dw, (1, 2)).transpose(1, 2, 3, 0).astype(kernel.dtype)
    dw = lax.conv_general_dilated(x, dy, (1, 1), "VALID", dimension_numbers=swapped)
    return dw.transpose(1, 2, 0, 3).astype(kernel.dtype)


# ----------------------------------------------------------------------------------------------
# A convolution with one output channel, its kernel gradient as sums of products.


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def single_output_conv(x: jax.Array, kernel: jax.Array, padding: int) -> jax.Array:
    """The stride-1 correlation with zero padding `padding` and one output channel (the
    critic's last layer), the plain one, whose kernel gradient is `_single_output_kernel_
    gradient` (XLA:CPU's convolution for it reads the input once per output pixel: 6 ms
    against 1 ms at 16x16x512, 25 against 4 ms at 32x32x512) and whose input gradient is
    autodiff's."""
    return _conv_zero_padded(x, kernel, 1, padding)


def _single_output_fwd(x: jax.Array, kernel: jax.Array, padding: int):
    return single_output_conv(x, kernel, padding), (x, kernel)


def _single_output_bwd(padding: int, residuals, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
    x, kernel = residuals
    (dx,) = jax.vjp(lambda x: _conv_zero_padded(x, kernel, 1, padding), x)[1](dy)
    images = [(x[i : i + 1], dy[i : i + 1]) for i in range(x.shape[0])]
    pairs = images if _one_image_at_a_time(x) else [(x, dy)]
    dw = functools.reduce(
        jnp.add, [_single_output_kernel_gradient(a, b, kernel, padding) for a, b in pairs]
    )
    return dx, dw


single_output_conv.defvjp(_single_output_fwd, _single_output_bwd)


def _single_output_kernel_gradient(
    x: jax.Array, dy: jax.Array, kernel: jax.Array, padding: int
) -> jax.Array:
    """dW[a, b, c, 0] = sum over images n and outputs (h, w) of x_p[n, h + a, w + b, c]
    dy[n, h, w, 0], x_p the zero-padded input: the definition, one multiply-and-sum per tap,
    each reading the input once (the sums taken in another order than autodiff's: equal to
    float rounding)."""
    kh, kw = kernel.shape[:2]
    padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    out_h, out_w = dy.shape[1:3]
    taps = [
        [jnp.sum(padded[:, a : a + out_h, b : b + out_w] * dy, axis=(0, 1, 2)) for b in range(kw)]
        for a in range(kh)
    ]
    return jnp.stack([jnp.stack(row) for row in taps])[..., None].astype(kernel.dtype)


# ----------------------------------------------------------------------------------------------
# Winograd F(2x2, 3x3), with its gradients.

# Output tile Y = A^T [(G g G^T) * (B^T d B)] A for a 4x4 input tile d and a 3x3 kernel g
# (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016). Each sandwich
# M X M^T of a grid of arrays is written out as sums that skip the zeros (`_sandwich`), which
# XLA:CPU runs faster than one product with the Kronecker square of M.
_WINOGRAD_B_T = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
_WINOGRAD_G = ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1))
_WINOGRAD_A_T = ((1, 1, 1, 0), (0, 1, -1, -1))


@jax.custom_vjp
def conv3x3_winograd(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 3x3 'VALID' correlation (`ops.conv2d(x, kernel)`) by Winograd's F(2x2, 3x3).

    `x` is (N, H + 2, W + 2, Cin) with H and W even (a padded input), `kernel` (3, 3, Cin,
    Cout). The output's 2x2 tiles read overlapping 4x4 input tiles, 2 apart.

    Why equal: along one axis, F(2, 3) computes the two outputs of a 4-sample tile d with a
    3-tap kernel g as A^T [(G g) * (B^T d)]. Written out, B^T d = (d0 - d2, d1 + d2, d2 - d1,
    d1 - d3) and G g = (g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2); with m their
    element-wise product, A^T m = (m0 + m1 + m2, m1 - m2 - m3) = (d0 g0 + d1 g1 + d2 g2,
    d1 g0 + d2 g1 + d3 g2), the two correlation outputs. Applied along both axes this gives
    Y = A^T [(G g G^T) * (B^T d B)] A. The transforms are linear and act on the spatial axes
    only, so the sum over input channels can be taken inside: each of the 16 positions of the
    transformed tiles is one (tiles, Cin) x (Cin, Cout) matrix product. In floating point the
    result differs from the direct sum by rounding only: the coefficients 0, +-1 and +-1/2
    are exact, and only the order of the sums differs. Gradients: see `_winograd_bwd`.
    """
    v, u = _winograd_operands(x, kernel)
    m = [[v[a][b] @ u[a][b] for b in range(4)] for a in range(4)]
    y = _sandwich(_WINOGRAD_A_T, m)  # A^T m A: y[r][c] is output (2 * row + r, 2 * col + c)
    n, hp, wp, _ = x.shape
    return _interleave(y, (n, (hp - 2) // 2, (wp - 2) // 2))


def _winograd_operands(x: jax.Array, kernel: jax.Array):
    """The transformed input tiles B^T d B and kernel G g G^T: 4x4 grids of (tiles, Cin) and
    (Cin, Cout) matrices. Tile (row, col) is x[:, 2 * row + i, 2 * col + j], i, j < 4."""
    n, hp, wp, cin = x.shape
    rows, cols = (hp - 2) // 2, (wp - 2) // 2
    tiles = [
        [x[:, i : i + 2 * rows : 2, j : j + 2 * cols : 2].reshape(-1, cin) for j in range(4)]
        for i in range(4)
    ]
    v = _sandwich(_WINOGRAD_B_T, tiles)
    u = _sandwich(_WINOGRAD_G, [[kernel[i, j] for j in range(3)] for i in range(3)])
    # Keeps XLA from fusing the transforms into the products (it changes no value).
    return lax.optimization_barrier((v, u))


def _winograd_fwd(x: jax.Array, kernel: jax.Array):
    return conv3x3_winograd(x, kernel), (x, kernel)


def _winograd_bwd(residuals, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The forward's linear maps transposed, in reverse order (the adjoint of Z -> P Z P^T is
    dZ -> P^T dZ P): dm = A dY A^T; per position dv = dm u^T and du = v^T dm; then
    dd = B dv B^T, summed back onto the overlapping input tiles (the transpose of reading
    them), and dg = G^T du G. The operands v and u are recomputed, not stored."""
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


# ----------------------------------------------------------------------------------------------
# Strided and transposed convolutions, each differentiated through the other.
#
# Along one axis a strided correlation computes y[o] = sum_t x[s o - p + t] w[t] (x zero
# outside), and a transposed convolution z[s i - p + t] += x[i] w[t]: the same index map read
# the other way, so each one's input gradient is the other one, with the kernel's input and
# output channels swapped. Autodiff's instead differentiates a strided correlation through an
# input-dilated convolution, which XLA:CPU runs slowly. The strided correlation below takes
# its input gradient as `transposed_conv` (2x faster for the generator's d128 at 256x256,
# `benchmarks/results/cpu_formulations.md`). The networks' own transposed convolutions are
# `conv_transpose2d_gemm` differentiated by autodiff, faster still than the pair's gradients.


def _swap_io(kernel: jax.Array) -> jax.Array:
    return kernel.transpose(0, 1, 3, 2)


def _strided_output_padding(size_in: int, size_out: int, k: int, stride: int, padding: int) -> int:
    """The output_padding that makes the transposed convolution of a `size_out` map (the
    strided correlation's output) `size_in` long, as its input was (0 <= it < stride)."""
    return size_in - ((size_out - 1) * stride - 2 * padding + k)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def strided_conv(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
    """The correlation with stride `stride` and zero padding `padding` (the plain one), whose
    input gradient is `transposed_conv` of dY and whose kernel gradient is autodiff's."""
    return _conv_zero_padded(x, kernel, stride, padding)


def _strided_conv_fwd(x: jax.Array, kernel: jax.Array, stride: int, padding: int):
    return strided_conv(x, kernel, stride, padding), (x, kernel)


def _strided_conv_bwd(stride: int, padding: int, residuals, dy: jax.Array):
    """dX[s o - p + t] += dY[o] w[t]^T: the transposed convolution of dY with the kernel's
    channels swapped, padding p, its output_padding what makes it X's size. Where that
    differs between the axes (only when H and W differ in parity) dX is autodiff's; dW is
    always autodiff's."""
    x, kernel = residuals
    k = kernel.shape[0]
    rows, cols = (
        _strided_output_padding(x.shape[a], dy.shape[a], k, stride, padding) for a in (1, 2)
    )
    if rows != cols:
        conv = functools.partial(_conv_zero_padded, stride=stride, padding=padding)
        return jax.vjp(conv, x, kernel)[1](dy)
    dx = transposed_conv(dy, _swap_io(kernel), stride, padding, rows)
    _, pullback = jax.vjp(lambda w: _conv_zero_padded(x, w, stride, padding), kernel)
    (dw,) = pullback(dy)
    return dx.astype(x.dtype), dw


strided_conv.defvjp(_strided_conv_fwd, _strided_conv_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def transposed_conv(
    x: jax.Array, kernel: jax.Array, stride: int, padding: int, output_padding: int
) -> jax.Array:
    """`conv_transpose2d_gemm`, whose gradients are those of the strided correlation it is
    the transpose of: dX that correlation of dZ, dW its kernel gradient."""
    return conv_transpose2d_gemm(x, kernel, stride, padding, output_padding)


def _transposed_conv_fwd(x, kernel, stride, padding, output_padding):
    return transposed_conv(x, kernel, stride, padding, output_padding), (x, kernel)


def _transposed_conv_bwd(stride: int, padding: int, output_padding: int, residuals, dz):
    """dX[i] = sum_t dZ[s i - p + t] w[t]^T: the strided correlation of dZ with the kernel's
    channels swapped (its output is X's size as output_padding < stride). dW[t] = sum_i
    x[i]^T dZ[s i - p + t]: the kernel gradient of that same correlation at cotangent X,
    channels swapped back."""
    del output_padding  # dZ's size carries it
    x, kernel = residuals
    dx, pullback = jax.vjp(lambda w: _conv_zero_padded(dz, w, stride, padding), _swap_io(kernel))
    (dw_swapped,) = pullback(x)
    return dx.astype(x.dtype), _swap_io(dw_swapped).astype(kernel.dtype)


transposed_conv.defvjp(_transposed_conv_fwd, _transposed_conv_bwd)


# ----------------------------------------------------------------------------------------------
# Transposed convolution as one matrix product, split by output phase.


def conv_transpose2d_gemm(
    x: jax.Array, kernel: jax.Array, stride: int, padding: int, output_padding: int = 0
) -> jax.Array:
    """`nn.ConvTranspose2d` (`ops.conv_transpose2d_reference`) as one matrix product for all
    the kernel's taps, Z = X [W_00 ... W_kk] (k * k * Cout columns), whose tap planes are then
    summed, shifted, into each output phase: no input dilation, whose backward pass XLA:CPU
    runs slowly, and no small per-phase convolutions. Its gradients are autodiff's (matrix
    products, pads and slices). The tap planes are one `lax.split` of Z, whose transpose
    concatenates their cotangents into dZ: read as k * k column slices, Z's cotangent would
    be k * k zero-padded copies summed, and XLA fuses whatever produced dZ's source (the
    instance norm's backward) into that sum, recomputing it per copy.

    Why equal: along one axis, output o sums x[i] w[t] over o = stride * i - padding + t. The
    outputs o = stride * m + phase take the taps t = phase + padding (mod stride), tap t from
    input i = m + (phase + padding - t) / stride (`_phase_taps`), and Z's plane t holds
    x[i] w[t] for every i: the phase is the sum of those planes, each shifted by its input
    offset, zero beyond the edges. The same products, summed in another order (equal to float
    rounding). For the generator's `ConvTranspose2d(k=3, s=2, p=1, output_padding=1)`, an
    even output takes tap 1 at input offset 0 and an odd output takes tap 2 at offset 0 plus
    tap 0 at offset +1.

    Where the output's size is not a multiple of the stride, each phase is computed for
    ceil(size / stride) positions and the interleaved result cropped to size.
    """
    k = kernel.shape[0]
    n, h, w, cin = x.shape
    cout = kernel.shape[-1]
    out_h = (h - 1) * stride - 2 * padding + k + output_padding
    out_w = (w - 1) * stride - 2 * padding + k + output_padding
    rows, cols = -(-out_h // stride), -(-out_w // stride)
    products = x.reshape(-1, cin) @ kernel.transpose(2, 0, 1, 3).reshape(cin, k * k * cout)
    planes = lax.split(products.reshape(n, h, w, k * k * cout), [cout] * (k * k), axis=3)

    def shifted(a: int, b: int, row_offset: int, col_offset: int) -> jax.Array:
        """Plane (a, b) read at (m + row_offset, c + col_offset) for m < rows, c < cols,
        zero outside it (negative padding crops)."""
        pads = ((0, 0, 0), (-row_offset, rows - h + row_offset, 0))
        pads += ((-col_offset, cols - w + col_offset, 0), (0, 0, 0))
        return lax.pad(planes[a * k + b], jnp.zeros((), x.dtype), pads)

    phases = [
        jnp.stack(
            [
                functools.reduce(
                    jnp.add,
                    [
                        shifted(a, b, row_offset, col_offset)
                        for a, row_offset in _phase_taps(k, stride, padding, ph)
                        for b, col_offset in _phase_taps(k, stride, padding, pw)
                    ],
                )
                for pw in range(stride)
            ],
            axis=3,
        )  # (n, rows, cols, stride_w, c)
        for ph in range(stride)
    ]
    y = jnp.stack(phases, axis=2)  # (n, rows, stride_h, cols, stride_w, c)
    y = y.reshape(n, rows * stride, cols * stride, cout)
    return y[:, :out_h, :out_w]


def _phase_taps(k: int, stride: int, padding: int, phase: int) -> list[tuple[int, int]]:
    """The kernel taps feeding output positions `o = stride * m + phase`, each with its input
    offset: o = stride * i - padding + t takes tap t from input i = m + (phase + padding - t)
    / stride whenever that division is exact."""
    return [
        (t, (phase + padding - t) // stride)
        for t in range(k)
        if (phase + padding - t) % stride == 0
    ]


# ----------------------------------------------------------------------------------------------
# Instance norm with its closed-form gradient.


def instance_norm(x: jax.Array, eps: float) -> jax.Array:
    """`ops.instance_norm_reference(x, eps)`, the same expression (equal values), with the
    closed-form gradient of `_instance_norm_bwd` in place of autodiff's."""
    return _instance_norm(x, eps)


def _normalise(x: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
    """(x - mean) / sqrt(var + eps) over H and W, and 1 / sqrt(var + eps), in at least
    float32: `ops.instance_norm_reference`'s expression, operation for operation."""
    wide = _at_least_float32(x)
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
    """With s = 1 / sqrt(var + eps), x^ = (x - mean) s the output and means over the P pixels
    of one image and channel: dx^/dx_j = s (e_j - 1/P - x^ x^_j / P), since dmean/dx_j = 1/P
    and ds/dx_j = -s^3 (x_j - mean) / P. Hence dx = s (dy - mean(dy) - x^ mean(dy x^))."""
    normalised, inv_std = residuals
    g = _at_least_float32(dy)  # dy has x's dtype, as the output has
    mean = functools.partial(jnp.mean, axis=(1, 2), keepdims=True)
    dx = inv_std * (g - mean(g) - normalised * mean(g * normalised))
    return (dx.astype(dy.dtype),)


_instance_norm.defvjp(_instance_norm_fwd, _instance_norm_bwd)


def _at_least_float32(x: jax.Array) -> jax.Array:
    """`ops.at_least_float32`: `x` in float32, or in its own dtype if that is wider."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))
