"""Options that several subcommands declare: value ranges given as two numbers, LO HI, and the
intensity maps of CT and MR (`jaxcycle.data.intensity`) that translate, metrics and data ingest
take. Each command keeps its own help text."""

from __future__ import annotations

import argparse
from typing import Any

from jaxcycle.data.intensity import CT_WINDOW, MR_PERCENTILES, MR_RANGE


def add_range(parser: argparse.ArgumentParser, flag: str, **kwargs: Any) -> None:
    """Declares an option taking a value range as two numbers, LO HI."""
    parser.add_argument(flag, type=float, nargs=2, metavar=("LO", "HI"), **kwargs)


def add_ct_window(
    parser: argparse.ArgumentParser, help_text: str, flag: str = "--ct-window"
) -> None:
    """Declares a CT window in HU, LO HI, by default data ingest's (`CT_WINDOW`)."""
    add_range(parser, flag, default=list(CT_WINDOW), help=help_text)


def add_mr_percentiles(parser: argparse.ArgumentParser, help_text: str) -> None:
    """Declares `--mr-percentiles LO HI`, an MR volume's percentiles mapped to -1 and 1, by
    default data ingest's (`MR_PERCENTILES`)."""
    add_range(parser, "--mr-percentiles", default=list(MR_PERCENTILES), help=help_text)


def add_mr_range(parser: argparse.ArgumentParser, help_text: str) -> None:
    """Declares `--mr-range LO HI`, the MR values that -1 and 1 stand for (`MR_RANGE`)."""
    add_range(parser, "--mr-range", default=list(MR_RANGE), help=help_text)
