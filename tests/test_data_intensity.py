"""Intensity maps: hand-computed values, HU round trips, MR percentiles."""

import numpy as np
import pytest

from jaxcycle.data.intensity import (
    IntensityMap,
    ct_window,
    image_levels,
    mr_percentiles,
)


def test_ct_window_endpoints_and_midpoint():
    m = ct_window()  # [-1024, 3071]
    np.testing.assert_allclose(m.normalise(np.array([-1024.0, 3071.0, 1023.5])), [-1, 1, 0])
    # below and above the window clip to its ends
    np.testing.assert_allclose(m.normalise(np.array([-3000.0, 5000.0])), [-1, 1])
    np.testing.assert_allclose(m.restore(np.array([-1.0, 0.0, 1.0])), [-1024, 1023.5, 3071])


def test_ct_hu_round_trip_within_half_hu_in_float32():
    m = ct_window(-1000, 2000)
    hu = np.random.default_rng(0).uniform(-1000, 2000, 100_000)
    stored = m.normalise(hu)
    assert stored.dtype == np.float32
    assert np.abs(m.restore(stored) - hu).max() < 0.5
    # and far better than required: float32 carries ~1e-4 HU here
    assert np.abs(m.restore(stored) - hu).max() < 1e-3


def test_mr_percentiles_hand_computed():
    values = np.arange(1001, dtype=np.float64)  # 0..1000: percentile p is 10 p
    m = mr_percentiles(values, 1.0, 99.0)
    assert (m.lo, m.hi) == (10.0, 990.0)
    np.testing.assert_allclose(m.normalise(np.array([10.0, 500.0, 990.0, 0.0])), [-1, 0, 1, -1])


def test_mr_percentiles_fall_back_to_min_max_and_refuse_constant():
    mostly_empty = np.zeros(10_000)
    mostly_empty[:3] = [5.0, 7.0, 9.0]  # 99.5th percentile is still 0
    m = mr_percentiles(mostly_empty)
    assert (m.lo, m.hi, m.rule) == (0.0, 9.0, "min max")
    with pytest.raises(ValueError, match="constant volume"):
        mr_percentiles(np.full(100, 3.0))


def test_image_levels_match_read_image_convention():
    m = image_levels(8)
    np.testing.assert_allclose(m.normalise(np.array([0, 255])), [-1, 1])
    assert m.restore(np.array([0.0]))[0] == pytest.approx(127.5)


def test_json_round_trip_and_validation():
    m = ct_window(-100, 200)
    assert IntensityMap.from_json(m.to_json()) == m
    with pytest.raises(ValueError):
        ct_window(10, 10)
