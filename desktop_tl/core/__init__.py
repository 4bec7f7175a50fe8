"""The engine: everything desktop_tl does, with no Qt import.

Submodules are imported on demand; importing this package stays cheap and torch-free,
so `desktop_tl.core.deploy.predict` works where torch is not installed.
"""
