"""`jaxcycle train` end to end on small image folders: metrics, samples, checkpoints, exact
resume (also after SIGKILL between checkpoints) and a clear stop on a NaN loss."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from jaxcycle.cli import main

CONFIG = Path(__file__).parents[1] / "configs" / "cyclegan.py"
TINY = [
    "--config.model.ngf=8",
    "--config.model.n_blocks=1",
    "--config.model.ndf=8",
    "--config.data.load_size=36",
    "--config.data.crop_size=32",
    "--config.train.pool_size=3",
    "--config.train.batch_size=2",
    "--config.train.log_every=1",
    "--config.data.workers=1",
]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two small unpaired image folders: bright disks (A) and dark squares (B)."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:40, :40]
    for domain, n in (("trainA", 6), ("trainB", 5)):
        (root / domain).mkdir()
        for i in range(n):
            cy, cx = rng.integers(10, 30, 2)
            if domain == "trainA":
                shape = (yy - cy) ** 2 + (xx - cx) ** 2 < rng.integers(30, 80)
            else:
                shape = (abs(yy - cy) < 6) & (abs(xx - cx) < 6)
            image = np.where(shape[..., None], [220, 180, 60], [30, 60, 90]).astype(np.uint8)
            Image.fromarray(image).save(root / domain / f"{i}.png")
    return root


def _args(folders, workdir, *extra):
    return [
        "train",
        "--config",
        str(CONFIG),
        "--workdir",
        str(workdir),
        "--quiet",
        f"--config.data.train_a={folders / 'trainA'}",
        f"--config.data.train_b={folders / 'trainB'}",
        *TINY,
        *extra,
    ]


def _final_state(workdir):
    with ocp.CheckpointManager(Path(workdir) / "checkpoints") as manager:
        step = manager.latest_step()
        return step, manager.restore(step, args=ocp.args.StandardRestore())


def _assert_identical(a, b):
    leaves_a, leaves_b = jax.tree.leaves_with_path(a), jax.tree.leaves_with_path(b)
    assert [p for p, _ in leaves_a] == [p for p, _ in leaves_b]
    for (path, x), (_, y) in zip(leaves_a, leaves_b, strict=True):
        assert np.array_equal(np.asarray(x), np.asarray(y)), jax.tree_util.keystr(path)


COMMON = [
    "--config.optim.n_epochs=4",
    "--config.optim.n_epochs_decay=4",
    "--config.train.checkpoint_every=5",
    "--config.train.sample_every=12",
]


@pytest.fixture(scope="module")
def uninterrupted(folders, tmp_path_factory):
    """24 steps (8 epochs of 3): checkpoints every 5 steps and at epoch ends."""
    workdir = tmp_path_factory.mktemp("full")
    assert main(_args(folders, workdir, *COMMON)) == 0
    return workdir


def test_train_writes_metrics_samples_checkpoints(uninterrupted):
    lines = (uninterrupted / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == list(range(1, 25))
    assert [r["epoch"] for r in records] == [e for e in range(1, 9) for _ in range(3)]
    for r in records:
        assert {"loss_G", "loss_D", "G_ab", "cycle_a", "idt_b", "disc_a"} <= set(r)
        assert all(np.isfinite(v) for v in r.values())
    grids = sorted(p.name for p in (uninterrupted / "samples").iterdir())
    assert grids == ["step_0000012.png", "step_0000024.png"]
    assert np.asarray(Image.open(uninterrupted / "samples" / grids[0])).shape == (64, 96, 3)
    config = json.loads((uninterrupted / "config.json").read_text())
    assert config["model"]["ngf"] == 8
    step, state = _final_state(uninterrupted)
    assert step == 24 and int(state["step"]) == 24


def test_resume_is_bit_identical(folders, uninterrupted, tmp_path):
    assert main(_args(folders, tmp_path, *COMMON, "--config.train.max_steps=7")) == 0
    assert _final_state(tmp_path)[0] == 7
    assert main(_args(folders, tmp_path, *COMMON)) == 0
    _assert_identical(_final_state(uninterrupted)[1], _final_state(tmp_path)[1])
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 25))


def test_resume_after_sigkill_between_checkpoints(folders, uninterrupted, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    command = [sys.executable, "-m", "jaxcycle.cli", *_args(folders, tmp_path, *COMMON)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 300
    # Kill between checkpoints: once step 7 is logged (checkpoints at 3, 5, 6 exist).
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 7:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _final_state(tmp_path)[0] < 24
    assert main(_args(folders, tmp_path, *COMMON)) == 0
    _assert_identical(_final_state(uninterrupted)[1], _final_state(tmp_path)[1])


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(folders, tmp_path, capsys):
    args = _args(
        folders,
        tmp_path,
        "--config.optim.lr=1e30",
        "--config.train.checkpoint_every=1",
        "--config.optim.n_epochs=5",
        "--config.optim.n_epochs_decay=0",
    )
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "became" in err and "last good checkpoint" in err
    step, state = _final_state(tmp_path)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state["gen_params"]))
    assert f"step {step}" in err


def test_nan_loss_found_a_step_late_is_neither_logged_nor_saved(folders, tmp_path, capsys):
    """Losses of steps that neither log nor save are checked while the next step runs; a
    divergence found that way still stops the run, and no checkpoint holds it."""
    args = _args(
        folders,
        tmp_path,
        "--config.optim.lr=1e30",
        "--config.train.log_every=1000",
        "--config.train.checkpoint_every=1000",
        "--config.optim.n_epochs=5",
        "--config.optim.n_epochs_decay=0",
    )
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "became" in err and "last good checkpoint" in err
    with ocp.CheckpointManager(tmp_path / "checkpoints") as manager:
        for step in manager.all_steps():
            state = manager.restore(step, args=ocp.args.StandardRestore())
            assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state["gen_params"]))
    assert not (tmp_path / "metrics.jsonl").exists() or all(
        all(np.isfinite(v) for k, v in json.loads(line).items() if k.startswith("loss"))
        for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
    )


def test_unknown_override_is_an_error(folders, tmp_path, capsys):
    assert main(_args(folders, tmp_path, "--config.model.ngff=8")) == 1
    assert "no field 'model.ngff'" in capsys.readouterr().err
