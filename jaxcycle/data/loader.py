"""Batches for training (unpaired, random, resumable) and evaluation (paired, in order).

`UnpairedLoader` follows the reference project's unaligned mode. An epoch has
L = max(len(A), len(B)) positions; position p of epoch e takes A image `order_e[p] % len(A)`,
where order_e is a permutation of range(L) seeded by (seed, e), and a B image drawn uniformly at
random, independently of A. Global step s belongs to epoch s // steps_per_epoch and covers
positions [k * batch_size, (k + 1) * batch_size) of it, k = s % steps_per_epoch.

Everything random about position p of epoch e (the B index, the crops, the flips) comes from
generators seeded by (seed, stream, e, p). A batch is therefore a pure function of (seed, step):
the same on every run, after a resume at any step, with any number of worker threads, and split
the same way across processes: process i of n reads and yields only its rows
[i * batch_size / n, (i + 1) * batch_size / n) of the global batch.

Batches are numpy dicts {"A": (b, H, W, C), "B": (b, H, W, C)}, float32 in [-1, 1],
b = batch_size // process_count; placing them on devices is the training code's business.
Worker threads build batches ahead of time (`prefetch` batches in flight).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from jaxcycle.data.augment import Augment
from jaxcycle.data.sources import Source

_ORDER, _A, _B = 0, 1, 2  # random streams


def _rng(seed: int, stream: int, epoch: int, position: int = 0) -> np.random.Generator:
    return np.random.default_rng((seed, stream, epoch, position))


def _prefetched(
    make: Callable[[int], dict], steps: Iterable[int], *, workers: int, prefetch: int
) -> Iterator[dict]:
    """make(step) for each step, computed by `workers` threads up to `prefetch` steps ahead,
    yielded in order. Closing the iterator cancels what is still queued."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="jaxcycle-loader")
    pending: deque = deque()
    steps = iter(steps)
    try:
        for step in steps:
            pending.append(pool.submit(make, step))
            if len(pending) >= prefetch:
                break
        while pending:
            batch = pending.popleft().result()
            for step in steps:
                pending.append(pool.submit(make, step))
                break
            yield batch
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _local_rows(batch_size: int, process_index: int, process_count: int) -> tuple[int, int]:
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"bad process index {process_index} of {process_count}")
    if batch_size < 1 or batch_size % process_count:
        raise ValueError(
            f"global batch size {batch_size} must be a positive multiple of the process count "
            f"{process_count}"
        )
    local = batch_size // process_count
    return process_index * local, local


class UnpairedLoader:
    """Unpaired training batches from two sources (see the module docstring).

    steps_per_epoch: L // batch_size with drop_last (the default), else ceil(L / batch_size),
    the last batch of an epoch then filled up from the start of the same epoch's order.
    """

    def __init__(
        self,
        source_a: Source,
        source_b: Source,
        batch_size: int,
        *,
        seed: int,
        augment: Augment | None = None,
        process_index: int = 0,
        process_count: int = 1,
        prefetch: int = 4,
        workers: int = 2,
        drop_last: bool = True,
    ):
        if seed < 0:
            raise ValueError(f"seed must be non-negative (got {seed})")
        if len(source_a) == 0 or len(source_b) == 0:
            raise ValueError(f"empty source (A has {len(source_a)}, B {len(source_b)} images)")
        if workers < 1 or prefetch < 1:
            raise ValueError(f"workers and prefetch must be >= 1 (got {workers}, {prefetch})")
        self.source_a, self.source_b = source_a, source_b
        self.batch_size = batch_size
        self.seed = seed
        self.augment = Augment() if augment is None else augment
        self.process_index, self.process_count = process_index, process_count
        self.prefetch, self.workers = prefetch, workers
        self.drop_last = drop_last
        self._first_row, self.local_batch_size = _local_rows(
            batch_size, process_index, process_count
        )
        self.epoch_length = max(len(source_a), len(source_b))
        if drop_last:
            self.steps_per_epoch = self.epoch_length // batch_size
            if self.steps_per_epoch == 0:
                raise ValueError(
                    f"batch size {batch_size} exceeds the epoch's {self.epoch_length} images "
                    "(use drop_last=False)"
                )
        else:
            self.steps_per_epoch = -(-self.epoch_length // batch_size)
        self._orders: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def _order(self, epoch: int) -> np.ndarray:
        with self._lock:
            if epoch not in self._orders:
                self._orders[epoch] = _rng(self.seed, _ORDER, epoch).permutation(self.epoch_length)
                while len(self._orders) > 2:
                    self._orders.popitem(last=False)
            return self._orders[epoch]

    def _positions(self, step: int) -> tuple[int, np.ndarray]:
        if step < 0:
            raise ValueError(f"step must be non-negative (got {step})")
        epoch, k = divmod(step, self.steps_per_epoch)
        start = k * self.batch_size + self._first_row
        return epoch, np.arange(start, start + self.local_batch_size)

    def indices(self, step: int) -> dict[str, np.ndarray]:
        """The A and B source indices of this process's rows of a step."""
        epoch, positions = self._positions(step)
        order = self._order(epoch)
        a = order[positions % self.epoch_length] % len(self.source_a)
        b = np.array(
            [_rng(self.seed, _B, epoch, int(p)).integers(len(self.source_b)) for p in positions]
        )
        return {"A": a, "B": b}

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """This process's part of the global batch of a step, computed now."""
        epoch, positions = self._positions(step)
        idx = self.indices(step)
        out = {}
        for name, source, stream in (("A", self.source_a, _A), ("B", self.source_b, _B)):
            images = source.read(idx[name])
            rows = []
            for image, p in zip(images, positions, strict=True):
                rng = _rng(self.seed, stream, epoch, int(p))
                if stream == _B:
                    rng.integers(len(self.source_b))  # the draw that chose the B image
                rows.append(self.augment(image, rng))
            out[name] = np.stack(rows)
        return out

    def batches(self, start_step: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """Batches of steps start_step, start_step + 1, ... (infinite), built ahead in threads."""
        return _prefetched(
            self.batch, _count(start_step), workers=self.workers, prefetch=self.prefetch
        )


def _count(start: int) -> Iterator[int]:
    step = start
    while True:
        yield step
        step += 1
