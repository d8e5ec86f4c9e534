"""Fault injection across the CLI: each bad input or concurrent use gives a one-line error
naming the file (or the holder of a lock), and nothing that existed is changed."""

import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from jaxcycle.cli import main
from jaxcycle.data.images import ImageError, read_image
from jaxcycle.locks import ExclusiveLock, LockedError

ROOT = Path(__file__).parents[1]


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # one line, no traceback
    return err


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height pixels, with no image data to speak of."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    idat = zlib.compress(b"\0" * 16)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))  # fmt: skip
    return path


def _nifti(path: Path, values: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(values.astype(np.float32), np.eye(4)), path)
    return path


# --- 1. Metrics refuse non-finite inputs, per file.


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_metrics_refuse_non_finite_predictions(tmp_path, capsys, bad):
    ref = np.random.default_rng(0).uniform(-1000, 1000, (48, 48, 2))
    pred = ref.copy()
    pred[..., 1] = bad  # a whole slice: must not score as a perfect UQI of 1
    (tmp_path / "ref").mkdir()
    (tmp_path / "pred").mkdir()
    _nifti(tmp_path / "ref" / "ct.nii", ref)
    _nifti(tmp_path / "pred" / "ct.nii", pred)
    assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "pred")]) == 1
    err = _error(capsys)
    assert str(tmp_path / "pred" / "ct.nii") in err and "NaN or infinite" in err
    assert "2304 NaN or infinite value(s)" in err  # the 48 x 48 slice


def test_metrics_too_small_names_the_file(tmp_path, capsys):
    for side in ("ref", "pred"):
        (tmp_path / side).mkdir()
        Image.fromarray(np.full((16, 16), 100, np.uint8)).save(tmp_path / side / "small.png")
    assert main(["metrics", str(tmp_path / "ref"), str(tmp_path / "pred")]) == 1
    err = _error(capsys)
    assert str(tmp_path / "pred" / "small.png") in err and "at least 41 x 41" in err


# --- 2. No file of any command overwritten without --overwrite.


def test_metrics_csv_does_not_replace_an_existing_file(tmp_path, capsys):
    image = np.random.default_rng(1).integers(0, 255, (48, 48), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "ref.png")
    Image.fromarray(image).save(tmp_path / "pred.png")
    before = (tmp_path / "pred.png").read_bytes()
    args = ["metrics", str(tmp_path / "ref.png"), str(tmp_path / "pred.png")]
    assert main([*args, "--csv", str(tmp_path / "pred.png")]) == 1
    assert "refusing to replace" in _error(capsys)
    assert (tmp_path / "pred.png").read_bytes() == before
    assert main([*args, "--csv", str(tmp_path / "scores.csv")]) == 0
    out = capsys.readouterr().out
    assert "inf" in out and "inf ±" not in out  # identical images: PSNR inf, no "± nan"


# --- 3. A failed training start leaves no config behind.


def _train_args(workdir: Path, data: Path, *more: str) -> list[str]:
    return [
        "train", "--config", str(ROOT / "configs" / "cyclegan.py"), "--workdir", str(workdir),
        f"--config.data.train_a={data / 'a'}", f"--config.data.train_b={data / 'b'}",
        "--config.data.load_size=32", "--config.data.crop_size=32", "--config.model.ngf=8",
        "--config.model.ndf=8", "--config.model.n_blocks=1", "--config.train.max_steps=1",
        "--config.train.pool_size=2", "--config.data.workers=1", *more,
    ]  # fmt: skip


@pytest.fixture
def image_folders(tmp_path):
    rng = np.random.default_rng(2)
    for side in ("a", "b"):
        (tmp_path / "data" / side).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / side / f"{i}.png")
    return tmp_path / "data"


@pytest.mark.parametrize(
    "fault,message",
    [
        ("--config.train.batch_size=0", "batch size"),
        ("--config.train.batch_size=-1", "batch size"),
        ("--config.data.train_a=/nonexistent/folder", "/nonexistent/folder"),
    ],
)
def test_failed_train_start_writes_no_config(tmp_path, capsys, image_folders, fault, message):
    workdir = tmp_path / "run"
    assert main(_train_args(workdir, image_folders, fault)) == 1
    assert message in _error(capsys)
    assert not (workdir / "config.json").exists()


