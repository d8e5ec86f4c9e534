"""Analytic work counts: multiply-accumulates of a network's forward pass and of one CycleGAN
training iteration, from the shapes alone (nothing is run).

A forward pass is traced with the plain `lax` formulations (`jaxcycle.ops`), and every
convolution and matrix product of the trace is counted:

- a convolution: one MAC per output element, per kernel tap, per input channel (taps over
  zero padding included, the usual convention): N * OH * OW * Cout * kh * kw * Cin;
- a transposed convolution (an input-dilated convolution in the trace): one MAC per input
  element, per tap, per output channel, the inserted zeros excluded: N * H * W * Cin * kh * kw
  * Cout (so a 2x upsampling costs what the matching 2x downsampling costs);
- a matrix product: the product of the output's size and the contracted size.

Normalisations, activations, losses and the optimiser are not counted (they are well under 1%
of the work). For the ResNet-9 generator, ngf 64, at 256x256 this gives 49.55 GMAC, and for
the 70x70 PatchGAN 3.15 GMAC.

A training iteration runs, per image pair, each generator 2 times (cycle) plus once more each
with the identity loss, and each discriminator 3 times (once for the generators' loss, on
real and on pooled fake images for its own). Each pass is counted as 3 forward passes (the
forward, the input gradient and the weight gradient), the usual convention for training
FLOPs; a FLOP is half a MAC.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

from jaxcycle import ops
from jaxcycle.architecture import Architecture


def _conv_macs(eqn: Any) -> int:
    lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
    out = eqn.outvars[0].aval.shape
    lhs_spec, rhs_spec, out_spec = eqn.params["dimension_numbers"]
    taps = math.prod(rhs[d] for d in rhs_spec[2:])
    cin, cout = rhs[rhs_spec[1]], rhs[rhs_spec[0]]
    groups = eqn.params["feature_group_count"]
    if any(d > 1 for d in eqn.params["lhs_dilation"]):  # a transposed convolution
        return math.prod(lhs) * taps * cout // groups
    return math.prod(out) * taps * cin


def _dot_macs(eqn: Any) -> int:
    lhs = eqn.invars[0].aval.shape
    (contract, _), _ = eqn.params["dimension_numbers"]
    return math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contract)


_COUNTERS = {"conv_general_dilated": _conv_macs, "dot_general": _dot_macs}


def _jaxpr_macs(jaxpr: Any) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        counter = _COUNTERS.get(eqn.primitive.name)
        if counter is not None:
            total += counter(eqn)
        # A scan's body (the residual blocks) runs `length` times.
        repeats = eqn.params["length"] if eqn.primitive.name == "scan" else 1
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if isinstance(sub, jex_core.ClosedJaxpr):
                    total += repeats * _jaxpr_macs(sub.jaxpr)
                elif isinstance(sub, jex_core.Jaxpr):
                    total += repeats * _jaxpr_macs(sub)
    return total


def forward_macs(arch: Architecture, height: int, width: int, batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass of `arch` on `batch` images of height x width."""
    module = arch.build()
    x = jax.ShapeDtypeStruct((batch, height, width, arch.input_nc), jnp.float32)
    with ops.fast_formulations(False):
        params = jax.eval_shape(lambda x: module.init(jax.random.PRNGKey(0), x)["params"], x)
        jaxpr = jax.make_jaxpr(lambda p, x: module.apply({"params": p}, x))(params, x)
    return _jaxpr_macs(jaxpr.jaxpr)


def train_iteration_macs(
    generator: Architecture,
    discriminator: Architecture,
    height: int,
    width: int,
    identity_loss: bool = True,
) -> dict[str, int]:
    """MACs of one training iteration per image pair (A and B of the same size and channels):
    the forward MACs of each network, the passes made, and the training total (3x forward)."""
    gen = forward_macs(generator, height, width)
    disc = forward_macs(discriminator, height, width)
    gen_passes = 2 * (3 if identity_loss else 2)
    disc_passes = 2 * 3
    forward = gen_passes * gen + disc_passes * disc
    return {
        "generator_forward": gen,
        "discriminator_forward": disc,
        "generator_passes": gen_passes,
        "discriminator_passes": disc_passes,
        "forward": forward,
        "train": 3 * forward,
    }
