"""desktop_tl: offline transfer learning for image folders, as a desktop app and a CLI."""

import os

__version__ = "0.1.0"

# onnxruntime (1.32) records a device id, the OS, the processor and the interpreter's path in
# ~/.cache/Microsoft/DeveloperTools/.onnxruntime/ as soon as it is imported, to send once online. Nothing may
# leave a lab machine: this is set before any part of the app imports onnxruntime (window, CLI, predict, the
# frozen app), and for the processes it starts. `disable_telemetry_events()` after import does not prevent it.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
