"""Tests of `jaxcycle.metrics` against independent float64 references on real images.

References: PSNR and SSIM from scikit-image, VIF-P from sewar, UQI from a direct float64
NumPy port of Wang & Bovik's definition written below (sewar's UQI is a different number, see
`test_sewar_uqi_is_not_the_paper_definition`). The 72 distorted pairs are crops and downscales
of twelve `skimage.data` images under six distortions; each metric is checked to 1e-4 relative.

To keep the file fast, the distorted pairs and the edge cases form ONE (82, 64, 64) batch, so
each metric is compiled once for it (`ours` and `ours_all` below); the references are computed
once per module too.
"""

from __future__ import annotations

import functools

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft
import skimage.data
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage
from sewar.full_ref import uqi as sewar_uqi
from sewar.full_ref import vifp as sewar_vifp
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.transform import resize

from jaxcycle import metrics as M

RTOL = 1e-4
ATOL = 1e-7  # only matters for values within ~1e-3 of zero
SIZE = 64
METRICS = ("psnr", "ssim", "uqi", "vif")

# ----------------------------------------------------------------------------- images


def _grey(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 3:
        img = img[..., :3].astype(np.float64) @ np.array([0.2125, 0.7154, 0.0721])
    return img.astype(np.float64)


def _crop(img: np.ndarray, top: int, left: int) -> np.ndarray:
    return img[top : top + SIZE, left : left + SIZE]


def _shrink(img: np.ndarray) -> np.ndarray:
    return resize(img, (SIZE, SIZE), anti_aliasing=True, preserve_range=True, order=1)


@functools.lru_cache(maxsize=1)
def _sources() -> dict[str, np.ndarray]:
    """Twelve 64 x 64 grey images in [0, 255]: crops keep integer values and flat patches."""
    return {
        "camera": _crop(_grey(skimage.data.camera()), 180, 200),
        "astronaut": _shrink(_grey(skimage.data.astronaut())),
        "coins": _crop(_grey(skimage.data.coins()), 40, 60),
        "moon": _crop(_grey(skimage.data.moon()), 300, 250),
        "brick": _crop(_grey(skimage.data.brick()), 100, 100),
        "grass": _shrink(_grey(skimage.data.grass())),
        "gravel": _crop(_grey(skimage.data.gravel()), 200, 300),
        "text": _crop(_grey(skimage.data.text()), 40, 100),
        "clock": _shrink(_grey(skimage.data.clock())),
        "page": _crop(_grey(skimage.data.page()), 60, 150),
        "phantom": _shrink(skimage.data.shepp_logan_phantom() * 255.0),  # flat regions, zeros
        "checkerboard": _crop(_grey(skimage.data.checkerboard()), 10, 30),
    }


def _jpeg_like(x: np.ndarray, q: float = 24.0) -> np.ndarray:
    """8 x 8 block DCT with uniform quantisation step ``q`` (JPEG without the tables)."""
    h, w = x.shape
    blocks = x.reshape(h // 8, 8, w // 8, 8) - 128.0
    coef = scipy.fft.dctn(blocks, axes=(1, 3), norm="ortho")
    coef = np.round(coef / q) * q
    out = scipy.fft.idctn(coef, axes=(1, 3), norm="ortho") + 128.0
    return np.clip(out.reshape(h, w), 0.0, 255.0)


def _distortions(x: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    sp = x.copy()
    u = rng.random(x.shape)
    sp[u < 0.03] = 0.0
    sp[u > 0.97] = 255.0
    return {
        "noise": np.clip(x + rng.normal(0.0, 12.0, x.shape), 0.0, 255.0),
        "blur": ndimage.gaussian_filter(x, 1.2),
        "shift": np.roll(x, (2, -3), axis=(0, 1)),
        "contrast": 0.6 * (x - x.mean()) + x.mean(),  # exactly affine in ref
        "jpeg": _jpeg_like(x),
        "saltpepper": sp,
    }


def _edge_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    src = _sources()
    cam, phantom = src["camera"], src["phantom"]
    const = np.full((SIZE, SIZE), 100.0)
    zeros = np.zeros((SIZE, SIZE))
    half = const.copy()
    half[:, SIZE // 2 :] = 200.0
    return {
        "identical-camera": (cam, cam),
        "identical-phantom": (phantom, phantom),
        "identical-constant": (const, const),
        "identical-zeros": (zeros, zeros),
        "constant-vs-constant": (const, const + 20.0),
        "zeros-vs-constant": (zeros, const),
        "constant-ref-textured-pred": (const, cam),
        "textured-ref-constant-pred": (cam, const),
        "two-flat-halves-vs-shifted": (half, np.roll(half, 3, axis=1)),
        "phantom-vs-zeros": (phantom, zeros),
    }


@functools.lru_cache(maxsize=1)
def _batch() -> tuple[list[str], np.ndarray, np.ndarray, int]:
    """72 distorted pairs then the edge cases, float32 in [0, 255]; and the pair count.

    The references see the same float32 values (converted to float64).
    """
    rng = np.random.default_rng(1234)
    names, refs, preds = [], [], []
    for name, img in _sources().items():
        for dname, dist in _distortions(img, rng).items():
            names.append(f"{name}-{dname}")
            refs.append(img)
            preds.append(dist)
    n_pairs = len(names)
    for name, (r, p) in _edge_cases().items():
        names.append(name)
        refs.append(r)
        preds.append(p)
    return names, np.stack(refs).astype(np.float32), np.stack(preds).astype(np.float32), n_pairs


def _f64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# ----------------------------------------------------------------------------- references


def uqi_reference(x: np.ndarray, y: np.ndarray, window: int = 8) -> float:
    """Wang & Bovik (2002) UQI of one 2-D pair, float64, straight from the definition.

    Valid window positions only (stride 1); sample (N - 1) moments as in the paper; the
    zero-denominator conventions of the authors' img_qi.m: if var(x) + var(y) == 0 (both
    windows constant, decided with max == min) and mean(x)^2 + mean(y)^2 != 0, Q is the
    luminance term 2 mx my / (mx^2 + my^2); if mean(x)^2 + mean(y)^2 == 0, Q = 1.
    """
    x, y = _f64(x), _f64(y)
    n = window * window
    wx = sliding_window_view(x, (window, window)).reshape(-1, n)
    wy = sliding_window_view(y, (window, window)).reshape(-1, n)
    mx, my = wx.mean(axis=1), wy.mean(axis=1)
    vx = ((wx - mx[:, None]) ** 2).sum(axis=1) / (n - 1)
    vy = ((wy - my[:, None]) ** 2).sum(axis=1) / (n - 1)
    cxy = ((wx - mx[:, None]) * (wy - my[:, None])).sum(axis=1) / (n - 1)
    flat_x = wx.max(axis=1) == wx.min(axis=1)
    flat_y = wy.max(axis=1) == wy.min(axis=1)
    vx[flat_x], vy[flat_y] = 0.0, 0.0
    cxy[flat_x | flat_y] = 0.0
    d1 = vx + vy
    d2 = mx**2 + my**2
    q = np.ones(len(wx))
    both = (d1 != 0) & (d2 != 0)
    q[both] = 4.0 * cxy[both] * mx[both] * my[both] / (d1[both] * d2[both])
    lum = (d1 == 0) & (d2 != 0)
    q[lum] = 2.0 * mx[lum] * my[lum] / d2[lum]
    return float(q.mean())


def sk_psnr(ref: np.ndarray, pred: np.ndarray, data_range: float) -> float:
    return peak_signal_noise_ratio(_f64(ref), _f64(pred), data_range=data_range)


def sk_ssim(ref: np.ndarray, pred: np.ndarray, data_range: float) -> float:
    """skimage SSIM with the Wang et al. settings (channel axis last for 3-D inputs)."""
    return structural_similarity(
        _f64(ref),
        _f64(pred),
        data_range=data_range,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=-1 if np.ndim(ref) == 3 else None,
    )


def sewar_vif(ref: np.ndarray, pred: np.ndarray) -> float:
    return sewar_vifp(_f64(ref), _f64(pred), sigma_nsq=2)


def uqi_reference_channels(ref: np.ndarray, pred: np.ndarray) -> float:
    if ref.ndim == 2:
        return uqi_reference(ref, pred)
    return float(np.mean([uqi_reference(ref[..., c], pred[..., c]) for c in range(ref.shape[-1])]))


def each(fn, refs, preds, *args) -> np.ndarray:
    return np.array([fn(r, p, *args) for r, p in zip(refs, preds, strict=True)])


def _assert_close(ours, theirs, names: list[str], rtol: float = RTOL) -> None:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape == (len(names),)
    assert np.all(np.isfinite(ours)), [n for n, v in zip(names, ours, strict=True) if np.isnan(v)]
    err = np.abs(ours - theirs)
    bad = err > ATOL + rtol * np.abs(theirs)
    detail = [(n, float(a), float(b)) for n, a, b, e in zip(names, ours, theirs, bad, strict=True)]
    assert not bad.any(), f"max rel err {np.max(err / np.abs(theirs)):.3g}; {detail}"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def batch() -> tuple[list[str], np.ndarray, np.ndarray, int]:
    return _batch()


@pytest.fixture(scope="module")
def ours(batch) -> dict[str, np.ndarray]:
    """Each public metric on the whole [0, 255] batch (one compilation each)."""
    _, refs, preds, _ = batch
    return {
        "psnr": np.asarray(M.psnr(refs, preds, 255.0)),
        "ssim": np.asarray(M.ssim(refs, preds, 255.0)),
        "uqi": np.asarray(M.uqi(refs, preds)),
        "vif": np.asarray(M.vif(refs, preds)),
    }


@pytest.fixture(scope="module")
def ours_all(batch) -> dict[str, np.ndarray]:
    """`all_metrics` on the batch mapped to [0, 1] with `to_unit_range` (data_range 1)."""
    _, refs, preds, _ = batch
    out = M.all_metrics(M.to_unit_range(refs, 0, 255), M.to_unit_range(preds, 0, 255), 1.0)
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def references(batch) -> dict[str, np.ndarray]:
    """The float64 references on the 72 distorted pairs."""
    names, refs, preds, n = batch
    r, p = refs[:n], preds[:n]
    return {
        "psnr": each(sk_psnr, r, p, 255.0),
        "ssim": each(sk_ssim, r, p, 255.0),
        "uqi": each(uqi_reference, r, p),
        "vif": each(sewar_vif, r, p),
    }


# ----------------------------------------------------------------------------- vs references


def test_pairs_cover_the_brief(batch):
    names, refs, preds, n = batch
    assert n == 72 and refs.shape == (len(names), SIZE, SIZE)
    assert refs.min() >= 0 and refs.max() <= 255 and preds.min() >= 0 and preds.max() <= 255
    assert not np.all(refs[:n] == preds[:n], axis=(1, 2)).any()


@pytest.mark.parametrize("metric", METRICS)
def test_metric_matches_reference(batch, ours, references, metric):
    """PSNR vs skimage, SSIM vs skimage (Wang settings), UQI vs the definition, VIF vs sewar."""
    names, _, _, n = batch
    _assert_close(ours[metric][:n], references[metric], names[:n])


@pytest.mark.parametrize("metric", METRICS)
def test_all_metrics_on_unit_range_images(batch, ours_all, references, metric):
    """all_metrics on [0, 1] (data_range 1) == the references on the [0, 255] originals."""
    names, _, _, n = batch
    _assert_close(ours_all[metric][:n], references[metric], names[:n])


def test_vif_affine_distortion_is_accurate(batch, ours, references):
    """pred = a * ref + b: sigma_v^2 is ~0 and the one-pass sigma2 - g sigma12 would cancel.

    The residual-variance pass keeps these far below the 1e-4 of the other checks (the naive
    float32 formula is off by ~1e-5 on checkerboard-contrast).
    """
    names, _, _, n = batch
    idx = [i for i in range(n) if names[i].endswith("-contrast")]
    _assert_close(ours["vif"][idx], references["vif"][idx], [names[i] for i in idx], rtol=2e-6)


def test_ssim_is_dm_pix_ssim_with_its_builtin_filter(batch, ours):
    """Our filter_fn has exactly dm-pix's own taps: same result as its default path."""
    _, refs, preds, _ = batch
    idx = [0, 9, 30, 55, 71]
    builtin = dm_pix.ssim(
        jnp.asarray(refs[idx])[..., None], jnp.asarray(preds[idx])[..., None], max_val=255.0
    )
    np.testing.assert_allclose(ours["ssim"][idx], np.asarray(builtin), rtol=1e-5)


def test_psnr_data_range_is_used_not_inferred(batch, ours):
    _, refs, preds, _ = batch
    r, p = refs[:6] / np.float32(255.0), preds[:6] / np.float32(255.0)
    np.testing.assert_allclose(np.asarray(M.psnr(r, p, 1.0)), each(sk_psnr, r, p, 1.0), rtol=RTOL)
    dr = np.array([1.0, 2.0, 0.5, 1.0, 4.0, 1.0], np.float32)  # one range per image
    per = np.asarray(M.psnr(r, p, jnp.asarray(dr)))
    np.testing.assert_allclose(per, ours["psnr"][:6] + 20 * np.log10(dr), rtol=1e-5)


def test_colour_batch_under_user_jit_with_traced_data_range():
    """RGB: SSIM/UQI/VIF average the channels, PSNR uses the joint MSE (as the references).

    Run inside a caller's jit with a traced data_range (one compilation serves both checks).
    """
    rng = np.random.default_rng(7)
    imgs = [skimage.data.astronaut()[100:164, 180:244], skimage.data.chelsea()[80:144, 150:214]]
    refs = np.stack(imgs).astype(np.float32)
    preds = np.clip(refs + rng.normal(0, 10, refs.shape), 0, 255).astype(np.float32)
    preds[1] = ndimage.gaussian_filter(refs[1], (1.0, 1.0, 0))
    names = ["astronaut-noise", "chelsea-blur"]

    @jax.jit
    def f(a, b, dr):
        return M.all_metrics(a, b, dr), M.mae(a, b), M.rmse(a, b, a > 128.0)

    ours, mae_v, rmse_v = f(refs, preds, jnp.float32(255.0))
    _assert_close(ours["psnr"], each(sk_psnr, refs, preds, 255.0), names)
    _assert_close(ours["ssim"], each(sk_ssim, refs, preds, 255.0), names)
    _assert_close(ours["uqi"], each(uqi_reference_channels, refs, preds), names)
    _assert_close(ours["vif"], each(sewar_vif, refs, preds), names)
    d = _f64(refs) - _f64(preds)
    np.testing.assert_allclose(np.asarray(mae_v), np.abs(d).mean(axis=(1, 2, 3)), rtol=1e-5)
    mask = refs > 128.0
    want = [np.sqrt((d[i][mask[i]] ** 2).mean()) for i in range(2)]
    np.testing.assert_allclose(np.asarray(rmse_v), want, rtol=1e-5)


def test_sewar_uqi_is_not_the_paper_definition(batch, ours, references):
    """Why sewar is not the UQI reference: it mixes window means into a formula for sums."""
    names, refs, preds, _ = batch
    i = names.index("camera-noise")
    paper = references["uqi"][i]
    assert abs(ours["uqi"][i] - paper) <= RTOL * abs(paper)
    assert abs(sewar_uqi(_f64(refs[i]), _f64(preds[i]), ws=8) - paper) > 0.1 * abs(paper)


# ----------------------------------------------------------------------------- edge cases


def _edge(batch, results: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    names, _, _, n = batch
    return {k: {names[i]: float(v[i]) for i in range(n, len(names))} for k, v in results.items()}


@pytest.mark.parametrize("which", ["ours", "ours_all"])
def test_identical_images(batch, which, request):
    edge = _edge(batch, request.getfixturevalue(which))
    idents = [k for k in edge["psnr"] if k.startswith("identical")]
    assert len(idents) == 4
    for name in idents:
        assert edge["psnr"][name] == np.inf, name
        for metric in ("ssim", "uqi", "vif"):
            assert edge[metric][name] == 1.0, (metric, name)


def test_constant_and_flat_images_never_nan(batch, ours, ours_all):
    names, refs, preds, n = batch
    for results in (ours, ours_all):
        for k, v in results.items():
            assert not np.isnan(v).any(), (k, dict(zip(names, v, strict=True)))
    # Where the references are defined, they still agree.
    e_names, e_refs, e_preds = names[n:], refs[n:], preds[n:]
    _assert_close(ours["ssim"][n:], each(sk_ssim, e_refs, e_preds, 255.0), e_names)
    _assert_close(ours["uqi"][n:], each(uqi_reference, e_refs, e_preds), e_names)
    vif = _edge(batch, ours)["vif"]
    for name in ("textured-ref-constant-pred", "two-flat-halves-vs-shifted", "phantom-vs-zeros"):
        i = names.index(name)
        theirs = sewar_vif(refs[i], preds[i])
        assert abs(vif[name] - theirs) <= ATOL + RTOL * abs(theirs), (name, vif[name], theirs)
    # A constant reference carries no information: den == 0 -> 0 unless identical (sewar: NaN).
    for name in ("constant-vs-constant", "zeros-vs-constant", "constant-ref-textured-pred"):
        assert vif[name] == 0.0, name
    # UQI of two constant windows is the luminance term; both zero -> 1.
    uqi = _edge(batch, ours)["uqi"]
    assert uqi["constant-vs-constant"] == pytest.approx(2 * 100 * 120 / (100**2 + 120**2), 1e-6)
    assert uqi["zeros-vs-constant"] == 0.0
    assert uqi["identical-zeros"] == 1.0


def test_float32_flat_windows_off_the_integer_grid():
    """Constant windows at values like 0.1 * 255 (inexact in float32) are still exactly flat."""
    ref = np.full((1, SIZE, SIZE), 0.1, np.float32)
    ref[:, 20:40, 20:40] = 0.7
    pred = ref.copy()
    pred[:, 30:50, 5:25] = 0.3
    out = M.all_metrics(ref, pred, 1.0)
    r255, p255 = _f64(ref[0]) * 255.0, _f64(pred[0]) * 255.0
    _assert_close(out["uqi"], [uqi_reference(r255, p255)], ["uqi"])
    _assert_close(out["vif"], [sewar_vif(r255, p255)], ["vif"])


# ----------------------------------------------------------------------------- batching, jit


def test_batch_equals_image_by_image(batch, ours_all):
    """Same values one image at a time (up to float32 summation order: 1e-5)."""
    names, refs, preds, _ = batch
    for j in (0, 13, 47, 70, 75):
        r, p = M.to_unit_range(refs[j : j + 1], 0, 255), M.to_unit_range(preds[j : j + 1], 0, 255)
        for k, v in M.all_metrics(r, p, 1.0).items():
            np.testing.assert_allclose(np.asarray(v)[0], ours_all[k][j], rtol=1e-5, err_msg=k)


def test_integer_inputs_are_accepted(batch):
    _, refs, preds, _ = batch
    r8, p8 = np.round(refs[:3]).astype(np.uint8), np.round(preds[:3]).astype(np.uint8)
    np.testing.assert_allclose(np.asarray(M.psnr(r8, p8, 255)), each(sk_psnr, r8, p8, 255), 1e-6)


# ----------------------------------------------------------------------------- MAE / RMSE


def test_mae_rmse_with_and_without_mask():
    rng = np.random.default_rng(3)
    ref = rng.uniform(-1000, 2000, (3, 32, 40)).astype(np.float32)  # HU-like
    pred = (ref + rng.normal(0, 30, ref.shape)).astype(np.float32)
    mask = rng.random(ref.shape) > 0.4
    d = _f64(ref) - _f64(pred)
    np.testing.assert_allclose(np.asarray(M.mae(ref, pred)), np.abs(d).mean(axis=(1, 2)), 1e-5)
    np.testing.assert_allclose(np.asarray(M.rmse(ref, pred)), np.sqrt((d**2).mean((1, 2))), 1e-5)
    want_mae = [np.abs(d[i][mask[i]]).mean() for i in range(3)]
    want_rmse = [np.sqrt((d[i][mask[i]] ** 2).mean()) for i in range(3)]
    np.testing.assert_allclose(np.asarray(M.mae(ref, pred, mask)), want_mae, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(M.rmse(ref, pred, mask)), want_rmse, rtol=1e-5)
    # a (B, H, W) mask on (B, H, W, C) images applies to every channel
    ref_c, pred_c = np.stack([ref, ref * 0.5], -1), np.stack([pred, pred * 0.5], -1)
    d_c = _f64(ref_c) - _f64(pred_c)
    want = [np.abs(d_c[i][mask[i]]).mean() for i in range(3)]
    np.testing.assert_allclose(np.asarray(M.mae(ref_c, pred_c, mask)), want, rtol=1e-5)
    # an empty mask gives NaN, by design
    empty = mask.copy()
    empty[1] = False
    out = np.asarray(M.mae(ref, pred, empty))
    assert np.isnan(out[1]) and np.isfinite(out[[0, 2]]).all()


# ----------------------------------------------------------------------------- helpers, errors


def test_to_unit_range():
    x = jnp.asarray([[-1.0, 0.0, 1.0, 1.5]])
    np.testing.assert_allclose(np.asarray(M.to_unit_range(x, -1, 1)), [[0, 0.5, 1, 1]])
    np.testing.assert_allclose(
        np.asarray(M.to_unit_range(x, -1, 1, clip=False)), [[0, 0.5, 1, 1.25]]
    )
    hu = np.array([-1024, -1000, 500, 2000, 3000], np.int16)
    np.testing.assert_allclose(np.asarray(M.to_unit_range(hu, -1000, 2000)), [0, 0, 0.5, 1, 1])
    with pytest.raises(ValueError):
        M.to_unit_range(x, 1, 1)


def test_summarize():
    m, s = M.summarize(np.array([1.0, 2.0, 3.0, 4.0], np.float32))
    assert m == 2.5 and s == pytest.approx(np.sqrt(1.25))
    m, s = M.summarize(jnp.asarray([30.0, np.inf]))
    assert m == np.inf and np.isnan(s)
    assert all(np.isnan(v) for v in M.summarize([]))


def test_input_validation():
    a = np.zeros((2, 64, 64), np.float32)
    for bad in (0.0, -1.0, np.inf, np.nan):
        for fn in (M.psnr, M.ssim, M.all_metrics):
            with pytest.raises(ValueError):
                fn(a, a, bad)
    with pytest.raises(ValueError):
        M.psnr(a, a[:1], 1.0)
    with pytest.raises(ValueError):
        M.uqi(a[0], a[0])  # a single (H, W) image: the batch axis is required
    with pytest.raises(ValueError):
        M.vif(np.zeros((1, 40, 64)), np.zeros((1, 40, 64)))
    x41 = jax.ShapeDtypeStruct((1, 41, 41), jnp.float32)
    assert jax.eval_shape(M.vif, x41, x41).shape == (1,)  # traced, not compiled
    with pytest.raises(ValueError):
        M.ssim(np.zeros((1, 10, 64)), np.zeros((1, 10, 64)), 1.0)
    with pytest.raises(ValueError):
        M.mae(a, a, np.ones((2, 64, 63), bool))
