"""`jaxcycle demo` at tiny scale, offline: generic weights trained on photographs, exported to
.pth and imported back, the four study rows, and the key numbers printed at the end."""

import csv
import json

import numpy as np
import pytest

from jaxcycle.paper.demo import PHOTOS, TEXTURES, DemoScale, run_demo

TINY = DemoScale(subjects=4, size=48, slices=2, epochs=1, generic_steps=2, width=8, blocks=1)
ROWS = (
    "photo2texture_demo.paper",
    "photo2texture_demo.residual",
    "photo2texture_demo.finetune",
    "random.residual",
    "random.finetune",
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    return workdir, run_demo(workdir, TINY, offline=True, progress=False)


def test_generic_pictures_are_not_medical():
    medical = {"retina", "immunohistochemistry", "microaneurysms", "cells3d", "kidney", "cell"}
    assert not medical & {*PHOTOS, *TEXTURES}


def test_rows_and_weights(demo):
    workdir, outcomes = demo
    assert set(outcomes) == set(ROWS)
    for row in ROWS:
        weights, variant = row.split(".")
        assert outcomes[row]["settings"]["weights"] == weights
        assert outcomes[row]["settings"]["variant"] == variant
    note = (workdir / "WEIGHTS.txt").read_text()
    assert "photo2texture_demo" in note and "NOT a published one" in note


def test_imported_generic_weights_equal_the_trained_ones(demo):
    """The .pth the demo exported, read back by the converter, is the generic run's gen_ab."""
    import jax

    from converters import pth
    from jaxcycle.inference import load_run
    from jaxcycle.weights import torch_to_flax

    workdir, _ = demo
    exported = workdir / "generic" / "photo2texture_demo.pth"
    _, variables = torch_to_flax(pth.load_state_dict(exported))
    _, _, gen_params, _ = load_run(workdir / "generic" / "run")
    imported, trained = variables["params"], gen_params["gen_ab"]
    assert jax.tree.structure(imported) == jax.tree.structure(trained)
    for a, b in zip(jax.tree.leaves(imported), jax.tree.leaves(trained), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_key_numbers_are_the_tables(demo):
    """The numbers the demo prints at the end are the tables' SSIM means, best first."""
    from jaxcycle.paper.study import key_numbers

    workdir, outcomes = demo
    again = run_demo(workdir, TINY, offline=True, progress=False)  # resumes, trains nothing
    assert again == json.loads(json.dumps(outcomes))  # as read back from done.json
    printed = key_numbers(again)
    with open(workdir / "study" / "tables" / "table_iii_mr_to_ct.csv") as f:
        table = {r["model"]: float(r["ssim_mean"]) for r in csv.DictReader(f)}
    block = printed[printed.index("MR->CT") : printed.index("CT->MR")]
    listed = [cells for cells in map(str.split, block.splitlines()) if cells[1:2] == ["SSIM"]]
    names = [cells[0] for cells in listed]
    assert names == sorted(table, key=table.get, reverse=True)
    for cells in listed:
        assert float(cells[cells.index("SSIM") + 1]) == pytest.approx(table[cells[0]], abs=5e-4)
    assert "best pretrained row: photo2texture_demo." in block
    assert f"best row overall: {names[0]}" in block
    assert json.loads((workdir / "study" / "study.json").read_text()).keys() == set(ROWS)
