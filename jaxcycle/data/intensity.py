"""Intensities in physical units <-> the networks' [-1, 1], and back exactly.

Every volume in a dataset carries one `IntensityMap`: a linear map that sends `lo` to -1 and
`hi` to +1 (values outside are clipped), and its inverse, which gives translated images back in
physical units (HU for CT) for outputs and metrics.

- CT: a fixed Hounsfield window, by default [-1024, 3071], the full range of 12-bit CT. Nothing
  a head scanner produces is clipped except metal, air (-1000) and the usual -1024 padding map
  to about -1, and the inverse is exact across the whole head, so MAE in HU compares like with
  like. The price is soft-tissue contrast: brain tissue (20-45 HU) spans 0.012 of the range.
  A narrower window such as [-1000, 2000] or a bone window is one option away
  (`--ct-window LO HI`); HU outside the window do not survive the round trip.
- MR: no physical unit; each volume is normalised by its own robust percentiles (0.5 and 99.5
  by default), so one bright vessel or a different scanner gain does not squash the rest.
  Translated MR with no source MR to take a scale from (`jaxcycle translate`) is written on
  `MR_RANGE`: -1 as 0, +1 as 1000 a.u. by default.
- Image files (PNG, JPEG, TIFF): levels 0..2^bits - 1, as `images.read_image` maps them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

CT_WINDOW = (-1024.0, 3071.0)
MR_PERCENTILES = (0.5, 99.5)
MR_RANGE = (0.0, 1000.0)


@dataclass(frozen=True)
class IntensityMap:
    """x = 2 (v - lo) / (hi - lo) - 1, clipped to [-1, 1]; v = lo + (x + 1) (hi - lo) / 2.

    unit: "HU" (CT), "a.u." (MR and other scanner units) or "level" (image files).
    rule: how lo and hi were chosen, for the record ("window", "percentiles 0.5 99.5", "bits 8").
    """

    lo: float
    hi: float
    unit: str
    rule: str

    def __post_init__(self) -> None:
        if not (np.isfinite(self.lo) and np.isfinite(self.hi) and self.hi > self.lo):
            raise ValueError(f"intensity map needs finite lo < hi (got {self.lo}, {self.hi})")

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """Physical values -> float32 in [-1, 1] (computed in float64)."""
        v = np.asarray(values, dtype=np.float64)
        x = (v - self.lo) * (2.0 / (self.hi - self.lo)) - 1.0
        return np.clip(x, -1.0, 1.0).astype(np.float32)

    def restore(self, x: np.ndarray) -> np.ndarray:
        """[-1, 1] -> physical values, float64 (the exact inverse of `normalise` inside lo..hi)."""
        x = np.clip(np.asarray(x, dtype=np.float64), -1.0, 1.0)
        return self.lo + (x + 1.0) * ((self.hi - self.lo) / 2.0)

    def to_json(self) -> dict:
        """A JSON-ready dict; `IntensityMap.from_json` reads it back."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> IntensityMap:
        """The inverse of `to_json`."""
        return cls(float(d["lo"]), float(d["hi"]), str(d["unit"]), str(d["rule"]))


def ct_window(lo: float = CT_WINDOW[0], hi: float = CT_WINDOW[1]) -> IntensityMap:
    """The map of a CT window in HU."""
    if not hi > lo:
        raise ValueError(f"CT window needs LO < HI (got {lo}, {hi})")
    return IntensityMap(float(lo), float(hi), "HU", "window")


def mr_percentiles(
    volume: np.ndarray, lower: float = MR_PERCENTILES[0], upper: float = MR_PERCENTILES[1]
) -> IntensityMap:
    """The map sending a volume's `lower` and `upper` percentiles to -1 and +1.

    Where those percentiles coincide (a mostly empty volume), the minimum and maximum are used;
    a constant volume raises ValueError.
    """
    if not 0 <= lower < upper <= 100:
        raise ValueError(f"MR percentiles need 0 <= lower < upper <= 100 (got {lower}, {upper})")
    values = np.asarray(volume, dtype=np.float64).ravel()
    lo, hi = np.percentile(values, [lower, upper])
    rule = f"percentiles {lower:g} {upper:g}"
    if not hi > lo:
        lo, hi = values.min(), values.max()
        rule = "min max"
    if not hi > lo:
        raise ValueError(f"constant volume (every value {lo:g}): nothing to normalise")
    return IntensityMap(float(lo), float(hi), "a.u.", rule)


def image_levels(bits: int) -> IntensityMap:
    """The map `images.read_image` applies to an 8- or 16-bit image file."""
    return IntensityMap(0.0, float(2**bits - 1), "level", f"bits {bits}")
