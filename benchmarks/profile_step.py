"""Where jaxcycle's train step spends its time: the step compiled as `jaxcycle bench` compiles
it, a few steps traced with `jax.profiler`, and each XLA operation's time attributed to the
layer it was traced from (the op_name in its HLO metadata) and to the forward or backward
pass.

    python -m benchmarks.profile_step --size 256 --batch 1 [--steps 3] [--depth 2] [--out f.md]

The table sums the durations of the operations' trace events per step, over all of XLA's
threads: operations on different threads overlap, so the sum may exceed the wall time, and an
operation that finishes its work asynchronously on worker threads (a large matrix product on
the CPU) is timed only for the part its own event covers. Read the table for where the
operations are and how they compare with each other, and the wall time for what a step costs.
The trace is kept with `--trace-dir` (TensorBoard's profile plugin or Perfetto read it).
"""

from __future__ import annotations

import argparse
import collections
import re
import statistics
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax

from benchmarks.options import DTYPES, count
from benchmarks.run import compiled_train_step, networks
from jaxcycle.hugepages import restart_with_huge_pages

OUTSIDE = "(outside the networks)"
# Components of an op_name that name a transformation or a control-flow region, not a layer.
_REGIONS = {"while", "body", "cond", "closed_call", "checkpoint", "remat"}
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_TRACE_FILES = "plugins/profile/*/*.xplane.pb"  # where jax.profiler.trace writes a trace


@dataclass(frozen=True)
class Event:
    """One trace event of an XLA thread: the HLO instruction it ran, its duration."""

    name: str
    duration_ns: int


def instruction_op_names(hlo_text: str) -> dict[str, str]:
    """HLO instruction name -> the op_name of its metadata ('' where it has none), for every
    instruction of a compiled program's text (`compiled.as_text()`)."""
    names = {}
    for line in hlo_text.splitlines():
        match = _INSTRUCTION.match(line)
        if match:
            op_name = _OP_NAME.search(line)
            names[match.group(1)] = op_name.group(1) if op_name else ""
    return names


def layer_of(op_name: str, depth: int) -> str:
    """The layer an operation was traced from, as its first `depth` module names.

    An op_name is a path: transformations (`jit(train_step)`, `transpose(jvp(...))`),
    modules and their methods (`ResnetGenerator`, `ResnetGenerator._residual_blocks`, `d1`),
    control-flow regions (`while/body`) and last the primitive (`add`). The transformations,
    the regions and the primitive are dropped; a method keeps its name alone.
    """
    parts = op_name.split("/")[:-1]
    layers = [
        part.split(".")[-1].lstrip("_")
        for part in parts
        if part and "(" not in part and part not in _REGIONS
    ]
    return "/".join(layers[:depth]) or OUTSIDE


def direction_of(op_name: str) -> str:
    """'backward' for an operation of a gradient (autodiff's transpose), else 'forward'."""
    return "backward" if "transpose(" in op_name else "forward"


def kind_of(instruction: str) -> str:
    """An instruction's kind: its name without the numeric suffix (`dot_general.12`)."""
    return re.sub(r"(\.\d+)+$", "", instruction)


@dataclass
class Profile:
    """Busy time per step by layer and direction, and by operation kind, in nanoseconds."""

    by_layer: dict[tuple[str, str], float]
    by_kind: dict[str, float]
    calls_by_kind: dict[str, float]

    @property
    def total_ns(self) -> float:
        return sum(self.by_layer.values())


def attribute(events: Iterable[Event], op_names: dict[str, str], steps: int, depth: int) -> Profile:
    """Sums the events of the program's instructions per step (events of other names, the
    runtime's own bookkeeping, are left out) by (layer, direction) and by kind."""
    by_layer: collections.Counter = collections.Counter()
    by_kind: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    for event in events:
        if event.name not in op_names:
            continue
        op_name, kind = op_names[event.name], kind_of(event.name)
        by_layer[(layer_of(op_name, depth), direction_of(op_name))] += event.duration_ns / steps
        by_kind[kind] += event.duration_ns / steps
        calls[kind] += 1 / steps
    return Profile(dict(by_layer), dict(by_kind), dict(calls))


def xla_thread_events(trace_dir: Path) -> list[Event]:
    """The events of XLA's threads in the one trace under `trace_dir`."""
    files = sorted(trace_dir.glob(_TRACE_FILES))
    if len(files) != 1:
        raise FileNotFoundError(f"expected one .xplane.pb trace under {trace_dir}, found {files}")
    data = jax.profiler.ProfileData.from_file(str(files[0]))
    return [
        Event(event.name, int(event.duration_ns))
        for plane in data.planes
        for line in plane.lines
        if line.name.startswith("tf_XLA")
        for event in line.events
    ]


