"""`jaxcycle translate` on NIfTI volumes and DICOM series, against expectations computed here:
the reference PyTorch network run slice by slice on slices cut with nibabel / pydicom, the
documented intensity conventions (CT window [-1024, 3071] HU, MR 0.5/99.5 percentiles, MR out
on --mr-range) written out in NumPy, and the source files' own geometry."""

import os
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.testing import data_path
from PIL import Image
from pydicom.data import get_testdata_file

from jaxcycle.architecture import Architecture
from jaxcycle.cli import main

torch = pytest.importorskip("torch")
from benchmarks import torch_reference as ref  # noqa: E402

ANATOMICAL = os.path.join(data_path, "anatomical.nii")  # 33 x 41 x 25, LAS, int16 MR
CT_SMALL = get_testdata_file("CT_small.dcm")
MR_SMALL = get_testdata_file("MR_small.dcm")


@pytest.fixture(scope="module")
def generators(tmp_path_factory):
    """Tiny ResNet generators (ngf 8, one block), 1 and 3 channels: PyTorch model and params."""
    root = tmp_path_factory.mktemp("gens")
    out = {}
    for channels, seed in ((1, 11), (3, 12)):
        arch = Architecture("resnet", channels, channels, 8, "instance", n_blocks=1)
        model = ref.randomize(ref.build(arch), seed=seed)
        torch.save(model.state_dict(), root / f"g{channels}.pth")
        params = root / f"g{channels}"
        assert main(["convert", str(root / f"g{channels}.pth"), str(params)]) == 0
        out[channels] = (model, str(params))
    return out


def _network(model, slices, channels):
    """(K, H, W) in [-1, 1] through the PyTorch model, grey in and out: replicated to the
    model's channels, reflect-padded at the bottom and right to multiples of 4, cropped back,
    channels averaged."""
    _, h, w = slices.shape
    x = np.pad(slices, ((0, 0), (0, -h % 4), (0, -w % 4)), mode="symmetric")
    x = torch.from_numpy(np.repeat(x[:, None], channels, axis=1).astype(np.float32))
    with torch.no_grad():
        y = model(x).numpy()
    return y[:, :, :h, :w].mean(axis=1).astype(np.float64)


def _axial(canonical):
    """RAS (X, Y, Z) voxels -> axial slices (Z, Y, X), row 0 anterior, column 0 right."""
    return np.stack([canonical[::-1, ::-1, k].T for k in range(canonical.shape[2])])


def _unaxial(slices):
    return slices.transpose(2, 1, 0)[::-1, ::-1, :]


def _ct_in(hu):
    return np.clip((hu + 1024.0) / 4095.0 * 2 - 1, -1, 1)


def _ct_out(x):
    return -1024.0 + (np.clip(x, -1, 1) + 1) * 4095.0 / 2


def _mr_in(values):
    lo, hi = np.percentile(values, [0.5, 99.5])
    return np.clip((values - lo) / (hi - lo) * 2 - 1, -1, 1)


def _translate(params, inputs, out, *extra):
    args = ["translate", *map(str, inputs), "--checkpoint", params, "--output", str(out)]
    return main([*args, *extra, "--quiet"])


def _hu(ds):
    return ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_nifti_mr_to_ct_keeps_affine_header_and_values(generators, tmp_path):
    model, params = generators[1]
    assert _translate(params, [ANATOMICAL], tmp_path / "out", "--output-modality", "ct") == 0
    src = nib.load(ANATOMICAL)
    out = nib.load(tmp_path / "out" / "anatomical.nii")
    np.testing.assert_array_equal(out.affine, src.affine)
    assert out.shape == src.shape and nib.aff2axcodes(out.affine) == ("L", "A", "S")
    np.testing.assert_array_equal(out.header.get_zooms(), src.header.get_zooms())
    assert out.header["qform_code"] == src.header["qform_code"]
    assert out.header["sform_code"] == src.header["sform_code"]
    assert out.get_data_dtype().newbyteorder("=") == np.float32  # source byte order kept

    canonical = nib.as_closest_canonical(src).get_fdata()
    expected = _unaxial(_ct_out(_network(model, _axial(_mr_in(canonical)), 1)))
    assert expected.std() > 50  # a non-trivial translation
    got = nib.as_closest_canonical(out).get_fdata()
    np.testing.assert_allclose(got, expected, atol=0.05)  # HU; float32 networks
    # and in the source's own voxel order (LAS: x flipped from RAS)
    np.testing.assert_allclose(out.get_fdata(), expected[::-1], atol=0.05)