def test_corrected_start_after_a_failed_one_is_a_fresh_run(tmp_path, capsys, image_folders):
    workdir = tmp_path / "run"
    (tmp_path / "empty").mkdir()
    bad = _train_args(workdir, image_folders, f"--config.data.train_a={tmp_path / 'empty'}")
    assert main(bad) == 1
    assert str(tmp_path / "empty") in _error(capsys)
    assert main(_train_args(workdir, image_folders)) == 0
    config = json.loads((workdir / "config.json").read_text())
    assert config["data"]["train_a"] == str(image_folders / "a")
    assert not (workdir / "config.resumed.json").exists()


# --- 4 and 5. One writer per workdir and per dataset; a killed holder leaves no stale lock.


def _hold_in_another_process(lock_file: Path) -> subprocess.Popen:
    code = (
        "import sys, time\n"
        "from jaxcycle.locks import ExclusiveLock\n"
        f"ExclusiveLock({str(lock_file)!r}, 'test').acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_second_train_on_a_workdir_is_refused_until_the_first_dies(tmp_path, capsys, image_folders):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "metrics.jsonl").write_text('{"step": 1}\n')
    before = _snapshot(workdir)
    holder = _hold_in_another_process(workdir / ".lock")
    try:
        assert main(_train_args(workdir, image_folders)) == 1
        err = _error(capsys)
        assert f"training workdir {workdir} is in use by pid {holder.pid}" in err
        after = _snapshot(workdir)
        assert {k: v for k, v in after.items() if k != ".lock"} == {
            k: v for k, v in before.items() if k != ".lock"
        }
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with ExclusiveLock(workdir / ".lock", "test"):  # the kernel released the killed holder's
        pass


def test_lock_names_its_holder_and_is_reentrant_after_release(tmp_path):
    lock = ExclusiveLock(tmp_path / ".lock", "thing")
    holder = f"thing is in use by pid {os.getpid()} on host"
    with lock, pytest.raises(LockedError, match=holder):
        ExclusiveLock(tmp_path / ".lock", "thing").acquire()
    with lock:
        pass


def test_concurrent_ingest_into_one_target_is_refused(tmp_path, capsys):
    from jaxcycle.data.phantom import write_phantom

    write_phantom(tmp_path / "phantom", subjects=2, size=16, slices=2)
    args = ["data", "ingest", str(tmp_path / "ds"), "--a", str(tmp_path / "phantom" / "mr"),
            "--b", str(tmp_path / "phantom" / "ct"), "--paired"]  # fmt: skip
    holder = _hold_in_another_process(tmp_path / ".ds.lock")
    try:
        assert main(args) == 1
        assert f"dataset {tmp_path / 'ds'} is in use by pid {holder.pid}" in _error(capsys)
        assert not (tmp_path / "ds").exists()
        assert not list(tmp_path.glob(".ds.partial-*"))
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    leftover = tmp_path / ".ds.partial-0badc0de"  # what a killed ingest leaves
    leftover.mkdir()
    (leftover / "dataset.json").write_text("{}")
    assert main(args) == 0
    assert f"removed {leftover}" in capsys.readouterr().out
    assert not leftover.exists() and (tmp_path / "ds" / "dataset.json").is_file()


# --- 6. Images whose header claims more pixels than any scan has.


@pytest.mark.parametrize("side", [100_000, 9_000])
def test_oversized_image_header_is_refused_before_decoding(tmp_path, side):
    bomb = _png_header_only(tmp_path / "bomb.png", side, side)
    with pytest.raises(ImageError, match=rf"{bomb}: .*(decompression bomb|more than the)"):
        read_image(bomb)


def test_oversized_image_across_commands(tmp_path, capsys):
    from jaxcycle.data.phantom import write_phantom

    write_phantom(tmp_path / "phantom", subjects=2, size=16, slices=2)
    folders = {}
    for modality in ("mr", "ct"):
        folder = tmp_path / f"png_{modality}"
        folder.mkdir()
        for s in range(2):
            Image.fromarray(np.full((16, 16), 50 + s, np.uint8)).save(folder / f"p1_{s}.png")
        folders[modality] = folder
    bomb = _png_header_only(folders["mr"] / "p2_0.png", 100_000, 100_000)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(folders["ct"] / "p2_0.png")

    ingest = ["data", "ingest", str(tmp_path / "ds"), "--a", str(folders["mr"]),
              "--b", str(folders["ct"]), "--paired"]  # fmt: skip
    assert main(ingest) == 1
    assert str(bomb) in _error(capsys)
    assert not (tmp_path / "ds").exists()
    assert main([*ingest, "--skip-bad"]) == 0  # skipped, the rest ingested
    capsys.readouterr()

    assert main(["metrics", str(bomb), str(bomb)]) == 1
    assert str(bomb) in _error(capsys)

    from jaxcycle import checkpoints
    from jaxcycle.architecture import Architecture

    arch = Architecture("resnet", 1, 1, 8, n_blocks=1)
    import jax
    import jax.numpy as jnp

    variables = arch.build().init(jax.random.PRNGKey(0), jnp.zeros((1, 16, 16, 1)))
    checkpoints.save_params(tmp_path / "gen", variables, arch)
    out = tmp_path / "out"
    good = folders["ct"] / "p1_0.png"
    assert main(["translate", "--checkpoint", str(tmp_path / "gen"), "--output", str(out),
                 "--quiet", str(good), str(bomb)]) == 1  # fmt: skip
    assert str(bomb) in _error(capsys)
    assert not out.exists() or not any(out.iterdir())  # nothing written before the failure


# --- Weak spots: translate's arguments checked before the generator runs.


def test_translate_bad_batch_size_and_output_file(tmp_path, capsys):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(image)
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    assert main(["translate", "--checkpoint", str(tmp_path / "nowhere"), "--output",
                 str(tmp_path / "o"), "--batch-size", "0", str(image)]) == 1  # fmt: skip
    assert "batch size must be at least 1 (got 0)" in _error(capsys)
    assert main(["translate", "--checkpoint", str(tmp_path / "nowhere"), "--output",
                 str(target), str(image)]) == 1  # fmt: skip
    assert f"{target}: exists and is not a folder" in _error(capsys)
    assert target.read_text() == "keep me"


def test_nifti_header_claiming_a_huge_volume(tmp_path, capsys):
    from jaxcycle.data.nifti import nifti_ref
    from jaxcycle.data.volume import DataError

    header = nib.Nifti1Header()
    header.set_data_shape((30000, 30000, 30000))
    header.set_data_dtype(np.int16)
    header["vox_offset"] = 352
    bomb = tmp_path / "bomb.nii"
    bomb.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 64)
    with pytest.raises(DataError, match=r"bomb.nii: header claims a 30000 x 30000 x 30000"):
        nifti_ref(bomb)
    assert main(["translate", "--checkpoint", str(tmp_path / "none"), "--output",
                 str(tmp_path / "out"), "--output-modality", "ct", str(bomb)]) == 1  # fmt: skip
    assert f"{bomb}: header claims" in _error(capsys)


def test_a_bad_training_image_is_named_when_the_sources_are_made(tmp_path, image_folders):
    """A file named .png that is not an image stops `train` while its sources are made, before
    the networks are built or compiled."""
    from jaxcycle.config import load_config
    from jaxcycle.train import training_sources

    bad = image_folders / "b" / "zz_notes.png"
    bad.write_text("not an image")
    config = load_config(
        ROOT / "configs" / "cyclegan.py",
        [f"data.train_a={image_folders / 'a'}", f"data.train_b={image_folders / 'b'}"],
    )
    with pytest.raises(ImageError, match=f"{bad}: not an image file"):
        training_sources(config)
