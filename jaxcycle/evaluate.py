"""Scoring translations: per-image PSNR, SSIM, UQI and VIF (and MAE/RMSE in HU for CT), and
summaries in the layout of the paper's Tables III and IV.

Conventions (see `jaxcycle.metrics` for the definitions):

- Every image is first mapped to [0, 1] with an explicit range, never the image's own
  maximum: image files by their bit depth (0..255 or 0..65535), HU images by a window
  (default [-1024, 3071], the dataset's default CT window, clipped), network outputs from
  [-1, 1]. PSNR and SSIM then use data range 1; UQI and VIF are computed on [0, 255].
- MAE and RMSE are in HU, on the unclipped values, for CT images.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from jaxcycle import metrics

METRICS = ("psnr", "ssim", "uqi", "vif")
HU_METRICS = ("mae_hu", "rmse_hu")
DEFAULT_HU_WINDOW = (-1024.0, 3071.0)

_all_metrics = jax.jit(metrics.all_metrics)
_mae, _rmse = jax.jit(metrics.mae), jax.jit(metrics.rmse)


@dataclass
class Scores:
    """Per-image scores of one set of translations."""

    names: list[str] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, names: Sequence[str], batch: dict[str, np.ndarray]) -> None:
        self.names += list(names)
        for key, column in batch.items():
            self.values.setdefault(key, []).extend(float(v) for v in np.asarray(column))

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


def score_unit(ref: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """The four metrics of a batch of (B, H, W[, C]) images in [0, 1]."""
    return {k: np.asarray(v) for k, v in _all_metrics(ref, pred, 1.0).items()}


def score_hu(ref_hu: np.ndarray, pred_hu: np.ndarray, window=DEFAULT_HU_WINDOW) -> dict:
    """The four metrics on the windowed images, and MAE/RMSE in HU."""
    lo, hi = window
    unit = [np.clip((x - lo) / (hi - lo), 0, 1).astype(np.float32) for x in (ref_hu, pred_hu)]
    scores = score_unit(*unit)
    scores["mae_hu"] = np.asarray(_mae(ref_hu, pred_hu))
    scores["rmse_hu"] = np.asarray(_rmse(ref_hu, pred_hu))
    return scores


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
            cells.append(f"{mean:.4g} ± {std:.3g}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --- Files: `jaxcycle metrics REF PRED`.


@dataclass(frozen=True)
class ScoredImage:
    """An image read for scoring: values in [0, 1], and in HU where it is a CT image."""

    unit: np.ndarray  # (H, W, C) float32
    hu: np.ndarray | None


def read_for_scoring(path: Path, window=DEFAULT_HU_WINDOW) -> list[tuple[str, ScoredImage]]:
    """An image file (one image), DICOM file (one slice) or NIfTI volume (one per slice)."""
    from jaxcycle.data.dicom import is_dicom_file, load_series
    from jaxcycle.data.images import IMAGE_SUFFIXES, read_image
    from jaxcycle.data.nifti import is_nifti_file, load_nifti

    if path.suffix.lower() in IMAGE_SUFFIXES:
        return [(path.name, ScoredImage((read_image(path).pixels + 1) / 2, None))]
    if is_nifti_file(path):
        volume, label = load_nifti(path), path.name
    elif is_dicom_file(path):
        volume, label = load_series((str(path),)), path.name
    else:
        raise ValueError(f"{path}: not an image, DICOM or NIfTI file")
    lo, hi = window
    out = []
    for k, values in enumerate(volume.values):
        values = values if values.ndim == 3 else values[..., None]
        unit = np.clip((values - lo) / (hi - lo), 0, 1).astype(np.float32)
        name = label if len(volume.values) == 1 else f"{label}:{k}"
        out.append((name, ScoredImage(unit, values.astype(np.float32))))
    return out


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
    ref: str | os.PathLike, pred: str | os.PathLike, window=DEFAULT_HU_WINDOW
) -> Scores:
    """Scores the files of `pred` against the files of `ref` with the same names."""
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
        refs = read_for_scoring(ref_files[name], window)
        preds = read_for_scoring(pred_files[name], window)
        if len(refs) != len(preds):
            raise ValueError(f"{pred_files[name]}: {len(preds)} slices, the reference {len(refs)}")
        for (label, r), (_, p) in zip(refs, preds, strict=True):
            if r.unit.shape != p.unit.shape:
                raise ValueError(
                    f"{pred_files[name]}: shape {p.unit.shape} differs from the reference "
                    f"{r.unit.shape}"
                )
            if (r.hu is None) != (p.hu is None):
                raise ValueError(f"{name}: one of the two files is in HU, the other is not")
            if r.hu is not None:
                batch = score_hu(r.hu[None], p.hu[None], window)
            else:
                batch = score_unit(r.unit[None], p.unit[None])
            scores.add([label], batch)
    return scores


# --- A trained generator on a dataset's test split: `jaxcycle evaluate`.


def evaluate_direction(
    generator: Callable[[np.ndarray], np.ndarray],
    source_in,
    source_ref,
    batch_size: int = 8,
    on_batch: Callable[[Sequence[int], np.ndarray], None] | None = None,
) -> Scores:
    """Translates paired slices and scores them against their partners.

    `source_in`/`source_ref` are aligned dataset sources (`Dataset.paired_sources`). CT
    references are also scored in HU, through each volume's stored intensity map.
    `on_batch(indices, translated)` receives each batch's outputs, e.g. to write them.
    """
    scores = Scores()
    for start in range(0, len(source_in), batch_size):
        idx = list(range(start, min(start + batch_size, len(source_in))))
        x, ref = source_in.read(idx), source_ref.read(idx)
        pred = np.clip(generator(x), -1, 1)
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


def summaries_csv(rows: Iterable[tuple[str, str, dict[str, tuple[float, float]]]], path) -> Path:
    """CSV of (direction, model, metric mean/std columns), the paper's table layout."""
    rows = list(rows)
    metric_names = [m for m in (*METRICS, *HU_METRICS) if any(m in s for _, _, s in rows)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["direction", "model", *(f"{m}_{s}" for m in metric_names for s in ("mean", "std"))]
        )
        for direction, model, summary in rows:
            cells = []
            for m in metric_names:
                mean, std = summary.get(m, (float("nan"), float("nan")))
                cells += [f"{mean:.6g}", f"{std:.6g}"]
            writer.writerow([direction, model, *cells])
    return path


