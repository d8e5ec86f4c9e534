"""The paper's study: Algorithm 1 for each pretrained model, both directions, its tables and
figures (`jaxcycle study`).

For every model of `study.models` (and a from-scratch control), fine-tune on the dataset's
train split as in `configs/transfer.py`, translate its test split in both directions, score
the translations, and write under the workdir:

    models/NAME/                the training run, eval/per_image_{gen_ab,gen_ba}.csv, done.json
    tables/table_iii_mr_to_ct.{md,csv}, tables/table_iv_ct_to_mr.{md,csv}
                                mean and std per metric and model, beside the paper's numbers
    figures/fig5_mr_to_ct.png, figures/fig6_ct_to_mr.png
                                the same test slices: input, each model's output, ground truth
    figures/fig7_latent.png, tables/latent_separability.csv
                                bottleneck features of MR and CT test slices, PCA and t-SNE,
                                with a separability score per model

Domain A is MR and B is CT: MR -> CT is gen_ab (the paper's G, Table III) and CT -> MR is
gen_ba (F, Table IV). The study resumes model by model; a model whose weights cannot be had
is reported and skipped.

Latent space: test MR and CT slices alike through one encoder, gen_ab's (MR -> CT), bottleneck
features averaged over positions (one 4*ngf vector per slice), projected jointly: does the
model's representation tell the modalities apart? Separability is the 5-fold cross-validated
accuracy of a logistic-regression probe telling MR from CT features (0.5 = inseparable), and
the silhouette score of the two groups.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from jaxcycle import evaluate, pretrained

SCRATCH = "scratch"
DIRECTIONS = (
    ("MR->CT", "gen_ab", "table_iii_mr_to_ct", "fig5_mr_to_ct"),
    ("CT->MR", "gen_ba", "table_iv_ct_to_mr", "fig6_ct_to_mr"),
)
PAPER_TABLES = Path(__file__).with_name("resources") / "paper_tables_iii_iv.csv"


def model_config(base: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """The fine-tuning config of one study row."""
    config = ml_collections.ConfigDict(base.to_dict())
    config.transfer.pretrained = ""
    config.transfer.checkpoint = ""
    if name == SCRATCH:  # the control: same networks and schedule, every layer from random
        config.transfer.freeze = "full"
        config.transfer.trainable = ()
    elif name in base.study.checkpoints:
        config.transfer.checkpoint = base.study.checkpoints[name]
    else:
        model = pretrained.get(name)
        config.transfer.pretrained = model.name
        config.objective.lambda_a = config.objective.lambda_b = model.lambda_cycle
    return config


def latent_features(networks, gen_params, source_mr, source_ct, count: int) -> tuple:
    """gen_ab's pooled bottleneck features of up to `count` MR and CT slices each:
    (features, is_ct)."""
    module = networks.gen_ab.build()

    @jax.jit
    def bottleneck(params, x):
        _, state = module.apply({"params": params}, x, mutable=["intermediates"])
        return state["intermediates"]["bottleneck"][0].mean(axis=(1, 2))

    feats, labels = [], []
    for source, label in ((source_mr, 0), (source_ct, 1)):
        idx = list(range(min(count, len(source))))
        for start in range(0, len(idx), 8):
            x = source.read(idx[start : start + 8])
            feats.append(np.asarray(bottleneck(gen_params["gen_ab"], x)))
            labels += [label] * len(x)
    return np.concatenate(feats), np.asarray(labels)


def separability(features: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Linear-probe accuracy (5-fold CV) and silhouette score of MR vs CT features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import silhouette_score
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = int(min(5, np.bincount(labels).min()))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    accuracy = float(np.mean(cross_val_score(probe, features, labels, cv=folds)))
    silhouette = float(silhouette_score(features, labels)) if np.ptp(features) > 0 else 0.0
    return {"probe_accuracy": accuracy, "silhouette": silhouette}


def run_model(config: ml_collections.ConfigDict, name: str, model_dir: Path, progress: bool):
    """Fine-tunes and evaluates one row; writes done.json and the figure/latent arrays."""
    from jaxcycle.data.store import Dataset
    from jaxcycle.train import networks_from_config, to_host, train
    from jaxcycle.translate import make_generator_fn

    state = train(config, model_dir, progress=progress)
    data = Dataset.open(config.data.dataset)
    mr, ct = data.paired_sources("test")
    networks, gen_params = networks_from_config(config), to_host(state.gen_params)
    k = min(config.study.figure_slices, len(mr))
    summaries, figure = {}, {}
    for direction, gen, _, _ in DIRECTIONS:
        src, ref = (mr, ct) if gen == "gen_ab" else (ct, mr)
        generator = make_generator_fn(getattr(networks, gen), {"params": gen_params[gen]})
        scores = evaluate.evaluate_direction(generator, src, ref)
        scores.write_csv(model_dir / "eval" / f"per_image_{gen}.csv")
        summaries[direction] = scores.summary()
        figure[gen] = np.clip(generator(src.read(list(range(k)))), -1, 1)
    feats, labels = latent_features(networks, gen_params, mr, ct, config.study.latent_slices)
    np.savez(model_dir / "eval" / "study_arrays.npz", latent=feats, is_ct=labels, **figure)
    done = {
        "model": name,
        "summaries": summaries,
        "separability": separability(feats, labels),
        "weights": config.transfer.checkpoint or config.transfer.pretrained or "random",
    }
    (model_dir / "done.json").write_text(json.dumps(done, indent=2) + "\n")
    return done


def run_study(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike, progress: bool = True
) -> dict[str, Any]:
    """Runs (or resumes) the study; returns {model: done record or {'skipped': reason}}."""
    workdir = Path(workdir)
    names = [*config.study.models, *([SCRATCH] if config.study.scratch else [])]
    outcomes: dict[str, Any] = {}
    for name in tqdm(names, desc="study", unit="model", disable=not progress):
        model_dir = workdir / "models" / name
        done_file = model_dir / "done.json"
        if done_file.exists():
            outcomes[name] = json.loads(done_file.read_text())
            continue
        try:
            outcomes[name] = run_model(model_config(config, name), name, model_dir, progress)
        except pretrained.PretrainedError as e:
            print(f"skipping {name}: {e}")
            outcomes[name] = {"model": name, "skipped": str(e)}
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


def write_tables(outcomes: dict[str, Any], out: Path) -> None:
    """Tables III and IV (Markdown and CSV) and the latent separability table."""
    out.mkdir(parents=True, exist_ok=True)
    paper = _paper_numbers()
    for direction, _, stem, _ in DIRECTIONS:
        rows = {name: o["summaries"][direction] for name, o in outcomes.items()}
        lines = [
            f"# {direction}: mean ± std over the test slices (paper's numbers beside)\n",
            evaluate.format_summary(rows),
        ]
        published = {n: paper[(direction, n)] for n in rows if (direction, n) in paper}
        if published:
            lines += [
                f"\nPublished (the paper's Table {'III' if direction == 'MR->CT' else 'IV'}):\n",
                evaluate.format_summary(published),
            ]
        (out / f"{stem}.md").write_text("".join(lines))
        csv_rows = [(direction, n, s) for n, s in rows.items()]
        csv_rows += [(direction, f"{n} (paper)", s) for n, s in published.items()]
        evaluate.summaries_csv(csv_rows, out / f"{stem}.csv")
    with open(out / "latent_separability.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "probe_accuracy", "silhouette"])
        for name, o in outcomes.items():
            s = o["separability"]
            writer.writerow([name, f"{s['probe_accuracy']:.4f}", f"{s['silhouette']:.4f}"])


def write_figures(config: ml_collections.ConfigDict, outcomes: dict[str, Any], workdir: Path):
    """Figures 5 and 6 (slice grids) and 7 (latent projections)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    from jaxcycle.data.store import Dataset

    out = workdir / "figures"
    out.mkdir(parents=True, exist_ok=True)
    arrays = {n: np.load(workdir / "models" / n / "eval" / "study_arrays.npz") for n in outcomes}
    mr, ct = Dataset.open(config.data.dataset).paired_sources("test")
    k = min(config.study.figure_slices, len(mr))
    idx = list(range(k))
    for direction, gen, _, stem in DIRECTIONS:
        inputs, truth = (
            (mr.read(idx), ct.read(idx)) if gen == "gen_ab" else (ct.read(idx), mr.read(idx))
        )
        columns = (
            [("input", inputs)]
            + [(n, arrays[n][gen]) for n in outcomes]
            + [("ground truth", truth)]
        )
        fig, axes = plt.subplots(
            k, len(columns), figsize=(1.6 * len(columns), 1.6 * k), squeeze=False
        )
        for c, (title, images) in enumerate(columns):
            for r in range(k):
                ax = axes[r][c]
                ax.imshow(images[r][..., 0], cmap="gray", vmin=-1, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(title, fontsize=7)
        fig.suptitle(f"{direction} translation of test slices", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / f"{stem}.png", dpi=120)
        plt.close(fig)

    fig, axes = plt.subplots(2, len(outcomes), figsize=(2.6 * len(outcomes), 5.2), squeeze=False)
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
    plt.close(fig)
