"""Experiment configs: Python files whose `get_config()` returns an `ml_collections.ConfigDict`,
overridden from the command line with `--config.a.b=value` (as big_vision and the Flax
examples do).

`PATH:ARG` passes ARG to `get_config(ARG)`, e.g. `configs/transfer.py:horse2zebra`.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path

import ml_collections


def load_config(
    spec: str | os.PathLike, overrides: Iterable[str] = ()
) -> ml_collections.ConfigDict:
    """Loads `PATH[:ARG]` and applies `a.b=value` overrides; the result is locked."""
    path, _, arg = str(spec).partition(":")
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such config file")
    module_spec = importlib.util.spec_from_file_location(
        f"_jaxcycle_config_{Path(path).stem}", path
    )
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path}: a config file must define get_config()")
    config = module.get_config(arg) if arg else module.get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise ValueError(f"{path}: get_config() must return an ml_collections.ConfigDict")
    config = ml_collections.ConfigDict(config.to_dict())  # a private, unlocked copy
    for item in overrides:
        apply_override(config, item)
    config.lock()
    return config


def parse_value(text: str) -> object:
    """A Python literal if `text` is one ('4', '1e-3', 'True', "'a'", '(1, 2)'), else the
    string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
    """Sets `a.b=value` on `config`; unknown fields and wrong types are errors."""
    key, sep, text = item.partition("=")
    if not sep:
        raise ValueError(f"override {item!r}: expected KEY=VALUE")
    *parents, leaf = key.split(".")
    node = config
    for i, part in enumerate(parents):
        if part not in node:
            raise ValueError(f"override {item!r}: no field {'.'.join(parents[: i + 1])!r}")
        node = node[part]
    if leaf not in node:
        raise ValueError(f"override {item!r}: no field {key!r}")
    value = parse_value(text)
    current = node[leaf]
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, str) and not isinstance(value, str):
        value = text
    try:
        node[leaf] = value
    except TypeError as e:
        raise ValueError(f"override {item!r}: {e}") from None
