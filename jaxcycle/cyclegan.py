"""The CycleGAN algorithm: its networks, its state and one training step, top to bottom.

Domains A and B; generators gen_ab: A -> B and gen_ba: B -> A; discriminators disc_a
(real A vs fake A) and disc_b (real B vs fake B). For MR -> CT with A = MR and B = CT, the
paper's G is gen_ab, F is gen_ba, D_CT is disc_b and D_MR is disc_a. (The reference code's
G_A, G_B, D_A, D_B are gen_ab, gen_ba, disc_b, disc_a.)

One step, as in the reference (`CycleGANModel.optimize_parameters`):

1. both cycles forward: fake_b = gen_ab(a), rec_a = gen_ba(fake_b); fake_a = gen_ba(b),
   rec_b = gen_ab(fake_a);
2. both generators updated together (one Adam) on
   GAN(disc_b(fake_b), real) + GAN(disc_a(fake_a), real)
   + lambda_a |rec_a - a| + lambda_b |rec_b - b|
   + lambda_identity (lambda_b |gen_ab(b) - b| + lambda_a |gen_ba(a) - a|),
   the discriminators held fixed;
3. the fakes (not differentiated) pass through the image pools, and both discriminators are
   updated together (one Adam) on 0.5 (GAN(D(real), real) + GAN(D(pooled fake), fake)).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxcycle import losses, pool
from jaxcycle.architecture import Architecture
from jaxcycle.nets import Init, init_params
from jaxcycle.ops import at_least_float32

Params = Any
Batch = dict[str, jax.Array]


@dataclass(frozen=True)
class Objective:
    """The loss weights and GAN mode (reference defaults)."""

    gan_mode: str = "lsgan"
    lambda_a: float = 10.0
    lambda_b: float = 10.0
    lambda_identity: float = 0.5
    lambda_gp: float = 10.0  # gradient-penalty weight, 'wgangp' only

    def __post_init__(self) -> None:
        if self.gan_mode not in losses.GAN_MODES:
            raise ValueError(f"unknown GAN mode {self.gan_mode!r}; expected {losses.GAN_MODES}")


@dataclass(frozen=True)
class Networks:
    """The four networks of a CycleGAN."""

    gen_ab: Architecture
    gen_ba: Architecture
    disc_a: Architecture
    disc_b: Architecture
    init: Init = Init()  # how fresh weights are drawn (the reference's init_type, init_gain)

    @classmethod
    def create(
        cls,
        generator: Architecture,
        discriminator: Architecture,
        *,
        channels_a: int,
        channels_b: int,
        init: Init | None = None,
    ) -> Networks:
        """Both directions from one generator and one discriminator design, for images of
        `channels_a` and `channels_b` channels; `init` draws fresh weights (default: the
        reference's normal(0, 0.02))."""
        for arch in (generator, discriminator):
            if arch.norm == "batch":
                raise ValueError(
                    "training with batch norm is not supported (its running statistics would "
                    "need per-device handling); use instance norm, the CycleGAN default"
                )

        def with_channels(arch: Architecture, **channels: int) -> Architecture:
            return Architecture.from_dict({**arch.to_dict(), **channels})

        return cls(
            with_channels(generator, input_nc=channels_a, output_nc=channels_b),
            with_channels(generator, input_nc=channels_b, output_nc=channels_a),
            with_channels(discriminator, input_nc=channels_a),
            with_channels(discriminator, input_nc=channels_b),
            init or Init(),
        )

    @classmethod
    def from_config(cls, config: Any) -> Networks:
        """The four networks a training config describes (`config.model`, the channel counts
        of `config.data`): the one place a config becomes architectures."""
        m = config.model
        extra = {"n_blocks": m.n_blocks} if m.n_blocks >= 0 else {}
        if m.adapter_widths:
            extra.update(
                adapter_widths=tuple(m.adapter_widths),
                adapter_activation=m.adapter_activation,
                adapter_residual=m.adapter_residual,
                adapter_position=m.adapter_position,
            )
        generator = Architecture.preset(
            m.generator,
            width=m.ngf,
            norm=m.norm,
            use_dropout=m.use_dropout,
            padding=m.padding,
            **extra,
        )
        if m.discriminator == "n_layers":
            discriminator = Architecture(
                kind="nlayer", width=m.ndf, norm=m.norm, n_layers=m.n_layers_d
            )
        else:
            discriminator = Architecture.preset(m.discriminator, width=m.ndf, norm=m.norm)
        return cls.create(
            generator,
            discriminator,
            channels_a=config.data.channels_a,
            channels_b=config.data.channels_b,
            init=Init(m.init, m.init_gain),
        )

    def modules(self) -> dict[str, nn.Module]:
        return {
            name: getattr(self, name).build(self.init)
            for name in ("gen_ab", "gen_ba", "disc_a", "disc_b")
        }


@struct.dataclass
class TrainState:
    """Everything a CycleGAN run changes, as one pytree: checkpoint it and training resumes
    exactly."""

    step: jax.Array
    gen_params: Params  # {'gen_ab': ..., 'gen_ba': ...}
    disc_params: Params  # {'disc_a': ..., 'disc_b': ...}
    gen_opt_state: optax.OptState
    disc_opt_state: optax.OptState
    pool_a: pool.Pool  # earlier fakes of domain A, for disc_a
    pool_b: pool.Pool
    rng: jax.Array  # a raw uint32 key


def learning_rate_factor(epoch: jax.Array, n_epochs: int, n_epochs_decay: int) -> jax.Array:
    """The reference's linear policy for 1-based `epoch`: 1 through epoch n_epochs, then
    1 - (epoch - n_epochs) / (n_epochs_decay + 1), down to 1 / (n_epochs_decay + 1) in the last
    epoch. (This is the original schedule, rate updated at the end of each epoch; later
    versions of the reference update it at the start, one epoch earlier.)"""
    return 1.0 - jnp.maximum(0, epoch - n_epochs) / (n_epochs_decay + 1)


def learning_rate_schedule(
    lr: float, n_epochs: int, n_epochs_decay: int, steps_per_epoch: int
) -> optax.Schedule:
    """The per-epoch linear policy as an optax schedule over optimizer steps."""

    def schedule(count: jax.Array) -> jax.Array:
        epoch = count // steps_per_epoch + 1
        return lr * learning_rate_factor(epoch, n_epochs, n_epochs_decay)

    return schedule


def adam(
    schedule: optax.Schedule, beta1: float = 0.5, beta2: float = 0.999
) -> optax.GradientTransformation:
    """Adam as `torch.optim.Adam` (eps 1e-8 outside the square root)."""
    return optax.adam(schedule, b1=beta1, b2=beta2, eps=1e-8)


def abstract_generator_params(
    nets: Networks, image_shape_a: tuple[int, int, int], image_shape_b: tuple[int, int, int]
) -> dict[str, Any]:
    """Shapes of {'gen_ab': ..., 'gen_ba': ...} params, computed without allocating them."""
    modules = nets.modules()

    def init() -> dict[str, Params]:
        key = jax.random.PRNGKey(0)
        return {
            name: init_params(modules[name], key, shape)
            for name, shape in (("gen_ab", image_shape_a), ("gen_ba", image_shape_b))
        }

    return jax.eval_shape(init)


def init_state(
    nets: Networks,
    gen_tx: optax.GradientTransformation,
    disc_tx: optax.GradientTransformation,
    image_shape_a: tuple[int, int, int],
    image_shape_b: tuple[int, int, int],
    pool_size: int,
    seed: int,
    params: dict[str, Params] | None = None,
    image_dtype: jnp.dtype = jnp.float32,
) -> TrainState:
    """A fresh state; `params` (by network name) replaces the random initialisation.

    The pools hold images of `image_dtype`, the batches' dtype."""
    key = jax.random.PRNGKey(seed)
    key, *init_keys = jax.random.split(key, 5)
    shapes = {
        "gen_ab": image_shape_a,
        "gen_ba": image_shape_b,
        "disc_a": image_shape_a,
        "disc_b": image_shape_b,
    }
    modules = nets.modules()
    given = params or {}
    initial = {}
    for (name, module), k in zip(modules.items(), init_keys, strict=True):
        if name in given:
            initial[name] = given[name]
        else:
            initial[name] = init_params(module, k, shapes[name])
    gen_params = {k: initial[k] for k in ("gen_ab", "gen_ba")}
    disc_params = {k: initial[k] for k in ("disc_a", "disc_b")}
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        gen_params=gen_params,
        disc_params=disc_params,
        gen_opt_state=gen_tx.init(gen_params),
        disc_opt_state=disc_tx.init(disc_params),
        pool_a=pool.empty_pool(pool_size, image_shape_a, image_dtype),
        pool_b=pool.empty_pool(pool_size, image_shape_b, image_dtype),
        rng=key,
    )


