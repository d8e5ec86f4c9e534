"""Network variables on disk: an Orbax checkpoint plus a small JSON metadata file.

A params directory holds

    variables/      Orbax checkpoint of {'params': ..., 'batch_stats': ...}
    jaxcycle.json   {"format": ..., "architecture": {...}, "source": {...}, ...}

and is written atomically: into a temporary sibling first, renamed into place when whole,
and never over an existing directory unless asked to.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from jaxcycle.architecture import Architecture

FORMAT = "jaxcycle.params/1"
METADATA_FILE = "jaxcycle.json"
VARIABLES_DIR = "variables"


class CheckpointError(ValueError):
    """A params directory that is missing, incomplete or not jaxcycle's."""


def save_params(
    directory: str | os.PathLike,
    variables: dict[str, Any],
    architecture: Architecture,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Writes `variables` and their architecture to `directory`; returns its path."""
    directory = Path(directory).absolute()
    if directory.exists() and not overwrite:
        raise FileExistsError(f"{directory} already exists (pass overwrite=True to replace it)")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        tree = jax.tree.map(np.asarray, dict(variables))
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(tmp / VARIABLES_DIR, tree)
        metadata = {"format": FORMAT, "architecture": architecture.to_dict(), **(extra or {})}
        (tmp / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def read_metadata(directory: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata of a params directory, checked for format."""
    path = Path(directory) / METADATA_FILE
    if not Path(directory).is_dir():
        raise CheckpointError(f"{directory}: no such params directory")
    try:
        metadata = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(
            f"{directory}: not a jaxcycle params directory (no {METADATA_FILE}); "
            "make one with `jaxcycle convert FILE.pth DIR`"
        ) from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: corrupt metadata ({e})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown format {metadata.get('format')!r}")
    return metadata


def load_params(directory: str | os.PathLike) -> tuple[dict[str, Any], Architecture, dict]:
    """Reads a params directory: (variables as NumPy arrays, architecture, metadata)."""
    metadata = read_metadata(directory)
    architecture = Architecture.from_dict(metadata["architecture"])
    path = Path(directory).absolute() / VARIABLES_DIR
    if not path.is_dir():
        raise CheckpointError(f"{directory}: missing {VARIABLES_DIR}/ (incomplete copy?)")
    with ocp.StandardCheckpointer() as checkpointer:
        variables = checkpointer.restore(path)
    return jax.tree.map(np.asarray, variables), architecture, metadata
