"""Training a CycleGAN: `jaxcycle train --config FILE --workdir DIR [--config.a.b=value ...]`.

One linear script: mesh -> input pipeline -> networks and optimizers -> state (the run's
latest checkpoint, else a fresh one) -> update step -> loop with metrics, samples and
checkpoints. The algorithm itself is in `jaxcycle.cyclegan`.

A workdir holds `config.json`, `checkpoints/` (Orbax; the whole train state, so a resumed run
continues bit-identically: same data order, pools and random numbers), `metrics.jsonl` (one
JSON record per logged step, for a notebook), `samples/` (image grids) and `.lock`, held by the
process training there (a second `jaxcycle train` on the workdir stops at once, naming it).
`config.json` is written once the run's start-up checks have passed.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import itertools
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm import tqdm

from jaxcycle import cyclegan, locks, ops, parallel, transfer
from jaxcycle.data.augment import Augment
from jaxcycle.data.images import write_image
from jaxcycle.data.loader import UnpairedLoader
from jaxcycle.data.sources import ChannelMatched, ImageFolderSource
from jaxcycle.data.store import Dataset

LOCK_FILE = ".lock"  # held by the process training in the workdir (jaxcycle.locks)


class DivergenceError(RuntimeError):
    """A loss became NaN or infinite."""


def optimizers(
    config: ml_collections.ConfigDict, steps_per_epoch: int, networks: cyclegan.Networks
) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """Adam for the generator pair and for the discriminator pair, on the reference's
    learning-rate policy; generator parameters outside the config's freeze rule get none."""
    o, t = config.optim, config.transfer
    schedule = cyclegan.learning_rate_schedule(o.lr, o.n_epochs, o.n_epochs_decay, steps_per_epoch)
    gen_tx = cyclegan.adam(schedule, o.beta1, o.beta2)
    disc_tx = cyclegan.adam(schedule, o.beta1, o.beta2)
    if t.freeze != "full" or t.trainable:
        crop = config.data.crop_size
        shapes = cyclegan.abstract_generator_params(
            networks, (crop, crop, config.data.channels_a), (crop, crop, config.data.channels_b)
        )
        mask = transfer.trainable_mask(shapes, transfer.freeze_patterns(t.freeze, t.trainable))
        if jax.process_index() == 0:
            print(transfer.summary(shapes, mask))
        gen_tx = transfer.masked_optimizer(gen_tx, mask)
    return gen_tx, disc_tx


def training_sources(config: ml_collections.ConfigDict) -> tuple:
    """The A and B sources a config names: a dataset split, else two image folders; images
    matched to the configured channel counts."""
    d = config.data
    if d.dataset:
        dataset = Dataset.open(d.dataset)
        sources = dataset.source("A", d.split), dataset.source("B", d.split)
    elif d.train_a and d.train_b:
        sources = ImageFolderSource(d.train_a), ImageFolderSource(d.train_b)
    else:
        raise ValueError("no training data: set data.dataset, or data.train_a and data.train_b")
    return ChannelMatched(sources[0], d.channels_a), ChannelMatched(sources[1], d.channels_b)


def make_loader(config: ml_collections.ConfigDict, global_batch: int):
    """The unpaired loader of this process's part of each global batch."""
    d = config.data
    source_a, source_b = training_sources(config)
    return UnpairedLoader(
        source_a,
        source_b,
        global_batch,
        seed=config.seed,
        augment=Augment(d.load_size, d.crop_size, d.flip),
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        prefetch=d.prefetch,
        workers=d.workers,
    )


