"""Test configuration: the repository root on sys.path (for `benchmarks.torch_reference`),
and one persistent compilation cache for the session (tests that build the same networks
compile them once)."""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from jaxcycle.cache import enable_compilation_cache  # noqa: E402

enable_compilation_cache(tempfile.mkdtemp(prefix="jaxcycle-xla-"))
