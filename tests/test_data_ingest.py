"""Ingest: phantom NIfTI volumes, image folders, the reference layout, bad input, the store."""

import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from jaxcycle.data.ingest import IngestOptions, ingest, ingest_layout
from jaxcycle.data.phantom import write_phantom
from jaxcycle.data.store import Dataset
from jaxcycle.data.volume import DataError

SUBJECTS, SIZE, SLICES = 6, 32, 5


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantom")
    write_phantom(root, subjects=SUBJECTS, size=SIZE, slices=SLICES, seed=0)
    return root


@pytest.fixture(scope="module")
def paired(phantom_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("paired") / "ds"
    report = ingest(out, [phantom_dir / "mr"], [phantom_dir / "ct"], IngestOptions(paired=True))
    return report, Dataset.open(out)


def test_hu_survive_ingest_and_back(paired, phantom_dir):
    _, ds = paired
    assert ds.shape("B") == (SUBJECTS * SLICES, SIZE, SIZE)
    for v, record in enumerate(ds.volumes("B")):
        hu = nib.as_closest_canonical(nib.load(record["source"])).get_fdata()  # (X, Y, Z)
        restored = ds.intensity("B", v).restore(ds.read_volume("B", v))  # (Z, Y, X) display
        expected = np.transpose(hu[::-1, ::-1, :], (2, 1, 0))
        inside = (expected >= -1024) & (expected <= 3071)
        assert inside.mean() > 0.99
        assert np.abs(restored - expected)[inside].max() < 0.5


def test_mr_is_normalised_by_its_own_percentiles(paired):
    _, ds = paired
    for v, record in enumerate(ds.volumes("A")):
        raw = nib.load(record["source"]).get_fdata()
        lo, hi = np.percentile(raw, [0.5, 99.5])
        assert (ds.intensity("A", v).lo, ds.intensity("A", v).hi) == pytest.approx((lo, hi))
        x = ds.read_volume("A", v)
        assert x.min() == -1.0 and x.max() == 1.0
        assert np.mean(x >= 1.0) == pytest.approx(0.005, abs=0.004)


def test_pairs_match_patient_and_slice(paired):
    report, ds = paired
    pairs = ds.pairs()
    assert report.pairs == len(pairs) == SUBJECTS * SLICES
    a, b = ds.slices("A"), ds.slices("B")
    for i, j in pairs:
        assert (a[i]["patient"], a[i]["slice"]) == (b[j]["patient"], b[j]["slice"])
        assert a[i]["modality"] == "mr" and b[j]["modality"] == "ct"
        assert a[i]["source"].endswith(f"mr/{a[i]['patient']}.nii.gz")


def test_split_has_no_patient_on_both_sides(paired):
    _, ds = paired
    split = ds.split
    assert len(split["train"]) == 4 and len(split["test"]) == 2  # round(0.7 * 6)
    for domain in ("A", "B"):
        records = ds.slices(domain)
        train = {records[i]["patient"] for i in ds.indices(domain, "train")}
        test = {records[i]["patient"] for i in ds.indices(domain, "test")}
        assert train and test and not train & test
        assert len(ds.indices(domain, "train")) + len(ds.indices(domain, "test")) == len(records)
    test_pairs = ds.pairs("test")
    assert {ds.slices("B")[j]["patient"] for j in test_pairs[:, 1]} == set(split["test"])


def test_resized_ingest_and_spacing(phantom_dir, tmp_path):
    ingest(tmp_path / "ds", [phantom_dir / "mr"], [phantom_dir / "ct"], IngestOptions(size=48))
    ds = Dataset.open(tmp_path / "ds")
    assert ds.shape("A") == (SUBJECTS * SLICES, 48, 48)
    # 240 mm over 32 pixels, now over 48
    assert ds.slices("A")[0]["spacing"][:2] == pytest.approx([5.0, 5.0])
    back = ds.placement("B", 0).inverse(ds.read_volume("B", 0))
    assert back.shape == (SLICES, SIZE, SIZE)


def test_existing_dataset_is_kept_unless_overwrite(paired, phantom_dir, tmp_path):
    out = tmp_path / "ds"
    ingest(out, [phantom_dir / "mr"], [phantom_dir / "ct"])
    before = (out / "dataset.json").read_bytes()
    with pytest.raises(FileExistsError, match="already exists"):
        ingest(out, [phantom_dir / "mr"], [phantom_dir / "ct"])
    assert (out / "dataset.json").read_bytes() == before
    ingest(out, [phantom_dir / "mr"], [phantom_dir / "ct"], IngestOptions(seed=5, overwrite=True))
    assert json.loads((out / "dataset.json").read_text())["split"]["seed"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temporary leftovers
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a jaxcycle dataset"):
        ingest(other, [phantom_dir / "mr"], [phantom_dir / "ct"], IngestOptions(overwrite=True))
    assert (other / "keep.txt").read_text() == "mine"


def test_kvstore_url(phantom_dir, tmp_path):
    url = (tmp_path / "viaurl").as_uri() + "/"
    report = ingest(url, [phantom_dir / "mr"], [phantom_dir / "ct"])
    assert report.url == url
    ds = Dataset.open(url)
    np.testing.assert_array_equal(
        ds.read_volume("A", 0), Dataset.open(tmp_path / "viaurl").read_volume("A", 0)
    )


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_image_folders_8_and_16_bit_grey_and_rgb(tmp_path):
    rng = np.random.default_rng(0)
    grey16 = rng.integers(0, 65536, (3, 16, 16), dtype=np.uint16)
    rgb = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    for i, g in enumerate(grey16):
        _png(tmp_path / "a" / f"p{i}.png", g)
    for i, c in enumerate(rgb):
        _png(tmp_path / "b" / f"q{i}.png", c)
    ingest(tmp_path / "ds", [tmp_path / "a"], [tmp_path / "b"],
           IngestOptions(modality_a="other", modality_b="other"))  # fmt: skip
    ds = Dataset.open(tmp_path / "ds")
    assert ds.shape("A") == (3, 16, 16) and ds.shape("B") == (2, 16, 16, 3)
    np.testing.assert_allclose(ds.read_volume("A", 1)[0], grey16[1] / 65535 * 2 - 1, atol=1e-6)
    levels = ds.intensity("B", 0).restore(ds.read_volume("B", 0)[0])
    np.testing.assert_allclose(levels, rgb[0], atol=1e-3)


def test_id_regex_and_paired_images_by_patient_and_slice(tmp_path):
    for p in ("p01", "p02", "p03"):
        for s in range(2):
            _png(tmp_path / "mr" / f"{p}_mr_{s}.png", np.full((8, 8), 10 * s, np.uint8))
            _png(tmp_path / "ct" / f"{p}_ct_{s}.png", np.full((8, 8), 10 * s + 1, np.uint8))
    regex = r"(?P<patient>p\d+)_\w+_(?P<slice>\d+)"
    ingest(tmp_path / "ds", [tmp_path / "mr"], [tmp_path / "ct"],
           IngestOptions(paired=True, id_regex=regex, train_fraction=0.5))  # fmt: skip
    ds = Dataset.open(tmp_path / "ds")
    assert ds.patients() == ["p01", "p02", "p03"]
    for i, j in ds.pairs():
        a, b = ds.slices("A")[i], ds.slices("B")[j]
        assert a["patient"] == b["patient"]
        assert a["source"].split("_")[-1] == b["source"].split("_")[-1]  # same slice number
    with pytest.raises(DataError, match=r"x.png.*does not match --id-regex"):
        _png(tmp_path / "mr" / "x.png", np.zeros((8, 8), np.uint8))
        ingest(tmp_path / "ds2", [tmp_path / "mr"], [tmp_path / "ct"],
               IngestOptions(id_regex=regex))  # fmt: skip


def test_reference_layout_split_comes_from_the_folders(tmp_path):
    for name, n in (("trainA", 3), ("trainB", 2), ("testA", 1), ("testB", 2)):
        for i in range(n):
            _png(tmp_path / "root" / name / f"{name}_{i}.png", np.full((8, 8), i, np.uint8))
    report = ingest_layout(tmp_path / "ds", tmp_path / "root")
    ds = Dataset.open(tmp_path / "ds")
    assert report.slices == {"A": 4, "B": 4}
    assert ds.split["origin"] == "folders"
    assert len(ds.indices("A", "train")) == 3 and len(ds.indices("B", "test")) == 2
    # the same patient name in trainA and testA is a leak
    _png(tmp_path / "root" / "testA" / "trainA_0.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="both sides.*trainA_0"):
        ingest_layout(tmp_path / "ds2", tmp_path / "root")


def test_bad_inputs_name_the_problem(phantom_dir, tmp_path):
    mr, ct = phantom_dir / "mr", phantom_dir / "ct"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no image, DICOM or NIfTI files"):
        ingest(tmp_path / "ds", [tmp_path / "empty"], [ct])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="notes.txt: unsupported file type"):
        ingest(tmp_path / "ds", [tmp_path / "notes.txt"], [ct])
    with pytest.raises(DataError, match="missing: no such file"):
        ingest(tmp_path / "ds", [tmp_path / "missing"], [ct])
    _png(tmp_path / "mixed" / "a.png", np.zeros((4, 4), np.uint8))
    nib.save(nib.load(ct / "subject-000.nii.gz"), tmp_path / "mixed" / "b.nii.gz")
    with pytest.raises(DataError, match="a mix of file kinds"):
        ingest(tmp_path / "ds", [tmp_path / "mixed"], [ct])
    # mismatched pair: subject-000's CT with one slice less
    short = tmp_path / "short"
    short.mkdir()
    for p in ct.iterdir():
        img = nib.load(p)
        data = np.asanyarray(img.dataobj)
        if p.name == "subject-000.nii.gz":
            data = data[..., :-1]
        nib.save(nib.Nifti1Image(data, img.affine), short / p.name)
    with pytest.raises(DataError, match=r"subject-000.nii.gz.*mismatched pair"):
        ingest(tmp_path / "ds", [mr], [short], IngestOptions(paired=True))
    report = ingest(tmp_path / "ds", [mr], [short], IngestOptions(paired=True, skip_bad=True))
    assert report.pairs == (SUBJECTS - 1) * SLICES and len(report.skipped) == 1
    # an orphan
    with pytest.raises(DataError, match="subject-005.nii.gz: no partner"):
        ingest(tmp_path / "ds3", [mr], [ct / f"subject-00{i}.nii.gz" for i in range(5)],
               IngestOptions(paired=True))  # fmt: skip
    # slices of different sizes without --size
    _png(tmp_path / "sizes" / "a.png", np.zeros((8, 8), np.uint8))
    _png(tmp_path / "sizes" / "b.png", np.zeros((8, 12), np.uint8))
    with pytest.raises(DataError, match=r"b.png: slices of 8x12.*--size"):
        ingest(tmp_path / "ds4", [tmp_path / "sizes"], [tmp_path / "sizes"])
    assert not (tmp_path / "ds4").exists()
    _png(tmp_path / "colours" / "a.png", np.zeros((8, 8), np.uint8))
    _png(tmp_path / "colours" / "b.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(
        DataError, match=r"b.png: 3 channel\(s\), but domain A's earlier images have 1"
    ):
        ingest(tmp_path / "ds5", [tmp_path / "colours"], [tmp_path / "sizes"])
