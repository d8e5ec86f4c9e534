"""`python -m jaxcycle.cli`: the `jaxcycle` command."""

import sys

from jaxcycle.cli import main

if __name__ == "__main__":
    sys.exit(main())
