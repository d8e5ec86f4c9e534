"""DICOM in: pydicom's own test files (HU, compression, bad files) and a made-up series."""

import logging
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from jaxcycle.data.dicom import find_series, load_series
from jaxcycle.data.ingest import IngestOptions, ingest
from jaxcycle.data.store import Dataset
from jaxcycle.data.volume import DataError

CT_SMALL = get_testdata_file("CT_small.dcm")
MR_SMALL = get_testdata_file("MR_small.dcm")
MR_JPEG_LS = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")


def _hu(path):
    """HU the textbook way: stored value * slope + intercept."""
    ds = pydicom.dcmread(path)
    return ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)


def test_ct_small_ingests_in_hu_within_half_a_unit(tmp_path):
    ingest(tmp_path / "ds", [MR_SMALL], [CT_SMALL], IngestOptions(train_fraction=0.5))
    ds = Dataset.open(tmp_path / "ds")
    stored = ds.read_volume("B", 0)
    assert stored.shape == (1, 128, 128) and stored.dtype == np.float32
    hu = ds.intensity("B", 0).restore(stored)
    true = _hu(CT_SMALL)
    assert true.min() < 0 < true.max()  # the file's values: -896 .. 1167 HU
    assert np.abs(hu[0] - true).max() < 0.5
    record = ds.slices("B")[0]
    assert record["patient"] == "1CT1" and record["modality"] == "ct"
    assert record["spacing"][:2] == pytest.approx([0.661468, 0.661468])
    assert record["series"] == pydicom.dcmread(CT_SMALL).SeriesInstanceUID
    # MR: the volume's 0.5 and 99.5 percentiles are -1 and +1
    mr = pydicom.dcmread(MR_SMALL).pixel_array.astype(np.float64)
    imap = ds.intensity("A", 0)
    assert (imap.lo, imap.hi) == pytest.approx(tuple(np.percentile(mr, [0.5, 99.5])))


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"])
def test_compressed_mr_ingests_like_the_uncompressed_file(name, tmp_path):
    path = get_testdata_file(name)
    try:
        _ = pydicom.dcmread(path).pixel_array
    except Exception:
        pytest.skip(f"no decoder for {name} here")  # RLE always decodes (pure pydicom)
    ingest(tmp_path / "ds", [path], [CT_SMALL])
    ds = Dataset.open(tmp_path / "ds")
    restored = ds.intensity("A", 0).restore(ds.read_volume("A", 0))[0]
    plain = pydicom.dcmread(MR_SMALL).pixel_array.astype(np.float64)
    imap = ds.intensity("A", 0)
    inside = (plain >= imap.lo) & (plain <= imap.hi)  # percentile clipping outside
    assert inside.mean() > 0.98
    assert np.abs(restored - plain)[inside].max() < 1e-3
    np.testing.assert_array_equal(load_series((path,)).values, load_series((MR_SMALL,)).values)


def test_undecodable_compression_names_the_file():
    try:
        _ = pydicom.dcmread(MR_JPEG_LS).pixel_array
    except Exception:
        pass
    else:
        pytest.skip("a JPEG-LS decoder is installed here")
    with pytest.raises(DataError, match="MR_small_jpeg_ls_lossless.dcm.*JPEG-LS"):
        load_series((MR_JPEG_LS,))


def test_truncated_dicom_names_the_file(tmp_path):
    data = Path(CT_SMALL).read_bytes()
    truncated = tmp_path / "half.dcm"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="half.dcm"):
        ingest(tmp_path / "ds", [MR_SMALL], [truncated])
    assert not (tmp_path / "ds").exists()
    assert not any(p.name.startswith(".ds") for p in tmp_path.iterdir())  # no partial dataset
    assert (tmp_path / "half.dcm").read_bytes() == data[: len(data) // 2]  # source untouched


def test_skip_bad_skips_with_a_warning_and_counts(tmp_path, caplog):
    folder = tmp_path / "ct"
    _series(folder / "good")  # 4 slices, a series of its own
    broken = folder / "broken"
    broken.mkdir()
    data = Path(CT_SMALL).read_bytes()
    (broken / "whole.dcm").write_bytes(data)
    (broken / "half.dcm").write_bytes(data[: len(data) // 2])  # same series: it all goes
    (folder / "junk.dcm").write_bytes(b"not a dicom file at all")
    with caplog.at_level(logging.WARNING, logger="jaxcycle.data"):
        report = ingest(tmp_path / "ds", [MR_SMALL], [folder], IngestOptions(skip_bad=True))
    assert len(report.skipped) == 2
    messages = sorted(m for _, m in report.skipped)
    assert "half.dcm: cannot read the pixel data" in messages[0]
    assert "junk.dcm: not a DICOM file" in messages[1]
    assert "junk.dcm" in caplog.text and "half.dcm" in caplog.text
    assert report.slices["B"] == 4
    assert len(Dataset.open(tmp_path / "ds").meta["skipped"]) == 2


def test_declared_modality_is_checked(tmp_path):
    with pytest.raises(DataError, match="Modality is CT"):
        ingest(tmp_path / "ds", [CT_SMALL], [MR_SMALL])


def _series(folder, n=4):
    """CT_small copied into an n-slice series 5 mm apart, file names not in slice order,
    slice i's stored values offset by 100 i, InstanceNumbers reversed."""
    folder.mkdir(parents=True)
    uid = generate_uid()
    base = pydicom.dcmread(CT_SMALL)
    z0 = float(base.ImagePositionPatient[2])
    for i in range(n):
        ds = pydicom.dcmread(CT_SMALL)
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [*base.ImagePositionPatient[:2], z0 + 5.0 * i]
        ds.InstanceNumber = n - i
        ds.PixelData = (ds.pixel_array + 100 * i).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(folder / f"img_{(i * 7) % n}_{i}.dcm")
    return base


def test_series_is_grouped_and_ordered_by_position(tmp_path):
    base = _series(tmp_path / "series")
    volumes, errors = find_series(sorted((tmp_path / "series").iterdir()))
    assert errors == [] and len(volumes) == 1
    volume = volumes[0].load()
    true = _hu(CT_SMALL)
    for i in range(4):
        np.testing.assert_allclose(volume.values[i], true + 100 * i)
    assert volume.spacing[2] == pytest.approx(5.0)
    z = [p[2] for p in volume.geometry["positions"]]
    assert z == pytest.approx([float(base.ImagePositionPatient[2]) + 5 * i for i in range(4)])
