"""Heat maps: a model trained to find a mark in one corner looks at that corner, and `predict` computes
the heat map from the exported model alone (onnxruntime and numpy, no torch)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from desktop_tl.cli import main
from desktop_tl.core.config import SplitConfig, TrainConfig
from desktop_tl.core.deploy.export import export_onnx
from desktop_tl.core.deploy.heatmaps import CAM_OUTPUT, heat_colours, normalised_heatmap, overlay
from desktop_tl.core.deploy.predict import OnnxClassifier, heatmap_name
from desktop_tl.core.events import Finished
from desktop_tl.core.runs.folder import create_run
from desktop_tl.core.training.run import train_run


def _images(root, per_class=24, size=128, seed=0):
    """Grey noise; the class 'mark' also has a bright red square in its top-left corner."""
    rng = np.random.default_rng(seed)
    for name in ("mark", "plain"):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(90, 160, size=(size, size, 3), dtype=np.uint8)
            if name == "mark":
                pixels[4:36, 4:36] = (230, 20, 20)
            Image.fromarray(pixels).save(root / name / f"{name}_{i}.png")
    return root


@pytest.fixture(scope="module")
def corner_model(tmp_path_factory):
    data = _images(tmp_path_factory.mktemp("corner") / "images")
    run = tmp_path_factory.mktemp("runs") / "run"
    config = TrainConfig(recipe="custom", epochs=4, image_size=128, freeze="head", augment="none", num_workers=0,
                         lr=0.01)
    create_run(run, data, config, SplitConfig(val_fraction=0.25, test_fraction=0.25, seed=0))
    assert isinstance(list(train_run(run))[-1], Finished)
    result = export_onnx(run, run / "model.onnx")
    assert result.parity_ok
    return run / "model.onnx", data


def test_the_heat_map_of_a_mark_in_one_corner_peaks_in_that_corner(corner_model):
    model, data = corner_model
    classifier = OnnxClassifier(model)
    assert classifier.has_heatmaps
    k = classifier.classes.index("mark")
    files = [(p, p.name) for p in sorted((data / "mark").glob("*.png"))[:6]]
    batch = np.stack([np.asarray(classifier.prep and _prepared(classifier, p)) for p, _ in files])
    probs, cams = classifier.predict_with_activations(batch)
    assert cams.shape[:2] == (len(files), 2) and (probs.argmax(1) == k).all()
    for cam in cams[:, k]:
        heat = normalised_heatmap(cam)
        row, col = np.unravel_index(heat.argmax(), heat.shape)
        assert row < heat.shape[0] / 2 and col < heat.shape[1] / 2, heat.round(2)


def _prepared(classifier, path):
    from desktop_tl.core.data.imageio import load_image
    from desktop_tl.core.data.preprocess import preprocess

    return preprocess(load_image(path), classifier.prep)


def test_predict_writes_the_same_heat_maps_without_torch(corner_model, tmp_path):
    model, data = corner_model
    image = sorted((data / "mark").glob("*.png"))[0]
    code = ("import sys; sys.modules['torch'] = None; sys.modules['timm'] = None\n"
            "from desktop_tl.cli import main\n"
            f"sys.exit(main(['predict', {str(model)!r}, {str(image)!r}, '--heatmaps', {str(tmp_path / 'h')!r}]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr
    assert "Wrote 1 heat maps" in done.stdout
    written = Image.open(tmp_path / "h" / heatmap_name(1, str(image)))
    assert heatmap_name(1, str(image)) == f"00001_{image.name}.heatmap.png"   # no folder names in it
    in_process = next(OnnxClassifier(model).predict_files([(image, image.name)], heatmaps=True)).heatmap
    assert np.array_equal(np.asarray(written.convert("RGB")), np.asarray(in_process))   # the window shows this one


def test_heat_map_colours_and_overlay():
    assert normalised_heatmap(np.array([[-1.0, 0.0], [1.0, 3.0]])).tolist() == [[0, 0], [1 / 3, 1]]
    assert normalised_heatmap(-np.ones((2, 2))).max() == 0
    cold, hot = heat_colours(np.array([0.0, 1.0]))
    assert cold[2] > cold[0] and hot[0] > hot[2]                 # blue for nothing, red for the most
    image = Image.new("RGB", (64, 64), (128, 128, 128))
    shown = np.asarray(overlay(image, np.array([[1.0, 0.0], [0.0, 0.0]])))
    assert shown.shape == (64, 64, 3) and shown[2, 2, 0] > shown[60, 60, 0]


def test_heatmaps_from_a_model_without_them_is_a_clear_message(corner_model, tmp_path, capsys):
    import onnx

    model, data = corner_model
    proto = onnx.load(str(model))
    kept = [o for o in proto.graph.output if o.name != CAM_OUTPUT]   # as exported before heat maps existed
    del proto.graph.output[:]
    proto.graph.output.extend(kept)
    onnx.save(proto, str(tmp_path / "old.onnx"))
    assert main(["predict", str(tmp_path / "old.onnx"), str(data), "--heatmaps", str(tmp_path / "h")]) == 2
    assert "carries no heat maps" in capsys.readouterr().err
