"""`jaxcycle metrics` and `jaxcycle evaluate`, against independent computations: scikit-image
for PSNR/SSIM, hand-computed HU errors, and the per-image CSVs for the summaries."""

import csv

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from jaxcycle.cli import main


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_metrics_on_png_folders_match_skimage(tmp_path, capsys):
    rng = np.random.default_rng(0)
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    refs = {}
    for i in range(3):
        ref = rng.integers(0, 256, (48, 48), dtype=np.uint8)
        pred = np.clip(ref + rng.normal(0, 10 * (i + 1), ref.shape), 0, 255).astype(np.uint8)
        Image.fromarray(ref).save(tmp_path / "ref" / f"{i}.png")
        Image.fromarray(pred).save(tmp_path / "pred" / f"{i}.png")
        refs[f"{i}.png"] = (ref, pred)
    out = tmp_path / "scores.csv"
    assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "pred"), "--csv", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 image(s)" in printed and "PSNR" in printed
    rows = _rows(out)
    assert [r["name"] for r in rows] == ["0.png", "1.png", "2.png"]
    for r in rows:
        ref, pred = refs[r["name"]]
        expected_psnr = peak_signal_noise_ratio(ref, pred, data_range=255)
        expected_ssim = structural_similarity(
            ref, pred, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert float(r["psnr"]) == pytest.approx(expected_psnr, rel=1e-4)
        assert float(r["ssim"]) == pytest.approx(expected_ssim, rel=1e-4)
        assert {"uqi", "vif"} <= set(r)


def test_metrics_on_nifti_reports_hu_errors(tmp_path):
    ref = np.full((48, 48, 2), 40.0, np.float32)  # soft tissue
    ref[10:30, 10:30] = 1000.0  # bone
    pred = ref + 25.0  # every voxel 25 HU too bright
    pred[0, 0, 1] += 75.0  # one voxel 100 HU off
    for name, data in (("ref", ref), ("pred", pred)):
        (tmp_path / name).mkdir()
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / name / "ct.nii.gz")
    out = tmp_path / "s.csv"
    assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "pred"), "--csv", str(out)]) == 0
    rows = _rows(out)
    assert [r["name"] for r in rows] == ["ct.nii.gz:0", "ct.nii.gz:1"]
    n = 48 * 48
    assert float(rows[0]["mae_hu"]) == pytest.approx(25.0, rel=1e-5)
    assert float(rows[1]["mae_hu"]) == pytest.approx((25.0 * (n - 1) + 100.0) / n, rel=1e-5)
    assert float(rows[1]["rmse_hu"]) == pytest.approx(np.sqrt((625 * (n - 1) + 1e4) / n), rel=1e-5)


def test_metrics_names_unmatched_files(tmp_path, capsys):
    for name in ("ref", "pred"):
        (tmp_path / name).mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "ref" / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "pred" / "b.png")
    assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "pred")]) == 1
    err = capsys.readouterr().err
    assert "a.png" in err and "b.png" in err


# --- Flags of `jaxcycle metrics`: the data range and the modality.


def _png_pairs(root, rng, n=2):
    (root / "ref").mkdir()
    (root / "pred").mkdir()
    pairs = {}
    for i in range(n):
        ref = rng.integers(0, 256, (48, 48), dtype=np.uint8)
        pred = np.clip(ref + rng.normal(0, 12, ref.shape), 0, 255).astype(np.uint8)
        Image.fromarray(ref).save(root / "ref" / f"{i}.png")
        Image.fromarray(pred).save(root / "pred" / f"{i}.png")
        pairs[f"{i}.png"] = (ref, pred)
    return pairs


def test_data_range_sets_psnr_and_ssim_as_defined(tmp_path):
    """PSNR = 10 log10(R^2 / MSE) with R in the files' levels: skimage with data_range=R."""
    pairs = _png_pairs(tmp_path, np.random.default_rng(1))
    default, ranged = tmp_path / "default.csv", tmp_path / "ranged.csv"
    ref, pred = str(tmp_path / "ref"), str(tmp_path / "pred")
    assert main(["metrics", ref, pred, "--csv", str(default)]) == 0
    assert main(["metrics", ref, pred, "--csv", str(ranged), "--data-range", "100"]) == 0
    for d, r in zip(_rows(default), _rows(ranged), strict=True):
        a, b = pairs[r["name"]]
        assert float(r["psnr"]) == pytest.approx(
            peak_signal_noise_ratio(a, b, data_range=100), rel=1e-5
        )
        assert float(r["psnr"]) - float(d["psnr"]) == pytest.approx(
            20 * np.log10(100 / 255), abs=1e-4
        )
        expected_ssim = structural_similarity(
            a, b, data_range=100, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert float(r["ssim"]) == pytest.approx(expected_ssim, rel=1e-4)
        assert r["uqi"] == d["uqi"] and r["vif"] == d["vif"]  # not range-dependent


def test_data_range_in_hu_for_ct(tmp_path):
    rng = np.random.default_rng(2)
    ref = rng.uniform(-800, 2000, (48, 48, 1)).astype(np.float32)  # inside the window
    pred = (ref + rng.normal(0, 40, ref.shape)).astype(np.float32)
    for name, data in (("ref", ref), ("pred", pred)):
        (tmp_path / name).mkdir()
        nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / name / "ct.nii")
    out = tmp_path / "s.csv"
    args = ["metrics", str(tmp_path / "ref"), str(tmp_path / "pred"), "--csv", str(out)]
    assert main([*args, "--data-range", "2000"]) == 0
    (row,) = _rows(out)
    expected = peak_signal_noise_ratio(ref.astype(np.float64), pred, data_range=2000)
    assert float(row["psnr"]) == pytest.approx(expected, rel=1e-5)
    assert float(row["mae_hu"]) == pytest.approx(np.abs(ref - pred).mean(), rel=1e-5)


