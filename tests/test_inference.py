"""The one route from stored images to a generator's outputs (`inference.Translator`) and the
commands that use it: studies on RGB-saved PNGs with the 1-channel paper config and on grey
data with 3-channel networks, slices stored larger than the training crop scored at the crop
size, and `jaxcycle translate --checkpoint RUN_WORKDIR`."""

import csv
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from jaxcycle.architecture import Architecture
from jaxcycle.config import load_config
from jaxcycle.data.ingest import IngestOptions, ingest
from jaxcycle.data.phantom import write_phantom
from jaxcycle.data.store import Dataset
from jaxcycle.inference import Translator, load_run
from jaxcycle.paper.study import run_study

ROOT = Path(__file__).parents[1]
STORED, CROP = 64, 48


def _generator(input_nc, output_nc, seed=0):
    arch = Architecture("resnet", input_nc, output_nc, 8, n_blocks=1)
    variables = arch.build().init(jax.random.PRNGKey(seed), jnp.zeros((1, 32, 32, input_nc)))
    return arch, variables


def _pil_resize(plane, size):
    """Bicubic resize of one (H, W) float plane with PIL, clipped to [-1, 1]: the reference's
    test-time resize, written out independently of jaxcycle."""
    image = Image.fromarray(np.asarray(plane, np.float32), mode="F")
    return np.clip(np.asarray(image.resize((size, size), Image.Resampling.BICUBIC)), -1, 1)


def _plain(arch, variables, x):
    return np.asarray(arch.build().apply(variables, jnp.asarray(x), train=False))


def test_rgb_images_into_a_grey_generator_at_the_crop_size():
    arch, variables = _generator(1, 1)
    rgb = np.random.default_rng(0).uniform(-1, 1, (2, 40, 40, 3)).astype(np.float32)
    out = Translator(arch, variables, size=CROP)(rgb)
    grey = np.stack([_pil_resize(x.mean(axis=-1), CROP) for x in rgb])[..., None]
    expected = np.repeat(_plain(arch, variables, grey), 3, axis=-1)
    assert out.shape == (2, CROP, CROP, 3)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_grey_images_into_an_rgb_generator_padded_to_the_stride():
    arch, variables = _generator(3, 3)
    grey = np.random.default_rng(1).uniform(-1, 1, (1, 30, 34, 1)).astype(np.float32)
    out = Translator(arch, variables)(grey)
    padded = np.pad(np.repeat(grey, 3, axis=-1), ((0, 0), (0, 2), (0, 2), (0, 0)), "symmetric")
    expected = _plain(arch, variables, padded)[:, :30, :34].mean(axis=-1, keepdims=True)
    assert out.shape == grey.shape
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_bad_working_size_is_refused():
    arch, variables = _generator(1, 1)
    with pytest.raises(ValueError, match="working size must be positive"):
        Translator(arch, variables, size=0)


