"""Runs the real training loop (`jaxcycle.train.train`) on an ingested dataset and saves what
it consumed and where it ended: the final parameters and image pools and, for every step,
each batch as placed on the devices (the global array and every device's shard).

The batches are recorded by wrapping `parallel.place_batch`, the call through which the train
loop hands the loader's batches to the mesh; nothing else about the loop is changed.

Like parallel_worker.py it enables float64 (`jax_enable_x64`) and trains with
`train.compute_dtype=float64` (parameters stay float32), so that the different summation order
of the cross-device gradient all-reduce cannot be amplified by Adam's first steps.

Used by test_train_store_devices.py in subprocesses, so that each run fixes its own device
count (XLA_FLAGS) before JAX starts:

    python tests/store_worker.py [--devices N] OUT.npz WORKDIR DATASET [FIELD=VALUE ...]
"""

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("workdir")
    p.add_argument("dataset")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args()
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    sys.path.insert(0, str(ROOT))

    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)

    from jaxcycle import parallel, train
    from jaxcycle.config import load_config

    config = load_config(
        ROOT / "configs" / "cyclegan.py",
        [f"data.dataset={args.dataset}", "train.compute_dtype=float64", *args.overrides],
    )

    arrays: dict[str, np.ndarray] = {}
    place_batch = parallel.place_batch
    steps = []

    def recording_place_batch(local, mesh):
        placed = place_batch(local, mesh)
        step = len(steps)
        steps.append(step)
        mesh_ids = [d.id for d in mesh.devices.flat]
        arrays["mesh_devices"] = np.array(mesh_ids)
        for name, array in placed.items():
            prefix = f"step{step}/{name}"
            arrays[f"{prefix}/global"] = np.asarray(array)
            shards = sorted(array.addressable_shards, key=lambda s: mesh_ids.index(s.device.id))
            arrays[f"{prefix}/shard_device"] = np.array([s.device.id for s in shards])
            arrays[f"{prefix}/shard_rows"] = np.array(
                [s.index[0].indices(array.shape[0])[:2] for s in shards]
            )
            arrays[f"{prefix}/shard_data"] = np.stack([np.asarray(s.data) for s in shards])
        return placed

    parallel.place_batch = recording_place_batch
    state = train.train(config, args.workdir, progress=False)

    leaves = jax.tree.leaves_with_path(
        {
            "gen": state.gen_params,
            "disc": state.disc_params,
            "pool_a": state.pool_a,
            "pool_b": state.pool_b,
        }
    )
    for path, value in leaves:
        arrays[f"state{jax.tree_util.keystr(path)}"] = np.asarray(value.addressable_data(0))
    arrays["steps"] = np.array(len(steps))
    arrays["device_count"] = np.array(jax.device_count())
    np.savez(args.out, **arrays)


if __name__ == "__main__":
    main()
