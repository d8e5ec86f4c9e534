"""Ingest: folders of images, DICOM series or NIfTI volumes -> a tensorstore dataset.

For each domain (A and B, by default MR and CT) the inputs (files or folders, searched
recursively) must hold one kind of file: image files (PNG, JPEG, TIFF, BMP; 8/16-bit, grey or
RGB), DICOM files (grouped into series) or NIfTI volumes. Other files in a folder are ignored
(and counted); a named file of an unknown type is an error.

Identities: a DICOM series' patient is its PatientID and its series the SeriesInstanceUID; a
NIfTI volume's patient and series are its file name without .nii/.nii.gz; an image's are its
file name without suffix. `id_regex` replaces these: it is searched in each file's path relative
to its input folder, and its named groups `patient` (required), `series` and `slice` (optional)
give the identities (e.g. ``(?P<patient>sub-\\d+)/``).

Paired ingest matches volumes across domains by patient (DICOM, NIfTI; one volume per patient
and domain) or image files by relative path without suffix (or by patient and slice when the
regex has a `slice` group); paired volumes must have the same slice count. Slice k of one is
paired with slice k of the other.

Each volume's intensities are mapped to [-1, 1] by `intensity` (CT window, MR percentiles, image
levels) and the map is stored with it. With `size`, slices are padded to a square and resized
(`geometry.Placement`); without, all slices of a domain must share one shape.

Bad input (unreadable, truncated or corrupt files, undecodable compression, NaNs, wrong
dimensionality, mismatched pairs, a DICOM Modality other than the declared one): a DataError
naming the file, or, with `skip_bad`, a warning on the `jaxcycle.data` logger, the file (and its
partner, if paired) left out, and the count in the report. Source files are only read.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from jaxcycle.data.dicom import find_series, is_dicom_file
from jaxcycle.data.geometry import Placement
from jaxcycle.data.images import IMAGE_SUFFIXES, read_image
from jaxcycle.data.intensity import (
    CT_WINDOW,
    MR_PERCENTILES,
    IntensityMap,
    ct_window,
    image_levels,
    mr_percentiles,
)
from jaxcycle.data.nifti import is_nifti_file, nifti_ref
from jaxcycle.data.splits import TRAIN_FRACTION, check_disjoint, split_patients
from jaxcycle.data.store import DatasetBuilder, new_metadata
from jaxcycle.data.volume import DataError, Volume, VolumeRef

log = logging.getLogger("jaxcycle.data")
MODALITIES = ("mr", "ct", "other")
LAYOUT_FOLDERS = {"trainA": ("A", "train"), "testA": ("A", "test"), "trainB": ("B", "train"),
                  "testB": ("B", "test")}  # fmt: skip


@dataclass(frozen=True)
class IngestOptions:
    """How to ingest; the defaults follow the paper (A = MR, B = CT, 70/30 patient split)."""

    modality_a: str = "mr"
    modality_b: str = "ct"
    paired: bool = False
    id_regex: str | None = None
    ct_window: tuple[float, float] = CT_WINDOW
    mr_percentiles: tuple[float, float] = MR_PERCENTILES
    size: int | None = None
    train_fraction: float = TRAIN_FRACTION
    seed: int = 0
    nifti_frame: int | None = None
    skip_bad: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        for m in (self.modality_a, self.modality_b):
            if m not in MODALITIES:
                raise ValueError(f"modality must be one of {MODALITIES} (got {m!r})")
        ct_window(*self.ct_window)  # validates
        if self.size is not None and self.size < 8:
            raise ValueError(f"size must be at least 8 (got {self.size})")
        if self.id_regex is not None:
            try:
                pattern = re.compile(self.id_regex)
            except re.error as e:
                raise ValueError(f"--id-regex {self.id_regex!r}: {e}") from None
            if "patient" not in pattern.groupindex:
                raise ValueError(f"--id-regex {self.id_regex!r} needs a (?P<patient>...) group")


@dataclass
class IngestReport:
    """What an ingest did."""

    url: str
    slices: dict[str, int]
    volumes: dict[str, int]
    pairs: int | None
    split: dict
    skipped: list[tuple[str, str]] = field(default_factory=list)
    ignored: int = 0

    def summary(self) -> str:
        """Lines for the command line."""
        lines = [f"wrote {self.url}"]
        for d in self.slices:
            lines.append(f"  {d}: {self.slices[d]} slices from {self.volumes[d]} volume(s)")
        if self.pairs is not None:
            lines.append(f"  {self.pairs} paired slices")
        lines.append(
            f"  split: {len(self.split['train'])} train / {len(self.split['test'])} test patients"
        )
        if self.ignored:
            lines.append(f"  ignored {self.ignored} file(s) of other types")
        if self.skipped:
            lines.append(
                f"  skipped {len(self.skipped)} input(s), bad or partner of a bad one (--skip-bad)"
            )
        return "\n".join(lines)


class _Bad:
    """Raises on bad input, or with skip_bad logs it and keeps count."""

    def __init__(self, skip: bool):
        self.skip = skip
        self.items: list[tuple[str, str]] = []

    def __call__(self, path: str, message: str) -> None:
        if not self.skip:
            raise DataError(message) from None
        log.warning("skipped %s", message)
        self.items.append((str(path), message))


def _kind(path: Path) -> str | None:
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "image"
    if is_nifti_file(path):
        return "nifti"
    if is_dicom_file(path):
        return "dicom"
    return None


def discover(inputs: Sequence[str | os.PathLike]) -> tuple[str, list[tuple[Path, Path]], int]:
    """The file kind and [(file, input root)] under the inputs, and the count of ignored files.

    Raises DataError for a missing input, a named file of unknown type, no usable files, or a
    mix of kinds.
    """
    found: dict[str, list[tuple[Path, Path]]] = defaultdict(list)
    ignored = 0
    for given in inputs:
        root = Path(given)
        if root.is_file():
            kind = _kind(root)
            if kind is None:
                raise DataError(
                    f"{root}: unsupported file type (expected an image, DICOM or NIfTI file)"
                )
            found[kind].append((root, root.parent))
        elif root.is_dir():
            for path in sorted(root.rglob("*")):
                rel = path.relative_to(root)
                if not path.is_file() or any(part.startswith(".") for part in rel.parts):
                    continue
                kind = _kind(path)
                if kind is None:
                    ignored += 1
                else:
                    found[kind].append((path, root))
        else:
            raise DataError(f"{root}: no such file or folder")
    if not found:
        names = ", ".join(str(i) for i in inputs)
        extra = f" ({ignored} file(s) of other types ignored)" if ignored else ""
        raise DataError(f"{names}: no image, DICOM or NIfTI files found{extra}")
    if len(found) > 1:
        counts = ", ".join(f"{len(v)} {k}" for k, v in sorted(found.items()))
        raise DataError(
            f"{', '.join(str(i) for i in inputs)}: a mix of file kinds ({counts}); "
            "give each domain one kind"
        )
    kind, files = next(iter(found.items()))
    return kind, files, ignored


def _identity(path: Path, root: Path, regex: re.Pattern | None) -> dict[str, str] | None:
    if regex is None:
        return None
    rel = path.relative_to(root).as_posix()
    match = regex.search(rel)
    if match is None or not match.group("patient"):
        raise DataError(f"{path}: {rel!r} does not match --id-regex {regex.pattern!r}")
    return {k: v for k, v in match.groupdict().items() if v}


def _load_image(path: Path) -> Volume:
    image = read_image(path)
    levels = (image.pixels.astype(np.float64) + 1) / 2 * (2**image.bits - 1)
    values = levels[..., 0] if image.grey else levels
    return Volume(
        values=values[None].astype(np.float32),
        spacing=(np.nan, np.nan, np.nan),
        slice_files=[str(path)],
        geometry={"bits": image.bits, "grey": image.grey},
        bits=image.bits,
    )


def _refs(kind, files, regex, side_of, options, bad) -> list[VolumeRef]:
    """VolumeRefs of one domain's files; bad files reported."""
    refs: list[VolumeRef] = []
    ids: dict[str, dict[str, str] | None] = {}
    for path, root in files:
        try:
            ids[str(path)] = _identity(path, root, regex)
        except DataError as e:
            bad(path, str(e))
    files = [(p, r) for p, r in files if str(p) in ids]
    side = {str(p): side_of(r) for p, r in files}

    def keyed(ref: VolumeRef, key: str) -> VolumeRef:
        s = side[ref.source]
        return replace(ref, key=f"{s}/{key}" if s else key)

    if kind == "dicom":
        override = None
        if regex is not None:
            override = {
                str(p): (ids[str(p)]["patient"], ids[str(p)].get("series", "")) for p, _ in files
            }
        series, errors = find_series([p for p, _ in files], patient_ids=override)
        for path, message in errors:
            bad(path, message)
        refs += [keyed(ref, ref.patient) for ref in series]
    elif kind == "nifti":
        for path, _ in files:
            ident = ids[str(path)] or {}
            try:
                ref = nifti_ref(
                    path,
                    frame=options.nifti_frame,
                    patient=ident.get("patient"),
                    series=ident.get("series"),
                )
            except DataError as e:
                bad(path, str(e))
                continue
            refs.append(keyed(ref, ref.patient))
    else:
        for path, root in files:
            ident = ids[str(path)] or {}
            stem = path.relative_to(root).with_suffix("").as_posix()
            patient = ident.get("patient", path.stem)
            key = f"{patient}/{ident['slice']}" if "slice" in ident else stem
            ref = VolumeRef(
                "image",
                str(path),
                (str(path),),
                patient,
                ident.get("series", path.stem),
                key,
                1,
                lambda path=path: _load_image(path),
            )
            refs.append(keyed(ref, key))
    return refs


