"""CycleGAN generators and discriminators as Flax modules, in NHWC.

Each network computes what its counterpart in the reference PyTorch project
(pytorch-CycleGAN-and-pix2pix, `models/networks.py`) computes, so imported weights give the
reference outputs. The layers are named after the CycleGAN paper's notation (Zhu et al. 2017,
appendix 7.2), with ngf = 64:

    ResNet generator   c7s1-64, d128, d256, R256 x n_blocks, u128, u64, c7s1-3
    PatchGAN           C64-C128-C256-C512, then a 1-channel 4x4 convolution

and named `c7s1_in`, `d1`, `d2`, `R1`..`Rn`, `u1`, `u2`, `c7s1_out` and `C1`..`Cn`, `out` in
the parameter tree. As in the reference, convolutions carry a bias only with instance norm
(with batch norm the norm's offset plays that part; with no norm the reference omits it too),
except the first and last layers of the discriminators and of the U-Net, which always do.

`norm` is 'instance' (the reference default for CycleGAN: no learned scale or offset, no
running statistics), 'batch' (running statistics in the 'batch_stats' collection, used when
`train=False`) or 'none'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxcycle import ops

NORMS = ("instance", "batch", "none")
PADDINGS = ("reflect", "replicate", "zero")
INITS = ("normal", "xavier", "kaiming", "orthogonal")

Initializer = Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]


def init_params(module: nn.Module, key: jax.Array, image_shape: tuple[int, ...]) -> Any:
    """Fresh parameters of `module` for images of `image_shape` (H, W, C), drawn from `key`.

    Initialising runs the network once to create them and keeps only the parameters, so that
    pass is traced with the plain ops: the same parameters, traced (and compiled, under jit)
    far quicker than with the CPU formulations."""
    with ops.fast_formulations(False):
        return module.init(key, jnp.zeros((1, *image_shape), jnp.float32))["params"]


def weight_init(kind: str = "normal", gain: float = 0.02, transposed: bool = False) -> Initializer:
    """The reference's `init_weights` for a (kh, kw, in, out) kernel.

    'normal': N(0, gain); 'xavier': xavier_normal with `gain`; 'kaiming': kaiming_normal
    (a=0, fan_in); 'orthogonal': orthogonal with `gain`. Fans are PyTorch's: a transposed
    convolution's weight is (in, out, kh, kw) there, so its fan-in is out * kh * kw.
    """
    in_axis, out_axis = (-1, -2) if transposed else (-2, -1)
    if kind == "normal":
        return nn.initializers.normal(stddev=gain)
    if kind == "xavier":
        return nn.initializers.variance_scaling(
            gain**2, "fan_avg", "normal", in_axis=in_axis, out_axis=out_axis
        )
    if kind == "kaiming":
        return nn.initializers.variance_scaling(
            2.0, "fan_in", "normal", in_axis=in_axis, out_axis=out_axis
        )
    if kind == "orthogonal":
        # torch orthogonalises the rows of weight.view(size(0), -1): size(0) is out channels
        # for a convolution, in channels for a transposed one.
        return nn.initializers.orthogonal(scale=gain, column_axis=-2 if transposed else -1)
    raise ValueError(f"unknown init {kind!r}; expected one of {INITS}")


def _scale_init(gain: float) -> Initializer:
    """BatchNorm scale ~ N(1, gain), as the reference initialises `BatchNorm2d.weight`."""

    def init(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype = jnp.float32) -> jax.Array:
        return 1.0 + gain * jax.random.normal(key, shape, dtype)

    return init


@dataclass(frozen=True)
class Init:
    """Weight initialisation shared by every layer of a network."""

    kind: str = "normal"
    gain: float = 0.02

    def __post_init__(self) -> None:
        if self.kind not in INITS:
            raise ValueError(f"unknown init {self.kind!r}; expected one of {INITS}")


def _add_bias(layer: nn.Module, y: jax.Array) -> jax.Array:
    """Adds a layer's bias, if it has one.

    A bias that an instance norm follows is removed by the norm's mean subtraction, so the
    function does not depend on it and its true gradient is zero. Such a layer
    (`bias_cancelled`) keeps the parameter, for checkpoint compatibility with the reference,
    but does not add it: its gradient is then exactly zero instead of rounding noise, which
    Adam would otherwise turn into steps of +-lr.
    """
    if layer.use_bias:
        bias = layer.param("bias", nn.initializers.zeros, (layer.features,))
        if not layer.bias_cancelled:
            y = y + bias.astype(y.dtype)
    return y


class Conv(nn.Module):
    """`nn.Conv2d` preceded by its padding: square kernel, (kh, kw, in, out) weights."""

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    pad_mode: str = "zero"
    use_bias: bool = True
    init_scheme: Init = field(default_factory=Init)
    bias_cancelled: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param(
            "kernel",
            weight_init(self.init_scheme.kind, self.init_scheme.gain),
            (k, k, x.shape[-1], self.features),
        )
        y = ops.conv2d_padded(x, kernel.astype(x.dtype), self.stride, self.padding, self.pad_mode)
        return _add_bias(self, y)


class ConvTranspose(nn.Module):
    """`nn.ConvTranspose2d`: weights (kh, kw, in, out), taps in PyTorch's order."""

    features: int
    kernel_size: int
    stride: int = 2
    padding: int = 1
    output_padding: int = 0
    use_bias: bool = True
    init_scheme: Init = field(default_factory=Init)
    bias_cancelled: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.kernel_size
        kernel = self.param(
            "kernel",
            weight_init(self.init_scheme.kind, self.init_scheme.gain, transposed=True),
            (k, k, x.shape[-1], self.features),
        )
        y = ops.conv_transpose2d(
            x, kernel.astype(x.dtype), self.stride, self.padding, self.output_padding
        )
        return _add_bias(self, y)


