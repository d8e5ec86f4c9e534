"""The reference project's training augmentation: resize, random crop, random horizontal flip.

`--preprocess resize_and_crop` of pytorch-CycleGAN-and-pix2pix: resize to load_size x load_size
(bicubic; the aspect ratio is not kept), crop a random crop_size x crop_size window, flip left to
right with probability 0.5. Runs in numpy and PIL on the loader's threads. The randomness comes
only from the generator passed in, which the loader derives from (seed, epoch, position), so
results do not depend on thread timing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from jaxcycle.data.geometry import resize_plane


@dataclass(frozen=True)
class Augment:
    """load_size: resize target (None: keep the size); crop_size: random crop (None: none);
    flip: random horizontal flip."""

    load_size: int | None = 286
    crop_size: int | None = 256
    flip: bool = True

    def __post_init__(self) -> None:
        if self.load_size is not None and self.load_size < 1:
            raise ValueError(f"load_size must be positive (got {self.load_size})")
        if self.crop_size is not None and self.crop_size < 1:
            raise ValueError(f"crop_size must be positive (got {self.crop_size})")
        if None not in (self.load_size, self.crop_size) and self.crop_size > self.load_size:
            raise ValueError(f"crop_size {self.crop_size} exceeds load_size {self.load_size}")

    @classmethod
    def resize_only(cls, size: int) -> Augment:
        """Deterministic: resize to size x size, no crop, no flip (evaluation)."""
        return cls(load_size=size, crop_size=None, flip=False)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(H, W, C) float32 in [-1, 1] -> augmented (h, w, C) float32 in [-1, 1].

        Draws, in this order: the crop's top, its left (each uniform over the valid offsets),
        then the flip (uniform < 0.5).
        """
        if self.load_size is not None:
            size = self.load_size
            image = resize_plane(image, size, size, Image.Resampling.BICUBIC)
            image = np.clip(image, -1.0, 1.0)  # bicubic overshoots; the reference clips to uint8
        if self.crop_size is not None:
            h, w = image.shape[:2]
            c = self.crop_size
            if c > h or c > w:
                raise ValueError(f"crop_size {c} exceeds the image's {h}x{w}")
            top = int(rng.integers(0, h - c + 1))
            left = int(rng.integers(0, w - c + 1))
            image = image[top : top + c, left : left + c]
        if self.flip and rng.random() < 0.5:
            image = image[:, ::-1]
        return np.ascontiguousarray(image, dtype=np.float32)
