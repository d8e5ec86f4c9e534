"""`jaxcycle pretrained list|download`: the 18 published generators."""

from __future__ import annotations

import argparse


def _pretrained(args: argparse.Namespace) -> None:
    from jaxcycle import pretrained

    if args.action == "list":
        print(f"{'name':<26}{'category':<28}{'lambda':>7}  {'reverse':<24}cached")
        for m in pretrained.REGISTRY.values():
            cached = "yes" if pretrained.cached_file(m.name).exists() else "no"
            print(
                f"{m.name:<26}{m.category:<28}{m.lambda_cycle:>7g}  {m.reverse or '-':<24}{cached}"
            )
        print(f"cache: {pretrained.cache_dir()}")
        return
    for name in args.names:
        path = pretrained.download(
            name,
            base_url=args.base_url,
            timeout=args.timeout,
            progress=not args.quiet,
            force=args.force,
        )
        print(f"{name}: {path}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `pretrained` to the `jaxcycle` command's subparsers."""
    p = subparsers.add_parser(
        "pretrained",
        help="list or download the 18 published generators",
        description="The generic pretrained generators of the reference project. 'download' "
        "fetches them into the cache ($JAXCYCLE_CACHE, default ~/.cache/jaxcycle) and checks "
        "that each holds the published generator; without network, place NAME.pth in the "
        "cache's pretrained/ folder by hand and run 'download' again. A downloaded name is "
        "then a source of weights wherever one is taken (translate --checkpoint, evaluate "
        "--gen-ab/--gen-ba, transfer.pretrained).",
    )
    p.add_argument("action", choices=("list", "download"))
    p.add_argument("names", nargs="*", help="model names, for 'download'")
    p.add_argument(
        "--base-url",
        help="download location (default: the published one, or "
        "$JAXCYCLE_PRETRAINED_URL); '{name}' is replaced by the model name",
    )
    p.add_argument("--timeout", type=float, default=20.0, help="network timeout, seconds")
    p.add_argument("--force", action="store_true", help="download again")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_pretrained)