def _pair(refs_a: list[VolumeRef], refs_b: list[VolumeRef], bad) -> list[tuple]:
    """[(ref_a, ref_b)] matched by key; duplicates, orphans and slice-count mismatches bad."""
    by_key: list[dict[str, VolumeRef]] = []
    for name, refs in (("A", refs_a), ("B", refs_b)):
        keys: dict[str, list[VolumeRef]] = defaultdict(list)
        for r in refs:
            keys[r.key].append(r)
        unique = {}
        for key, group in keys.items():
            if len(group) > 1:
                for r in group:
                    bad(
                        r.source,
                        f"{r.source}: paired ingest needs one volume per key, but {key!r} has "
                        f"{len(group)} in domain {name} ({', '.join(g.source for g in group[:3])})",
                    )
            else:
                unique[key] = group[0]
        by_key.append(unique)
    units = []
    for key in sorted(by_key[0].keys() | by_key[1].keys()):
        a, b = by_key[0].get(key), by_key[1].get(key)
        if a is None or b is None:
            r = a or b
            other = "B" if b is None else "A"
            bad(r.source, f"{r.source}: no partner for {key!r} in domain {other} (paired ingest)")
        elif a.slices != b.slices:
            bad(
                a.source,
                f"{a.source} ({a.slices} slices) and {b.source} ({b.slices} slices): "
                "mismatched pair, slice counts differ",
            )
        else:
            units.append((a, b))
    return units


