"""PyInstaller runtime hook of the CPU-only Linux build (the default of packaging/build.sh).

That build drops the CUDA libraries that PyTorch only loads on demand (cuDNN engines, cuSOLVER,
NVRTC builtins, ...) to save about 1.5 GB, so the GPU must stay invisible: otherwise torch would
report CUDA as usable on a machine with an NVIDIA driver and fail at the first convolution. Build
with `packaging/build.sh --with-cuda` for a bundle that trains on NVIDIA GPUs.
"""

import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ["DESKTOP_TL_BUNDLE"] = "cpu"
