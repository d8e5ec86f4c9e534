"""The train step against the reference PyTorch CycleGAN iteration, and its parts (pool,
learning-rate policy, losses) against their reference definitions."""

import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from converters.tables import layer_table
from jaxcycle import cyclegan, losses, pool
from jaxcycle.architecture import Architecture
from jaxcycle.weights import flax_to_torch, torch_to_flax

torch = pytest.importorskip("torch")
from benchmarks import torch_reference as ref  # noqa: E402

GEN = Architecture("resnet", 3, 3, 8, "instance", n_blocks=2)
DISC = Architecture("nlayer", 3, width=8, norm="instance", n_layers=2)
LR = 2e-4


def _constant_adam():
    return cyclegan.adam(cyclegan.learning_rate_schedule(LR, 100, 100, steps_per_epoch=1))


@pytest.mark.parametrize("gan_mode", ["lsgan", "vanilla"])
@pytest.mark.parametrize("lambda_identity", [0.5, 0.0])
def test_two_steps_match_reference_iterations(gan_mode, lambda_identity):
    """Two whole iterations in float64 on both sides: the losses of each, and every
    parameter after them (Adam's first step moves each weight by +-lr, the sign of its
    gradient; the second by an amount that depends on both gradients' values).

    Float64, because a float32 comparison hangs on single ReLU gates: in this small network
    a pre-activation of 1.6e-6 sits within float32 rounding of zero, and which side it rounds
    to (a matter of summation order, different between equally exact formulations) changes
    a few small first-layer gradients' signs. In float64 no gate is that close.
    """
    torch_nets = {
        "G_A": ref.randomize(ref.build(GEN), 1).double(),
        "G_B": ref.randomize(ref.build(GEN), 2).double(),
        "D_A": ref.randomize(ref.build(DISC), 3).double(),
        "D_B": ref.randomize(ref.build(DISC), 4).double(),
    }
    names = (("gen_ab", "G_A"), ("gen_ba", "G_B"), ("disc_a", "D_B"), ("disc_b", "D_A"))
    flax_params = {  # the converter's float32 values hold the float64 weights exactly
        ours: jax.tree.map(
            lambda v: v.astype(np.float64),
            torch_to_flax({k: v.numpy() for k, v in torch_nets[theirs].state_dict().items()})[1][
                "params"
            ],
        )
        for ours, theirs in names
    }
    rng = np.random.default_rng(0)
    batches = [
        {"A": rng.uniform(-1, 1, (2, 32, 32, 3)), "B": rng.uniform(-1, 1, (2, 32, 32, 3))}
        for _ in range(2)
    ]

    model = ref.CycleGAN(
        **torch_nets, gan_mode=gan_mode, lambda_identity=lambda_identity, lr=LR, pool_size=0
    )
    expected = [
        model.step(*(torch.from_numpy(batch[d].transpose(0, 3, 1, 2)) for d in "AB"))
        for batch in batches
    ]

    nets = cyclegan.Networks.create(GEN, DISC, channels_a=3, channels_b=3)
    objective = cyclegan.Objective(gan_mode, lambda_identity=lambda_identity)
    tx = _constant_adam()
    with jax.enable_x64(True):
        state = cyclegan.init_state(
            nets, tx, tx, (32, 32, 3), (32, 32, 3), pool_size=0, seed=0,
            params=flax_params, image_dtype=np.float64,
        )  # fmt: skip
        step = jax.jit(cyclegan.make_train_step(nets, objective, tx, tx))
        got_losses = []
        for batch in batches:
            state, metrics = step(state, jax.tree.map(jnp.asarray, batch))
            got_losses.append(jax.device_get(metrics))
        state = jax.device_get(state)

    # The learning rate is a float32 (2e-4 to a relative 5e-8), so the parameters after a
    # step differ from the reference's by 1e-11: the second losses by a relative 1e-9.
    for i, (got, want) in enumerate(zip(got_losses, expected, strict=True)):
        for name, value in want.items():
            np.testing.assert_allclose(got[name], value, rtol=1e-8, err_msg=f"step {i} {name}")
    updated = {**state.gen_params, **state.disc_params}
    for ours, theirs in names:
        arch = nets.gen_ab if ours.startswith("gen") else nets.disc_a
        got = flax_to_torch({"params": updated[ours]}, arch)
        start = flax_to_torch({"params": flax_params[ours]}, arch)
        noise_driven = _biases_before_instance_norm(arch)
        for key, tensor in torch_nets[theirs].state_dict().items():
            if key in noise_driven:
                # Instance norm removes a preceding bias, so its true gradient is 0. The
                # reference computes float noise, which Adam scales to up to lr a step;
                # jaxcycle's is exactly 0 (see nets._add_bias).
                np.testing.assert_array_equal(got[key], start[key])
                assert np.abs(tensor.numpy() - start[key]).max() <= 2 * LR * 1.0001
                continue
            # lr * 5e-6: the second step's update moves by lr times the gradients' relative
            # error, so this catches any error above 5e-6 (float32's rounding is 6e-8).
            np.testing.assert_allclose(
                got[key], tensor.numpy(), atol=1e-9, rtol=0, err_msg=f"{theirs}.{key}"
            )


