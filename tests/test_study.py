"""A two-model study at tiny scale, end to end: tables checked against the per-image CSVs,
figures written, an unavailable model skipped, and a rerun resuming instead of retraining."""

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxcycle.architecture import Architecture
from jaxcycle.config import load_config
from jaxcycle.data.ingest import IngestOptions, ingest
from jaxcycle.data.phantom import write_phantom
from jaxcycle.study import run_study

torch = pytest.importorskip("torch")
from benchmarks import torch_reference as ref  # noqa: E402

ROOT = Path(__file__).parents[1]


def _csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def study(tmp_path_factory, monkeypatch_module):
    root = tmp_path_factory.mktemp("study")
    write_phantom(root / "phantom", subjects=4, size=48, slices=4)
    ingest(
        root / "ds",
        [root / "phantom" / "mr"],
        [root / "phantom" / "ct"],
        IngestOptions(paired=True, train_fraction=0.5),
    )
    checkpoints = {}
    for seed, name in ((1, "generic_one"), (2, "generic_two")):
        model = ref.randomize(ref.build(Architecture("resnet", 3, 3, 8, n_blocks=1)), seed=seed)
        torch.save(model.state_dict(), root / f"{name}.pth")
        checkpoints[name] = str(root / f"{name}.pth")
    monkeypatch_module.setenv("JAXCYCLE_CACHE", str(root / "cache"))
    monkeypatch_module.setenv("JAXCYCLE_PRETRAINED_URL", "http://127.0.0.1:9/{name}.pth")
    config = load_config(
        ROOT / "configs" / "study.py",
        [
            f"data.dataset={root / 'ds'}",
            "data.load_size=32",
            "data.crop_size=32",
            "model.ngf=8",
            "model.ndf=8",
            "model.n_blocks=1",
            "model.adapter_widths=(32, 32)",
            "study.models=('generic_one', 'horse2zebra', 'generic_two')",
            "study.scratch=False",
            "study.figure_slices=2",
            "study.latent_slices=8",
            "optim.n_epochs=1",
            "optim.n_epochs_decay=0",
            "train.max_steps=2",
            "train.pool_size=2",
            "data.workers=1",
        ],
    )
    config.unlock()
    config.study.checkpoints = checkpoints
    outcomes = run_study(config, root / "out", progress=False)
    return root / "out", outcomes, config


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_unavailable_model_is_skipped_and_the_rest_go_on(study):
    _, outcomes, _ = study
    assert "could not download horse2zebra" in outcomes["horse2zebra"]["skipped"]
    assert set(outcomes) == {"generic_one", "horse2zebra", "generic_two"}
    assert "summaries" in outcomes["generic_one"] and "summaries" in outcomes["generic_two"]


@pytest.mark.parametrize(
    "stem,gen", [("table_iii_mr_to_ct", "gen_ab"), ("table_iv_ct_to_mr", "gen_ba")]
)
def test_tables_agree_with_per_image_csvs(study, stem, gen):
    out, _, _ = study
    rows = {r["model"]: r for r in _csv(out / "tables" / f"{stem}.csv")}
    assert set(rows) == {"generic_one", "generic_two"}
    metrics = ["psnr", "ssim", "uqi", "vif"] + (["mae_hu", "rmse_hu"] if gen == "gen_ab" else [])
    for model in ("generic_one", "generic_two"):
        per_image = _csv(out / "models" / model / "eval" / f"per_image_{gen}.csv")
        assert len(per_image) == 8  # 2 test subjects x 4 slices
        for m in metrics:
            values = np.array([float(r[m]) for r in per_image])
            assert float(rows[model][f"{m}_mean"]) == pytest.approx(values.mean(), rel=1e-4)
            assert float(rows[model][f"{m}_std"]) == pytest.approx(values.std(), rel=1e-3, abs=1e-6)
    markdown = (out / "tables" / f"{stem}.md").read_text()
    assert "generic_one" in markdown and "PSNR" in markdown


def test_figures_and_latent_scores(study):
    out, outcomes, _ = study
    for name in ("fig5_mr_to_ct.png", "fig6_ct_to_mr.png", "fig7_latent.png"):
        image = np.asarray(Image.open(out / "figures" / name))
        assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0
    scores = {r["model"]: r for r in _csv(out / "tables" / "latent_separability.csv")}
    for model in ("generic_one", "generic_two"):
        accuracy = float(scores[model]["probe_accuracy"])
        assert 0.0 <= accuracy <= 1.0
        assert accuracy == pytest.approx(
            outcomes[model]["separability"]["probe_accuracy"], abs=1e-4
        )


def test_rerun_resumes_without_retraining(study):
    out, _, config = study
    done = out / "models" / "generic_one" / "done.json"
    before = done.stat().st_mtime_ns
    outcomes = run_study(config, out, progress=False)
    assert done.stat().st_mtime_ns == before
    assert outcomes["generic_one"]["summaries"]


def test_evaluate_command_on_a_study_run_gives_the_same_scores(study, tmp_path):
    """`jaxcycle evaluate` on one of the study's training runs reproduces its per-image CSVs."""
    from jaxcycle.cli import main

    out, _, config = study
    run = out / "models" / "generic_one"
    assert main(["evaluate", "--workdir", str(run), "--output", str(tmp_path)]) == 0
    for gen in ("gen_ab", "gen_ba"):
        ours = _csv(tmp_path / f"per_image_{gen}.csv")
        theirs = _csv(run / "eval" / f"per_image_{gen}.csv")
        assert [r["name"] for r in ours] == [r["name"] for r in theirs]
        for a, b in zip(ours, theirs, strict=True):
            for key in a:
                if key != "name":
                    assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-5, abs=1e-6)
    summary = (tmp_path / "summary.md").read_text()
    assert "A->B" in summary and "B->A" in summary
