"""The image pool (Shrivastava et al. 2017) as explicit, jit-compatible state.

The discriminators see a mix of the newest fakes and older ones. Queried once per step per
direction with the batch of fakes, image by image, in order (the reference's `ImagePool`):
while the pool holds fewer than `size` images, the new image is stored and returned; once
full, with probability 1/2 a stored image chosen uniformly is returned and the new one takes
its place, otherwise the new image is returned. Size 0 disables the pool.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Pool:
    """Stored images (size, H, W, C) and how many slots are filled."""

    images: jax.Array
    count: jax.Array

    @property
    def size(self) -> int:
        return self.images.shape[0]


def empty_pool(size: int, image_shape: tuple[int, ...], dtype=jnp.float32) -> Pool:
    """A pool of `size` slots for images of `image_shape` (H, W, C)."""
    return Pool(jnp.zeros((size, *image_shape), dtype), jnp.zeros((), jnp.int32))


def query(pool: Pool, images: jax.Array, key: jax.Array) -> tuple[Pool, jax.Array]:
    """Passes a batch of new images through the pool: (new pool, images to judge)."""
    if pool.size == 0:
        return pool, images

    def one(carry, inputs):
        stored, count = carry
        image, k = inputs
        k_coin, k_slot = jax.random.split(k)
        filling = count < pool.size
        swap = jax.random.uniform(k_coin) > 0.5
        slot = jnp.where(filling, count, jax.random.randint(k_slot, (), 0, pool.size))
        old = stored[slot]
        stored = stored.at[slot].set(jnp.where(filling | swap, image, old))  # in place
        out = jnp.where(swap & ~filling, old, image)
        return (stored, count + filling.astype(jnp.int32)), out

    keys = jax.random.split(key, images.shape[0])
    (stored, count), out = jax.lax.scan(one, (pool.images, pool.count), (images, keys))
    return Pool(stored, count), out
