"""The reference project's networks (pytorch-CycleGAN-and-pix2pix, models/networks.py), in
PyTorch, as the independent expectation for the parity tests. Written from the reference's
definitions: same module order (hence the same state_dict names), same bias rule (a
convolution has a bias only with instance norm), same padding layers."""

from __future__ import annotations

import functools
import itertools
import random

import torch
from torch import nn


def norm_layer(kind: str):
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if kind == "instance":
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    return lambda channels: nn.Identity()


def _use_bias(kind: str) -> bool:
    return kind == "instance"


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, padding: str, norm: str, use_dropout: bool):
        super().__init__()
        layers: list[nn.Module] = []
        norm_l, bias = norm_layer(norm), _use_bias(norm)
        for second in (False, True):
            p = 0
            if padding == "reflect":
                layers.append(nn.ReflectionPad2d(1))
            elif padding == "replicate":
                layers.append(nn.ReplicationPad2d(1))
            else:
                p = 1
            layers += [nn.Conv2d(dim, dim, 3, padding=p, bias=bias), norm_l(dim)]
            if not second:
                layers.append(nn.ReLU(True))
                if use_dropout:
                    layers.append(nn.Dropout(0.5))
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    def __init__(
        self,
        input_nc=3,
        output_nc=3,
        ngf=64,
        norm="instance",
        use_dropout=False,
        n_blocks=9,
        padding="reflect",
    ):
        super().__init__()
        norm_l, bias = norm_layer(norm), _use_bias(norm)
        model = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, 7, bias=bias),
            norm_l(ngf),
            nn.ReLU(True),
        ]
        for i in range(2):
            mult = 2**i
            model += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
                norm_l(ngf * mult * 2),
                nn.ReLU(True),
            ]
        for _ in range(n_blocks):
            model.append(ResnetBlock(ngf * 4, padding, norm, use_dropout))
        for i in range(2):
            mult = 2 ** (2 - i)
            model += [
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=bias
                ),
                norm_l(ngf * mult // 2),
                nn.ReLU(True),
            ]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x)


class UnetSkipConnectionBlock(nn.Module):
    def __init__(
        self,
        outer_nc,
        inner_nc,
        input_nc=None,
        submodule=None,
        outermost=False,
        innermost=False,
        norm="instance",
        use_dropout=False,
    ):
        super().__init__()
        self.outermost = outermost
        norm_l, bias = norm_layer(norm), _use_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)
            model = [downconv, submodule, nn.ReLU(True), upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=bias)
            model = [nn.LeakyReLU(0.2, True), downconv, nn.ReLU(True), upconv, norm_l(outer_nc)]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=bias)
            model = [
                nn.LeakyReLU(0.2, True),
                downconv,
                norm_l(inner_nc),
                submodule,
                nn.ReLU(True),
                upconv,
                norm_l(outer_nc),
            ]
            if use_dropout:
                model.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*model)

    def forward(self, x):
        return self.model(x) if self.outermost else torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    def __init__(
        self, input_nc=3, output_nc=3, num_downs=8, ngf=64, norm="instance", use_dropout=False
    ):
        super().__init__()
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(
                ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout
            )
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(
            output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm=norm
        )

    def forward(self, x):
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    def __init__(self, input_nc=3, ndf=64, n_layers=3, norm="instance"):
        super().__init__()
        norm_l, bias = norm_layer(norm), _use_bias(norm)
        seq = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            seq += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=bias),
                norm_l(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        seq += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=bias),
            norm_l(ndf * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1),
        ]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


class PixelDiscriminator(nn.Module):
    def __init__(self, input_nc=3, ndf=64, norm="instance"):
        super().__init__()
        norm_l, bias = norm_layer(norm), _use_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias),
            norm_l(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias),
        )

    def forward(self, x):
        return self.net(x)


def build(arch) -> nn.Module:
    """The reference network for a `jaxcycle.architecture.Architecture`."""
    if arch.kind == "resnet":
        return ResnetGenerator(
            arch.input_nc,
            arch.output_nc,
            arch.width,
            arch.norm,
            arch.use_dropout,
            arch.n_blocks,
            arch.padding,
        )
    if arch.kind == "unet":
        return UnetGenerator(
            arch.input_nc, arch.output_nc, arch.num_downs, arch.width, arch.norm, arch.use_dropout
        )
    if arch.kind == "nlayer":
        return NLayerDiscriminator(arch.input_nc, arch.width, arch.n_layers, arch.norm)
    return PixelDiscriminator(arch.input_nc, arch.width, arch.norm)


