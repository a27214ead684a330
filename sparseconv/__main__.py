"""``python -m sparseconv``: the command line of :mod:`sparseconv.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
