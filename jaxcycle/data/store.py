"""The dataset on disk (or any tensorstore kvstore): zarr arrays of slices plus dataset.json.

Layout under the dataset's location (a local path or a kvstore URL such as ``file:///data/ds/``,
``gs://bucket/ds/`` or ``memory://ds/``):

    A/            zarr (v2) array, float32 (N_A, H, W) [or (N_A, H, W, 3)], one chunk per slice
    B/            the same for domain B
    dataset.json  domains (modality, shape, volumes with their intensity maps and geometry,
                  per-slice records: patient, series, volume, slice index, modality, spacing,
                  source file), pairs, the patient split, the ingest options

Values are in [-1, 1]; each volume's `IntensityMap` gives them back in HU or scanner units.
A dataset is built once: arrays first, dataset.json last. A local one is written into a hidden
temporary folder beside the target and renamed into place when complete, so a failed or
interrupted ingest leaves nothing half-written; an existing dataset is replaced only when asked
(and a folder that is not a dataset never). On other kvstores the dataset.json written last marks
the dataset complete; there, `overwrite` deletes the old dataset before the new one is written.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import tensorstore as ts

from jaxcycle import __version__, locks
from jaxcycle.data.geometry import Placement
from jaxcycle.data.intensity import IntensityMap
from jaxcycle.data.sources import DatasetSource
from jaxcycle.data.splits import check_disjoint

DATASET_JSON = "dataset.json"
FORMAT = "jaxcycle-dataset"
VERSION = 1
_COMPRESSOR = {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1}


def kvstore_url(location: str | os.PathLike) -> str:
    """A kvstore URL ending in '/': local paths become file:// URLs."""
    text = os.fspath(location)
    if "://" not in text:
        text = Path(text).expanduser().resolve().as_uri()
    return text if text.endswith("/") else text + "/"


def local_path(url: str) -> Path | None:
    """The folder of a file:// URL, else None."""
    parsed = urlparse(url)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def _open_kvstore(url: str) -> ts.KvStore:
    try:
        return ts.KvStore.open(url).result()
    except Exception as e:
        raise OSError(f"{url}: cannot open the storage location ({e})") from None


def _read_json(url: str) -> dict | None:
    result = _open_kvstore(url).read(DATASET_JSON).result()
    if result.state != "value":
        return None
    try:
        return json.loads(result.value)
    except ValueError as e:
        raise ValueError(f"{url}{DATASET_JSON}: not valid JSON ({e})") from None


def _write_json(url: str, meta: dict) -> None:
    data = json.dumps(meta, allow_nan=False).encode()
    _open_kvstore(url).write(DATASET_JSON, data).result()