class Norm(nn.Module):
    """Instance, batch or no normalisation, as the reference's `get_norm_layer`."""

    kind: str = "instance"
    init_scheme: Init = field(default_factory=Init)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.kind == "instance":
            return ops.instance_norm(x)
        if self.kind == "batch":
            return nn.BatchNorm(
                use_running_average=not train,
                momentum=0.9,  # PyTorch's momentum 0.1
                epsilon=1e-5,
                scale_init=_scale_init(self.init_scheme.gain),
                name="bn",
            )(x)
        if self.kind == "none":
            return x
        raise ValueError(f"unknown norm {self.kind!r}; expected one of {NORMS}")


def _relu(x: jax.Array) -> jax.Array:
    return nn.relu(x)


def _leaky_relu(x: jax.Array) -> jax.Array:
    return nn.leaky_relu(x, 0.2)


class ConvNormAct(nn.Module):
    """Convolution (plain or transposed), normalisation, activation: the paper's layer unit."""

    features: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    pad_mode: str = "zero"
    norm: str = "instance"
    act: Callable[[jax.Array], jax.Array] | None = _relu
    transposed: bool = False
    output_padding: int = 0
    init_scheme: Init = field(default_factory=Init)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        use_bias = cancelled = self.norm == "instance"
        if self.transposed:
            x = ConvTranspose(
                self.features,
                self.kernel_size,
                self.stride,
                self.padding,
                self.output_padding,
                use_bias,
                self.init_scheme,
                bias_cancelled=cancelled,
                name="conv",
            )(x)
        else:
            x = Conv(
                self.features,
                self.kernel_size,
                self.stride,
                self.padding,
                self.pad_mode,
                use_bias,
                self.init_scheme,
                bias_cancelled=cancelled,
                name="conv",
            )(x)
        x = Norm(self.norm, self.init_scheme, name="norm")(x, train)
        return self.act(x) if self.act is not None else x


class ResnetBlock(nn.Module):
    """Rk: x + [pad, conv3x3, norm, ReLU, (dropout), pad, conv3x3, norm](x)."""

    padding: str = "reflect"
    norm: str = "instance"
    use_dropout: bool = False
    init_scheme: Init = field(default_factory=Init)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        dim = x.shape[-1]
        y = ConvNormAct(
            dim, 3, 1, 1, self.padding, self.norm, init_scheme=self.init_scheme, name="conv1"
        )(x, train)
        if self.use_dropout:
            y = nn.Dropout(0.5, deterministic=not train)(y)
        y = ConvNormAct(
            dim,
            3,
            1,
            1,
            self.padding,
            self.norm,
            act=None,
            init_scheme=self.init_scheme,
            name="conv2",
        )(y, train)
        return x + y


ADAPTER_ACTIVATIONS = {
    "softmax": lambda x: nn.softmax(x, axis=-1),  # the paper's choice
    "relu": nn.relu,
    "gelu": nn.gelu,
    "identity": lambda x: x,
}


