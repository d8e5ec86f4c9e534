"""Writers: DICOM series (geometry, HU, UIDs) checked by pydicom re-reads; PNG levels."""

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from jaxcycle.data.ingest import IngestOptions, ingest
from jaxcycle.data.phantom import write_phantom
from jaxcycle.data.store import Dataset
from jaxcycle.data.writers import write_png_slices, write_translated

CT_SMALL = get_testdata_file("CT_small.dcm")
MR_SMALL = get_testdata_file("MR_small.dcm")


@pytest.fixture(scope="module")
def phantom_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("writers")
    write_phantom(root / "ph", subjects=2, size=32, slices=4, seed=1)
    ingest(root / "ds", [root / "ph" / "mr"], [root / "ph" / "ct"], IngestOptions(paired=True))
    return root, Dataset.open(root / "ds")


def _world_ras(ds):
    """RAS mm of every pixel centre of a DICOM slice, from its own tags (LPS -> RAS)."""
    ipp = np.array(ds.ImagePositionPatient, float)
    row_dir, col_dir = (
        np.array(ds.ImageOrientationPatient[:3]),
        np.array(ds.ImageOrientationPatient[3:]),
    )
    dr, dc = (float(v) for v in ds.PixelSpacing)  # between rows, between columns
    r, c = np.mgrid[: ds.Rows, : ds.Columns]
    lps = ipp + c[..., None] * dc * row_dir + r[..., None] * dr * col_dir
    return lps * np.array([-1, -1, 1])


def test_dicom_from_nifti_lies_on_the_source_voxels(phantom_dataset, tmp_path):
    root, ds = phantom_dataset
    stored = ds.read_volume("B", 1)  # CT of subject 1, written back as itself
    paths = write_translated(ds, "B", 1, stored, tmp_path / "dcm", fmt="dicom", target="B")
    source = nib.load(root / "ph" / "ct" / "subject-001.nii.gz")
    hu = source.get_fdata()
    inverse = np.linalg.inv(source.affine)
    series_uids, sop_uids = set(), set()
    for path in paths:
        d = pydicom.dcmread(path)
        ras = _world_ras(d)
        voxel = ras @ inverse[:3, :3].T + inverse[:3, 3]
        idx = np.rint(voxel).astype(int)
        assert np.abs(voxel - idx).max() < 1e-3  # pixel centres are voxel centres
        expected = hu[idx[..., 0], idx[..., 1], idx[..., 2]]
        got = d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept)
        assert np.abs(got - expected).max() <= 0.5
        assert d.Modality == "CT" and list(d.ImageType) == ["DERIVED", "SECONDARY"]
        assert "SYNTHETIC" in d.SeriesDescription
        assert d.PatientID == "subject-001"
        series_uids.add(d.SeriesInstanceUID)
        sop_uids.add(d.SOPInstanceUID)
    assert len(series_uids) == 1 and len(sop_uids) == len(paths) == 4


def test_dicom_from_dicom_keeps_geometry_study_and_hu(tmp_path):
    ingest(tmp_path / "ds", [MR_SMALL], [CT_SMALL])
    ds = Dataset.open(tmp_path / "ds")
    # an MR -> CT "translation": a made-up output, known HU
    hu = np.linspace(-1000, 2000, 64 * 64).reshape(1, 64, 64)
    translated = ds.intensity_for("B", "4MR1").normalise(hu)  # CT window: no CT for 4MR1
    paths = write_translated(ds, "A", 0, translated, tmp_path / "out", fmt="dicom")
    src = pydicom.dcmread(MR_SMALL)
    out = pydicom.dcmread(paths[0])
    assert out.Modality == "CT" and out.SOPClassUID == pydicom.uid.CTImageStorage
    assert out.ImagePositionPatient == src.ImagePositionPatient
    assert out.ImageOrientationPatient == src.ImageOrientationPatient
    assert out.PixelSpacing == src.PixelSpacing
    assert out.StudyInstanceUID == src.StudyInstanceUID and out.PatientID == src.PatientID
    assert out.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert out.SeriesInstanceUID != src.SeriesInstanceUID
    assert out.SOPInstanceUID != src.SOPInstanceUID
    assert out.SourceImageSequence[0].ReferencedSOPInstanceUID == src.SOPInstanceUID
    got = out.pixel_array * float(out.RescaleSlope) + float(out.RescaleIntercept)
    assert np.abs(got - hu[0]).max() <= 0.5
    assert out.PixelRepresentation == (1 if out.pixel_array.dtype == np.int16 else 0)


def test_ct_rescale_is_kept_from_a_ct_source(tmp_path):
    ingest(tmp_path / "ds", [MR_SMALL], [CT_SMALL])
    ds = Dataset.open(tmp_path / "ds")
    paths = write_translated(
        ds, "B", 0, ds.read_volume("B", 0), tmp_path / "out", fmt="dicom", target="B"
    )
    src, out = pydicom.dcmread(CT_SMALL), pydicom.dcmread(paths[0])
    assert (out.RescaleSlope, out.RescaleIntercept) == (src.RescaleSlope, src.RescaleIntercept)
    np.testing.assert_array_equal(out.pixel_array.astype(int), src.pixel_array.astype(int))


def test_png_slices_16_bit(tmp_path):
    slices = np.array([[[-1.0, 0.0], [0.5, 1.0]]], np.float32)
    (path,) = write_png_slices(tmp_path, slices, ["a"], bits=16)
    levels = np.asarray(Image.open(path))
    np.testing.assert_array_equal(levels, [[0, 32768], [49151, 65535]])  # round(x) of 32767.5
    with pytest.raises(FileExistsError):
        write_png_slices(tmp_path, slices, ["a"], bits=16)
