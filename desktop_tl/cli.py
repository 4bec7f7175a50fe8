"""The headless face of desktop_tl: `desktop-tl COMMAND ...`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `desktop-tl` command; returns the exit status."""
    parser = argparse.ArgumentParser(prog="desktop-tl")
    parser.parse_args(argv)
    return 0
