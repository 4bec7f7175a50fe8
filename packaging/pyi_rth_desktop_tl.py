"""PyInstaller runtime hook of every desktop_tl build: runs before the app's own code.

triton is left out of the bundle (only torch.compile on GPUs uses it; the app never compiles), and
torch.utils.flop_counter, which torch.onnx.export imports, warns about that on every export.
"""

import logging

logging.getLogger("torch.utils.flop_counter").setLevel(logging.ERROR)
