"""The loader: reproducible, resumable, sharded batches; unpaired sampling; augmentation."""

import numpy as np
import pytest
from PIL import Image

from jaxcycle.data.augment import Augment
from jaxcycle.data.ingest import IngestOptions, ingest
from jaxcycle.data.loader import UnpairedLoader
from jaxcycle.data.phantom import write_phantom
from jaxcycle.data.sources import ImageFolderSource
from jaxcycle.data.store import Dataset


class Numbered:
    """A source whose image i is filled with the value i (so batches reveal their indices)."""

    def __init__(self, n, size=8, reads=None):
        self.n, self.size, self.reads = n, size, reads

    def __len__(self):
        return self.n

    def read(self, indices):
        if self.reads is not None:
            self.reads.append(list(indices))
        return np.stack([np.full((self.size, self.size, 1), i, np.float32) for i in indices])


def _ids(batch):
    return batch[:, 0, 0, 0].astype(int)


NO_AUG = Augment(load_size=None, crop_size=None, flip=False)  # images as they are


def _take(loader, n, start=0):
    it = loader.batches(start)
    out = [next(it) for _ in range(n)]
    it.close()
    return out


def test_same_seed_same_batches_and_resume_mid_epoch():
    a, b = Numbered(10), Numbered(7)
    aug = Augment(load_size=10, crop_size=6, flip=True)
    run = _take(UnpairedLoader(a, b, 4, seed=3, augment=aug), 7)
    again = _take(UnpairedLoader(a, b, 4, seed=3, augment=aug, workers=3, prefetch=2), 7)
    resumed = _take(UnpairedLoader(a, b, 4, seed=3, augment=aug), 4, start=3)  # mid-epoch 1
    for x, y in zip(run, again, strict=True):
        np.testing.assert_array_equal(x["A"], y["A"])
        np.testing.assert_array_equal(x["B"], y["B"])
    for x, y in zip(run[3:], resumed, strict=True):
        np.testing.assert_array_equal(x["A"], y["A"])
        np.testing.assert_array_equal(x["B"], y["B"])
    other = _take(UnpairedLoader(a, b, 4, seed=4, augment=aug), 2)
    assert not np.array_equal(run[0]["A"], other[0]["A"])


def test_epochs_cover_a_once_and_b_is_drawn_independently():
    a, b = Numbered(12), Numbered(5)
    loader = UnpairedLoader(a, b, 3, seed=0, augment=NO_AUG)
    assert loader.steps_per_epoch == 4
    batches = _take(loader, 8)
    for epoch in range(2):
        ids = np.concatenate([_ids(x["A"]) for x in batches[4 * epoch : 4 * epoch + 4]])
        assert sorted(ids) == list(range(12))  # every A image once per epoch
    first, second = (
        np.concatenate([_ids(x["A"]) for x in batches[e * 4 : e * 4 + 4]]) for e in (0, 1)
    )
    assert not np.array_equal(first, second)  # reshuffled each epoch
    b_ids = np.concatenate([_ids(x["B"]) for x in batches])
    assert set(b_ids) == set(range(5))


def test_b_is_drawn_at_random_independently_of_a():
    # equal sizes: an aligned loader would always pair a with the same b (6 combinations)
    loader = UnpairedLoader(Numbered(6), Numbered(6), 3, seed=0, augment=NO_AUG, prefetch=8)
    batches = _take(loader, 200)
    a = np.concatenate([_ids(x["A"]) for x in batches])
    b = np.concatenate([_ids(x["B"]) for x in batches])
    assert len(set(zip(a.tolist(), b.tolist(), strict=True))) >= 34  # of 36
    counts = np.bincount(b, minlength=6)
    assert counts.min() > 70 and counts.max() < 130  # uniform: 100 each


def test_epoch_length_is_the_longer_domain():
    loader = UnpairedLoader(Numbered(3), Numbered(9), 3, seed=0, augment=NO_AUG)
    assert loader.steps_per_epoch == 3
    ids = np.concatenate([_ids(x["A"]) for x in _take(loader, 3)])
    assert sorted(ids) == sorted([0, 1, 2] * 3)  # A cycles through 9 positions


