"""Network weights in and out, whatever their form: the one route.

A *source* of weights is a jaxcycle params directory (`checkpoints`), a reference-project
`.pth` file (read by `converters.pth` without PyTorch, mapped by the name tables of
`converters.tables`, converted in memory) or the name of a published generator
(`pretrained.download` fetches and verifies its `.pth`, which is then read like any other).
`load_variables` takes any of them; `convert_pth` and `export_pth` write params directories
and `.pth` files (`jaxcycle convert`).
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import jaxcycle
from converters import pth
from converters.tables import (
    BATCHNORM_COUNTER,
    LEAVES,
    LEGACY_INSTANCE_NORM,
    ArchitectureError,
    layer_table,
    strip_module_prefix,
)
from jaxcycle import checkpoints, pretrained
from jaxcycle.architecture import Architecture


def abstract_variables(arch: Architecture) -> dict[str, Any]:
    """Shapes and dtypes of an architecture's variables, computed without allocating them."""
    size = max(256, 2**arch.num_downs) if arch.kind == "unet" else 256
    x = jax.ShapeDtypeStruct((1, size, size, arch.input_nc), jnp.float32)
    return jax.eval_shape(arch.build().init, jax.random.key(0), x)


def _get(tree: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(tree, Mapping) or part not in tree:
            return None
        tree = tree[part]
    return tree


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        tree = tree.setdefault(part, {})
    tree[path[-1]] = value


def torch_to_flax(
    state_dict: Mapping[str, np.ndarray], arch: Architecture | None = None, source: str = "input"
) -> tuple[Architecture, dict[str, Any]]:
    """Maps a reference state_dict onto Flax variables: (architecture, variables).

    The architecture is inferred from the names and shapes unless given. Every tensor must be
    used and every Flax leaf filled, with matching shapes; otherwise `ArchitectureError`
    names the missing, unknown and misshapen tensors. `source` names the input in errors.
    """
    sd = strip_module_prefix(state_dict)
    try:
        arch = arch or Architecture.of_state_dict(sd)
    except ArchitectureError as e:
        raise ArchitectureError(f"{source}: {e}") from None
    template = abstract_variables(arch)
    variables: dict[str, Any] = {}
    used: set[str] = set()
    missing, misshapen = [], []
    for layer in layer_table(arch):
        for leaf in LEAVES[layer.kind]:
            path = (leaf.collection, *layer.flax, *leaf.flax)
            expected = _get(template, path)
            if expected is None:  # e.g. a convolution without bias
                continue
            key = f"{layer.torch}.{leaf.torch}"
            if key not in sd:
                missing.append(key)
                continue
            value = np.asarray(sd[key])
            if value.ndim == len(expected.shape):
                value = leaf.to_flax(value)
            if value.shape != expected.shape:
                misshapen.append(f"{key} {tuple(np.shape(sd[key]))}")
                continue
            _set(variables, path, value.astype(expected.dtype))
            used.add(key)
        if layer.kind == "norm":
            ignorable = (BATCHNORM_COUNTER,) if arch.norm == "batch" else LEGACY_INSTANCE_NORM
            used.update(f"{layer.torch}.{name}" for name in ignorable)
    unknown = [key for key in sd if key not in used]
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown tensors: {', '.join(unknown)}")
    if misshapen:
        problems.append(f"shapes that do not fit: {', '.join(misshapen)}")
    if problems:
        raise ArchitectureError(f"{source}: not a {arch.describe()}: " + "; ".join(problems))
    filled = jax.tree.structure(variables)
    if filled != jax.tree.structure(template):  # the table disagrees with the network
        raise AssertionError(f"layer table for {arch.kind} does not cover the Flax module")
    return arch, variables


def flax_to_torch(variables: Mapping[str, Any], arch: Architecture) -> OrderedDict:
    """Flax variables -> a state_dict that the reference model loads with `strict=True`."""
    if arch.adapter_widths:
        raise ValueError(
            "the reference architecture has no adapter (transfer-learning) layers; a generator "
            "with them cannot be written as a reference .pth"
        )
    sd: OrderedDict[str, np.ndarray] = OrderedDict()
    for layer in layer_table(arch):
        for leaf in LEAVES[layer.kind]:
            value = _get(variables, (leaf.collection, *layer.flax, *leaf.flax))
            if value is not None:
                sd[f"{layer.torch}.{leaf.torch}"] = leaf.to_torch(np.asarray(value))
        if layer.kind == "norm" and arch.norm == "batch":
            sd[f"{layer.torch}.{BATCHNORM_COUNTER}"] = np.zeros((), np.int64)
    return sd


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert_pth(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    padding: str | None = None,
    overwrite: bool = False,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, Architecture]:
    """Converts a reference `.pth` into a jaxcycle params directory; returns (path, arch).

    `padding` overrides the inferred residual-block padding ('reflect' and 'replicate' hold
    the same tensors, so a file cannot tell them apart).
    """
    src = Path(src)
    if Path(dst).exists() and not overwrite:
        raise FileExistsError(f"{dst} already exists (use --overwrite to replace it)")
    state_dict = pth.load_state_dict(src)
    arch = None
    if padding is not None:
        try:
            inferred = Architecture.of_state_dict(state_dict)
        except ArchitectureError as e:
            raise ArchitectureError(f"{src}: {e}") from None
        arch = Architecture.from_dict({**inferred.to_dict(), "padding": padding})
    arch, variables = torch_to_flax(state_dict, arch, source=str(src))
    source = {"path": str(src.absolute()), "sha256": file_sha256(src), "bytes": src.stat().st_size}
    metadata = {
        "source": source,
        "converted_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "jaxcycle_version": jaxcycle.__version__,
        **(extra or {}),
    }
    path = checkpoints.save_params(dst, variables, arch, metadata, overwrite=overwrite)
    return path, arch


def export_pth(
    src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False
) -> tuple[Path, Architecture]:
    """Writes a jaxcycle params directory as a reference `.pth` state_dict."""
    variables, arch, _ = checkpoints.load_params(src)
    pth.save_state_dict(flax_to_torch(variables, arch), dst, overwrite=overwrite)
    return Path(dst), arch


def load_variables(source: str | os.PathLike) -> tuple[dict[str, Any], Architecture]:
    """(variables, architecture) from a params directory, a reference `.pth` file or a
    published generator's name (downloaded once into the cache, then read as a `.pth`)."""
    path = Path(source)
    if path.is_dir():
        variables, arch, _ = checkpoints.load_params(path)
        return variables, arch
    if path.suffix != ".pth" or not path.is_file():
        if str(source) not in pretrained.REGISTRY:
            raise FileNotFoundError(
                f"{source}: not a params directory, a .pth file or a published model name"
            )
        path = pretrained.download(str(source))
    arch, variables = torch_to_flax(pth.load_state_dict(path), source=str(path))
    return variables, arch


def load_generator(source: str | os.PathLike) -> tuple[dict[str, Any], Architecture]:
    """`load_variables` for a generator: (variables, architecture), or a ValueError naming
    the source when it holds a discriminator."""
    variables, arch = load_variables(source)
    if not arch.is_generator:
        raise ValueError(f"{source}: a {arch.describe()}, not a generator")
    return variables, arch
