"""`jaxcycle convert`: a reference `.pth` into a jaxcycle params directory, or back."""

from __future__ import annotations

import argparse


def _convert(args: argparse.Namespace) -> None:
    from jaxcycle.weights import convert_pth, export_pth

    if args.to_torch:
        path, arch = export_pth(args.src, args.dst, overwrite=args.overwrite)
        print(f"wrote {path}: {arch.describe()} (PyTorch state_dict)")
    else:
        path, arch = convert_pth(args.src, args.dst, padding=args.padding, overwrite=args.overwrite)
        print(f"wrote {path}: {arch.describe()}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds `convert` to the `jaxcycle` command's subparsers."""
    p = subparsers.add_parser(
        "convert",
        help="convert a reference .pth into jaxcycle params, or back with --to-torch",
        description="Convert a reference-project .pth state_dict (generator or discriminator) "
        "into a jaxcycle params directory (Orbax checkpoint + jaxcycle.json). The architecture "
        "is read from the file. No PyTorch needed; no code in the file is ever run. With "
        "--to-torch, write a params directory back as a .pth the reference model loads.",
    )
    p.add_argument("src", help="SRC.pth (or, with --to-torch, a params directory)")
    p.add_argument("dst", help="params directory to create (or, with --to-torch, OUT.pth)")
    p.add_argument("--to-torch", action="store_true", help="params directory -> .pth")
    p.add_argument(
        "--padding",
        choices=("reflect", "replicate", "zero"),
        help="residual-block padding, if not the inferred one (reflect and replicate hold "
        "the same tensors; reflect, the reference default, is assumed)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=_convert)