def test_processes_read_only_their_shard_and_shards_make_the_global_batch():
    aug = Augment(load_size=None, crop_size=6, flip=True)
    whole = _take(UnpairedLoader(Numbered(16), Numbered(11), 8, seed=1, augment=aug), 3)
    parts, reads = [], []
    for i in range(4):
        log = []
        loader = UnpairedLoader(Numbered(16, reads=log), Numbered(11), 8, seed=1, augment=aug,
                                process_index=i, process_count=4)  # fmt: skip
        assert loader.local_batch_size == 2
        parts.append(_take(loader, 3))
        reads.append(log)
    for step in range(3):
        for name in ("A", "B"):
            stacked = np.concatenate([parts[i][step][name] for i in range(4)])
            np.testing.assert_array_equal(stacked, whole[step][name])
    assert all(len(r) == len(set(map(tuple, r))) and all(len(x) == 2 for x in r) for r in reads)
    with pytest.raises(ValueError, match="multiple of the process count"):
        UnpairedLoader(Numbered(16), Numbered(11), 6, seed=0, process_count=4)


def test_augment_is_a_crop_of_the_resized_image_maybe_flipped():
    image = np.arange(8 * 8, dtype=np.float32).reshape(8, 8, 1) / 64
    aug = Augment(load_size=None, crop_size=5, flip=True)
    flips = 0
    for seed in range(20):
        out = aug(image, np.random.default_rng(seed))
        rng = np.random.default_rng(seed)  # the documented draws: top, left, flip
        top, left = int(rng.integers(0, 4)), int(rng.integers(0, 4))
        window = image[top : top + 5, left : left + 5]
        if rng.random() < 0.5:
            window, flips = window[:, ::-1], flips + 1
        np.testing.assert_array_equal(out, window)
    assert 0 < flips < 20
    resized = Augment.resize_only(16)(image, None)
    assert resized.shape == (16, 16, 1) and resized.min() >= -1 and resized.max() <= 1
    expected = np.asarray(Image.fromarray(image[..., 0], "F").resize((16, 16), Image.BICUBIC))
    np.testing.assert_allclose(resized[..., 0], np.clip(expected, -1, 1), atol=1e-6)


def test_dataset_and_folder_sources_feed_the_loader(tmp_path):
    write_phantom(tmp_path / "ph", subjects=3, size=32, slices=4)
    ingest(tmp_path / "ds", [tmp_path / "ph" / "mr"], [tmp_path / "ph" / "ct"],
           IngestOptions(paired=True))  # fmt: skip
    ds = Dataset.open(tmp_path / "ds")
    a, b = ds.source("A", "train"), ds.source("B", "train")
    loader = UnpairedLoader(a, b, 2, seed=0, augment=Augment(36, 32, True))
    batch = next(loader.batches())
    assert batch["A"].shape == (2, 32, 32, 1) and batch["A"].dtype == np.float32
    assert batch["B"].min() >= -1 and batch["B"].max() <= 1
    # the source reads what the store holds
    rows = a.rows[[3, 0]]
    np.testing.assert_array_equal(a.read([3, 0])[..., 0], ds.array("A")[rows].read().result())
    volume = a.record(3)["volume"]
    assert a.intensity(3) == ds.intensity("A", volume)
    # a folder of PNGs, the reference layout
    for i in range(3):
        Image.fromarray(np.full((16, 16), 50 * i, np.uint8)).save(tmp_path / f"img{i}.png")
    folder = ImageFolderSource(tmp_path)
    assert len(folder) == 3
    np.testing.assert_allclose(folder.read([2])[0, 0, 0, 0], 100 / 255 * 2 - 1, atol=1e-6)
    batch = next(UnpairedLoader(folder, a, 2, seed=0, augment=Augment(20, 16)).batches())
    assert batch["A"].shape == (2, 16, 16, 1) and batch["B"].shape == (2, 16, 16, 1)


def test_without_drop_last_the_last_batch_wraps_around_the_epoch():
    loader = UnpairedLoader(Numbered(10), Numbered(3), 4, seed=2, augment=NO_AUG, drop_last=False)
    assert loader.steps_per_epoch == 3
    ids = np.concatenate([_ids(x["A"]) for x in _take(loader, 3)])
    assert sorted(ids[:10]) == list(range(10))
    np.testing.assert_array_equal(ids[10:], ids[:2])
