"""Full-reference image-quality metrics in JAX: PSNR, SSIM, UQI, VIF, MAE and RMSE.

Every metric takes a batch: images are ``(B, H, W)`` (grey) or ``(B, H, W, C)``, the leading
axis is always the batch (a single ``(H, W, C)`` image must be given as ``x[None]``), and the
result is one value per image, shape ``(B,)``. ``ref`` is the reference (ground truth) and
``pred`` the image under test; PSNR, SSIM, UQI, MAE and RMSE are symmetric in the two, VIF
is not. The public functions are jit-compiled and can be called inside a caller's ``jax.jit``.
Integer images are converted to float32; float64 is used only where the caller passes float64
with ``jax_enable_x64`` on.

Conventions
-----------
Intensity range. ``psnr`` and ``ssim`` take an explicit, required ``data_range`` (the width of
the intensity range, e.g. 1.0 for [0, 1], 255 for 8-bit, 2.0 for [-1, 1]); it is never inferred
from the images. ``uqi`` and ``vif`` take no range: UQI is invariant to a common scaling of both
images but NOT to an offset, so it needs non-negative intensities (it is a different number for
[0, 1] and [-1, 1] images); VIF depends on the absolute scale (its visual-noise variance
``sigma_nsq = 2`` is in grey levels squared) and is meant for images in [0, 255].
``all_metrics`` takes images in ``[0, data_range]`` and computes UQI and VIF on
``x * 255 / data_range``; ``to_unit_range`` maps any stored range (``[-1, 1]`` generator
outputs, a Hounsfield window for CT) to [0, 1], after which ``data_range=1.0``.

Colour / multi-channel. SSIM, UQI and VIF are computed per channel and averaged over channels
(for SSIM and UQI, whose per-channel values are means of equally sized maps, this is the mean of
the whole ``(H', W', C)`` map). PSNR, MAE and RMSE use the error over all pixels and channels
together (PSNR from the MSE over all samples, as ``skimage.metrics.peak_signal_noise_ratio``
does), not an average of per-channel values.

Edge cases (never NaN for finite inputs and a positive ``data_range``):

- identical images: PSNR = +inf (a true ``inf``), SSIM = UQI = VIF = exactly 1.0;
- constant images, zero-variance windows: SSIM is stabilised by C1 and C2; UQI follows the
  convention of Wang & Bovik's own code (see `uqi`); VIF applies the clamps of Sheikh & Bovik's
  code and, when the reference carries no information at all (denominator 0, i.e. every window
  of the reference is flat at every scale), returns 1 for identical channels and 0 otherwise;
- MAE / RMSE with an empty mask: NaN (the mean of an empty set), by design.

Floating-point accuracy. UQI and VIF need local variances of windows that may be flat or nearly
flat, where the one-pass formula ``E[x^2] - E[x]^2`` loses every significant digit in float32
(and makes the zero-variance conventions fire at random). Both are computed with the shifted-data
algorithm instead: within each window the values are taken relative to one pixel of that same
window, so a constant window gives exactly 0 and the rounding error scales with the local
variation, not with the intensity. VIF's residual variance ``sigma_v^2`` is computed as the
variance of ``y - g x`` in a second pass rather than as ``sigma2_sq - g sigma12`` (which cancels
catastrophically when ``pred`` is an affine function of ``ref``). SSIM keeps dm-pix's one-pass
float32 moments (``E[x^2] - E[x]^2``), where C2 bounds the damage: against float64 skimage it
is within 3e-5 relative on the test images and within 1e-4 even on bright, low-contrast ones
(7e-5 seen); with ``jax_enable_x64`` and float64 inputs it agrees to 1e-13. UQI and VIF agree
with their float64 references to ~1e-6 relative. The tests check every metric to 1e-4.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "all_metrics",
    "mae",
    "psnr",
    "rmse",
    "ssim",
    "summarize",
    "to_unit_range",
    "uqi",
    "vif",
]

# SSIM parameters of Wang, Bovik, Sheikh & Simoncelli (2004).
SSIM_FILTER_SIZE = 11
SSIM_FILTER_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03

# VIF (pixel domain) constants of Sheikh & Bovik's vifvec/vifp code.
VIF_EPS = 1e-10
VIF_SCALES = 4


# ----------------------------------------------------------------------------- helpers


def _as_batch(x: jax.Array | np.ndarray, name: str) -> jax.Array:
    """Returns ``x`` as a float ``(B, H, W, C)`` array (a channel axis is added to rank 3)."""
    x = jnp.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    elif x.ndim != 4:
        raise ValueError(
            f"{name} must be a batch of images, (B, H, W) or (B, H, W, C); got shape {x.shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating) or jnp.finfo(x.dtype).bits < 32:
        x = x.astype(jnp.float32)
    return x


def _pair(ref: jax.Array | np.ndarray, pred: jax.Array | np.ndarray) -> tuple[jax.Array, jax.Array]:
    r = _as_batch(ref, "ref")
    p = _as_batch(pred, "pred")
    if r.shape != p.shape:
        raise ValueError(f"ref and pred must have the same shape; got {r.shape} and {p.shape}")
    dtype = jnp.promote_types(r.dtype, p.dtype)
    return r.astype(dtype), p.astype(dtype)


def _check_data_range(data_range: float | jax.Array | np.ndarray) -> None:
    """Rejects a non-positive or non-finite data range when its value is known at trace time."""
    try:
        value = np.asarray(data_range, dtype=np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return  # traced under the caller's jit: the value is not known here
    if value.ndim > 1:
        raise ValueError(f"data_range must be a scalar or of shape (B,); got shape {value.shape}")
    if not np.all(np.isfinite(value)) or np.any(value <= 0):
        raise ValueError(f"data_range must be positive and finite; got {data_range!r}")


def _range_per_image(data_range: float | jax.Array, dtype: jnp.dtype) -> jax.Array:
    """``data_range`` as an array broadcastable against ``(B, H, W, C)``."""
    dr = jnp.asarray(data_range, dtype=dtype)
    return dr.reshape(-1, 1, 1, 1) if dr.ndim == 1 else dr


def _identical(ref: jax.Array, pred: jax.Array, axis: tuple[int, ...]) -> jax.Array:
    return jnp.all(ref == pred, axis=axis)


def _gaussian_1d(n: int, sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of ``n`` taps centred on tap ``n // 2`` (``n`` odd), float64."""
    t = np.arange(n, dtype=np.float64) - n // 2
    g = np.exp(-(t**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(x: jax.Array, w: np.ndarray) -> jax.Array:
    """Separable 'valid' correlation of H and W of an NHWC array with the 1-D kernel ``w``.

    Written as a sum of shifted slices, which XLA fuses into one loop; it is exact in the sense
    of being an ordinary weighted sum (no convolution algorithm with its own precision setting).
    """
    n = len(w)
    ho, wo = x.shape[1] - n + 1, x.shape[2] - n + 1
    wk = [jnp.asarray(v, x.dtype) for v in w]
    y = sum(wk[k] * x[:, k : k + ho] for k in range(n))
    return sum(wk[k] * y[:, :, k : k + wo] for k in range(n))


def _sum_hw(t: jax.Array) -> jax.Array:
    """Sum over H and W of a ``(B, H, W, C)`` array: ``(B, C)``.

    Row sums as a mat-vec product with ones, then a small sum over rows. Same float32 accuracy
    as ``jnp.sum``, but on XLA:CPU a ``jnp.sum`` fed by a large elementwise map (the SSIM,
    UQI and VIF maps) is lowered to a fusion that is several times slower than computing the
    map itself (2-3x for SSIM at 256 x 256); a dot keeps the map a plain loop fusion.
    """
    t = jnp.moveaxis(t, 3, 1)
    ones = jnp.ones((t.shape[-1],), t.dtype)
    rows = jnp.einsum("bchw,w->bch", t, ones, precision=lax.Precision.HIGHEST)
    return jnp.sum(rows, axis=-1)


def _mean_map(t: jax.Array) -> jax.Array:
    """Per-image mean of a ``(B, H, W, C)`` map: the mean over channels of per-channel means."""
    return jnp.mean(_sum_hw(t), axis=-1) / (t.shape[1] * t.shape[2])


def _shifted_window_sums(
    x: jax.Array, y: jax.Array, n: int, w: np.ndarray | None
) -> tuple[jax.Array, ...]:
    """Weighted sums over every valid ``n x n`` window of data shifted by one window pixel.

    With ``xc``/``yc`` the pixel at offset ``(n // 2, n // 2)`` of each window and
    ``dx = x - xc``, ``dy = y - yc`` inside the window, returns ``(xc, yc, Sx, Sy, Sxx, Syy,
    Sxy)`` where ``Sx = sum_k w_k dx_k``, ``Sxx = sum_k w_k dx_k^2`` and so on, with the
    separable weights ``w_k = w[a] * w[b]`` (``w`` normalised to sum 1) or, for ``w=None``,
    uniform weights ``1 / n^2``. Then ``mean = xc + Sx`` and ``var = Sxx - Sx^2`` exactly, and
    the float rounding error of ``var`` is proportional to the window's own spread (zero for a
    constant window) instead of to ``mean^2`` as with ``E[x^2] - E[x]^2``.
    """
    ho, wo = x.shape[1] - n + 1, x.shape[2] - n + 1
    c = n // 2
    xc = x[:, c : c + ho, c : c + wo]
    yc = y[:, c : c + ho, c : c + wo]
    uniform = w is None
    wcol = None if uniform else [jnp.asarray(v, x.dtype) for v in w]
    wrow = None if uniform else jnp.asarray(w, x.dtype)

    def body(a: jax.Array, acc: tuple[jax.Array, ...]) -> tuple[jax.Array, ...]:
        xr = lax.dynamic_slice_in_dim(x, a, ho, axis=1)
        yr = lax.dynamic_slice_in_dim(y, a, ho, axis=1)
        sx = sy = sxx = syy = sxy = jnp.zeros_like(xc)
        for b in range(n):
            dx = xr[:, :, b : b + wo] - xc
            dy = yr[:, :, b : b + wo] - yc
            wdx, wdy = (dx, dy) if uniform else (wcol[b] * dx, wcol[b] * dy)
            sx, sy = sx + wdx, sy + wdy
            sxx, syy, sxy = sxx + wdx * dx, syy + wdy * dy, sxy + wdx * dy
        wa = 1.0 if uniform else wrow[a]
        row = (sx, sy, sxx, syy, sxy)
        return tuple(s + wa * r for s, r in zip(acc, row, strict=True))

    zero = jnp.zeros_like(xc)
    sums = lax.fori_loop(0, n, body, (zero,) * 5)
    if uniform:
        sums = tuple(s * jnp.asarray(1.0 / (n * n), x.dtype) for s in sums)
    return (xc, yc, *sums)


def _shifted_residual_var(
    x: jax.Array, y: jax.Array, g: jax.Array, n: int, w: np.ndarray
) -> jax.Array:
    """Weighted variance of ``y - g x`` over every valid ``n x n`` window (``g`` per window).

    Same shifted-data scheme as `_shifted_window_sums`: ``r = dy - g dx`` is formed per pixel
    before squaring, so the result is accurate even when ``y`` is (nearly) an affine function
    of ``x`` and the variance is tiny compared with ``var(y)``.
    """
    ho, wo = x.shape[1] - n + 1, x.shape[2] - n + 1
    c = n // 2
    xc = x[:, c : c + ho, c : c + wo]
    yc = y[:, c : c + ho, c : c + wo]
    wcol = [jnp.asarray(v, x.dtype) for v in w]
    wrow = jnp.asarray(w, x.dtype)

    def body(a: jax.Array, acc: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        xr = lax.dynamic_slice_in_dim(x, a, ho, axis=1)
        yr = lax.dynamic_slice_in_dim(y, a, ho, axis=1)
        sr = srr = jnp.zeros_like(xc)
        for b in range(n):
            r = (yr[:, :, b : b + wo] - yc) - g * (xr[:, :, b : b + wo] - xc)
            wr = wcol[b] * r
            sr, srr = sr + wr, srr + wr * r
        return acc[0] + wrow[a] * sr, acc[1] + wrow[a] * srr

    zero = jnp.zeros_like(xc)
    sr, srr = lax.fori_loop(0, n, body, (zero, zero))
    return jnp.maximum(srr - sr * sr, 0.0)


# ----------------------------------------------------------------------------- range helper


def to_unit_range(x: jax.Array | np.ndarray, lo: float, hi: float, clip: bool = True) -> jax.Array:
    """Maps intensities from ``[lo, hi]`` to ``[0, 1]``: ``(x - lo) / (hi - lo)``.

    Use it to bring stored images to the convention of `all_metrics` (images in
    ``[0, data_range]``), e.g. ``to_unit_range(x, -1, 1)`` for tanh generator outputs or
    ``to_unit_range(ct, -1000, 2000)`` for a Hounsfield window, then pass ``data_range=1.0``.
    With ``clip=True`` (default) values outside ``[lo, hi]`` are clipped to 0 and 1 (intensity
    windowing); with ``clip=False`` they are mapped linearly and may leave [0, 1].
    """
    if not hi > lo:
        raise ValueError(f"need hi > lo; got lo={lo!r}, hi={hi!r}")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    y = (x - lo) / (hi - lo)
    return jnp.clip(y, 0.0, 1.0) if clip else y


# ----------------------------------------------------------------------------- PSNR


@jax.jit
def _psnr(ref: jax.Array, pred: jax.Array, data_range: jax.Array) -> jax.Array:
    diff = ref - pred
    mse = jnp.mean(diff * diff, axis=(1, 2, 3))
    dr = jnp.asarray(data_range, ref.dtype)
    # mse == 0 gives dr^2 / 0 = +inf and log10(+inf) = +inf: never NaN for dr > 0.
    return 10.0 * jnp.log10(dr * dr / mse)


def psnr(
    ref: jax.Array | np.ndarray,
    pred: jax.Array | np.ndarray,
    data_range: float | jax.Array,
) -> jax.Array:
    """Peak signal-to-noise ratio in dB, per image: ``10 log10(data_range^2 / MSE)``.

    ``MSE`` is the mean squared difference over all pixels and channels of an image.
    ``data_range`` (required, > 0; a scalar or one value per image, shape ``(B,)``) is the width
    of the intensity range, never inferred from the images. Identical images give ``+inf``
    (exactly ``inf``, never NaN). Matches ``skimage.metrics.peak_signal_noise_ratio``.
    """
    _check_data_range(data_range)
    r, p = _pair(ref, pred)
    return _psnr(r, p, jnp.asarray(data_range, r.dtype))


# ----------------------------------------------------------------------------- SSIM


def _ssim_filter(z: jax.Array) -> jax.Array:
    """dm-pix's own SSIM blur (11 taps ``exp(-t^2 / (2 * 1.5^2))``, 'valid'), as shifted slices.

    Passed to ``dm_pix.ssim`` as ``filter_fn``: the same taps as its built-in filter (tested),
    but the built-in one lowers to ``jnp.convolve``, which is much slower on XLA:CPU.
    """
    return _filter_valid(z, _gaussian_1d(SSIM_FILTER_SIZE, SSIM_FILTER_SIGMA))


@jax.jit
def _ssim(ref: jax.Array, pred: jax.Array, data_range: jax.Array) -> jax.Array:
    dr = _range_per_image(data_range, ref.dtype)
    ssim_map = dm_pix.ssim(
        ref,
        pred,
        max_val=dr,
        filter_size=SSIM_FILTER_SIZE,
        filter_sigma=SSIM_FILTER_SIGMA,
        k1=SSIM_K1,
        k2=SSIM_K2,
        return_map=True,
        filter_fn=_ssim_filter,
    )
    value = _mean_map(ssim_map)
    return jnp.where(_identical(ref, pred, (1, 2, 3)), jnp.ones_like(value), value)


def ssim(
    ref: jax.Array | np.ndarray,
    pred: jax.Array | np.ndarray,
    data_range: float | jax.Array,
) -> jax.Array:
    """Mean structural similarity (Wang, Bovik, Sheikh & Simoncelli 2004), per image.

    Computed by ``dm_pix.ssim`` with ``max_val=data_range`` and the paper's settings: an
    11 x 11 Gaussian window with sigma 1.5 (taps ``exp(-t^2 / (2 * 1.5^2))``, t = -5..5,
    normalised), K1 = 0.01, K2 = 0.03, C1 = (K1 * data_range)^2, C2 = (K2 * data_range)^2,
    population (biased) local variances and covariance, and the SSIM map averaged over the
    'valid' window positions only (those where the whole window lies inside the image; the
    image must be at least 11 x 11). dm-pix computes the SSIM map (``return_map=True``) with
    this module's implementation of its own separable blur as ``filter_fn`` (same taps, about
    2x faster on CPU than its ``jnp.convolve``); the map is then averaged here.

    This is exactly ``skimage.metrics.structural_similarity(ref, pred, data_range=data_range,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=-1)``: skimage
    filters with 'reflect' padding but then crops ``(win - 1) / 2 = 5`` pixels from every
    border before averaging, which leaves precisely the valid positions, and its truncate=3.5
    gives the same 11-tap kernel. (dm-pix additionally clips the float32 variances to be
    non-negative and the covariance to the Cauchy-Schwarz bound; in exact arithmetic that is a
    no-op.) Float32 accuracy: dm-pix uses one-pass moments, so the result carries a rounding
    error of up to ~1e-4 relative on bright, low-contrast images (float64 inputs with
    ``jax_enable_x64``: 1e-13). Multi-channel images: the mean of the per-channel SSIMs.

    ``data_range`` (required, > 0): a scalar or shape ``(B,)``. Identical images give exactly
    1.0; constant images are well defined thanks to C1, C2 > 0 (never NaN).
    """
    _check_data_range(data_range)
    r, p = _pair(ref, pred)
    if min(r.shape[1:3]) < SSIM_FILTER_SIZE:
        raise ValueError(f"SSIM needs images of at least 11 x 11; got {r.shape[1:3]}")
    return _ssim(r, p, jnp.asarray(data_range, r.dtype))


# ----------------------------------------------------------------------------- UQI


@partial(jax.jit, static_argnames=("window",))
def _uqi(ref: jax.Array, pred: jax.Array, window: int) -> jax.Array:
    xc, yc, sx, sy, sxx, syy, sxy = _shifted_window_sums(ref, pred, window, None)
    mx, my = xc + sx, yc + sy
    vx = jnp.maximum(sxx - sx * sx, 0.0)
    vy = jnp.maximum(syy - sy * sy, 0.0)
    cxy = sxy - sx * sy
    den1 = vx + vy  # 0 exactly iff both windows are constant
    den2 = mx * mx + my * my  # 0 iff both window means are 0
    one = jnp.ones_like(den1)
    # Q = [2 cov / (vx + vy)] * [2 mx my / (mx^2 + my^2)], the product form of
    # 4 cov mx my / ((vx + vy)(mx^2 + my^2)); each factor is in [-1, 1].
    structure = jnp.where(den1 > 0, 2.0 * cxy / jnp.where(den1 > 0, den1, one), one)
    luminance = 2.0 * mx * my / jnp.where(den2 > 0, den2, one)
    q = jnp.where(den2 > 0, structure * luminance, one)
    value = _mean_map(q)
    return jnp.where(_identical(ref, pred, (1, 2, 3)), jnp.ones_like(value), value)


def uqi(
    ref: jax.Array | np.ndarray,
    pred: jax.Array | np.ndarray,
    window: int = 8,
) -> jax.Array:
    """Universal image quality index (Wang & Bovik 2002), per image.

    For every position of a ``window x window`` box that lies entirely inside the image (the
    'valid' positions, stride 1: ``(H - window + 1) x (W - window + 1)`` of them), with ``x``
    the window of ``ref`` and ``y`` that of ``pred``::

        Q = 4 cov(x, y) mean(x) mean(y) / ((var(x) + var(y)) (mean(x)^2 + mean(y)^2))

    and the index is the mean of the Q map. The paper normalises variances and covariance by
    ``N - 1``; here they are population (``1 / N``) moments, which gives the same Q because the
    factor cancels. Zero denominators follow the convention of the authors' own code
    (``img_qi.m``): if both windows are constant (var(x) + var(y) = 0) but the means are not
    both 0, ``Q = 2 mean(x) mean(y) / (mean(x)^2 + mean(y)^2)`` (the luminance term alone; 1 for
    two equal constant windows); if mean(x)^2 + mean(y)^2 = 0, ``Q = 1``. "Constant" is decided
    exactly (the shifted-data variance of a constant window is exactly 0 in floating point), not
    with a tolerance. Never NaN; identical images give exactly 1.0.

    UQI is invariant to multiplying both images by the same positive factor but not to adding
    an offset: pass non-negative intensities (e.g. [0, 1] or [0, 255], not [-1, 1]); its
    luminance term is meaningless for signed data. Multi-channel images: mean over channels.

    Note: ``sewar.full_ref.uqi`` is not this definition and is not used as a reference: it
    plugs box-filter *means* into img_qi.m's formula for window *sums* (``N * E[xy] - E[x] E[y]``
    in place of ``N * sum(xy) - sum(x) sum(y)``), and averages only ``(H - 8) x (W - 8)`` of the
    valid windows; e.g. 0.952 instead of 0.620 on a noisy 64 x 64 camera crop.
    """
    r, p = _pair(ref, pred)
    window = int(window)
    if window < 2:
        raise ValueError(f"window must be >= 2; got {window}")
    if min(r.shape[1:3]) < window:
        raise ValueError(f"images of {r.shape[1:3]} are smaller than the {window}x{window} window")
    return _uqi(r, p, window)


# ----------------------------------------------------------------------------- VIF


def _vif_windows() -> list[tuple[int, np.ndarray]]:
    """Window size ``N = 2^(4 - scale + 1) + 1`` and its Gaussian (sigma ``N / 5``) per scale."""
    out = []
    for scale in range(1, VIF_SCALES + 1):
        n = 2 ** (VIF_SCALES - scale + 1) + 1
        out.append((n, _gaussian_1d(n, n / 5.0)))
    return out


def _vif_check_size(h: int, w: int) -> None:
    for name, size in (("height", h), ("width", w)):
        s = size
        for scale, (n, _) in enumerate(_vif_windows(), start=1):
            if scale > 1:
                s = s - n + 1
                s = (s + 1) // 2 if s > 0 else 0
            if s < n:
                raise ValueError(
                    f"VIF needs images of at least 41 x 41 (4 scales); image {name} {size} "
                    f"leaves {max(s, 0)} pixels at scale {scale}, smaller than its {n}-tap window"
                )


@jax.jit
def _vif(ref: jax.Array, pred: jax.Array, sigma_nsq: jax.Array) -> jax.Array:
    dtype = ref.dtype
    eps = jnp.asarray(VIF_EPS, dtype)
    sigma_nsq = jnp.asarray(sigma_nsq, dtype)
    x, y = ref, pred
    num = jnp.zeros(x.shape[:1] + x.shape[3:], dtype)
    den = jnp.zeros_like(num)
    for scale, (n, w) in enumerate(_vif_windows(), start=1):
        if scale > 1:
            x = _filter_valid(x, w)[:, ::2, ::2]
            y = _filter_valid(y, w)[:, ::2, ::2]
        _, _, sx, sy, sxx, syy, sxy = _shifted_window_sums(x, y, n, w)
        s1 = jnp.maximum(sxx - sx * sx, 0.0)  # sigma1_sq (reference); clamp of negatives
        s2 = jnp.maximum(syy - sy * sy, 0.0)  # sigma2_sq (distorted)
        s12 = sxy - sx * sy
        g = s12 / (s1 + eps)
        # sigma2_sq - g * sigma12 == var(y - g x) + g^2 * eps exactly, for g = s12 / (s1 + eps).
        sv = _shifted_residual_var(x, y, g, n, w) + g * g * eps
        # The clamps of Sheikh & Bovik's code, in the same order.
        m = s1 < eps
        g = jnp.where(m, 0.0, g)
        sv = jnp.where(m, s2, sv)
        s1 = jnp.where(m, 0.0, s1)
        m = s2 < eps
        g = jnp.where(m, 0.0, g)
        sv = jnp.where(m, 0.0, sv)
        m = g < 0
        sv = jnp.where(m, s2, sv)
        g = jnp.where(m, 0.0, g)
        sv = jnp.where(sv <= eps, eps, sv)
        # log10 is taken as log1p (accurate for small arguments); the base cancels in num/den.
        num = num + _sum_hw(jnp.log1p(g * g * s1 / (sv + sigma_nsq)))
        den = den + _sum_hw(jnp.log1p(s1 / sigma_nsq))
    same = _identical(ref, pred, (1, 2))  # (B, C)
    safe = jnp.where(den > 0, den, jnp.ones_like(den))
    per_channel = jnp.where(den > 0, num / safe, 0.0)
    per_channel = jnp.where(same, 1.0, per_channel)
    return jnp.mean(per_channel, axis=-1)


def vif(
    ref: jax.Array | np.ndarray,
    pred: jax.Array | np.ndarray,
    sigma_nsq: float = 2.0,
) -> jax.Array:
    """Pixel-domain visual information fidelity, VIF-P (Sheikh & Bovik 2006), per image.

    The ``vifp_mscale`` of the authors' MATLAB code and ``sewar.full_ref.vifp``: 4 scales; at
    scale s = 1..4 a Gaussian window of N = 2^(4 - s + 1) + 1 = 17, 9, 5, 3 taps with sigma N/5;
    for s > 1 both images are first filtered with that scale's window ('valid') and subsampled
    by 2 (``x[::2, ::2]``). At every 'valid' window position, with local variances sigma1_sq
    (ref), sigma2_sq (pred) and covariance sigma12 (population moments, Gaussian-weighted),
    negative variances clamped to 0, eps = 1e-10::

        g = sigma12 / (sigma1_sq + eps);  sv_sq = sigma2_sq - g * sigma12
        sigma1_sq < eps:  g = 0, sv_sq = sigma2_sq, sigma1_sq = 0
        sigma2_sq < eps:  g = 0, sv_sq = 0
        g < 0:            sv_sq = sigma2_sq, g = 0
        sv_sq <= eps:     sv_sq = eps
        num += sum log10(1 + g^2 sigma1_sq / (sv_sq + sigma_nsq))
        den += sum log10(1 + sigma1_sq / sigma_nsq)

    and VIF = num / den, with num and den summed over all scales before the ratio.
    ``sigma_nsq = 2`` is the visual-noise variance in grey levels squared, so VIF depends on the
    intensity scale: it is meant for images in [0, 255] (`all_metrics` rescales). Images must be
    at least 41 x 41 so that the 4th scale is not empty.

    Edge cases: identical images give exactly 1.0. If ``den == 0`` (every window of the
    reference is flat, e.g. a constant reference: it carries no information) the ratio 0/0 is
    defined as 1 when the channel of ``pred`` equals that of ``ref`` and 0 otherwise. Never NaN.
    Not symmetric. Multi-channel images: the mean of the per-channel VIFs (as sewar).
    """
    r, p = _pair(ref, pred)
    _vif_check_size(r.shape[1], r.shape[2])
    return _vif(r, p, jnp.asarray(sigma_nsq, r.dtype))


# ----------------------------------------------------------------------------- MAE / RMSE


def _masked_mean(values: jax.Array, mask: jax.Array | np.ndarray | None) -> jax.Array:
    """Per-image mean of ``values`` (B, H, W, C) over the samples where ``mask`` is True."""
    if mask is None:
        return jnp.mean(values, axis=(1, 2, 3))
    m = jnp.asarray(mask).astype(bool)
    if m.ndim == 3:
        m = m[..., None]
    if m.ndim != 4 or m.shape[:3] != values.shape[:3] or m.shape[3] not in (1, values.shape[3]):
        raise ValueError(
            f"mask must have shape (B, H, W) or (B, H, W, C|1) matching the images "
            f"{values.shape}; got {jnp.shape(mask)}"
        )
    m = jnp.broadcast_to(m, values.shape)
    total = jnp.sum(jnp.where(m, values, 0.0), axis=(1, 2, 3))
    count = jnp.sum(m, axis=(1, 2, 3)).astype(values.dtype)
    return total / count  # empty mask: 0 / 0 = NaN, by design


@jax.jit
def _mae(ref: jax.Array, pred: jax.Array, mask: jax.Array | None) -> jax.Array:
    return _masked_mean(jnp.abs(ref - pred), mask)


@jax.jit
def _rmse(ref: jax.Array, pred: jax.Array, mask: jax.Array | None) -> jax.Array:
    d = ref - pred
    return jnp.sqrt(_masked_mean(d * d, mask))


def mae(
    ref: jax.Array | np.ndarray,
    pred: jax.Array | np.ndarray,
    mask: jax.Array | np.ndarray | None = None,
) -> jax.Array:
    """Mean absolute error per image, in the images' own units (e.g. HU for CT).

    The mean is over all pixels and channels, or only over those where the boolean ``mask``
    is True (``mask`` of shape (B, H, W), applied to every channel, or (B, H, W, C)), e.g. a
    body mask so that air does not dilute the error. An image whose mask is empty gives NaN.
    """
    r, p = _pair(ref, pred)
    return _mae(r, p, None if mask is None else jnp.asarray(mask))


def rmse(
    ref: jax.Array | np.ndarray,
    pred: jax.Array | np.ndarray,
    mask: jax.Array | np.ndarray | None = None,
) -> jax.Array:
    """Root mean squared error per image, in the images' own units; ``mask`` as in `mae`."""
    r, p = _pair(ref, pred)
    return _rmse(r, p, None if mask is None else jnp.asarray(mask))


# ----------------------------------------------------------------------------- all together


@jax.jit
def _all_metrics(
    ref: jax.Array, pred: jax.Array, data_range: jax.Array, scale: jax.Array
) -> dict[str, jax.Array]:
    r255, p255 = ref * scale, pred * scale
    return {
        "psnr": _psnr(ref, pred, data_range),
        "ssim": _ssim(ref, pred, data_range),
        "uqi": _uqi(r255, p255, 8),
        "vif": _vif(r255, p255, jnp.asarray(2.0, ref.dtype)),
    }


def all_metrics(
    ref: jax.Array | np.ndarray,
    pred: jax.Array | np.ndarray,
    data_range: float | jax.Array,
    vif_scale: float | None = None,
) -> dict[str, jax.Array]:
    """PSNR, SSIM, UQI and VIF of a batch in one compiled call: ``{name: (B,) array}``.

    Images must be in ``[0, data_range]`` (use `to_unit_range` first for [-1, 1] or HU data).
    PSNR and SSIM use ``data_range`` directly; UQI (window 8) and VIF (sigma_nsq = 2) are
    computed on ``x * vif_scale``, by default ``255 / data_range``, i.e. on the [0, 255] scale
    VIF's constants are defined for (UQI does not depend on the scale, only on the zero).
    Images must be at least 41 x 41 (VIF's four scales).
    """
    _check_data_range(data_range)
    r, p = _pair(ref, pred)
    if min(r.shape[1:3]) < SSIM_FILTER_SIZE:
        raise ValueError(f"SSIM needs images of at least 11 x 11; got {r.shape[1:3]}")
    _vif_check_size(r.shape[1], r.shape[2])
    if vif_scale is None:
        scale = jnp.asarray(255.0, r.dtype) / _range_per_image(data_range, r.dtype)
    else:
        scale = jnp.asarray(vif_scale, r.dtype)
    return _all_metrics(r, p, jnp.asarray(data_range, r.dtype), scale)


# ----------------------------------------------------------------------------- summary


def summarize(values: Sequence[float] | np.ndarray | jax.Array) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0) of per-image values, with NumPy.

    Computed in float64 over all values, no filtering: an ``inf`` (the PSNR of an image equal
    to its reference) makes the mean ``inf`` and the std NaN (inf - inf), which is reported as
    is rather than hidden; an empty input gives (nan, nan). Returns Python floats.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return float("nan"), float("nan")
    with np.errstate(invalid="ignore", over="ignore"):
        return float(np.mean(v)), float(np.std(v, ddof=0))