def test_mr_dicom_is_scored_without_hu(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    source = get_testdata_file("MR_small.dcm")
    ds = pydicom.dcmread(source)
    assert ds.Modality == "MR"
    ref = ds.pixel_array.astype(np.float64)
    noise = np.random.default_rng(3).normal(0, 60, ref.shape)
    pred = np.clip(np.rint(ref + noise), 0, 4000).astype(ds.pixel_array.dtype)
    for name in ("ref", "pred"):
        (tmp_path / name).mkdir()
    pydicom.dcmread(source).save_as(tmp_path / "ref" / "mr.dcm")
    ds.PixelData = pred.tobytes()
    ds.save_as(tmp_path / "pred" / "mr.dcm")

    out = tmp_path / "mr.csv"
    args = ["metrics", str(tmp_path / "ref"), str(tmp_path / "pred"), "--csv", str(out)]
    assert main(args) == 0
    with open(out) as f:
        assert next(csv.reader(f)) == ["name", "psnr", "ssim", "uqi", "vif"]
    (row,) = _rows(out)
    # MR: mapped by the reference's own min..max, the prediction clipped to it.
    lo, hi = ref.min(), ref.max()
    expected = peak_signal_noise_ratio(ref, np.clip(pred, lo, hi), data_range=hi - lo)
    assert float(row["psnr"]) == pytest.approx(expected, rel=1e-5)
    # Telling it the files are CT brings the HU columns back.
    assert main([*args, "--modality", "ct", "--overwrite"]) == 0  # replaces the CSV
    assert {"mae_hu", "rmse_hu"} <= set(_rows(out)[0])
    assert float(_rows(out)[0]["mae_hu"]) == pytest.approx(np.abs(ref - pred).mean(), rel=1e-5)


# --- `jaxcycle evaluate` on a converted generator.


def _uqi(x, y, window=8):
    """Wang & Bovik's UQI, straight from the definition (valid 8x8 windows, Q map mean)."""
    from numpy.lib.stride_tricks import sliding_window_view

    n = window * window
    wx = sliding_window_view(x, (window, window)).reshape(-1, n)
    wy = sliding_window_view(y, (window, window)).reshape(-1, n)
    mx, my = wx.mean(1), wy.mean(1)
    vx, vy = wx.var(1), wy.var(1)
    cxy = ((wx - mx[:, None]) * (wy - my[:, None])).mean(1)
    d1, d2 = vx + vy, mx**2 + my**2
    q = np.ones(len(wx))
    both = (d1 > 0) & (d2 > 0)
    q[both] = 4 * cxy[both] * mx[both] * my[both] / (d1[both] * d2[both])
    lum = (d1 == 0) & (d2 > 0)
    q[lum] = 2 * mx[lum] * my[lum] / d2[lum]
    return q.mean()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A phantom paired dataset and a tiny 3-channel ResNet generator (ngf 8, one block),
    saved as a reference .pth and converted with `jaxcycle convert`."""
    torch = pytest.importorskip("torch")
    from benchmarks import torch_reference as ref
    from jaxcycle.architecture import Architecture
    from jaxcycle.data.ingest import IngestOptions, ingest
    from jaxcycle.data.phantom import write_phantom

    root = tmp_path_factory.mktemp("converted")
    write_phantom(root / "phantom", subjects=4, size=48, slices=3)
    ingest(
        root / "ds",
        [root / "phantom" / "mr"],
        [root / "phantom" / "ct"],
        IngestOptions(paired=True, train_fraction=0.5),
    )
    model = ref.randomize(ref.build(Architecture("resnet", 3, 3, 8, n_blocks=1)), seed=5)
    torch.save(model.state_dict(), root / "g.pth")
    assert main(["convert", str(root / "g.pth"), str(root / "params")]) == 0
    return root


def test_evaluate_converted_generator_writes_images_matching_its_csv(converted, tmp_path):
    from sewar.full_ref import vifp

    from jaxcycle.data.store import Dataset

    root, out = converted, tmp_path / "eval"
    params, ds = str(converted / "params"), str(converted / "ds")
    args = ["evaluate", "--dataset", ds, "--gen-ab", params, "--gen-ba", params]
    assert main([*args, "--output", str(out)]) == 0
    mr, ct = Dataset.open(root / "ds").paired_sources("test")
    assert len(mr) == 6  # 2 test subjects x 3 slices
    for gen, ref_source in (("gen_ab", ct), ("gen_ba", mr)):
        written = sorted((out / f"translated_{gen}").iterdir())
        assert len(written) == len(ref_source)
        rows = _rows(out / f"per_image_{gen}.csv")
        assert len(rows) == len(ref_source)
        for i, row in enumerate(rows):
            record = ref_source.record(i)
            assert row["name"] == f"{record['patient']}/{record['slice']}"
            png = out / f"translated_{gen}" / f"{record['patient']}_{record['slice']:04d}.png"
            levels = np.asarray(Image.open(png))
            assert levels.dtype == np.uint16 and levels.shape == (48, 48)
            pred = levels.astype(np.float64) / 65535
            reference = (ref_source.read([i])[0, ..., 0].astype(np.float64) + 1) / 2
            expected = {
                "psnr": peak_signal_noise_ratio(reference, pred, data_range=1),
                "ssim": structural_similarity(
                    reference,
                    pred,
                    data_range=1,
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                ),
                "uqi": _uqi(reference, pred),
                "vif": vifp(reference * 255, pred * 255, sigma_nsq=2),
            }
            if gen == "gen_ab":  # CT: errors in HU through the volume's window
                imap = ref_source.intensity(i)
                ref_hu, pred_hu = imap.restore(reference * 2 - 1), imap.restore(pred * 2 - 1)
                expected["mae_hu"] = np.abs(ref_hu - pred_hu).mean()
                expected["rmse_hu"] = np.sqrt(((ref_hu - pred_hu) ** 2).mean())
            else:
                assert "mae_hu" not in row
            for key, value in expected.items():  # abs: 16-bit levels, UQI/VIF near 0
                assert float(row[key]) == pytest.approx(value, rel=1e-4, abs=1e-5), (gen, i, key)
    summary = _rows(out / "summary.csv")
    assert [r["direction"] for r in summary] == ["A->B", "B->A"]
    psnr = [float(r["psnr"]) for r in _rows(out / "per_image_gen_ab.csv")]
    assert float(summary[0]["psnr_mean"]) == pytest.approx(np.mean(psnr), rel=1e-5)


def test_evaluate_does_not_overwrite_without_the_flag(converted, tmp_path, capsys):
    out = tmp_path / "eval"
    params, ds = str(converted / "params"), str(converted / "ds")
    args = ["evaluate", "--dataset", ds, "--gen-ab", params, "--output", str(out)]
    assert main(args) == 0
    assert not (out / "translated_gen_ba").exists()  # one generator: one direction
    image = next((out / "translated_gen_ab").iterdir())
    image.write_bytes(b"kept")
    assert main(args) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert image.read_bytes() == b"kept"
    assert main([*args, "--overwrite"]) == 0
    assert np.asarray(Image.open(image)).dtype == np.uint16
    assert main(["evaluate", "--dataset", ds, "--output", str(out)]) == 1  # no generator


def test_evaluate_writes_volumes_on_the_source_grid(converted, tmp_path):
    """--volumes: each test volume translated, in HU for CT, as a NIfTI with its source's
    affine whose slices are the scored outputs; DICOM series for the other direction. The
    generator is given as the .pth file itself."""
    import nibabel as nib
    import pydicom

    from jaxcycle.data.nifti import volume_to_slices
    from jaxcycle.data.store import Dataset

    out, ds, pth = tmp_path / "eval", str(converted / "ds"), str(converted / "g.pth")
    base = ["evaluate", "--dataset", ds, "--output", str(out), "--overwrite"]
    assert main([*base, "--gen-ab", pth, "--volumes", "nifti"]) == 0
    test_patients = sorted(Dataset.open(ds).split["test"])  # 2 of the 4 subjects
    written = sorted((out / "volumes_gen_ab").iterdir())
    assert [p.name.split("_")[0] for p in written] == test_patients
    for path in written:
        patient = path.name.split("_")[0]
        source = nib.load(converted / "phantom" / "mr" / f"{patient}.nii.gz")
        result = nib.load(path)
        np.testing.assert_allclose(result.affine, source.affine)
        assert result.shape == source.shape
        slices = volume_to_slices(nib.as_closest_canonical(result).get_fdata())
        for k, hu in enumerate(slices):
            levels = np.asarray(Image.open(out / "translated_gen_ab" / f"{patient}_{k:04d}.png"))
            expected = -1024 + levels.astype(np.float64) / 65535 * 4095  # the default CT window
            np.testing.assert_allclose(hu, expected, atol=0.1)
    assert main([*base, "--gen-ba", pth, "--volumes", "dicom"]) == 0
    series = sorted((out / "volumes_gen_ba").iterdir())
    assert [p.name.split("_")[0] for p in series] == test_patients
    for folder in series:
        files = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
        assert len(files) == 3 and {f.Modality for f in files} == {"MR"}
        assert all("SYNTHETIC" in f.SeriesDescription for f in files)
