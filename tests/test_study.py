"""A study at tiny scale, end to end: a local model in two variants and the from-scratch
control, tables checked against the per-image CSVs and carrying each row's
settings, figures in CT display windows, an unavailable model skipped, and a rerun resuming
instead of retraining."""

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxcycle.architecture import Architecture
from jaxcycle.config import load_config
from jaxcycle.data.ingest import IngestOptions, ingest
from jaxcycle.data.phantom import write_phantom
from jaxcycle.paper.study import run_study

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
    for seed, name in ((1, "generic_one"),):
        model = ref.randomize(ref.build(Architecture("resnet", 3, 3, 8, n_blocks=1)), seed=seed)
        torch.save(model.state_dict(), root / f"{name}.pth")
        checkpoints[name] = str(root / f"{name}.pth")
    monkeypatch_module.setenv("JAXCYCLE_CACHE", str(root / "cache"))
    monkeypatch_module.setenv("JAXCYCLE_PRETRAINED_URL", "http://127.0.0.1:9/{name}.pth")
    config = load_config(
        ROOT / "configs" / "study.py",
        [
            f"data.dataset={root / 'ds'}",
            "data.load_size=48",
            "data.crop_size=48",
            "model.ngf=8",
            "model.ndf=8",
            "model.n_blocks=1",
            "model.adapter_widths=(32, 32)",
            "study.models=('generic_one', 'horse2zebra')",
            "study.variants=('paper', 'residual')",
            "study.controls=('finetune',)",
            "study.lambda_cycle=7.0",
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


ROWS = ("generic_one.paper", "generic_one.residual", "random.finetune")


def test_unavailable_model_is_skipped_and_the_rest_go_on(study):
    _, outcomes, _ = study
    for row in ("horse2zebra.paper", "horse2zebra.residual"):
        assert "could not download horse2zebra" in outcomes[row]["skipped"]
    assert set(outcomes) == {*ROWS, "horse2zebra.paper", "horse2zebra.residual"}
    assert all("summaries" in outcomes[row] for row in ROWS)


def test_rows_train_what_their_settings_say(study):
    """Each row's run config: its weights, adapter form, freeze rule and the stated lambda."""
    import json

    out, outcomes, _ = study
    expected = {
        "generic_one.paper": ("generic_one.pth", False, "paper"),
        "generic_one.residual": ("generic_one.pth", True, "paper"),
        "random.finetune": ("", True, "full"),
    }
    for row, (checkpoint, residual, freeze) in expected.items():
        config = json.loads((out / "models" / row / "config.json").read_text())
        assert config["transfer"]["checkpoint"].endswith(checkpoint)
        assert config["transfer"]["pretrained"] == ""
        assert config["model"]["adapter_residual"] is residual
        assert config["transfer"]["freeze"] == freeze
        assert config["objective"]["lambda_a"] == config["objective"]["lambda_b"] == 7.0
        settings = outcomes[row]["settings"]
        assert settings["lambda"] == 7.0 and settings["gan_loss"] == "lsgan"
        assert settings["trains"] == ("adapter only" if freeze == "paper" else "every layer")


@pytest.mark.parametrize(
    "stem,gen", [("table_iii_mr_to_ct", "gen_ab"), ("table_iv_ct_to_mr", "gen_ba")]
)
def test_tables_agree_with_per_image_csvs(study, stem, gen):
    out, outcomes, _ = study
    rows = {r["model"]: r for r in _csv(out / "tables" / f"{stem}.csv")}
    assert set(rows) == set(ROWS)
    metrics = ["psnr", "ssim", "uqi", "vif"] + (["mae_hu", "rmse_hu"] if gen == "gen_ab" else [])
    for model in ROWS:
        per_image = _csv(out / "models" / model / "eval" / f"per_image_{gen}.csv")
        assert len(per_image) == 8  # 2 test subjects x 4 slices
        for m in metrics:
            values = np.array([float(r[m]) for r in per_image])
            assert float(rows[model][f"{m}_mean"]) == pytest.approx(values.mean(), rel=1e-4)
            assert float(rows[model][f"{m}_std"]) == pytest.approx(values.std(), rel=1e-3, abs=1e-6)
        assert rows[model]["variant"] == model.split(".")[1]
        assert rows[model]["adapter"].startswith("paper" if model.endswith("paper") else "residual")
        assert float(rows[model]["lambda"]) == 7.0
    markdown = (out / "tables" / f"{stem}.md").read_text()
    assert "generic_one.residual" in markdown and "PSNR" in markdown and "every layer" in markdown


def test_figures_and_latent_scores(study):
    out, outcomes, _ = study
    names = [
        f"{stem}_{w}.png" for stem in ("fig5_mr_to_ct", "fig6_ct_to_mr") for w in ("brain", "bone")
    ]
    for name in [*names, "fig7_latent.png"]:
        image = np.asarray(Image.open(out / "figures" / name))
        assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0
    scores = {r["model"]: r for r in _csv(out / "tables" / "latent_separability.csv")}
    for model in ROWS:
        accuracy = float(scores[model]["probe_accuracy"])
        assert 0.0 <= accuracy <= 1.0
        assert accuracy == pytest.approx(
            outcomes[model]["separability"]["probe_accuracy"], abs=1e-4
        )


def test_ct_display_windows():
    """A brain window (level 40, width 80) shows 0..80 HU as black to white."""
    from jaxcycle.data.intensity import ct_window
    from jaxcycle.paper.study import display_window, for_display

    hu_map = ct_window(-1024.0, 3071.0)
    hu = np.array([[-1000.0, 0.0, 20.0, 40.0, 80.0, 1000.0]])
    stored = hu_map.normalise(hu)[None, ..., None]
    shown = for_display(stored, [hu_map], display_window(40.0, 80.0))
    np.testing.assert_allclose(shown[0, 0], [0, 0, 0.25, 0.5, 1, 1], atol=1e-5)
    with pytest.raises(ValueError, match="positive width"):
        display_window(40.0, 0.0)


def test_rerun_resumes_without_retraining(study):
    out, _, config = study
    done = out / "models" / "generic_one.paper" / "done.json"
    before = done.stat().st_mtime_ns
    outcomes = run_study(config, out, progress=False)
    assert done.stat().st_mtime_ns == before
    assert outcomes["generic_one.paper"]["summaries"]


def test_evaluate_command_on_a_study_run_gives_the_same_scores(study, tmp_path):
    """`jaxcycle evaluate` on one of the study's training runs reproduces its per-image CSVs."""
    from jaxcycle.cli import main

    out, _, config = study
    run = out / "models" / "generic_one.residual"
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
