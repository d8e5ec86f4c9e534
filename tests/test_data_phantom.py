"""The phantom: deterministic, differs across subjects, and anatomically ordered."""

import numpy as np
import pytest

from jaxcycle.data import phantom as P


@pytest.fixture(scope="module")
def subject():
    return P.phantom_volume(1, size=128, slices=4, seed=0)


def test_deterministic_and_subjects_differ():
    a = P.phantom_volume(2, size=32, slices=3, seed=5)
    b = P.phantom_volume(2, size=32, slices=3, seed=5)
    c = P.phantom_volume(3, size=32, slices=3, seed=5)
    np.testing.assert_array_equal(a.mr, b.mr)
    np.testing.assert_array_equal(a.ct, b.ct)
    assert (a.labels != c.labels).mean() > 0.02


def test_tissue_values_are_those_of_brain_ct_and_t1_mr(subject):
    from scipy import ndimage

    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)

    def core(label):  # away from partial volume at the edges
        return ndimage.binary_erosion(subject.labels == label, in_plane)

    tissues = (P.AIR, P.VENTRICLE, P.GREY, P.WHITE)
    hu = {k: float(np.median(subject.ct[core(k)])) for k in tissues}
    assert hu[P.AIR] == pytest.approx(-1000, abs=15)
    assert 0 < hu[P.VENTRICLE] < 15 and 30 < hu[P.GREY] < 50 and 20 < hu[P.WHITE] < 35
    skull = subject.ct[np.isin(subject.labels, (P.BONE, P.DIPLOE))]  # thin: no erosion
    assert 700 < np.median(skull) < 1500
    mr = {k: float(np.median(subject.mr[core(k)])) for k in tissues[1:]}
    assert mr[P.WHITE] > mr[P.GREY] > mr[P.VENTRICLE]  # T1 contrast
    mr[P.FAT] = float(np.median(subject.mr[subject.labels == P.FAT]))
    assert mr[P.FAT] > mr[P.WHITE]


def test_layers_from_the_outside_in(subject):
    # along the midline from the front of a mid slice: air, scalp, skull, CSF, brain
    labels = subject.labels[1, :, 64]
    order = [int(v) for i, v in enumerate(labels) if i == 0 or v != labels[i - 1]]
    first = {lab: order.index(lab) for lab in (P.AIR, P.SKIN, P.BONE, P.CSF) if lab in order}
    assert first[P.AIR] < first[P.SKIN] < first[P.BONE] < first[P.CSF]
    assert {P.GREY, P.WHITE} <= set(order)
    # the head is narrower than it is long, and anterior is at the top (row 0)
    head = subject.labels[1] != P.AIR
    rows, cols = np.nonzero(head)
    assert np.ptp(rows) > np.ptp(cols)


def test_phantom_mr_and_ct_share_the_anatomy():
    v = P.phantom_volume(1, size=32, slices=3, seed=0)
    assert v.mr.shape == v.ct.shape == v.labels.shape == (3, 32, 32)
    # bone in CT is dark in T1 MR: the paired images share the anatomy
    bone = v.labels == P.BONE
    assert v.ct[bone].mean() > 500 and v.mr[bone].mean() < v.mr[v.labels == P.WHITE].mean()
