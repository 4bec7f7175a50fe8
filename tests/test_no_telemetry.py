"""onnxruntime writes nothing about the machine into the user's home folder (its telemetry store), whichever
way the app uses it: export's parity check, predict, int8."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_using_onnxruntime_through_the_app_writes_no_telemetry_store(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    script = textwrap.dedent("""
        import numpy as np
        from onnx import TensorProto, helper

        import desktop_tl  # noqa: F401 - what every entry point (window, CLI, frozen app) imports first
        from desktop_tl.core.deploy.predict import OnnxClassifier  # noqa: F401
        import onnxruntime as ort

        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        session.run(None, {"x": np.zeros(1, np.float32)})
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    written = [str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()]
    assert written == [], written
