"""Transfer learning: channel adaptation, freeze rules as optax masks, pretrained merging."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxcycle import transfer
from jaxcycle.architecture import Architecture
from jaxcycle.weights import abstract_variables

RGB = Architecture("resnet", 3, 3, 8, "instance", n_blocks=2)


def _params(arch, seed=0):
    """Random variables of the right shapes (no Flax init: it compiles slowly on CPU)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: (0.1 * rng.standard_normal(s.shape)).astype(s.dtype), abstract_variables(arch)
    )


def _pre_tanh(arch, params, x):
    _, state = arch.build().apply(
        {"params": params}, x, capture_intermediates=True, mutable=["intermediates"]
    )
    return np.asarray(state["intermediates"]["c7s1_out"]["__call__"][0])


def test_channel_adaptation_identity():
    """Grey through the adapted generator == grey replicated to RGB through the original,
    averaged back to grey (before the final tanh)."""
    params = _params(RGB)["params"]
    params = jax.tree.map(
        lambda p: p + 0.05 * np.random.default_rng(1).standard_normal(p.shape).astype(p.dtype),
        params,
    )
    grey_arch = Architecture.from_dict({**RGB.to_dict(), "input_nc": 1, "output_nc": 1})
    adapted = transfer.adapt_channels(params, 1, 1)
    grey = np.random.default_rng(2).uniform(-1, 1, (2, 32, 32, 1)).astype(np.float32)
    expected = _pre_tanh(RGB, params, np.repeat(grey, 3, axis=-1)).mean(-1, keepdims=True)
    got = _pre_tanh(grey_arch, adapted, grey)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    # And the outputs after tanh are close, not equal: tanh is not linear.
    out = grey_arch.build().apply({"params": adapted}, grey)
    np.testing.assert_allclose(out, np.tanh(expected), atol=1e-5)


def test_channel_adaptation_refuses_other_counts():
    with pytest.raises(ValueError, match="cannot adapt 3 input channels to 2"):
        transfer.adapt_channels(_params(RGB)["params"], 2, 3)


def _gen_params():
    p = _params(RGB)["params"]
    return {"gen_ab": p, "gen_ba": p}


def test_mask_from_patterns_and_typo_error():
    params = _gen_params()
    mask = transfer.trainable_mask(params, [r"^gen_ab/u\d/", r"c7s1_out/"])
    assert mask["gen_ab"]["u1"]["conv"]["kernel"] and mask["gen_ba"]["c7s1_out"]["bias"]
    assert not mask["gen_ab"]["R1"]["conv1"]["conv"]["kernel"]
    assert not mask["gen_ba"]["u1"]["conv"]["kernel"]
    with pytest.raises(ValueError, match=r"\['gen_ab/R10/'\] match no generator parameter"):
        transfer.trainable_mask(params, ["gen_ab/R1/", "gen_ab/R10/"])
    with pytest.raises(ValueError, match="not a regular expression"):
        transfer.trainable_mask(params, ["gen_ab/(R1"])


def test_frozen_leaves_stay_and_carry_no_optimizer_state():
    params = _gen_params()
    mask = transfer.trainable_mask(params, [r"/(u\d|c7s1_out)/"])
    tx = transfer.masked_optimizer(optax.adam(1e-2), mask)
    state = tx.init(params)
    n_trainable = sum(jax.tree.leaves(mask))
    # Adam keeps mu and nu per trainable leaf, and nothing for frozen ones.
    state_arrays = [x for x in jax.tree.leaves(state) if np.ndim(x) > 0]
    assert len(state_arrays) == 2 * n_trainable
    grads = jax.tree.map(jnp.ones_like, params)
    new = params
    for _ in range(3):
        updates, state = tx.update(grads, state, new)
        new = optax.apply_updates(new, updates)
    for (path, before), after, trainable in zip(
        jax.tree_util.tree_flatten_with_path(params)[0],
        jax.tree.leaves(new),
        jax.tree.leaves(mask),
        strict=True,
    ):
        if trainable:
            assert not np.array_equal(before, after), path
        else:
            assert np.array_equal(before, after), path
    trainable, frozen = transfer.parameter_counts(params, mask)
    assert trainable + frozen == sum(np.size(p) for p in jax.tree.leaves(params))
    assert "gen_ab" in transfer.summary(params, mask)


def test_merge_pretrained_keeps_new_layers_and_checks_shapes():
    fresh = {"a": {"k": np.zeros(3)}, "new": {"k": np.ones(2)}}
    merged = transfer.merge_pretrained(fresh, {"a": {"k": np.full(3, 7.0)}})
    assert merged["a"]["k"].tolist() == [7, 7, 7] and merged["new"]["k"].tolist() == [1, 1]
    with pytest.raises(ValueError, match="a/k is"):
        transfer.merge_pretrained(fresh, {"a": {"k": np.zeros(4)}})
    with pytest.raises(ValueError, match="does not have"):
        transfer.merge_pretrained(fresh, {"b": {"k": np.zeros(1)}})


def test_residual_adapter_starts_as_the_pretrained_generator():
    pretrained = _params(RGB)["params"]
    adapted_arch = Architecture.from_dict(
        {
            **RGB.to_dict(),
            "adapter_widths": (16, 32),
            "adapter_residual": True,
            "adapter_activation": "gelu",
            "adapter_position": 1,
        }
    )
    params = transfer.initial_generator_params(adapted_arch, pretrained, jax.random.PRNGKey(3))
    assert params["adapter"]["fc1"]["kernel"].shape == (32, 16)
    assert not np.any(params["adapter"]["fc2"]["kernel"])
    x = np.random.default_rng(4).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
    expected = RGB.build().apply({"params": pretrained}, x)
    got = adapted_arch.build().apply({"params": params}, x)
    # Equal up to rounding: the adapter splits the residual blocks (run as one scan without
    # it) into two runs of one block each, which XLA rounds differently.
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)


def test_paper_adapter_is_softmax_fc_layers_on_the_bottleneck():
    arch = Architecture.from_dict({**RGB.to_dict(), "adapter_widths": (32, 32)})
    params = transfer.initial_generator_params(arch, _params(RGB)["params"], jax.random.PRNGKey(0))
    x = np.random.default_rng(5).uniform(-1, 1, (1, 32, 32, 3)).astype(np.float32)
    _, inter = arch.build().apply(
        {"params": params}, x, capture_intermediates=True, mutable=["intermediates"]
    )
    bottleneck = inter["intermediates"]["adapter"]["__call__"][0]
    assert bottleneck.shape == (1, 8, 8, 32)
    np.testing.assert_allclose(np.sum(bottleneck, axis=-1), 1.0, rtol=1e-5)  # softmax output
    with pytest.raises(ValueError, match="last width 16 must equal the 32 channels"):
        bad = Architecture.from_dict({**RGB.to_dict(), "adapter_widths": (16,)})
        bad.build().init(jax.random.PRNGKey(0), x)
