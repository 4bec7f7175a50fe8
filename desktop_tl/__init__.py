"""desktop_tl: offline transfer learning for image folders, as a desktop app and a CLI."""

__version__ = "0.1.0"