def to_host(tree: Any) -> Any:
    """Replicated (or single-device) arrays -> NumPy, on every process of a multi-host run."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def _background(fn: Callable[[], Any]) -> concurrent.futures.Future:
    """`fn()` run on a thread of its own; `.result()` gives its value or raises its error."""
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxcycle")
    try:
        return pool.submit(fn)
    finally:
        pool.shutdown(wait=False)


def _save_config(config: ml_collections.ConfigDict, workdir: Path, resumed: bool) -> None:
    """config.json of a fresh run (replacing one a failed start left); a resumed run whose
    config differs keeps the original and writes config.resumed.json, naming the changes."""
    path = workdir / "config.json"
    text = config.to_json_best_effort(indent=2, sort_keys=True) + "\n"
    if resumed and path.exists() and path.read_text() != text:
        before, now = json.loads(path.read_text()), json.loads(text)
        changed = _diff(before, now)
        print(f"note: config differs from the one {workdir} started with: {', '.join(changed)}")
        path.with_name("config.resumed.json").write_text(text)
    elif not (resumed and path.exists()):
        path.write_text(text)


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += _diff(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            out.append(f"{prefix}{k}: {a.get(k)!r} -> {b.get(k)!r}")
    return out


class MetricsLog:
    """metrics.jsonl: one record per logged step; a resumed run drops records after its step."""

    def __init__(self, path: Path, resume_step: int, enabled: bool):
        self.path, self.enabled = path, enabled
        if enabled and path.exists():
            kept = [
                line
                for line in path.read_text().splitlines()
                if line and json.loads(line)["step"] <= resume_step
            ]
            path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def make_sample_fn(nets: cyclegan.Networks) -> Callable:
    """(generator params, batch) -> the first image pair's [real, fake, reconstruction] rows."""
    modules = nets.modules()

    def sample(gen_params, batch):
        def g(name, x):
            return modules[name].apply({"params": gen_params[name]}, x, train=False)

        a, b = batch["A"][:1], batch["B"][:1]
        fake_b, fake_a = g("gen_ab", a), g("gen_ba", b)
        return [a, fake_b, g("gen_ba", fake_b)], [b, fake_a, g("gen_ab", fake_a)]

    return sample


def save_sample_grid(rows: list[list[np.ndarray]], path: Path) -> None:
    """Writes rows of NHWC [-1, 1] images (first image of each) as one RGB PNG."""

    def rgb(x):
        x = np.asarray(x)[0]
        return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x

    grid = np.concatenate([np.concatenate([rgb(x) for x in row], axis=1) for row in rows], axis=0)
    write_image(path, grid, overwrite=True)


def train(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    initial_params: dict[str, Any] | None = None,
    progress: bool = True,
) -> cyclegan.TrainState:
    """Trains (or resumes training) in `workdir`; returns the final state.

    `initial_params` (by network name: gen_ab, gen_ba, disc_a, disc_b) replaces the random
    initialisation of a fresh run; by default the generators named by `config.transfer` do.
    """
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    is_main = jax.process_index() == 0
    # One training process per workdir (on a multi-host run, process 0 speaks for all).
    lock = locks.ExclusiveLock(workdir / LOCK_FILE, f"training workdir {workdir}")
    with lock if is_main else contextlib.nullcontext():
        return _train(config, workdir, initial_params, progress, is_main)


