"""The Help menu's texts: Getting started and About."""

from __future__ import annotations

GETTING_STARTED = """<h3>Getting started</h3><ol>
<li><b>Dataset</b>: pick a folder with one subfolder per class (or a CSV/TSV list, or a DICOM folder), or drop
it on the window. Check the counts, the skipped files and the Problems tab.</li>
<li><b>Models</b>: the bundled EfficientNet-Lite0 is a good start on a laptop; others show where their
weights come from.</li>
<li><b>Training</b>: keep the recipe on <i>Balanced</i> (10 minutes at most) or choose <i>Quick</i> or
<i>Best</i>. Set <i>Orientation</i> to <i>fixed</i> when a flipped image would mean something else (chest
films, text). Press Start: the plan is shown first; Stop keeps the last finished epoch, Resume continues.</li>
<li><b>Evaluation</b>: read the test figures with their interval and the cautions. For two classes, the
<i>Operating point</i> tab chooses how many positives to find; <i>Calibration</i> shows how far to trust the
probabilities. File &gt; Export report writes a page to file.</li>
<li><b>Export</b>: one ONNX file that runs without PyTorch; drop images on <i>Try it</i> to check it, with a
heat map of where it looked.</li>
<li>Save the project (File &gt; Save project) to come back to the dataset and runs later.</li>
</ol><p>Nothing is ever sent over the network. The README that comes with the app has the details:
<i>The window</i>, <i>Recipes in plain words</i>, <i>Choosing an operating point</i>, <i>Command line</i>
and <i>Data safety</i>.</p>"""


def about_text(version: str) -> str:
    """Help > About, for this version."""
    return (f"<h3>desktop_tl {version}</h3>"
            "<p>Offline transfer learning for folders of labelled images: pick a pretrained "
            "backbone, choose which layers train, watch it fine-tune, read an honest "
            "evaluation and export an ONNX model.</p>"
            "<p>Nothing is ever downloaded. Models come from timm; the bundled "
            "EfficientNet-Lite0 weights are ImageNet-1k.</p><p>License: Apache-2.0</p>")
