"""The paper's study: Algorithm 1 (configs/transfer.py) for each of the 18 published
generators, plus a from-scratch control.

    jaxcycle study --config configs/study.py --workdir runs/study --config.data.dataset=ds
"""

import importlib.util
from pathlib import Path

import ml_collections

from jaxcycle import pretrained


def get_config() -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location(
        "_transfer_base", Path(__file__).with_name("transfer.py")
    )
    base = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(base)
    c = base.get_config()
    c.study = ml_collections.ConfigDict()
    c.study.models = tuple(pretrained.REGISTRY)  # all 18
    c.study.scratch = True  # add the from-scratch control row
    c.study.checkpoints = ml_collections.ConfigDict()  # extra rows: name -> params dir or .pth
    c.study.figure_slices = 4  # test slices in figures 5 and 6
    c.study.latent_slices = 64  # test slices per modality in figure 7
    return c
