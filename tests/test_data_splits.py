"""Patient-level splits: deterministic, seeded, 70/30, never a patient on both sides."""

import pytest

from jaxcycle.data.splits import check_disjoint, split_patients


def test_split_sizes_and_disjointness():
    patients = [f"p{i:02d}" for i in range(18)]  # the paper's 18 patients
    split = split_patients(patients, 0.7, seed=0)
    assert len(split["train"]) == 13 and len(split["test"]) == 5  # round(12.6)
    assert set(split["train"]) | set(split["test"]) == set(patients)
    assert not set(split["train"]) & set(split["test"])


def test_split_is_deterministic_and_order_independent():
    patients = [f"p{i}" for i in range(30)]
    a = split_patients(patients, 0.7, seed=3)
    b = split_patients(list(reversed(patients)) + patients[:5], 0.7, seed=3)  # dupes too
    assert a == b
    assert split_patients(patients, 0.7, seed=4) != a


def test_split_keeps_one_patient_per_side_when_possible():
    assert split_patients(["a", "b"], 0.9, seed=0)["test"]
    assert split_patients(["a", "b"], 0.1, seed=0)["train"]
    assert split_patients(["a", "b", "c"], 1.0)["test"] == []


def test_check_disjoint_names_the_leaks():
    with pytest.raises(ValueError, match="p2"):
        check_disjoint({"train": ["p1", "p2"], "test": ["p2", "p3"]})
    check_disjoint({"train": ["p1"], "test": ["p3"]})
