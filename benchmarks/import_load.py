"""Import load: how long importing N tiny images takes and how much memory it needs.

    python benchmarks/import_load.py [--sizes 5000 20000] [--append-results]

For each size a fresh subprocess generates N distinct 32x32 images (half PNG, half JPEG, four
class folders) in a temporary folder and imports them twice with `import_dataset`:
  1. plain: wall time and peak RSS growth (ru_maxrss minus RSS before the import);
  2. under tracemalloc: peak Python allocation during the import and what the finished index keeps.
Memory per image should be roughly constant (the index itself), not grow with N.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _generate(root: Path, n: int) -> float:
    import numpy as np
    from PIL import Image

    started = time.perf_counter()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for i in range(n):
        folder = root / f"class_{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = base.copy()
        pixels[i % 32, (i // 32) % 32] = (i % 251, (i // 251) % 251, (i // 63001) % 251)  # every file distinct
        pixels[0, 0] = (i % 256, (i >> 8) % 256, (i >> 16) % 256)
        Image.fromarray(pixels).save(folder / (f"img_{i:06d}.png" if i % 2 else f"img_{i:06d}.jpg"), quality=95)
    return time.perf_counter() - started


def measure(n: int) -> dict:
    """Runs in the child process."""
    from desktop_tl.core.data.importer import import_dataset

    with tempfile.TemporaryDirectory(prefix="import_load_") as tmp:
        root = Path(tmp) / "data"
        generate_s = _generate(root, n)
        # 1. plain run: time and RSS
        rss_before = _rss()
        started, cpu_started = time.perf_counter(), time.process_time()
        index = import_dataset(root)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
        assert len(index.samples) == n and not index.skipped and not index.duplicates, (
            len(index.samples), index.skipped[:3], len(index.duplicates))
        del index
        # 2. under tracemalloc: peak allocation during the import, and what the index keeps
        tracemalloc.start()
        before, _ = tracemalloc.get_traced_memory()
        index = import_dataset(root)
        after, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return {"images": n, "generate_s": round(generate_s, 1), "import_s": round(seconds, 2), "cpu_s": round(cpu, 2),
                "cpu_ms_per_image": round(1000 * cpu / n, 3),
                "images_per_s": round(n / seconds), "rss_before_mb": round(rss_before / 2**20, 1),
                "peak_rss_growth_mb": round((peak_rss - rss_before) / 2**20, 1),
                "traced_peak_mb": round((peak - before) / 2**20, 2),
                "index_retained_mb": round((after - before) / 2**20, 2),
                "peak_bytes_per_image": round((peak - before) / n),
                "retained_bytes_per_image": round((after - before) / n),
                "samples": len(index.samples)}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()}-core {platform.machine()} ({cpu}), Python {platform.python_version()}, no GPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--append-results", action="store_true", help="append a table to benchmarks/RESULTS.md")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return 0
    rows = []
    for n in args.sizes:
        done = subprocess.run([sys.executable, __file__, "--child", str(n)], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])))
        if done.returncode:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]))
    header = ("| images | import s (wall) | CPU s | CPU ms/image | peak RSS growth MB | traced peak MB "
              "| index kept MB | peak B/image | kept B/image |")
    lines = [header, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['images']:,} | {r['import_s']} | {r['cpu_s']} | {r['cpu_ms_per_image']} | {r['peak_rss_growth_mb']} "
              f"| {r['traced_peak_mb']} | {r['index_retained_mb']} | {r['peak_bytes_per_image']} "
              f"| {r['retained_bytes_per_image']} |" for r in rows]
    table = "\n".join(lines)
    print(table)
    if args.append_results:
        results = Path(__file__).with_name("RESULTS.md")
        text = results.read_text(encoding="utf-8") if results.exists() else "# Benchmark results\n"
        text = text.rstrip("\n") + (
            f"\n\n## Import load\n\n`python benchmarks/import_load.py --sizes {' '.join(map(str, args.sizes))}` "
            f"on {machine()}, {time.strftime('%Y-%m-%d')}. Distinct 32x32 images (half PNG, half JPEG) in four "
            "class folders; each is decoded once and hashed. Other jobs shared the two cores, so wall time is "
            f"noisy; CPU time (this process only) is the figure to compare.\n\n{table}\n")
        results.write_text(text, encoding="utf-8")
        print(f"Appended to {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
