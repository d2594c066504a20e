"""The ``purelr`` command: ``purelr plot CONFIG``; ``python -m purelr`` is the same."""

import sys

from purelr.cli import main

if __name__ == "__main__":
    sys.exit(main())
