"""The paper's study: Algorithm 1 for each pretrained model, both directions, with controls
that isolate what pretraining contributes; its tables and figures (`jaxcycle study`).

Rows (`study_rows`), each fine-tuned on the dataset's train split, translated and scored on
its test split in both directions. Each pretrained model is tried in the variants of
`study.variants` (`VARIANTS`):

    MODEL.paper      the paper's Algorithm 1, literally: FC1 -> softmax -> FC2 -> softmax on
                     the bottleneck, every pre-existing layer frozen. The softmax output is a
                     probability vector (about 1/256 per channel at the start), so the frozen
                     decoder no longer sees the pretrained features: the generic model's
                     function is replaced, not adapted.
    MODEL.residual   the same FC layers and softmax in residual form, x + FC2(softmax(FC1 x)),
                     FC2 starting at zero: training starts from the pretrained generator
                     itself; only the adapter trains.
    MODEL.decoder    the residual adapter, and the decoder (u1, u2, c7s1_out) trains too.
    MODEL.finetune   the residual adapter, and every layer trains, from the pretrained weights.

Controls (`study.controls`, variants run again from random weights): `random.residual` (a
random frozen trunk with the same adapter: MODEL.residual against it is what the pretrained
trunk contributes), `random.decoder` likewise, and `random.finetune`, CycleGAN from scratch on
the same network and schedule (MODEL.finetune against it is what pretrained initialisation
contributes). Each row's settings (weights, adapter, trainable layers, lambda, GAN loss,
epochs) are recorded in its done.json and in the tables. A published model's lambda is the
paper's for its category; rows without one (local checkpoints, controls) use
`study.lambda_cycle`.

Written under the workdir:

    models/ROW/                 the training run, eval/per_image_{gen_ab,gen_ba}.csv, done.json
    tables/table_iii_mr_to_ct.{md,csv}, tables/table_iv_ct_to_mr.{md,csv}
                                mean and std per metric and row with the row's settings; the
                                paper's numbers below, under the conventions that differ
    figures/fig5_mr_to_ct_WINDOW.png, figures/fig6_ct_to_mr_WINDOW.png
                                the same test slices: input, each row's output, ground truth;
                                CT shown in each display window of `study.display` (level,
                                width in HU: brain and bone by default)
    figures/fig7_latent.png, tables/latent_separability.csv
                                bottleneck features of MR and CT test slices, PCA and t-SNE,
                                with a separability score per row

Domain A is MR and B is CT: MR -> CT is gen_ab (the paper's G, Table III) and CT -> MR is
gen_ba (F, Table IV). Generators run on the test slices as `jaxcycle evaluate` runs them
(`inference.Translator`: channels matched, resized to the training crop size). The study
resumes row by row; a model whose weights cannot be had is reported and skipped.

Latent space: test MR and CT slices alike through one encoder, gen_ab's (MR -> CT), bottleneck
features averaged over positions (one 4*ngf vector per slice), projected jointly: does the
row's representation tell the modalities apart? Separability is the 5-fold cross-validated
accuracy of a logistic-regression probe telling MR from CT features (0.5 = inseparable), and
the silhouette score of the two groups.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from jaxcycle import cyclegan, evaluate, pretrained
from jaxcycle.data.store import Dataset
from jaxcycle.inference import Translator, resize_to, run_translators
from jaxcycle.train import to_host, train

DIRECTIONS = (
    ("MR->CT", "gen_ab", "table_iii_mr_to_ct", "fig5_mr_to_ct"),
    ("CT->MR", "gen_ba", "table_iv_ct_to_mr", "fig6_ct_to_mr"),
)
PAPER_TABLES = Path(__file__).with_name("resources") / "paper_tables_iii_iv.csv"

# Adapter forms: the model.* settings of each (the FC widths are `model.adapter_widths`).
ADAPTERS: dict[str, dict[str, Any]] = {
    "paper": {"adapter_activation": "softmax", "adapter_residual": False},
    "residual": {"adapter_activation": "softmax", "adapter_residual": True},
}
# How a model is fine-tuned: (adapter form, `transfer.freeze` preset of what trains).
VARIANTS: dict[str, tuple[str, str]] = {
    "paper": ("paper", "paper"),
    "residual": ("residual", "paper"),
    "decoder": ("residual", "decoder"),
    "finetune": ("residual", "full"),
}
TRAINS = {"paper": "adapter only", "decoder": "adapter and decoder", "full": "every layer"}
RANDOM = "random"

CAVEAT = """\
The paper's numbers are not on our scale. They were computed on its own data (367 paired
slices of 18 patients) exported as 8-bit PNG at 256 x 256 with a display window it does not
state, and it does not state UQI's window either (computed over the whole image, UQI gives
other values than over Wang & Bovik's 8 x 8 sliding windows). Ours are on this dataset's test
split, CT mapped to [0, 1] through the stored HU window, UQI over 8 x 8 sliding windows, VIF
in the pixel domain on [0, 255] (`jaxcycle.metrics`). Compare rows within one table; set
beside the paper's rows, compare rankings, not values.
"""


@dataclass(frozen=True)
class Row:
    """One row of the study: which weights start it, and how it is fine-tuned."""

    weights: str  # a published model, a `study.checkpoints` name, or RANDOM
    variant: str  # a key of VARIANTS
    lambda_cycle: float

    @property
    def name(self) -> str:
        """The row's directory and table name, MODEL.VARIANT."""
        return f"{self.weights}.{self.variant}"

    def settings(self, config: ml_collections.ConfigDict) -> dict[str, Any]:
        """What a reader of the tables needs to know about this row."""
        adapter, freeze = VARIANTS[self.variant]
        widths = "-".join(str(w) for w in config.model.adapter_widths)
        return {
            "weights": self.weights,
            "variant": self.variant,
            "adapter": f"{adapter} (FC {widths})",
            "trains": TRAINS[freeze],
            "lambda": self.lambda_cycle,
            "gan_loss": config.objective.gan_mode,
            "epochs": config.optim.n_epochs + config.optim.n_epochs_decay,
        }