def markdown(profile: Profile, title: str, wall_s: Sequence[float], top: int) -> str:
    """The report: the step's wall time, then the layers and the operation kinds by time."""
    total = profile.total_ns
    lines = [
        f"# {title}",
        "",
        f"Step wall time: median {statistics.median(wall_s):.3f} s of {len(wall_s)} traced "
        f"steps. Busy time summed over XLA's threads: {total / 1e6:.1f} ms per step.",
        "",
        "| layer | forward ms | backward ms | share |",
        "|---|---:|---:|---:|",
    ]
    layers = collections.defaultdict(dict)
    for (layer, direction), ns in profile.by_layer.items():
        layers[layer][direction] = ns
    for layer, times in sorted(layers.items(), key=lambda item: -sum(item[1].values()))[:top]:
        fwd, bwd = times.get("forward", 0.0), times.get("backward", 0.0)
        lines.append(f"| {layer} | {fwd / 1e6:.1f} | {bwd / 1e6:.1f} | {(fwd + bwd) / total:.1%} |")
    lines += ["", "| operation kind | ms | calls | share |", "|---|---:|---:|---:|"]
    for kind, ns in sorted(profile.by_kind.items(), key=lambda item: -item[1])[:top]:
        calls = profile.calls_by_kind[kind]
        lines.append(f"| {kind} | {ns / 1e6:.1f} | {calls:.0f} | {ns / total:.1%} |")
    return "\n".join(lines) + "\n"


def profile_train_step(args: argparse.Namespace, trace_dir: Path) -> tuple[Profile, list[float]]:
    """Compiles the step, runs `args.warmup` steps, traces `args.steps` more into
    `trace_dir`; returns the attributed profile and the traced steps' wall times."""
    generator, discriminator = networks(args)
    compiled, one_step, _ = compiled_train_step(
        generator, discriminator, args.size, args.batch, args.dtype, pool_size=args.pool_size
    )
    for _ in range(args.warmup):
        jax.block_until_ready(one_step())
    wall = []
    with jax.profiler.trace(str(trace_dir)):
        for _ in range(args.steps):
            t0 = time.perf_counter()
            jax.block_until_ready(one_step())
            wall.append(time.perf_counter() - t0)
    op_names = instruction_op_names(compiled.as_text())
    return attribute(xla_thread_events(trace_dir), op_names, args.steps, args.depth), wall


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=count, default=256, help="image size")
    p.add_argument("--batch", type=count, default=1, help="global batch size")
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="compute dtype")
    p.add_argument("--steps", type=count, default=3, help="steps traced")
    p.add_argument("--warmup", type=int, default=2, help="untraced steps after compiling")
    p.add_argument("--depth", type=count, default=2, help="module names kept per layer")
    p.add_argument("--top", type=count, default=30, help="rows per table")
    p.add_argument("--ngf", type=int, default=64, help="generator width")
    p.add_argument("--ndf", type=int, default=64, help="discriminator width")
    p.add_argument("--n-blocks", type=int, default=9, help="residual blocks")
    p.add_argument("--pool-size", type=int, default=50, help="image pool size")
    p.add_argument("--trace-dir", type=Path, default=None, help="keep the trace here")
    p.add_argument("--out", type=Path, default=None, help="write the report here too")
    args = p.parse_args(argv)
    # Refused before the minutes of compiling and tracing, not after them.
    if args.out is not None and not args.out.parent.is_dir():
        p.error(f"--out {args.out}: folder {args.out.parent} does not exist")
    if args.trace_dir is not None and args.trace_dir.exists():
        if not args.trace_dir.is_dir():
            p.error(f"--trace-dir {args.trace_dir} is a file, not a folder")
        if any(args.trace_dir.glob(_TRACE_FILES)):
            p.error(f"--trace-dir {args.trace_dir} already holds a trace; give an empty folder")
    title = (
        f"Train step profile: {args.size}x{args.size}, batch {args.batch}, {args.dtype}, "
        f"{jax.default_backend()} ({jax.local_device_count()} device(s))"
    )
    with tempfile.TemporaryDirectory() as scratch:
        profile, wall = profile_train_step(args, args.trace_dir or Path(scratch))
    report = markdown(profile, title, wall, args.top)
    print(report, end="")
    if args.out is not None:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    restart_with_huge_pages()  # as the `jaxcycle` command runs
    raise SystemExit(main())
