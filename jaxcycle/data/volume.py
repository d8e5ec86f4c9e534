"""What every reader hands to ingest: a volume found on disk, and its slices once loaded.

A `VolumeRef` is known from headers alone (cheap: enough to pair volumes and count slices); its
`load()` reads the pixels as a `Volume`. Slices are (K, H, W) or (K, H, W, 3), in physical
units (HU, scanner units, image levels), in the display orientation of an axial DICOM image: row
0 anterior, column 0 the patient's right (for NIfTI see `nifti.volume_to_slices`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


class DataError(ValueError):
    """Input that cannot be used as it is; the message names the file and the problem."""


@dataclass(frozen=True)
class VolumeRef:
    """A volume known from its headers.

    format: "dicom", "nifti" or "image"; source: the file (NIfTI, image) or the first file of a
    DICOM series; files: every file it reads (a DICOM series' slices, in order); key: what
    paired ingest matches across domains; slices: the slice count from the headers.
    """

    format: str
    source: str
    files: tuple[str, ...]
    patient: str
    series: str
    key: str
    slices: int
    loader: Callable[[], Volume] = field(repr=False, compare=False)

    def load(self) -> Volume:
        """Reads the pixels; raises DataError naming the file on anything unreadable."""
        volume = self.loader()
        bad = ~np.isfinite(volume.values)
        if bad.any():
            raise DataError(
                f"{self.source}: {int(bad.sum())} non-finite value(s) (NaN or inf) in the pixels"
            )
        return volume


@dataclass
class Volume:
    """A loaded volume.

    values: (K, H, W) or (K, H, W, 3) float32 in physical units.
    spacing: (row, column, slice) spacing in mm; NaN where the file does not say.
    slice_files: the file each slice came from.
    geometry: JSON-ready facts the writers need to put translated slices back (NIfTI affine and
        shape, DICOM positions and orientation, image bit depth).
    modality: the modality the file declares, lower case ("ct", "mr", ...), or None.
    bits: the bit depth of an image file (its values are levels 0..2^bits - 1), else None.
    """

    values: np.ndarray
    spacing: tuple[float, float, float]
    slice_files: list[str]
    geometry: dict
    modality: str | None = None
    bits: int | None = None