def study_rows(config: ml_collections.ConfigDict) -> list[Row]:
    """The study's rows: each model in each variant, then the controls."""
    s = config.study
    unknown = [v for v in (*s.variants, *s.controls) if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown study variants {unknown}; expected some of {list(VARIANTS)}")
    rows = []
    for model in s.models:
        local = model in s.checkpoints
        lam = s.lambda_cycle if local else pretrained.get(model).lambda_cycle
        rows += [Row(model, variant, lam) for variant in s.variants]
    return rows + [Row(RANDOM, variant, s.lambda_cycle) for variant in s.controls]


def row_config(base: ml_collections.ConfigDict, row: Row) -> ml_collections.ConfigDict:
    """The fine-tuning config of one study row."""
    config = ml_collections.ConfigDict(base.to_dict())
    config.transfer.pretrained = ""
    config.transfer.checkpoint = ""
    if row.weights in base.study.checkpoints:
        config.transfer.checkpoint = base.study.checkpoints[row.weights]
    elif row.weights != RANDOM:
        config.transfer.pretrained = row.weights
    adapter, config.transfer.freeze = VARIANTS[row.variant]
    config.transfer.trainable = ()
    config.model.update(ADAPTERS[adapter])
    config.objective.lambda_a = config.objective.lambda_b = row.lambda_cycle
    return config


def latent_features(translator: Translator, source_mr, source_ct, count: int) -> tuple:
    """The pooled bottleneck features of a generator (gen_ab) of up to `count` MR and CT
    slices each, prepared as for translation: (features, is_ct)."""
    module = translator.arch.build()

    @jax.jit
    def bottleneck(variables, x):
        _, state = module.apply(variables, x, train=False, mutable=["intermediates"])
        return state["intermediates"]["bottleneck"][0].mean(axis=(1, 2))

    feats, labels = [], []
    for source, label in ((source_mr, 0), (source_ct, 1)):
        idx = list(range(min(count, len(source))))
        for start in range(0, len(idx), 8):
            x = translator.prepare(source.read(idx[start : start + 8]))
            feats.append(np.asarray(bottleneck(translator.variables, x)))
            labels += [label] * len(x)
    return np.concatenate(feats), np.asarray(labels)


def separability(features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Linear-probe accuracy (5-fold CV) and silhouette score of MR vs CT features."""
    folds = int(min(5, np.bincount(labels).min()))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    accuracy = float(np.mean(cross_val_score(probe, features, labels, cv=folds)))
    silhouette = float(silhouette_score(features, labels)) if np.ptp(features) > 0 else 0.0
    return {"probe_accuracy": accuracy, "silhouette": silhouette}


def run_row(config: ml_collections.ConfigDict, row: Row, row_dir: Path, progress: bool):
    """Fine-tunes and evaluates one row; writes done.json and the figure/latent arrays."""
    state = train(config, row_dir, progress=progress)
    data = Dataset.open(config.data.dataset)
    mr, ct = data.paired_sources("test")
    translators = run_translators(
        config, cyclegan.Networks.from_config(config), to_host(state.gen_params)
    )
    k = min(config.study.figure_slices, len(mr))
    summaries, figure = {}, {}
    for direction, gen, _, _ in DIRECTIONS:
        src, ref = (mr, ct) if gen == "gen_ab" else (ct, mr)
        scores = evaluate.evaluate_direction(translators[gen], src, ref)
        scores.write_csv(row_dir / "eval" / f"per_image_{gen}.csv")
        summaries[direction] = scores.summary()
        figure[gen] = translators[gen](src.read(list(range(k))))
    feats, labels = latent_features(translators["gen_ab"], mr, ct, config.study.latent_slices)
    np.savez(row_dir / "eval" / "study_arrays.npz", latent=feats, is_ct=labels, **figure)
    done = {
        "model": row.name,
        "settings": row.settings(config),
        "summaries": summaries,
        "separability": separability(feats, labels),
    }
    (row_dir / "done.json").write_text(json.dumps(done, indent=2) + "\n")
    return done


def run_study(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike, progress: bool = True
) -> dict[str, Any]:
    """Runs (or resumes) the study; returns {row: done record or {'skipped': reason}}."""
    workdir = Path(workdir)
    rows = study_rows(config)
    outcomes: dict[str, Any] = {}
    for row in tqdm(rows, desc="study", unit="row", disable=not progress):
        row_dir = workdir / "models" / row.name
        done_file = row_dir / "done.json"
        if done_file.exists():
            outcomes[row.name] = json.loads(done_file.read_text())
            continue
        try:
            outcomes[row.name] = run_row(row_config(config, row), row, row_dir, progress)
        except pretrained.PretrainedError as e:
            print(f"skipping {row.name}: {e}")
            outcomes[row.name] = {"model": row.name, "skipped": str(e)}
    (workdir / "study.json").write_text(json.dumps(outcomes, indent=2) + "\n")
    finished = {n: o for n, o in outcomes.items() if "summaries" in o}
    if finished:
        write_tables(finished, workdir / "tables")
        write_figures(config, finished, workdir)
    return outcomes


def _paper_numbers() -> dict[tuple[str, str], dict[str, tuple[float, float]]]:
    with open(PAPER_TABLES) as f:
        rows = list(csv.DictReader(f))
    return {
        (r["direction"], r["model"]): {
            m: (float(r[f"{m}_mean"]), float(r[f"{m}_std"])) for m in evaluate.METRICS
        }
        for r in rows
    }


def key_numbers(outcomes: dict[str, Any]) -> str:
    """The tables' headline, per direction: each row's SSIM and PSNR, best first, and how the
    best pretrained row compares with the paper-literal one and with its random-weight twin
    (the same variant from random weights)."""
    done = {n: o for n, o in outcomes.items() if "summaries" in o}
    lines = []
    for direction, *_ in DIRECTIONS:
        ssim = {n: o["summaries"][direction]["ssim"][0] for n, o in done.items()}
        psnr = {n: o["summaries"][direction]["psnr"][0] for n, o in done.items()}
        ranked = sorted(ssim, key=ssim.get, reverse=True)
        lines.append(f"{direction} (mean SSIM, PSNR dB over the test slices; best first):")
        lines += [f"  {n:<40} SSIM {ssim[n]:.3f}  PSNR {psnr[n]:5.2f}" for n in ranked]
        transfer = [n for n in ranked if done[n]["settings"]["weights"] != RANDOM]
        if transfer:
            best = transfer[0]
            settings = done[best]["settings"]
            twins = (f"{settings['weights']}.paper", f"{RANDOM}.{settings['variant']}")
            versus = [n for n in twins if n in ssim and n != best]
            line = f"  best pretrained row: {best}"
            if versus:
                line += "; SSIM " + ", ".join(
                    f"{ssim[best] - ssim[n]:+.3f} against {n}" for n in versus
                )
            lines.append(line)
        if ranked:
            lines.append(f"  best row overall: {ranked[0]}")
    return "\n".join(lines)


SETTINGS = ("weights", "variant", "adapter", "trains", "lambda", "gan_loss", "epochs")


def _settings_table(outcomes: dict[str, Any]) -> str:
    """A Markdown table of each row's settings."""
    lines = [
        "| row | " + " | ".join(k.replace("_", " ") for k in SETTINGS) + " |",
        "|---|" + "---|" * len(SETTINGS),
    ]
    for name, o in outcomes.items():
        settings = o["settings"]
        lines.append(f"| {name} | " + " | ".join(str(settings.get(k, "")) for k in SETTINGS) + " |")
    return "\n".join(lines) + "\n"


def write_tables(outcomes: dict[str, Any], out: Path) -> None:
    """Tables III and IV (Markdown and CSV, each row with its settings) and the latent
    separability table."""
    out.mkdir(parents=True, exist_ok=True)
    paper = _paper_numbers()
    for direction, _, stem, _ in DIRECTIONS:
        rows = {name: o["summaries"][direction] for name, o in outcomes.items()}
        models = {o.get("settings", {}).get("weights") for o in outcomes.values()}
        published = {
            n: paper[(direction, n)] for n in sorted(models - {None}) if (direction, n) in paper
        }
        table = "III" if direction == "MR->CT" else "IV"
        lines = [
            f"# Table {table}, {direction}: mean ± std over the test slices\n\n",
            evaluate.format_summary(rows),
            "\nRow settings:\n\n",
            _settings_table(outcomes),
        ]
        if published:
            lines += [
                f"\n## The paper's Table {table}, for the same models\n\n",
                CAVEAT,
                "\n",
                evaluate.format_summary(published),
            ]
        (out / f"{stem}.md").write_text("".join(lines))
        settings = {n: o["settings"] for n, o in outcomes.items()}
        csv_rows = [(direction, n, s) for n, s in rows.items()]
        csv_rows += [(direction, f"{n} (paper)", s) for n, s in published.items()]
        evaluate.summaries_csv(csv_rows, out / f"{stem}.csv", settings, SETTINGS)
    with open(out / "latent_separability.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "probe_accuracy", "silhouette"])
        for name, o in outcomes.items():
            s = o["separability"]
            writer.writerow([name, f"{s['probe_accuracy']:.4f}", f"{s['silhouette']:.4f}"])


def display_window(level: float, width: float) -> tuple[float, float]:
    """A radiological window (level, width) as the HU range (lo, hi) it shows."""
    if not width > 0:
        raise ValueError(f"a display window needs a positive width (got {width})")
    return level - width / 2, level + width / 2


def for_display(images: np.ndarray, maps, window: tuple[float, float] | None) -> np.ndarray:
    """(K, H, W, C) [-1, 1] slices as grey [0, 1] pictures: in HU through the (lo, hi)
    `window` when every slice's intensity map is in HU, else as stored."""
    grey = np.asarray(images).mean(axis=-1)
    if window is None or any(m.unit != "HU" for m in maps):
        return (grey + 1) / 2
    lo, hi = window
    hu = np.stack([m.restore(g) for m, g in zip(maps, grey, strict=True)])
    return np.clip((hu - lo) / (hi - lo), 0, 1)


def write_figures(config: ml_collections.ConfigDict, outcomes: dict[str, Any], workdir: Path):
    """Figures 5 and 6 (slice grids, CT in each display window) and 7 (latent projections)."""
    out = workdir / "figures"
    out.mkdir(parents=True, exist_ok=True)
    arrays = {n: np.load(workdir / "models" / n / "eval" / "study_arrays.npz") for n in outcomes}
    mr, ct = Dataset.open(config.data.dataset).paired_sources("test")
    k = min(config.study.figure_slices, len(mr))
    idx = list(range(k))
    mr_images = resize_to(mr.read(idx), config.data.crop_size)  # as the rows' outputs are
    ct_images = resize_to(ct.read(idx), config.data.crop_size)
    ct_maps = [ct.intensity(i) for i in idx]
    for window_name, (level, width) in config.study.display.items():
        window = display_window(level, width)
        shown = f"CT at window level {level:g}, width {width:g} HU ({window_name})"
        for direction, gen, _, stem in DIRECTIONS:
            to_ct = gen == "gen_ab"
            inputs, truth = (mr_images, ct_images) if to_ct else (ct_images, mr_images)

            def picture(images, is_ct, window=window):
                return for_display(images, ct_maps, window if is_ct else None)

            columns = (
                [("input", picture(inputs, not to_ct))]
                + [(n, picture(arrays[n][gen], to_ct)) for n in outcomes]
                + [("ground truth", picture(truth, to_ct))]
            )
            fig = Figure(figsize=(1.7 * len(columns), 1.7 * k + 0.4))
            axes = fig.subplots(k, len(columns), squeeze=False)
            for c, (title, images) in enumerate(columns):
                for r in range(k):
                    ax = axes[r][c]
                    ax.imshow(images[r], cmap="gray", vmin=0, vmax=1)
                    ax.set_xticks([])
                    ax.set_yticks([])
                    if r == 0:
                        ax.set_title(title.replace(".", "\n"), fontsize=7)
            fig.suptitle(f"{direction} translation of test slices; {shown}", fontsize=8)
            fig.tight_layout()
            fig.savefig(out / f"{stem}_{window_name}.png", dpi=120)

    fig = Figure(figsize=(2.6 * len(outcomes), 5.2))
    axes = fig.subplots(2, len(outcomes), squeeze=False)
    for c, name in enumerate(outcomes):
        feats, is_ct = arrays[name]["latent"], arrays[name]["is_ct"]
        projections = {"PCA": PCA(2).fit_transform(feats)}
        perplexity = float(min(30, max(2, (len(feats) - 1) // 3)))
        projections["t-SNE"] = TSNE(
            2, perplexity=perplexity, random_state=0, init="pca"
        ).fit_transform(feats)
        score = outcomes[name]["separability"]["probe_accuracy"]
        for r, (method, xy) in enumerate(projections.items()):
            ax = axes[r][c]
            for label, colour, text in ((0, "tab:blue", "MR"), (1, "tab:orange", "CT")):
                sel = is_ct == label
                ax.scatter(xy[sel, 0], xy[sel, 1], s=6, c=colour, label=text)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(
                f"{name}\n{method}, probe acc {score:.2f}" if r == 0 else method, fontsize=7
            )
            if r == 0 and c == 0:
                ax.legend(fontsize=6)
    fig.suptitle("Bottleneck features of MR and CT test slices", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "fig7_latent.png", dpi=120)
