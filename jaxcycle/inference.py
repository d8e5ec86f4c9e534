"""Running a generator on stored or loaded images: the one route that `translate`, `evaluate`
and the study share.

A `Translator` takes NHWC images in [-1, 1] as they are stored (any channel count, any size)
and prepares them as training prepared its inputs (`jaxcycle.data.loader` with
`jaxcycle.data.augment`):

1. channels matched to the generator (`images.match_channels`: grey replicated to RGB, RGB
   averaged to grey), as `ChannelMatched` does for training;
2. with `size` set (a run's `data.crop_size`), resized to size x size by the training resize
   (`Augment.resize_only`: bicubic, clipped to [-1, 1]), as the reference resizes test images
   to the crop size, so that a network trained on 256 crops of 512 slices sees 256 slices;
3. padded at the bottom and right by reflection to the generator's stride, the output cropped
   back, and its channels matched back to the input's.

Outputs are at the working size (size x size, or the input's size when `size` is None);
`restore_size` resizes them back to each input's own size, for files written beside their
inputs. Scores compare an output with its reference brought to the same working size
(`Translator.resize`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from PIL import Image

from jaxcycle import cyclegan, ops, weights
from jaxcycle.architecture import Architecture
from jaxcycle.data.augment import Augment
from jaxcycle.data.geometry import resize_plane
from jaxcycle.data.images import match_channels


def size_multiple(arch: Architecture) -> int:
    """Input sizes must be multiples of this for the output to match the input size."""
    return 2**arch.num_downs if arch.kind == "unet" else 4


def pad_to_multiple(pixels: np.ndarray, multiple: int) -> np.ndarray:
    """Reflect-pads HWC pixels at the bottom and right to multiples of `multiple`."""
    h, w = pixels.shape[:2]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_h == pad_w == 0:
        return pixels
    return np.pad(pixels, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")


def generator_fn(arch: Architecture, variables: dict) -> Callable[[np.ndarray], np.ndarray]:
    """A jitted NHWC [-1, 1] -> NHWC [-1, 1] function of the generator in eval mode (inputs
    must already have its channel count and fit its stride)."""
    if not arch.is_generator:
        raise ValueError(f"not a generator: {arch.describe()}")
    module = arch.build()
    apply = ops.jit(lambda v, x: module.apply(v, x, train=False))
    variables = jax.device_put(variables)
    return lambda x: np.asarray(apply(variables, jnp.asarray(x)))


def resize_to(images: np.ndarray, size: int | None) -> np.ndarray:
    """NHWC images at size x size by the training resize (`Augment.resize_only`: bicubic,
    clipped to [-1, 1]); None keeps them as they are."""
    if size is None:
        return np.asarray(images, dtype=np.float32)
    resize = Augment.resize_only(size)
    return np.stack([resize(image, None) for image in images])


@dataclass(frozen=True)
class Translator:
    """A generator that fits any stored images (see the module docstring).

    arch, variables: the generator ({"params": ...}, and "batch_stats" with batch norm).
    size: the working size (a run's crop size); None keeps each input's size.
    """

    arch: Architecture
    variables: dict[str, Any]
    size: int | None = None

    def __post_init__(self) -> None:
        if self.size is not None and self.size < 1:
            raise ValueError(f"the working size must be positive (got {self.size})")
        object.__setattr__(self, "_run", generator_fn(self.arch, self.variables))

    def resize(self, images: np.ndarray) -> np.ndarray:
        """NHWC images at the working size, by the training resize (no channel change)."""
        return resize_to(images, self.size)

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """NHWC images as the generator sees them: channels matched, at the working size."""
        return self.resize(np.stack([match_channels(i, self.arch.input_nc) for i in images]))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """NHWC [-1, 1] images of one shape -> their translations at the working size, with
        the inputs' channel count, clipped to [-1, 1]."""
        images = np.asarray(images)
        x = self.prepare(images)
        h, w = x.shape[1:3]
        multiple = size_multiple(self.arch)
        out = self._run(np.stack([pad_to_multiple(i, multiple) for i in x]))[:, :h, :w]
        return np.stack([np.clip(match_channels(o, images.shape[-1]), -1, 1) for o in out])

    def restore_size(self, outputs: np.ndarray, height: int, width: int) -> np.ndarray:
        """Outputs at the working size back at an input's (height, width), bicubic."""
        if outputs.shape[1:3] == (height, width):
            return outputs
        return np.stack(
            [
                np.clip(resize_plane(o, height, width, Image.Resampling.BICUBIC), -1, 1)
                for o in outputs
            ]
        )


# --- Where generators come from: a training run's latest checkpoint, or a weights source.

DIRECTIONS = ("ab", "ba")


def is_run_workdir(path: str | os.PathLike) -> bool:
    """Whether `path` is a training run's workdir (config.json and checkpoints/)."""
    path = Path(path)
    return (path / "config.json").is_file() and (path / "checkpoints").is_dir()


def load_run(workdir: str | os.PathLike):
    """A training run's (config, networks, latest generator params, step)."""
    workdir = Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{workdir}: not a training workdir (no config.json)")
    config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
    with ocp.CheckpointManager(workdir.absolute() / "checkpoints") as manager:
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"{workdir}: no checkpoint yet")
        state = manager.restore(step, args=ocp.args.StandardRestore())
    return config, cyclegan.Networks.from_config(config), state["gen_params"], step


def run_translators(
    config, networks, gen_params: dict[str, Any], size: int | None = None
) -> dict[str, Translator]:
    """{"gen_ab": ..., "gen_ba": ...} of a run's generators (`load_run`), at the run's crop
    size unless `size` says otherwise (0: each input's own size)."""
    size = config.data.crop_size if size is None else (size or None)
    return {
        name: Translator(getattr(networks, name), {"params": gen_params[name]}, size)
        for name in ("gen_ab", "gen_ba")
    }


def load_translator(
    source: str | os.PathLike, direction: str = "ab", size: int | None = None
) -> Translator:
    """A generator from a training run's workdir (its `direction` generator, "ab" or "ba",
    at the run's crop size unless `size`; 0 keeps each input's size) or from anything
    `weights.load_generator` reads: a params directory, a reference `.pth` file or a
    published model's name (at each input's size unless `size`)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be ab or ba (got {direction!r})")
    if is_run_workdir(source):
        config, networks, gen_params, _ = load_run(source)
        return run_translators(config, networks, gen_params, size)[f"gen_{direction}"]
    variables, arch = weights.load_generator(source)
    return Translator(arch, variables, size or None)