def volume_intensity(
    volume: Volume, source: str, modality: str, options: IngestOptions
) -> IntensityMap:
    """The map that sends a loaded volume to [-1, 1]: image levels for image files, else the CT
    window or the volume's MR percentiles of `options` (by `modality`); DataError names
    `source` for a volume that cannot be normalised (constant MR)."""
    if volume.bits is not None:
        return image_levels(volume.bits)
    if modality == "ct":
        return ct_window(*options.ct_window)
    try:
        return mr_percentiles(volume.values, *options.mr_percentiles)
    except ValueError as e:
        raise DataError(f"{source}: {e}") from None


def _json_spacing(spacing) -> list[float | None]:
    return [None if not np.isfinite(s) else float(s) for s in spacing]


class _Writer:
    """Loads, normalises and appends volumes; keeps the records."""

    def __init__(self, builder: DatasetBuilder, meta: dict, options: IngestOptions, bad):
        self.builder, self.meta, self.options, self.bad = builder, meta, options, bad
        self.modality = {"A": options.modality_a, "B": options.modality_b}

    def prepare(self, domain: str, ref: VolumeRef):
        """(normalised slices, volume record, per-slice files) or None if bad."""
        modality = self.modality[domain]
        try:
            volume = ref.load()
            values = volume.values
            declared = volume.modality
            if declared in ("mr", "ct") and modality in ("mr", "ct") and declared != modality:
                raise DataError(
                    f"{ref.source}: DICOM Modality is {declared.upper()}, but domain {domain} "
                    f"is declared {modality} (swap the inputs or set --{domain.lower()}-modality)"
                )
            imap = volume_intensity(volume, ref.source, modality, self.options)
            placement = Placement(values.shape[1], values.shape[2], self.options.size)
            stored = placement.forward(imap.normalise(values))
            shape = self.builder.item_shape(domain)
            if shape is not None and stored.shape[1:] != shape:
                if stored.shape[3:] != shape[2:]:
                    channels = [s[2] if len(s) == 3 else 1 for s in (stored.shape[1:], shape)]
                    raise DataError(
                        f"{ref.source}: {channels[0]} channel(s), but domain {domain}'s earlier "
                        f"images have {channels[1]}"
                    )
                raise DataError(
                    f"{ref.source}: slices of {values.shape[1]}x{values.shape[2]}, but domain "
                    f"{domain}'s are {shape[0]}x{shape[1]}; ingest with --size N to resample "
                    "all slices to N x N"
                )
        except DataError as e:
            self.bad(ref.source, str(e))
            return None
        except (ValueError, OSError) as e:
            self.bad(ref.source, f"{ref.source}: {e}")
            return None
        scale = placement.scale
        stored_spacing = (volume.spacing[0] / scale, volume.spacing[1] / scale, volume.spacing[2])
        record = {
            "patient": ref.patient,
            "series": ref.series,
            "format": ref.format,
            "modality": modality,
            "source": ref.source,
            "first": None,
            "count": len(stored),
            "placement": placement.to_json(),
            "spacing": _json_spacing(volume.spacing),
            "stored_spacing": _json_spacing(stored_spacing),
            "intensity": imap.to_json(),
            "geometry": volume.geometry,
        }
        return stored, record, volume.slice_files

    def append(self, domain: str, prepared) -> int:
        """Writes a prepared volume; returns its first slice index."""
        stored, record, files = prepared
        start = self.builder.append(domain, stored)
        record["first"] = start
        info = self.meta["domains"][domain]
        index = len(info["volumes"])
        info["volumes"].append(record)
        for k, path in enumerate(files):
            info["slices"].append(
                {
                    "patient": record["patient"],
                    "series": record["series"],
                    "volume": index,
                    "slice": k,
                    "modality": record["modality"],
                    "spacing": record["stored_spacing"],
                    "source": path,
                }
            )
        return start


