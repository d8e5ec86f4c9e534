"""`python -m jaxcycle.cli`: the `jaxcycle` command."""

import sys

from jaxcycle.cli import command

if __name__ == "__main__":
    sys.exit(command())
