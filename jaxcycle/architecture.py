"""Architecture descriptions: what a checkpoint's metadata records and what builds a network."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import numpy as np

from converters import tables
from jaxcycle import nets

KINDS = ("resnet", "unet", "nlayer", "pixel")
GENERATOR_PRESETS = {
    "resnet_9blocks": {"kind": "resnet", "n_blocks": 9},
    "resnet_6blocks": {"kind": "resnet", "n_blocks": 6},
    "unet_256": {"kind": "unet", "num_downs": 8},
    "unet_128": {"kind": "unet", "num_downs": 7},
}
DISCRIMINATOR_PRESETS = {
    "basic": {"kind": "nlayer", "n_layers": 3},
    "pixel": {"kind": "pixel"},
}


@dataclass(frozen=True)
class Architecture:
    """One network of the reference project, fully specified.

    `width` is ngf for generators and ndf for discriminators. Fields that a kind does not
    use keep their defaults (`n_blocks` only for 'resnet', `num_downs` only for 'unet',
    `n_layers` only for 'nlayer'; `output_nc`, `use_dropout`, `padding` only for generators).
    """

    kind: str = "resnet"
    input_nc: int = 3
    output_nc: int = 3
    width: int = 64
    norm: str = "instance"
    n_blocks: int = 9
    num_downs: int = 8
    n_layers: int = 3
    use_dropout: bool = False
    padding: str = "reflect"
    # Transfer learning (ResNet generators): new per-pixel FC layers on the bottleneck.
    adapter_widths: tuple[int, ...] = ()
    adapter_activation: str = "softmax"
    adapter_residual: bool = False
    adapter_position: int = -1

    def __post_init__(self) -> None:
        object.__setattr__(self, "adapter_widths", tuple(self.adapter_widths))
        if self.adapter_widths and self.kind != "resnet":
            raise ValueError("adapter layers are only available in ResNet generators")
        if self.kind not in KINDS:
            raise ValueError(f"unknown architecture kind {self.kind!r}; expected one of {KINDS}")
        if self.norm not in nets.NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; expected one of {nets.NORMS}")
        if self.padding not in nets.PADDINGS:
            raise ValueError(f"unknown padding {self.padding!r}; expected one of {nets.PADDINGS}")
        if self.kind == "unet" and self.num_downs < 5:
            raise ValueError(f"a U-Net has at least 5 levels, got num_downs={self.num_downs}")

    @property
    def is_generator(self) -> bool:
        return self.kind in ("resnet", "unet")

    def build(self, init: nets.Init | None = None) -> nn.Module:
        """The Flax module for this architecture."""
        init = init or nets.Init()
        if self.kind == "resnet":
            return nets.ResnetGenerator(
                output_nc=self.output_nc,
                ngf=self.width,
                n_blocks=self.n_blocks,
                norm=self.norm,
                use_dropout=self.use_dropout,
                padding=self.padding,
                init_scheme=init,
                adapter_widths=self.adapter_widths,
                adapter_activation=self.adapter_activation,
                adapter_residual=self.adapter_residual,
                adapter_position=self.adapter_position,
            )
        if self.kind == "unet":
            return nets.UnetGenerator(
                output_nc=self.output_nc,
                num_downs=self.num_downs,
                ngf=self.width,
                norm=self.norm,
                use_dropout=self.use_dropout,
                init_scheme=init,
            )
        if self.kind == "nlayer":
            return nets.NLayerDiscriminator(
                ndf=self.width, n_layers=self.n_layers, norm=self.norm, init_scheme=init
            )
        return nets.PixelDiscriminator(ndf=self.width, norm=self.norm, init_scheme=init)

    def describe(self) -> str:
        """A one-line human description, e.g. 'resnet_9blocks generator, ngf 64, 3 -> 3'."""
        if self.kind == "resnet":
            head = f"resnet_{self.n_blocks}blocks generator, ngf {self.width}"
        elif self.kind == "unet":
            head = f"unet ({self.num_downs} downsamplings) generator, ngf {self.width}"
        elif self.kind == "nlayer":
            head = f"PatchGAN discriminator, n_layers {self.n_layers}, ndf {self.width}"
        else:
            head = f"pixel discriminator, ndf {self.width}"
        channels = (
            f"{self.input_nc} -> {self.output_nc} channels"
            if self.is_generator
            else f"{self.input_nc} channels"
        )
        adapter = ""
        if self.adapter_widths:
            form = "residual " if self.adapter_residual else ""
            adapter = f", {form}adapter {list(self.adapter_widths)} {self.adapter_activation}"
        return f"{head}, {channels}, {self.norm} norm{adapter}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Architecture:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown architecture fields: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def of_state_dict(cls, state_dict: Mapping[str, np.ndarray]) -> Architecture:
        """The architecture of a reference state_dict, read from its names and shapes
        (`converters.tables.infer_architecture`; raises its `ArchitectureError`)."""
        return cls(**tables.infer_architecture(tables.strip_module_prefix(state_dict)))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> Architecture:
        """An architecture from a reference preset name ('resnet_9blocks', 'basic', ...)."""
        presets = {**GENERATOR_PRESETS, **DISCRIMINATOR_PRESETS}
        if name not in presets:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(presets)}")
        return cls(**{**presets[name], **overrides})
