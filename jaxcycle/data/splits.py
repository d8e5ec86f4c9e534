"""Patient-level train/test splits: seeded, deterministic, never one patient on both sides.

All slices of a patient, in both domains, fall on the same side. The patients are sorted, shuffled
with NumPy's PCG64 generator seeded by `seed`, and the first round(train_fraction * n) go to
training (at least one patient on each side when there are two or more and the fraction is
strictly between 0 and 1). The paper splits 70/30; so does the default.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

TRAIN_FRACTION = 0.7


def split_patients(
    patients: Iterable[str], train_fraction: float = TRAIN_FRACTION, seed: int = 0
) -> dict[str, list[str]]:
    """{"train": [...], "test": [...]} (each sorted) from a collection of patient IDs."""
    if not 0.0 <= train_fraction <= 1.0:
        raise ValueError(f"train fraction must lie in [0, 1] (got {train_fraction})")
    unique = sorted(set(patients))
    n = len(unique)
    n_train = int(round(train_fraction * n))
    if n >= 2 and 0.0 < train_fraction < 1.0:
        n_train = min(max(n_train, 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    train = sorted(unique[i] for i in order[:n_train])
    test = sorted(unique[i] for i in order[n_train:])
    return {"train": train, "test": test}


def check_disjoint(split: dict[str, list[str]]) -> None:
    """Raises ValueError naming the patients found on both sides of a split."""
    both = sorted(set(split["train"]) & set(split["test"]))
    if both:
        shown = ", ".join(both[:10]) + (" ..." if len(both) > 10 else "")
        raise ValueError(
            f"{len(both)} patient(s) on both sides of the train/test split: {shown}; "
            "a patient's slices must all be on one side"
        )
