"""The paper's study: Algorithm 1 (configs/transfer.py) for each of the 18 published
generators, literally and in variants that start as the pretrained generator, beside the same
variants from random weights (a random frozen trunk; CycleGAN from scratch): see
`jaxcycle.paper.study`.

    jaxcycle study --config configs/study.py --workdir runs/study --config.data.dataset=ds
"""

import ml_collections

from configs import transfer
from jaxcycle import pretrained


def get_config() -> ml_collections.ConfigDict:
    c = transfer.get_config()
    c.study = ml_collections.ConfigDict()
    c.study.models = tuple(pretrained.REGISTRY)  # all 18
    # How each model is fine-tuned (jaxcycle.paper.study.VARIANTS):
    # paper, residual, decoder, finetune.
    c.study.variants = ("paper", "residual", "finetune")
    c.study.controls = ("residual", "finetune")  # variants also run from random weights
    c.study.lambda_cycle = 10.0  # lambda of rows without a published category
    c.study.checkpoints = ml_collections.ConfigDict()  # more models: name -> params dir or .pth
    c.study.figure_slices = 4  # test slices in figures 5 and 6
    c.study.latent_slices = 64  # test slices per modality in figure 7
    # CT display windows of figures 5 and 6: name -> (level, width) in HU.
    c.study.display = ml_collections.ConfigDict({"brain": (40.0, 80.0), "bone": (500.0, 2000.0)})
    return c
