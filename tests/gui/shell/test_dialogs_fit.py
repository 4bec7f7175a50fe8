"""Every dialog fits a 1024x700 screen: its smallest size and the size it opens at leave room for the frame, and
every button is inside it. A screenshot of each at that size is saved with the test's files."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QRect, QSize
from PySide6.QtWidgets import QAbstractButton

from desktop_tl.core.data.importer import import_dataset
from desktop_tl.core.deploy.label_assist import Suggestion
from desktop_tl.core.training.label_review import REVIEW_FILE, Suspect
from desktop_tl.gui.evaluation.label_review_dialog import LabelReviewDialog
from desktop_tl.gui.labelling.unlabelled_dialog import UnlabelledDialog
from desktop_tl.gui.training.runs_dialog import RunsDialog
from desktop_tl.gui.widgets.image_viewer import ImageViewer
from desktop_tl.gui.widgets.panel_support import FRAME_ROOM, size_within

from helpers import copy_demo_subset

SMALL_SCREEN = QSize(1024, 700)
PREFERRED = {"unlabelledAssist": QSize(980, 680), "labelReview": QSize(900, 600), "runsDialog": QSize(760, 320),
             "imageViewer": QSize(640, 640)}


def _dialogs(tmp_path):
    data = copy_demo_subset(tmp_path / "data", 4)
    index = import_dataset(data)
    classes = [f"defect type {i} (hairline crack)" for i in range(10)]      # ten classes with long names
    files = sorted(data.rglob("*.jpg"))
    suggestions = [Suggestion(f"data/{f.parent.name}/{f.name}", classes[0], 0.5, 0.1, None) for f in files]
    yield UnlabelledDialog(suggestions, classes, tmp_path / "labels.confirmed.csv")
    run = tmp_path / "run"
    run.mkdir()
    (run / REVIEW_FILE).write_text(json.dumps({"suspects": []}))
    paths = [s.path for s in index.samples]
    yield LabelReviewDialog(run, index, [Suspect(p, "train", "brick", "grass", 0.1, 0.8) for p in paths[:6]])
    yield RunsDialog(lambda: [], lambda: False)
    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 2000), (90, 120, 150)).save(big)
    yield ImageViewer(big, "A large photograph, scaled to fit.")


@pytest.mark.parametrize("which", range(4))
def test_every_dialog_fits_a_1024x700_screen_with_all_its_buttons_inside(qtbot, tmp_path, which):
    dialog = list(_dialogs(tmp_path))[which]
    qtbot.addWidget(dialog)
    room = SMALL_SCREEN - FRAME_ROOM
    hint = dialog.minimumSizeHint()
    assert hint.width() <= room.width() and hint.height() <= room.height(), (dialog.objectName(), hint)
    preferred = PREFERRED[dialog.objectName()]
    opened = size_within(preferred, SMALL_SCREEN)
    assert opened.width() <= room.width() and opened.height() <= room.height()
    dialog.resize(opened)
    dialog.show()
    qtbot.waitExposed(dialog)
    assert dialog.width() <= room.width() and dialog.height() <= room.height(), (dialog.objectName(), dialog.size())
    inside = QRect(QPoint(0, 0), dialog.size())
    for button in dialog.findChildren(QAbstractButton):
        if button.isVisible():
            corner = button.mapTo(dialog, QPoint(0, 0))
            assert inside.contains(QRect(corner, button.size())), (dialog.objectName(), button.text())
    assert dialog.grab().save(str(tmp_path / f"{dialog.objectName()}-1024x700.png"))