def randomize(model: nn.Module, seed: int = 0, calibrate: torch.Tensor | None = None) -> nn.Module:
    """Non-trivial weights: every parameter drawn at random, in eval mode.

    Batch-norm statistics are random too, or, given a `calibrate` batch, the statistics of
    that batch (as a trained network's would be: activations stay in a sane range).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype != torch.float32:
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("weight") and t.dim() == 1:
                t.copy_(1.0 + 0.3 * torch.randn(t.shape, generator=g))
            else:
                fan_in = t[0].numel() if t.dim() > 1 else 1
                t.copy_(torch.randn(t.shape, generator=g) / fan_in**0.5)
    if calibrate is not None:
        batch_norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        for m in batch_norms:
            m.momentum = None  # a plain average over the calibration passes
        with torch.no_grad():
            model.train()(calibrate)
    return model.eval()


class ImagePool:
    """The reference's image pool, with Python's `random` as its source of randomness."""

    def __init__(self, size: int, rng=None):
        self.size, self.images, self.rng = size, [], rng or random.Random(0)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images:
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif self.rng.uniform(0, 1) > 0.5:
                i = self.rng.randint(0, self.size - 1)
                out.append(self.images[i].clone())
                self.images[i] = image
            else:
                out.append(image)
        return torch.cat(out, 0)


class GANLoss(nn.Module):
    """The reference's GANLoss: lsgan (MSE), vanilla (BCE with logits), wgangp (+-mean)."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode
        self.loss = {"lsgan": nn.MSELoss(), "vanilla": nn.BCEWithLogitsLoss()}.get(mode)

    def forward(self, prediction, target_is_real: bool):
        if self.mode == "wgangp":
            return -prediction.mean() if target_is_real else prediction.mean()
        target = torch.full_like(prediction, 1.0 if target_is_real else 0.0)
        return self.loss(prediction, target)


class CycleGAN:
    """The reference CycleGAN iteration (`CycleGANModel.optimize_parameters`), in the
    reference's names: G_A: A -> B, G_B: B -> A, D_A judges B images, D_B judges A images."""

    def __init__(
        self,
        G_A,
        G_B,
        D_A,
        D_B,
        gan_mode="lsgan",
        lambda_A=10.0,
        lambda_B=10.0,
        lambda_identity=0.5,
        lr=2e-4,
        beta1=0.5,
        pool_size=50,
    ):
        self.G_A, self.G_B, self.D_A, self.D_B = G_A, G_B, D_A, D_B
        self.gan = GANLoss(gan_mode)
        self.l1 = nn.L1Loss()
        self.lambda_A, self.lambda_B, self.lambda_idt = lambda_A, lambda_B, lambda_identity
        self.opt_G = torch.optim.Adam(
            itertools.chain(G_A.parameters(), G_B.parameters()), lr=lr, betas=(beta1, 0.999)
        )
        self.opt_D = torch.optim.Adam(
            itertools.chain(D_A.parameters(), D_B.parameters()), lr=lr, betas=(beta1, 0.999)
        )
        self.pool_A, self.pool_B = ImagePool(pool_size), ImagePool(pool_size)

    def step(self, real_A, real_B) -> dict[str, float]:
        for net in (self.G_A, self.G_B, self.D_A, self.D_B):
            net.train()
        fake_B = self.G_A(real_A)
        rec_A = self.G_B(fake_B)
        fake_A = self.G_B(real_B)
        rec_B = self.G_A(fake_A)
        # Generators, discriminators fixed.
        for p in itertools.chain(self.D_A.parameters(), self.D_B.parameters()):
            p.requires_grad_(False)
        self.opt_G.zero_grad()
        losses = {}
        if self.lambda_idt > 0:
            losses["idt_b"] = self.l1(self.G_A(real_B), real_B) * self.lambda_B * self.lambda_idt
            losses["idt_a"] = self.l1(self.G_B(real_A), real_A) * self.lambda_A * self.lambda_idt
        losses["G_ab"] = self.gan(self.D_A(fake_B), True)
        losses["G_ba"] = self.gan(self.D_B(fake_A), True)
        losses["cycle_a"] = self.l1(rec_A, real_A) * self.lambda_A
        losses["cycle_b"] = self.l1(rec_B, real_B) * self.lambda_B
        loss_G = sum(losses.values())
        loss_G.backward()
        self.opt_G.step()
        # Discriminators.
        for p in itertools.chain(self.D_A.parameters(), self.D_B.parameters()):
            p.requires_grad_(True)
        self.opt_D.zero_grad()
        fake_B = self.pool_B.query(fake_B)
        loss_D_A = 0.5 * (
            self.gan(self.D_A(real_B), True) + self.gan(self.D_A(fake_B.detach()), False)
        )
        loss_D_A.backward()
        fake_A = self.pool_A.query(fake_A)
        loss_D_B = 0.5 * (
            self.gan(self.D_B(real_A), True) + self.gan(self.D_B(fake_A.detach()), False)
        )
        loss_D_B.backward()
        self.opt_D.step()
        out = {k: float(v.detach()) for k, v in losses.items()}
        out.update(
            loss_G=float(loss_G.detach()),
            disc_b=float(loss_D_A.detach()),
            disc_a=float(loss_D_B.detach()),
        )
        return out
