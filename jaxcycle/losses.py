"""CycleGAN losses, as the reference defines them: means over all elements.

GAN modes: 'lsgan' (the reference default: MSE against 1 for real, 0 for fake), 'vanilla'
(the paper's eq. 1: binary cross-entropy, computed from logits for stability) and 'wgangp'
(Wasserstein: -mean for real, +mean for fake, with a gradient penalty on the critic).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxcycle.ops import at_least_float32

GAN_MODES = ("lsgan", "vanilla", "wgangp")


def gan_loss(prediction: jax.Array, target_is_real: bool, mode: str) -> jax.Array:
    """The adversarial loss of discriminator outputs against an all-real or all-fake target."""
    prediction = at_least_float32(prediction)
    if mode == "lsgan":
        return jnp.mean(jnp.square(prediction - (1.0 if target_is_real else 0.0)))
    if mode == "vanilla":
        target = jnp.full_like(prediction, 1.0 if target_is_real else 0.0)
        return jnp.mean(optax.sigmoid_binary_cross_entropy(prediction, target))
    if mode == "wgangp":
        return -jnp.mean(prediction) if target_is_real else jnp.mean(prediction)
    raise ValueError(f"unknown GAN mode {mode!r}; expected one of {GAN_MODES}")


def l1(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean absolute difference, in at least float32."""
    return jnp.mean(jnp.abs(at_least_float32(a) - at_least_float32(b)))


def gradient_penalty(
    critic: Callable[[jax.Array], jax.Array], real: jax.Array, fake: jax.Array, key: jax.Array
) -> jax.Array:
    """WGAN-GP penalty (Gulrajani et al. 2017) as the reference's `cal_gradient_penalty`
    ('mixed'): E[(||grad critic(x_hat)||_2 - 1)^2] at x_hat = alpha real + (1 - alpha) fake,
    one alpha ~ U(0, 1) per image. Multiply by the penalty weight (10 in the paper)."""
    alpha = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    mixed = alpha * real + (1 - alpha) * fake
    grads = jax.grad(lambda x: jnp.sum(at_least_float32(critic(x))))(mixed)
    norms = jnp.sqrt(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=1) + 1e-16)
    return jnp.mean(jnp.square(norms - 1.0))
