"""jaxcycle's cache folder: published generators (`jaxcycle.pretrained`) and compiled XLA
programs.

    $JAXCYCLE_CACHE (default ~/.cache/jaxcycle)/pretrained/   downloads, converted params
                                               /xla/          JAX's persistent compilation cache

With the compilation cache on, a second start of the same configuration (a resumed run, the
next study row with the same networks, `translate` on the same shapes) finds its compiled
programs there. `jaxcycle` turns it on for the commands that compile networks;
`JAXCYCLE_COMPILATION_CACHE=0` turns it off. On XLA:CPU (jax 0.10.2, 2 cores) a second
start of a 256x256 run reaches its first step in 12 s instead of 32 s
(`benchmarks/results/startup_cpu.md`); on GPU and TPU it is not yet measured.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax


def cache_root() -> Path:
    """$JAXCYCLE_CACHE, default ~/.cache/jaxcycle."""
    return Path(os.environ.get("JAXCYCLE_CACHE") or Path.home() / ".cache" / "jaxcycle")


def enable_compilation_cache(directory: str | os.PathLike | None = None) -> Path | None:
    """Turns on JAX's persistent compilation cache in `directory` (default cache_root()/xla);
    returns the folder, or None when JAXCYCLE_COMPILATION_CACHE=0 keeps it off."""
    if os.environ.get("JAXCYCLE_COMPILATION_CACHE", "1") == "0":
        return None
    folder = Path(directory) if directory is not None else cache_root() / "xla"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    return folder
