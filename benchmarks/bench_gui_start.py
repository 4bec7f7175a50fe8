"""(5) Launch to a usable window: a fresh `python -c` creating QApplication + MainWindow offscreen and showing it.

Timed from the subprocess start to the window shown and its first events processed.
Run: python benchmarks/bench_gui_start.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from common import ROOT, machine

CODE = (
    "import time; t0 = time.perf_counter()\n"
    "from PySide6.QtWidgets import QApplication\n"
    "from desktop_tl.gui.shell.main_window import MainWindow\n"
    "app = QApplication([]); w = MainWindow(); w.show(); app.processEvents()\n"
    "print(f'in-process {time.perf_counter() - t0:.2f}', flush=True)\n"
    # Exit at once: only the launch is measured (tearing the window down is not part of it).
    "import os; os._exit(0)\n"
)


def main() -> None:
    if not (ROOT / "desktop_tl" / "gui" / "shell" / "main_window.py").is_file():
        print("skipped: desktop_tl/gui/shell/main_window.py does not exist")
        return
    print(machine())
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(ROOT))
    times, inner = [], []
    for _ in range(4):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, cwd=ROOT)
        times.append(time.perf_counter() - started)
        if done.returncode:
            print(done.stderr[-2000:])
            raise SystemExit(1)
        inner.append(float(done.stdout.split()[-1]))
    print(f"launch to shown window (offscreen), 4 launches: {', '.join(f'{t:.2f}s' for t in times)}; "
          f"first {times[0]:.2f}s (cold file cache), best {min(times):.2f}s; target < 3 s "
          f"(inside the process, imports to shown: {', '.join(f'{t:.2f}s' for t in inner)})")


if __name__ == "__main__":
    main()