class Adapter(nn.Module):
    """New fully connected layers FC1, FC2, ... applied to every pixel of a feature map (1x1
    convolutions), for transfer learning (the paper's Algorithm 1: FC1 = FC2 = 256, softmax).

    Plain: x -> act(FC1 x) -> act(FC2 ...). Residual: x + FCn(act(... act(FC1 x))), the last
    layer initialised to zero, so that before training the adapted network computes exactly
    what the pretrained one did. The last width must equal the input's channel count.
    """

    widths: tuple[int, ...] = (256, 256)
    activation: str = "softmax"
    residual: bool = False
    init_scheme: Init = field(default_factory=Init)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.activation not in ADAPTER_ACTIVATIONS:
            raise ValueError(
                f"unknown adapter activation {self.activation!r}; "
                f"expected one of {sorted(ADAPTER_ACTIVATIONS)}"
            )
        if self.widths[-1] != x.shape[-1]:
            raise ValueError(
                f"the adapter's last width {self.widths[-1]} must equal the {x.shape[-1]} "
                "channels it feeds back into the network"
            )
        act = ADAPTER_ACTIVATIONS[self.activation]
        h = x
        for i, width in enumerate(self.widths):
            zero_last = self.residual and i == len(self.widths) - 1
            kernel_init = (
                nn.initializers.zeros
                if zero_last
                else weight_init(self.init_scheme.kind, self.init_scheme.gain)
            )
            h = nn.Dense(width, kernel_init=kernel_init, name=f"fc{i + 1}")(h.astype(x.dtype))
            if not zero_last:
                h = act(h)
        return x + h if self.residual else h


class ResnetGenerator(nn.Module):
    """The CycleGAN ResNet generator: c7s1-64, d128, d256, R256 x n_blocks, u128, u64, c7s1-3.

    The input channel count is taken from the input. `padding` applies inside the residual
    blocks, as in the reference; the 7x7 layers always reflect-pad.
    """

    output_nc: int = 3
    ngf: int = 64
    n_blocks: int = 9
    norm: str = "instance"
    use_dropout: bool = False
    padding: str = "reflect"
    init_scheme: Init = field(default_factory=Init)
    adapter_widths: tuple[int, ...] = ()  # transfer learning: FC layers on the bottleneck,
    adapter_activation: str = "softmax"
    adapter_residual: bool = False
    adapter_position: int = -1  # after this many residual blocks; -1: after all of them

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        ngf, norm, init = self.ngf, self.norm, self.init_scheme
        position = self.n_blocks if self.adapter_position < 0 else self.adapter_position
        if not 0 <= position <= self.n_blocks:
            raise ValueError(f"adapter position {position} outside 0..{self.n_blocks}")
        x = ConvNormAct(ngf, 7, 1, 3, "reflect", norm, init_scheme=init, name="c7s1_in")(x, train)
        x = ConvNormAct(2 * ngf, 3, 2, 1, "zero", norm, init_scheme=init, name="d1")(x, train)
        x = ConvNormAct(4 * ngf, 3, 2, 1, "zero", norm, init_scheme=init, name="d2")(x, train)
        blocks = [
            ResnetBlock(self.padding, norm, self.use_dropout, init, name=f"R{i + 1}")
            for i in range(self.n_blocks)
        ]
        x = self._residual_blocks(blocks[:position], x, train)
        if self.adapter_widths:
            x = Adapter(
                self.adapter_widths,
                self.adapter_activation,
                self.adapter_residual,
                init,
                name="adapter",
            )(x)
        x = self._residual_blocks(blocks[position:], x, train)
        # The bottleneck features, for latent-space plots: apply(..., mutable="intermediates").
        self.sow("intermediates", "bottleneck", x)
        for name, features in (("u1", 2 * ngf), ("u2", ngf)):
            x = ConvNormAct(
                features,
                3,
                2,
                1,
                norm=norm,
                transposed=True,
                output_padding=1,
                init_scheme=init,
                name=name,
            )(x, train)
        x = Conv(self.output_nc, 7, 1, 3, "reflect", True, init, name="c7s1_out")(x)
        return jnp.tanh(x)

    def _residual_blocks(self, blocks: list[ResnetBlock], x: jax.Array, train: bool) -> jax.Array:
        """`blocks` applied in order. Identical blocks, so they run as one `lax.scan` over
        their stacked parameters: the same operations on the same values, traced and compiled
        once rather than once per block (a ninth of the trunk's program; see
        `benchmarks/results/cpu_formulations.md`). While initialising (which creates the
        parameters) and with batch norm (whose running statistics the blocks update) they are
        applied one by one."""
        if len(blocks) < 2 or self.is_initializing() or self.norm == "batch":
            for block in blocks:
                x = block(x, train)
            return x
        stacked = jax.tree.map(
            lambda *leaves: jnp.stack(leaves), *(self.variables["params"][b.name] for b in blocks)
        )
        block = blocks[0].clone(parent=None, name=None)
        dropout = train and self.use_dropout
        key = self.make_rng("dropout") if dropout else None

        def step(h: jax.Array, params_and_index: tuple) -> tuple[jax.Array, None]:
            params, i = params_and_index
            rngs = {"dropout": jax.random.fold_in(key, i)} if dropout else None
            return block.apply({"params": params}, h, train, rngs=rngs), None

        return jax.lax.scan(step, x, (stacked, jnp.arange(len(blocks))))[0]