def _train(
    config: ml_collections.ConfigDict,
    workdir: Path,
    initial_params: dict[str, Any] | None,
    progress: bool,
    is_main: bool,
) -> cyclegan.TrainState:
    """`train` with the workdir held."""
    # --- Mesh: data parallel over every device of every process.
    mesh = parallel.make_mesh()
    parallel.check_batch_size(config.train.batch_size, mesh)
    state_sharding = parallel.replicated(mesh)

    # --- Input pipeline.
    loader = make_loader(config, config.train.batch_size)
    steps_per_epoch = loader.steps_per_epoch
    total_steps = (config.optim.n_epochs + config.optim.n_epochs_decay) * steps_per_epoch
    if config.train.max_steps > 0:
        total_steps = min(total_steps, config.train.max_steps)

    # --- Networks, objective and optimizers.
    networks = cyclegan.Networks.from_config(config)
    objective = cyclegan.Objective(**config.objective.to_dict())
    gen_tx, disc_tx = optimizers(config, steps_per_epoch, networks)
    if initial_params is None:
        initial_params = transfer.transfer_params(config, networks)
    crop = config.data.crop_size
    init = functools.partial(
        cyclegan.init_state,
        networks,
        gen_tx,
        disc_tx,
        (crop, crop, config.data.channels_a),
        (crop, crop, config.data.channels_b),
        config.train.pool_size,
        config.seed,
        # The pools hold the fakes, which the networks return in at least float32.
        image_dtype=jnp.promote_types(jnp.dtype(config.train.compute_dtype), jnp.float32),
    )

    # --- State: the run's latest checkpoint, else a fresh one (its shapes from the same trace).
    fresh = jax.jit(lambda p: init(params=p), out_shardings=state_sharding).trace(
        initial_params or {}
    )
    target = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=state_sharding), fresh.out_info
    )
    manager = ocp.CheckpointManager(
        workdir / "checkpoints",
        options=ocp.CheckpointManagerOptions(
            max_to_keep=config.train.keep_checkpoints, enable_async_checkpointing=True
        ),
    )
    latest = manager.latest_step()
    start = 0 if latest is None else latest

    # --- The update step: compiled once, state donated, batch sharded over the mesh.
    dtype = jnp.dtype(config.train.compute_dtype)
    train_step = ops.jit(
        cyclegan.make_train_step(networks, objective, gen_tx, disc_tx, dtype),
        in_shardings=(state_sharding, parallel.batch_sharded(mesh)),
        out_shardings=(state_sharding, state_sharding),
        donate_argnums=0,
    )
    sample = ops.jit(make_sample_fn(networks), out_shardings=state_sharding)
    batches = (parallel.place_batch(local, mesh) for local in loader.batches(start))
    compiling = None
    if start < total_steps:
        # Traced against the state's shapes and the first batch, then compiled (or loaded from
        # the compilation cache) on a thread of its own while the state is read or created.
        first = next(batches)
        batches = itertools.chain([first], batches)
        t0 = time.perf_counter()
        compiling = _background(train_step.lower(target, first).compile)

    if latest is not None:
        state = manager.restore(latest, args=ocp.args.StandardRestore(target))
        if is_main:
            print(f"resuming {workdir} from step {latest}")
    else:
        state = fresh.lower().compile()(initial_params or {})
    if is_main:  # only now: a start that failed its checks above leaves no config behind
        _save_config(config, workdir, resumed=latest is not None)
    if compiling is not None:
        train_step = compiling.result()
        if is_main:
            print(f"train step ready in {time.perf_counter() - t0:.1f} s")

    # --- The loop.
    log = MetricsLog(workdir / "metrics.jsonl", start, is_main)
    bar = tqdm(total=total_steps, initial=start, unit="step", disable=not (progress and is_main))
    last_saved = latest
    t0, images_seen = time.perf_counter(), 0

    def checked(done: int, losses: dict[str, jax.Array]) -> dict[str, float]:
        """A step's losses on the host; DivergenceError if one is not finite."""
        losses = {k: float(v) for k, v in to_host(losses).items()}
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        if bad:
            manager.wait_until_finished()
            where = f"step {last_saved}" if last_saved is not None else "none saved yet"
            raise DivergenceError(
                f"{', '.join(bad)} became {losses[bad[0]]} at step {done}; the last good "
                f"checkpoint in {workdir / 'checkpoints'} is kept ({where})"
            )
        return losses

    unchecked = None  # the last step's losses: checked while the next step runs, not before
    try:
        for step in range(start, total_steps):
            batch = next(batches)
            state, metrics = train_step(state, batch)
            done = step + 1
            if unchecked is not None:
                checked(*unchecked)
            unchecked = (done, metrics)
            images_seen += config.train.batch_size
            epoch_end = done % steps_per_epoch == 0
            log_due = done % config.train.log_every == 0 or done == total_steps
            save_due = done % config.train.checkpoint_every == 0 or epoch_end or done == total_steps
            if log_due or save_due:  # checked now: nothing diverged is logged or saved
                losses, unchecked = checked(done, metrics), None
            if log_due:
                rate = images_seen / (time.perf_counter() - t0)
                epoch = step // steps_per_epoch + 1
                record = {"step": done, "epoch": epoch, "images_per_s": rate, **losses}
                log.write(record)
                bar.set_postfix(
                    G=f"{record['loss_G']:.3f}", D=f"{record['loss_D']:.3f}", ips=f"{rate:.2f}"
                )
            if done % config.train.sample_every == 0:
                real_fake_rec = to_host(sample(state.gen_params, batch))  # on every process
                if is_main:
                    grid = workdir / "samples" / f"step_{done:07d}.png"
                    save_sample_grid(real_fake_rec, grid)
            if save_due:
                manager.save(done, args=ocp.args.StandardSave(state))
                last_saved = done
            bar.update(1)
    finally:
        bar.close()
        manager.wait_until_finished()
        manager.close()
    return state