def make_train_step(
    nets: Networks,
    objective: Objective,
    gen_tx: optax.GradientTransformation,
    disc_tx: optax.GradientTransformation,
    compute_dtype: jnp.dtype | None = None,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
    """The pure train step: (state, {'A': a, 'B': b}) -> (new state, losses).

    Images are NHWC in [-1, 1]. The networks compute in the images' dtype, or in
    `compute_dtype` if given: with bfloat16, on float32 master weights, while losses,
    normalisation statistics and updates stay in float32.
    """
    modules = nets.modules()
    o = objective
    if o.lambda_identity > 0 and nets.gen_ab.input_nc != nets.gen_ab.output_nc:
        raise ValueError(
            "the identity loss needs as many channels in A as in B "
            f"({nets.gen_ab.input_nc} vs {nets.gen_ab.output_nc}); set lambda_identity=0"
        )

    # Each network is traced once and called as one function wherever the step runs it
    # (six generator passes, four critic passes): the same program, traced in a fraction of
    # the time. Networks of equal description share one function.
    applies = {
        module: jax.jit(functools.partial(module.apply, train=True)) for module in modules.values()
    }

    def run(name: str, params: Params, x: jax.Array, key: jax.Array) -> jax.Array:
        y = applies[modules[name]](
            {"params": params},
            x if compute_dtype is None else x.astype(compute_dtype),
            rngs={"dropout": key},
        )
        return at_least_float32(y)

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        real_a, real_b = batch["A"], batch["B"]
        rng, k_gen, k_disc, k_pool_a, k_pool_b, k_gp = jax.random.split(state.rng, 6)
        disc = state.disc_params

        # 1-2. Both cycles, and the generators' update with the discriminators held fixed.
        def generator_loss(gen: Params):
            k = iter(jax.random.split(k_gen, 6))
            fake_b = run("gen_ab", gen["gen_ab"], real_a, next(k))
            rec_a = run("gen_ba", gen["gen_ba"], fake_b, next(k))
            fake_a = run("gen_ba", gen["gen_ba"], real_b, next(k))
            rec_b = run("gen_ab", gen["gen_ab"], fake_a, next(k))
            terms = {
                "G_ab": losses.gan_loss(
                    run("disc_b", disc["disc_b"], fake_b, k_disc), True, o.gan_mode
                ),
                "G_ba": losses.gan_loss(
                    run("disc_a", disc["disc_a"], fake_a, k_disc), True, o.gan_mode
                ),
                "cycle_a": o.lambda_a * losses.l1(rec_a, real_a),
                "cycle_b": o.lambda_b * losses.l1(rec_b, real_b),
            }
            if o.lambda_identity > 0:
                idt_b = run("gen_ab", gen["gen_ab"], real_b, next(k))
                idt_a = run("gen_ba", gen["gen_ba"], real_a, next(k))
                terms["idt_b"] = o.lambda_identity * o.lambda_b * losses.l1(idt_b, real_b)
                terms["idt_a"] = o.lambda_identity * o.lambda_a * losses.l1(idt_a, real_a)
            return sum(terms.values()), (terms, fake_a, fake_b)

        (loss_g, (gen_terms, fake_a, fake_b)), gen_grads = jax.value_and_grad(
            generator_loss, has_aux=True
        )(state.gen_params)
        updates, gen_opt_state = gen_tx.update(gen_grads, state.gen_opt_state, state.gen_params)
        gen_params = optax.apply_updates(state.gen_params, updates)

        # 3. The discriminators, on real images and on pooled fakes.
        pool_a, pooled_a = pool.query(state.pool_a, jax.lax.stop_gradient(fake_a), k_pool_a)
        pool_b, pooled_b = pool.query(state.pool_b, jax.lax.stop_gradient(fake_b), k_pool_b)

        def discriminator_loss(disc: Params):
            terms = {}
            for name, real, fake in (("disc_a", real_a, pooled_a), ("disc_b", real_b, pooled_b)):
                critic = lambda x, name=name: run(name, disc[name], x, k_disc)  # noqa: E731
                terms[name] = 0.5 * (
                    losses.gan_loss(critic(real), True, o.gan_mode)
                    + losses.gan_loss(critic(fake), False, o.gan_mode)
                )
                if o.gan_mode == "wgangp":
                    gp = losses.gradient_penalty(critic, real, fake, k_gp)
                    terms[f"{name}_gp"] = o.lambda_gp * gp
            return sum(terms.values()), terms

        (loss_d, disc_terms), disc_grads = jax.value_and_grad(discriminator_loss, has_aux=True)(
            state.disc_params
        )
        updates, disc_opt_state = disc_tx.update(
            disc_grads, state.disc_opt_state, state.disc_params
        )
        disc_params = optax.apply_updates(state.disc_params, updates)

        new_state = state.replace(
            step=state.step + 1,
            gen_params=gen_params,
            disc_params=disc_params,
            gen_opt_state=gen_opt_state,
            disc_opt_state=disc_opt_state,
            pool_a=pool_a,
            pool_b=pool_b,
            rng=rng,
        )
        metrics = {"loss_G": loss_g, "loss_D": loss_d, **gen_terms, **disc_terms}
        return new_state, metrics

    return train_step
