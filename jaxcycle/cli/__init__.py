"""The `jaxcycle` command: one thin subcommand per user task, one module per subcommand.

Each command module (`convert`, `translate`, ..., `data`, `reader_study`) has
`register(subparsers)`, which declares its subcommand and sets its handler as `func`;
`options` holds the options several of them declare. The CLI is the one place in jaxcycle
where imports happen inside functions: a handler imports the library when it runs, so that
building the parser (`jaxcycle --help`) starts without importing jax.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from jaxcycle import __version__
from jaxcycle.cli import (
    bench,
    convert,
    data,
    demo,
    evaluate,
    metrics,
    pretrained,
    reader_study,
    study,
    train,
    translate,
)

# The subcommands, in the order `jaxcycle --help` lists them.
COMMANDS = (
    convert,
    translate,
    pretrained,
    train,
    metrics,
    evaluate,
    study,
    demo,
    bench,
    data,
    reader_study,
)

# The commands that compile networks, and so use the persistent compilation cache.
COMPILING_COMMANDS = ("translate", "train", "evaluate", "study", "demo", "bench")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `jaxcycle` command."""
    parser = argparse.ArgumentParser(
        prog="jaxcycle",
        description="CycleGAN in JAX: import the reference PyTorch weights, translate, train.",
    )
    parser.add_argument("--version", action="version", version=f"jaxcycle {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def _split_overrides(parser: argparse.ArgumentParser, extra: list[str]) -> list[str]:
    """`--config.a.b=value` arguments -> ['a.b=value', ...]; anything else is an error."""
    overrides = []
    for item in extra:
        if not item.startswith("--config.") or "=" not in item:
            parser.error(f"unrecognized argument: {item} (overrides are --config.FIELD=VALUE)")
        overrides.append(item[len("--config.") :])
    return overrides


def _gather_positionals(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """Moves file arguments given after an option (`translate a.png --output out b.png`) into
    the command's list of files (`more_positionals` names it); returns what is left."""
    name = getattr(args, "more_positionals", None)
    if not name:
        return extra
    stray = [item for item in extra if not item.startswith("-")]
    getattr(args, name).extend(stray)
    return [item for item in extra if item.startswith("-")]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the `jaxcycle` command with `argv` (default the command line's arguments);
    returns the exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    extra = _gather_positionals(args, extra)
    if extra and not getattr(args, "takes_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = _split_overrides(parser, extra)
    if args.command in COMPILING_COMMANDS:
        from jaxcycle.cache import enable_compilation_cache

        enable_compilation_cache()
    if args.command == "pretrained" and args.action == "download" and not args.names:
        parser.error("pretrained download: name at least one model (see 'pretrained list')")
    try:
        args.func(args)
    except (ValueError, OSError, RuntimeError) as e:
        if os.environ.get("JAXCYCLE_TRACEBACK"):
            raise
        print(f"jaxcycle {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0


def command() -> int:
    """The `jaxcycle` console script (and `python -m jaxcycle.cli`): `main()`, in a process
    that first executes itself again with glibc's huge pages on (`jaxcycle.hugepages`;
    JAXCYCLE_HUGE_PAGES=0 turns that off)."""
    from jaxcycle.hugepages import restart_with_huge_pages

    restart_with_huge_pages()
    return main()