class DatasetBuilder:
    """Writes a new dataset; use as a context manager (an exception discards the partial one).

    >>> with DatasetBuilder(out) as b:  # doctest: +SKIP
    ...     b.add_domain("A", capacity=40)
    ...     start = b.append("A", slices)  # (K, H, W) float32 in [-1, 1]
    ...     b.commit(meta)
    """

    def __init__(self, location: str | os.PathLike, *, overwrite: bool = False):
        self.url = kvstore_url(location)
        self.overwrite = overwrite
        self._arrays: dict[str, ts.TensorStore] = {}
        self._capacity: dict[str, int] = {}
        self._count: dict[str, int] = {}
        self._final = local_path(self.url)
        self._lock = None
        if self._final is not None:  # one writer per local target, until commit or abort
            self._lock = locks.ExclusiveLock(
                self._final.parent / f".{self._final.name}.lock", f"dataset {self._final}"
            ).acquire()
        try:
            self._check_target()
        except BaseException:
            self._release()
            raise
        if self._final is not None:
            self._remove_leftovers()
            name = f".{self._final.name}.partial-{uuid.uuid4().hex[:8]}"
            self._tmp: Path | None = self._final.parent / name
            self._tmp.mkdir(parents=True)
            self._write_url = kvstore_url(self._tmp)
        else:
            self._tmp = None
            self._write_url = self.url
            if overwrite:
                _open_kvstore(self.url).delete_range(ts.KvStore.KeyRange()).result()

    def _remove_leftovers(self) -> None:
        """Removes what an interrupted writer of this target left (with the lock held, no
        writer is running), and says so."""
        for pattern in (f".{self._final.name}.partial-*", f".{self._final.name}.old-*"):
            for leftover in sorted(self._final.parent.glob(pattern)):
                shutil.rmtree(leftover, ignore_errors=True)
                print(f"note: removed {leftover}, left by an interrupted write of {self._final}")

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def _check_target(self) -> None:
        if self._final is not None:
            if not self._final.exists():
                return
            is_dataset = (self._final / DATASET_JSON).is_file()
            empty = self._final.is_dir() and not any(self._final.iterdir())
            if empty:
                return
            if not is_dataset:
                raise FileExistsError(
                    f"{self._final} exists and is not a jaxcycle dataset; refusing to replace it"
                )
            if not self.overwrite:
                raise FileExistsError(
                    f"{self._final}: a dataset already exists (use --overwrite to replace it)"
                )
            return
        exists = _read_json(self.url) is not None
        if exists and not self.overwrite:
            raise FileExistsError(
                f"{self.url}: a dataset already exists (use --overwrite to replace it)"
            )
        if not exists and not self.overwrite and _open_kvstore(self.url).list().result():
            raise FileExistsError(f"{self.url} is not empty; refusing to write a dataset there")

    def add_domain(self, name: str, *, capacity: int) -> None:
        """Declares a domain and an upper estimate of its slice count (grown if exceeded)."""
        self._capacity[name] = max(int(capacity), 1)
        self._count[name] = 0

    def _create(self, name: str, item_shape: tuple[int, ...]) -> ts.TensorStore:
        shape = [self._capacity[name], *item_shape]
        spec = {
            "driver": "zarr",
            "kvstore": self._write_url + name + "/",
            "metadata": {
                "shape": shape,
                "chunks": [1, *item_shape],
                "dtype": "<f4",
                "compressor": _COMPRESSOR,
                "fill_value": None,
            },
            "create": True,
            "delete_existing": True,
        }
        return ts.open(spec).result()

    def append(self, name: str, slices: np.ndarray) -> int:
        """Writes (K, H, W[, C]) slices after the domain's earlier ones; returns the first index."""
        slices = np.asarray(slices, dtype=np.float32)
        if name not in self._arrays:
            self._arrays[name] = self._create(name, slices.shape[1:])
        array = self._arrays[name]
        if tuple(array.shape[1:]) != slices.shape[1:]:
            raise ValueError(
                f"slices of shape {slices.shape[1:]} do not fit domain {name}'s "
                f"{tuple(array.shape[1:])}"
            )
        start = self._count[name]
        stop = start + slices.shape[0]
        if stop > array.shape[0]:
            size = max(stop, 2 * array.shape[0])
            array = array.resize(exclusive_max=[size, *array.shape[1:]], expand_only=True).result()
            self._arrays[name] = array
        array[start:stop].write(slices).result()
        self._count[name] = stop
        return start

    def count(self, name: str) -> int:
        """Slices written so far to a domain."""
        return self._count[name]

    def item_shape(self, name: str) -> tuple[int, ...] | None:
        """(H, W[, C]) of a domain's slices, or None before the first append."""
        return tuple(self._arrays[name].shape[1:]) if name in self._arrays else None

    def commit(self, meta: dict) -> str:
        """Trims the arrays, writes dataset.json and moves the dataset into place; its URL."""
        for name, array in self._arrays.items():
            n = self._count[name]
            if n < array.shape[0]:
                array.resize(exclusive_max=[n, *array.shape[1:]], shrink_only=True).result()
            meta["domains"][name]["shape"] = [n, *array.shape[1:]]
        _write_json(self._write_url, meta)
        if self._tmp is not None:
            final = self._final
            old = None
            if final.exists():  # an existing dataset (checked) or an empty folder
                old = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(final, old)
            os.rename(self._tmp, final)
            self._tmp = None
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        self._release()
        return self.url

    def abort(self) -> None:
        """Discards what was written (local: the temporary folder)."""
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        self._release()

    def __enter__(self) -> DatasetBuilder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.abort()


