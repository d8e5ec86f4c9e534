"""Name tables: reference PyTorch state_dict prefixes <-> jaxcycle Flax module paths.

Every network of the reference project is an `nn.Sequential` (nested for the U-Net), so its
state_dict names are layer indices. `layer_table(arch)` lists, for one architecture, which
PyTorch layer becomes which Flax module; `LEAVES` says how each kind of layer's tensors map
to Flax leaves. `infer_architecture` reads the architecture back from a state_dict's names
and shapes, as the fields of a `jaxcycle.architecture.Architecture`.

This module knows PyTorch's names and jaxcycle's module paths but imports neither library;
`jaxcycle.weights` applies the tables.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

Path = tuple[str, ...]


class Design(Protocol):
    """What the tables read of an architecture (`jaxcycle.architecture.Architecture`)."""

    kind: str  # 'resnet', 'unet', 'nlayer' or 'pixel'
    norm: str  # 'instance', 'batch' or 'none'
    padding: str  # residual blocks: 'reflect', 'replicate' or 'zero'
    use_dropout: bool
    n_blocks: int
    num_downs: int
    n_layers: int


@dataclass(frozen=True)
class Layer:
    """One row of the table: a PyTorch layer prefix, its Flax module path and its kind."""

    torch: str
    flax: Path
    kind: str  # 'conv', 'convT' or 'norm'


@dataclass(frozen=True)
class Leaf:
    """How one tensor of a layer maps to a Flax leaf."""

    torch: str  # the state_dict suffix: 'weight', 'bias', 'running_mean', ...
    collection: str  # 'params' or 'batch_stats'
    flax: Path  # the leaf path below the layer's module
    to_flax: Callable[[np.ndarray], np.ndarray]
    to_torch: Callable[[np.ndarray], np.ndarray]


def _same(a: np.ndarray) -> np.ndarray:
    return a


def _oihw_to_hwio(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def _hwio_to_oihw(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(3, 2, 0, 1))


def _iohw_to_hwio(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(2, 3, 0, 1))


def _hwio_to_iohw(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(w.transpose(2, 3, 0, 1))


# How each layer kind's tensors map. Batch-norm leaves live under the Norm module's 'bn'.
LEAVES: dict[str, tuple[Leaf, ...]] = {
    "conv": (
        Leaf("weight", "params", ("kernel",), _oihw_to_hwio, _hwio_to_oihw),
        Leaf("bias", "params", ("bias",), _same, _same),
    ),
    "convT": (
        Leaf("weight", "params", ("kernel",), _iohw_to_hwio, _hwio_to_iohw),
        Leaf("bias", "params", ("bias",), _same, _same),
    ),
    "norm": (
        Leaf("weight", "params", ("bn", "scale"), _same, _same),
        Leaf("bias", "params", ("bn", "bias"), _same, _same),
        Leaf("running_mean", "batch_stats", ("bn", "mean"), _same, _same),
        Leaf("running_var", "batch_stats", ("bn", "var"), _same, _same),
    ),
}
# Batch norm also stores a step counter that Flax does not need; the export writes 0.
BATCHNORM_COUNTER = "num_batches_tracked"
# Old reference files (PyTorch 0.3/0.4) carry running statistics for the affine-free
# InstanceNorm layers; the reference loader drops them and so do we.
LEGACY_INSTANCE_NORM = ("running_mean", "running_var", "num_batches_tracked")


def layer_table(arch: Design) -> list[Layer]:
    """The PyTorch -> Flax layer table of one architecture."""
    rows = {
        "resnet": _resnet_rows,
        "unet": _unet_rows,
        "nlayer": _nlayer_rows,
        "pixel": _pixel_rows,
    }[arch.kind](arch)
    # Norm 'none' is an nn.Identity in the reference: it keeps its index but holds nothing.
    return [row for row in rows if row.kind != "norm" or arch.norm != "none"]


def _conv_norm(torch_conv: str, torch_norm: str, flax: str, kind: str = "conv") -> list[Layer]:
    return [Layer(torch_conv, (flax, "conv"), kind), Layer(torch_norm, (flax, "norm"), "norm")]


def _resnet_rows(arch: Design) -> list[Layer]:
    # model: [pad, c7s1 conv, norm, relu] [d1 conv, norm, relu] [d2 ...] R1..Rn
    #        [u1 convT, norm, relu] [u2 ...] [pad, c7s1 conv, tanh]
    rows = _conv_norm("model.1", "model.2", "c7s1_in")
    rows += _conv_norm("model.4", "model.5", "d1") + _conv_norm("model.7", "model.8", "d2")
    # conv_block: [(pad), conv, norm, relu, (dropout), (pad), conv, norm]
    pad_layers = 0 if arch.padding == "zero" else 1
    conv1 = pad_layers
    conv2 = conv1 + 3 + int(arch.use_dropout) + pad_layers
    for i in range(arch.n_blocks):
        block = f"model.{10 + i}.conv_block"
        rows += [
            Layer(f"{block}.{conv1}", (f"R{i + 1}", "conv1", "conv"), "conv"),
            Layer(f"{block}.{conv1 + 1}", (f"R{i + 1}", "conv1", "norm"), "norm"),
            Layer(f"{block}.{conv2}", (f"R{i + 1}", "conv2", "conv"), "conv"),
            Layer(f"{block}.{conv2 + 1}", (f"R{i + 1}", "conv2", "norm"), "norm"),
        ]
    up = 10 + arch.n_blocks
    rows += _conv_norm(f"model.{up}", f"model.{up + 1}", "u1", "convT")
    rows += _conv_norm(f"model.{up + 3}", f"model.{up + 4}", "u2", "convT")
    rows.append(Layer(f"model.{up + 7}", ("c7s1_out",), "conv"))
    return rows


def unet_torch_prefix(level: int) -> str:
    """The state_dict prefix of U-Net level `level` (0 = outermost)."""
    return "model" + (".model.1" if level > 0 else "") + ".model.3" * max(0, level - 1)


def _unet_rows(arch: Design) -> list[Layer]:
    rows = []
    for level in range(arch.num_downs):
        t = unet_torch_prefix(level) + ".model"
        f = ("outer",) + ("inner",) * level
        if level == 0:  # [down conv, inner, relu, up convT, tanh]
            rows += [Layer(f"{t}.0", f + ("down",), "conv"), Layer(f"{t}.3", f + ("up",), "convT")]
        elif level == arch.num_downs - 1:  # [lrelu, down conv, relu, up convT, up norm]
            rows += [
                Layer(f"{t}.1", f + ("down",), "conv"),
                Layer(f"{t}.3", f + ("up",), "convT"),
                Layer(f"{t}.4", f + ("up_norm",), "norm"),
            ]
        else:  # [lrelu, down conv, down norm, inner, relu, up convT, up norm, (dropout)]
            rows += [
                Layer(f"{t}.1", f + ("down",), "conv"),
                Layer(f"{t}.2", f + ("down_norm",), "norm"),
                Layer(f"{t}.5", f + ("up",), "convT"),
                Layer(f"{t}.6", f + ("up_norm",), "norm"),
            ]
    return rows


def _nlayer_rows(arch: Design) -> list[Layer]:
    # model: [C1 conv, lrelu] then per n: [conv, norm, lrelu] then [out conv]
    rows = [Layer("model.0", ("C1",), "conv")]
    for n in range(1, arch.n_layers + 1):
        rows += _conv_norm(f"model.{3 * n - 1}", f"model.{3 * n}", f"C{n + 1}")
    rows.append(Layer(f"model.{3 * arch.n_layers + 2}", ("out",), "conv"))
    return rows


def _pixel_rows(arch: Design) -> list[Layer]:
    # net: [conv, lrelu, conv, norm, lrelu, conv]
    return [
        Layer("net.0", ("C1",), "conv"),
        *_conv_norm("net.2", "net.3", "C2"),
        Layer("net.5", ("out",), "conv"),
    ]


class ArchitectureError(ValueError):
    """A state_dict whose names and shapes fit no architecture of the reference project."""


def strip_module_prefix(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Drops the 'module.' prefix that `nn.DataParallel` adds to every name."""
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _norm_kind(sd: Mapping[str, np.ndarray], first_conv: str, first_norm: str) -> str:
    if f"{first_norm}.weight" in sd:
        return "batch"
    return "instance" if f"{first_conv}.bias" in sd else "none"


