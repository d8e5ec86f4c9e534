"""Runs three CycleGAN steps on a fixed global batch and saves the final parameters.

The images are float64 (`jax_enable_x64`; the parameters stay float32): a cross-device
all-reduce adds gradients in another order than one device does, and Adam's first steps,
about lr * sign(g), turn the float32 rounding noise of gradients near zero into parameter
differences of up to lr. In float64 that noise falls far below Adam's epsilon, so the
comparison sees the algorithm (gradients averaged over the global batch, one pool, one
PRNG stream), not the rounding.

Used by test_parallel.py in subprocesses, so that each run can choose its own device count
(XLA_FLAGS) and join a multi-process run (jax.distributed) before JAX starts:

    python tests/parallel_worker.py OUT.npz [--devices N] [--process-id I --num-processes P
                                                           --port PORT]
"""

import argparse
import os
import sys

STEPS, GLOBAL_BATCH, SIZE = 3, 8, 32


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--use-devices", type=int, default=0, help="mesh over the first N only")
    p.add_argument("--process-id", type=int)
    p.add_argument("--num-processes", type=int)
    p.add_argument("--port", type=int)
    args = p.parse_args()
    os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)

    from jaxcycle import cyclegan, parallel
    from jaxcycle.architecture import Architecture

    if args.num_processes:
        parallel.initialize_distributed(
            f"127.0.0.1:{args.port}", args.num_processes, args.process_id
        )
    gen = Architecture("resnet", 3, 3, 8, "instance", n_blocks=1)
    disc = Architecture("nlayer", 3, width=8, norm="instance", n_layers=2)
    nets = cyclegan.Networks.create(gen, disc, channels_a=3, channels_b=3)
    tx = cyclegan.adam(cyclegan.learning_rate_schedule(2e-4, 1, 1, steps_per_epoch=2))
    devices = jax.devices()[: args.use_devices] if args.use_devices else None
    mesh = parallel.make_mesh(devices)
    shape = (SIZE, SIZE, 3)
    init = jax.jit(
        lambda: cyclegan.init_state(
            nets, tx, tx, shape, shape, pool_size=5, seed=0, image_dtype=np.float64
        ),
        out_shardings=parallel.replicated(mesh),
    )
    state = init()
    step = jax.jit(
        cyclegan.make_train_step(nets, cyclegan.Objective(), tx, tx),
        in_shardings=(parallel.replicated(mesh), parallel.batch_sharded(mesh)),
        out_shardings=(parallel.replicated(mesh), parallel.replicated(mesh)),
        donate_argnums=0,
    )
    rng = np.random.default_rng(0)
    per_process = GLOBAL_BATCH // jax.process_count()
    lo = jax.process_index() * per_process
    for _ in range(STEPS):
        a = rng.uniform(-1, 1, (GLOBAL_BATCH, *shape))
        b = rng.uniform(-1, 1, (GLOBAL_BATCH, *shape))
        local = {"A": a[lo : lo + per_process], "B": b[lo : lo + per_process]}
        state, _ = step(state, parallel.place_batch(local, mesh))
    if jax.process_index() == 0:
        leaves = jax.tree.leaves_with_path((state.gen_params, state.disc_params, state.pool_a))
        arrays = {jax.tree_util.keystr(k): np.asarray(v.addressable_data(0)) for k, v in leaves}
        arrays["__devices__"] = np.array(mesh.devices.size)
        np.savez(args.out, **arrays)


if __name__ == "__main__":
    main()
