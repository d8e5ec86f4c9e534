"""Scoring translations: per-image PSNR, SSIM, UQI and VIF (and MAE/RMSE in HU for CT), and
summaries in the layout of the paper's Tables III and IV.

Conventions (see `jaxcycle.metrics` for the definitions):

- Every image is first mapped to [0, 1] with an explicit range, never the image's own
  maximum: image files by their bit depth (0..255 or 0..65535), CT by a HU window (default
  [-1024, 3071], the dataset's default CT window, clipped), MR (no physical unit) by a window
  that defaults to the reference file's minimum and maximum, the same map applied to the
  prediction (clipped), network outputs from [-1, 1].
- PSNR and SSIM then use data range 1 unless a data range is given in the images' own units
  (levels, HU, scanner units), which is divided by the width of that range. UQI and VIF are
  computed on the [0, 1] images times 255 (the reference convention: VIF's noise variance 2 is
  in 8-bit grey levels squared; UQI depends only on the zero, not on the scale).
- MAE and RMSE are in HU, on the unclipped values, for CT images only.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxcycle import metrics
from jaxcycle.data.dicom import is_dicom_file, load_series
from jaxcycle.data.images import IMAGE_SUFFIXES, read_image, write_image
from jaxcycle.data.intensity import CT_WINDOW
from jaxcycle.data.nifti import is_nifti_file, load_nifti
from jaxcycle.data.store import Dataset
from jaxcycle.data.writers import write_translated
from jaxcycle.inference import Translator, load_run, load_translator, run_translators

METRICS = ("psnr", "ssim", "uqi", "vif")
HU_METRICS = ("mae_hu", "rmse_hu")
VIF_SCALE = 255.0
MODALITIES = ("auto", "ct", "mr")
VOLUME_FORMATS = ("nifti", "dicom")

_mae, _rmse = jax.jit(metrics.mae), jax.jit(metrics.rmse)


@dataclass
class Scores:
    """Per-image scores of one set of translations."""

    names: list[str] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, names: Sequence[str], batch: dict[str, np.ndarray]) -> None:
        """Appends a batch; a metric missing from some images (HU for non-CT) is NaN there."""
        before = len(self.names)
        self.names += list(names)
        for key, column in batch.items():
            self.values.setdefault(key, [float("nan")] * before).extend(
                float(v) for v in np.asarray(column)
            )
        for column in self.values.values():
            column.extend([float("nan")] * (len(self.names) - len(column)))

    @property
    def columns(self) -> list[str]:
        return [m for m in (*METRICS, *HU_METRICS) if m in self.values]

    def summary(self) -> dict[str, tuple[float, float]]:
        """Mean and (population) standard deviation of each metric."""
        return {m: metrics.summarize(np.asarray(self.values[m])) for m in self.columns}

    def write_csv(self, path: str | os.PathLike) -> Path:
        """One row per image: name, then each metric."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["name", *self.columns])
            for i, name in enumerate(self.names):
                writer.writerow([name, *(f"{self.values[m][i]:.6g}" for m in self.columns)])
        return path


def _positive(value: float, name: str) -> float:
    value = float(value)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite (got {value})")
    return value


def score_unit(
    ref: np.ndarray, pred: np.ndarray, data_range: float = 1.0, vif_scale: float = VIF_SCALE
) -> dict[str, np.ndarray]:
    """The four metrics of a batch of (B, H, W[, C]) images in [0, 1].

    PSNR and SSIM use `data_range` (on the [0, 1] scale: 1 is the full range); UQI and VIF
    are computed on the images times `vif_scale` (default 255, see the module docstring).
    """
    data_range = _positive(data_range, "data range")
    vif_scale = _positive(vif_scale, "UQI/VIF scale")
    scores = metrics.all_metrics(ref, pred, data_range, vif_scale=vif_scale)
    return {k: np.asarray(v) for k, v in scores.items()}


