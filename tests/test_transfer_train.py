"""A short transfer-learning run through the CLI, from a test-made reference .pth: frozen
layers stay bit-identical, the new layers train, and only they have optimizer state."""

from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image

from jaxcycle import transfer
from jaxcycle.architecture import Architecture
from jaxcycle.cli import main
from jaxcycle.inference import load_run
from jaxcycle.weights import torch_to_flax

torch = pytest.importorskip("torch")
from benchmarks import torch_reference as ref  # noqa: E402

ROOT = Path(__file__).parents[1]


def test_transfer_run_freezes_pretrained_layers(tmp_path):
    arch = Architecture("resnet", 3, 3, 8, "instance", n_blocks=1)
    model = ref.randomize(ref.build(arch), seed=11)
    torch.save(model.state_dict(), tmp_path / "generic.pth", _use_new_zipfile_serialization=False)
    rng = np.random.default_rng(0)
    for domain in ("A", "B"):
        (tmp_path / domain).mkdir()
        for i in range(4):
            grey = rng.integers(0, 256, (32, 32), dtype=np.uint8)
            Image.fromarray(grey).save(tmp_path / domain / f"{i}.png")
    workdir = tmp_path / "run"
    args = [
        "train",
        "--config",
        f"{ROOT / 'configs' / 'transfer.py'}:horse2zebra",
        "--workdir",
        str(workdir),
        "--quiet",
        f"--config.transfer.checkpoint={tmp_path / 'generic.pth'}",
        f"--config.data.train_a={tmp_path / 'A'}",
        f"--config.data.train_b={tmp_path / 'B'}",
        "--config.model.ngf=8",
        "--config.model.n_blocks=1",
        "--config.model.ndf=8",
        "--config.model.adapter_widths=(32, 32)",
        "--config.data.load_size=32",
        "--config.data.crop_size=32",
        "--config.train.max_steps=3",
        "--config.train.pool_size=2",
        "--config.data.workers=1",
    ]
    assert main(args) == 0

    with ocp.CheckpointManager(workdir / "checkpoints") as manager:
        state = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore())
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    pretrained = transfer.adapt_channels(torch_to_flax(sd)[1]["params"], 1, 1)
    flat_pre = {
        transfer.path_str(p): v for p, v in jax.tree_util.tree_flatten_with_path(pretrained)[0]
    }
    n_adapter = 0
    for name in ("gen_ab", "gen_ba"):
        for path, value in jax.tree_util.tree_flatten_with_path(state["gen_params"][name])[0]:
            key = transfer.path_str(path)
            if key.startswith("adapter/"):
                n_adapter += 1
                continue
            np.testing.assert_array_equal(value, flat_pre[key], err_msg=f"{name}/{key}")
    assert n_adapter == 8  # 2 generators x 2 layers x (kernel, bias)

    # Adam's mu and nu exist for exactly the adapter leaves of the generators.
    gen_opt_arrays = [x for x in jax.tree.leaves(state["gen_opt_state"]) if np.ndim(x) > 0]
    assert len(gen_opt_arrays) == 2 * n_adapter
    # Every adapter leaf moved from its initial value.
    config, networks, final, _ = load_run(workdir)
    initial = transfer.transfer_params(config, networks)
    for name in ("gen_ab", "gen_ba"):
        for path, before in jax.tree_util.tree_flatten_with_path(initial[name]["adapter"])[0]:
            after = final[name]["adapter"]
            for part in path:
                after = after[part.key]
            assert not np.array_equal(before, after), f"{name}/adapter{transfer.path_str(path)}"