def ingest(
    out: str | os.PathLike,
    inputs_a: Sequence[str | os.PathLike],
    inputs_b: Sequence[str | os.PathLike],
    options: IngestOptions | None = None,
    *,
    sides: dict[str, str] | None = None,
) -> IngestReport:
    """Builds a dataset at `out` (a path or kvstore URL) from domain A's and B's inputs.

    sides: {input folder: "train" or "test"} to take the split from the folders (the reference
    layout) instead of drawing it from the seed.
    """
    options = options or IngestOptions()
    bad = _Bad(options.skip_bad)
    regex = re.compile(options.id_regex) if options.id_regex else None
    resolved = {str(Path(k).resolve()): v for k, v in (sides or {}).items()}

    def side_of(root: Path) -> str | None:
        return resolved.get(str(root.resolve())) if sides is not None else None

    refs, ignored, side_by_source = {}, 0, {}
    for domain, inputs in (("A", inputs_a), ("B", inputs_b)):
        if not inputs:
            raise DataError(f"domain {domain}: no inputs given")
        kind, files, n_ignored = discover(inputs)
        ignored += n_ignored
        side_by_source.update({str(p): side_of(r) for p, r in files})
        refs[domain] = _refs(kind, files, regex, side_of, options, bad)

    if options.paired:
        units = _pair(refs["A"], refs["B"], bad)
    else:
        units = [("A", r) for r in refs["A"]] + [("B", r) for r in refs["B"]]

    meta = new_metadata(
        {"A": options.modality_a, "B": options.modality_b},
        {k: v for k, v in asdict(options).items() if k not in ("overwrite", "skip_bad")},
    )
    patient_sides: dict[str, set[str]] = defaultdict(set)
    with DatasetBuilder(out, overwrite=options.overwrite) as builder:
        for domain in ("A", "B"):
            builder.add_domain(domain, capacity=sum(r.slices for r in refs[domain]))
        writer = _Writer(builder, meta, options, bad)
        pairs: list[tuple[int, int]] = []
        for unit in units:
            if options.paired:
                a, b = unit
                pa = writer.prepare("A", a)
                pb = writer.prepare("B", b) if pa is not None else None
                if pa is None or pb is None:
                    left, partner = (b, a) if pa is None else (a, b)
                    bad(left.source, f"{left.source}: left out with its partner {partner.source}")
                    continue
                if len(pa[0]) != len(pb[0]):
                    bad(a.source, f"{a.source} and {b.source}: slice counts differ when read")
                    continue
                start_a, start_b = writer.append("A", pa), writer.append("B", pb)
                pairs += [(start_a + k, start_b + k) for k in range(len(pa[0]))]
                used = [a, b]
            else:
                domain, ref = unit
                prepared = writer.prepare(domain, ref)
                if prepared is None:
                    continue
                writer.append(domain, prepared)
                used = [ref]
            for r in used:
                if side_by_source.get(r.source):
                    patient_sides[r.patient].add(side_by_source[r.source])
        for domain, inputs in (("A", inputs_a), ("B", inputs_b)):
            if builder.count(domain) == 0:
                skipped = f" ({len(bad.items)} bad input(s) skipped)" if bad.items else ""
                names = ", ".join(map(str, inputs))
                raise DataError(f"domain {domain}: no usable slices in {names}{skipped}")
        if options.paired:
            meta["pairs"] = pairs
        patients = sorted({s["patient"] for d in ("A", "B") for s in meta["domains"][d]["slices"]})
        if sides is not None:
            split = {
                "train": sorted(p for p in patients if "train" in patient_sides[p]),
                "test": sorted(p for p in patients if "test" in patient_sides[p]),
                "origin": "folders",
                "seed": None,
                "train_fraction": None,
            }
            check_disjoint(split)
        else:
            split = split_patients(patients, options.train_fraction, options.seed)
            split.update(origin="seeded", seed=options.seed, train_fraction=options.train_fraction)
        meta["split"] = split
        meta["skipped"] = [{"file": f, "reason": m} for f, m in bad.items]
        url = builder.commit(meta)
    return IngestReport(
        url=url,
        slices={d: len(meta["domains"][d]["slices"]) for d in ("A", "B")},
        volumes={d: len(meta["domains"][d]["volumes"]) for d in ("A", "B")},
        pairs=len(pairs) if options.paired else None,
        split=split,
        skipped=bad.items,
        ignored=ignored,
    )


def ingest_layout(
    out: str | os.PathLike, root: str | os.PathLike, options: IngestOptions | None = None
) -> IngestReport:
    """Ingests the reference project's layout: root/trainA, trainB, testA, testB.

    The split is the folders' (test folders are optional; without them the seeded split is
    used); a patient found in both train and test folders is an error.
    """
    root = Path(root)
    present = {name: root / name for name in LAYOUT_FOLDERS if (root / name).is_dir()}
    for name in ("trainA", "trainB"):
        if name not in present:
            raise DataError(f"{root}: no {name}/ folder (expected trainA, trainB, testA, testB)")
    inputs: dict[str, list[Path]] = {"A": [], "B": []}
    sides = {}
    for name, path in present.items():
        domain, side = LAYOUT_FOLDERS[name]
        inputs[domain].append(path)
        sides[str(path)] = side
    has_test = any(side == "test" for side in sides.values())
    return ingest(out, inputs["A"], inputs["B"], options, sides=sides if has_test else None)
