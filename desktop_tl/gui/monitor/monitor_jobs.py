"""The Monitor panel's worker jobs: the watch (`core.deploy.watch.FolderWatch`, until Stop) and the report
against the true labels (`core.evaluation.trial.monitor_report`). Engine modules are imported on the worker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from desktop_tl.gui.worker import JobContext

WATCH_JOB = "watch"
TRIAL_REPORT_JOB = "trial-report"
EARLIER_SHOWN = 500        # entries of an earlier session shown when a watch resumes its log


def watch_job(model: Path, folder: Path, log: Path) -> Callable[[JobContext], Any]:
    """Watch `folder` with `model` into `log` until Stop: each entry reaches the panel as a TrialLogged event
    (the last EARLIER_SHOWN of an earlier session first, without heat maps)."""
    def run(ctx: JobContext):
        from desktop_tl.core.deploy.watch import FolderWatch
        from desktop_tl.core.events import TrialLogged

        watch = FolderWatch(model, folder, log)
        for entry in watch.earlier[-EARLIER_SHOWN:]:
            ctx.event(TrialLogged(entry))
        return watch.run(ctx.should_stop, on_entry=ctx.event, heatmaps=True)
    return run


def trial_report_job(log: Path, truth: Path | None) -> Callable[[JobContext], dict[str, Any]]:
    """The monitor's report of `log` (with the true labels in `truth`)."""
    def run(ctx: JobContext) -> dict[str, Any]:
        from desktop_tl.core.evaluation.trial import monitor_report

        return monitor_report(log, truth)
    return run