class Dataset:
    """A built dataset: metadata from dataset.json, arrays opened on first use."""

    def __init__(self, url: str, meta: dict):
        if meta.get("format") != FORMAT:
            raise ValueError(f"{url}{DATASET_JSON}: not a jaxcycle dataset")
        if meta.get("version") != VERSION:
            raise ValueError(
                f"{url}: dataset format version {meta.get('version')}; this jaxcycle reads "
                f"version {VERSION}"
            )
        self.url = url
        self.meta = meta
        self._arrays: dict[str, ts.TensorStore] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, location: str | os.PathLike) -> Dataset:
        """Opens the dataset at a local path or kvstore URL."""
        url = kvstore_url(location)
        meta = _read_json(url)
        if meta is None:
            raise FileNotFoundError(f"{location}: no jaxcycle dataset ({DATASET_JSON} missing)")
        return cls(url, meta)

    @property
    def domains(self) -> list[str]:
        """The domain names, "A" and "B"."""
        return list(self.meta["domains"])

    def _domain(self, domain: str) -> dict:
        try:
            return self.meta["domains"][domain]
        except KeyError:
            raise KeyError(f"no domain {domain!r} in {self.url} (has {self.domains})") from None

    def modality(self, domain: str) -> str:
        """The domain's modality: "mr", "ct" or "other"."""
        return self._domain(domain)["modality"]

    def shape(self, domain: str) -> tuple[int, ...]:
        """(N, H, W[, C]) of the domain's array."""
        return tuple(self._domain(domain)["shape"])

    def slices(self, domain: str) -> list[dict]:
        """Per-slice records: patient, series, volume, slice, modality, spacing, source."""
        return self._domain(domain)["slices"]

    def volumes(self, domain: str) -> list[dict]:
        """Per-volume records: patient, series, format, source, first, count, placement,
        spacing, intensity, geometry."""
        return self._domain(domain)["volumes"]

    def array(self, domain: str) -> ts.TensorStore:
        """The domain's zarr array (opened once, shared by all readers)."""
        with self._lock:
            if domain not in self._arrays:
                spec = {
                    "driver": "zarr",
                    "kvstore": self.url + self._domain(domain)["array"] + "/",
                    "open": True,
                }
                try:
                    self._arrays[domain] = ts.open(spec, read=True).result()
                except Exception as e:
                    raise OSError(f"{self.url}: cannot open domain {domain}'s array ({e})") from e
            return self._arrays[domain]

    @property
    def split(self) -> dict:
        """{"train": [...], "test": [...], "seed", "train_fraction", "origin"}."""
        return self.meta["split"]

    def patients(self) -> list[str]:
        """Every patient of both domains, sorted."""
        return sorted({s["patient"] for d in self.domains for s in self.slices(d)})

    def indices(self, domain: str, split: str | None = None) -> np.ndarray:
        """Slice indices of a domain, all of them or those of the split's "train" or "test"."""
        records = self.slices(domain)
        if split is None:
            return np.arange(len(records))
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train', 'test' or None (got {split!r})")
        side = set(self.split[split])
        return np.array([i for i, s in enumerate(records) if s["patient"] in side], dtype=np.int64)

    def pairs(self, split: str | None = None) -> np.ndarray:
        """(P, 2) indices (A slice, B slice) of paired slices; ValueError if unpaired."""
        if self.meta.get("pairs") is None:
            raise ValueError(f"{self.url}: an unpaired dataset has no pairs")
        pairs = np.asarray(self.meta["pairs"], dtype=np.int64).reshape(-1, 2)
        if split is None:
            return pairs
        keep = set(self.indices("A", split).tolist())
        return pairs[[int(a) in keep for a in pairs[:, 0]]]

    def intensity(self, domain: str, volume: int) -> IntensityMap:
        """A volume's map between physical units and [-1, 1]."""
        return IntensityMap.from_json(self.volumes(domain)[volume]["intensity"])

    def intensity_for(self, domain: str, patient: str) -> IntensityMap:
        """The map to put images translated into `domain` back into physical units for a
        patient: that patient's own volume in the domain if there is one (paired data), else
        the domain's median lo and hi (for CT the window, the same for every volume)."""
        volumes = self.volumes(domain)
        for v in volumes:
            if v["patient"] == patient:
                return IntensityMap.from_json(v["intensity"])
        maps = [IntensityMap.from_json(v["intensity"]) for v in volumes]
        lo = float(np.median([m.lo for m in maps]))
        hi = float(np.median([m.hi for m in maps]))
        return IntensityMap(lo, hi, maps[0].unit, f"median of {len(maps)} volumes")

    def placement(self, domain: str, volume: int) -> Placement:
        """How a volume's slices sit in the stored grid."""
        return Placement.from_json(self.volumes(domain)[volume]["placement"])

    def read_volume(self, domain: str, volume: int) -> np.ndarray:
        """A volume's stored slices, (K, H, W[, C]) float32 in [-1, 1]."""
        v = self.volumes(domain)[volume]
        return self.array(domain)[v["first"] : v["first"] + v["count"]].read().result()

    def source(self, domain: str, split: str | None = None):
        """A `sources.DatasetSource` over the domain's slices (of one split side, if given)."""
        return DatasetSource(self, domain, self.indices(domain, split))

    def paired_sources(self, split: str | None = None):
        """Two aligned `DatasetSource`s: item i of A and item i of B are a pair."""
        pairs = self.pairs(split)
        return DatasetSource(self, "A", pairs[:, 0]), DatasetSource(self, "B", pairs[:, 1])

    def resplit(self, split: dict) -> None:
        """Replaces the stored split (checked for leaks) in dataset.json."""
        check_disjoint(split)
        missing = set(self.patients()) - set(split["train"]) - set(split["test"])
        if missing:
            raise ValueError(f"split leaves out {len(missing)} patient(s): {sorted(missing)[:5]}")
        self.meta["split"] = split
        _write_json(self.url, self.meta)

    def summary(self) -> str:
        """A few lines describing the dataset, for `jaxcycle data info`."""
        lines = [f"dataset {self.url}", f"  created {self.meta.get('created', '?')}"]
        split = self.split
        train, test = set(split["train"]), set(split["test"])
        for d in self.domains:
            info = self._domain(d)
            records = self.slices(d)
            n_train = sum(s["patient"] in train for s in records)
            maps = {IntensityMap.from_json(v["intensity"]).rule for v in self.volumes(d)}
            formats = sorted({v["format"] for v in self.volumes(d)})
            lines.append(
                f"  {d}: {info['modality']:<5} {len(records)} slices "
                f"{'x'.join(str(n) for n in info['shape'][1:])}, {len(self.volumes(d))} volumes, "
                f"{len({s['patient'] for s in records})} patients ({', '.join(formats)}); "
                f"train {n_train}, test {len(records) - n_train} slices; "
                f"intensity: {'; '.join(sorted(maps))[:80]}"
            )
        pairs = self.meta.get("pairs")
        lines.append(f"  pairs: {'unpaired' if pairs is None else len(pairs)}")
        lines.append(
            f"  split ({split.get('origin')}, seed {split.get('seed')}, train fraction "
            f"{split.get('train_fraction')}): {len(train)} train / {len(test)} test patients"
        )
        skipped = self.meta.get("skipped") or []
        if skipped:
            lines.append(f"  skipped at ingest: {len(skipped)} file(s)")
        return "\n".join(lines)


def new_metadata(domains: dict[str, str], options: dict) -> dict:
    """The skeleton of dataset.json for `DatasetBuilder.commit`."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "jaxcycle": __version__,
        "domains": {
            name: {"modality": modality, "array": name, "shape": None, "volumes": [], "slices": []}
            for name, modality in domains.items()
        },
        "pairs": None,
        "split": None,
        "options": options,
        "skipped": [],
    }