def _rgb_png_dataset(root: Path) -> Path:
    """Phantom slices saved as 8-bit RGB PNGs of STORED x STORED, ingested as a paired set."""
    write_phantom(root / "phantom", subjects=4, size=STORED, slices=3)
    for modality in ("mr", "ct"):
        for volume in sorted((root / "phantom" / modality).glob("*.nii.gz")):
            import nibabel as nib

            data = np.asarray(nib.load(volume).get_fdata())
            lo, hi = np.percentile(data, [0.5, 99.5]) if modality == "mr" else (-1024, 3071)
            patient = volume.name.split(".")[0]
            for s in range(data.shape[2]):
                levels = np.clip((data[:, :, s] - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8)
                out = root / "png" / modality / f"{patient}_{s}.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.repeat(levels[..., None], 3, axis=-1)).save(out)
    ingest(
        root / "ds_rgb",
        [root / "png" / "mr"],
        [root / "png" / "ct"],
        IngestOptions(
            paired=True,
            id_regex=r"(?P<patient>subject-\d+)_(?P<slice>\d+)",
            train_fraction=0.5,
        ),
    )
    return root / "ds_rgb"


def _tiny_study(dataset: Path, out: Path, *overrides: str):
    config = load_config(
        ROOT / "configs" / "study.py",
        [
            f"data.dataset={dataset}",
            f"data.load_size={CROP}",
            f"data.crop_size={CROP}",
            "model.ngf=8",
            "model.ndf=8",
            "model.n_blocks=1",
            "model.adapter_widths=(32, 32)",
            "study.models=()",
            "study.variants=()",
            "study.controls=('residual',)",
            "study.figure_slices=2",
            "study.latent_slices=4",
            "optim.n_epochs=1",
            "optim.n_epochs_decay=0",
            "train.max_steps=1",
            "train.pool_size=2",
            "data.workers=1",
            *overrides,
        ],
    )
    return run_study(config, out, progress=False), config


@pytest.fixture(scope="module")
def rgb_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("rgb")
    dataset = _rgb_png_dataset(root)
    outcomes, _ = _tiny_study(dataset, root / "study")
    return dataset, root / "study", outcomes


def test_study_on_rgb_pngs_with_the_grey_paper_config(rgb_study):
    dataset, _, outcomes = rgb_study
    data = Dataset.open(dataset)
    assert data.shape("A")[-1] == 3  # stored RGB, trained grey (configs/transfer.py)
    assert set(outcomes) == {"random.residual"}
    assert outcomes["random.residual"]["settings"]["trains"] == "adapter only"


def test_slices_stored_larger_than_the_crop_are_scored_at_the_crop(rgb_study):
    """PSNR of the stored per-image scores equals skimage's on the outputs and the references
    brought to the crop size by an independent bicubic resize."""
    dataset, out, _ = rgb_study
    row = out / "models" / "random.residual"
    outputs = np.load(row / "eval" / "study_arrays.npz")["gen_ab"]
    assert outputs.shape == (2, CROP, CROP, 3)
    _, ct = Dataset.open(dataset).paired_sources("test")
    with open(row / "eval" / "per_image_gen_ab.csv") as f:
        scores = list(csv.DictReader(f))
    for k in range(2):
        reference = ct.read([k])[0]
        assert reference.shape == (STORED, STORED, 3)
        resized = np.stack([_pil_resize(reference[..., c], CROP) for c in range(3)], axis=-1)
        expected = peak_signal_noise_ratio((resized + 1) / 2, (outputs[k] + 1) / 2, data_range=1)
        assert float(scores[k]["psnr"]) == pytest.approx(expected, rel=1e-4)


def test_translate_from_a_training_run(rgb_study, tmp_path):
    """`translate --checkpoint RUN --direction ba`: the run's CT -> MR generator at the run's
    crop size, the output resized back to the input's size and channels."""
    from jaxcycle.cli import main

    dataset, out, _ = rgb_study
    run = out / "models" / "random.residual"
    _, ct = Dataset.open(dataset).paired_sources("test")
    levels = np.round((ct.read([0])[0] + 1) / 2 * 255).astype(np.uint8)
    Image.fromarray(levels).save(tmp_path / "ct.png")
    code = main(
        ["translate", "--checkpoint", str(run), "--direction", "ba", "--output",
         str(tmp_path / "out"), "--quiet", str(tmp_path / "ct.png")]
    )  # fmt: skip
    assert code == 0
    written = np.asarray(Image.open(tmp_path / "out" / "ct.png"), np.float32) / 255 * 2 - 1

    _, networks, gen_params, _ = load_run(run)
    grey = _pil_resize((levels.astype(np.float32) / 255 * 2 - 1).mean(axis=-1), CROP)
    fake = _plain(networks.gen_ba, {"params": gen_params["gen_ba"]}, grey[None, ..., None])
    expected = _pil_resize(np.clip(fake[0, ..., 0], -1, 1), STORED)
    assert written.shape == (STORED, STORED, 3)
    np.testing.assert_allclose(written, np.repeat(expected[..., None], 3, -1), atol=1.01 * 2 / 255)


def test_study_on_grey_data_with_rgb_networks(tmp_path):
    write_phantom(tmp_path / "phantom", subjects=2, size=CROP, slices=2)
    ingest(
        tmp_path / "ds",
        [tmp_path / "phantom" / "mr"],
        [tmp_path / "phantom" / "ct"],
        IngestOptions(paired=True, train_fraction=0.5),
    )
    outcomes, _ = _tiny_study(
        tmp_path / "ds", tmp_path / "study", "data.channels_a=3", "data.channels_b=3"
    )
    summary = outcomes["random.residual"]["summaries"]["MR->CT"]
    assert np.isfinite(summary["ssim"][0]) and np.isfinite(summary["mae_hu"][0])
