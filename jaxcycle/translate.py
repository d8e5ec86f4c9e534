"""Running a generator over image files: `jaxcycle translate`.

Channels are matched to the generator: a grey image into a 3-channel generator is replicated
to RGB and the RGB output averaged back to grey; an RGB image into a 1-channel generator is
averaged to grey first. Image sizes need not fit the network's strides: each image is padded
at the bottom and right by reflection up to the next size the network accepts, and the
output cropped back.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxcycle import checkpoints
from jaxcycle.architecture import Architecture
from jaxcycle.data.images import (
    LoadedImage,
    image_files,
    match_channels,
    read_image,
    write_image,
)


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


def make_generator_fn(arch: Architecture, variables: dict) -> Callable[[np.ndarray], np.ndarray]:
    """A jitted NHWC [-1, 1] -> NHWC [-1, 1] function of the generator in eval mode."""
    if not arch.is_generator:
        raise ValueError(f"not a generator: {arch.describe()}")
    module = arch.build()
    apply = jax.jit(lambda v, x: module.apply(v, x, train=False))
    variables = jax.device_put(variables)
    return lambda x: np.asarray(apply(variables, jnp.asarray(x)))


def translate_batch(
    generator: Callable[[np.ndarray], np.ndarray],
    images: Sequence[LoadedImage],
    arch: Architecture,
) -> list[np.ndarray]:
    """Images of one shape through the generator, each output matching its input's channels."""
    h, w = images[0].pixels.shape[:2]
    batch = np.stack(
        [
            pad_to_multiple(match_channels(im.pixels, arch.input_nc), size_multiple(arch))
            for im in images
        ]
    )
    out = generator(batch)[:, :h, :w]
    return [match_channels(o, 1 if im.grey else 3) for o, im in zip(out, images, strict=True)]


def translate_files(
    checkpoint: str | os.PathLike,
    inputs: Iterable[str | os.PathLike],
    output_dir: str | os.PathLike,
    batch_size: int = 8,
    overwrite: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Translates image files with the generator in `checkpoint`; outputs keep the names.

    Nothing is written unless every output name is free (or `overwrite`), and no two inputs
    share a name.
    """
    variables, arch, _ = checkpoints.load_params(checkpoint)
    generator = make_generator_fn(arch, variables)
    files = image_files(inputs)
    output_dir = Path(output_dir)
    targets = [output_dir / f.name for f in files]
    seen: dict[str, Path] = {}
    for f in files:
        if f.name in seen:
            raise ValueError(f"two inputs named {f.name}: {seen[f.name]} and {f}")
        seen[f.name] = f
    taken = [str(t) for t in targets if t.exists()]
    if taken and not overwrite:
        raise FileExistsError(f"would overwrite {', '.join(taken)} (use --overwrite)")

    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    images = [read_image(f) for f in files]
    for i, im in enumerate(images):
        groups[im.pixels.shape].append(i)
    written = [Path()] * len(files)
    with tqdm(total=len(files), desc="translate", unit="img", disable=not progress) as bar:
        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                outs = translate_batch(generator, [images[i] for i in chunk], arch)
                for i, out in zip(chunk, outs, strict=True):
                    bits = images[i].bits if images[i].grey else 8
                    written[i] = write_image(targets[i], out, bits, overwrite=True)
                bar.update(len(chunk))
    return written
