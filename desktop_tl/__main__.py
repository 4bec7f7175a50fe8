"""`python -m desktop_tl` runs the same entry point as the `desktop-tl` command."""

import multiprocessing
import sys

if __name__ == "__main__":
    # First thing: a frozen Windows/macOS app re-runs itself for each DataLoader worker (spawn).
    multiprocessing.freeze_support()
    from desktop_tl.cli import main

    sys.exit(main())
