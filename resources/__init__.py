"""Data files shipped with desktop_tl (demo images, icons); read through importlib.resources."""
