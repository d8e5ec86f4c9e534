"""Sources: indexable collections of images that the loader reads from.

A source is anything with `__len__` and `read(indices) -> (n, H, W, C) float32 in [-1, 1]`
(`Source`). Two are provided: a split of a built dataset (`DatasetSource`, random parallel reads
through tensorstore futures) and a plain folder of image files (`ImageFolderSource`, the
reference project's `trainA/` layout, read with `images.read_image`), so training runs on either.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from jaxcycle.data.images import IMAGE_SUFFIXES, check_image, match_channels, read_image
from jaxcycle.data.volume import DataError


@runtime_checkable
class Source(Protocol):
    """What the loader needs of a collection of images."""

    def __len__(self) -> int: ...

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Images at `indices`, (n, H, W, C) float32 in [-1, 1]."""
        ...


class DatasetSource:
    """Slices of one domain of a `store.Dataset`, restricted to `rows` (global slice indices)."""

    def __init__(self, dataset, domain: str, rows: np.ndarray):
        self.dataset = dataset
        self.domain = domain
        self.rows = np.asarray(rows, dtype=np.int64)
        self._array = dataset.array(domain)

    def __len__(self) -> int:
        return len(self.rows)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Reads the slices in parallel (one tensorstore read future per slice)."""
        futures = [self._array[int(self.rows[i])].read() for i in indices]
        out = np.stack([f.result() for f in futures]) if futures else np.zeros((0, 0, 0))
        return out[..., None] if out.ndim == 3 else out

    def record(self, index: int) -> dict:
        """The slice's metadata (patient, series, volume, slice, modality, spacing, source)."""
        return self.dataset.slices(self.domain)[int(self.rows[index])]

    def intensity(self, index: int):
        """The `IntensityMap` of the slice's volume: `.restore(x)` gives HU or scanner units."""
        return self.dataset.intensity(self.domain, self.record(index)["volume"])


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under a folder, recursively, sorted by relative path (hidden files skipped)."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    files = [
        p
        for p in sorted(root.rglob("*"))
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    if not files:
        raise DataError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


class ImageFolderSource:
    """The image files of a folder (e.g. the reference project's trainA/), in sorted order.

    Every file's header is checked when the source is made (an unreadable or oversized file is
    named before training compiles anything); all images must share one size and channel
    count (checked as they are read, naming the file); for folders of mixed sizes, ingest them
    with `--size` instead.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.files = list_images(folder)
        for path in self.files:  # every header, before any work: a bad file is named at once
            check_image(path)
        self._shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.files)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Reads and decodes the files (8/16-bit, grey or RGB) to (n, H, W, C) in [-1, 1]."""
        images = []
        for i in indices:
            pixels = read_image(self.files[i]).pixels
            if self._shape is None:
                self._shape = pixels.shape
            elif pixels.shape != self._shape:
                raise DataError(
                    f"{self.files[i]}: shape {pixels.shape}, but this folder's images are "
                    f"{self._shape}; a folder source needs one size (or ingest with --size)"
                )
            images.append(pixels)
        return np.stack(images)


class ChannelMatched:
    """A source whose images are made `channels`-channel (grey replicated, RGB averaged)."""

    def __init__(self, source: Source, channels: int):
        self.source, self.channels = source, channels

    def __len__(self) -> int:
        return len(self.source)

    def read(self, indices: Sequence[int]) -> np.ndarray:
        images = self.source.read(indices)
        if images.shape[-1] == self.channels:
            return images
        return np.stack([match_channels(image, self.channels) for image in images])
