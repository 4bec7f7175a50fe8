"""Entry script of the frozen app (PyInstaller): the same `main()` as the `desktop-tl` command.

`dist/desktop-tl/desktop-tl` with no arguments opens the window; with a command it is the CLI;
`--smoke-test` checks the build end to end.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    # Must run first: a frozen app started as a multiprocessing child (DataLoader workers on
    # Windows/macOS, which spawn) runs the child's work here and exits instead of opening the app.
    multiprocessing.freeze_support()

    from desktop_tl.cli import main

    sys.exit(main())