def infer_architecture(sd: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The architecture of a reference state_dict (without a 'module.' prefix), read from its
    names and shapes: the fields of a `jaxcycle.architecture.Architecture`.

    Reflect and replicate padding store the same tensors: 'reflect' (the reference
    default) is assumed and can be overridden by the caller.
    """

    def shape(key: str) -> tuple[int, ...]:
        return tuple(np.shape(sd[key]))

    if "net.0.weight" in sd:
        ndf, input_nc = shape("net.0.weight")[:2]
        return dict(
            kind="pixel", input_nc=input_nc, width=ndf, norm=_norm_kind(sd, "net.2", "net.3")
        )
    if "model.model.0.weight" in sd:
        ngf, input_nc = shape("model.model.0.weight")[:2]
        num_downs = 1
        while f"{unet_torch_prefix(num_downs)}.model.1.weight" in sd:
            num_downs += 1
        if num_downs < 5 or "model.model.3.weight" not in sd:
            raise ArchitectureError(
                f"found a U-Net with {num_downs} levels; the reference builds at least 5 and "
                "an output layer 'model.model.3'"
            )
        norm = _norm_kind(sd, "model.model.0", f"{unet_torch_prefix(1)}.model.2")
        return dict(
            kind="unet",
            input_nc=input_nc,
            output_nc=shape("model.model.3.weight")[1],
            width=ngf,
            norm=norm,
            num_downs=num_downs,
        )
    if "model.1.weight" in sd and len(shape("model.1.weight")) == 4:
        ngf, input_nc, kh, kw = shape("model.1.weight")
        if (kh, kw) != (7, 7):
            raise ArchitectureError(f"'model.1.weight' is {kh}x{kw}; a ResNet generator's is 7x7")
        blocks = sorted(
            {int(m.group(1)) for k in sd if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
        )
        n_blocks = len(blocks)
        if blocks != list(range(10, 10 + n_blocks)):
            raise ArchitectureError(f"residual blocks at unexpected indices {blocks}")
        zero = n_blocks > 0 and "model.10.conv_block.0.weight" in sd
        second = 3 if zero else 5
        after_second = f"model.10.conv_block.{second + 1}.weight"  # a conv, or its norm
        dropout = n_blocks > 0 and after_second in sd and len(shape(after_second)) == 4
        out = f"model.{n_blocks + 17}.weight"
        if out not in sd:
            raise ArchitectureError(f"no output layer '{out}' for {n_blocks} residual blocks")
        return dict(
            kind="resnet",
            input_nc=input_nc,
            output_nc=shape(out)[0],
            width=ngf,
            norm=_norm_kind(sd, "model.1", "model.2"),
            n_blocks=n_blocks,
            use_dropout=dropout,
            padding="zero" if zero else "reflect",
        )
    if "model.0.weight" in sd and len(shape("model.0.weight")) == 4:
        ndf, input_nc = shape("model.0.weight")[:2]
        convs = sorted(
            int(m.group(1))
            for k in sd
            if (m := re.fullmatch(r"model\.(\d+)\.weight", k)) and len(shape(k)) == 4
        )
        n_layers = (convs[-1] - 2) // 3
        if n_layers < 1:
            raise ArchitectureError("a PatchGAN discriminator needs at least one Ck layer")
        return dict(
            kind="nlayer",
            input_nc=input_nc,
            width=ndf,
            norm=_norm_kind(sd, "model.2", "model.3"),
            n_layers=n_layers,
        )
    first = ", ".join(list(sd)[:5]) or "(no tensors)"
    raise ArchitectureError(
        f"the names fit no reference architecture (ResNet or U-Net generator, PatchGAN or pixel "
        f"discriminator); first names: {first}"
    )
