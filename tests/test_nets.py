"""Weight initialisations against PyTorch's, mixed precision and the other GAN modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcycle import cyclegan, nets
from jaxcycle.architecture import Architecture

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("kind", ["normal", "xavier", "kaiming", "orthogonal"])
@pytest.mark.parametrize("transposed", [False, True])
def test_init_scale_matches_torch(kind, transposed):
    """Same distribution as the reference's init_weights: compare standard deviations of a
    large kernel (and, for orthogonal, the Gram matrix of the flattened rows)."""
    k, cin, cout, gain = 3, 64, 96, 0.02
    torch_shape = (cin, cout, k, k) if transposed else (cout, cin, k, k)
    t = torch.empty(torch_shape)
    {
        "normal": lambda: torch.nn.init.normal_(t, 0.0, gain),
        "xavier": lambda: torch.nn.init.xavier_normal_(t, gain=gain),
        "kaiming": lambda: torch.nn.init.kaiming_normal_(t, a=0, mode="fan_in"),
        "orthogonal": lambda: torch.nn.init.orthogonal_(t, gain=gain),
    }[kind]()
    ours = np.asarray(
        nets.weight_init(kind, gain, transposed)(jax.random.PRNGKey(0), (k, k, cin, cout))
    )
    theirs = t.numpy()
    assert ours.std() == pytest.approx(theirs.std(), rel=0.05)
    if kind == "orthogonal":
        # torch: rows of weight.view(size(0), -1) orthonormal (times gain).
        rows = ours.transpose(2, 3, 0, 1) if transposed else ours.transpose(3, 2, 0, 1)
        rows = rows.reshape(torch_shape[0], -1)
        np.testing.assert_allclose(rows @ rows.T, gain**2 * np.eye(len(rows)), atol=1e-6)


def _step(gan_mode, compute_dtype):
    gen = Architecture("resnet", 3, 3, 8, "instance", n_blocks=1)
    disc = Architecture("nlayer", 3, width=8, norm="instance", n_layers=2)
    networks = cyclegan.Networks.create(gen, disc, channels_a=3, channels_b=3)
    tx = cyclegan.adam(cyclegan.learning_rate_schedule(2e-4, 1, 1, 1))
    state = cyclegan.init_state(networks, tx, tx, (32, 32, 3), (32, 32, 3), 2, seed=0)
    step = jax.jit(
        cyclegan.make_train_step(networks, cyclegan.Objective(gan_mode), tx, tx, compute_dtype)
    )
    rng = np.random.default_rng(0)
    batch = {k: jnp.asarray(rng.uniform(-1, 1, (2, 32, 32, 3)), jnp.float32) for k in "AB"}
    return step(state, batch)


def test_bfloat16_compute_keeps_float32_weights_and_close_losses():
    state32, m32 = _step("lsgan", None)
    state16, m16 = _step("lsgan", jnp.bfloat16)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state16.gen_params))
    for key in ("G_ab", "cycle_a", "idt_b", "disc_a"):
        assert float(m16[key]) == pytest.approx(float(m32[key]), rel=0.05), key


def test_wgangp_step_adds_a_finite_gradient_penalty():
    _, metrics = _step("wgangp", None)
    assert {"disc_a_gp", "disc_b_gp"} <= set(metrics)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert float(metrics["disc_a_gp"]) > 0


def test_config_init_reaches_the_networks():
    """`model.init` and `model.init_gain` of the config draw the fresh weights."""
    from configs.cyclegan import get_config

    config = get_config()
    config.model.ngf, config.model.ndf, config.model.n_blocks = 8, 8, 1
    stds = {}
    for gain in (0.02, 0.5):
        config.model.init, config.model.init_gain = "normal", gain
        nets_ = cyclegan.Networks.from_config(config)
        params = nets_.disc_a.build(nets_.init).init(
            jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))
        )
        stds[gain] = float(np.std(np.asarray(params["params"]["C2"]["conv"]["kernel"])))
    assert stds[0.02] == pytest.approx(0.02, rel=0.1)
    assert stds[0.5] == pytest.approx(0.5, rel=0.1)
    config.model.init = "uniform"
    with pytest.raises(ValueError, match="unknown init 'uniform'"):
        cyclegan.Networks.from_config(config)


@pytest.mark.parametrize("adapter_position", [-1, 1])
def test_scanned_residual_blocks_equal_the_blocks_one_by_one(adapter_position):
    """The residual blocks run as one scan over their stacked parameters when applied, and
    one by one while initialising: both give the same output for the same parameters (in
    float64, where the two programs' different roundings stay far below the tolerance)."""
    arch = Architecture(
        "resnet", 3, 3, 8, "instance", n_blocks=3, adapter_widths=(16, 32),
        adapter_position=adapter_position,
    )  # fmt: skip
    module = arch.build()
    pixels = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3))
    with jax.enable_x64(True):
        x = jnp.asarray(pixels, jnp.float64)
        one_by_one, variables = module.init_with_output(jax.random.PRNGKey(0), x, train=True)
        assert one_by_one.dtype == jnp.float64
        scanned = module.apply(variables, x, train=True)
        jaxpr = str(jax.make_jaxpr(lambda v: module.apply(v, x))(variables))
    assert "scan" in jaxpr
    np.testing.assert_allclose(np.asarray(scanned), np.asarray(one_by_one), rtol=0, atol=1e-12)
