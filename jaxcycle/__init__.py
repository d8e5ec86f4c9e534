"""jaxcycle: CycleGAN in JAX/Flax, with exact import of the reference PyTorch weights."""

__version__ = "0.1.0"
