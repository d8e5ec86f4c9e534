"""Test configuration: the repository root on sys.path (for `benchmarks.torch_reference`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
