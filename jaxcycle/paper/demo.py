"""`jaxcycle demo`: the study at small scale on embedded data, in minutes on a CPU.

1. Data: brain-like MR/CT phantom volumes (`jaxcycle data phantom`), ingested into a paired
   dataset with a 70/30 patient split.
2. Generic pretrained weights: the published generators are tried first. Without network,
   a small generic CycleGAN is trained on natural photographs that scikit-image ships
   (colour photos <-> grey textures), its two generators exported in the reference `.pth`
   format and imported back through the converter: the same path a published file takes.
3. The study (`jaxcycle.paper.study`): the generic generator fine-tuned in the study's variants
   (the paper's adapter; a residual adapter that starts as the pretrained generator; full
   fine-tuning) beside the same variants from random weights, scored in both directions,
   with tables, figures and the key numbers printed at the end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image
from skimage.util import img_as_ubyte

import configs.cyclegan
import configs.study
from converters import pth
from jaxcycle import cyclegan, pretrained
from jaxcycle.data.ingest import IngestOptions, ingest
from jaxcycle.data.phantom import write_phantom
from jaxcycle.paper.study import run_study
from jaxcycle.train import to_host, train
from jaxcycle.weights import flax_to_torch

PUBLISHED = "iphone2dslr_flower"
# scikit-image's bundled pictures, none of them medical.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "colorwheel", "logo")
TEXTURES = ("camera", "moon", "coins", "page", "text", "brick", "grass", "gravel", "clock", "horse")


def write_photo_crops(
    out: Path, count: int = 48, size: int = 64, seed: int = 0
) -> tuple[Path, Path]:
    """Random crops of scikit-image's bundled photographs: colour photos (A), grey textures (B)."""

    rng = np.random.default_rng(seed)
    folders = []
    for domain, names in (("photos", PHOTOS), ("textures", TEXTURES)):
        folder = out / domain
        folder.mkdir(parents=True, exist_ok=True)
        images = []
        for name in names:
            image = img_as_ubyte(np.asarray(getattr(skimage.data, name)()))
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=-1)
            images.append(image[..., :3])
        for i in range(count):
            image = images[i % len(images)]
            scale = rng.uniform(0.15, 0.4)
            side = max(size, int(min(image.shape[:2]) * scale))
            y = rng.integers(0, image.shape[0] - side + 1)
            x = rng.integers(0, image.shape[1] - side + 1)
            crop = Image.fromarray(image[y : y + side, x : x + side]).resize(
                (size, size), Image.Resampling.BICUBIC
            )
            crop.save(folder / f"{i:03d}.png")
        folders.append(folder)
    return folders[0], folders[1]


def train_generic_models(workdir: Path, scale: DemoScale, progress: bool) -> dict[str, Path]:
    """Trains a small CycleGAN on photographs and exports both generators as reference .pth."""
    photos, textures = write_photo_crops(workdir / "photos", size=scale.size)
    config = configs.cyclegan.get_config()
    config.data.train_a, config.data.train_b = str(photos), str(textures)
    config.data.load_size, config.data.crop_size = scale.size + scale.size // 8, scale.size
    config.model.ngf = config.model.ndf = scale.width
    config.model.n_blocks = scale.blocks
    config.optim.n_epochs, config.optim.n_epochs_decay = 10**6, 0
    config.train.batch_size, config.train.max_steps = 4, scale.generic_steps
    config.train.sample_every = scale.generic_steps
    config.train.checkpoint_every = scale.generic_steps
    config.train.log_every = 10
    state = train(config, workdir / "run", progress=progress)
    networks, params = cyclegan.Networks.from_config(config), to_host(state.gen_params)
    files = {}
    for name, gen in (("photo2texture_demo", "gen_ab"), ("texture2photo_demo", "gen_ba")):
        path = workdir / f"{name}.pth"
        if not path.exists():
            state_dict = flax_to_torch({"params": params[gen]}, getattr(networks, gen))
            pth.save_state_dict(state_dict, path)
        files[name] = path
    return files


def make_dataset(workdir: Path, subjects: int, size: int, slices: int) -> Path:
    """Phantom volumes ingested into a paired MR (A) / CT (B) dataset."""
    dataset = workdir / "dataset"
    if not dataset.exists():
        phantom = workdir / "phantom"
        if not phantom.exists():
            write_phantom(phantom, subjects=subjects, size=size, slices=slices)
        ingest(dataset, [phantom / "mr"], [phantom / "ct"], IngestOptions(paired=True))
    return dataset


@dataclass(frozen=True)
class DemoScale:
    """How big the demo is: phantom data, generic pretraining and fine-tuning.

    The defaults take about 6 minutes on 2 CPU cores; tests run it much smaller.
    """

    subjects: int = 10  # phantom patients (70/30 split)
    size: int = 64  # slice side, also the training crop
    slices: int = 12  # axial slices per patient
    epochs: int = 4  # fine-tuning epochs of each study row (half constant, half decaying)
    generic_steps: int = 300  # steps of the generic CycleGAN, when it is trained here
    width: int = 16  # ngf = ndf of the generic networks (and so of the study's)
    blocks: int = 3  # their residual blocks


def run_demo(
    workdir: str | os.PathLike,
    scale: DemoScale = DemoScale(),
    offline: bool = False,
    progress: bool = True,
) -> dict:
    """Runs the whole demo in `workdir` (resumable); returns the study's outcomes."""
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    dataset = make_dataset(workdir, subjects=scale.subjects, size=scale.size, slices=scale.slices)

    config = configs.study.get_config()
    config.data.dataset = str(dataset)
    config.data.load_size = config.data.crop_size = scale.size
    config.optim.n_epochs = scale.epochs // 2
    config.optim.n_epochs_decay = scale.epochs - scale.epochs // 2
    config.train.sample_every = 10**6
    config.train.log_every = 5
    config.study.figure_slices = 4
    config.study.latent_slices = 48

    weights_note = None
    if not offline:
        try:
            pretrained.download(PUBLISHED, timeout=5, progress=progress)
            config.study.models = (PUBLISHED,)
            weights_note = f"the published {PUBLISHED} generator (ResNet-9, ngf 64)"
        except pretrained.PretrainedError as e:
            print(f"published weights unavailable ({e.__class__.__name__}): {str(e)[:160]}...")
    if weights_note is None:
        print(
            "training a small generic CycleGAN on scikit-image's photographs instead "
            "(colour photos <-> grey textures), exported to .pth and imported back"
        )
        files = train_generic_models(workdir / "generic", scale, progress)
        generic = next(iter(files))  # photos -> textures, for both directions
        config.study.models = (generic,)
        config.study.checkpoints = {generic: str(files[generic])}
        config.model.ngf = config.model.ndf = scale.width
        config.model.n_blocks = scale.blocks
        # The FC layers as wide as the bottleneck (4 * ngf), as FC = 256 is for ngf 64.
        config.model.adapter_widths = (4 * scale.width, 4 * scale.width)
        weights_note = (
            f"a generic generator trained here on scikit-image photographs ({generic}), "
            "NOT a published one"
        )
    outcomes = run_study(config, workdir / "study", progress=progress)
    (workdir / "WEIGHTS.txt").write_text(f"Pretrained weights used: {weights_note}\n")
    print(f"\npretrained weights used: {weights_note}")
    return outcomes
