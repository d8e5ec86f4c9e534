"""CycleGAN with the reference project's defaults (pytorch-CycleGAN-and-pix2pix).

    jaxcycle train --config configs/cyclegan.py --workdir runs/h2z \
        --config.data.train_a=datasets/horse2zebra/trainA \
        --config.data.train_b=datasets/horse2zebra/trainB
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0

    c.data = ml_collections.ConfigDict()
    c.data.dataset = ""  # a jaxcycle dataset (`jaxcycle data ingest`), path or kvstore URL,
    c.data.split = "train"  # and the side of its patient split to train on; or else
    c.data.train_a = ""  # a folder of domain-A images (the reference's trainA/)
    c.data.train_b = ""  # and one of domain-B images
    c.data.load_size = 286  # resize to this,
    c.data.crop_size = 256  # then random crop to this,
    c.data.flip = True  # and random horizontal flip
    c.data.channels_a = 3
    c.data.channels_b = 3
    c.data.workers = 2  # loader threads
    c.data.prefetch = 4  # batches read ahead

    c.model = ml_collections.ConfigDict()
    c.model.generator = "resnet_9blocks"  # or resnet_6blocks, unet_256, unet_128
    c.model.ngf = 64
    c.model.n_blocks = -1  # residual blocks; -1: the preset's (9 or 6)
    c.model.discriminator = "basic"  # 70x70 PatchGAN; or n_layers, pixel
    c.model.ndf = 64
    c.model.n_layers_d = 3  # for discriminator = 'n_layers'
    c.model.norm = "instance"
    c.model.use_dropout = False
    c.model.padding = "reflect"
    c.model.adapter_widths = ()  # transfer learning: new FC layers on the bottleneck
    c.model.adapter_activation = "softmax"  # softmax (the paper), relu, gelu, identity
    c.model.adapter_residual = False  # x + FC(...(x)), last layer zero: starts as pretrained
    c.model.adapter_position = -1  # after this many residual blocks; -1: after all
    c.model.init = "normal"  # normal, xavier, kaiming, orthogonal
    c.model.init_gain = 0.02

    c.objective = ml_collections.ConfigDict()
    c.objective.gan_mode = "lsgan"  # lsgan, vanilla, wgangp
    c.objective.lambda_a = 10.0  # cycle weight A -> B -> A
    c.objective.lambda_b = 10.0  # cycle weight B -> A -> B
    c.objective.lambda_identity = 0.5  # times lambda; 0 turns the identity loss off
    c.objective.lambda_gp = 10.0  # wgangp only

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 2e-4
    c.optim.beta1 = 0.5
    c.optim.beta2 = 0.999
    c.optim.n_epochs = 100  # constant rate for this many epochs,
    c.optim.n_epochs_decay = 100  # then linearly down over this many

    c.transfer = ml_collections.ConfigDict()
    c.transfer.pretrained = ""  # a published generator (`jaxcycle pretrained list`) for both
    c.transfer.checkpoint = ""  # or a params directory or reference .pth of a generator
    c.transfer.reverse = False  # start gen_ba from the pretrained model's reverse, if published
    c.transfer.freeze = "full"  # which generator parameters train: paper, decoder, full
    c.transfer.trainable = ()  # more regexes over 'gen_ab/R3/conv1/conv/kernel'-style paths

    c.train = ml_collections.ConfigDict()
    c.train.batch_size = 1  # global, over all devices and hosts
    c.train.pool_size = 50
    c.train.compute_dtype = "float32"  # or bfloat16 (float32 master weights)
    c.train.max_steps = -1  # stop early (e.g. for smoke runs); -1: the whole schedule
    c.train.log_every = 10  # steps between progress/metrics records
    c.train.sample_every = 500  # steps between sample grids
    c.train.checkpoint_every = 1000  # steps between checkpoints (and at every epoch end)
    c.train.keep_checkpoints = 3
    return c