def load_run(workdir: str | os.PathLike):
    """A training run's config, networks and latest generator params."""
    import json

    import ml_collections
    import orbax.checkpoint as ocp

    from jaxcycle.train import networks_from_config

    workdir = Path(workdir)
    config_path = workdir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{workdir}: not a training workdir (no config.json)")
    config = ml_collections.ConfigDict(json.loads(config_path.read_text()))
    with ocp.CheckpointManager(workdir.absolute() / "checkpoints") as manager:
        step = manager.latest_step()
        if step is None:
            raise FileNotFoundError(f"{workdir}: no checkpoint yet")
        state = manager.restore(step, args=ocp.args.StandardRestore())
    return config, networks_from_config(config), state["gen_params"], step


def evaluate_run(
    workdir: str | os.PathLike,
    dataset: str | None = None,
    split: str = "test",
    output: str | os.PathLike | None = None,
    batch_size: int = 8,
) -> dict[str, Scores]:
    """Both directions of a trained run on a paired dataset split; writes per-image CSVs and a
    summary (Markdown and CSV) to `output` (default WORKDIR/eval). Returns the scores by
    direction ('A->B', 'B->A')."""
    from jaxcycle.data.store import Dataset
    from jaxcycle.translate import make_generator_fn

    config, nets, gen_params, step = load_run(workdir)
    data = Dataset.open(dataset or config.data.dataset)
    source_a, source_b = data.paired_sources(split)
    out = Path(output) if output else Path(workdir) / "eval"
    results = {}
    for direction, name, src, ref in (
        ("A->B", "gen_ab", source_a, source_b),
        ("B->A", "gen_ba", source_b, source_a),
    ):
        arch = getattr(nets, name)
        generator = make_generator_fn(arch, {"params": gen_params[name]})
        scores = evaluate_direction(generator, src, ref, batch_size)
        scores.write_csv(out / f"per_image_{name}.csv")
        results[direction] = scores
    summaries = {d: s.summary() for d, s in results.items()}
    (out / "summary.md").write_text(
        f"Run {workdir}, step {step}, {split} split of {data.url}\n\n" + format_summary(summaries)
    )
    summaries_csv([(d, str(workdir), s) for d, s in summaries.items()], out / "summary.csv")
    return results
