"""`python -m desktop_tl` runs the same entry point as the `desktop-tl` command."""

import sys

from desktop_tl.cli import main

if __name__ == "__main__":
    sys.exit(main())