def format_summary(summaries: dict[str, dict[str, tuple[float, float]]]) -> str:
    """A Markdown table: one row per direction (or model), mean +- std per metric."""
    columns = sorted(
        {m for s in summaries.values() for m in s}, key=lambda m: (METRICS + HU_METRICS).index(m)
    )
    lines = [
        "| | " + " | ".join(c.upper().replace("_HU", " (HU)") for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for row, summary in summaries.items():
        cells = []
        for c in columns:
            mean, std = summary.get(c, (float("nan"), float("nan")))
            # An inf mean (a PSNR of identical images) has no finite spread to show.
            cells.append(f"{mean:.4g}" if np.isinf(mean) else f"{mean:.4g} ± {std:.3g}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- Files: `jaxcycle metrics REF PRED`.


@dataclass(frozen=True)
class ReadImage:
    """An image read for scoring, before any mapping to [0, 1]."""

    values: np.ndarray  # (H, W, C) float32: in [0, 1] for image files, else physical units
    bits: int | None  # image files: 8 or 16; DICOM and NIfTI: None
    modality: str | None  # what the file declares (DICOM Modality, lower case), else None


def read_for_scoring(path: Path) -> list[tuple[str, ReadImage]]:
    """An image file (one image), DICOM file (one slice) or NIfTI volume (one per slice)."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = read_image(path)
        return [(path.name, ReadImage((image.pixels + 1) / 2, image.bits, None))]
    if is_nifti_file(path):
        volume, label = load_nifti(path), path.name
    elif is_dicom_file(path):
        volume, label = load_series((str(path),)), path.name
    else:
        raise ValueError(f"{path}: not an image, DICOM or NIfTI file")
    out = []
    for k, values in enumerate(volume.values):
        values = values if values.ndim == 3 else values[..., None]
        name = label if len(volume.values) == 1 else f"{label}:{k}"
        out.append((name, ReadImage(values.astype(np.float32), None, volume.modality)))
    return out


def scoring_modality(declared: str | None, modality: str = "auto") -> str:
    """ "ct" (scored in HU too) or "mr" (scanner units) for a DICOM/NIfTI reference.

    `modality` "ct" or "mr" decides; "auto" takes the reference's DICOM Modality tag: CT is
    CT, any other declared modality (MR, PT, ...) is scored as "mr", without HU; a file that
    declares none (NIfTI, DICOM without the tag) is taken as CT.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES} (got {modality!r})")
    if modality != "auto":
        return modality
    return "ct" if declared in (None, "", "ct") else "mr"


def _files(item: Path) -> list[Path]:
    if item.is_dir():
        files = sorted(p for p in item.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise FileNotFoundError(f"{item}: empty folder")
        return files
    if not item.exists():
        raise FileNotFoundError(f"{item}: no such file or folder")
    return [item]


def score_files(
    ref: str | os.PathLike,
    pred: str | os.PathLike,
    window=CT_WINDOW,
    *,
    data_range: float | None = None,
    vif_scale: float = VIF_SCALE,
    modality: str = "auto",
    mr_window: tuple[float, float] | None = None,
) -> Scores:
    """Scores the files of `pred` against the files of `ref` with the same names.

    Each pair is mapped to [0, 1] by the reference's kind: image files by their bit depth, CT
    by the HU `window` (clipped), MR by `mr_window`, default the reference file's minimum and
    maximum (over all its slices; the prediction is clipped to it), see `scoring_modality`.
    `data_range`: the PSNR/SSIM data range in the reference's own units (levels of its bit
    depth, HU, scanner units); default the full width of the range mapped to [0, 1]. UQI and
    VIF are computed on the [0, 1] images times `vif_scale`. MAE/RMSE in HU for CT only.
    """
    if data_range is not None:
        data_range = _positive(data_range, "data range")
    vif_scale = _positive(vif_scale, "UQI/VIF scale")
    scoring_modality(None, modality)  # checks the name
    for name, w in (("HU window", window), ("MR window", mr_window)):
        if w is not None and not (np.all(np.isfinite(w)) and w[1] > w[0]):
            raise ValueError(f"{name} needs finite LO < HI (got {w[0]}, {w[1]})")
    ref_files = {p.name: p for p in _files(Path(ref))}
    pred_files = {p.name: p for p in _files(Path(pred))}
    if Path(ref).is_file() and Path(pred).is_file():
        pred_files = {Path(ref).name: Path(pred)}
    missing = sorted(set(ref_files) - set(pred_files))
    extra = sorted(set(pred_files) - set(ref_files))
    if missing or extra:
        raise ValueError(
            f"unmatched files: {len(missing)} in {ref} without a prediction "
            f"({', '.join(missing[:5])}), {len(extra)} predictions without a reference "
            f"({', '.join(extra[:5])})"
        )
    scores = Scores()
    for name in sorted(ref_files):
        refs = read_for_scoring(ref_files[name])
        preds = read_for_scoring(pred_files[name])
        for path, items in ((ref_files[name], refs), (pred_files[name], preds)):
            bad = sum(int(np.count_nonzero(~np.isfinite(item.values))) for _, item in items)
            if bad:
                raise ValueError(
                    f"{path}: {bad} NaN or infinite value(s); metrics need finite images"
                )
        if len(refs) != len(preds):
            raise ValueError(f"{pred_files[name]}: {len(preds)} slices, the reference {len(refs)}")
        first = refs[0][1]
        if any((p.bits is None) != (first.bits is None) for _, p in preds):
            raise ValueError(f"{name}: one of the two files is an image file, the other is not")
        if first.bits is not None:
            kind, (lo, hi), span = "image", (0.0, 1.0), float(2**first.bits - 1)
        else:
            kind = scoring_modality(first.modality, modality)
            if kind == "ct":
                lo, hi = window
            elif mr_window is not None:
                lo, hi = mr_window
            else:
                lo = float(min(r.values.min() for _, r in refs))
                hi = float(max(r.values.max() for _, r in refs))
                hi = hi if hi > lo else lo + 1.0  # a constant reference
            span = float(hi) - float(lo)
        unit_range = 1.0 if data_range is None else data_range / span
        for (label, r), (_, p) in zip(refs, preds, strict=True):
            if r.values.shape != p.values.shape:
                raise ValueError(
                    f"{pred_files[name]}: shape {p.values.shape} differs from the reference "
                    f"{r.values.shape}"
                )
            if kind == "image":
                ru, pu = r.values, p.values
            else:
                ru, pu = (
                    np.clip((x.values - lo) / (hi - lo), 0, 1).astype(np.float32) for x in (r, p)
                )
            try:
                batch = score_unit(ru[None], pu[None], unit_range, vif_scale)
            except ValueError as e:  # e.g. too small for VIF
                raise ValueError(f"{pred_files[name]} ({label}): {e}") from None
            if kind == "ct":
                batch["mae_hu"] = np.asarray(_mae(r.values[None], p.values[None]))
                batch["rmse_hu"] = np.asarray(_rmse(r.values[None], p.values[None]))
            scores.add([label], batch)
    return scores


# --- Generators on a dataset's test split: `jaxcycle evaluate`.


def evaluate_direction(
    translator: Translator,
    source_in,
    source_ref,
    batch_size: int = 8,
    on_batch: Callable[[Sequence[int], np.ndarray], None] | None = None,
) -> Scores:
    """Translates paired slices and scores them against their partners, both at the
    translator's working size (a run's crop size: `inference.Translator`).

    `source_in`/`source_ref` are aligned dataset sources (`Dataset.paired_sources`). CT
    references are also scored in HU, through each volume's stored intensity map.
    `on_batch(indices, translated)` receives each batch's outputs, e.g. to write them.
    """
    scores = Scores()
    for start in range(0, len(source_in), batch_size):
        idx = list(range(start, min(start + batch_size, len(source_in))))
        pred = translator(source_in.read(idx))
        ref = translator.resize(source_ref.read(idx))
        if pred.shape != ref.shape:
            raise ValueError(
                f"translations of shape {pred.shape[1:]} cannot be scored against references "
                f"of shape {ref.shape[1:]} (do the two domains differ in channels?)"
            )
        if on_batch is not None:
            on_batch(idx, pred)
        batch = score_unit((ref + 1) / 2, (pred + 1) / 2)
        maps = [source_ref.intensity(i) for i in idx]
        if all(m.unit == "HU" for m in maps):
            ref_hu = np.stack([m.restore(r) for m, r in zip(maps, ref, strict=True)])
            pred_hu = np.stack([m.restore(p) for m, p in zip(maps, pred, strict=True)])
            batch["mae_hu"] = np.asarray(_mae(ref_hu, pred_hu))
            batch["rmse_hu"] = np.asarray(_rmse(ref_hu, pred_hu))
        names = []
        for i in idx:
            record = source_ref.record(i)
            names.append(f"{record['patient']}/{record['slice']}")
        scores.add(names, batch)
    return scores


def summaries_csv(
    rows: Iterable[tuple[str, str, dict[str, tuple[float, float]]]],
    path,
    settings: dict[str, dict[str, Any]] | None = None,
    setting_names: Sequence[str] = (),
) -> Path:
    """CSV of (direction, model, metric mean/std columns), the paper's table layout; with
    `settings` ({model: {name: value}}), the `setting_names` columns follow (empty where a
    model has none)."""
    rows = list(rows)
    settings = settings or {}
    metric_names = [m for m in (*METRICS, *HU_METRICS) if any(m in s for _, _, s in rows)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "direction",
                "model",
                *(f"{m}_{s}" for m in metric_names for s in ("mean", "std")),
                *setting_names,
            ]
        )
        for direction, model, summary in rows:
            cells = []
            for m in metric_names:
                mean, std = summary.get(m, (float("nan"), float("nan")))
                cells += [f"{mean:.6g}", f"{std:.6g}"]
            given = settings.get(model, {})
            writer.writerow([direction, model, *cells, *(given.get(k, "") for k in setting_names)])
    return path


def _file_stem(text: str) -> str:
    """`text` as a file name: anything but letters, digits and . _ - becomes _."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text) or "_"


def _image_name(record: dict) -> str:
    """The file name of a translated slice: PATIENT_SSSS.png (the CSV's PATIENT/S)."""
    return f"{_file_stem(str(record['patient']))}_{int(record['slice']):04d}.png"


def _image_bits(source, index: int, channels: int) -> int:
    """16-bit PNGs for grey scanner data and 16-bit images; 8-bit for 8-bit images and RGB."""
    imap = source.intensity(index)
    if channels != 1 or (imap.unit == "level" and imap.rule == "bits 8"):
        return 8
    return 16


def _volume_targets(data, domain: str, rows: np.ndarray, folder: Path, fmt: str) -> dict:
    """{volume index: output path} of the `domain` volumes whose every slice is in `rows`:
    PATIENT_VVV.nii.gz files (NIfTI sources only) or PATIENT_VVV folders of DICOM files."""
    if fmt not in VOLUME_FORMATS:
        raise ValueError(f"unknown volume format {fmt!r}; expected one of {VOLUME_FORMATS}")
    if len(data.array(domain).shape) != 3:
        raise ValueError(f"{data.url}: volumes are written from grey slices only")
    present = set(np.asarray(rows).tolist())
    targets = {}
    for v, record in enumerate(data.volumes(domain)):
        if not all(r in present for r in range(record["first"], record["first"] + record["count"])):
            continue
        if fmt == "nifti" and record["format"] != "nifti":
            raise ValueError(
                f"{record['source']}: NIfTI output needs NIfTI sources (use --volumes dicom)"
            )
        stem = f"{_file_stem(str(record['patient']))}_{v:03d}"
        targets[v] = folder / (f"{stem}.nii.gz" if fmt == "nifti" else stem)
    return targets


def evaluate_dataset(
    generators: dict[str, Translator],
    data,
    split: str,
    output: str | os.PathLike,
    *,
    title: str,
    model: str,
    batch_size: int = 8,
    images: bool = True,
    volumes: str | None = None,
    overwrite: bool = False,
) -> dict[str, Scores]:
    """Scores generators {"gen_ab": A->B, "gen_ba": B->A} (either may be absent) on a paired
    `store.Dataset` split, at each translator's working size.

    Writes to `output`: per_image_GEN.csv (one row per slice), summary.md (`title`, then the
    table) and summary.csv (`model` in its model column) and, with `images`, each translation
    as output/translated_GEN/PATIENT_SSSS.png at the working size, the [-1, 1] outputs as
    levels (16-bit for grey scanner data and 16-bit images, 8-bit for 8-bit images and RGB).
    With `volumes` ("nifti" or "dicom"), each source volume of the split is also written
    translated, back on its source's grid and geometry and in the target domain's physical
    units (HU for CT), as output/volumes_GEN/PATIENT_VVV.nii.gz or a folder of a new DICOM
    series (`writers.write_translated`), for viewing beside the source in a radiology viewer.
    Scores are of the unquantised outputs. Nothing is written if any of these files exists,
    unless `overwrite`. Returns the scores by direction ("A->B", "B->A").
    """
    if not generators:
        raise ValueError("no generator to evaluate")
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1 (got {batch_size})")
    source_a, source_b = data.paired_sources(split)
    if len(source_a) == 0:
        raise ValueError(f"{data.url}: no paired slices in the {split} split")
    out = Path(output)
    plan = [
        (direction, name, src, ref)
        for direction, name, src, ref in (
            ("A->B", "gen_ab", source_a, source_b),
            ("B->A", "gen_ba", source_b, source_a),
        )
        if name in generators
    ]
    targets = [out / "summary.md", out / "summary.csv"]
    image_paths: dict[str, list[Path]] = {}
    for _, name, _, ref in plan:
        targets.append(out / f"per_image_{name}.csv")
        if images:
            paths = [
                out / f"translated_{name}" / _image_name(ref.record(i)) for i in range(len(ref))
            ]
            if len(set(paths)) != len(paths):
                raise ValueError(f"{data.url}: two slices of one patient share a file name")
            image_paths[name] = paths
            targets += paths
    volume_paths = {
        name: _volume_targets(data, src.domain, src.rows, out / f"volumes_{name}", volumes)
        for _, name, src, _ in (plan if volumes else [])
    }
    targets += [p for paths in volume_paths.values() for p in paths.values()]
    taken = [str(t) for t in targets if t.exists()]
    if taken and not overwrite:
        more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
        raise FileExistsError(f"would overwrite {taken[0]}{more} (use --overwrite)")

    results = {}
    for direction, name, src, ref in plan:
        translated: dict[int, np.ndarray] = {}  # by the source slice's row in its domain

        def on_batch(idx, pred, name=name, src=src, ref=ref, translated=translated):
            for i, p in zip(idx, pred, strict=True):
                if images:
                    bits = _image_bits(ref, i, p.shape[-1])
                    write_image(image_paths[name][i], p, bits, overwrite=True)
                if volumes:
                    translated[int(src.rows[i])] = p

        scores = evaluate_direction(generators[name], src, ref, batch_size, on_batch)
        scores.write_csv(out / f"per_image_{name}.csv")
        results[direction] = scores
        stored_size = data.array(src.domain).shape[1:3]
        for v, path in volume_paths.get(name, {}).items():
            record = data.volumes(src.domain)[v]
            rows = range(record["first"], record["first"] + record["count"])
            stack = np.stack([translated[r] for r in rows])
            on_grid = generators[name].restore_size(stack, *stored_size)
            write_translated(
                data, src.domain, v, on_grid, path, fmt=volumes, target=ref.domain, overwrite=True
            )
    summaries = {d: s.summary() for d, s in results.items()}
    (out / "summary.md").write_text(f"{title}\n\n" + format_summary(summaries))
    summaries_csv([(d, model, s) for d, s in summaries.items()], out / "summary.csv")
    return results


def evaluate_run(
    workdir: str | os.PathLike,
    dataset: str | None = None,
    split: str = "test",
    output: str | os.PathLike | None = None,
    batch_size: int = 8,
    images: bool = True,
    volumes: str | None = None,
    overwrite: bool = False,
) -> dict[str, Scores]:
    """Both directions of a trained run on a paired dataset split, at the run's crop size,
    written by `evaluate_dataset` to `output` (default WORKDIR/eval). Returns the scores by
    direction ('A->B', 'B->A')."""
    config, networks, gen_params, step = load_run(workdir)
    data = Dataset.open(dataset or config.data.dataset)
    return evaluate_dataset(
        run_translators(config, networks, gen_params),
        data,
        split,
        Path(output) if output else Path(workdir) / "eval",
        title=f"Run {workdir}, step {step}, {split} split of {data.url}",
        model=str(workdir),
        batch_size=batch_size,
        images=images,
        volumes=volumes,
        overwrite=overwrite,
    )


def evaluate_params(
    dataset: str | os.PathLike,
    output: str | os.PathLike,
    gen_ab: str | os.PathLike | None = None,
    gen_ba: str | os.PathLike | None = None,
    split: str = "test",
    batch_size: int = 8,
    images: bool = True,
    volumes: str | None = None,
    overwrite: bool = False,
) -> dict[str, Scores]:
    """Generators from any weights source (`weights.load_generator`; channels and sizes
    fitted by `inference.Translator`) on a paired dataset split: `gen_ab` translates domain A
    into B, `gen_ba` B into A; either may be None (that direction is skipped). Written by
    `evaluate_dataset`."""
    given = {n: d for n, d in (("gen_ab", gen_ab), ("gen_ba", gen_ba)) if d is not None}
    if not given:
        raise ValueError("give a generator for at least one direction (gen_ab or gen_ba)")
    data = Dataset.open(dataset)
    generators = {n: load_translator(d) for n, d in given.items()}
    described = ", ".join(f"{n} {d}" for n, d in given.items())
    return evaluate_dataset(
        generators,
        data,
        split,
        output,
        title=f"Generators {described}, {split} split of {data.url}",
        model=" ".join(str(d) for d in given.values()),
        batch_size=batch_size,
        images=images,
        volumes=volumes,
        overwrite=overwrite,
    )
