"""Transfer learning from pretrained generators: the paper's Algorithm 1.

- *Channels*: the published generators are RGB -> RGB; MR and CT slices are grey.
  `adapt_channels` sums the first convolution's kernel over its input channels and averages
  the last convolution's kernel and bias over its output channels. A grey image through the
  adapted generator then equals, before the final tanh, the grey image replicated to RGB
  through the original generator with its three output channels averaged. (After the tanh the
  two differ only by tanh's curvature across the three channels.) The alternative is to keep
  the generator RGB and replicate grey data to three channels (`data.channels_* = 3`).
- *New layers*: FC1 and FC2 (1x1, 256 units each, softmax as in the paper) on the 256-channel
  bottleneck, between the residual blocks and the upsampling path (`nets.Adapter`).
- *Freezing*: which parameters train is a list of regular expressions over parameter paths
  such as 'gen_ab/R3/conv1/conv/kernel' (big_vision's style). Every other generator parameter
  is frozen: its update is zero and it carries no optimizer state (`optax.multi_transform`
  with `optax.set_to_zero`). The discriminators, which were never published, always train.
  A pattern that matches nothing is an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
import optax

from jaxcycle import pretrained, weights
from jaxcycle.nets import init_params

FREEZE_PRESETS: dict[str, tuple[str, ...]] = {
    # Only the new layers train (the paper).
    "paper": (r"^gen_(ab|ba)/adapter/",),
    # The new layers and the decoder (upsampling path and output layer).
    "decoder": (r"^gen_(ab|ba)/(adapter|u\d+|c7s1_out)/",),
    # Everything trains.
    "full": (r"^gen_(ab|ba)/",),
}


def path_str(path: tuple) -> str:
    """A pytree key path as 'a/b/c'."""
    return "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)


def trainable_mask(gen_params: Mapping[str, Any], patterns: Sequence[str]) -> Any:
    """A pytree of bools over `gen_params`: True where some pattern matches the leaf's path.

    Raises ValueError naming any pattern that matches no parameter.
    """
    compiled = []
    for p in patterns:
        try:
            compiled.append(re.compile(p))
        except re.error as e:
            raise ValueError(f"freeze rule {p!r} is not a regular expression: {e}") from None
    used = [False] * len(compiled)

    def label(path, _):
        name = path_str(path)
        hit = False
        for i, rx in enumerate(compiled):
            if rx.search(name):
                used[i] = hit = True
        return hit

    mask = jax.tree_util.tree_map_with_path(label, gen_params)
    unused = [p for p, u in zip(patterns, used, strict=True) if not u]
    if unused:
        example = path_str(jax.tree_util.tree_flatten_with_path(gen_params)[0][0][0])
        raise ValueError(
            f"trainable pattern(s) {unused} match no generator parameter (paths look like "
            f"{example!r}); check for typos"
        )
    return mask


def masked_optimizer(tx: optax.GradientTransformation, mask: Any) -> optax.GradientTransformation:
    """`tx` on the leaves where `mask` is True; zero updates and no state elsewhere."""
    labels = jax.tree.map(lambda trainable: "train" if trainable else "freeze", mask)
    return optax.multi_transform({"train": tx, "freeze": optax.set_to_zero()}, labels)


def parameter_counts(params: Any, mask: Any) -> tuple[int, int]:
    """(trainable, frozen) parameter counts."""
    sizes = jax.tree.leaves(jax.tree.map(lambda p: math.prod(np.shape(p)), params))
    flags = jax.tree.leaves(mask)
    trainable = sum(s for s, f in zip(sizes, flags, strict=True) if f)
    return trainable, sum(sizes) - trainable


def summary(params: Any, mask: Any) -> str:
    """A short table of trainable and frozen parameters per top-level network."""
    lines = [f"{'network':<10}{'trainable':>14}{'frozen':>14}"]
    for name in params:
        t, f = parameter_counts(params[name], mask[name])
        lines.append(f"{name:<10}{t:>14,}{f:>14,}")
    return "\n".join(lines)


def adapt_channels(params: Mapping[str, Any], input_nc: int, output_nc: int) -> dict[str, Any]:
    """A ResNet generator's params for other input/output channel counts (see module doc).

    Supports 3 -> 1 channel changes (and no change); anything else is an error.
    """
    params = jax.tree.map(np.asarray, dict(params))
    first = params["c7s1_in"]["conv"]["kernel"]  # (7, 7, in, ngf)
    last = params["c7s1_out"]  # kernel (7, 7, ngf, out), bias (out,)
    if first.shape[2] != input_nc:
        if input_nc != 1:
            raise ValueError(f"cannot adapt {first.shape[2]} input channels to {input_nc}")
        params["c7s1_in"] = {
            **params["c7s1_in"],
            "conv": {**params["c7s1_in"]["conv"], "kernel": first.sum(axis=2, keepdims=True)},
        }
    if last["kernel"].shape[3] != output_nc:
        if output_nc != 1:
            raise ValueError(
                f"cannot adapt {last['kernel'].shape[3]} output channels to {output_nc}"
            )
        params["c7s1_out"] = {
            "kernel": last["kernel"].mean(axis=3, keepdims=True),
            "bias": last["bias"].mean(keepdims=True).reshape(1),
        }
    return params


def merge_pretrained(fresh: Mapping[str, Any], pretrained: Mapping[str, Any]) -> dict[str, Any]:
    """`fresh` params (with the new layers) with every leaf the pretrained tree has replaced.

    Shapes must agree; the new layers (absent from `pretrained`) keep their initialisation.
    """
    flat_pre = {path_str(p): v for p, v in jax.tree_util.tree_flatten_with_path(pretrained)[0]}
    missing = []

    def pick(path, leaf):
        name = path_str(path)
        if name not in flat_pre:
            missing.append(name)
            return leaf
        value = np.asarray(flat_pre.pop(name))
        if value.shape != leaf.shape:
            raise ValueError(f"pretrained {name} is {value.shape}; the network needs {leaf.shape}")
        return value.astype(leaf.dtype)

    merged = jax.tree_util.tree_map_with_path(pick, dict(fresh))
    if flat_pre:
        raise ValueError(f"pretrained parameters the network does not have: {sorted(flat_pre)}")
    return merged


def freeze_patterns(mode: str, extra: Iterable[str] = ()) -> list[str]:
    """The trainable patterns of a preset ('paper', 'decoder', 'full') plus any extra."""
    if mode not in FREEZE_PRESETS:
        raise ValueError(f"unknown freeze mode {mode!r}; expected one of {sorted(FREEZE_PRESETS)}")
    return [*FREEZE_PRESETS[mode], *extra]


def initial_generator_params(arch: Any, pretrained_params: Any, key: jax.Array) -> Any:
    """A generator of `arch` (perhaps with new adapter layers) initialised from pretrained
    params: channels adapted, new layers drawn fresh from `key`."""
    fresh = init_params(arch.build(), key, (64, 64, arch.input_nc))
    adapted = adapt_channels(pretrained_params, arch.input_nc, arch.output_nc)
    return merge_pretrained(fresh, adapted)


def transfer_params(config: Any, networks: Any) -> dict[str, Any] | None:
    """Initial generator params for a run whose config names a pretrained generator
    (`transfer.pretrained` or `transfer.checkpoint`: anything `weights.load_variables`
    reads); None if it names none."""
    t = config.transfer
    source = t.checkpoint or t.pretrained
    if not source:
        return None
    forward = weights.load_generator(source)[0]["params"]
    backward = forward
    if t.reverse:
        reverse = pretrained.get(t.pretrained).reverse if t.pretrained else None
        if reverse is None:
            raise ValueError(f"transfer.reverse: no published reverse of {source!r}")
        backward = weights.load_generator(reverse)[0]["params"]
    key_ab, key_ba = jax.random.split(jax.random.PRNGKey(config.seed + 1))
    return {
        "gen_ab": initial_generator_params(networks.gen_ab, forward, key_ab),
        "gen_ba": initial_generator_params(networks.gen_ba, backward, key_ba),
    }