def _biases_before_instance_norm(arch):
    """The state_dict names of convolution biases that an instance norm follows."""
    table = layer_table(arch)
    return {
        f"{conv.torch}.bias"
        for conv, norm in zip(table, table[1:], strict=False)
        if conv.kind in ("conv", "convT")
        and norm.kind == "norm"
        and arch.norm == "instance"
        and conv.flax[:-1] == norm.flax[:-1]
    }


def test_pool_follows_the_reference_semantics():
    """Fill first, then per image: with probability 1/2 swap with a uniform slot. Checked
    against the reference's ImagePool driven by the same coin flips and slots."""
    size, n_steps, batch = 3, 6, 2
    state = pool.empty_pool(size, (1, 1, 1))
    key = jax.random.PRNGKey(0)
    stored: list[float] = []
    for step in range(n_steps):
        key, k = jax.random.split(key)
        images = jnp.arange(batch, dtype=jnp.float32).reshape(batch, 1, 1, 1) + 10 * step
        state, out = pool.query(state, images, k)
        # Replay the reference with the same draws the pool made, image by image.
        expected = []
        for image, ki in zip(np.asarray(images).ravel(), jax.random.split(k, batch), strict=True):
            k_coin, k_slot = jax.random.split(ki)
            if len(stored) < size:
                stored.append(float(image))
                expected.append(float(image))
            elif float(jax.random.uniform(k_coin)) > 0.5:
                slot = int(jax.random.randint(k_slot, (), 0, size))
                expected.append(stored[slot])
                stored[slot] = float(image)
            else:
                expected.append(float(image))
        assert np.asarray(out).ravel().tolist() == expected
        assert np.asarray(state.images).ravel()[: len(stored)].tolist() == stored
    assert int(state.count) == size


def test_pool_statistics_match_the_reference_pool():
    """Same semantics, independent randomness: the share of returned stored images is 1/2
    once full, in both implementations."""
    size, steps = 4, 400
    state = pool.empty_pool(size, (1, 1, 1))
    query = jax.jit(pool.query)
    reference = ref.ImagePool(size, random.Random(1))
    ours_old = theirs_old = 0
    for step in range(steps):
        images = jnp.full((1, 1, 1, 1), float(step))
        state, out = query(state, images, jax.random.PRNGKey(step))
        ours_old += float(out[0, 0, 0, 0]) != step
        theirs_old += float(reference.query(torch.full((1, 1, 1, 1), float(step)))[0]) != step
    # Both near (steps - size) / 2 = 198; binomial std is 10.
    assert abs(ours_old - 198) < 45 and abs(theirs_old - 198) < 45


def test_pool_size_zero_passes_images_through():
    images = jnp.ones((2, 4, 4, 1))
    state, out = pool.query(pool.empty_pool(0, (4, 4, 1)), images, jax.random.PRNGKey(0))
    assert out is images and state.size == 0


def test_learning_rate_policy_is_the_references():
    """lr * (1 - max(0, e - n_epochs) / (n_epochs_decay + 1)), e the 1-based epoch."""
    n, n_decay, lr, steps = 3, 4, 0.01, 5
    schedule = cyclegan.learning_rate_schedule(lr, n, n_decay, steps)
    expected_by_epoch = {1: lr, 3: lr, 4: lr * 4 / 5, 5: lr * 3 / 5, 7: lr * 1 / 5}
    for epoch, rate in expected_by_epoch.items():
        for step in ((epoch - 1) * steps, epoch * steps - 1):
            assert float(schedule(step)) == pytest.approx(rate, rel=1e-6), (epoch, step)


def test_torch_lambda_lr_gives_the_same_rates():
    """The reference's LambdaLR rule (rate updated at each epoch's end), run in PyTorch."""
    n, n_decay, lr = 2, 3, 0.1
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([param], lr=lr)
    rule = lambda e: 1.0 - max(0, e + 1 - n) / float(n_decay + 1)  # noqa: E731  (epoch_count=1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, rule)
    schedule = cyclegan.learning_rate_schedule(lr, n, n_decay, steps_per_epoch=1)
    for epoch in range(n + n_decay):
        assert float(schedule(epoch)) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-6)
        opt.step()
        sched.step()


@pytest.mark.parametrize("mode", ["lsgan", "vanilla", "wgangp"])
def test_gan_losses_match_the_reference(mode):
    pred = np.random.default_rng(1).standard_normal((2, 1, 5, 5)).astype(np.float32)
    criterion = ref.GANLoss(mode)
    for real in (True, False):
        expected = float(criterion(torch.from_numpy(pred), real))
        assert float(losses.gan_loss(jnp.asarray(pred), real, mode)) == pytest.approx(
            expected, rel=1e-5
        )


def test_gradient_penalty_of_a_linear_critic():
    """For critic(x) = sum(w * x) the gradient is w everywhere: penalty (||w|| - 1)^2."""
    w = jnp.full((1, 2, 2, 1), 0.25)
    real, fake = jnp.ones((3, 2, 2, 1)), jnp.zeros((3, 2, 2, 1))
    gp = losses.gradient_penalty(
        lambda x: jnp.sum(x * w, axis=(1, 2, 3)), real, fake, jax.random.PRNGKey(0)
    )
    assert float(gp) == pytest.approx((0.5 - 1.0) ** 2, rel=1e-5)
