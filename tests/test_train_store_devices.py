"""Training reads an ingested tensorstore dataset through the loader on 8 simulated devices.

A tiny phantom is ingested into the store; the real training loop (`jaxcycle.train.train`)
runs on it for one epoch of two steps of global batch 8, once on 8 simulated CPU devices and
once on one, each in a subprocess (tests/store_worker.py; the device count must be fixed
before JAX starts). Checked:

- the batches the loop placed on the mesh are the loader's batches for the config's seed,
  read from the store: bit-identical to an `UnpairedLoader` built here, every row a stored
  slice of the train split (perhaps flipped), the epoch covering each A slice once;
- on 8 devices, device k of the mesh holds row k of each global batch, and only it;
- the 8-device run ends with the 1-device run's parameters and pools to 1e-5 and logs the same
  losses. Both compute in float64 (parameters float32), as tests/test_parallel.py does:
  in float32 the all-reduce's other summation order changes gradients near zero in their
  last bits, and Adam's first updates, about lr * sign(g), turn that into differences of up
  to lr = 2e-4 a step (here 4e-5 in float32 after two steps, 3e-14 in float64).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxcycle.data.augment import Augment
from jaxcycle.data.ingest import IngestOptions, ingest
from jaxcycle.data.loader import UnpairedLoader
from jaxcycle.data.phantom import write_phantom
from jaxcycle.data.store import Dataset

WORKER = Path(__file__).with_name("store_worker.py")
SEED, BATCH, SIZE, STEPS = 5, 8, 32, 2
OVERRIDES = [
    f"seed={SEED}",
    "data.channels_a=1",
    "data.channels_b=1",
    f"data.load_size={SIZE}",
    f"data.crop_size={SIZE}",
    "data.flip=True",
    "data.workers=1",
    "model.ngf=8",
    "model.n_blocks=1",
    "model.ndf=8",
    f"train.batch_size={BATCH}",
    "train.pool_size=3",
    "train.log_every=1",
    "train.sample_every=1000",
    "optim.n_epochs=1",  # one epoch of 16 positions = 2 steps of 8
    "optim.n_epochs_decay=0",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The dataset and the outputs of the 1- and 8-device runs (run side by side)."""
    root = tmp_path_factory.mktemp("store_devices")
    write_phantom(root / "phantom", subjects=5, size=SIZE, slices=4)
    ingest(
        root / "ds",
        [root / "phantom" / "mr"],
        [root / "phantom" / "ct"],
        IngestOptions(paired=True, train_fraction=0.8),  # 4 of 5 patients: 16 slices each
    )
    procs = {}
    for devices in (1, 8):
        out = root / f"run{devices}.npz"
        command = [sys.executable, str(WORKER), "--devices", str(devices), str(out),
                   str(root / f"work{devices}"), str(root / "ds"), *OVERRIDES]  # fmt: skip
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        procs[devices] = (proc, out)
    results = {}
    for devices, (proc, out) in procs.items():
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output[-3000:]
        results[devices] = dict(np.load(out))
    return Dataset.open(root / "ds"), root, results


def _stored(ds, domain):
    rows = ds.indices(domain, "train")
    return rows, ds.array(domain)[rows].read().result()[..., None]


def test_runs_used_the_devices_and_the_whole_epoch(runs):
    _, _, results = runs
    for devices, r in results.items():
        assert int(r["device_count"]) == devices
        assert len(r["mesh_devices"]) == devices
        assert int(r["steps"]) == STEPS


@pytest.mark.parametrize("devices", [1, 8])
def test_consumed_batches_are_the_loaders_for_the_seed(runs, devices):
    ds, _, results = runs
    r = results[devices]
    loader = UnpairedLoader(ds.source("A", "train"), ds.source("B", "train"), BATCH, seed=SEED,
                            augment=Augment(SIZE, SIZE, True))  # fmt: skip
    assert loader.steps_per_epoch == STEPS
    for step in range(STEPS):
        expected = loader.batch(step)
        for name in ("A", "B"):
            consumed = r[f"step{step}/{name}/global"]
            assert consumed.shape == (BATCH, SIZE, SIZE, 1)
            np.testing.assert_array_equal(consumed, expected[name], err_msg=f"{step} {name}")


def test_batches_are_stored_train_slices_and_the_epoch_covers_a_once(runs):
    """Independently of the loader's code: with load and crop size equal to the stored size,
    each row is a stored slice of the train split as it is or flipped left to right."""
    ds, _, results = runs
    r = results[8]
    for name in ("A", "B"):
        rows, stored = _stored(ds, name)
        assert len(rows) == 2 * BATCH
        used = []
        for step in range(STEPS):
            for image in r[f"step{step}/{name}/global"]:
                matches = [
                    i
                    for i, s in enumerate(stored)
                    if np.array_equal(image, s) or np.array_equal(image, s[:, ::-1])
                ]
                assert len(matches) == 1, (name, step, matches)
                used.append(matches[0])
        if name == "A":
            assert sorted(used) == list(range(len(rows)))  # one epoch: every A slice once
        assert len(set(used)) > 1


def test_each_device_got_its_shard_of_the_global_batch(runs):
    _, _, results = runs
    r = results[8]
    mesh = list(r["mesh_devices"])
    assert sorted(mesh) == list(range(8))
    for step in range(STEPS):
        for name in ("A", "B"):
            prefix = f"step{step}/{name}"
            np.testing.assert_array_equal(r[f"{prefix}/shard_device"], mesh)
            np.testing.assert_array_equal(r[f"{prefix}/shard_rows"], [[k, k + 1] for k in range(8)])
            for k in range(8):
                np.testing.assert_array_equal(
                    r[f"{prefix}/shard_data"][k], r[f"{prefix}/global"][k : k + 1]
                )
    one = results[1]
    np.testing.assert_array_equal(one["step0/A/shard_rows"], [[0, BATCH]])


def test_eight_devices_end_where_one_does(runs):
    _, root, results = runs
    one, eight = results[1], results[8]
    state = sorted(k for k in one if k.startswith("state"))
    assert state == sorted(k for k in eight if k.startswith("state"))
    assert any("gen" in k for k in state) and any("disc" in k for k in state)
    for pool in ("pool_a", "pool_b"):  # both runs filled all 3 slots
        assert int(one[f"state['{pool}'].count"]) == int(eight[f"state['{pool}'].count"]) == 3
    for key in state:
        assert one[key].dtype == eight[key].dtype, key
        np.testing.assert_allclose(one[key], eight[key], atol=1e-5, rtol=0, err_msg=key)
    logs = [
        [
            json.loads(line)
            for line in (root / f"work{d}" / "metrics.jsonl").read_text().splitlines()
        ]
        for d in (1, 8)
    ]
    assert [x["step"] for x in logs[0]] == [x["step"] for x in logs[1]] == [1, 2]
    for a, b in zip(*logs, strict=True):
        for key in ("loss_G", "loss_D", "cycle_a", "disc_b"):
            assert a[key] == pytest.approx(b[key], rel=1e-6), key
