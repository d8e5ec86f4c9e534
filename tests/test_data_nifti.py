"""NIfTI in and out: nibabel's test files, orientation, 4D, bad files, the writer's geometry."""

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.testing import data_path
from pydicom.data import get_testdata_file

from jaxcycle.data.ingest import IngestOptions, ingest
from jaxcycle.data.nifti import load_nifti, nifti_ref
from jaxcycle.data.store import Dataset
from jaxcycle.data.volume import DataError
from jaxcycle.data.writers import write_translated

ANATOMICAL = os.path.join(data_path, "anatomical.nii")
EXAMPLE_4D = os.path.join(data_path, "example4d.nii.gz")
CT_SMALL = get_testdata_file("CT_small.dcm")


def _display(canonical, k, r, c):
    """Where display pixel (r, c) of slice k comes from, by the convention's definition:
    row 0 most anterior (largest j), column 0 the patient's right (largest i)."""
    x, y = canonical.shape[:2]
    return canonical[x - 1 - c, y - 1 - r, k]


def test_anatomical_nii_ingests_as_canonical_axial_slices(tmp_path):
    ingest(tmp_path / "ds", [ANATOMICAL], [CT_SMALL], IngestOptions(mr_percentiles=(0, 100)))
    ds = Dataset.open(tmp_path / "ds")
    canonical = nib.as_closest_canonical(nib.load(ANATOMICAL)).get_fdata()
    x, y, z = canonical.shape  # (33, 41, 25), 2 mm voxels
    assert ds.shape("A") == (z, y, x)
    restored = ds.intensity("A", 0).restore(ds.read_volume("A", 0))
    rng = np.random.default_rng(0)
    picks = zip(rng.integers(0, z, 50), rng.integers(0, y, 50), rng.integers(0, x, 50), strict=True)
    for k, r, c in picks:
        assert restored[k, r, c] == pytest.approx(_display(canonical, k, r, c), abs=1e-2)
    record = ds.slices("A")[3]
    assert record["patient"] == "anatomical" and record["slice"] == 3
    assert record["spacing"] == [2.0, 2.0, 2.0]


def _oblique_file(path, scale=2.0, intercept=-1024.0):
    """An LPI-ordered volume with axes permuted (data axes: A->P, R->L, I->S) and a bright
    cube near the patient's anterior-right-superior corner; int16 with scl_slope/inter."""
    nx, ny, nz = 6, 5, 4  # voxel axes 0, 1, 2
    data = np.zeros((nx, ny, nz), np.int16)
    # axis 0 runs anterior -> posterior, axis 1 right -> left, axis 2 inferior -> superior
    data[0, 0, nz - 1] = 1500  # most anterior, most right, most superior voxel
    data[1, 2, 1] = 700
    affine = np.array(
        [[0.0, -3.0, 0.0, 10.0], [-2.0, 0.0, 0.0, 20.0], [0.0, 0.0, 4.0, -30.0], [0, 0, 0, 1]]
    )
    img = nib.Nifti1Image(data, affine)
    img.header.set_slope_inter(scale, intercept)
    img.header.set_data_dtype(np.int16)
    nib.save(img, path)
    return img


def test_non_canonical_orientation_is_reoriented(tmp_path):
    _oblique_file(tmp_path / "odd.nii.gz")
    volume = load_nifti(tmp_path / "odd.nii.gz")
    values = volume.values  # physical values: stored * 2 - 1024
    assert values.shape == (4, 6, 5)  # (slices S->, rows A->P, columns R->L)
    # the bright voxel: top slice (most superior), row 0 (anterior), column 0 (right)
    assert values[3, 0, 0] == pytest.approx(1500 * 2 - 1024)
    assert values[1, 1, 2] == pytest.approx(700 * 2 - 1024)
    assert np.sum(values > 0) == 2
    assert volume.spacing == (2.0, 3.0, 4.0)  # row (A-P) 2 mm, column (R-L) 3 mm, slice 4 mm


def test_nifti_writer_restores_source_geometry_header_and_hu(tmp_path):
    source = _oblique_file(tmp_path / "ct.nii.gz", scale=1.0, intercept=-1024.0)
    ingest(tmp_path / "ds", [ANATOMICAL], [tmp_path / "ct.nii.gz"])
    ds = Dataset.open(tmp_path / "ds")
    stored = ds.read_volume("B", 0)  # an identity "translation" into domain B
    out = write_translated(ds, "B", 0, stored, tmp_path / "out.nii.gz", fmt="nifti", target="B")
    written = nib.load(out[0])
    original = nib.load(tmp_path / "ct.nii.gz")
    np.testing.assert_array_equal(written.affine, original.affine)
    assert written.shape == original.shape
    for field in ("dim", "pixdim", "qform_code", "sform_code", "xyzt_units", "srow_x"):
        np.testing.assert_array_equal(written.header[field], original.header[field])
    np.testing.assert_allclose(written.get_fdata(), original.get_fdata(), atol=0.5)
    assert written.get_fdata()[0, 0, 3] == pytest.approx(1500 - 1024, abs=0.5)
    assert source.header.get_slope_inter() == (1.0, -1024.0)
    with pytest.raises(FileExistsError):
        write_translated(ds, "B", 0, stored, tmp_path / "out.nii.gz", fmt="nifti", target="B")


def test_4d_needs_a_frame(tmp_path):
    with pytest.raises(DataError, match=r"example4d.nii.gz: 4D volume.*--nifti-frame"):
        nifti_ref(EXAMPLE_4D)
    ref = nifti_ref(EXAMPLE_4D, frame=1)
    volume = ref.load()
    frame = nib.as_closest_canonical(nib.load(EXAMPLE_4D)).get_fdata()[..., 1]
    assert volume.values.shape == (24, 96, 128)
    assert volume.values[5, 10, 20] == pytest.approx(_display(frame, 5, 10, 20))
    with pytest.raises(DataError, match="frame 2 out of range"):
        nifti_ref(EXAMPLE_4D, frame=2)


def test_bad_nifti_files_name_the_file(tmp_path):
    nan = np.zeros((4, 4, 3), np.float32)
    nan[1, 2, 0] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), tmp_path / "nan.nii")
    with pytest.raises(DataError, match=r"nan.nii: 1 non-finite"):
        nifti_ref(tmp_path / "nan.nii").load()
    raw = gzip.decompress(Path(EXAMPLE_4D).read_bytes())
    (tmp_path / "cut.nii").write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataError, match="cut.nii"):
        nifti_ref(tmp_path / "cut.nii", frame=0).load()
    (tmp_path / "text.nii").write_text("hello")
    with pytest.raises(DataError, match="text.nii: not a readable NIfTI"):
        nifti_ref(tmp_path / "text.nii")
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, 2, 2), np.float32), np.eye(4)), tmp_path / "5d.nii")
    with pytest.raises(DataError, match="5d.nii: 5-dimensional"):
        nifti_ref(tmp_path / "5d.nii")
