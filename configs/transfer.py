"""The paper's Algorithm 1: fine-tune a generic pretrained CycleGAN generator for brain
MR (A) <-> CT (B) translation.

    jaxcycle train --config configs/transfer.py:iphone2dslr_flower --workdir runs/flower \
        --config.data.dataset=ds

Both generators start from the named published generator (converted, channels adapted to the
grey slices), with two new fully connected layers (FC1 = FC2 = 256, softmax) on the
bottleneck; only those train. Discriminators start from scratch (none were published).
Batch size 2, learning rate 0.001, 100 + 100 epochs with linear decay, and the paper's lambda
for the model's category; the paper's objective (eq. 3) has no identity term.

Two choices the paper leaves open or states differently, made explicit here:
- GAN loss: the paper's eq. 1 is the log loss (`objective.gan_mode = "vanilla"`). This config
  keeps the least-squares loss ("lsgan") with which the reference project, and so every
  published generator, was trained (Zhu et al. state eq. 1 but train with least squares), so
  that fine-tuning continues the objective the pretrained weights were fitted to. Set
  `--config.objective.gan_mode=vanilla` for the literal eq. 1.
- Adapter: the paper's softmax after FC1 and after FC2 (`model.adapter_residual = False`)
  feeds the frozen decoder a probability vector (about 1/256 per channel at the start): the
  pretrained features no longer reach the decoder. `model.adapter_residual = True` keeps the
  same FC layers and softmax in the form x + FC2(softmax(FC1 x)), FC2 starting at zero, so
  that fine-tuning starts from the pretrained generator; the study runs both.
"""

import ml_collections

from configs import cyclegan
from jaxcycle import pretrained


def get_config(name: str = "iphone2dslr_flower") -> ml_collections.ConfigDict:
    c = cyclegan.get_config()

    model = pretrained.get(name)
    c.transfer.pretrained = model.name
    c.transfer.freeze = "paper"
    c.model.adapter_widths = (256, 256)
    c.model.adapter_activation = "softmax"
    c.model.adapter_residual = False  # the paper's literal form (see above)

    c.data.channels_a = 1  # grey MR
    c.data.channels_b = 1  # grey CT
    c.objective.lambda_a = model.lambda_cycle
    c.objective.lambda_b = model.lambda_cycle
    c.objective.lambda_identity = 0.0
    c.objective.gan_mode = "lsgan"  # the published generators' loss (see above)
    c.optim.lr = 1e-3
    c.optim.n_epochs = 100
    c.optim.n_epochs_decay = 100
    c.train.batch_size = 2
    return c