def test_nifti_ct_to_mr_oblique_axes_batches_and_mixed_inputs(generators, tmp_path):
    model, params = generators[3]
    rng = np.random.default_rng(4)
    hu = rng.uniform(-1100, 2500, (10, 6, 12)).astype(np.float32)  # axes P, S, L
    affine = np.array([[0, 0, -1.2, 10], [-0.9, 0, 0, 20], [0, 1.1, 0, -5], [0, 0, 0, 1.0]])
    folder = tmp_path / "in"
    folder.mkdir()
    nib.save(nib.Nifti1Image(hu, affine), folder / "head.nii.gz")
    Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(folder / "photo.png")
    extra = ("--output-modality", "mr", "--mr-range", "0", "500", "--batch-size", "4")
    assert _translate(params, [folder], tmp_path / "out", *extra) == 0

    src = nib.load(folder / "head.nii.gz")
    out = nib.load(tmp_path / "out" / "head.nii.gz")
    np.testing.assert_array_equal(out.affine, src.affine)
    assert out.shape == src.shape == (10, 6, 12)
    canonical = nib.as_closest_canonical(src).get_fdata()  # (12, 10, 6): 6 slices of 10 x 12
    mr = (_network(model, _axial(_ct_in(canonical)), 3) + 1) * 250.0
    got = nib.as_closest_canonical(out).get_fdata()
    np.testing.assert_allclose(got, _unaxial(mr), atol=0.01)
    assert got.min() >= 0 and got.max() <= 500
    assert np.asarray(Image.open(tmp_path / "out" / "photo.png")).shape == (20, 24)


def test_dicom_ct_to_mr_is_a_new_synthetic_series(generators, tmp_path):
    model, params = generators[1]
    assert _translate(params, [CT_SMALL], tmp_path / "out", "--output-modality", "mr") == 0
    (path,) = sorted((tmp_path / "out" / "CT_small").iterdir())
    src, out = pydicom.dcmread(CT_SMALL), pydicom.dcmread(path)
    assert out.Modality == "MR" and out.SOPClassUID == pydicom.uid.MRImageStorage
    assert out.SOPInstanceUID != src.SOPInstanceUID
    assert out.SeriesInstanceUID != src.SeriesInstanceUID
    assert out.StudyInstanceUID == src.StudyInstanceUID and out.PatientID == src.PatientID
    assert list(out.ImageType) == ["DERIVED", "SECONDARY"]
    assert "SYNTHETIC" in out.SeriesDescription.upper()
    assert out.ImagePositionPatient == src.ImagePositionPatient
    assert out.PixelSpacing == src.PixelSpacing
    assert out.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID

    expected = (_network(model, _ct_in(_hu(src))[None], 1)[0] + 1) * 500.0  # --mr-range 0 1000
    assert expected.std() > 5
    np.testing.assert_allclose(_hu(out), expected, atol=float(out.RescaleSlope) / 2 + 0.01)


def test_dicom_series_folder_mr_to_ct_in_hu(generators, tmp_path):
    model, params = generators[3]
    series = tmp_path / "series"
    series.mkdir()
    shutil.copy(MR_SMALL, series / "IM0001")  # no suffix: found by its DICM marker
    assert _translate(params, [series], tmp_path / "out", "--output-modality", "ct") == 0
    (path,) = sorted((tmp_path / "out" / "series").iterdir())
    src, out = pydicom.dcmread(MR_SMALL), pydicom.dcmread(path)
    assert out.Modality == "CT" and out.SOPClassUID == pydicom.uid.CTImageStorage
    assert out.SOPInstanceUID != src.SOPInstanceUID
    assert out.SeriesInstanceUID != src.SeriesInstanceUID
    assert out.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert list(out.ImageType) == ["DERIVED", "SECONDARY"]
    assert "SYNTHETIC" in out.SeriesDescription.upper()
    assert out.RescaleType == "HU"
    expected = _ct_out(_network(model, _mr_in(src.pixel_array.astype(np.float64))[None], 3)[0])
    assert expected.std() > 50
    np.testing.assert_allclose(_hu(out), expected, atol=float(out.RescaleSlope) / 2 + 0.05)


def test_volume_errors_name_the_file_and_nothing_is_overwritten(generators, tmp_path, capsys):
    _, params = generators[1]
    out = tmp_path / "out"
    assert _translate(params, [ANATOMICAL], out) == 1
    err = capsys.readouterr().err
    assert "anatomical.nii" in err and "--output-modality" in err
    assert not out.exists()

    assert _translate(params, [CT_SMALL], out, "--output-modality", "ct") == 1
    err = capsys.readouterr().err
    assert "CT_small.dcm" in err and "Modality is CT" in err

    broken = tmp_path / "broken.nii"
    broken.write_bytes(b"not a nifti file at all")
    assert _translate(params, [broken], out, "--output-modality", "ct") == 1
    assert "broken.nii" in capsys.readouterr().err

    out.mkdir()
    (out / "anatomical.nii").write_bytes(b"keep")
    (out / "CT_small").mkdir()
    (out / "CT_small" / "slice0001.dcm").write_bytes(b"keep")
    assert _translate(params, [ANATOMICAL], out, "--output-modality", "ct") == 1
    assert "would overwrite" in capsys.readouterr().err
    assert _translate(params, [CT_SMALL], out, "--output-modality", "mr") == 1
    assert "would overwrite" in capsys.readouterr().err
    assert (out / "anatomical.nii").read_bytes() == b"keep"
    assert (out / "CT_small" / "slice0001.dcm").read_bytes() == b"keep"
    assert _translate(params, [ANATOMICAL], out, "--output-modality", "ct", "--overwrite") == 0
    assert nib.load(out / "anatomical.nii").shape == (33, 41, 25)
