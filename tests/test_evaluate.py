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