class UnetBlock(nn.Module):
    """One level of the U-Net: x -> [x, up(inner(down(x)))], levels counted from the outside.

    Level 0 (outermost) returns the output image itself; the innermost level has no inner
    block. Channel widths follow the reference: level l works with ngf * min(2**l, 8)
    features inside.
    """

    level: int
    num_downs: int
    outer_nc: int
    ngf: int = 64
    norm: str = "instance"
    use_dropout: bool = False
    init_scheme: Init = field(default_factory=Init)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        inner_nc = self.ngf * min(2**self.level, 8)
        outermost = self.level == 0
        innermost = self.level == self.num_downs - 1
        use_bias = self.norm == "instance"
        init = self.init_scheme

        y = x if outermost else _leaky_relu(x)
        middle = not (outermost or innermost)
        y = Conv(
            inner_nc,
            4,
            2,
            1,
            "zero",
            use_bias,
            init,
            bias_cancelled=middle and use_bias,
            name="down",
        )(y)
        if middle:
            y = Norm(self.norm, init, name="down_norm")(y, train)
        if not innermost:
            y = UnetBlock(
                self.level + 1,
                self.num_downs,
                inner_nc,
                self.ngf,
                self.norm,
                self.use_dropout,
                init,
                name="inner",
            )(y, train)
        y = nn.relu(y)
        y = ConvTranspose(
            self.outer_nc,
            4,
            2,
            1,
            0,
            use_bias or outermost,
            init,
            bias_cancelled=use_bias and not outermost,
            name="up",
        )(y)
        if outermost:
            return jnp.tanh(y)
        y = Norm(self.norm, init, name="up_norm")(y, train)
        if self.use_dropout and 4 <= self.level < self.num_downs - 1:
            y = nn.Dropout(0.5, deterministic=not train)(y)
        return jnp.concatenate([x, y], axis=-1)


class UnetGenerator(nn.Module):
    """The pix2pix U-Net: `num_downs` stride-2 levels (7 for 128x128, 8 for 256x256)."""

    output_nc: int = 3
    num_downs: int = 8
    ngf: int = 64
    norm: str = "instance"
    use_dropout: bool = False
    init_scheme: Init = field(default_factory=Init)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        return UnetBlock(
            0,
            self.num_downs,
            self.output_nc,
            self.ngf,
            self.norm,
            self.use_dropout,
            self.init_scheme,
            name="outer",
        )(x, train)


class NLayerDiscriminator(nn.Module):
    """The PatchGAN: C64-C128-C256-C512 (for n_layers=3, a 70x70 receptive field), then a
    1-channel 4x4 convolution. Ck is a 4x4 convolution, norm and LeakyReLU(0.2); C1 has no
    norm; the last Ck has stride 1, the others stride 2."""

    ndf: int = 64
    n_layers: int = 3
    norm: str = "instance"
    init_scheme: Init = field(default_factory=Init)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = _leaky_relu(Conv(self.ndf, 4, 2, 1, init_scheme=self.init_scheme, name="C1")(x))
        for n in range(1, self.n_layers + 1):
            stride = 2 if n < self.n_layers else 1
            x = ConvNormAct(
                self.ndf * min(2**n, 8),
                4,
                stride,
                1,
                norm=self.norm,
                act=_leaky_relu,
                init_scheme=self.init_scheme,
                name=f"C{n + 1}",
            )(x, train)
        return Conv(1, 4, 1, 1, init_scheme=self.init_scheme, name="out")(x)


class PixelDiscriminator(nn.Module):
    """The 1x1 PixelGAN: conv1x1-ndf, LeakyReLU, conv1x1-2ndf, norm, LeakyReLU, conv1x1-1."""

    ndf: int = 64
    norm: str = "instance"
    init_scheme: Init = field(default_factory=Init)

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = _leaky_relu(Conv(self.ndf, 1, init_scheme=self.init_scheme, name="C1")(x))
        x = ConvNormAct(
            2 * self.ndf,
            1,
            norm=self.norm,
            act=_leaky_relu,
            init_scheme=self.init_scheme,
            name="C2",
        )(x, train)
        return Conv(
            1, 1, use_bias=self.norm == "instance", init_scheme=self.init_scheme, name="out"
        )(x)
