"""`jaxcycle data ...` through argparse: phantom -> ingest -> info -> split, and bad input."""

import argparse

import nibabel as nib
import numpy as np
import pytest

from jaxcycle.cli.data import register
from jaxcycle.data.store import Dataset


def _run(argv):
    parser = argparse.ArgumentParser(prog="jaxcycle")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.func(args)


def test_phantom_ingest_info_split(tmp_path, capsys):
    _run(
        [
            "data",
            "phantom",
            str(tmp_path / "ph"),
            "--subjects",
            "5",
            "--size",
            "32",
            "--slices",
            "3",
        ]
    )
    ct = nib.load(tmp_path / "ph" / "ct" / "subject-004.nii.gz")
    assert ct.shape == (32, 32, 3) and ct.get_data_dtype() == np.int16
    assert nib.aff2axcodes(ct.affine) == ("R", "A", "S")
    _run(["data", "ingest", str(tmp_path / "ds"), "--a", str(tmp_path / "ph" / "mr"),
          "--b", str(tmp_path / "ph" / "ct"), "--paired", "--ct-window", "-1000", "2000",
          "--train-fraction", "0.6", "--seed", "2"])  # fmt: skip
    ds = Dataset.open(tmp_path / "ds")
    assert ds.intensity("B", 0).lo == -1000 and ds.intensity("B", 0).hi == 2000
    assert len(ds.split["train"]) == 3 and ds.split["seed"] == 2
    _run(["data", "info", str(tmp_path / "ds")])
    out = capsys.readouterr().out
    assert "15 paired slices" in out and "A: mr" in out and "B: ct" in out
    _run(["data", "split", str(tmp_path / "ds"), "--train-fraction", "0.8", "--seed", "9"])
    split = Dataset.open(tmp_path / "ds").split
    assert len(split["train"]) == 4 and split["seed"] == 9
    assert not set(split["train"]) & set(split["test"])


def test_cli_errors_are_value_or_os_errors(tmp_path):
    with pytest.raises(ValueError, match="--a and --b"):
        _run(["data", "ingest", str(tmp_path / "ds"), "--a", str(tmp_path)])
    with pytest.raises(OSError, match="no jaxcycle dataset"):
        _run(["data", "info", str(tmp_path)])
    with pytest.raises(ValueError, match="no such file or folder"):
        _run(["data", "ingest", str(tmp_path / "ds"), "--a", "nowhere", "--b", "nowhere"])
    with pytest.raises(ValueError, match="patient"):
        _run(["data", "ingest", str(tmp_path / "ds"), "--a", "x", "--b", "y", "--id-regex", "(.*)"])
