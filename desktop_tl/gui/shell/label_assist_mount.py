"""Label assist on the Dataset panel: the shell joins the two rooms, so neither imports the other."""

from __future__ import annotations

from desktop_tl.gui.dataset.dataset_panel import DatasetImportPanel
from desktop_tl.gui.labelling.label_assist import JOB_KINDS, LabelAssist


def mount_label_assist(panel: DatasetImportPanel) -> LabelAssist:
    """Label assist working through the panel: its Unlabelled… button, its job client (whose progress bar may
    cancel label assist's jobs), its message bar, its dialogs' parent and where its file dialogs start."""
    assist = LabelAssist(panel.state, panel.jobs, panel.message, panel, panel.start_dir)
    panel.sig_unlabelled_requested.connect(lambda: assist.label_unlabelled())
    panel.progress.allow_cancel(JOB_KINDS)
    return assist
