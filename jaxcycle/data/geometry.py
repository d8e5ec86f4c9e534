"""Slices of any shape onto a common square grid, and back.

Ingest with a `size` pads each slice to a square (centred, with the background value -1) and
resamples it to size x size with bilinear interpolation (antialiased when shrinking), keeping
the aspect ratio. `Placement` records what was done so that translated slices go back onto the
source's own grid (`Placement.inverse`) for the NIfTI and DICOM writers. Without a size, slices
are stored as they are and the placement is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

BACKGROUND = -1.0


def resize_plane(plane: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    """One float32 (H, W) or (H, W, C) array resized with PIL (mode 'F', per channel)."""
    if plane.shape[:2] == (height, width):
        return plane.astype(np.float32, copy=False)
    if plane.ndim == 3:
        return np.stack(
            [resize_plane(plane[..., c], height, width, resample) for c in range(plane.shape[2])],
            axis=-1,
        )
    image = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    return np.asarray(image.resize((width, height), resample=resample), dtype=np.float32)


@dataclass(frozen=True)
class Placement:
    """How a (height, width) slice sits in the stored grid: padded to a square, resized."""

    height: int
    width: int
    size: int | None = None  # stored side; None: stored as is

    @property
    def side(self) -> int:
        """The padded square's side."""
        return max(self.height, self.width)

    @property
    def offset(self) -> tuple[int, int]:
        """Top and left padding of the square."""
        return (self.side - self.height) // 2, (self.side - self.width) // 2

    @property
    def scale(self) -> float:
        """Stored pixels per source pixel."""
        return 1.0 if self.size is None else self.size / self.side

    def forward(self, slices: np.ndarray) -> np.ndarray:
        """(K, H, W[, C]) in [-1, 1] -> (K, size, size[, C])."""
        if self.size is None:
            return slices
        top, left = self.offset
        pad = [(0, 0), (top, self.side - self.height - top), (left, self.side - self.width - left)]
        pad += [(0, 0)] * (slices.ndim - 3)
        square = np.pad(slices, pad, constant_values=BACKGROUND)
        out = [resize_plane(s, self.size, self.size, Image.Resampling.BILINEAR) for s in square]
        return np.clip(np.stack(out), -1, 1)

    def inverse(self, slices: np.ndarray) -> np.ndarray:
        """(K, size, size[, C]) -> (K, H, W[, C]) on the source grid."""
        if self.size is None:
            if slices.shape[1:3] != (self.height, self.width):
                raise ValueError(
                    f"slices of {slices.shape[1]}x{slices.shape[2]} do not fit the source's "
                    f"{self.height}x{self.width}"
                )
            return slices
        if slices.shape[1:3] != (self.size, self.size):
            raise ValueError(
                f"slices of {slices.shape[1]}x{slices.shape[2]} are not the stored "
                f"{self.size}x{self.size}"
            )
        top, left = self.offset
        side = self.side
        out = [resize_plane(s, side, side, Image.Resampling.BILINEAR) for s in slices]
        return np.stack(out)[:, top : top + self.height, left : left + self.width]

    def to_json(self) -> dict:
        """JSON-ready; `Placement.from_json` reads it back."""
        return {"height": self.height, "width": self.width, "size": self.size}

    @classmethod
    def from_json(cls, d: dict) -> Placement:
        """The inverse of `to_json`."""
        return cls(int(d["height"]), int(d["width"]), None if d["size"] is None else int(d["size"]))
